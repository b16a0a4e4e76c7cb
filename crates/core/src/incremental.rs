//! What the controller keeps between rounds, so that a round after a few
//! changes costs those changes and not the cluster.
//!
//! A full round resolves the whole snapshot and finds which nodes realise
//! what. The controller keeps all of it: the snapshot (its objects shared
//! with the watch caches), the resolution, the placement and the indexes
//! below. A round after changes then resolves only the namespaces they
//! touch — every object there, with the external networks their routers
//! and floating IPs name and the claims those need — and merges the
//! verdicts into the kept resolution. Objects of one namespace refer only
//! to their own namespace, save gateways and floating IPs, which name an
//! external network; every address and segment anyone holds is claimed,
//! so what a part hands out cannot collide with what the rest holds.
//! Which nodes' objects changed comes from the kept placement; only those
//! nodes are found afresh, each from the objects placed on it.
//!
//! When a change reaches past its namespaces, the round is full: a
//! network others' gateways or floating IPs name in a namespace being
//! resolved, a router that would move to another node (scheduling weighs
//! every node's routers), a Network or Subnet waiting to be deleted (its
//! users may live anywhere), or a change to the nodes themselves.
//! `tests/incremental.rs` checks that such a round asks for exactly what a
//! full one asks for.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube_core::Resource;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::controller::{Actions, Within, actions_within, in_namespace};
use crate::realisation::{AgentHealth, Placement};
use crate::resolve::{Resolution, held_by};
use crate::scope::Source;
use crate::snapshot::Names;
use crate::{ApiObject, ClusterConfig, Key, Kind, ObjectId, Snapshot, for_each_kind, resolve};
use crate::{plan::Topology, with_kind};
use neutrino_api::{FloatingIP, NetworkType, Router};

/// What changed since the last round: objects and claims, as the watches
/// saw them, and the nodes whose agent's health changed.
#[derive(Clone, Debug, Default)]
pub struct Changed {
    pub objects: BTreeSet<ObjectId>,
    pub ip_claims: BTreeSet<Key>,
    pub segment_claims: BTreeSet<String>,
    pub nodes: BTreeSet<String>,
}

/// Why a round must be full.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Full {
    #[error("{0} is being deleted")]
    Deleting(ObjectId),
    #[error("network {network} is named by {user} in another namespace")]
    Shared { network: Key, user: ObjectId },
    #[error("router {0} would be scheduled")]
    Schedules(Key),
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

fn link<K: Ord, V: Ord>(map: &mut BTreeMap<K, BTreeSet<V>>, by: K, value: V) {
    map.entry(by).or_default().insert(value);
}

fn unlink<K: Ord, V: Ord>(map: &mut BTreeMap<K, BTreeSet<V>>, by: &K, value: &V) {
    if let Some(values) = map.get_mut(by) {
        values.remove(value);
        if values.is_empty() {
            map.remove(by);
        }
    }
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
    snapshot: Snapshot,
    config: ClusterConfig,
    resolution: Resolution,
    placement: Placement,
    sites: Sites,
    names: Arc<Names>,
    /// The routers and floating IPs that name each network as their way out.
    gateway_users: BTreeMap<Key, BTreeSet<ObjectId>>,
    /// Networks and Subnets being deleted.
    deleting: BTreeSet<ObjectId>,
    /// Segment claims by the namespace of the network holding them.
    segments_of: BTreeMap<String, BTreeSet<String>>,
}

/// The networks `router` names as its way out.
fn router_gateway(key: &Key, router: &Router) -> Option<Key> {
    let gateway = router.spec.external_gateway.as_ref()?;
    Some(key.reference(&gateway.network))
}

fn fip_network(key: &Key, fip: &FloatingIP) -> Key {
    key.reference(&fip.spec.network)
}

fn segment_holder(claim: &neutrino_api::SegmentClaim) -> String {
    claim.spec.network.namespace.clone()
}

/// Whether `a` and `b` differ only in what the API server and the
/// controller write: status, resource version, managed fields.
fn same_but_status<K: ApiObject>(a: &K, b: &K) -> bool {
    let bare = |o: &K| {
        let mut o = o.clone();
        *o.status_mut() = None;
        let meta = o.meta_mut();
        meta.resource_version = None;
        meta.managed_fields = None;
        o
    };
    bare(a) == bare(b)
}

impl Kept {
    /// A full round over `snapshot`: everything resolved and placed.
    pub fn full(
        snapshot: Snapshot,
        config: ClusterConfig,
        agents: &BTreeMap<String, AgentHealth>,
        now: &Time,
    ) -> (Kept, Actions) {
        let resolution = resolve(&snapshot, &config);
        let placement = Placement::new(&snapshot, &resolution, &config);
        let mut kept = Kept {
            sites: Sites::of(&resolution, None),
            names: Arc::new(Names::of(&snapshot)),
            gateway_users: BTreeMap::new(),
            deleting: BTreeSet::new(),
            segments_of: BTreeMap::new(),
            snapshot,
            config,
            resolution,
            placement,
        };
        for_each_kind!(K => {
            let keys: Vec<Key> = K::of(&kept.snapshot).keys().cloned().collect();
            for key in keys {
                kept.index(&ObjectId::new(K::KIND, key), true);
            }
        });
        for (name, claim) in &kept.snapshot.segment_claims {
            link(&mut kept.segments_of, segment_holder(claim), name.clone());
        }
        let whole = (&kept.snapshot, &kept.resolution);
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
        &self.snapshot
    }

    pub fn resolution(&self) -> &Resolution {
        &self.resolution
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// Adds (or, with `present` false, takes away) what the kept snapshot's
    /// object `id` contributes to the indexes.
    fn index(&mut self, id: &ObjectId, present: bool) {
        let key = &id.key;
        let gateway = |network: Key, users: &mut BTreeMap<Key, BTreeSet<ObjectId>>| {
            if present {
                link(users, network, id.clone());
            } else {
                unlink(users, &network, id);
            }
        };
        match id.kind {
            Kind::Router => {
                if let Some(network) = self
                    .snapshot
                    .routers
                    .get(key)
                    .and_then(|r| router_gateway(key, r))
                {
                    gateway(network, &mut self.gateway_users);
                }
            }
            Kind::FloatingIP => {
                if let Some(fip) = self.snapshot.floating_ips.get(key) {
                    gateway(fip_network(key, fip), &mut self.gateway_users);
                }
            }
            Kind::Network | Kind::Subnet => {
                let terminating = with_kind!(id.kind, K => K::of(&self.snapshot)
                    .get(key)
                    .is_some_and(|o| o.meta().deletion_timestamp.is_some()));
                if present && terminating {
                    self.deleting.insert(id.clone());
                } else {
                    self.deleting.remove(id);
                }
            }
            _ => {}
        }
    }

    /// Takes object `id` as `source` holds it now into the kept snapshot.
    /// Returns whether its spec (or anything but its status) changed, or
    /// None when nothing did.
    fn take<K: ApiObject>(&mut self, id: &ObjectId, source: &impl Source) -> Option<bool> {
        let old = K::of(&self.snapshot).get(&id.key).cloned();
        let new = source.shared::<K>(&id.key);
        let spec = match (&old, &new) {
            (None, None) => return None,
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => return None,
            (Some(a), Some(b)) => !same_but_status(&**a, &**b),
            _ => true,
        };
        self.index(id, false);
        match new {
            Some(object) => K::of_mut(&mut self.snapshot).insert(id.key.clone(), object),
            None => K::of_mut(&mut self.snapshot).remove(&id.key),
        };
        self.index(id, true);
        if old.is_some() != K::of(&self.snapshot).contains_key(&id.key) {
            Arc::make_mut(&mut self.names).set(id, old.is_none());
        }
        Some(spec)
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
        let mut namespaces = BTreeSet::new();
        let mut spec_changed = BTreeSet::new();
        let mut status_only = BTreeSet::new();
        let mut claimants = BTreeSet::new();
        for id in &changed.objects {
            let spec = with_kind!(id.kind, K => self.take::<K>(id, source));
            match spec {
                Some(true) => {
                    namespaces.insert(id.key.namespace.clone());
                    spec_changed.insert(id.clone());
                }
                Some(false) => {
                    status_only.insert(id.clone());
                }
                None => {}
            }
        }
        for key in &changed.ip_claims {
            let old = match source.ip_claim(key) {
                Some(claim) => self.snapshot.ip_claims.insert(key.clone(), claim),
                None => self.snapshot.ip_claims.remove(key),
            };
            let new = self.snapshot.ip_claims.get(key);
            for claim in old.iter().chain(new) {
                if let Some(holder) = held_by(&claim.spec.holder) {
                    namespaces.insert(holder.object().key.namespace.clone());
                    // It may have waited for this claim.
                    claimants.insert(holder.object());
                }
            }
        }
        for name in &changed.segment_claims {
            let old = match source.segment_claim(name) {
                Some(claim) => self.snapshot.segment_claims.insert(name.clone(), claim),
                None => self.snapshot.segment_claims.remove(name),
            };
            if let Some(old) = &old {
                unlink(&mut self.segments_of, &segment_holder(old), name);
            }
            if let Some(new) = self.snapshot.segment_claims.get(name) {
                link(&mut self.segments_of, segment_holder(new), name.clone());
            }
            for claim in old.iter().chain(self.snapshot.segment_claims.get(name)) {
                let network = &claim.spec.network;
                namespaces.insert(network.namespace.clone());
                let key = Key::new(network.namespace.clone(), network.name.clone());
                claimants.insert(ObjectId::new(Kind::Network, key));
            }
        }
        if let Some(id) = self.deleting.first() {
            return Err(Full::Deleting(id.clone()));
        }
        for ns in &namespaces {
            for (network, users) in in_namespace(&self.gateway_users, ns) {
                if let Some(user) = users
                    .iter()
                    .find(|u| !namespaces.contains(&u.key.namespace))
                {
                    return Err(Full::Shared {
                        network: network.clone(),
                        user: user.clone(),
                    });
                }
            }
        }

        let part = self.part(&namespaces);
        let resolution = resolve(&part, &self.config);
        for (key, router) in resolution.ready_routers() {
            let recorded = self.snapshot.routers[key]
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
        for ns in &namespaces {
            for_each_kind!(K => {
                let (old, new) = (K::verdicts(&self.resolution), K::verdicts(&resolution));
                let keys = in_namespace(old, ns).chain(in_namespace(new, ns)).map(|(k, _)| k);
                for key in keys {
                    let id = ObjectId::new(K::KIND, key.clone());
                    let spec = spec_changed.contains(&id);
                    if spec || !placed_alike(&id, &self.resolution, &resolution) {
                        moved.push(id.clone());
                    }
                    if spec || old.get(key) != new.get(key) {
                        recounted.push(id);
                    }
                }
            });
            // A group's member count is in its status, and places nothing.
            let (old, new) = (&self.resolution.group_members, &resolution.group_members);
            for (key, _) in in_namespace(old, ns).chain(in_namespace(new, ns)) {
                if old.get(key) != new.get(key) {
                    recounted.push(ObjectId::new(Kind::SecurityGroup, key.clone()));
                }
            }
            self.sites.remove(&self.resolution, ns);
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
        self.merge(&resolution, &namespaces);
        // The external networks and subnets the part resolved: every
        // address on them is claimed, so their counts read as the whole's.
        let mut touched = BTreeSet::new();
        let mut context = |id: ObjectId, changed: bool| {
            if changed {
                nodes.extend(self.placement.nodes_of(&id).map(str::to_string));
            }
            touched.insert(id);
        };
        for (key, verdict) in &resolution.networks {
            if !namespaces.contains(&key.namespace) {
                let id = ObjectId::new(Kind::Network, key.clone());
                let moved = !placed_alike(&id, &self.resolution, &resolution);
                context(id, moved);
                self.resolution
                    .networks
                    .insert(key.clone(), verdict.clone());
            }
        }
        for (key, verdict) in &resolution.subnets {
            if !namespaces.contains(&key.namespace) {
                let id = ObjectId::new(Kind::Subnet, key.clone());
                let moved = !placed_alike(&id, &self.resolution, &resolution);
                context(id, moved);
                self.resolution.subnets.insert(key.clone(), verdict.clone());
            }
        }
        for ns in &namespaces {
            self.sites.add(&self.resolution, Some(ns));
        }
        for node in &nodes {
            if self.config.node(node).is_some() {
                let ids = self.objects_on(node);
                touched.extend(self.placement.set(node, Some(ids), &self.snapshot));
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
            (&self.snapshot, &self.resolution),
            &|id| self.placement.state(id, agents),
            &within,
            now,
        );
        Ok(Round {
            actions,
            namespaces: within.namespaces.unwrap_or_default(),
        })
    }

    /// The part of the kept snapshot that resolves `namespaces` as the
    /// whole would: their objects and claims, the external networks their
    /// routers and floating IPs name with those networks' subnets and
    /// claims, and the segment claims allocation needs.
    fn part(&self, namespaces: &BTreeSet<String>) -> Snapshot {
        let whole = &self.snapshot;
        let mut part = Snapshot {
            whole: Some(self.names.clone()),
            ..Snapshot::default()
        };
        let mut segment_owners: BTreeSet<&str> = BTreeSet::new();
        for ns in namespaces {
            for_each_kind!(K => K::of_mut(&mut part).extend(
                in_namespace(K::of(whole), ns).map(|(k, o)| (k.clone(), o.clone()))
            ));
            part.ip_claims
                .extend(in_namespace(&whole.ip_claims, ns).map(|(k, c)| (k.clone(), c.clone())));
            segment_owners.insert(ns);
        }
        let mut external: BTreeSet<Key> = BTreeSet::new();
        external.extend((part.routers.iter()).filter_map(|(k, r)| router_gateway(k, r)));
        external.extend(part.floating_ips.iter().map(|(k, f)| fip_network(k, f)));
        external.retain(|n| !namespaces.contains(&n.namespace));
        for network in &external {
            if let Some(object) = whole.networks.get(network) {
                part.networks.insert(network.clone(), object.clone());
            }
            let subnets: BTreeMap<&Key, _> = in_namespace(&whole.subnets, &network.namespace)
                .filter(|(k, s)| k.reference(&s.spec.network) == *network)
                .collect();
            for (key, subnet) in &subnets {
                part.subnets.insert((*key).clone(), (*subnet).clone());
            }
            let on_them = in_namespace(&whole.ip_claims, &network.namespace).filter(|(k, c)| {
                subnets.contains_key(&Key::new(k.namespace.clone(), c.spec.subnet.clone()))
            });
            part.ip_claims
                .extend(on_them.map(|(k, c)| (k.clone(), c.clone())));
            segment_owners.insert(&network.namespace);
        }
        for ns in segment_owners {
            for name in self.segments_of.get(ns).into_iter().flatten() {
                part.segment_claims
                    .insert(name.clone(), whole.segment_claims[name].clone());
            }
        }
        // A network that holds no segment may be handed one: it must see
        // every segment held.
        let held: BTreeSet<(&str, &str)> = (part.segment_claims.values())
            .map(|c| {
                (
                    c.spec.network.namespace.as_str(),
                    c.spec.network.name.as_str(),
                )
            })
            .collect();
        let allocates = part.networks.iter().any(|(key, network)| {
            network.spec.network_type != NetworkType::Local
                && !held.contains(&(key.namespace.as_str(), key.name.as_str()))
        });
        if allocates {
            part.segment_claims = whole.segment_claims.clone();
        }
        part
    }

    /// Replaces the kept verdicts of `namespaces` with `part`'s.
    fn merge(&mut self, part: &Resolution, namespaces: &BTreeSet<String>) {
        fn kind<V: Clone>(
            kept: &mut BTreeMap<Key, V>,
            part: &BTreeMap<Key, V>,
            namespaces: &BTreeSet<String>,
        ) {
            for ns in namespaces {
                let keys: Vec<Key> = in_namespace(kept, ns).map(|(k, _)| k.clone()).collect();
                for key in keys {
                    kept.remove(&key);
                }
                kept.extend(in_namespace(part, ns).map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        let kept = &mut self.resolution;
        kind(&mut kept.networks, &part.networks, namespaces);
        kind(&mut kept.subnets, &part.subnets, namespaces);
        kind(&mut kept.ports, &part.ports, namespaces);
        kind(&mut kept.routers, &part.routers, namespaces);
        kind(&mut kept.floating_ips, &part.floating_ips, namespaces);
        kind(&mut kept.security_groups, &part.security_groups, namespaces);
        kind(&mut kept.group_members, &part.group_members, namespaces);
    }

    /// The objects `node` realises, found from what is placed on it: its
    /// ports and routers, the floating IPs those routers map, and what
    /// they refer to, gathered into a resolution of their own.
    fn objects_on(&self, node: &str) -> BTreeSet<ObjectId> {
        let whole = &self.resolution;
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
            let Some(Ok(port)) = whole.ports.get(key) else {
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

/// Whether `id`'s verdicts in `old` and `new` place the same objects on
/// the same nodes: alike but for a subnet's address counts, which change
/// with every port on it and place nothing.
fn placed_alike(id: &ObjectId, old: &Resolution, new: &Resolution) -> bool {
    if id.kind != Kind::Subnet {
        return with_kind!(id.kind, K => K::verdicts(old).get(&id.key) == K::verdicts(new).get(&id.key));
    }
    let bare = |r: &Resolution| {
        r.subnets.get(&id.key).cloned().map(|v| {
            v.map(|mut s| {
                (s.used, s.free) = (0, 0);
                s
            })
        })
    };
    bare(old) == bare(new)
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
