//! What a lab keeps between commands, in its state directory.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use neutrino_core::ClusterConfig;

/// The lease a workload's DHCP client got, as its script recorded it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub ip: String,
    pub prefix: String,
    pub router: String,
    pub mtu: String,
    pub routes: String,
    pub dns: String,
    pub server: String,
    /// The IPv6 addresses the workload configured, and how.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv6: Vec<Ipv6Lease>,
}

/// One IPv6 address a workload took, as a guest does: from router
/// advertisements (SLAAC) or from DHCPv6.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv6Lease {
    pub address: String,
    /// `SLAAC` or `DHCPv6`.
    pub by: String,
    /// DNS servers DHCPv6 gave (stateless or stateful), space-separated.
    #[serde(default)]
    pub dns: String,
}

/// A port's workload: a namespace whose `eth0` is the port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub namespace: String,
    pub node: String,
    pub mac: String,
    pub lease: Option<Lease>,
}

/// The lab's own record.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LabState {
    /// Put before every namespace name, so labs can run side by side.
    pub name: String,
    /// Bumped on every apply; agents report the one they realised.
    pub generation: u64,
    /// Namespaces the lab itself made (underlay, nodes, outside hosts).
    pub namespaces: Vec<String>,
    /// Workloads by port (`namespace/name`).
    pub workloads: BTreeMap<String, Workload>,
    /// The cluster in the middle, when the lab runs against an API server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<PathBuf>,
    /// What the lab applied to that cluster: kind, namespace, name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applied: Vec<(String, String, String)>,
    /// The Helm release (`NAMESPACE/NAME`) whose service accounts the
    /// controller and agents run with; the kubeconfig's own user when None.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart_release: Option<String>,
    /// Namespaces the lab created on that cluster, removed by `lab down`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created_namespaces: Vec<String>,
}

impl LabState {
    /// Whether the lab brought the object: on a shared cluster, other
    /// tenants' Ports bound to the lab's node names are not its workloads.
    pub fn owns(&self, kind: &str, key: &neutrino_core::Key) -> bool {
        self.kubeconfig.is_none()
            || self.applied.iter().any(|(k, namespace, name)| {
                k == kind && *namespace == key.namespace && *name == key.name
            })
    }
}

/// What an agent last did, as it reports it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AgentStatus {
    pub generation: u64,
    pub writes: usize,
    pub errors: Vec<String>,
    pub conflicts: Vec<String>,
    /// Seconds since the epoch.
    pub at: u64,
}

/// The files of a lab's state directory.
#[derive(Clone, Debug)]
pub struct Files {
    pub dir: PathBuf,
}

/// Writes through a temporary file and a rename, so readers never see half.
pub fn write_atomic(path: &Path, content: &[u8]) -> io::Result<()> {
    write_through(path, content, 0o666)
}

/// Writes `content` to `path` readable by its owner alone, atomically.
pub fn write_private(path: &Path, content: &[u8]) -> io::Result<()> {
    write_through(path, content, 0o600)
}

/// Writes a temporary file made with `mode` (less the umask), then renames
/// it over `path`.
fn write_through(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temporary)?;
    file.write_all(content)?;
    std::fs::rename(&temporary, path)
}

impl Files {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn lab(&self) -> PathBuf {
        self.dir.join("lab.json")
    }

    pub fn cluster(&self) -> PathBuf {
        self.dir.join("cluster.yaml")
    }

    pub fn objects(&self) -> PathBuf {
        self.dir.join("objects.yaml")
    }

    /// The Secrets the manifests held, for the metadata service.
    pub fn secrets(&self) -> PathBuf {
        self.dir.join("secrets.yaml")
    }

    pub fn generation(&self) -> PathBuf {
        self.dir.join("generation")
    }

    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.dir.join("nodes").join(node)
    }

    pub fn agent_pid(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("agent.pid")
    }

    /// The pid of the process that keeps `node`'s agent running.
    pub fn supervisor_pid(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("supervisor.pid")
    }

    /// How often `node`'s agent was started again, and why it last ended.
    pub fn restarts(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("restarts.json")
    }

    pub fn agent_log(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("agent.log")
    }

    /// Where a cluster lab node's agent serves the CNI plugin.
    pub fn cni_socket(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("cni.sock")
    }

    pub fn controller_pid(&self) -> PathBuf {
        self.dir.join("controller.pid")
    }

    pub fn controller_kubeconfig(&self) -> PathBuf {
        self.dir.join("controller.kubeconfig")
    }

    pub fn agent_kubeconfig(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("agent.kubeconfig")
    }

    pub fn controller_log(&self) -> PathBuf {
        self.dir.join("controller.log")
    }

    pub fn agent_status(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("status.json")
    }

    pub fn workload_dir(&self, namespace: &str) -> PathBuf {
        self.dir.join("workloads").join(namespace)
    }

    pub fn exists(&self) -> bool {
        self.lab().exists()
    }

    pub fn read_state(&self) -> io::Result<LabState> {
        let text = std::fs::read_to_string(self.lab())?;
        serde_json::from_str(&text).map_err(io::Error::other)
    }

    pub fn write_state(&self, state: &LabState) -> io::Result<()> {
        write_atomic(
            &self.lab(),
            serde_json::to_string_pretty(state)
                .map_err(io::Error::other)?
                .as_bytes(),
        )
    }

    pub fn read_cluster(&self) -> io::Result<ClusterConfig> {
        let text = std::fs::read_to_string(self.cluster())?;
        serde_saphyr::from_str(&text).map_err(io::Error::other)
    }

    pub fn read_generation(&self) -> u64 {
        std::fs::read_to_string(self.generation())
            .ok()
            .and_then(|g| g.trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn read_agent_status(&self, node: &str) -> Option<AgentStatus> {
        let text = std::fs::read_to_string(self.agent_status(node)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use neutrino_core::Key;

    #[test]
    fn a_cluster_lab_owns_only_what_it_applied() {
        let web = Key::new("tenant-a", "web-1");
        let other = Key::new("printer-columns", "web-1");
        let files = LabState::default();
        assert!(files.owns("Port", &other), "a lab of files holds all");
        let cluster = LabState {
            kubeconfig: Some("admin.kubeconfig".into()),
            applied: vec![("Port".into(), "tenant-a".into(), "web-1".into())],
            ..LabState::default()
        };
        assert!(cluster.owns("Port", &web));
        assert!(!cluster.owns("Port", &other));
        assert!(!cluster.owns("Network", &web));
    }
}
