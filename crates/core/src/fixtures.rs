//! Objects for the core's tests, built in code rather than read from
//! manifest files, so the core's tests need no adapter.

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{Object, Snapshot};

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
