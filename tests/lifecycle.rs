//! The chart's lifecycle on a real control plane, with the lab's nodes as
//! the cluster's: `helm uninstall` with objects still present. Needs root
//! and the control plane `scripts/install-deps --control-plane` builds.
//!
//! The control plane has no kubelet, so the test runs the hook Job's pod
//! as a kubelet would: the pod's own command, as the pod's service
//! account, then reports the pod Succeeded.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::TestLab;
use support::chart::{RELEASE, RELEASE_NAMESPACE, cluster, up_as_the_chart_runs_it};
use support::control_plane::ControlPlane;
use support::{add_foreign_objects, every_trace, foreign_objects};

/// Runs each pod of the release's hook Jobs once: its container's args as
/// `neutrino`, with a token bound to the pod, then reports it Succeeded.
/// Returns what each run printed.
fn play_kubelet_for_hooks(cluster: &ControlPlane, stop: &AtomicBool) -> Vec<String> {
    let mut ran = Vec::new();
    let mut done = std::collections::BTreeSet::new();
    while !stop.load(Ordering::Relaxed) {
        let pods = cluster.kubectl(&[
            "--namespace",
            RELEASE_NAMESPACE,
            "get",
            "pods",
            "--selector",
            "app.kubernetes.io/component=uninstall",
            "-o",
            "json",
        ]);
        let pods: serde_json::Value = serde_json::from_str(&pods.stdout).unwrap_or_default();
        for pod in pods["items"].as_array().into_iter().flatten() {
            let name = pod["metadata"]["name"].as_str().unwrap().to_string();
            if !done.insert(name.clone()) {
                continue;
            }
            let uid = pod["metadata"]["uid"].as_str().unwrap();
            let account = pod["spec"]["serviceAccountName"].as_str().unwrap();
            let token = cluster.kubectl_ok(&[
                "--namespace",
                RELEASE_NAMESPACE,
                "create",
                "token",
                account,
                "--bound-object-kind=Pod",
                &format!("--bound-object-name={name}"),
                &format!("--bound-object-uid={uid}"),
            ]);
            let kubeconfig = cluster.kubeconfig_for_token(&name, token.trim());
            let args: Vec<&str> = pod["spec"]["containers"][0]["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            let output = Command::new(env!("CARGO_BIN_EXE_neutrino"))
                .args(&args)
                .env("KUBECONFIG", &kubeconfig)
                .env("NEUTRINO_LOG", "info")
                .output()
                .unwrap();
            let code = output.status.code().unwrap_or(-1);
            ran.push(format!(
                "neutrino {} (exit {code}):\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
            let phase = if code == 0 { "Succeeded" } else { "Failed" };
            let status = serde_json::json!({"status": {
                "phase": phase,
                "containerStatuses": [{
                    "name": pod["spec"]["containers"][0]["name"],
                    "image": pod["spec"]["containers"][0]["image"],
                    "imageID": "",
                    "ready": false,
                    "restartCount": 0,
                    "state": {"terminated": {
                        "exitCode": code,
                        "reason": if code == 0 { "Completed" } else { "Error" },
                        "startedAt": "2026-01-01T00:00:00Z",
                        "finishedAt": "2026-01-01T00:00:01Z",
                    }},
                }],
            }});
            cluster.kubectl_ok(&[
                "--namespace",
                RELEASE_NAMESPACE,
                "patch",
                "pod",
                &name,
                "--subresource=status",
                "--type=merge",
                "-p",
                &status.to_string(),
            ]);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    ran
}

#[tokio::test(flavor = "multi_thread")]
async fn helm_uninstall_with_objects_present_leaves_nothing_behind() {
    let lab = TestLab::new("c-uninstall");
    up_as_the_chart_runs_it(&lab, "three-tier", 3).await;
    let cluster = cluster();
    let nodes = ["node-1", "node-2", "node-3"];
    // Someone else's bridge, chain and ipset on a node: they stay.
    let node1 = lab.node("node-1");
    let foreign = add_foreign_objects(&node1);
    let claims = cluster.kubectl_ok(&["get", "ipclaims,segmentclaims", "-A", "--no-headers"]);
    assert!(claims.lines().count() > 5, "{claims}");

    let stop = Arc::new(AtomicBool::new(false));
    let kubelet = {
        let stop = stop.clone();
        std::thread::spawn(move || play_kubelet_for_hooks(cluster, &stop))
    };
    let uninstall = cluster.helm(&[
        "uninstall",
        RELEASE,
        "--namespace",
        RELEASE_NAMESPACE,
        "--wait",
        "--timeout=5m",
    ]);
    stop.store(true, Ordering::Relaxed);
    let hooks = kubelet.join().unwrap();
    assert!(
        uninstall.ok,
        "helm uninstall: {}{}\n{}",
        uninstall.stdout,
        uninstall.stderr,
        hooks.join("\n")
    );
    assert_eq!(hooks.len(), 1, "{hooks:#?}");
    let hook = &hooks[0];
    assert!(
        hook.contains("(exit 0)") && hook.contains("3 nodes emptied"),
        "{hook}"
    );
    assert!(
        !hook.contains("released the finalizers") && !hook.contains("no controller released"),
        "the controller released everything itself while it ran:\n{hook}"
    );

    // Nothing of neutrino is left in the API but the CRDs,
    let left = cluster.kubectl_ok(&[
        "get",
        "networks,subnets,ports,routers,floatingips,securitygroups,ipclaims,segmentclaims,nodeagents",
        "--all-namespaces",
        "--ignore-not-found",
        "-o",
        "name",
    ]);
    assert_eq!(left.trim(), "", "left in the API");
    let release = cluster.kubectl_ok(&[
        "get",
        "deployments,daemonsets,jobs,serviceaccounts,configmaps",
        "--namespace",
        RELEASE_NAMESPACE,
        "--selector",
        &format!("app.kubernetes.io/instance={RELEASE}"),
        "-o",
        "name",
    ]);
    assert_eq!(release.trim(), "", "helm left its objects");
    // nor in any node's kernel — not even the empty hook chains a running
    // agent keeps, though the agents still run here: no DaemonSet stops them,
    assert_eq!(every_trace(&lab, &nodes).await, Vec::<String>::new());
    // and what was not neutrino's is all there.
    assert_eq!(foreign_objects(&node1), foreign);
    for node in nodes {
        let log = std::fs::read_to_string(lab.lab.files().agent_log(node)).unwrap();
        assert!(
            log.contains("removed neutrino from this node, as asked"),
            "{node}:\n{log}"
        );
    }
}
