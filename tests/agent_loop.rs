//! The agent on a cluster: it publishes its NodeAgent record, realises in
//! its namespace only what the controller found Ready, and reports back.
//! Runs against the fake API server, as root, in namespaces of its own.

mod support;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use neutrino::api::TunnelEndpoint;
use neutrino::core::reconcile::ObservedKind;
use neutrino::core::{ClusterConfig, Key, resolve, status};
use neutrino::dataplane::dnsmasq::Dnsmasq;
use neutrino::dataplane::netlink::Netlink;
use neutrino::k8s::agent::{Options, run};
use support::fake_api::{self, Objects};
use support::{Namespaces, require_root};

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_realises_what_is_ready_and_reports() {
    require_root();
    let mut spaces = Namespaces::new("agent");
    let node = spaces.create("node-1");
    let state = std::env::temp_dir().join(format!("neutrino-{}", spaces.prefix()));

    // The quickstart as the controller left it: statuses Ready, plus web-3,
    // which the controller has not looked at yet.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    let mut snapshot = neutrino::manifest::load(&dir).unwrap().snapshot;
    let resolution = resolve(&snapshot, &ClusterConfig::default());
    status::apply(
        &mut snapshot,
        &resolution,
        &Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    );
    let mut web3 = (*snapshot.ports[&Key::new("tenant-a", "web-1")]).clone();
    web3.metadata.name = Some("web-3".into());
    web3.status = None;
    snapshot
        .ports
        .insert(Key::new("tenant-a", "web-3"), std::sync::Arc::new(web3));
    let mut stored = fake_api::stored(&snapshot);
    stored.extend([
        fake_api::node_agent("node-2", "198.18.0.2"),
        fake_api::node("node-1", "198.18.0.1"),
        fake_api::node("node-2", "198.18.0.2"),
    ]);
    let objects: Objects = Arc::new(Mutex::new(stored));

    let agent = run(
        fake_api::client(objects.clone()),
        Options {
            node: "node-1".into(),
            tunnel_ip: "198.18.0.1".parse().unwrap(),
            tunnel_endpoint: Some(TunnelEndpoint {
                rule: "cidr=198.18.0.0/16".into(),
                interface: "eth0".into(),
            }),
            physical_interfaces: Default::default(),
            gateway: true,
            netns: Some(node.clone()),
            state_dir: state.clone(),
            iptables: neutrino::core::xtables::Choice::Auto,
            cluster: ClusterConfig {
                nodes: vec![],
                ..ClusterConfig::default()
            },
            resync: Duration::from_millis(300),
            cni_socket: None,
            cni_plugin: None,
            health_listen: None,
        },
    );
    let record = "/apis/neutrino.dev/v1alpha1/nodeagents/node-1";
    let reported = async {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if objects
                .lock()
                .unwrap()
                .get(record)
                .is_some_and(|r| r["status"]["conditions"][0]["status"] == "True")
            {
                return true;
            }
        }
        false
    };
    // The agent runs until the report arrives (or the wait gives up).
    let ready = tokio::select! {
        ready = reported => ready,
        stopped = agent => panic!("the agent stopped: {stopped:?}"),
    };
    let dnsmasq = Dnsmasq::new(state.join("dhcp"));
    let record = objects.lock().unwrap()[record].clone();
    let kernel = Netlink::connect(Some(&node)).await.unwrap();
    let observed = kernel.observe().await.unwrap();
    let (_, errors) = dnsmasq.sync(&[]);
    let _ = std::fs::remove_dir_all(&state);
    assert!(ready, "the agent never reported Ready: {record:#}");
    assert!(errors.is_empty(), "{errors:?}");

    assert_eq!(
        record["spec"]["tunnelIP"], "198.18.0.1",
        "it published itself"
    );
    assert_eq!(
        record["spec"]["tunnelEndpoint"],
        serde_json::json!({"rule": "cidr=198.18.0.0/16", "interface": "eth0"}),
        "and how it chose its tunnel endpoint"
    );
    assert_eq!(record["status"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(record["status"]["heartbeat"].is_string());
    assert!(
        observed
            .links
            .iter()
            .any(|l| matches!(l.kind, ObservedKind::Bridge { .. }) && l.is_ours())
    );
    assert!(
        observed
            .fdb
            .iter()
            .any(|e| e.destination.to_string() == "198.18.0.2"),
        "FDB towards node-2, found from its record: {:?}",
        observed.fdb
    );
    let ports: Vec<&str> = observed
        .links
        .iter()
        .filter(|l| l.name.starts_with("ntp-"))
        .map(|l| l.name.as_str())
        .collect();
    assert_eq!(
        ports.len(),
        1,
        "web-1 only: web-3 is not Ready yet: {ports:?}"
    );
}
