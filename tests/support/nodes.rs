//! Real nodes for the tests: containerd, kube-proxy and the kubelet in a
//! network and a mount namespace per node (`scripts/nodes`), registered
//! with a control plane started `--for-nodes`; neutrino's image built from
//! the Dockerfile (`scripts/image`) and imported into every node, with a
//! busybox image for the pods. Started once per test binary and torn down
//! when it ends, however it ends.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::control_plane::{ControlPlane, Run, control_plane_for_nodes, repository};

/// The image the chart runs by default, which every node holds.
pub const CHART_IMAGE: &str = "ghcr.io/neutrino-dev/neutrino:0.1.0";
/// The image test pods run: busybox (ping, ip, udhcpc).
pub const WORKLOAD_IMAGE: &str = "localhost/neutrino/workload:1";

pub struct Nodes {
    pub cluster: &'static ControlPlane,
    pub dir: PathBuf,
    pub names: Vec<String>,
}

/// This test binary's nodes, started on first use.
pub fn nodes() -> &'static Nodes {
    static ONE: OnceLock<Nodes> = OnceLock::new();
    ONE.get_or_init(|| {
        let cluster = control_plane_for_nodes();
        let archives = repository().join("target/image/archives");
        std::fs::create_dir_all(&archives).unwrap();
        let neutrino = archives.join("neutrino.tar");
        let workload = archives.join("workload.tar");
        // As the Dockerfile says; the release build and the Debian base are
        // cached, so this is seconds when nothing changed.
        script(
            "image",
            &[
                "neutrino",
                &neutrino.to_string_lossy(),
                "--name",
                CHART_IMAGE,
            ],
        );
        script(
            "image",
            &[
                "workload",
                &workload.to_string_lossy(),
                "--name",
                WORKLOAD_IMAGE,
            ],
        );
        let dir = std::env::temp_dir().join(format!("neutrino-nodes-{}", std::process::id()));
        script(
            "nodes",
            &[
                "up",
                "--nodes",
                "2",
                "--dir",
                &dir.to_string_lossy(),
                "--control-plane",
                &cluster.dir.to_string_lossy(),
                "--watch",
                &std::process::id().to_string(),
            ],
        );
        script(
            "nodes",
            &[
                "import",
                &neutrino.to_string_lossy(),
                &workload.to_string_lossy(),
                "--dir",
                &dir.to_string_lossy(),
            ],
        );
        Nodes {
            cluster,
            dir,
            names: vec!["node-1".into(), "node-2".into()],
        }
    })
}

fn script(name: &str, args: &[&str]) {
    let output = Command::new(repository().join("scripts").join(name))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running scripts/{name}: {e}"));
    assert!(
        output.status.success(),
        "scripts/{name} {}:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Nodes {
    /// Runs `command` on `node`: in its network namespace, with its files.
    pub fn exec(&self, node: &str, command: &[&str]) -> Run {
        Command::new(repository().join("scripts/nodes"))
            .args(["exec", node, "--dir"])
            .arg(&self.dir)
            .arg("--")
            .args(command)
            .stdin(Stdio::null())
            .output()
            .unwrap()
            .into()
    }

    /// Gives `image` a second name on every node.
    pub fn tag(&self, image: &str, name: &str) {
        for node in &self.names {
            let run = self.exec(
                node,
                &[
                    "ctr",
                    "--namespace",
                    "k8s.io",
                    "images",
                    "tag",
                    "--force",
                    image,
                    name,
                ],
            );
            assert!(run.ok, "tagging {image} on {node}: {}", run.stderr);
        }
    }

    /// What neutrino could leave on `node`: its links (but the cluster
    /// network's bridge and veths), network namespaces (but pods'),
    /// nftables tables (but iptables' own, whose rules iptables-save
    /// shows), iptables chains and rules, and the files it keeps there.
    pub fn footprint(&self, node: &str) -> Vec<String> {
        let script = r#"
            ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print "link " $2 }' | grep -Ev '^link (veth|cni0$)'
            ip netns list | awk '{ print "netns " $1 }' | grep -v '^netns cni-'
            nft list tables | grep -Ev '^table ip6? (filter|nat|mangle|raw|security)$' | sed 's/^/nft /'
            iptables-save | grep -i neutrino | sed 's/^/iptables /'
            ip6tables-save | grep -i neutrino | sed 's/^/ip6tables /'
            [ ! -e /opt/cni/bin/neutrino ] || echo file /opt/cni/bin/neutrino
            find /run/neutrino /var/lib/neutrino/agent -mindepth 1 2>/dev/null | sed 's/^/file /'
            true
        "#;
        let run = self.exec(node, &["sh", "-c", script]);
        assert!(run.ok, "reading {node}: {}", run.stderr);
        run.stdout.lines().map(str::to_string).collect()
    }
}
