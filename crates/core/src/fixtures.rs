//! Objects for the core's tests, built in code rather than read from
//! manifest files, so the core's tests need no adapter.

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::plan::{NodePlan, plan_node};
use super::reconcile::{LinkKind, Observed, ObservedLink, desired_links, fdb_key, neighbour_key};
use super::{ClusterConfig, Object, Snapshot, resolve};

/// An object of `kind` in `namespace` with `spec`, as the API would hold it.
pub fn object<K: DeserializeOwned>(kind: &str, namespace: &str, name: &str, spec: Value) -> K {
    serde_json::from_value(json!({
        "apiVersion": "neutrino.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }))
    .unwrap_or_else(|e| panic!("{kind} {namespace}/{name}: {e}"))
}

/// A snapshot holding `objects`.
pub fn snapshot(objects: impl IntoIterator<Item = Object>) -> Snapshot {
    let mut snapshot = Snapshot::default();
    for object in objects {
        let id = object.id();
        snapshot
            .insert(object)
            .unwrap_or_else(|_| panic!("{id} twice"));
    }
    snapshot
}

/// examples/quickstart: one VXLAN network with one DHCP subnet and a port
/// on each of node-1 and node-2.
pub fn quickstart() -> Snapshot {
    let ns = "tenant-a";
    snapshot([
        Object::Network(object(
            "Network",
            ns,
            "blue",
            json!({"type": "vxlan", "segmentationID": 1001}),
        )),
        Object::Subnet(object(
            "Subnet",
            ns,
            "blue-v4",
            json!({
                "network": "blue",
                "cidr": "10.10.0.0/24",
                "allocationPools": [{"start": "10.10.0.10", "end": "10.10.0.200"}],
                "dnsNameservers": ["10.10.0.2"],
                "enableDHCP": true,
            }),
        )),
        Object::Port(object(
            "Port",
            ns,
            "web-1",
            json!({"network": "blue", "nodeName": "node-1"}),
        )),
        Object::Port(object(
            "Port",
            ns,
            "web-2",
            json!({"network": "blue", "nodeName": "node-2"}),
        )),
    ])
}

/// What the kernel would hold after `changes`, for tests and dry runs:
/// links as desired, entries as planned.
pub fn after(observed: &Observed, plan: &NodePlan) -> Observed {
    let desired = desired_links(plan);
    let mut links: Vec<ObservedLink> = observed
        .links
        .iter()
        .filter(|l| !l.is_ours() || desired.iter().any(|d| d.name == l.name))
        .filter(|l| !desired.iter().any(|d| d.name == l.name))
        .cloned()
        .collect();
    for d in &desired {
        let kind = match d.kind.as_observed() {
            Some(kind) => kind,
            None => match observed.links.iter().find(|l| l.name == d.name) {
                Some(l) => l.kind.clone(),
                None => continue,
            },
        };
        let previous = observed.links.iter().find(|l| l.name == d.name);
        links.push(ObservedLink {
            name: d.name.clone(),
            kind,
            alias: match d.kind {
                LinkKind::Physical => previous.and_then(|l| l.alias.clone()),
                _ => Some(d.alias.clone()),
            },
            master: d.master.clone(),
            mtu: d.mtu.or(previous.map(|l| l.mtu)).unwrap_or(1500),
            up: true,
            isolated: d.isolated && d.master.is_some(),
            host_ipv6: false,
        });
    }
    Observed {
        links,
        fdb: plan.fdb.iter().map(fdb_key).collect(),
        neighbours: plan.neighbours.iter().map(neighbour_key).collect(),
    }
}

pub fn quickstart_plan(node: &str) -> NodePlan {
    let snapshot = quickstart();
    let config = ClusterConfig::default();
    plan_node(
        &resolve(&snapshot, &config),
        &config,
        config.node(node).unwrap(),
    )
}
