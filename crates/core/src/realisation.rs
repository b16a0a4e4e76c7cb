//! Which nodes must realise each object, and how far they have come: what
//! each object's `status.nodes` says. Pure: the controller passes each
//! agent's health as it last reported it.
//!
//! An agent that is Ready has realised only what it had seen: a port the
//! controller found Ready a moment ago may not have reached its watch yet.
//! So each agent reports a digest of the objects, at their generations, its
//! last apply realised, and a node counts as having realised an object only
//! while that digest is the one the controller computes for the node.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kube_core::Resource;
use sha2::{Digest, Sha256};

use super::plan::{NatRule, NodePlan, Topology};
use super::resolve::Resolution;
use super::{ApiObject, ClusterConfig, Key, Kind, ObjectId, Snapshot};
use crate::with_kind;
use neutrino_api::{NodeFailure, NodeRealisation};

/// How a node's agent last reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentHealth {
    /// Its last apply realised its whole plan: these objects (a digest
    /// from `realised_digest`; None from an agent that does not say).
    Ready(Option<String>),
    /// It failed, saying why.
    Failed(String),
}

/// The objects a node's plan realises.
pub fn planned_objects(plan: &NodePlan) -> BTreeSet<ObjectId> {
    let mut objects = BTreeSet::new();
    let mut add = |kind: Kind, key: &Key| {
        objects.insert(ObjectId::new(kind, key.clone()));
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
    objects
}

/// One object's line in a digest: its kind, key, UID and generation. The
/// UID tells an object deleted and created again under the same name from
/// the one an agent realised before, at the same generation.
fn digest_line(kind: Kind, key: &Key, snapshot: &Snapshot) -> String {
    let (uid, generation) = with_kind!(kind, K => K::of(snapshot)
        .get(key)
        .map(|o| (o.meta().uid.clone(), o.meta().generation))
        .unwrap_or_default());
    let uid = uid.unwrap_or_default();
    let generation = generation.unwrap_or(0);
    format!("{kind} {key} {uid} {generation}\n")
}

fn digest<'a>(lines: impl Iterator<Item = &'a str>) -> String {
    let mut hash = Sha256::new();
    lines.for_each(|line| hash.update(line.as_bytes()));
    hash.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A digest of `objects` at the generations `snapshot` holds them at: what
/// an agent reports it realised, and what the controller expects of it.
pub fn realised_digest(objects: &BTreeSet<ObjectId>, snapshot: &Snapshot) -> String {
    let lines: Vec<String> = objects
        .iter()
        .map(|id| digest_line(id.kind, &id.key, snapshot))
        .collect();
    digest(lines.iter().map(String::as_str))
}

/// Which nodes realise which objects, and the digest each node's agent is
/// expected to report, kept so that a round can bring it up to date one
/// node at a time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Placement {
    /// Each node's objects and their digest.
    nodes: BTreeMap<String, NodeObjects>,
    /// Each object's nodes.
    holders: BTreeMap<ObjectId, BTreeSet<String>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct NodeObjects {
    ids: BTreeSet<ObjectId>,
    digest: String,
}

impl Placement {
    /// Every node's objects, found from the indexes, with each object's
    /// digest line made once however many nodes hold it.
    pub fn new(snapshot: &Snapshot, resolution: &Resolution, config: &ClusterConfig) -> Self {
        let topology = Topology::new(resolution, config);
        let mut lines: HashMap<(Kind, &Key), String> = HashMap::new();
        let mut placement = Placement::default();
        for node in &config.nodes {
            let ids = topology.ids_on(&node.name);
            for &(kind, key) in &ids {
                lines
                    .entry((kind, key))
                    .or_insert_with(|| digest_line(kind, key, snapshot));
            }
            let digest = digest(ids.iter().map(|id| lines[id].as_str()));
            let ids: BTreeSet<ObjectId> = ids
                .into_iter()
                .map(|(kind, key)| ObjectId::new(kind, key.clone()))
                .collect();
            for id in &ids {
                placement
                    .holders
                    .entry(id.clone())
                    .or_default()
                    .insert(node.name.clone());
            }
            placement
                .nodes
                .insert(node.name.clone(), NodeObjects { ids, digest });
        }
        placement
    }

    /// Sets what `node` realises (None: the node is gone), with its digest
    /// at `snapshot`'s generations. Returns the objects whose realisation
    /// may read differently now: those it held before and holds now, or
    /// none when neither they nor the digest changed.
    pub fn set(
        &mut self,
        node: &str,
        ids: Option<BTreeSet<ObjectId>>,
        snapshot: &Snapshot,
    ) -> BTreeSet<ObjectId> {
        let digest = ids.as_ref().map(|ids| realised_digest(ids, snapshot));
        if let (Some(ids), Some(digest), Some(kept)) = (&ids, &digest, self.nodes.get(node))
            && kept.ids == *ids
            && kept.digest == *digest
        {
            return BTreeSet::new();
        }
        let old = self.nodes.remove(node).map(|n| n.ids).unwrap_or_default();
        let new = ids.unwrap_or_default();
        for id in old.difference(&new) {
            if let Some(nodes) = self.holders.get_mut(id) {
                nodes.remove(node);
                if nodes.is_empty() {
                    self.holders.remove(id);
                }
            }
        }
        for id in new.difference(&old) {
            self.holders
                .entry(id.clone())
                .or_default()
                .insert(node.to_string());
        }
        let touched = old.union(&new).cloned().collect();
        if let Some(digest) = digest {
            self.nodes
                .insert(node.to_string(), NodeObjects { ids: new, digest });
        }
        touched
    }

    /// The objects `node` realises.
    pub fn objects_on(&self, node: &str) -> impl Iterator<Item = &ObjectId> {
        self.nodes.get(node).into_iter().flat_map(|n| &n.ids)
    }

    /// The nodes that realise `id`.
    pub fn nodes_of(&self, id: &ObjectId) -> impl Iterator<Item = &str> {
        self.holders
            .get(id)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// What the controller expects each node's agent to report.
    pub fn expected(&self) -> BTreeMap<String, String> {
        self.nodes
            .iter()
            .map(|(node, n)| (node.clone(), n.digest.clone()))
            .collect()
    }

    /// Where `id` stands: None when no node realises it. A Ready agent
    /// whose digest differs from what the controller expects of its node
    /// has not applied the latest yet: its objects count as neither
    /// realised nor failed.
    pub fn state(
        &self,
        id: &ObjectId,
        agents: &BTreeMap<String, AgentHealth>,
    ) -> Option<NodeRealisation> {
        let nodes = self.holders.get(id)?;
        let mut state = NodeRealisation {
            desired: nodes.len() as i32,
            ..NodeRealisation::default()
        };
        for node in nodes {
            match agents.get(node) {
                Some(AgentHealth::Ready(realised)) => {
                    let expected = self.nodes.get(node).map(|n| &n.digest);
                    if realised.as_ref() == expected {
                        state.ready += 1;
                    }
                }
                Some(AgentHealth::Failed(message)) => state.failed.push(NodeFailure {
                    node: node.clone(),
                    message: message.clone(),
                }),
                None => state.failed.push(NodeFailure {
                    node: node.clone(),
                    message: "its agent has not reported".into(),
                }),
            }
        }
        Some(state)
    }

    /// Where every object some node realises stands.
    pub fn all(
        &self,
        agents: &BTreeMap<String, AgentHealth>,
    ) -> BTreeMap<ObjectId, NodeRealisation> {
        self.holders
            .keys()
            .filter_map(|id| Some((id.clone(), self.state(id, agents)?)))
            .collect()
    }
}

/// What the controller expects each node's agent to report: the digest of
/// the objects its plan realises, by node.
pub fn expected(
    snapshot: &Snapshot,
    resolution: &Resolution,
    config: &ClusterConfig,
) -> BTreeMap<String, String> {
    Placement::new(snapshot, resolution, config).expected()
}

/// For every object some node must realise, where it stands. Which nodes
/// those are comes from the indexes, not from planning each node.
pub fn realisation(
    snapshot: &Snapshot,
    resolution: &Resolution,
    config: &ClusterConfig,
    agents: &BTreeMap<String, AgentHealth>,
) -> BTreeMap<ObjectId, NodeRealisation> {
    Placement::new(snapshot, resolution, config).all(agents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::plan_node;
    use crate::resolve;

    #[test]
    fn each_object_counts_the_nodes_that_must_realise_it() {
        let snapshot = crate::fixtures::quickstart();
        let config = ClusterConfig::default();
        let resolution = resolve(&snapshot, &config);
        // What node-1 holds, as its agent would report it.
        let node_1 = realised_digest(
            &planned_objects(&plan_node(
                &resolution,
                &config,
                config.node("node-1").unwrap(),
            )),
            &snapshot,
        );
        let agents = BTreeMap::from([
            (
                "node-1".to_string(),
                AgentHealth::Ready(Some(node_1.clone())),
            ),
            (
                "node-2".to_string(),
                AgentHealth::Failed("creating ntb-x: no space".into()),
            ),
        ]);
        let realised = realisation(&snapshot, &resolution, &config, &agents);
        let network = &realised[&ObjectId::new(Kind::Network, Key::new("tenant-a", "blue"))];
        assert_eq!((network.desired, network.ready), (2, 1));
        assert_eq!(network.failed[0].node, "node-2");
        assert!(network.failed[0].message.contains("no space"));
        let web1 = &realised[&ObjectId::new(Kind::Port, Key::new("tenant-a", "web-1"))];
        assert_eq!((web1.desired, web1.ready, web1.failed.len()), (1, 1, 0));
        let without = realisation(&snapshot, &resolution, &config, &BTreeMap::new());
        let web2 = &without[&ObjectId::new(Kind::Port, Key::new("tenant-a", "web-2"))];
        assert_eq!(web2.failed[0].message, "its agent has not reported");

        // An agent that has not applied the latest — a new port, or a spec
        // changed since — has not realised what it did not see.
        let stale =
            BTreeMap::from([("node-1".to_string(), AgentHealth::Ready(Some("old".into())))]);
        let web1 = &realisation(&snapshot, &resolution, &config, &stale)
            [&ObjectId::new(Kind::Port, Key::new("tenant-a", "web-1"))];
        assert_eq!((web1.desired, web1.ready, web1.failed.len()), (1, 0, 0));
        let mut changed = snapshot.clone();
        let port = changed
            .ports
            .get_mut(&Key::new("tenant-a", "web-1"))
            .unwrap();
        std::sync::Arc::make_mut(port).metadata.generation = Some(2);
        let fresh = BTreeMap::from([(
            "node-1".to_string(),
            AgentHealth::Ready(Some(node_1.clone())),
        )]);
        let web1 = &realisation(&changed, &resolution, &config, &fresh)
            [&ObjectId::new(Kind::Port, Key::new("tenant-a", "web-1"))];
        assert_eq!(web1.ready, 0, "realised at generation 1, wanted at 2");

        // Deleted and created again under its name, at generation 1: what
        // the agent realised was the port before.
        let mut again = snapshot.clone();
        let port = again.ports.get_mut(&Key::new("tenant-a", "web-1")).unwrap();
        std::sync::Arc::make_mut(port).metadata.uid = Some("a-new-one".into());
        let web1 = &realisation(&again, &resolution, &config, &fresh)
            [&ObjectId::new(Kind::Port, Key::new("tenant-a", "web-1"))];
        assert_eq!(web1.ready, 0, "realised before it was created again");
    }
}
