//! Claims on a cluster: resolve honours them, and the controller's actions
//! create the missing ones before any status shows what they hold; two
//! controllers racing on stale views through the real executor never show
//! one address twice.

mod support;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use std::path::Path;

use neutrino::api::{ClaimHolder, IPClaim, IPClaimSpec, SegmentClaim, SegmentClaimSpec};
use neutrino::core::controller::actions;
use neutrino::core::{ClusterConfig, Key, Reason, Snapshot, resolve};

/// The quickstart with the controller's finalizers already on its Network
/// and Subnet, as after its first round.
fn quickstart() -> Snapshot {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    let mut snapshot = neutrino::manifest::load(&dir).unwrap().snapshot;
    let guard = || Some(vec![neutrino::core::finalizers::FINALIZER.to_string()]);
    snapshot
        .networks
        .values_mut()
        .for_each(|n| std::sync::Arc::make_mut(n).metadata.finalizers = guard());
    snapshot
        .subnets
        .values_mut()
        .for_each(|n| std::sync::Arc::make_mut(n).metadata.finalizers = guard());
    snapshot
}

fn ip_claim(subnet: &str, address: &str, kind: &str, holder: &str) -> IPClaim {
    let key = Key::new(
        "tenant-a",
        neutrino::core::allocate::claim_name(subnet, address.parse().unwrap()),
    );
    IPClaim {
        metadata: ObjectMeta {
            name: Some(key.name),
            namespace: Some(key.namespace),
            ..ObjectMeta::default()
        },
        spec: IPClaimSpec {
            subnet: subnet.into(),
            address: address.into(),
            holder: ClaimHolder {
                kind: kind.into(),
                namespace: "tenant-a".into(),
                name: holder.into(),
            },
        },
    }
}

fn add(snapshot: &mut Snapshot, claim: IPClaim) {
    let key = Key::new(
        claim.metadata.namespace.clone().unwrap(),
        claim.metadata.name.clone().unwrap(),
    );
    snapshot.ip_claims.insert(key, std::sync::Arc::new(claim));
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}

#[test]
fn a_claim_is_its_holders_and_no_one_elses() {
    let config = ClusterConfig::default();
    let mut snapshot = quickstart();
    add(
        &mut snapshot,
        ip_claim("blue-v4", "10.10.0.50", "Port", "web-2"),
    );
    let r = resolve(&snapshot, &config);
    let web2 = r.ports[&Key::new("tenant-a", "web-2")].as_ref().unwrap();
    assert_eq!(
        web2.fixed_ips[0].1.to_string(),
        "10.10.0.50",
        "the claim wins over the pool order"
    );

    // Someone asking for a claimed address is refused, naming the holder.
    let mut port = (*snapshot.ports[&Key::new("tenant-a", "web-1")]).clone();
    port.spec.fixed_ips = vec![neutrino::api::FixedIP {
        subnet: "blue-v4".into(),
        ip_address: Some("10.10.0.50".into()),
    }];
    snapshot
        .ports
        .insert(Key::new("tenant-a", "web-1"), std::sync::Arc::new(port));
    let r = resolve(&snapshot, &config);
    let problems = r.ports[&Key::new("tenant-a", "web-1")]
        .as_ref()
        .unwrap_err();
    assert_eq!(problems[0].reason, Reason::InUse);
    assert!(
        problems[0].message.contains("port tenant-a/web-2"),
        "{problems:?}"
    );
}

#[test]
fn a_segment_claim_is_its_networks() {
    let config = ClusterConfig::default();
    let mut snapshot = quickstart();
    let mut network = (*snapshot.networks[&Key::new("tenant-a", "blue")]).clone();
    network.spec.segmentation_id = None;
    snapshot
        .networks
        .insert(Key::new("tenant-a", "blue"), std::sync::Arc::new(network));
    let claim = |vni: u32, name: &str| SegmentClaim {
        metadata: ObjectMeta {
            name: Some(format!("vxlan.{vni}")),
            ..ObjectMeta::default()
        },
        spec: SegmentClaimSpec {
            network: ClaimHolder {
                kind: "Network".into(),
                namespace: "tenant-a".into(),
                name: name.into(),
            },
        },
    };
    snapshot
        .segment_claims
        .insert("vxlan.4242".into(), claim(4242, "blue").into());
    snapshot
        .segment_claims
        .insert("vxlan.1000".into(), claim(1000, "gone").into());
    let r = resolve(&snapshot, &config);
    assert_eq!(
        r.network(&Key::new("tenant-a", "blue"))
            .unwrap()
            .segmentation_id,
        Some(4242)
    );

    let a = actions(&snapshot, &r, &Default::default(), &now());
    assert_eq!(
        a.delete_segment_claims,
        vec!["vxlan.1000".to_string()],
        "the claim of a network that is gone goes"
    );
}

#[test]
fn claims_and_statuses_in_one_round_then_nothing() {
    let config = ClusterConfig::default();
    let mut snapshot = quickstart();

    // Round 1: every allocation needs its claim, and every status shows
    // its allocation: the adapter writes a status only once its claims
    // are made, so a new Port is allocated in one round.
    let first = actions(
        &snapshot,
        &resolve(&snapshot, &config),
        &Default::default(),
        &now(),
    );
    let names: Vec<String> = first
        .create_ip_claims
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "blue-v4.10.10.0.10",
            "blue-v4.10.10.0.11",
            "blue-v4.10.10.0.12"
        ]
    );
    assert_eq!(
        first.create_segment_claims[0].metadata.name.as_deref(),
        Some("vxlan.1001")
    );
    assert_eq!(first.statuses.ports.len(), 2);
    assert_eq!(first.statuses.subnets.len(), 1);
    assert_eq!(first.statuses.networks.len(), 1);
    let status = first.statuses.ports[&Key::new("tenant-a", "web-1")]
        .status
        .clone()
        .unwrap();
    assert_eq!(status.fixed_ips[0].ip_address, "10.10.0.11");
    for (key, port) in first.statuses.ports {
        snapshot.ports.insert(key, port);
    }
    for (key, subnet) in first.statuses.subnets {
        snapshot.subnets.insert(key, subnet);
    }
    for (key, network) in first.statuses.networks {
        snapshot.networks.insert(key, network);
    }

    // Round 2, from a cache that has the statuses but not yet the claims:
    // the claims are asked for again (the server answers that they are
    // the holder's already), and no status changes.
    let behind = actions(
        &snapshot,
        &resolve(&snapshot, &config),
        &Default::default(),
        &now(),
    );
    assert_eq!(behind.create_ip_claims.len(), 3);
    assert!(behind.statuses.has_no_objects());

    for claim in first.create_ip_claims {
        add(&mut snapshot, claim);
    }
    for claim in first.create_segment_claims {
        snapshot
            .segment_claims
            .insert(claim.metadata.name.clone().unwrap(), claim.into());
    }

    // Round 3: converged.
    assert!(
        actions(
            &snapshot,
            &resolve(&snapshot, &config),
            &Default::default(),
            &now()
        )
        .is_empty()
    );

    // A deleted port's claim goes; nobody else's does.
    snapshot.ports.remove(&Key::new("tenant-a", "web-2"));
    let after = actions(
        &snapshot,
        &resolve(&snapshot, &config),
        &Default::default(),
        &now(),
    );
    assert_eq!(
        after.delete_ip_claims,
        vec![Key::new("tenant-a", "blue-v4.10.10.0.12")]
    );
}

mod race {
    //! Two controllers, each acting on its own, possibly stale, view of the
    //! API, both carrying their actions out with the real executor against
    //! a fake API server that, as a real one, refuses a second object of one
    //! name, a status write on an object changed since it was read, and a
    //! deletion of a claim replaced since it was seen (by uid).

    use super::*;
    use crate::support::fake_api::{self, Objects};
    use neutrino::k8s::execute::execute;
    use neutrino::k8s::metrics::Metrics;
    use proptest::prelude::*;
    use serde_json::{Value, json};
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Debug)]
    pub enum Step {
        AddPort,
        DeletePort(usize),
        Refresh(usize),
        Reconcile(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => Just(Step::AddPort),
            1 => any::<usize>().prop_map(Step::DeletePort),
            3 => (0usize..2).prop_map(Step::Refresh),
            4 => (0usize..2).prop_map(Step::Reconcile),
        ]
    }

    const PORTS: &str = "/apis/neutrino.dev/v1alpha1/namespaces/tenant-a/ports";

    /// A /28 subnet: few enough addresses for the controllers to fight over.
    fn tiny() -> BTreeMap<String, Value> {
        let mut snapshot = quickstart();
        snapshot.ports.clear();
        let key = Key::new("tenant-a", "blue-v4");
        let mut subnet = (*snapshot.subnets[&key]).clone();
        subnet.spec.cidr = "10.10.0.0/28".into();
        subnet.spec.allocation_pools = vec![];
        subnet.spec.dns_nameservers = vec![];
        snapshot.subnets.insert(key, std::sync::Arc::new(subnet));
        fake_api::stored(&snapshot)
    }

    fn port(n: usize) -> Value {
        json!({
            "apiVersion": "neutrino.dev/v1alpha1", "kind": "Port",
            "metadata": {"name": format!("p{n}"), "namespace": "tenant-a",
                         "uid": format!("uid-p{n}"), "resourceVersion": format!("p{n}")},
            "spec": {"network": "blue", "fixedIPs": [{"subnet": "blue-v4"}], "nodeName": "node-1"},
        })
    }

    /// One round of a controller on `view`, carried out for real.
    fn reconcile(runtime: &tokio::runtime::Runtime, client: &kube::Client, view: &Snapshot) {
        let config = ClusterConfig::default();
        let resolution = resolve(view, &config);
        let round = actions(view, &resolution, &Default::default(), &now());
        runtime.block_on(execute(client, view, round, &Metrics::default()));
    }

    /// No address is shown by two ports, and every address shown is claimed
    /// by the port that shows it.
    fn check(objects: &Objects) -> Result<(), TestCaseError> {
        let server = fake_api::snapshot_of(&objects.lock().unwrap());
        let mut seen: BTreeMap<String, Key> = BTreeMap::new();
        for (key, port) in &server.ports {
            for fixed in port.status.iter().flat_map(|s| &s.fixed_ips) {
                if let Some(other) = seen.insert(fixed.ip_address.clone(), key.clone()) {
                    return Err(TestCaseError::fail(format!(
                        "{} shown by {other} and {key}",
                        fixed.ip_address
                    )));
                }
                let claim = Key::new(
                    "tenant-a",
                    neutrino::core::allocate::claim_name(
                        "blue-v4",
                        fixed.ip_address.parse().unwrap(),
                    ),
                );
                let held = server.ip_claims.get(&claim).is_some_and(|c| {
                    c.spec.holder.name == key.name && c.spec.holder.kind == "Port"
                });
                prop_assert!(
                    held,
                    "{} shown by {} is not claimed by it",
                    fixed.ip_address,
                    key
                );
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn two_racing_controllers_never_show_one_address_twice(steps in proptest::collection::vec(step(), 1..50)) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let objects: Objects = Arc::new(Mutex::new(tiny()));
            let client = runtime.block_on(async { fake_api::client(objects.clone()) });
            let mut views: [Option<Snapshot>; 2] = [None, None];
            let mut next_port = 0;
            for step in steps {
                match step {
                    Step::AddPort => {
                        objects.lock().unwrap().insert(format!("{PORTS}/p{next_port}"), port(next_port));
                        next_port += 1;
                    }
                    Step::DeletePort(i) => {
                        let mut stored = objects.lock().unwrap();
                        let ports: Vec<String> = stored.keys().filter(|p| p.starts_with(PORTS)).cloned().collect();
                        if !ports.is_empty() {
                            stored.remove(&ports[i % ports.len()]);
                        }
                    }
                    Step::Refresh(c) => views[c] = Some(fake_api::snapshot_of(&objects.lock().unwrap())),
                    Step::Reconcile(c) => {
                        if let Some(view) = &views[c] {
                            reconcile(&runtime, &client, view);
                        }
                    }
                }
                check(&objects)?;
            }
            // Left alone with a fresh view, one controller converges: every
            // port the pool can take shows a claimed address.
            for _ in 0..4 {
                let view = fake_api::snapshot_of(&objects.lock().unwrap());
                reconcile(&runtime, &client, &view);
                check(&objects)?;
            }
            let view = fake_api::snapshot_of(&objects.lock().unwrap());
            let resolution = resolve(&view, &ClusterConfig::default());
            prop_assert!(actions(&view, &resolution, &Default::default(), &now()).is_empty(), "converged");
            for (key, verdict) in &resolution.ports {
                if verdict.is_ok() {
                    let shown = view.ports[key].status.as_ref().map(|s| s.fixed_ips.len()).unwrap_or(0);
                    prop_assert_eq!(shown, 1, "{} shows its address", key);
                }
            }
        }
    }
}

#[test]
fn events_tell_what_changed_once() {
    use neutrino::core::controller::notices;
    let config = ClusterConfig::default();
    let mut snapshot = quickstart();
    let mut bad = (*snapshot.ports[&Key::new("tenant-a", "web-1")]).clone();
    bad.metadata.name = Some("web-3".into());
    bad.spec.fixed_ips = vec![neutrino::api::FixedIP {
        subnet: "blue-v4".into(),
        ip_address: Some("10.99.0.1".into()),
    }];
    snapshot
        .ports
        .insert(Key::new("tenant-a", "web-3"), std::sync::Arc::new(bad));
    let round = actions(
        &snapshot,
        &resolve(&snapshot, &config),
        &Default::default(),
        &now(),
    );
    let told = notices(&snapshot, &round.statuses);
    let web3 = told
        .iter()
        .find(|n| n.object.key.name == "web-3")
        .expect("a notice for web-3");
    assert!(web3.warning);
    assert_eq!(web3.reason, "OutOfRange");
    assert!(
        web3.note.contains("spec.fixedIPs[0].ipAddress"),
        "{}",
        web3.note
    );
    // The same state again tells nothing.
    for (key, port) in round.statuses.ports {
        snapshot.ports.insert(key, port);
    }
    let again = actions(
        &snapshot,
        &resolve(&snapshot, &config),
        &Default::default(),
        &now(),
    );
    assert!(
        notices(&snapshot, &again.statuses)
            .iter()
            .all(|n| n.object.key.name != "web-3")
    );
}
