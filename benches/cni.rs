//! A CNI ADD through neutrino beside the reference plugin, Debian's
//! `bridge` with `host-local` IPAM, in the same run: both called by the
//! real cnitool from a node's namespace, each ADD from a fresh sandbox on
//! a settled kernel.
//!
//! - **Port already allocated**: a pod's sandbox made again — its Port is
//!   allocated and on the node's plan; ADD makes its veth straight in the
//!   sandbox. The target: at most the bridge plugin's time.
//! - **New pod**: the pod's first ADD — the Port made, allocated by the
//!   controller, and plugged by the agent into the pod.
//! - **New pod selecting the network**: the same for a pod whose Multus
//!   annotation selects the network, its sandbox made after the pod is
//!   created, as the kubelet makes it: the agent makes the Port when the
//!   pod is bound, and the ADD finds it allocated and plugged. The time
//!   from the pod's creation to the ADD is printed beside it (on the lab's
//!   real nodes the kubelet takes longer: see tests/nodes.rs).
//!
//! Needs root, and the control plane `scripts/install-deps --control-plane`
//! builds (started here, as the cluster tests start it). The rounds
//! alternate which side goes first. `NEUTRINO_BENCH_ROUNDS` sets them
//! (default 15). `cargo bench --bench cni`.

use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use neutrino::dataplane::netns;

mod support;
use support::{Namespace, range, ratios, require_root, setting, settle};

#[path = "../tests/support/mod.rs"]
mod cluster;
use cluster::TestLab;
use cluster::chart::{
    bound_pod, cluster as control_plane, network_attachment, up_as_the_chart_runs_it,
};
use cluster::control_plane::tools;

const NAMESPACE: &str = "tenant-a";

/// cnitool, run in `node`'s namespace for `sandbox`; how long it took.
fn cnitool(
    node: &str,
    command: &str,
    network: &str,
    sandbox: &str,
    bin: &Path,
    conf: &Path,
    args: &str,
) -> Duration {
    let clients = tools().parent().unwrap().join("cni-bin");
    let mut run = netns::command(node, &clients.join("cnitool").to_string_lossy()).unwrap();
    run.args([command, network, &netns::path(sandbox).to_string_lossy()])
        .env("CNI_PATH", bin)
        .env("NETCONFPATH", conf)
        .env("CNI_IFNAME", "net1")
        .env("CNI_ARGS", args);
    let started = Instant::now();
    let output = run.output().unwrap();
    let took = started.elapsed();
    assert!(
        output.status.success(),
        "cnitool {command} {network}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    took
}

fn pod(name: &str, node: &str) -> String {
    bound_pod(NAMESPACE, name, node, &json!({}))
}

fn delete_pod(name: &str) {
    control_plane().kubectl_ok(&[
        "--namespace",
        NAMESPACE,
        "delete",
        "pod",
        name,
        "--grace-period=0",
        "--force",
    ]);
}

fn pod_args(name: &str, uid: &str) -> String {
    format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={NAMESPACE};K8S_POD_NAME={name};K8S_POD_UID={uid}")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn main() {
    require_root();
    let rounds = setting("NEUTRINO_BENCH_ROUNDS", 15);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let lab = TestLab::new("cni-bench");
    runtime.block_on(up_as_the_chart_runs_it(&lab, "quickstart", 2));
    let node = lab.node("node-1");

    // One bin and configuration directory for both plugins.
    let dir = lab.dir.join("bench-runtime");
    let (bin, conf): (PathBuf, PathBuf) = (dir.join("bin"), dir.join("net.d"));
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_neutrino-cni"), bin.join("neutrino")).unwrap();
    for plugin in ["bridge", "host-local"] {
        std::fs::copy(format!("/usr/lib/cni/{plugin}"), bin.join(plugin)).unwrap();
    }
    let neutrino = json!({
        "cniVersion": "1.0.0", "name": "neutrino", "type": "neutrino", "network": "blue",
        "socket": lab.lab.files().cni_socket("node-1"),
    });
    let bridge = json!({
        "cniVersion": "1.0.0", "name": "bridge", "type": "bridge", "bridge": "cnibr0",
        "ipam": {"type": "host-local", "subnet": "10.99.0.0/16", "dataDir": dir.join("ipam")},
    });
    std::fs::write(conf.join("neutrino.conf"), neutrino.to_string()).unwrap();
    std::fs::write(conf.join("bridge.conf"), bridge.to_string()).unwrap();

    // The pod whose sandboxes are made again: its Port allocated and
    // plugged once, then given back.
    let uid = pod("bench-kept", "node-1");
    let kept = pod_args("bench-kept", &uid);
    let first = Namespace::create(&format!("{}-first", lab.name));
    cnitool(&node, "add", "neutrino", &first.0, &bin, &conf, &kept);
    cnitool(&node, "del", "neutrino", &first.0, &bin, &conf, &kept);
    drop(first);
    // The bridge made once, as it is on a node in use.
    let warm = Namespace::create(&format!("{}-warm", lab.name));
    cnitool(&node, "add", "bridge", &warm.0, &bin, &conf, "");
    cnitool(&node, "del", "bridge", &warm.0, &bin, &conf, "");
    drop(warm);

    // Multus's definition of the network, for the pods that select it.
    let config =
        json!({"cniVersion": "1.0.0", "name": "neutrino", "type": "neutrino", "network": "blue"});
    network_attachment(NAMESPACE, "blue", &config);
    let (mut ours, mut theirs, mut new_pod, mut theirs_beside_new) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut selecting, mut theirs_beside_selecting, mut head_start) =
        (Vec::new(), Vec::new(), Vec::new());
    // Each ADD starts on a kernel done with what the last round deleted.
    let probe = format!("{}-probe", lab.name);
    for round in 0..rounds {
        let bridge_round = |tag: &str| {
            let sandbox = Namespace::create(&format!("{}-b{round}{tag}", lab.name));
            settle(&probe);
            let took = cnitool(&node, "add", "bridge", &sandbox.0, &bin, &conf, "");
            cnitool(&node, "del", "bridge", &sandbox.0, &bin, &conf, "");
            ms(took)
        };
        let kept_round = || {
            let sandbox = Namespace::create(&format!("{}-k{round}", lab.name));
            settle(&probe);
            let took = cnitool(&node, "add", "neutrino", &sandbox.0, &bin, &conf, &kept);
            cnitool(&node, "del", "neutrino", &sandbox.0, &bin, &conf, &kept);
            ms(took)
        };
        let new_round = || {
            let name = format!("bench-new-{round}");
            let args = pod_args(&name, &pod(&name, "node-1"));
            let sandbox = Namespace::create(&format!("{}-n{round}", lab.name));
            settle(&probe);
            let took = cnitool(&node, "add", "neutrino", &sandbox.0, &bin, &conf, &args);
            cnitool(&node, "del", "neutrino", &sandbox.0, &bin, &conf, &args);
            delete_pod(&name);
            ms(took)
        };
        let mut selecting_round = || {
            let name = format!("bench-sel-{round}");
            settle(&probe);
            let created = Instant::now();
            let annotations = json!({"k8s.v1.cni.cncf.io/networks": "blue"});
            let args = pod_args(&name, &bound_pod(NAMESPACE, &name, "node-1", &annotations));
            let sandbox = Namespace::create(&format!("{}-s{round}", lab.name));
            head_start.push(ms(created.elapsed()));
            let took = cnitool(&node, "add", "neutrino", &sandbox.0, &bin, &conf, &args);
            cnitool(&node, "del", "neutrino", &sandbox.0, &bin, &conf, &args);
            delete_pod(&name);
            ms(took)
        };
        if round % 2 == 0 {
            theirs.push(bridge_round("a"));
            ours.push(kept_round());
            theirs_beside_new.push(bridge_round("c"));
            new_pod.push(new_round());
            theirs_beside_selecting.push(bridge_round("e"));
            selecting.push(selecting_round());
        } else {
            ours.push(kept_round());
            theirs.push(bridge_round("a"));
            new_pod.push(new_round());
            theirs_beside_new.push(bridge_round("c"));
            selecting.push(selecting_round());
            theirs_beside_selecting.push(bridge_round("e"));
        }
    }
    delete_pod("bench-kept");

    println!("CNI ADD through cnitool, ms, {rounds} rounds, min–max (median)");
    println!(
        "{:<44} {:>22} {:>22}   neutrino / bridge",
        "", "neutrino", "bridge + host-local"
    );
    let row = |what: &str, ours: &[f64], theirs: &[f64]| {
        println!(
            "{what:<44} {:>22} {:>22}   {}",
            format!("{} ({:.1})", range(ours, 1), median(ours)),
            format!("{} ({:.1})", range(theirs, 1), median(theirs)),
            ratios(ours, theirs)
        );
    };
    row(
        "Port already allocated (sandbox made again)",
        &ours,
        &theirs,
    );
    row(
        "new pod (Port made, allocated, plugged)",
        &new_pod,
        &theirs_beside_new,
    );
    row(
        "new pod selecting the network (Port made when bound)",
        &selecting,
        &theirs_beside_selecting,
    );
    println!(
        "  (its ADD began {} ms after the pod's creation began, median {:.0})",
        range(&head_start, 0),
        median(&head_start)
    );
}
