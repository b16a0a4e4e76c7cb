//! Claims on a cluster: resolve honours them, and the controller's actions
//! create the missing ones before any status shows what they hold.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use std::path::Path;

use neutrino::api::{ClaimHolder, IPClaim, IPClaimSpec, SegmentClaim, SegmentClaimSpec};
use neutrino::core::controller::actions;
use neutrino::core::{ClusterConfig, Key, Reason, Snapshot, resolve};

fn quickstart() -> Snapshot {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    neutrino::manifest::load(&dir).unwrap().snapshot
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
    snapshot.ip_claims.insert(key, claim);
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
    let mut port = snapshot.ports[&Key::new("tenant-a", "web-1")].clone();
    port.spec.fixed_ips = vec![neutrino::api::FixedIP {
        subnet: "blue-v4".into(),
        ip_address: Some("10.10.0.50".into()),
    }];
    snapshot.ports.insert(Key::new("tenant-a", "web-1"), port);
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
    let mut network = snapshot.networks[&Key::new("tenant-a", "blue")].clone();
    network.spec.segmentation_id = None;
    snapshot
        .networks
        .insert(Key::new("tenant-a", "blue"), network);
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
        .insert("vxlan.4242".into(), claim(4242, "blue"));
    snapshot
        .segment_claims
        .insert("vxlan.1000".into(), claim(1000, "gone"));
    let r = resolve(&snapshot, &config);
    assert_eq!(
        r.network(&Key::new("tenant-a", "blue"))
            .unwrap()
            .segmentation_id,
        Some(4242)
    );

    let a = actions(&snapshot, &r, &now());
    assert_eq!(
        a.delete_segment_claims,
        vec!["vxlan.1000".to_string()],
        "the claim of a network that is gone goes"
    );
}

#[test]
fn claims_first_then_statuses_then_nothing() {
    let config = ClusterConfig::default();
    let mut snapshot = quickstart();

    // Round 1: every allocation needs its claim; no status shows one yet.
    let first = actions(&snapshot, &resolve(&snapshot, &config), &now());
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
    assert!(
        first.statuses.ports.is_empty()
            && first.statuses.subnets.is_empty()
            && first.statuses.networks.is_empty()
    );

    for claim in first.create_ip_claims {
        add(&mut snapshot, claim);
    }
    for claim in first.create_segment_claims {
        snapshot
            .segment_claims
            .insert(claim.metadata.name.clone().unwrap(), claim);
    }

    // Round 2: the claims are there; the statuses follow.
    let second = actions(&snapshot, &resolve(&snapshot, &config), &now());
    assert!(second.create_ip_claims.is_empty() && second.delete_ip_claims.is_empty());
    assert_eq!(second.statuses.ports.len(), 2);
    assert_eq!(second.statuses.subnets.len(), 1);
    assert_eq!(second.statuses.networks.len(), 1);
    let status = second.statuses.ports[&Key::new("tenant-a", "web-1")]
        .status
        .clone()
        .unwrap();
    assert_eq!(status.fixed_ips[0].ip_address, "10.10.0.11");
    for (key, port) in second.statuses.ports {
        snapshot.ports.insert(key, port);
    }
    for (key, subnet) in second.statuses.subnets {
        snapshot.subnets.insert(key, subnet);
    }
    for (key, network) in second.statuses.networks {
        snapshot.networks.insert(key, network);
    }

    // Round 3: converged.
    assert!(actions(&snapshot, &resolve(&snapshot, &config), &now()).is_empty());

    // A deleted port's claim goes; nobody else's does.
    snapshot.ports.remove(&Key::new("tenant-a", "web-2"));
    let after = actions(&snapshot, &resolve(&snapshot, &config), &now());
    assert_eq!(
        after.delete_ip_claims,
        vec![Key::new("tenant-a", "blue-v4.10.10.0.12")]
    );
}
