//! Clusters generated in memory, of any size, for the scale benchmark and
//! for the tests that compare the indexed paths with planning in full.
//!
//! Each namespace holds ten VXLAN networks of sixteen ports spread over the
//! nodes, one subnet a network (every fifth without DHCP), a router on a
//! gateway node joining the subnets to a shared external network, and a
//! floating IP on its first port. Ports take the namespace's implicit
//! `default` group, whose rules name the group itself (so each node holds
//! its ipsets); every third port also takes `web`, with CIDR rules, and
//! `empty`, with none; every seventh has port security off.

#![allow(dead_code, reason = "the benchmark and the tests each use part of it")]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use serde_json::{Value, json};

use neutrino::api::Port;
use neutrino::core::controller::{Actions, actions};
use neutrino::core::incremental::Changed;
use neutrino::core::realisation::{AgentHealth, realisation};
use neutrino::core::resolve::held_by;
use neutrino::core::{
    ApiObject, ClusterConfig, Key, Object, ObjectId, Resolution, Snapshot, resolve,
};
use std::collections::BTreeSet;

pub const PORTS_PER_NETWORK: usize = 16;
pub const NETWORKS_PER_NAMESPACE: usize = 10;

/// The size of a generated cluster.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub ports: usize,
    pub nodes: usize,
}

fn object(kind: &str, namespace: &str, name: &str, spec: Value) -> Object {
    let value = json!({
        "apiVersion": "neutrino.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "generation": 1},
        "spec": spec,
    });
    let parsed = match kind {
        "Network" => serde_json::from_value(value).map(Object::Network),
        "Subnet" => serde_json::from_value(value).map(Object::Subnet),
        "Port" => serde_json::from_value(value).map(Object::Port),
        "Router" => serde_json::from_value(value).map(Object::Router),
        "FloatingIP" => serde_json::from_value(value).map(Object::FloatingIP),
        "SecurityGroup" => serde_json::from_value(value).map(Object::SecurityGroup),
        _ => unreachable!("{kind} is not generated"),
    };
    parsed.unwrap_or_else(|e| panic!("{kind} {namespace}/{name}: {e}"))
}

/// The node a port lands on: spread, but the same on every run.
fn node_of(port: usize, nodes: usize) -> usize {
    (port.wrapping_mul(2_654_435_761) >> 7) % nodes + 1
}

/// A port of network `network` (an index) in `namespace`, bound to `node`.
pub fn port(namespace: &str, name: &str, network: usize, node: usize, index: usize) -> Object {
    let mut spec = json!({"network": format!("net-{network}"), "nodeName": format!("node-{node}")});
    if index.is_multiple_of(7) {
        spec["portSecurity"] = json!(false);
    } else if index.is_multiple_of(3) {
        spec["securityGroups"] = json!(["default", "web", "empty"]);
    }
    object("Port", namespace, name, spec)
}

/// A cluster of `shape.ports` ports on `shape.nodes` nodes, as manifests
/// would give it: nothing allocated yet.
pub fn cluster(shape: Shape) -> (Snapshot, ClusterConfig) {
    let config = ClusterConfig::with_nodes(shape.nodes);
    let networks = shape.ports.div_ceil(PORTS_PER_NETWORK);
    let namespaces = networks.div_ceil(NETWORKS_PER_NAMESPACE);
    let mut objects = vec![
        object(
            "Network",
            "infra",
            "public",
            json!({"type": "flat", "physicalNetwork": "extnet", "external": true}),
        ),
        object(
            "Subnet",
            "infra",
            "public-v4",
            json!({"network": "public", "cidr": "100.64.0.0/10", "gatewayIP": "100.64.0.1", "enableDHCP": false}),
        ),
    ];
    let mut port_index = 0;
    for n in 0..namespaces {
        let ns = format!("tenant-{n}");
        objects.push(object(
            "SecurityGroup",
            &ns,
            "web",
            json!({"rules": [
                {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp", "portRangeMin": 80, "portRangeMax": 80, "remoteIPPrefix": "0.0.0.0/0"},
                {"direction": "egress", "ethertype": "IPv4"},
            ]}),
        ));
        objects.push(object("SecurityGroup", &ns, "empty", json!({"rules": []})));
        let mut interfaces = Vec::new();
        for j in 0..NETWORKS_PER_NAMESPACE {
            let network = n * NETWORKS_PER_NAMESPACE + j;
            if network >= networks {
                break;
            }
            objects.push(object(
                "Network",
                &ns,
                &format!("net-{network}"),
                json!({"type": "vxlan"}),
            ));
            let subnet = format!("net-{network}-v4");
            objects.push(object(
                "Subnet",
                &ns,
                &subnet,
                json!({
                    "network": format!("net-{network}"),
                    "cidr": format!("10.{}.{}.0/24", j, n % 250),
                    "enableDHCP": !network.is_multiple_of(5),
                }),
            ));
            interfaces.push(json!({"subnet": subnet}));
            for _ in 0..PORTS_PER_NETWORK {
                if port_index == shape.ports {
                    break;
                }
                let node = node_of(port_index, shape.nodes);
                let name = format!("p-{port_index}");
                objects.push(port(&ns, &name, network, node, port_index));
                if port_index.is_multiple_of(PORTS_PER_NETWORK * NETWORKS_PER_NAMESPACE) {
                    objects.push(object(
                        "FloatingIP",
                        &ns,
                        &format!("{name}-public"),
                        json!({"network": "infra/public", "port": name}),
                    ));
                }
                port_index += 1;
            }
        }
        objects.push(object(
            "Router",
            &ns,
            "edge",
            json!({"interfaces": interfaces, "externalGateway": {"network": "infra/public", "enableSNAT": true}}),
        ));
    }
    let mut snapshot = Snapshot::default();
    for object in objects {
        snapshot.insert(object).expect("generated names are unique");
    }
    (snapshot, config)
}

/// Carries out `actions` on `snapshot` as the API server would: claims
/// made and released, statuses and finalizers written.
pub fn carry_out(snapshot: &mut Snapshot, actions: Actions) {
    for claim in actions.create_ip_claims {
        let key = Key::new(claim.namespace().unwrap_or_default(), claim.name_any());
        snapshot.ip_claims.insert(key, std::sync::Arc::new(claim));
    }
    for key in &actions.delete_ip_claims {
        snapshot.ip_claims.remove(key);
    }
    for claim in actions.create_segment_claims {
        snapshot
            .segment_claims
            .insert(claim.name_any(), std::sync::Arc::new(claim));
    }
    for name in &actions.delete_segment_claims {
        snapshot.segment_claims.remove(name);
    }
    fn statuses<K: ApiObject>(snapshot: &mut Snapshot, from: &Snapshot) {
        let objects = K::of_mut(snapshot);
        for (key, written) in K::of(from) {
            if let Some(object) = objects.get_mut(key) {
                *std::sync::Arc::make_mut(object).status_mut() = written.status().cloned();
            }
        }
    }
    neutrino::core::for_each_kind!(K => statuses::<K>(snapshot, &actions.statuses));
    for id in actions.finalizers.add {
        neutrino::core::with_kind!(id.kind, K => {
            if let Some(object) = K::of_mut(snapshot).get_mut(&id.key) {
                std::sync::Arc::make_mut(object)
                    .finalizers_mut()
                    .push(neutrino::core::finalizers::FINALIZER.into());
            }
        });
    }
}

/// Each node's agent as Ready, having realised what the controller expects
/// of it.
pub fn all_ready(
    snapshot: &Snapshot,
    resolution: &Resolution,
    config: &ClusterConfig,
) -> std::collections::BTreeMap<String, AgentHealth> {
    neutrino::core::realisation::expected(snapshot, resolution, config)
        .into_iter()
        .map(|(node, digest)| (node, AgentHealth::Ready(Some(digest))))
        .collect()
}

/// Runs the controller's rounds on `snapshot` until they ask for nothing
/// more; returns how many it took.
pub fn converge(snapshot: &mut Snapshot, config: &ClusterConfig) -> usize {
    let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    for round in 1..=10 {
        let resolution = resolve(snapshot, config);
        let agents = all_ready(snapshot, &resolution, config);
        let realised = realisation(snapshot, &resolution, config, &agents);
        let planned = actions(snapshot, &resolution, &realised, &now);
        if planned.is_empty() {
            return round;
        }
        carry_out(snapshot, planned);
    }
    panic!("the rounds did not settle in 10");
}

/// What an agent's watches note from `before` to `after`: the objects that
/// changed with the holders of the claims that did, and those claims.
pub fn noted(before: &Snapshot, after: &Snapshot) -> (BTreeSet<ObjectId>, BTreeSet<Key>) {
    let changed = Changed::between(before, after);
    let mut objects = changed.objects;
    for key in &changed.ip_claims {
        let claim = after.ip_claims.get(key).or(before.ip_claims.get(key));
        objects.extend(
            claim
                .and_then(|c| held_by(&c.spec.holder))
                .map(|h| h.object()),
        );
    }
    (objects, changed.ip_claims)
}

/// A new port `name` on `node`, in the network of the existing port `beside`.
pub fn port_beside(snapshot: &Snapshot, beside: &Key, name: &str, node: usize) -> Port {
    let other = &snapshot.ports[beside];
    let mut port = (**other).clone();
    port.metadata = kube::api::ObjectMeta {
        name: Some(name.into()),
        namespace: other.metadata.namespace.clone(),
        generation: Some(1),
        ..Default::default()
    };
    port.spec.node_name = Some(format!("node-{node}"));
    port.spec.fixed_ips.clear();
    port.spec.mac_address = None;
    port.status = None;
    port
}
