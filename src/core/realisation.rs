//! Which nodes must realise each object, and how far they have come: what
//! each object's `status.nodes` says. Pure: the controller passes each
//! agent's health as it last reported it.

use std::collections::{BTreeMap, BTreeSet};

use kube::core::object::HasStatus;

use super::plan::{NatRule, plan_node};
use super::resolve::Resolution;
use super::{ClusterConfig, Key, Kind, ObjectId, Snapshot};
use crate::api::{NodeFailure, NodeRealisation};

/// How a node's agent last reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentHealth {
    /// Its last apply realised its whole plan.
    Ready,
    /// It failed, saying why.
    Failed(String),
}

/// For every object some node must realise, where it stands.
pub fn realisation(
    resolution: &Resolution,
    config: &ClusterConfig,
    agents: &BTreeMap<String, AgentHealth>,
) -> BTreeMap<ObjectId, NodeRealisation> {
    let mut nodes_of: BTreeMap<ObjectId, BTreeSet<&str>> = BTreeMap::new();
    for node in &config.nodes {
        let plan = plan_node(resolution, config, node);
        let mut add = |kind: Kind, key: &Key| {
            nodes_of
                .entry(ObjectId::new(kind, key.clone()))
                .or_default()
                .insert(node.name.as_str());
        };
        plan.bridges
            .iter()
            .for_each(|b| add(Kind::Network, &b.network));
        plan.dhcp.iter().for_each(|d| add(Kind::Subnet, &d.subnet));
        plan.ports.iter().for_each(|p| add(Kind::Port, &p.port));
        for router in &plan.routers {
            add(Kind::Router, &router.router);
            for rule in &router.nat {
                if let NatRule::FloatingIp { floating_ip, .. } = rule {
                    add(Kind::FloatingIP, floating_ip);
                }
            }
        }
        for filter in &plan.security.ports {
            filter
                .ingress
                .iter()
                .chain(&filter.egress)
                .for_each(|r| add(Kind::SecurityGroup, &r.group));
        }
    }
    nodes_of
        .into_iter()
        .map(|(id, nodes)| {
            let mut state = NodeRealisation {
                desired: nodes.len() as i32,
                ..NodeRealisation::default()
            };
            for node in nodes {
                match agents.get(node) {
                    Some(AgentHealth::Ready) => state.ready += 1,
                    Some(AgentHealth::Failed(message)) => state.failed.push(NodeFailure {
                        node: node.into(),
                        message: message.clone(),
                    }),
                    None => state.failed.push(NodeFailure {
                        node: node.into(),
                        message: "its agent has not reported".into(),
                    }),
                }
            }
            (id, state)
        })
        .collect()
}

/// Sets `status.nodes` of every object in `snapshot` that has a status.
pub fn apply(snapshot: &mut Snapshot, realised: &BTreeMap<ObjectId, NodeRealisation>) {
    fn each<T>(
        kind: Kind,
        map: &mut BTreeMap<Key, T>,
        realised: &BTreeMap<ObjectId, NodeRealisation>,
        set: fn(&mut T::Status, Option<NodeRealisation>),
    ) where
        T: HasStatus,
    {
        for (key, object) in map.iter_mut() {
            if let Some(status) = object.status_mut() {
                set(
                    status,
                    realised.get(&ObjectId::new(kind, key.clone())).cloned(),
                );
            }
        }
    }
    each(Kind::Network, &mut snapshot.networks, realised, |s, n| {
        s.nodes = n
    });
    each(Kind::Subnet, &mut snapshot.subnets, realised, |s, n| {
        s.nodes = n
    });
    each(Kind::Port, &mut snapshot.ports, realised, |s, n| {
        s.nodes = n
    });
    each(Kind::Router, &mut snapshot.routers, realised, |s, n| {
        s.nodes = n
    });
    each(
        Kind::FloatingIP,
        &mut snapshot.floating_ips,
        realised,
        |s, n| s.nodes = n,
    );
    each(
        Kind::SecurityGroup,
        &mut snapshot.security_groups,
        realised,
        |s, n| s.nodes = n,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::resolve;

    #[test]
    fn each_object_counts_the_nodes_that_must_realise_it() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
        let snapshot = crate::manifest::load(&dir).unwrap().snapshot;
        let config = ClusterConfig::default();
        let resolution = resolve(&snapshot, &config);
        let agents = BTreeMap::from([
            ("node-1".to_string(), AgentHealth::Ready),
            (
                "node-2".to_string(),
                AgentHealth::Failed("creating ntb-x: no space".into()),
            ),
        ]);
        let realised = realisation(&resolution, &config, &agents);
        let network = &realised[&ObjectId::new(Kind::Network, Key::new("tenant-a", "blue"))];
        assert_eq!((network.desired, network.ready), (2, 1));
        assert_eq!(network.failed[0].node, "node-2");
        assert!(network.failed[0].message.contains("no space"));
        let web1 = &realised[&ObjectId::new(Kind::Port, Key::new("tenant-a", "web-1"))];
        assert_eq!((web1.desired, web1.ready, web1.failed.len()), (1, 1, 0));
        let without = realisation(&resolution, &config, &BTreeMap::new());
        let web2 = &without[&ObjectId::new(Kind::Port, Key::new("tenant-a", "web-2"))];
        assert_eq!(web2.failed[0].message, "its agent has not reported");
    }
}
