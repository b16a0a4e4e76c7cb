//! The chart's lifecycle on a real control plane, with the lab's nodes as
//! the cluster's: install, `helm upgrade` to a next version with a changed
//! CRD while traffic flows, and `helm uninstall` with objects still
//! present. Needs root and the control plane `scripts/install-deps
//! --control-plane` builds.
//!
//! The control plane has no kubelet, so the test does a kubelet's part: it
//! rolls the controller and the agents onto the new binary as a
//! Deployment and a DaemonSet would, and runs the uninstall hook Job's pod
//! (its own command, as its service account) and reports it Succeeded.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use neutrino::dataplane::netlink::Netlink;
use neutrino::dataplane::netns;
use support::TestLab;
use support::chart::{
    RELEASE, RELEASE_NAMESPACE, cluster, kubectl_waits_for_every_object, up_as_the_chart_runs_it,
};
use support::control_plane::ControlPlane;
use support::next_version::{NEXT, next_version};
use support::{add_foreign_objects, every_trace, foreign_objects};

/// Runs each pod of the release's hook Jobs once: its container's args as
/// `binary` (the image's), with a token bound to the pod, then reports it Succeeded.
/// Returns what each run printed.
fn play_kubelet_for_hooks(cluster: &ControlPlane, binary: &Path, stop: &AtomicBool) -> Vec<String> {
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
            let output = Command::new(binary)
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

/// Every allocation the controller recorded: each object's status without
/// its conditions and times.
fn allocations(cluster: &ControlPlane) -> Vec<String> {
    let listed = cluster.kubectl_ok(&[
        "get",
        "networks,subnets,ports,routers,floatingips",
        "--all-namespaces",
        "-o",
        "json",
    ]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let mut found: Vec<String> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|object| {
            let mut status = object["status"].clone();
            for volatile in ["conditions", "observedGeneration", "nodes"] {
                status.as_object_mut().unwrap().remove(volatile);
            }
            format!(
                "{} {}/{}: {status}",
                object["kind"].as_str().unwrap(),
                object["metadata"]["namespace"].as_str().unwrap(),
                object["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    found.sort();
    found
}

/// Each of neutrino's links on the lab's nodes, with its interface index:
/// the same index after an upgrade means the link was adopted, not made again.
async fn our_links(lab: &TestLab, nodes: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for node in nodes {
        let kernel = Netlink::connect(Some(&lab.node(node))).await.unwrap();
        for link in kernel.observe().await.unwrap().links {
            if link.is_ours() {
                let index = kernel.index(&link.name).await.unwrap().unwrap();
                found.push(format!("{node}: {} #{index}", link.name));
            }
        }
    }
    found
}

fn jsonpath(cluster: &ControlPlane, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend(what);
    let path = format!("jsonpath={path}");
    args.extend(["-o", &path]);
    cluster.kubectl_ok(&args)
}

const DESCRIBED: &str = "apiVersion: neutrino.dev/v1alpha1
kind: Network
metadata: {name: described, namespace: shop}
spec: {type: vxlan, description: the next version knows this field}
";

/// `helm upgrade` to the next version while web-1 pings app-1 across two
/// nodes and the router: the CRDs first, then the controller, then one
/// agent at a time, as the docs say.
async fn upgrade(lab: &TestLab, cluster: &ControlPlane, nodes: &[&str]) {
    let next = next_version();
    let before = allocations(cluster);
    let links = our_links(lab, nodes).await;
    let refused = cluster.kubectl_with(&["apply", "-f", "-"], DESCRIBED);
    assert!(
        !refused.ok && refused.stderr.contains("description"),
        "the old CRD took the new field: {}{}",
        refused.stdout,
        refused.stderr
    );

    let app = lab.lab.files().read_state().unwrap().workloads["shop/app-1"]
        .lease
        .clone()
        .unwrap()
        .ip;
    let web = lab
        .lab
        .workload_namespace(&neutrino::core::Key::new("shop", "web-1"))
        .unwrap();
    let ping = netns::command(&web, "ping")
        .unwrap()
        .args(["-i", "0.05", "-W", "1", &app])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let crds = next.chart.join("crds");
    cluster.kubectl_ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        crds.to_str().unwrap(),
    ]);
    let upgraded = cluster.helm(&[
        "upgrade",
        RELEASE,
        next.chart.to_str().unwrap(),
        "--namespace",
        RELEASE_NAMESPACE,
        "--reset-then-reuse-values",
    ]);
    assert!(
        upgraded.ok,
        "helm upgrade: {}{}",
        upgraded.stdout, upgraded.stderr
    );
    let next_lab = neutrino::lab::Lab::new(&lab.dir, &next.binary);
    assert!(next_lab.stop_controller());
    next_lab.restart_controller().unwrap();
    // The new controller with the old agents: the skew a rolling upgrade has.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for node in nodes {
        assert!(next_lab.stop_agent(node));
        next_lab.restart_agent(node).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let reported = jsonpath(
                cluster,
                &["nodeagent", node],
                "{.status.version} {.status.conditions[?(@.type==\"Ready\")].status}",
            );
            if reported == format!("{NEXT} True") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{node}'s new agent is not Ready: {reported}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(ping.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let report = String::from_utf8_lossy(&ping.wait_with_output().unwrap().stdout).into_owned();
    let summary = report
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_default()
        .to_string();
    eprintln!("ping across the upgrade: {summary}");
    assert!(
        summary.contains(" 0% packet loss") && !summary.contains("errors"),
        "packets were lost during the upgrade:\n{report}"
    );

    assert_eq!(allocations(cluster), before, "allocations changed");
    assert_eq!(our_links(lab, nodes).await, links, "links were made again");
    kubectl_waits_for_every_object(cluster, "three-tier");
    let accepted = cluster.kubectl_with(&["apply", "-f", "-"], DESCRIBED);
    assert!(accepted.ok, "{}", accepted.stderr);
    assert_eq!(
        jsonpath(
            cluster,
            &["network", "described", "-n", "shop"],
            "{.spec.description}"
        ),
        "the next version knows this field"
    );
    let versions = jsonpath(cluster, &["nodeagents"], "{.items[*].status.version}");
    assert_eq!(versions, [NEXT; 3].join(" "));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chart_upgrades_in_place_and_uninstalls_leaving_nothing() {
    // Built first: on a cold cache that takes minutes.
    next_version();
    let lab = TestLab::new("c-lifecycle");
    up_as_the_chart_runs_it(&lab, "three-tier", 3).await;
    let cluster = cluster();
    let nodes = ["node-1", "node-2", "node-3"];
    upgrade(&lab, cluster, &nodes).await;

    // Someone else's bridge, chain and ipset on a node: they stay.
    let node1 = lab.node("node-1");
    let foreign = add_foreign_objects(&node1);
    let claims = cluster.kubectl_ok(&["get", "ipclaims,segmentclaims", "-A", "--no-headers"]);
    assert!(claims.lines().count() > 5, "{claims}");

    let stop = Arc::new(AtomicBool::new(false));
    let kubelet = {
        let stop = stop.clone();
        let binary = next_version().binary.clone();
        std::thread::spawn(move || play_kubelet_for_hooks(cluster, &binary, &stop))
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
    // The agents, whose records are gone, stay idle: a resync later they
    // have neither built anything again nor tried to report.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(every_trace(&lab, &nodes).await, Vec::<String>::new());
    for node in nodes {
        let log = std::fs::read_to_string(lab.lab.files().agent_log(node)).unwrap();
        let (_, after) = log
            .rsplit_once("removed neutrino from this node, as asked")
            .unwrap_or_else(|| panic!("{node} was never asked to remove:\n{log}"));
        let after: Vec<&str> = after.lines().skip(1).collect();
        assert!(
            after.iter().all(|l| !l.contains("could not report")),
            "{node} kept reporting after its removal:\n{}",
            after.join("\n")
        );
    }
}
