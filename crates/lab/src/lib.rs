//! `neutrino lab`: the whole system on one machine. Every node is a network
//! namespace on a shared underlay with its own agent process, running the
//! same allocation and agent code as a cluster; every bound port gets a
//! workload namespace that takes its address by real DHCP.

pub mod agent;
pub mod cluster;
mod credentials;
mod processes;
pub mod state;
pub mod supervisor;
mod teardown;
mod underlay;
pub mod workload;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub use cluster::ChartRelease;
use neutrino_api::Ipv6Mode;
use neutrino_core::resolve::Resolution;
use neutrino_core::{
    ApiObject, ClusterConfig, Key, Snapshot, for_each_kind, names, resolve, status,
};
use neutrino_dataplane::netns;
use neutrino_manifest::{self as manifest, Manifests};
use processes::not_running;
use state::{Files, LabState, Lease, Workload, write_atomic};

/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/run/neutrino-lab";

/// How long agents get to realise a generation.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a cluster lab waits for its objects to become Ready (the
/// controller and the agents start, elect, list and watch first).
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(120);

/// The namespace of the controller's Lease in a cluster lab, as the chart's.
pub const LEASE_NAMESPACE: &str = "neutrino-system";

/// Why a lab command failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("neutrino lab needs {0}")]
    Missing(String),
    #[error("{what}: {cause}")]
    Io { what: String, cause: std::io::Error },
    #[error(transparent)]
    Netlink(#[from] neutrino_dataplane::netlink::NetlinkError),
    #[error("the manifests cannot be read:\n  {}", .0.join("\n  "))]
    Manifests(Vec<String>),
    #[error("{} object(s) would not become Ready; nothing was changed:\n  {}", .0.len(), .0.join("\n  "))]
    Invalid(Vec<String>),
    #[error("no lab in {0}; start one with `neutrino lab up -f PATH`")]
    NoLab(PathBuf),
    #[error(
        "a lab already runs in {0}; `neutrino lab apply` changes it, `neutrino lab down` removes it"
    )]
    AlreadyUp(PathBuf),
    #[error("{0}")]
    Setup(String),
    #[error("{0}")]
    Api(String),
}

impl LabError {
    pub fn io(what: String, cause: std::io::Error) -> Self {
        Self::Io { what, cause }
    }
}

/// Checks that this machine can run a lab, naming what to install.
pub fn preflight() -> Result<(), LabError> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err(LabError::Missing(
            "root, to create network namespaces: run it with sudo".into(),
        ));
    }
    let missing: Vec<&str> = [
        ("dnsmasq", "dnsmasq-base"),
        ("udhcpc", "udhcpc"),
        ("ip", "iproute2"),
        ("iptables-restore", "iptables"),
        ("ipset", "ipset"),
    ]
    .into_iter()
    .filter(|(binary, _)| !on_path(binary))
    .map(|(_, package)| package)
    .collect();
    if !missing.is_empty() {
        return Err(LabError::Missing(format!(
            "{}: apt-get install {}",
            missing.join(", "),
            missing.join(" ")
        )));
    }
    Ok(())
}

fn on_path(binary: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(binary).is_file()))
}

/// A lab, by its state directory.
pub struct Lab {
    files: Files,
    /// The binary agents run as (`neutrino lab agent`).
    binary: PathBuf,
}

/// A port's workload as the lab names it.
fn workload_namespace(prefix: &str, port: &Key) -> String {
    format!("{prefix}{}.{}", port.namespace, port.name)
}

fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Lab {
    pub fn new(dir: impl Into<PathBuf>, binary: impl Into<PathBuf>) -> Self {
        Self {
            files: Files::new(dir),
            binary: binary.into(),
        }
    }

    pub fn files(&self) -> &Files {
        &self.files
    }

    fn prefix(state: &LabState) -> String {
        if state.name.is_empty() {
            String::new()
        } else {
            format!("{}-", state.name)
        }
    }

    /// The namespace of `node` in a lab whose namespaces start with `prefix`.
    pub fn node_namespace(prefix: &str, node: &str) -> String {
        format!("{prefix}{node}")
    }

    /// The namespace of a port's workload.
    pub fn workload_namespace(&self, port: &Key) -> Result<String, LabError> {
        let state = self.state()?;
        state
            .workloads
            .get(&port.to_string())
            .map(|w| w.namespace.clone())
            .ok_or_else(|| LabError::Setup(format!("port {port} has no workload: it is not bound to a node, not Ready, or not in the lab")))
    }

    fn state(&self) -> Result<LabState, LabError> {
        if !self.files.exists() {
            return Err(LabError::NoLab(self.files.dir.clone()));
        }
        self.files
            .read_state()
            .map_err(|e| LabError::io(format!("reading {}", self.files.lab().display()), e))
    }

    /// Brings a lab up: underlay, nodes, agents, then the manifests.
    pub async fn up(&self, path: &Path, nodes: usize, name: &str) -> Result<Summary, LabError> {
        self.bring_up(path, nodes, name, None, None).await
    }

    /// Brings a lab up with the cluster of `kubeconfig` in the middle: the
    /// manifests go to its API server, `neutrino controller` allocates and
    /// writes status there, and every node runs `neutrino agent` — with the
    /// kubeconfig's own credentials, or with the service accounts of a
    /// release of the chart.
    pub async fn up_on_cluster(
        &self,
        path: &Path,
        nodes: usize,
        name: &str,
        kubeconfig: &Path,
        release: Option<&ChartRelease>,
    ) -> Result<Summary, LabError> {
        self.bring_up(path, nodes, name, Some(kubeconfig), release)
            .await
    }

    async fn bring_up(
        &self,
        path: &Path,
        nodes: usize,
        name: &str,
        kubeconfig: Option<&Path>,
        release: Option<&ChartRelease>,
    ) -> Result<Summary, LabError> {
        preflight()?;
        if self.files.exists() {
            return Err(LabError::AlreadyUp(self.files.dir.clone()));
        }
        let manifests = read(path)?;
        let config = ClusterConfig::with_nodes(nodes);
        // Refuse bad manifests before anything is built.
        resolve_or_refuse(&manifests.snapshot, &config)?;
        let io = |what: &str| {
            let what = what.to_string();
            move |e| LabError::io(what, e)
        };
        std::fs::create_dir_all(&self.files.dir).map_err(io("creating the state directory"))?;
        let kubeconfig = kubeconfig
            .map(std::path::absolute)
            .transpose()
            .map_err(io("finding the kubeconfig"))?;
        // Reach the API server before anything is built.
        let client = match &kubeconfig {
            Some(file) => Some(cluster::connect(file).await?),
            None => None,
        };
        let mut state = LabState {
            name: name.to_string(),
            kubeconfig: kubeconfig.clone(),
            chart_release: release.map(ToString::to_string),
            ..LabState::default()
        };
        let prefix = Self::prefix(&state);
        let taken: Vec<String> = netns::list()
            .map_err(io("listing namespaces"))?
            .into_iter()
            .filter(|n| {
                config
                    .nodes
                    .iter()
                    .any(|node| *n == Self::node_namespace(&prefix, &node.name))
                    || *n == format!("{prefix}underlay")
            })
            .collect();
        if !taken.is_empty() {
            return Err(LabError::Setup(format!(
                "namespaces {} exist already; pick another lab name with --name",
                taken.join(", ")
            )));
        }
        write_atomic(
            &self.files.cluster(),
            serde_saphyr::to_string(&config)
                .map_err(|e| LabError::Setup(e.to_string()))?
                .as_bytes(),
        )
        .map_err(io("writing the cluster file"))?;
        self.files
            .write_state(&state)
            .map_err(io("writing the lab state"))?;

        let underlay = format!("{prefix}underlay");
        state.namespaces.push(underlay.clone());
        self.files
            .write_state(&state)
            .map_err(io("writing the lab state"))?;
        underlay::build_underlay(&underlay, &config).await?;
        for (i, node) in config.nodes.iter().enumerate() {
            let namespace = Self::node_namespace(&prefix, &node.name);
            state.namespaces.push(namespace.clone());
            self.files
                .write_state(&state)
                .map_err(io("writing the lab state"))?;
            underlay::build_node(&underlay, &namespace, i + 1, node, &config).await?;
        }
        let Some(client) = client else {
            self.publish(&manifests, &config, &mut state)?;
            for node in &config.nodes {
                self.start_agent(&node.name)?;
            }
            return self.converge(&mut state, &config).await;
        };
        cluster::install_crds(&client).await?;
        cluster::register_nodes(&client, &config).await?;
        if let (Some(release), Some(admin)) = (release, &kubeconfig) {
            self.write_service_account_kubeconfigs(&client, admin, release, &config)
                .await?;
        }
        self.start_controller(&state)?;
        for node in &config.nodes {
            self.start_agent(&node.name)?;
        }
        self.publish_to_cluster(&client, &manifests, &mut state)
            .await?;
        self.converge_on_cluster(&client, &mut state, &config).await
    }

    /// Applies the objects to the cluster, deletes those the lab applied
    /// before and no longer holds, and records what it applied.
    async fn publish_to_cluster(
        &self,
        client: &kube::Client,
        manifests: &Manifests,
        state: &mut LabState,
    ) -> Result<(), LabError> {
        let snapshot = &manifests.snapshot;
        let created =
            cluster::ensure_namespaces(client, snapshot, &Self::lease_namespace(state)).await?;
        state.created_namespaces.extend(created);
        let previous = applied(state);
        state.applied = cluster::ids(snapshot)
            .into_iter()
            .map(|(kind, key)| (kind, key.namespace, key.name))
            .collect();
        state.generation += 1;
        self.files
            .write_state(state)
            .map_err(|e| LabError::io("writing the lab state".into(), e))?;
        cluster::apply(client, snapshot, &previous).await?;
        cluster::apply_secrets(client, &manifests.secrets).await
    }

    /// Waits until the cluster has every object Ready and realised on its
    /// nodes, then brings the outside host and the workloads in line.
    async fn converge_on_cluster(
        &self,
        client: &kube::Client,
        state: &mut LabState,
        config: &ClusterConfig,
    ) -> Result<Summary, LabError> {
        let snapshot = cluster::wait_ready(client, &applied(state), CLUSTER_TIMEOUT)
            .await
            .map_err(|e| {
                LabError::Setup(format!(
                    "{e}\nsee {} and the agents' logs under {}",
                    self.files.controller_log().display(),
                    self.files.dir.join("nodes").display()
                ))
            })?;
        self.sync_outside(state, config, &snapshot).await?;
        self.sync_workloads(state, config, &snapshot).await?;
        Ok(Summary {
            generation: state.generation,
            workloads: state.workloads.clone(),
        })
    }

    /// The cluster of a cluster lab.
    async fn client(&self, state: &LabState) -> Result<Option<kube::Client>, LabError> {
        match &state.kubeconfig {
            Some(file) => Ok(Some(cluster::connect(file).await?)),
            None => Ok(None),
        }
    }

    /// Replaces the lab's objects with those under `path`: added, changed
    /// and removed objects all take effect; allocations of objects that stay
    /// are kept.
    pub async fn apply(&self, path: &Path) -> Result<Summary, LabError> {
        preflight()?;
        let mut state = self.state()?;
        let config = self
            .files
            .read_cluster()
            .map_err(|e| LabError::io("reading the cluster file".into(), e))?;
        self.check_agents(&config)?;
        let mut manifests = read(path)?;
        if let Some(client) = self.client(&state).await? {
            // Refuse what would not become Ready, judged with the
            // allocations the cluster holds, before anything is applied.
            let previous = cluster::read(&client).await?;
            let mut judged = manifests.snapshot.clone();
            carry_status(&previous, &mut judged);
            resolve_or_refuse(&judged, &config)?;
            self.publish_to_cluster(&client, &manifests, &mut state)
                .await?;
            return self.converge_on_cluster(&client, &mut state, &config).await;
        }
        let previous = self.snapshot()?;
        carry_status(&previous, &mut manifests.snapshot);
        self.publish(&manifests, &config, &mut state)?;
        self.converge(&mut state, &config).await
    }

    /// The objects the lab holds, statuses included: read from the cluster
    /// on a cluster lab, else from the lab's files.
    pub async fn objects(&self) -> Result<Snapshot, LabError> {
        match self.client(&self.state()?).await? {
            Some(client) => cluster::read(&client).await,
            None => self.snapshot(),
        }
    }

    /// The objects a lab without a cluster holds, statuses included.
    pub fn snapshot(&self) -> Result<Snapshot, LabError> {
        let file = self.files.objects();
        if !file.exists() {
            return Ok(Snapshot::default());
        }
        manifest::load(&file)
            .map(|m| m.snapshot)
            .map_err(|errors| LabError::Manifests(errors.iter().map(ToString::to_string).collect()))
    }

    /// Validates and allocates, records the result as the objects' status,
    /// and hands a new generation to the agents. Nothing changes when any
    /// object would not become Ready.
    fn publish(
        &self,
        manifests: &Manifests,
        config: &ClusterConfig,
        state: &mut LabState,
    ) -> Result<(), LabError> {
        let resolution = resolve_or_refuse(&manifests.snapshot, config)?;
        let mut snapshot = manifests.snapshot.clone();
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        status::apply(&mut snapshot, &resolution, &now);
        let text = manifest::dump(&snapshot).map_err(|e| LabError::Setup(e.to_string()))?;
        write_atomic(&self.files.objects(), text.as_bytes())
            .map_err(|e| LabError::io("writing the objects".into(), e))?;
        let secrets = manifest::dump_secrets(&manifests.secrets)
            .map_err(|e| LabError::Setup(e.to_string()))?;
        state::write_private(&self.files.secrets(), secrets.as_bytes())
            .map_err(|e| LabError::io("writing the Secrets".into(), e))?;
        state.generation += 1;
        self.files
            .write_state(state)
            .map_err(|e| LabError::io("writing the lab state".into(), e))?;
        write_atomic(
            &self.files.generation(),
            state.generation.to_string().as_bytes(),
        )
        .map_err(|e| LabError::io("writing the generation".into(), e))
    }

    /// Waits until every agent realised the current generation, then
    /// brings the workloads in line with the ready ports.
    async fn converge(
        &self,
        state: &mut LabState,
        config: &ClusterConfig,
    ) -> Result<Summary, LabError> {
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let statuses: BTreeMap<String, Option<state::AgentStatus>> = config
                .nodes
                .iter()
                .map(|n| (n.name.clone(), self.files.read_agent_status(&n.name)))
                .collect();
            let done = statuses
                .values()
                .all(|s| s.as_ref().is_some_and(|s| s.generation >= state.generation));
            if done {
                let errors: Vec<String> = statuses
                    .iter()
                    .flat_map(|(node, s)| {
                        s.iter()
                            .flat_map(move |s| s.errors.iter().map(move |e| format!("{node}: {e}")))
                    })
                    .collect();
                if !errors.is_empty() {
                    return Err(LabError::Setup(format!(
                        "agents reported errors:\n  {}",
                        errors.join("\n  ")
                    )));
                }
                break;
            }
            let stopped: Vec<&String> = statuses
                .iter()
                .filter(|(_, s)| s.as_ref().is_none_or(|s| s.generation < state.generation))
                .map(|(n, _)| n)
                .filter(|n| !self.agent_kept_running(n))
                .collect();
            if !stopped.is_empty() {
                return Err(not_running(&stopped, state.generation));
            }
            if Instant::now() > deadline {
                let late: Vec<&String> = statuses
                    .iter()
                    .filter(|(_, s)| s.as_ref().is_none_or(|s| s.generation < state.generation))
                    .map(|(n, _)| n)
                    .collect();
                return Err(LabError::Setup(format!(
                    "agents of {late:?} did not realise generation {} in time; see {}",
                    state.generation,
                    self.files.dir.join("nodes").display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let snapshot = self.snapshot()?;
        self.sync_outside(state, config, &snapshot).await?;
        self.sync_workloads(state, config, &snapshot).await?;
        Ok(Summary {
            generation: state.generation,
            workloads: state.workloads.clone(),
        })
    }

    /// The namespace of the host that stands outside, on the external networks.
    pub fn outside_namespace(&self) -> Result<String, LabError> {
        Ok(format!("{}outside", Self::prefix(&self.state()?)))
    }

    /// Puts the outside host on every flat external network, holding its
    /// subnets' gateway addresses.
    async fn sync_outside(
        &self,
        state: &mut LabState,
        config: &ClusterConfig,
        snapshot: &Snapshot,
    ) -> Result<(), LabError> {
        let prefix = Self::prefix(state);
        let resolution = resolve(snapshot, config);
        let physnets: Vec<&String> = config.physical_networks.keys().collect();
        let mut wanted: BTreeMap<usize, Vec<ipnet::IpNet>> = BTreeMap::new();
        for (key, network) in resolution.ready_networks() {
            if !state.owns("Network", key)
                || !network.external
                || network.network_type != neutrino_api::NetworkType::Flat
            {
                continue;
            }
            let Some(index) = network
                .physical_network
                .as_ref()
                .and_then(|p| physnets.iter().position(|n| *n == p))
            else {
                continue;
            };
            for (_, subnet) in resolution
                .ready_subnets()
                .filter(|(_, s)| &s.network == key)
            {
                if let Some(gateway) = subnet.gateway {
                    let address = ipnet::IpNet::new(gateway, subnet.cidr.prefix_len())
                        .expect("prefix of a parsed CIDR");
                    wanted.entry(index).or_default().push(address);
                }
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let namespace = format!("{prefix}outside");
        if !state.namespaces.contains(&namespace) {
            state.namespaces.push(namespace.clone());
            self.files
                .write_state(state)
                .map_err(|e| LabError::io("writing the lab state".into(), e))?;
        }
        for (index, addresses) in wanted {
            underlay::build_outside(
                &format!("{prefix}underlay"),
                &namespace,
                index,
                &addresses,
                config.underlay_mtu,
            )
            .await?;
        }
        Ok(())
    }

    /// Creates a workload for every ready bound port, removes those of ports
    /// that are gone or moved, and renews leases whose address changed.
    async fn sync_workloads(
        &self,
        state: &mut LabState,
        config: &ClusterConfig,
        snapshot: &Snapshot,
    ) -> Result<(), LabError> {
        let prefix = Self::prefix(state);
        let resolution = resolve(snapshot, config);
        let mut wanted: BTreeMap<String, (Key, String, String, Vec<String>)> = BTreeMap::new();
        // The IPv6 addresses a workload configures itself, and how.
        let mut wanted_v6: BTreeMap<String, Vec<(std::net::Ipv6Addr, Ipv6Mode)>> = BTreeMap::new();
        for (key, port) in resolution.ready_ports() {
            if !state.owns("Port", key) {
                continue;
            }
            if let Some(node) = &port.node {
                let ips = port
                    .fixed_ips
                    .iter()
                    .filter(|(_, ip)| ip.is_ipv4())
                    .map(|(_, ip)| ip.to_string())
                    .collect();
                let v6 = (port.fixed_ips.iter()).filter_map(|(subnet, ip)| {
                    let IpAddr::V6(ip) = ip else { return None };
                    let mode = resolution.subnet(subnet)?.ipv6_address_mode?;
                    Some((*ip, mode))
                });
                wanted_v6.insert(key.to_string(), v6.collect());
                wanted.insert(
                    key.to_string(),
                    (key.clone(), node.clone(), port.mac.to_string(), ips),
                );
            }
        }
        let stale: Vec<String> = state
            .workloads
            .iter()
            .filter(|(k, w)| {
                wanted
                    .get(*k)
                    .is_none_or(|(_, node, mac, _)| *node != w.node || *mac != w.mac)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            if let Some(workload) = state.workloads.remove(&key) {
                netns::delete(&workload.namespace).map_err(|e| {
                    LabError::io(format!("removing namespace {}", workload.namespace), e)
                })?;
                let _ = std::fs::remove_dir_all(self.files.workload_dir(&workload.namespace));
            }
        }
        self.files
            .write_state(state)
            .map_err(|e| LabError::io("writing the lab state".into(), e))?;

        for (id, (key, node, mac, ips)) in wanted {
            let namespace = workload_namespace(&prefix, &key);
            let existing = state.workloads.get(&id).cloned();
            let plugged = workload::is_plugged(&namespace).await;
            let v6 = wanted_v6.remove(&id).unwrap_or_default();
            let lease_ok = existing
                .as_ref()
                .and_then(|w| w.lease.as_ref())
                .is_some_and(|l| {
                    (ips.is_empty() || ips.contains(&l.ip))
                        && (v6.iter()).all(|(a, m)| {
                            *m == Ipv6Mode::Dhcpv6Stateful
                                || l.ipv6.iter().any(|got| got.address == a.to_string())
                        })
                        && l.ipv6.len() == v6.len()
                });
            if plugged && lease_ok {
                continue;
            }
            if !plugged {
                let node_namespace = Self::node_namespace(&prefix, &node);
                workload::plug(&node_namespace, &names::port_peer(&key), &namespace).await?;
            }
            state.workloads.insert(
                id.clone(),
                Workload {
                    namespace: namespace.clone(),
                    node: node.clone(),
                    mac: mac.clone(),
                    lease: None,
                },
            );
            self.files
                .write_state(state)
                .map_err(|e| LabError::io("writing the lab state".into(), e))?;
            if ips.is_empty() && v6.is_empty() {
                continue;
            }
            let dir = self.files.workload_dir(&namespace);
            let mut lease = if ips.is_empty() {
                Lease::default()
            } else {
                workload::dhcp(&namespace, &dir)?
            };
            lease.ipv6 = workload::ipv6(&namespace, &dir, &v6)?;
            if let Some(w) = state.workloads.get_mut(&id) {
                w.lease = Some(lease);
            }
            self.files
                .write_state(state)
                .map_err(|e| LabError::io("writing the lab state".into(), e))?;
        }
        Ok(())
    }

    /// The lab's objects, their allocations and readiness, the agents, and
    /// the workloads' leases.
    pub async fn status(&self) -> Result<String, LabError> {
        let state = self.state()?;
        let config = self
            .files
            .read_cluster()
            .map_err(|e| LabError::io("reading the cluster file".into(), e))?;
        if let Some(client) = self.client(&state).await? {
            let snapshot = cluster::read(&client).await?;
            let agents = cluster::agents(&client).await?;
            return Ok(agent::render_cluster_status(
                &state,
                &config,
                &snapshot,
                &agents,
                self.controller_pid(),
                |n| self.agent_state(n),
            ));
        }
        let snapshot = self.snapshot()?;
        Ok(agent::render_status(
            &state,
            &config,
            &snapshot,
            &self.files,
            |n| self.agent_state(n),
        ))
    }

    /// Runs `command` in a port's workload and returns its exit code.
    pub fn exec(&self, port: &Key, command: &[String]) -> Result<i32, LabError> {
        let namespace = self.workload_namespace(port)?;
        self.exec_in(&namespace, command)
    }

    /// Runs `command` in one of the lab's namespaces and returns its exit code.
    pub fn exec_in(&self, namespace: &str, command: &[String]) -> Result<i32, LabError> {
        let (program, args) = command.split_first().ok_or_else(|| {
            LabError::Setup("no command given: lab exec NAMESPACE/PORT -- COMMAND".into())
        })?;
        let status = netns::command_with_sys(namespace, program)
            .map_err(|e| LabError::io(format!("entering {namespace}"), e))?
            .args(args)
            .status()
            .map_err(|e| LabError::io(format!("running {program}"), e))?;
        Ok(status.code().unwrap_or(1))
    }
}

/// What an up or apply brought about.
#[derive(Debug)]
pub struct Summary {
    pub generation: u64,
    pub workloads: BTreeMap<String, Workload>,
}

/// The resolution of `snapshot`, or a refusal naming every object that
/// would not become Ready: the lab changes nothing for those.
fn resolve_or_refuse(snapshot: &Snapshot, config: &ClusterConfig) -> Result<Resolution, LabError> {
    let resolution = resolve(snapshot, config);
    let problems: Vec<String> = resolution
        .problems()
        .iter()
        .map(|p| format!("{p} [{}]", p.reason.as_str()))
        .collect();
    if problems.is_empty() {
        Ok(resolution)
    } else {
        Err(LabError::Invalid(problems))
    }
}

fn read(path: &Path) -> Result<Manifests, LabError> {
    manifest::load(path)
        .map_err(|errors| LabError::Manifests(errors.iter().map(ToString::to_string).collect()))
}

/// Keeps the recorded status of objects that are still there, so their
/// allocations stay put across applies.
fn carry_status(previous: &Snapshot, next: &mut Snapshot) {
    fn carry<K: ApiObject>(from: &Snapshot, to: &mut Snapshot) {
        let from = K::of(from);
        for (key, object) in K::of_mut(to).iter_mut() {
            if let Some(old) = from.get(key) {
                *std::sync::Arc::make_mut(object).status_mut() = old.status().cloned();
            }
        }
    }
    for_each_kind!(K => carry::<K>(previous, next));
}

/// What a cluster lab applied, as (kind, key).
fn applied(state: &LabState) -> Vec<(String, Key)> {
    state
        .applied
        .iter()
        .map(|(kind, namespace, name)| (kind.clone(), Key::new(namespace, name)))
        .collect()
}

/// Seconds since the epoch, for agent reports.
pub fn timestamp() -> u64 {
    now_seconds()
}
