//! The whole controller — watches, caches, leader election, rounds —
//! against a small fake API server that keeps objects by path, refuses a
//! second object of one name and a stale resourceVersion, and never ends a
//! watch (no events: the controller works from its lists and its resync).

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::fake_api::{self, Objects};

use neutrino::core::ClusterConfig;
use neutrino::k8s::controller::{Options, run};

/// Where the fake server keeps the leader Lease.
const LEASE: &str =
    "/apis/coordination.k8s.io/v1/namespaces/neutrino-system/leases/neutrino-controller";

/// How replica `replica-a` runs: nodes come from the NodeAgent records.
fn replica_a(resync: Duration, lease_duration: Duration) -> Options {
    Options {
        cluster: ClusterConfig {
            nodes: vec![],
            ..ClusterConfig::default()
        },
        listen: "127.0.0.1:0".parse().unwrap(),
        lease_namespace: "neutrino-system".into(),
        identity: "replica-a".into(),
        resync,
        lease_duration,
    }
}

/// The quickstart and two node records, stored by path.
fn cluster() -> BTreeMap<String, Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    let mut objects = fake_api::stored(&neutrino::manifest::load(&dir).unwrap().snapshot);
    objects.extend([
        fake_api::node_agent("node-1", "198.18.0.1"),
        fake_api::node_agent("node-2", "198.18.0.2"),
        fake_api::node("node-1", "198.18.0.1"),
        fake_api::node("node-2", "198.18.0.2"),
    ]);
    objects
}

#[tokio::test(flavor = "multi_thread")]
async fn the_controller_claims_then_writes_status_as_leader() {
    let objects: Objects = Arc::new(Mutex::new(cluster()));
    let client = fake_api::client(objects.clone());

    let controller = tokio::spawn(run(
        client,
        replica_a(Duration::from_millis(200), Duration::from_secs(15)),
    ));

    let port = "/apis/neutrino.dev/v1alpha1/namespaces/tenant-a/ports/web-1";
    let mut holder = Value::Null;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let objects = objects.lock().unwrap();
        if objects[port]["status"]["conditions"][0]["status"] == "True" {
            holder = objects[LEASE]["spec"]["holderIdentity"].clone();
            break;
        }
    }
    assert_eq!(
        holder,
        "replica-a",
        "web-1 became Ready under the leader: {:#?}",
        objects.lock().unwrap().get(port)
    );

    // Stopping hands the Lease back at once.
    controller.abort();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if objects.lock().unwrap()[LEASE]["spec"]["holderIdentity"].is_null() {
            break;
        }
    }
    let objects = objects.lock().unwrap();
    assert!(
        objects[LEASE]["spec"]["holderIdentity"].is_null(),
        "{:#}",
        objects[LEASE]
    );
    let claim =
        &objects["/apis/neutrino.dev/v1alpha1/namespaces/tenant-a/ipclaims/blue-v4.10.10.0.11"];
    assert_eq!(claim["spec"]["holder"]["name"], "web-1");
    assert!(objects.contains_key("/apis/neutrino.dev/v1alpha1/segmentclaims/vxlan.1001"));
    assert_eq!(
        objects[port]["status"]["fixedIPs"][0]["ipAddress"],
        "10.10.0.11"
    );
    // node-1's agent has not reported yet: the port says so.
    let nodes = &objects[port]["status"]["nodes"];
    assert_eq!(
        (nodes["desired"].as_i64(), nodes["ready"].as_i64()),
        (Some(1), Some(0)),
        "{nodes}"
    );
    assert_eq!(nodes["failed"][0]["node"], "node-1");
    assert_eq!(nodes["failed"][0]["message"], "its agent has not reported");
    let subnet = &objects["/apis/neutrino.dev/v1alpha1/namespaces/tenant-a/subnets/blue-v4"];
    assert_eq!(subnet["status"]["dhcpIP"], "10.10.0.10");
    assert!(objects[port]["spec"].is_object(), "spec untouched");
    let events: Vec<&Value> = objects
        .iter()
        .filter(|(path, _)| path.starts_with("/apis/events.k8s.io/v1/namespaces/tenant-a/events/"))
        .map(|(_, e)| e)
        .collect();
    assert!(
        events.iter().any(|e| e["regarding"]["name"] == "web-1"
            && e["reason"] == "Allocated"
            && e["type"] == "Normal"),
        "an Event tells web-1 was allocated: {events:#?}"
    );
    assert_eq!(objects[port]["spec"]["nodeName"], "node-1");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_keeps_its_caches_and_writes_nothing() {
    let mut stored = cluster();
    // Another replica holds the Lease, freshly renewed.
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    stored.insert(
        LEASE.into(),
        serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "neutrino-controller", "namespace": "neutrino-system", "resourceVersion": "1"},
            "spec": {"holderIdentity": "replica-b", "leaseDurationSeconds": 3600,
                     "acquireTime": now, "renewTime": now, "leaseTransitions": 1},
        }),
    );
    let before: Vec<String> = stored.keys().cloned().collect();
    let objects: Objects = Arc::new(Mutex::new(stored));
    let controller = tokio::spawn(run(
        fake_api::client(objects.clone()),
        replica_a(Duration::from_millis(100), Duration::from_secs(15)),
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    controller.abort();
    let objects = objects.lock().unwrap();
    let after: Vec<String> = objects.keys().cloned().collect();
    assert_eq!(after, before, "a follower creates nothing");
    let port = &objects["/apis/neutrino.dev/v1alpha1/namespaces/tenant-a/ports/web-1"];
    assert!(
        port.get("status").is_none_or(Value::is_null),
        "a follower writes no status: {port:#}"
    );
}

/// The whole path a replica's leadership takes: it leads, another replica
/// takes the Lease and keeps renewing it, and a Port created meanwhile is
/// neither claimed nor written by the deposed replica; when the other
/// replica stops renewing, the first takes over again and finishes the job.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_that_loses_the_lease_stops_writing_until_it_leads_again() {
    use k8s_openapi::api::coordination::v1::Lease;
    use kube::api::{Api, Patch, PatchParams, PostParams};
    use std::sync::atomic::{AtomicBool, Ordering};

    let objects: Objects = Arc::new(Mutex::new(cluster()));
    let client = fake_api::client(objects.clone());
    let controller = tokio::spawn(run(
        client.clone(),
        replica_a(Duration::from_millis(200), Duration::from_secs(2)),
    ));
    let ready = |name: &str| {
        objects.lock().unwrap()
            [&format!("/apis/neutrino.dev/v1alpha1/namespaces/tenant-a/ports/{name}")]["status"]["conditions"]
            [0]["status"]
            == "True"
    };
    let holder = || objects.lock().unwrap()[LEASE]["spec"]["holderIdentity"].clone();
    for _ in 0..100 {
        if ready("web-1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready("web-1"), "replica-a led and wrote web-1's status");

    // replica-b takes the Lease and renews it, as a live leader does.
    let renewing = Arc::new(AtomicBool::new(true));
    let usurper = tokio::spawn({
        let (leases, renewing) = (
            Api::<Lease>::namespaced(client.clone(), "neutrino-system"),
            renewing.clone(),
        );
        async move {
            while renewing.load(Ordering::Relaxed) {
                let now = k8s_openapi::jiff::Timestamp::now().to_string();
                let lease = serde_json::json!({"spec": {"holderIdentity": "replica-b",
                    "renewTime": now, "leaseDurationSeconds": 2}});
                leases
                    .patch(
                        "neutrino-controller",
                        &PatchParams::default(),
                        &Patch::Merge(lease),
                    )
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    });
    // replica-a notices at its next renewal, a second or so later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let claims_before = claim_paths(&objects);
    let port: neutrino::api::Port = serde_json::from_value(serde_json::json!({
        "apiVersion": "neutrino.dev/v1alpha1", "kind": "Port",
        "metadata": {"name": "web-3", "namespace": "tenant-a"},
        "spec": {"network": "blue", "nodeName": "node-1"},
    }))
    .unwrap();
    Api::<neutrino::api::Port>::namespaced(client.clone(), "tenant-a")
        .create(&PostParams::default(), &port)
        .await
        .unwrap();
    // A leader resyncing every 200 ms would have claimed and written by now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(holder(), "replica-b");
    assert_eq!(
        claim_paths(&objects),
        claims_before,
        "the deposed replica claims nothing"
    );
    assert!(!ready("web-3"), "the deposed replica writes no status");

    // replica-b stops renewing: once the Lease expires, replica-a leads again.
    renewing.store(false, Ordering::Relaxed);
    usurper.await.unwrap();
    for _ in 0..150 {
        if ready("web-3") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(holder(), "replica-a");
    assert!(ready("web-3"), "replica-a, leading again, finished web-3");
    assert_eq!(claim_paths(&objects).len(), claims_before.len() + 1);
    controller.abort();
}

fn claim_paths(objects: &Objects) -> Vec<String> {
    objects
        .lock()
        .unwrap()
        .keys()
        .filter(|path| path.contains("/ipclaims/"))
        .cloned()
        .collect()
}
