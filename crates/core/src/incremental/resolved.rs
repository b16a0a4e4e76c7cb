//! A snapshot kept with its resolution, resolved again one namespace at a
//! time: the controller's view of the cluster, and an agent's of its part.
//!
//! Objects of one namespace refer only to their own namespace, save
//! gateways and floating IPs, which name an external network; every
//! address and segment anyone holds is claimed, so what a part hands out
//! cannot collide with what the rest holds. Resolving the touched
//! namespaces, with the external networks they name and the claims they
//! need, gives them the verdicts resolving everything would.

use kube_core::Resource;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::Changed;
use crate::controller::in_namespace;
use crate::resolve::{
    DEFAULT_GROUP, Remote, Resolution, SecurityGroupState, Verdict, held_by, implicit_default,
    trusted_port,
};
use crate::scope::Patch;
use crate::scope::Source;
use crate::snapshot::Names;
use crate::with_kind;
use crate::{ApiObject, ClusterConfig, Key, Kind, ObjectId, Snapshot, for_each_kind, resolve};
use neutrino_api::{FloatingIP, NetworkType, Router};

/// Why a change cannot be resolved in its namespaces alone.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Full {
    #[error("{0} is being deleted")]
    Deleting(ObjectId),
    #[error("network {network} is named by {user} in another namespace")]
    Shared { network: Key, user: ObjectId },
    #[error("router {0} would be scheduled")]
    Schedules(Key),
}

pub(super) fn link<K: Ord, V: Ord>(map: &mut BTreeMap<K, BTreeSet<V>>, by: K, value: V) {
    map.entry(by).or_default().insert(value);
}

pub(super) fn unlink<K: Ord, V: Ord>(map: &mut BTreeMap<K, BTreeSet<V>>, by: &K, value: &V) {
    if let Some(values) = map.get_mut(by) {
        values.remove(value);
        if values.is_empty() {
            map.remove(by);
        }
    }
}

/// The network `router` names as its way out.
fn router_gateway(key: &Key, router: &Router) -> Option<Key> {
    let gateway = router.spec.external_gateway.as_ref()?;
    Some(key.shared_reference(&gateway.network))
}

fn fip_network(key: &Key, fip: &FloatingIP) -> Key {
    key.shared_reference(&fip.spec.network)
}

fn segment_holder(claim: &neutrino_api::SegmentClaim) -> String {
    claim.spec.network.namespace.clone()
}

/// Whether `a` and `b` differ only in what the API server and the
/// controller write: status, resource version, managed fields.
pub(crate) fn same_but_status<K: ApiObject>(a: &K, b: &K) -> bool {
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

/// Whether `id`'s verdicts in `old` and `new` place the same objects on
/// the same nodes: alike but for a subnet's address counts, which change
/// with every port on it and place nothing.
pub(super) fn placed_alike(id: &ObjectId, old: &Resolution, new: &Resolution) -> bool {
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

/// What a patch moved on other nodes: the networks whose endpoints, and
/// the groups whose members, changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Touched {
    pub networks: BTreeSet<Key>,
    pub groups: BTreeSet<Key>,
}

/// What taking changes in found.
#[derive(Debug, Default)]
pub(super) struct Taken {
    /// The namespaces to resolve again.
    pub namespaces: BTreeSet<String>,
    /// Objects whose spec (or anything but status) changed.
    pub spec_changed: BTreeSet<ObjectId>,
    /// Objects whose status alone changed.
    pub status_only: BTreeSet<ObjectId>,
    /// Holders of claims that changed: they may have waited for them.
    pub claimants: BTreeSet<ObjectId>,
}

/// A snapshot, its resolution, and the indexes that tell how far a change
/// reaches.
#[derive(Clone, Debug)]
pub struct Resolved {
    snapshot: Snapshot,
    resolution: Resolution,
    names: Arc<Names>,
    /// The routers and floating IPs that name each network as their way out.
    gateway_users: BTreeMap<Key, BTreeSet<ObjectId>>,
    /// Networks and Subnets being deleted.
    deleting: BTreeSet<ObjectId>,
    /// Segment claims by the namespace of the network holding them.
    segments_of: BTreeMap<String, BTreeSet<String>>,
}

impl Resolved {
    /// `snapshot` resolved in full.
    pub fn new(snapshot: Snapshot, config: &ClusterConfig) -> Self {
        let resolution = resolve(&snapshot, config);
        let mut resolved = Resolved {
            names: Arc::new(Names::of(&snapshot)),
            gateway_users: BTreeMap::new(),
            deleting: BTreeSet::new(),
            segments_of: BTreeMap::new(),
            snapshot,
            resolution,
        };
        for_each_kind!(K => {
            let keys: Vec<Key> = K::of(&resolved.snapshot).keys().cloned().collect();
            for key in keys {
                resolved.index(&ObjectId::new(K::KIND, key), true);
            }
        });
        for (name, claim) in &resolved.snapshot.segment_claims {
            link(
                &mut resolved.segments_of,
                segment_holder(claim),
                name.clone(),
            );
        }
        resolved
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    pub fn resolution(&self) -> &Resolution {
        &self.resolution
    }

    /// Brings the kept snapshot and resolution to `part`: an agent's part
    /// as it reads now. Only the namespaces whose objects or claims differ
    /// are resolved again, unless a change reaches past them.
    pub fn follow(&mut self, part: Snapshot, config: &ClusterConfig) {
        let changed = Changed::between(&self.snapshot, &part);
        if changed.objects.is_empty()
            && changed.ip_claims.is_empty()
            && changed.segment_claims.is_empty()
        {
            return;
        }
        let taken = self.take(
            &part,
            &changed.objects,
            &changed.ip_claims,
            &changed.segment_claims,
        );
        if self.reaches_past(&taken.namespaces).is_err() {
            *self = Resolved::new(part, config);
            return;
        }
        let resolution = resolve(&self.part(&taken.namespaces), config);
        self.merge(&resolution, &taken.namespaces);
    }

    /// Takes `patch` in without resolving: a port is as its status says
    /// ([`crate::resolve::trusted_port`]), and a status that changed alone
    /// decides nothing. Returns the networks whose
    /// endpoints and the groups whose members it moved, or None, having
    /// changed nothing, when a port cannot be read so. Subnets' address
    /// counts are left as they were: they place nothing, and an agent
    /// reports none.
    pub fn patch(&mut self, patch: &Patch, config: &ClusterConfig) -> Option<Touched> {
        let mut states = Vec::new();
        for (key, port) in &patch.ports {
            let state = match port {
                Some(port) => Some(trusted_port(
                    key,
                    port,
                    &self.snapshot,
                    &self.resolution,
                    config,
                )?),
                None => None,
            };
            states.push(state);
        }
        let mut touched = Touched::default();
        for (key, network) in &patch.networks {
            self.snapshot.networks.insert(key.clone(), network.clone());
        }
        for (key, subnet) in &patch.subnets {
            self.snapshot.subnets.insert(key.clone(), subnet.clone());
        }
        for ((key, port), state) in patch.ports.iter().zip(states) {
            let id = ObjectId::new(Kind::Port, key.clone());
            let was = match port {
                Some(port) => self.snapshot.ports.insert(key.clone(), port.clone()),
                None => self.snapshot.ports.remove(key),
            };
            if was.is_some() != port.is_some() {
                Arc::make_mut(&mut self.names).set(&id, port.is_some());
            }
            let old = match state {
                Some(state) => self.resolution.ports.insert(key.clone(), Ok(state)),
                None => self.resolution.ports.remove(key),
            };
            let new = self.resolution.ports.get(key);
            for (verdict, by) in [(old.as_ref(), -1), (new, 1)] {
                let Some(Ok(state)) = verdict else {
                    continue;
                };
                touched.networks.insert(state.network.clone());
                for group in &state.security_groups {
                    touched.groups.insert(group.clone());
                    let members = self
                        .resolution
                        .group_members
                        .entry(group.clone())
                        .or_default();
                    *members = members.saturating_add_signed(by);
                    if *members == 0 {
                        self.resolution.group_members.remove(group);
                    }
                }
            }
        }
        // A namespace's `default` group that no object defines stands while
        // a port or another group's rule names it.
        for group in &touched.groups {
            if group.name != DEFAULT_GROUP || self.snapshot.security_groups.contains_key(group) {
                continue;
            }
            let named = |v: &Verdict<SecurityGroupState>| {
                v.as_ref().is_ok_and(|g| {
                    !g.implicit
                        && g.rules
                            .iter()
                            .any(|r| r.remote == Remote::Group(group.clone()))
                })
            };
            let stands = self.resolution.group_members.contains_key(group)
                || self.resolution.security_groups.values().any(named);
            if !stands {
                self.resolution.security_groups.remove(group);
            } else if !self.resolution.security_groups.contains_key(group) {
                (self.resolution.security_groups)
                    .insert(group.clone(), Ok(implicit_default(group)));
            }
        }
        for (key, claim) in &patch.ip_claims {
            match claim {
                Some(claim) => self.snapshot.ip_claims.insert(key.clone(), claim.clone()),
                None => self.snapshot.ip_claims.remove(key),
            };
        }
        Some(touched)
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
    fn take_object<K: ApiObject>(&mut self, id: &ObjectId, source: &impl Source) -> Option<bool> {
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

    /// Takes the objects and claims named as `source` holds them now into
    /// the kept snapshot; the resolution is left as it was.
    pub(super) fn take(
        &mut self,
        source: &impl Source,
        objects: &BTreeSet<ObjectId>,
        ip_claims: &BTreeSet<Key>,
        segment_claims: &BTreeSet<String>,
    ) -> Taken {
        let mut taken = Taken::default();
        for id in objects {
            let spec = with_kind!(id.kind, K => self.take_object::<K>(id, source));
            match spec {
                Some(true) => {
                    taken.namespaces.insert(id.key.namespace.clone());
                    taken.spec_changed.insert(id.clone());
                }
                Some(false) => {
                    taken.status_only.insert(id.clone());
                }
                None => {}
            }
        }
        for key in ip_claims {
            let old = match source.ip_claim(key) {
                Some(claim) => self.snapshot.ip_claims.insert(key.clone(), claim),
                None => self.snapshot.ip_claims.remove(key),
            };
            let new = self.snapshot.ip_claims.get(key);
            for claim in old.iter().chain(new) {
                if let Some(holder) = held_by(&claim.spec.holder) {
                    taken
                        .namespaces
                        .insert(holder.object().key.namespace.clone());
                    taken.claimants.insert(holder.object());
                }
            }
        }
        for name in segment_claims {
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
                taken.namespaces.insert(network.namespace.clone());
                let key = Key::new(network.namespace.clone(), network.name.clone());
                taken.claimants.insert(ObjectId::new(Kind::Network, key));
            }
        }
        taken
    }

    /// Whether resolving `namespaces` alone could decide differently from
    /// resolving everything: a Network or Subnet is being deleted (its
    /// users may live anywhere), or a network there is named by a router
    /// or floating IP of another namespace.
    pub(super) fn reaches_past(&self, namespaces: &BTreeSet<String>) -> Result<(), Full> {
        if let Some(id) = self.deleting.first() {
            return Err(Full::Deleting(id.clone()));
        }
        for ns in namespaces {
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
        Ok(())
    }

    /// The part of the kept snapshot that resolves `namespaces` as the
    /// whole would: their objects and claims, the external networks their
    /// routers and floating IPs name with those networks' subnets and
    /// claims, and the segment claims allocation needs.
    pub(super) fn part(&self, namespaces: &BTreeSet<String>) -> Snapshot {
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

    /// Replaces the kept verdicts of `namespaces` with those `part`
    /// resolved, and takes the verdicts it resolved of the external
    /// networks and subnets besides: every address on them is claimed, so
    /// their counts read as the whole's. Returns those external ones, each
    /// with whether it is placed differently now.
    pub(super) fn merge(
        &mut self,
        part: &Resolution,
        namespaces: &BTreeSet<String>,
    ) -> Vec<(ObjectId, bool)> {
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
        let mut context = Vec::new();
        let outside = |key: &Key| !namespaces.contains(&key.namespace);
        for key in part.networks.keys().filter(|k| outside(k)) {
            let id = ObjectId::new(Kind::Network, key.clone());
            context.push((id, false));
        }
        for key in part.subnets.keys().filter(|k| outside(k)) {
            let id = ObjectId::new(Kind::Subnet, key.clone());
            context.push((id, false));
        }
        for (id, moved) in &mut context {
            *moved = !placed_alike(id, &self.resolution, part);
        }
        let kept = &mut self.resolution;
        kind(&mut kept.networks, &part.networks, namespaces);
        kind(&mut kept.subnets, &part.subnets, namespaces);
        kind(&mut kept.ports, &part.ports, namespaces);
        kind(&mut kept.routers, &part.routers, namespaces);
        kind(&mut kept.floating_ips, &part.floating_ips, namespaces);
        kind(&mut kept.security_groups, &part.security_groups, namespaces);
        kind(&mut kept.group_members, &part.group_members, namespaces);
        for (id, _) in &context {
            match id.kind {
                Kind::Network => {
                    kept.networks
                        .insert(id.key.clone(), part.networks[&id.key].clone());
                }
                _ => {
                    kept.subnets
                        .insert(id.key.clone(), part.subnets[&id.key].clone());
                }
            }
        }
        context
    }
}
