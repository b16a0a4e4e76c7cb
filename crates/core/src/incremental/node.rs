//! What an agent keeps of its node between passes: the part of the cluster
//! its plan depends on, resolved, what reaches that part, the plan and the
//! digest of what it realises.
//!
//! A change that reaches the part only through ports that draw nothing
//! new into it — on other nodes, the endpoints of a network it tunnels or
//! the members of a group its rules name; on the node, one more port on a
//! network it carries — and the status counts the controller writes
//! beside them, is patched in: the ports are taken as their status says
//! (the controller checked and allocated them). For ports elsewhere only
//! the touched networks' FDB and neighbour entries and the touched groups'
//! ipsets are planned again; for one of the node's own, what its ports
//! make (veths, DHCP hosts, filters) and those ipsets.
//! Anything else takes the part afresh and resolves the namespaces that
//! differ; `tests/incremental.rs` checks that both give what resolving
//! and planning the part in full gives.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{Resolved, Touched, link, unlink};
use crate::plan::{Focus, NodePlan, patch_own, patch_plan, plan_node};
use crate::realisation::{planned_objects, realised_digest};
use crate::resolve::{PortState, Resolution};
use crate::scope::{Index, Reach, Source, part_of};
use crate::status::into_ready_only;
use crate::{ClusterConfig, Key, NodeConfig, ObjectId, Snapshot};

/// An agent's node as its last pass planned it.
#[derive(Clone, Debug)]
pub struct NodeView {
    reach: Reach,
    resolved: Resolved,
    plan: NodePlan,
    realised: String,
    /// The part's ready ports by network and by group, and where each node
    /// stands in the configuration: what planning a patch's networks and
    /// groups again looks up, so that it costs them and not the part.
    ports_by: PortsBy,
    nodes: HashMap<String, usize>,
}

/// Ports by the network or group they are on.
type PortsOn = BTreeMap<Key, BTreeSet<Key>>;

/// The ready ports of `resolution` by network and by group.
type PortsBy = (PortsOn, PortsOn);

fn ports_by(resolution: &Resolution) -> PortsBy {
    let mut by = (BTreeMap::new(), BTreeMap::new());
    for (key, port) in resolution.ready_ports() {
        file_port(&mut by, key, port);
    }
    by
}

/// Files `port` under its network and its groups.
fn file_port((by_network, by_group): &mut PortsBy, key: &Key, port: &PortState) {
    link(by_network, port.network.clone(), key.clone());
    for group in &port.security_groups {
        link(by_group, group.clone(), key.clone());
    }
}

/// The ready ports on `touched`'s networks or in its groups, and where
/// the nodes stand.
fn focus<'a>(
    resolution: &'a Resolution,
    (by_network, by_group): &'a PortsBy,
    positions: &'a HashMap<String, usize>,
    touched: &'a Touched,
) -> Focus<'a, 'a> {
    let networks = touched.networks.iter().filter_map(|n| by_network.get(n));
    let groups = touched.groups.iter().filter_map(|g| by_group.get(g));
    let keys: BTreeSet<&Key> = networks.chain(groups).flatten().collect();
    let ports = keys
        .into_iter()
        .filter_map(|k| Some((k, resolution.port(k)?)))
        .collect();
    Focus {
        touched,
        ports,
        positions,
    }
}

/// Where each node stands in the configuration's list.
fn node_positions(config: &ClusterConfig) -> HashMap<String, usize> {
    (config.nodes.iter().enumerate())
        .map(|(i, n)| (n.name.clone(), i))
        .collect()
}

/// How a pass brought the view up to date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Followed {
    /// The change was patched in.
    Patched,
    /// The part was taken afresh and resolved where it differs.
    Afresh,
}

impl NodeView {
    /// `node`'s part taken out of `source`, resolved and planned in full.
    pub fn new(
        index: &Index,
        source: &impl Source,
        config: &ClusterConfig,
        node: &NodeConfig,
    ) -> Self {
        let (part, reach) = part_of(index, source, &node.name);
        let resolved = Resolved::new(into_ready_only(part), config);
        let plan = plan_node(resolved.resolution(), config, node);
        let realised = realised_digest(&planned_objects(&plan), resolved.snapshot());
        NodeView {
            ports_by: ports_by(resolved.resolution()),
            reach,
            resolved,
            plan,
            realised,
            nodes: node_positions(config),
        }
    }

    /// Brings the view to `source` after the objects `changed` and the
    /// claims `ip_claims` changed (the index already holds them): patched
    /// where the change allows, else taken afresh.
    pub fn follow(
        &mut self,
        index: &Index,
        source: &impl Source,
        config: &ClusterConfig,
        node: &NodeConfig,
        (changed, ip_claims): (&BTreeSet<ObjectId>, &BTreeSet<Key>),
    ) -> Followed {
        if self.patch(index, source, config, node, changed, ip_claims) {
            return Followed::Patched;
        }
        self.afresh(index, source, config, node);
        Followed::Afresh
    }

    /// The part taken afresh, resolved again where it differs from the
    /// kept one, and planned in full.
    pub fn afresh(
        &mut self,
        index: &Index,
        source: &impl Source,
        config: &ClusterConfig,
        node: &NodeConfig,
    ) {
        let (part, reach) = part_of(index, source, &node.name);
        self.reach = reach;
        self.resolved.follow(into_ready_only(part), config);
        self.plan = plan_node(self.resolved.resolution(), config, node);
        self.realised = realised_digest(&planned_objects(&self.plan), self.resolved.snapshot());
        self.ports_by = ports_by(self.resolved.resolution());
        self.nodes = node_positions(config);
    }

    fn patch(
        &mut self,
        index: &Index,
        source: &impl Source,
        config: &ClusterConfig,
        node: &NodeConfig,
        changed: &BTreeSet<ObjectId>,
        ip_claims: &BTreeSet<Key>,
    ) -> bool {
        let part = self.resolved.snapshot();
        let Some(patch) = self.reach.patch(index, source, part, changed, ip_claims) else {
            return false;
        };
        let Some(touched) = self.resolved.patch(&patch, config) else {
            return false;
        };
        self.reach.grow(&patch);
        let resolution = self.resolved.resolution();
        // The touched networks and groups are those each port was and is in.
        for (key, _) in &patch.ports {
            let (by_network, by_group) = &mut self.ports_by;
            touched
                .networks
                .iter()
                .for_each(|n| unlink(by_network, n, key));
            touched.groups.iter().for_each(|g| unlink(by_group, g, key));
            if let Some(port) = resolution.port(key) {
                file_port(&mut self.ports_by, key, port);
            }
        }
        let focus = focus(resolution, &self.ports_by, &self.nodes, &touched);
        patch_plan(&mut self.plan, resolution, config, node, &focus);
        // What the node realises is its own objects at their generations:
        // neither a port elsewhere nor a status changes it.
        if !patch.own.is_empty() {
            let own: Vec<(&Key, &PortState)> = (self.reach.own().iter())
                .filter_map(|k| Some((k, resolution.port(k)?)))
                .filter(|(_, p)| p.node.as_deref() == Some(node.name.as_str()))
                .collect();
            if !patch_own(&mut self.plan, resolution, config, &own, &patch.own, &focus) {
                self.plan = plan_node(resolution, config, node);
            }
            self.realised = realised_digest(&planned_objects(&self.plan), self.resolved.snapshot());
        }
        true
    }

    pub fn reach(&self) -> &Reach {
        &self.reach
    }

    pub fn plan(&self) -> &NodePlan {
        &self.plan
    }

    /// The digest of the objects the plan realises.
    pub fn realised(&self) -> &str {
        &self.realised
    }

    pub fn snapshot(&self) -> &Snapshot {
        self.resolved.snapshot()
    }

    pub fn resolved(&self) -> &Resolved {
        &self.resolved
    }
}
