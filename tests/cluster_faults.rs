//! neutrino on a real control plane that fails: the API server or etcd
//! killed under traffic, the leader of two controller replicas killed while
//! hundreds of ports arrive at once, and a stored object its schema no
//! longer describes. A binary of its own: killing the API server must not
//! disturb the other cluster tests.

mod support;

use futures::StreamExt;
use kube::api::{Api, PostParams};
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use neutrino::api::Port;
use neutrino::dataplane::netns;
use support::TestLab;
use support::chart::{
    cluster, kubectl_waits_for_every_object, one_lab_at_a_time, up_as_the_chart_runs_it,
};
use support::control_plane::ControlPlane;

fn quickstart_port(name: &str, node: &str) -> String {
    format!(
        "apiVersion: neutrino.dev/v1alpha1\nkind: Port\nmetadata: {{name: {name}, namespace: tenant-a}}\nspec: {{network: blue, nodeName: {node}}}\n"
    )
}

/// Waits until a port is Ready and realised on its node.
async fn realised(cluster: &ControlPlane, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = cluster.kubectl(&[
            "--namespace",
            "tenant-a",
            "get",
            "port",
            name,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status} {.status.nodes.ready}",
        ]);
        if ready.ok && ready.stdout.trim() == "True 1" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "port {name} not realised after 60 s: {}{}",
            ready.stdout,
            ready.stderr
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Kills `component` of the control plane while web-1 pings web-2, brings
/// it back, and checks that no packet was lost and that the controller and
/// both agents serve new ports again.
async fn outage_of(component: &str, tag: &str) {
    let _one = one_lab_at_a_time().await;
    let lab = TestLab::new(tag);
    let summary = up_as_the_chart_runs_it(&lab, "quickstart", 2).await;
    let cluster = cluster();
    let web2 = summary.workloads["tenant-a/web-2"]
        .lease
        .clone()
        .unwrap()
        .ip;
    let workload = &summary.workloads["tenant-a/web-1"].namespace;
    // 200 pings 50 ms apart: 10 s, across the whole outage.
    let ping = netns::command(workload, "ping")
        .unwrap()
        .args(["-c", "200", "-i", "0.05", "-W", "1", &web2])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.kill(component);
    tokio::time::sleep(Duration::from_secs(4)).await;
    cluster.restart(component);
    let output = ping.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        report.contains("200 received, 0% packet loss"),
        "packets were lost while {component} was down:\n{report}"
    );

    // Both agents and the controller reconnected: a new port on each node
    // is allocated and realised.
    for (name, node) in [("web-3", "node-1"), ("web-4", "node-2")] {
        let run = cluster.kubectl_with(&["apply", "-f", "-"], &quickstart_port(name, node));
        assert!(run.ok, "{}", run.stderr);
    }
    realised(cluster, "web-3").await;
    realised(cluster, "web-4").await;
    kubectl_waits_for_every_object(cluster, "quickstart");
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_the_api_server_loses_no_packet_and_everything_reconnects() {
    outage_of("kube-apiserver", "f-api").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_etcd_loses_no_packet_and_everything_reconnects() {
    outage_of("etcd", "f-etcd").await;
}

/// Controller replicas of the test's own, killed when the test ends.
struct Replicas(Vec<(String, Child)>);

impl Drop for Replicas {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

const BULK: &str = r#"
apiVersion: neutrino.dev/v1alpha1
kind: Network
metadata: {name: bulk, namespace: bulk}
spec: {type: vxlan}
---
apiVersion: neutrino.dev/v1alpha1
kind: Subnet
metadata: {name: bulk-v4, namespace: bulk}
spec: {network: bulk, cidr: 10.64.0.0/20}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_and_a_failover_under_500_concurrent_ports_hand_out_no_address_twice() {
    let _one = one_lab_at_a_time().await;
    let lab = TestLab::new("f-ha");
    up_as_the_chart_runs_it(&lab, "quickstart", 2).await;
    let cluster = cluster();

    // Two replicas with a 3 s Lease in place of the lab's controller.
    assert!(lab.lab.stop_controller());
    let files = lab.lab.files();
    let mut replicas = Replicas(
        ["replica-a", "replica-b"]
            .into_iter()
            .map(|identity| {
                let log = std::fs::File::create(lab.dir.join(format!("{identity}.log"))).unwrap();
                let child = Command::new(env!("CARGO_BIN_EXE_neutrino"))
                    .args(["controller", "--listen", "127.0.0.1:0"])
                    .args([
                        "--lease-namespace",
                        "neutrino-system",
                        "--identity",
                        identity,
                    ])
                    .args(["--lease-seconds", "3", "--resync-seconds", "5", "--cluster"])
                    .arg(files.cluster())
                    .env("KUBECONFIG", files.controller_kubeconfig())
                    .env("NEUTRINO_LOG", "info,kube=warn")
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().unwrap())
                    .stderr(log)
                    .spawn()
                    .unwrap();
                (identity.to_string(), child)
            })
            .collect(),
    );

    cluster.kubectl_ok(&["create", "namespace", "bulk"]);
    let run = cluster.kubectl_with(&["apply", "-f", "-"], BULK);
    assert!(run.ok, "{}", run.stderr);

    // 500 ports, 50 requests in flight at a time; the leader is killed
    // half-way and the other replica takes over.
    let client = neutrino::lab::cluster::connect(&cluster.kubeconfig)
        .await
        .unwrap();
    let ports: Api<Port> = Api::namespaced(client.clone(), "bulk");
    let create = |i: usize| {
        let ports = ports.clone();
        async move {
            let port: Port = serde_json::from_value(serde_json::json!({
                "apiVersion": "neutrino.dev/v1alpha1", "kind": "Port",
                "metadata": {"name": format!("p-{i}"), "namespace": "bulk"},
                "spec": {"network": "bulk"},
            }))
            .unwrap();
            ports.create(&PostParams::default(), &port).await.unwrap();
        }
    };
    futures::stream::iter(0..250)
        .map(create)
        .buffer_unordered(50)
        .collect::<Vec<()>>()
        .await;
    let leader = cluster.kubectl_ok(&[
        "--namespace",
        "neutrino-system",
        "get",
        "lease",
        "neutrino-controller",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    let killed = replicas
        .0
        .iter_mut()
        .find(|(identity, _)| *identity == leader)
        .unwrap_or_else(|| panic!("the Lease is held by {leader:?}, not a replica"));
    killed.1.kill().unwrap();
    futures::stream::iter(250..500)
        .map(create)
        .buffer_unordered(50)
        .collect::<Vec<()>>()
        .await;

    let created = Instant::now();
    let deadline = created + Duration::from_secs(180);
    let addresses = loop {
        let listed = ports.list(&Default::default()).await.unwrap().items;
        let ready: Vec<&Port> = listed
            .iter()
            .filter(|p| {
                p.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
            })
            .collect();
        if ready.len() == 500 {
            break ready
                .iter()
                .flat_map(|p| p.status.as_ref().unwrap().fixed_ips.iter())
                .map(|ip| ip.ip_address.clone())
                .collect::<Vec<String>>();
        }
        assert!(
            Instant::now() < deadline,
            "only {} of 500 ports Ready after 180 s",
            ready.len()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    eprintln!(
        "500 ports Ready {:.1?} after the last was created; {leader} was killed half-way",
        created.elapsed()
    );
    let distinct: BTreeSet<&String> = addresses.iter().collect();
    assert_eq!(addresses.len(), 500, "every port has one address");
    assert_eq!(distinct.len(), 500, "an address was handed out twice");
    // Each is held by a claim of its own port.
    let claims = cluster.kubectl_ok(&[
        "--namespace",
        "bulk",
        "get",
        "ipclaims",
        "-o",
        "jsonpath={range .items[*]}{.spec.address} {.spec.holder.kind}{\"\\n\"}{end}",
    ]);
    let held: BTreeSet<&str> = claims
        .lines()
        .filter(|l| l.ends_with(" Port"))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        held,
        distinct.iter().map(|a| a.as_str()).collect(),
        "the claims are the addresses the statuses show"
    );

    // The lab's own controller releases what is left when the lab goes.
    drop(replicas);
    lab.lab.restart_controller().unwrap();
    cluster.kubectl_ok(&["delete", "namespace", "bulk", "--timeout=120s"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_stored_object_does_not_stop_the_rest_being_served() {
    let _one = one_lab_at_a_time().await;
    let lab = TestLab::new("f-bad");
    up_as_the_chart_runs_it(&lab, "quickstart", 2).await;
    let cluster = cluster();

    // A Port the schema does not describe, as one stored before a schema
    // change would be: the schema is relaxed for a moment, then restored.
    let crd = cluster.kubectl_ok(&["get", "crd", "ports.neutrino.dev", "-o", "json"]);
    let original: serde_json::Value = serde_json::from_str(&crd).unwrap();
    let mut relaxed = original.clone();
    relaxed["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = serde_json::json!({
        "type": "object", "x-kubernetes-preserve-unknown-fields": true,
    });
    let run = cluster.kubectl_with(&["replace", "-f", "-"], &relaxed.to_string());
    assert!(run.ok, "{}", run.stderr);
    let broken = r#"{"apiVersion": "neutrino.dev/v1alpha1", "kind": "Port",
        "metadata": {"name": "broken", "namespace": "tenant-a"},
        "spec": {"network": 7, "fixedIPs": "nope"}}"#;
    let mut created = cluster.kubectl_with(&["create", "-f", "-"], broken);
    for _ in 0..50 {
        // The relaxed schema takes a moment to reach every handler.
        if created.ok {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        created = cluster.kubectl_with(&["create", "-f", "-"], broken);
    }
    assert!(created.ok, "{}", created.stderr);
    let current: serde_json::Value = serde_json::from_str(&cluster.kubectl_ok(&[
        "get",
        "crd",
        "ports.neutrino.dev",
        "-o",
        "json",
    ]))
    .unwrap();
    let mut restored = original.clone();
    restored["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    let run = cluster.kubectl_with(&["replace", "-f", "-"], &restored.to_string());
    assert!(run.ok, "{}", run.stderr);

    // Started afresh, the controller and an agent list it among the others.
    assert!(lab.lab.stop_controller());
    lab.lab.restart_controller().unwrap();
    // Killed, the agent is started again by its supervisor.
    lab.lab.kill_agent("node-1").unwrap();

    let run = cluster.kubectl_with(&["apply", "-f", "-"], &quickstart_port("web-3", "node-1"));
    assert!(run.ok, "{}", run.stderr);
    realised(cluster, "web-3").await;
    kubectl_waits_for_every_object(cluster, "quickstart");
    let log = std::fs::read_to_string(lab.lab.files().controller_log()).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("skipping a malformed object") && l.contains("broken")),
        "the controller did not say what it skipped:\n{log}"
    );
    // And the Port's owner reads it where they look: a Warning on it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let events: serde_json::Value = serde_json::from_str(&cluster.kubectl_ok(&[
            "--namespace",
            "tenant-a",
            "get",
            "events",
            "-o",
            "json",
        ]))
        .unwrap();
        let told = events["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["involvedObject"]["name"] == "broken" && e["reason"] == "Malformed");
        if let Some(event) = told {
            assert_eq!(event["type"], "Warning");
            let note = event["message"].as_str().unwrap();
            assert!(note.starts_with("spec."), "{note}");
            assert!(note.contains("neutrino skips this object"), "{note}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no Malformed event on port broken: {events:#}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    cluster.kubectl_ok(&["--namespace", "tenant-a", "delete", "port", "broken"]);
}
