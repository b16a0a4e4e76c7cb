//! Which nodes must realise each object, and how far they have come: what
//! each object's `status.nodes` says. Pure: the controller passes each
//! agent's health as it last reported it.
//!
//! An agent that is Ready has realised only what it had seen: a port the
//! controller found Ready a moment ago may not have reached its watch yet.
//! So each agent reports a digest of the objects, at their generations, its
//! last apply realised, and a node counts as having realised an object
//! while that digest is the one the controller computes for the node — or,
//! once the node holds more, while the object is as it was when its agent
//! last reported the node's whole digest: a port added to a node leaves
//! the node's other objects realised, and their statuses unwritten.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

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
    digest(digest_lines(objects, snapshot).iter().map(String::as_str))
}

/// The digest lines of `objects`, in their order.
fn digest_lines(objects: &BTreeSet<ObjectId>, snapshot: &Snapshot) -> Vec<String> {
    objects
        .iter()
        .map(|id| digest_line(id.kind, &id.key, snapshot))
        .collect()
}

/// A digest line, shortened to what tells it from another in memory.
fn line_print(line: &str) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    line.hash(&mut hasher);
    hasher.finish()
}

/// A node's objects, each with the print of its digest line.
type Lines = Arc<BTreeMap<ObjectId, u64>>;

/// What each node's agent was last seen to have realised in full: the
/// node's objects, as they were when its reported digest was the expected
/// one. Carried from one placement to the next.
#[derive(Clone, Debug, Default)]
pub struct Acknowledged(BTreeMap<String, Lines>);

/// Which nodes realise which objects, and the digest each node's agent is
/// expected to report, kept so that a round can bring it up to date one
/// node at a time.
#[derive(Clone, Debug, Default)]
pub struct Placement {
    /// Each node's objects and their digest.
    nodes: BTreeMap<String, NodeObjects>,
    /// Each object's nodes.
    holders: BTreeMap<ObjectId, BTreeSet<String>>,
    acknowledged: Acknowledged,
}

/// Two placements are alike when they place alike: what was acknowledged
/// of a node whose agent reports its whole digest no longer counts.
impl PartialEq for Placement {
    fn eq(&self, other: &Self) -> bool {
        self.nodes == other.nodes && self.holders == other.holders
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
struct NodeObjects {
    lines: Lines,
    digest: String,
}

impl NodeObjects {
    fn new(ids: &BTreeSet<ObjectId>, snapshot: &Snapshot) -> Self {
        let lines = digest_lines(ids, snapshot);
        let prints = ids
            .iter()
            .zip(&lines)
            .map(|(id, line)| (id.clone(), line_print(line)))
            .collect();
        NodeObjects {
            lines: Arc::new(prints),
            digest: digest(lines.iter().map(String::as_str)),
        }
    }

    /// Whether `agent` reports having realised all of it.
    fn reported_by(&self, agent: Option<&AgentHealth>) -> bool {
        matches!(agent, Some(AgentHealth::Ready(Some(d))) if *d == self.digest)
    }
}

impl Placement {
    /// Every node's objects, found from the indexes, with each object's
    /// digest line made once however many nodes hold it; what agents were
    /// seen to realise before is carried over.
    pub fn new(
        snapshot: &Snapshot,
        resolution: &Resolution,
        config: &ClusterConfig,
        acknowledged: Acknowledged,
    ) -> Self {
        let topology = Topology::new(resolution, config);
        let mut lines: HashMap<(Kind, &Key), (String, u64)> = HashMap::new();
        let mut placement = Placement {
            acknowledged,
            ..Placement::default()
        };
        for node in &config.nodes {
            let ids = topology.ids_on(&node.name);
            for &(kind, key) in &ids {
                lines.entry((kind, key)).or_insert_with(|| {
                    let line = digest_line(kind, key, snapshot);
                    let print = line_print(&line);
                    (line, print)
                });
            }
            let digest = digest(ids.iter().map(|id| lines[id].0.as_str()));
            let prints: BTreeMap<ObjectId, u64> = ids
                .into_iter()
                .map(|(kind, key)| (ObjectId::new(kind, key.clone()), lines[&(kind, key)].1))
                .collect();
            for id in prints.keys() {
                placement
                    .holders
                    .entry(id.clone())
                    .or_default()
                    .insert(node.name.clone());
            }
            let objects = NodeObjects {
                lines: Arc::new(prints),
                digest,
            };
            placement.nodes.insert(node.name.clone(), objects);
        }
        placement
    }

    /// What each node's agent has been seen to realise in full, now that
    /// agents report as `agents` says: for the next placement.
    pub fn acknowledged(&self, agents: &BTreeMap<String, AgentHealth>) -> Acknowledged {
        let mut acknowledged = self.acknowledged.clone();
        for (node, objects) in &self.nodes {
            if objects.reported_by(agents.get(node)) {
                acknowledged.0.insert(node.clone(), objects.lines.clone());
            }
        }
        acknowledged
    }

    /// Sets what `node` realises (None: the node is gone), with its digest
    /// at `snapshot`'s generations. Returns the objects whose realisation
    /// may read differently now: those it held before and holds now, or
    /// none when neither they nor the digest changed.
    ///
    /// What the node held before counts as acknowledged when `agents` say
    /// its agent realised all of it.
    pub fn set(
        &mut self,
        node: &str,
        ids: Option<BTreeSet<ObjectId>>,
        snapshot: &Snapshot,
        agents: &BTreeMap<String, AgentHealth>,
    ) -> BTreeSet<ObjectId> {
        let objects = ids.as_ref().map(|ids| NodeObjects::new(ids, snapshot));
        if let (Some(objects), Some(kept)) = (&objects, self.nodes.get(node))
            && kept == objects
        {
            return BTreeSet::new();
        }
        let old: BTreeSet<ObjectId> = match self.nodes.remove(node) {
            Some(kept) => {
                if kept.reported_by(agents.get(node)) {
                    (self.acknowledged.0).insert(node.to_string(), kept.lines.clone());
                }
                kept.lines.keys().cloned().collect()
            }
            None => BTreeSet::new(),
        };
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
        match objects {
            Some(objects) => {
                self.nodes.insert(node.to_string(), objects);
            }
            None => {
                self.acknowledged.0.remove(node);
            }
        }
        touched
    }

    /// The objects `node` realises.
    pub fn objects_on(&self, node: &str) -> impl Iterator<Item = &ObjectId> {
        self.nodes
            .get(node)
            .into_iter()
            .flat_map(|n| n.lines.keys())
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
    /// has not applied the latest yet: of its objects only those it was
    /// seen to realise, unchanged since, count as realised; the others as
    /// neither realised nor failed.
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
                    let objects = self.nodes.get(node);
                    let whole = realised.as_ref() == objects.map(|n| &n.digest);
                    let this = || {
                        let now = objects?.lines.get(id)?;
                        let seen = self.acknowledged.0.get(node)?.get(id)?;
                        Some(now == seen)
                    };
                    if whole || this() == Some(true) {
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
    Placement::new(snapshot, resolution, config, Acknowledged::default()).expected()
}

/// For every object some node must realise, where it stands. Which nodes
/// those are comes from the indexes, not from planning each node.
pub fn realisation(
    snapshot: &Snapshot,
    resolution: &Resolution,
    config: &ClusterConfig,
    agents: &BTreeMap<String, AgentHealth>,
) -> BTreeMap<ObjectId, NodeRealisation> {
    Placement::new(snapshot, resolution, config, Acknowledged::default()).all(agents)
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

    #[test]
    fn a_port_added_to_a_node_leaves_its_other_objects_realised() {
        let snapshot = crate::fixtures::quickstart();
        let config = ClusterConfig::default();
        let resolution = resolve(&snapshot, &config);
        let mut placement =
            Placement::new(&snapshot, &resolution, &config, Acknowledged::default());
        // node-1's agent has realised all the node held.
        let agents: BTreeMap<String, AgentHealth> = placement
            .expected()
            .into_iter()
            .map(|(node, digest)| (node, AgentHealth::Ready(Some(digest))))
            .collect();

        // web-3 joins web-1 on node-1; the agent has not seen it yet.
        let mut grown = snapshot.clone();
        let web1 = Key::new("tenant-a", "web-1");
        let mut web3 = (*grown.ports[&web1]).clone();
        web3.metadata.name = Some("web-3".into());
        web3.metadata.uid = Some("uid-of-web-3".into());
        grown
            .ports
            .insert(Key::new("tenant-a", "web-3"), Arc::new(web3));
        let resolution = resolve(&grown, &config);
        let on_node_1 = |acknowledged| {
            let placed = Placement::new(&grown, &resolution, &config, acknowledged);
            placed
                .objects_on("node-1")
                .cloned()
                .collect::<BTreeSet<_>>()
        };
        let ids = on_node_1(Acknowledged::default());
        let touched = placement.set("node-1", Some(ids), &grown, &agents);
        let port = |name: &str| ObjectId::new(Kind::Port, Key::new("tenant-a", name));
        let network = ObjectId::new(Kind::Network, Key::new("tenant-a", "blue"));
        assert!(touched.contains(&port("web-3")) && touched.contains(&port("web-1")));
        let ready =
            |placement: &Placement, id: &ObjectId| placement.state(id, &agents).unwrap().ready;
        assert_eq!(ready(&placement, &port("web-1")), 1, "web-1 stays realised");
        assert_eq!(
            ready(&placement, &network),
            2,
            "so does its network, on both nodes"
        );
        assert_eq!(ready(&placement, &port("web-3")), 0, "web-3 is not yet");

        // A full round carries what was acknowledged; without it, the
        // node's every object would read as unrealised again.
        let carried = Placement::new(
            &grown,
            &resolution,
            &config,
            placement.acknowledged(&agents),
        );
        assert_eq!(ready(&carried, &port("web-1")), 1);
        assert_eq!(ready(&carried, &port("web-3")), 0);
        let forgotten = Placement::new(&grown, &resolution, &config, Acknowledged::default());
        assert_eq!(ready(&forgotten, &port("web-1")), 0);

        // What changed since it was acknowledged is not realised.
        let mut changed = grown.clone();
        let port_1 = changed.ports.get_mut(&web1).unwrap();
        Arc::make_mut(port_1).metadata.generation = Some(2);
        let ids = on_node_1(Acknowledged::default());
        placement.set("node-1", Some(ids), &changed, &agents);
        assert_eq!(ready(&placement, &port("web-1")), 0, "web-1 changed since");

        // Once the agent reports the node's whole digest, all is realised.
        let caught_up: BTreeMap<String, AgentHealth> = placement
            .expected()
            .into_iter()
            .map(|(node, digest)| (node, AgentHealth::Ready(Some(digest))))
            .collect();
        for id in [port("web-1"), port("web-3"), network] {
            assert_eq!(placement.state(&id, &caught_up).unwrap().failed, []);
            assert_eq!(
                placement.state(&id, &caught_up).unwrap().ready,
                placement.state(&id, &caught_up).unwrap().desired
            );
        }
    }
}
