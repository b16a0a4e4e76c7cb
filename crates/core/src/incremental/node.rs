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
//! ipsets are planned again; a port of the node's own plans the node.
//! Anything else takes the part afresh and resolves the namespaces that
//! differ; `tests/incremental.rs` checks that both give what resolving
//! and planning the part in full gives.

use std::collections::BTreeSet;

use super::Resolved;
use crate::plan::{NodePlan, patch_plan, plan_node};
use crate::realisation::{planned_objects, realised_digest};
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
            reach,
            resolved,
            plan,
            realised,
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
        if patch.own.is_empty() {
            // What the node realises is its own objects at their
            // generations: neither a port elsewhere nor a status changes it.
            let resolution = self.resolved.resolution();
            patch_plan(&mut self.plan, resolution, config, node, &touched);
        } else {
            self.plan = plan_node(self.resolved.resolution(), config, node);
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
