//! What the controller keeps between rounds, so that a round after a few
//! changes costs those changes and not the cluster.
//!
//! A full round resolves the whole snapshot and finds which nodes realise
//! what. The controller keeps all of it: the snapshot (its objects shared
//! with the watch caches) with its resolution ([`Resolved`]), and the
//! placement. A round after changes then resolves only the namespaces they
//! touch and merges the verdicts into the kept resolution. Which nodes'
//! objects changed comes from the kept placement; only those nodes are
//! found afresh, each from the objects placed on it.
//!
//! When a change reaches past its namespaces, the round is full: a
//! network others' gateways or floating IPs name in a namespace being
//! resolved, a router that would move to another node (scheduling weighs
//! every node's routers), a Network or Subnet waiting to be deleted (its
//! users may live anywhere), or a change to the nodes themselves.
//! `tests/incremental.rs` checks that such a round asks for exactly what a
//! full one asks for.

mod node;
mod resolved;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::controller::{Actions, Within, actions_within, in_namespace};
use crate::plan::Topology;
use crate::realisation::{Acknowledged, AgentHealth, Placement};
use crate::resolve::Resolution;
use crate::scope::Source;
use crate::{ApiObject, ClusterConfig, Key, Kind, ObjectId, Snapshot, for_each_kind, resolve};
pub use node::{Followed, NodeView};
pub(crate) use resolved::same_but_status;
pub use resolved::{Full, Resolved, Touched};
use resolved::{Taken, link, placed_alike, unlink};

/// What changed since the last round: objects and claims, as the watches
/// saw them, and the nodes whose agent's health changed.
#[derive(Clone, Debug, Default)]
pub struct Changed {
    pub objects: BTreeSet<ObjectId>,
    pub ip_claims: BTreeSet<Key>,
    pub segment_claims: BTreeSet<String>,
    pub nodes: BTreeSet<String>,
}

impl Changed {
    /// The objects and claims that differ between `before` and `after`,
    /// by identity, as the watches note them: the caches replace an object
    /// or claim when it changes. No node's health is among them.
    pub fn between(before: &Snapshot, after: &Snapshot) -> Self {
        fn of<K: Ord + Clone, V>(
            before: &BTreeMap<K, Arc<V>>,
            after: &BTreeMap<K, Arc<V>>,
        ) -> BTreeSet<K> {
            let same = |k: &K, other: &BTreeMap<K, Arc<V>>, this: &Arc<V>| {
                other.get(k).is_some_and(|o| Arc::ptr_eq(o, this))
            };
            let gone = before.iter().filter(|(k, v)| !same(k, after, v));
            let new = after.iter().filter(|(k, _)| !before.contains_key(*k));
            gone.chain(new).map(|(k, _)| k.clone()).collect()
        }
        let mut changed = Changed::default();
        for_each_kind!(K => changed.objects.extend(
            of(K::of(before), K::of(after)).into_iter().map(|k| ObjectId::new(K::KIND, k))
        ));
        changed.ip_claims = of(&before.ip_claims, &after.ip_claims);
        changed.segment_claims = of(&before.segment_claims, &after.segment_claims);
        changed
    }
}

/// The ready objects of a resolution placed on nodes: what finding one
/// node's objects starts from.
#[derive(Clone, Debug, Default, PartialEq)]
struct Sites {
    ports_on: BTreeMap<String, BTreeSet<Key>>,
    routers_on: BTreeMap<String, BTreeSet<Key>>,
    /// The floating IPs each router maps.
    floating_through: BTreeMap<Key, BTreeSet<Key>>,
}

impl Sites {
    fn of(resolution: &Resolution, namespace: Option<&str>) -> Self {
        let mut sites = Sites::default();
        sites.add(resolution, namespace);
        sites
    }

    /// Places the ready ports, routers and floating IPs of `namespace` (or
    /// of every namespace).
    fn add(&mut self, resolution: &Resolution, namespace: Option<&str>) {
        for (key, port) in entries(&resolution.ports, namespace) {
            if let Some(node) = port.as_ref().ok().and_then(|p| p.node.clone()) {
                link(&mut self.ports_on, node, key.clone());
            }
        }
        for (key, router) in entries(&resolution.routers, namespace) {
            if let Ok(router) = router {
                link(&mut self.routers_on, router.node.clone(), key.clone());
            }
        }
        for (key, fip) in entries(&resolution.floating_ips, namespace) {
            if let Some(target) = fip.as_ref().ok().and_then(|f| f.target.as_ref()) {
                link(
                    &mut self.floating_through,
                    target.router.clone(),
                    key.clone(),
                );
            }
        }
    }

    /// Takes away what `add` placed for `namespace`.
    fn remove(&mut self, resolution: &Resolution, namespace: &str) {
        for (key, port) in in_namespace(&resolution.ports, namespace) {
            if let Some(node) = port.as_ref().ok().and_then(|p| p.node.clone()) {
                unlink(&mut self.ports_on, &node, key);
            }
        }
        for (key, router) in in_namespace(&resolution.routers, namespace) {
            if let Ok(router) = router {
                unlink(&mut self.routers_on, &router.node, key);
            }
        }
        for (key, fip) in in_namespace(&resolution.floating_ips, namespace) {
            if let Some(target) = fip.as_ref().ok().and_then(|f| f.target.as_ref()) {
                unlink(&mut self.floating_through, &target.router, key);
            }
        }
    }
}

/// The entries of `map` in `namespace`, or all of them.
fn entries<'a, V>(
    map: &'a BTreeMap<Key, V>,
    namespace: Option<&'a str>,
) -> Box<dyn Iterator<Item = (&'a Key, &'a V)> + 'a> {
    match namespace {
        Some(namespace) => Box::new(in_namespace(map, namespace)),
        None => Box::new(map.iter()),
    }
}

/// What a round asked for, and how far it reached.
#[derive(Debug)]
pub struct Round {
    pub actions: Actions,
    /// The namespaces resolved afresh.
    pub namespaces: BTreeSet<String>,
}

/// The controller's view, as its last round left it.
#[derive(Clone, Debug)]
pub struct Kept {
    resolved: Resolved,
    config: ClusterConfig,
    placement: Placement,
    sites: Sites,
}

impl Kept {
    /// A full round over `snapshot`: everything resolved and placed, with
    /// what agents were seen to realise before (`Kept::acknowledged`).
    pub fn full(
        snapshot: Snapshot,
        config: ClusterConfig,
        agents: &BTreeMap<String, AgentHealth>,
        acknowledged: Acknowledged,
        now: &Time,
    ) -> (Kept, Actions) {
        let resolved = Resolved::new(snapshot, &config);
        let (snapshot, resolution) = (resolved.snapshot(), resolved.resolution());
        let kept = Kept {
            placement: Placement::new(snapshot, resolution, &config, acknowledged),
            sites: Sites::of(resolution, None),
            resolved,
            config,
        };
        let whole = (kept.snapshot(), kept.resolution());
        let actions = actions_within(
            whole,
            whole,
            &|id| kept.placement.state(id, agents),
            &Within::everything(),
            now,
        );
        (kept, actions)
    }

    pub fn snapshot(&self) -> &Snapshot {
        self.resolved.snapshot()
    }

    pub fn resolution(&self) -> &Resolution {
        self.resolved.resolution()
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// What agents have been seen to realise, for the next full round.
    /// Still right after `after` failed: that leaves the placement alone.
    pub fn acknowledged(&self, agents: &BTreeMap<String, AgentHealth>) -> Acknowledged {
        self.placement.acknowledged(agents)
    }

    /// A round after `changed`, resolving only the namespaces it touches;
    /// `Err` when it must be full. The kept view is then no longer whole:
    /// the caller runs `Kept::full` on a fresh snapshot.
    ///
    /// The nodes' configuration is the one the view was built with: when it
    /// changes, the caller runs a full round.
    pub fn after(
        &mut self,
        source: &impl Source,
        changed: &Changed,
        agents: &BTreeMap<String, AgentHealth>,
        now: &Time,
    ) -> Result<Round, Full> {
        let Taken {
            namespaces,
            spec_changed,
            status_only,
            claimants,
        } = self.resolved.take(
            source,
            &changed.objects,
            &changed.ip_claims,
            &changed.segment_claims,
        );
        self.resolved.reaches_past(&namespaces)?;
        let part = self.resolved.part(&namespaces);
        let resolution = resolve(&part, &self.config);
        for (key, router) in resolution.ready_routers() {
            let recorded = self.snapshot().routers[key]
                .status
                .as_ref()
                .and_then(|s| s.node.as_deref());
            if namespaces.contains(&key.namespace) && recorded != Some(router.node.as_str()) {
                return Err(Full::Schedules(key.clone()));
            }
        }

        // The nodes whose objects may have changed: those holding an
        // object whose verdict or generation changed, and those its ports
        // and routers are placed on now.
        let mut moved: Vec<ObjectId> = Vec::new();
        // Those whose status may read differently: their verdict changed.
        let mut recounted: Vec<ObjectId> = Vec::new();
        let kept = self.resolved.resolution();
        for ns in &namespaces {
            for_each_kind!(K => {
                let (old, new) = (K::verdicts(kept), K::verdicts(&resolution));
                let keys = in_namespace(old, ns).chain(in_namespace(new, ns)).map(|(k, _)| k);
                for key in keys {
                    let id = ObjectId::new(K::KIND, key.clone());
                    let spec = spec_changed.contains(&id);
                    if spec || !placed_alike(&id, kept, &resolution) {
                        moved.push(id.clone());
                    }
                    if spec || old.get(key) != new.get(key) {
                        recounted.push(id);
                    }
                }
            });
            // A group's member count is in its status, and places nothing.
            let (old, new) = (&kept.group_members, &resolution.group_members);
            for (key, _) in in_namespace(old, ns).chain(in_namespace(new, ns)) {
                if old.get(key) != new.get(key) {
                    recounted.push(ObjectId::new(Kind::SecurityGroup, key.clone()));
                }
            }
            self.sites.remove(kept, ns);
        }
        let mut nodes: BTreeSet<String> = BTreeSet::new();
        for id in &moved {
            nodes.extend(self.placement.nodes_of(id).map(str::to_string));
            match id.kind {
                Kind::Port => {
                    let port = resolution.ports.get(&id.key).and_then(|p| p.as_ref().ok());
                    nodes.extend(port.and_then(|p| p.node.clone()));
                }
                Kind::Router => {
                    let router = resolution
                        .routers
                        .get(&id.key)
                        .and_then(|r| r.as_ref().ok());
                    nodes.extend(router.map(|r| r.node.clone()));
                }
                // What a node holds of a network, subnet or group it holds
                // through the ports and routers of the same namespace.
                Kind::Network | Kind::Subnet | Kind::SecurityGroup => {
                    nodes.extend(nodes_using(&resolution, id));
                }
                // A floating IP is realised on its router's node.
                Kind::FloatingIP => {
                    let fip = resolution
                        .floating_ips
                        .get(&id.key)
                        .and_then(|f| f.as_ref().ok());
                    let router = fip
                        .and_then(|f| f.target.as_ref())
                        .and_then(|t| resolution.routers.get(&t.router)?.as_ref().ok());
                    nodes.extend(router.map(|r| r.node.clone()));
                }
            }
        }
        let mut touched = BTreeSet::new();
        for (id, moved) in self.resolved.merge(&resolution, &namespaces) {
            if moved {
                nodes.extend(self.placement.nodes_of(&id).map(str::to_string));
            }
            touched.insert(id);
        }
        for ns in &namespaces {
            self.sites.add(self.resolved.resolution(), Some(ns));
        }
        for node in &nodes {
            if self.config.node(node).is_some() {
                let ids = self.objects_on(node);
                let snapshot = self.resolved.snapshot();
                touched.extend(self.placement.set(node, Some(ids), snapshot, agents));
            }
        }
        // An agent whose health changed changes how far its objects are.
        for node in &changed.nodes {
            touched.extend(self.placement.objects_on(node).cloned());
        }
        touched.extend(status_only);
        touched.extend(claimants);
        touched.extend(spec_changed);
        touched.extend(moved);
        touched.extend(recounted);
        let within = Within {
            namespaces: Some(namespaces),
            objects: touched,
        };
        let actions = actions_within(
            (&part, &resolution),
            (self.snapshot(), self.resolution()),
            &|id| self.placement.state(id, agents),
            &within,
            now,
        );
        Ok(Round {
            actions,
            namespaces: within.namespaces.unwrap_or_default(),
        })
    }

    /// The objects `node` realises, found from what is placed on it: its
    /// ports and routers, the floating IPs those routers map, and what
    /// they refer to, gathered into a resolution of their own.
    fn objects_on(&self, node: &str) -> BTreeSet<ObjectId> {
        let whole = self.resolution();
        let mut mine = Resolution::default();
        fn copy<V: Clone>(into: &mut BTreeMap<Key, V>, from: &BTreeMap<Key, V>, key: &Key) {
            if let Some(v) = from.get(key) {
                into.insert(key.clone(), v.clone());
            }
        }
        fn network(mine: &mut Resolution, whole: &Resolution, key: &Key) {
            copy(&mut mine.networks, &whole.networks, key);
        }
        for key in self.sites.ports_on.get(node).into_iter().flatten() {
            let Some(port) = whole.port(key) else {
                continue;
            };
            network(&mut mine, whole, &port.network);
            for (subnet, _) in &port.fixed_ips {
                copy(&mut mine.subnets, &whole.subnets, subnet);
                if let Some(Ok(s)) = whole.subnets.get(subnet) {
                    network(&mut mine, whole, &s.network);
                }
            }
            for group in &port.security_groups {
                copy(&mut mine.security_groups, &whole.security_groups, group);
            }
            copy(&mut mine.ports, &whole.ports, key);
        }
        for key in self.sites.routers_on.get(node).into_iter().flatten() {
            let Some(Ok(router)) = whole.routers.get(key) else {
                continue;
            };
            let legs = router
                .interfaces
                .iter()
                .chain(router.gateway.iter().map(|g| &g.leg));
            for leg in legs {
                network(&mut mine, whole, &leg.network);
            }
            for fip in self.sites.floating_through.get(key).into_iter().flatten() {
                copy(&mut mine.floating_ips, &whole.floating_ips, fip);
            }
            copy(&mut mine.routers, &whole.routers, key);
        }
        Topology::new(&mine, &NO_NODES).objects_on(node)
    }
}

/// The nodes of the ready ports and routers of `id`'s namespace in
/// `resolution` that use network, subnet or group `id`.
fn nodes_using(resolution: &Resolution, id: &ObjectId) -> Vec<String> {
    let key = &id.key;
    let ns = key.namespace.as_str();
    let ports = in_namespace(&resolution.ports, ns).filter_map(|(_, p)| {
        let port = p.as_ref().ok()?;
        let uses = match id.kind {
            Kind::Network => port.network == *key,
            Kind::Subnet => port.fixed_ips.iter().any(|(s, _)| s == key),
            _ => port.security_groups.contains(key),
        };
        if uses { port.node.clone() } else { None }
    });
    let routers = in_namespace(&resolution.routers, ns).filter_map(|(_, r)| {
        let router = r.as_ref().ok()?;
        let mut legs = router
            .interfaces
            .iter()
            .chain(router.gateway.iter().map(|g| &g.leg));
        let uses = match id.kind {
            Kind::Network => legs.any(|l| l.network == *key),
            Kind::Subnet => legs.any(|l| l.subnet == *key),
            _ => false,
        };
        uses.then(|| router.node.clone())
    });
    ports.chain(routers).collect()
}

/// Finding one node's objects reads no node's configuration.
static NO_NODES: std::sync::LazyLock<ClusterConfig> = std::sync::LazyLock::new(|| ClusterConfig {
    nodes: Vec::new(),
    ..ClusterConfig::default()
});
