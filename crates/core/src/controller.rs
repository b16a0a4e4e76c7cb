//! What the controller must do to the API, as values: the claims to create
//! and delete, and the statuses to write. Pure; the Kubernetes adapter
//! carries the actions out.
//!
//! The guarantee: a status never shows an allocation that is not claimed.
//! Claims are created first; creating one fails when its name exists, so of
//! two writers racing for an address (two replicas, a restart in the middle
//! of a reconcile) only one succeeds, and an object's status is written
//! only once every claim it needs is held by that very object.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use kube_core::Resource;
use kube_core::object::HasStatus;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use super::allocate::{Holder, claim_name};
use super::finalizers::{Finalizers, finalizers};
use super::resolve::{Resolution, Segment, claim_holder, held_by};
use super::{ApiObject, Key, Kind, ObjectId, Snapshot, status};
use crate::{for_each_kind, with_kind};
use neutrino_api::ClaimHolder;
use neutrino_api::{
    IPClaim, IPClaimSpec, NodeRealisation, ObjectStatus, SegmentClaim, SegmentClaimSpec,
};

/// One address claim the allocations need.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AddressClaim {
    pub subnet: Key,
    pub address: IpAddr,
    pub holder: Holder,
}

impl AddressClaim {
    /// The claim object's namespace and name.
    pub fn key(&self) -> Key {
        Key::new(
            self.subnet.namespace.clone(),
            claim_name(&self.subnet.name, self.address),
        )
    }

    pub fn object(&self) -> IPClaim {
        let key = self.key();
        IPClaim {
            metadata: ObjectMeta {
                name: Some(key.name),
                namespace: Some(key.namespace),
                ..ObjectMeta::default()
            },
            spec: IPClaimSpec {
                subnet: self.subnet.name.clone(),
                address: self.address.to_string(),
                holder: claim_holder(&self.holder).expect("gateways are never claimed"),
            },
        }
    }
}

/// What the controller must do.
#[derive(Debug, Default)]
pub struct Actions {
    pub create_ip_claims: Vec<IPClaim>,
    /// Claims whose holder is gone or, ready, holds other addresses now.
    pub delete_ip_claims: Vec<Key>,
    pub create_segment_claims: Vec<SegmentClaim>,
    pub delete_segment_claims: Vec<String>,
    /// Objects whose status must change, with their new status set. A
    /// status that shows an allocation whose claim this round creates is
    /// written only once the claim is (the adapter leaves out the holders
    /// of claims it could not make); an object whose allocation another
    /// holder's claim still shows in this view waits, and says so.
    pub statuses: Snapshot,
    /// Finalizers to add and to remove.
    pub finalizers: Finalizers,
}

impl Actions {
    pub fn is_empty(&self) -> bool {
        self.create_ip_claims.is_empty()
            && self.delete_ip_claims.is_empty()
            && self.create_segment_claims.is_empty()
            && self.delete_segment_claims.is_empty()
            && self.statuses.has_no_objects()
            && self.finalizers.add.is_empty()
            && self.finalizers.remove.is_empty()
    }
}

/// Every address the resolution allocated, as the claims it needs.
pub fn address_claims(resolution: &Resolution) -> Vec<AddressClaim> {
    let mut claims = Vec::new();
    for (key, port) in resolution.ready_ports() {
        for (subnet, address) in &port.fixed_ips {
            claims.push(AddressClaim {
                subnet: subnet.clone(),
                address: *address,
                holder: Holder::Port(key.clone()),
            });
        }
    }
    for (key, subnet) in resolution.ready_subnets() {
        if let Some(address) = subnet.dhcp {
            claims.push(AddressClaim {
                subnet: key.clone(),
                address,
                holder: Holder::Dhcp(key.clone()),
            });
        }
    }
    for (key, router) in resolution.ready_routers() {
        if let Some(gateway) = &router.gateway {
            claims.push(AddressClaim {
                subnet: gateway.leg.subnet.clone(),
                address: gateway.leg.address.addr(),
                holder: Holder::RouterGateway(key.clone()),
            });
        }
    }
    for (key, fip) in resolution.ready_floating_ips() {
        claims.push(AddressClaim {
            subnet: fip.subnet.clone(),
            address: fip.address,
            holder: Holder::FloatingIP(key.clone()),
        });
    }
    claims.sort();
    claims
}

/// Every segment the resolution allocated, by claim name, with its network.
pub fn segment_claims(resolution: &Resolution) -> BTreeMap<String, Key> {
    resolution
        .ready_networks()
        .filter_map(|(key, network)| {
            let segment = match (network.segmentation_id, network.physical_network.as_deref()) {
                (Some(id), Some(physnet)) => Segment::Vlan(physnet.into(), id),
                (Some(id), None) => Segment::Vxlan(id),
                (None, Some(physnet)) => Segment::Flat(physnet.into()),
                (None, None) => return None,
            };
            Some((segment.name(), key.clone()))
        })
        .collect()
}

/// Whether the holder's recorded status shows `address`.
fn shows(snapshot: &Snapshot, holder: &Holder, address: &str) -> bool {
    let ObjectId { kind, key } = holder.object();
    holder.claimable()
        && with_kind!(kind, K => K::of(snapshot)
            .get(&key)
            .and_then(|o| o.status())
            .is_some_and(|s| K::shows(s, address)))
}

/// Keeps in `to` the objects whose status differs from `from`'s. An object
/// waiting for a claim shows no allocation yet: it keeps its status, or,
/// having none, gets one that says it is being allocated.
fn changed<T: ApiObject>(
    from: &Snapshot,
    to: &mut Snapshot,
    waiting: &BTreeSet<ObjectId>,
    now: &Time,
) {
    let from = T::of(from);
    T::of_mut(to).retain(|key, object| {
        let before = from.get(key);
        let old = before.and_then(|o| o.status());
        if waiting.contains(&ObjectId::new(T::KIND, key.clone())) {
            if old.is_some_and(|s| !s.conditions().is_empty()) {
                return false;
            }
            let object = Arc::make_mut(object);
            let generation = object.meta().generation.unwrap_or(0);
            *object.status_mut() = Some(T::Status::only_conditions(
                generation,
                status::allocating(generation, now),
            ));
            return true;
        }
        // Still the very object read: nothing written to it.
        if before.is_some_and(|b| Arc::ptr_eq(b, object)) {
            return false;
        }
        old != object.status()
    });
}

/// Gives each object of kind `K` in `next` the status `resolution` and
/// `realised` make for it, copying an object only where that differs from
/// what it shows: a round over a settled cluster copies next to nothing.
fn new_statuses<K: ApiObject>(
    next: &mut Snapshot,
    resolution: &Resolution,
    realised: &dyn Fn(&ObjectId) -> Option<NodeRealisation>,
    now: &Time,
) {
    let verdicts = K::verdicts(resolution);
    for (key, object) in K::of_mut(next).iter_mut() {
        let mut status = match verdicts.get(key) {
            Some(verdict) => Some(status::status_of(key, &**object, verdict, resolution, now)),
            None => object.status().cloned(),
        };
        if let Some(status) = status.as_mut() {
            status.set_nodes(realised(&ObjectId::new(K::KIND, key.clone())));
            if let Some(verdict) = verdicts.get(key) {
                let state = verdict.as_ref().ok();
                K::with_progress(key, status, state, resolution, realised);
            }
        }
        if status.as_ref() != object.status() {
            *Arc::make_mut(object).status_mut() = status;
        }
    }
}

/// Gives an object whose deletion waits the conditions that say so.
fn deleting<T>(object: &mut T, users: &[String], unclaimed: bool, now: &Time)
where
    T: HasStatus + Resource,
    T::Status: ObjectStatus,
{
    let generation = object.meta().generation.unwrap_or(0);
    let previous: Vec<Condition> = object
        .status()
        .map(|s| s.conditions().to_vec())
        .unwrap_or_default();
    let conditions = status::deleting(generation, now, users, &previous);
    let status = object.status_mut();
    match status {
        Some(s) if !unclaimed => s.set_conditions(conditions),
        _ => *status = Some(T::Status::only_conditions(generation, conditions)),
    }
}

/// Claims to create for addresses that have none, and to release.
fn ip_claim_actions(
    snapshot: &Snapshot,
    resolution: &Resolution,
    within: &Within,
    actions: &mut Actions,
    waiting: &mut BTreeSet<ObjectId>,
) {
    let mut wanted = address_claims(resolution);
    wanted.retain(|c| within.holds(&c.holder.object().key.namespace));
    for claim in &wanted {
        let key = claim.key();
        match snapshot.ip_claims.get(&key) {
            Some(existing)
                if existing.spec.holder == claim_holder(&claim.holder).expect("claimable") => {}
            // Held by someone else in this view: the resolution cannot have
            // chosen it, so the view is stale; the next round sorts it out.
            Some(_) => {
                waiting.insert(claim.holder.object());
            }
            // Claimed in this round, before any status is written: the
            // status shows the address only if the claim is created.
            None => actions.create_ip_claims.push(claim.object()),
        }
    }
    let wanted_keys: BTreeSet<Key> = wanted.iter().map(AddressClaim::key).collect();
    for (key, claim) in &snapshot.ip_claims {
        if !within.holds(&claim.spec.holder.namespace) {
            continue;
        }
        let Some(holder) = held_by(&claim.spec.holder) else {
            continue;
        };
        // A holder that is not ready keeps what it holds until it is again,
        // and an address a status still shows stays claimed until the status
        // stops showing it.
        let stale = !snapshot.contains(&holder.object())
            || (resolution.is_ready(&holder.object())
                && !wanted_keys.contains(key)
                && !shows(snapshot, &holder, &claim.spec.address));
        if stale {
            actions.delete_ip_claims.push(key.clone());
        }
    }
}

/// Claims to create for segments that have none, and to release.
fn segment_claim_actions(
    snapshot: &Snapshot,
    resolution: &Resolution,
    within: &Within,
    actions: &mut Actions,
    waiting: &mut BTreeSet<ObjectId>,
) {
    let mut segments = segment_claims(resolution);
    segments.retain(|_, network| within.holds(&network.namespace));
    for (name, network) in &segments {
        let holder = ClaimHolder {
            kind: "Network".into(),
            namespace: network.namespace.clone(),
            name: network.name.clone(),
        };
        match snapshot.segment_claims.get(name) {
            Some(existing) if existing.spec.network == holder => {}
            Some(_) => {
                waiting.insert(ObjectId::new(Kind::Network, network.clone()));
            }
            None => {
                actions.create_segment_claims.push(SegmentClaim {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: SegmentClaimSpec { network: holder },
                });
            }
        }
    }
    for (name, claim) in &snapshot.segment_claims {
        let network = Key::new(
            claim.spec.network.namespace.clone(),
            claim.spec.network.name.clone(),
        );
        if !within.holds(&network.namespace) {
            continue;
        }
        let ready = resolution.networks.get(&network).is_some_and(Result::is_ok);
        if !snapshot.networks.contains_key(&network)
            || (ready && segments.get(name) != Some(&network))
        {
            actions.delete_segment_claims.push(name.clone());
        }
    }
}

/// What a round speaks for: everything, or the namespaces it resolved
/// afresh and the objects whose status may read differently now.
#[derive(Clone, Debug, Default)]
pub struct Within {
    /// None: every namespace, every object.
    pub namespaces: Option<BTreeSet<String>>,
    /// With namespaces: the objects whose verdict, object or nodes
    /// changed. The others' statuses are as the last round left them.
    pub objects: BTreeSet<ObjectId>,
}

impl Within {
    pub fn everything() -> Self {
        Self::default()
    }

    /// Whether objects of `namespace` were resolved afresh: only their
    /// claims are made and released, only their finalizers set.
    pub fn holds(&self, namespace: &str) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|n| n.contains(namespace))
    }
}

/// The objects of kind `K` whose status a round works out, shared with
/// `snapshot`.
fn selected<K: ApiObject>(snapshot: &Snapshot, within: &Within) -> BTreeMap<Key, Arc<K>> {
    let all = K::of(snapshot);
    if within.namespaces.is_none() {
        return all.clone();
    }
    let of_kind = within.objects.iter().filter(|id| id.kind == K::KIND);
    of_kind
        .filter_map(|id| Some((id.key.clone(), all.get(&id.key)?.clone())))
        .collect()
}

/// The entries of `map` in `namespace`: keys sort by namespace first.
pub fn in_namespace<'a, V>(
    map: &'a BTreeMap<Key, V>,
    namespace: &'a str,
) -> impl Iterator<Item = (&'a Key, &'a V)> + 'a {
    map.range(Key::new(namespace, "")..)
        .take_while(move |(k, _)| k.namespace == namespace)
}

/// The actions that take the API from `snapshot` (objects and claims, as
/// the controller sees them) to `resolution`.
///
/// `realised` says, for each object, how far the nodes that must realise
/// it have come (from the agents' reports); it goes to `status.nodes`.
pub fn actions(
    snapshot: &Snapshot,
    resolution: &Resolution,
    realised: &BTreeMap<ObjectId, NodeRealisation>,
    now: &Time,
) -> Actions {
    let whole = (snapshot, resolution);
    let realised = |id: &ObjectId| realised.get(id).cloned();
    actions_within(whole, whole, &realised, &Within::everything(), now)
}

/// `actions` for what `within` speaks for. `part` is what was resolved
/// afresh — the namespaces `within` names, with the external networks and
/// the claims they need — and `whole` the controller's whole view, its
/// resolution brought up to date with the part's.
pub fn actions_within(
    part: (&Snapshot, &Resolution),
    whole: (&Snapshot, &Resolution),
    realised: &dyn Fn(&ObjectId) -> Option<NodeRealisation>,
    within: &Within,
    now: &Time,
) -> Actions {
    let (snapshot, resolution) = whole;
    let mut actions = Actions::default();
    let mut waiting = BTreeSet::new();
    ip_claim_actions(part.0, part.1, within, &mut actions, &mut waiting);
    segment_claim_actions(part.0, part.1, within, &mut actions, &mut waiting);
    // The objects are shared with `snapshot` until one is written to.
    let mut next = Snapshot::default();
    for_each_kind!(K => {
        *K::of_mut(&mut next) = selected::<K>(snapshot, within);
        new_statuses::<K>(&mut next, resolution, realised, now);
    });
    // A Network or Subnet whose deletion waits says so, whatever else holds.
    let mut finalizers = finalizers(part.0);
    let ours = |id: &ObjectId| within.holds(&id.key.namespace);
    finalizers.add.retain(ours);
    finalizers.remove.retain(ours);
    finalizers.blocked.retain(|id, _| ours(id));
    for (id, users) in &finalizers.blocked {
        // What is still being claimed is not shown; the rest stays.
        let unclaimed = waiting.remove(id);
        with_kind!(id.kind, K => {
            if let Some(object) = K::of_mut(&mut next).get_mut(&id.key) {
                deleting(Arc::make_mut(object), users, unclaimed, now);
            }
        });
    }
    actions.finalizers = finalizers;
    // What waits for a claim says so, whether or not it was selected.
    for id in &waiting {
        with_kind!(id.kind, K => {
            if let Some(object) = K::of(snapshot).get(&id.key) {
                K::of_mut(&mut next).entry(id.key.clone()).or_insert_with(|| object.clone());
            }
        });
    }
    for_each_kind!(K => changed::<K>(snapshot, &mut next, &waiting, now));
    actions.statuses = next;
    actions
}

/// Something a user should see as a Kubernetes Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub object: ObjectId,
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

fn ready_of(conditions: &[Condition]) -> Option<(&str, &str, &str)> {
    conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.as_str(), c.reason.as_str(), c.message.as_str()))
}

/// The Events a round's statuses call for: an object that became Ready,
/// or that stopped being Ready or changed why, as it changes.
pub fn notices(snapshot: &Snapshot, statuses: &Snapshot) -> Vec<Notice> {
    fn each<T: ApiObject>(before: &Snapshot, after: &Snapshot, out: &mut Vec<Notice>) {
        let kind = T::KIND;
        let before = T::of(before);
        for (key, object) in T::of(after) {
            let now = object.status().map(|s| s.conditions()).and_then(ready_of);
            let then = before
                .get(key)
                .and_then(|o| o.status())
                .map(|s| s.conditions())
                .and_then(ready_of);
            let Some((status, reason, message)) = now else {
                continue;
            };
            if then.is_some_and(|(s, r, _)| s == status && r == reason) {
                continue;
            }
            let (warning, note) = match status {
                "True" => (false, format!("{kind} {key} is ready: {message}")),
                "False" => (reason != "Deleting", message.to_string()),
                _ => continue,
            };
            out.push(Notice {
                object: ObjectId::new(kind, key.clone()),
                warning,
                reason: reason.to_string(),
                note,
            });
        }
    }
    let mut out = Vec::new();
    for_each_kind!(K => each::<K>(snapshot, statuses, &mut out));
    out
}
