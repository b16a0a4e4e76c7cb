//! The part of a snapshot one node's plan depends on, so that an agent
//! resolves and plans that part rather than the whole cluster.
//!
//! A node carries the networks of its ports and of the routers scheduled
//! onto it; its plan needs every port on those networks and the floating
//! IPs that may map one, every other endpoint on those of them that are
//! tunnelled (router legs, the floating IPs a gateway leg answers for: its
//! FDB and neighbour entries point at them), the members of the groups its
//! rules name as remote, and whatever those objects need to resolve the
//! way they did on the controller: their networks and every subnet of
//! them, their groups, the routers a floating IP may go through, and the
//! claims they hold. A flat or VLAN network shared by many routers — the
//! external one — does not draw in every router and its tenants. Taking a
//! little more than needed is harmless; taking less would leave out an
//! object the controller found Ready, which `tests/topology.rs` checks
//! never happens.
//!
//! The [`Index`] of who refers to whom can be kept: an agent updates it one
//! changed object at a time, so that finding its part costs the part and
//! not the cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use neutrino_api::{
    FloatingIP, IPClaim, Network, NetworkType, Port, Router, SecurityGroup, SegmentClaim, Subnet,
};

use crate::resolve::DEFAULT_GROUP;
use crate::resolve::held_by;
use crate::{ApiObject, Key, Kind, Object, ObjectId, Snapshot};

/// Where a part's objects come from: a snapshot, or an agent's watch
/// caches. Objects and claims are shared with it.
pub trait Source {
    fn shared<K: ApiObject>(&self, key: &Key) -> Option<Arc<K>>;
    fn ip_claim(&self, key: &Key) -> Option<Arc<IPClaim>>;
    fn segment_claim(&self, name: &str) -> Option<Arc<SegmentClaim>>;
}

impl Source for Snapshot {
    fn shared<K: ApiObject>(&self, key: &Key) -> Option<Arc<K>> {
        K::of(self).get(key).cloned()
    }

    fn ip_claim(&self, key: &Key) -> Option<Arc<IPClaim>> {
        self.ip_claims.get(key).cloned()
    }

    fn segment_claim(&self, name: &str) -> Option<Arc<SegmentClaim>> {
        self.segment_claims.get(name).cloned()
    }
}

/// What a port refers to.
#[derive(Clone, Debug, PartialEq)]
struct PortRefs {
    node: Option<String>,
    network: Key,
    groups: Vec<Key>,
    port_security: bool,
}

/// What a router refers to, and where it is scheduled.
#[derive(Clone, Debug, PartialEq)]
struct RouterRefs {
    node: Option<String>,
    subnets: Vec<Key>,
    gateway: Option<Key>,
}

/// What a floating IP refers to.
#[derive(Clone, Debug, PartialEq)]
struct FipRefs {
    network: Key,
    port: Option<Key>,
}

/// Keys (or claim names) by what they refer to.
type Multi<K, V = Key> = BTreeMap<K, BTreeSet<V>>;

fn link<K: Ord, V: Ord + Clone>(map: &mut Multi<K, V>, by: K, key: &V) {
    map.entry(by).or_default().insert(key.clone());
}

fn unlink<K: Ord, V: Ord>(map: &mut Multi<K, V>, by: &K, key: &V) {
    if let Some(keys) = map.get_mut(by) {
        keys.remove(key);
        if keys.is_empty() {
            map.remove(by);
        }
    }
}

fn each<'a, K: Ord>(map: &'a Multi<K>, by: &K) -> impl Iterator<Item = Key> + 'a {
    map.get(by).into_iter().flatten().cloned()
}

/// Who refers to whom, by key, from the specs (and a router's recorded
/// node): each object's references, and the same turned around.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Index {
    ports: BTreeMap<Key, PortRefs>,
    routers: BTreeMap<Key, RouterRefs>,
    floating_ips: BTreeMap<Key, FipRefs>,
    /// Each subnet's network.
    subnets: BTreeMap<Key, Key>,
    /// The groups each group's rules name as remote.
    groups: BTreeMap<Key, Vec<Key>>,
    /// Each address claim's holder.
    ip_claims: BTreeMap<Key, ObjectId>,
    /// Each segment claim's network.
    segment_claims: BTreeMap<String, Key>,

    ports_on_node: Multi<String>,
    ports_in_network: Multi<Key>,
    ports_in_group: Multi<Key>,
    subnets_of_network: Multi<Key>,
    routers_on_node: Multi<String>,
    routers_on_subnet: Multi<Key>,
    routers_on_gateway: Multi<Key>,
    fips_on_network: Multi<Key>,
    fips_of_port: Multi<Key>,
    /// The networks whose type has no tunnel: their endpoints on other
    /// nodes need no FDB or neighbour entries here.
    untunnelled: BTreeSet<Key>,
    claims_of_holder: Multi<ObjectId>,
    segment_claims_of_network: Multi<Key, String>,
}

/// The groups a port is in: those it names, or its namespace's `default`.
fn groups_of(key: &Key, port: &Port) -> Vec<Key> {
    if port.spec.security_groups.is_empty() {
        vec![key.reference(DEFAULT_GROUP)]
    } else {
        port.spec
            .security_groups
            .iter()
            .map(|g| key.reference(g))
            .collect()
    }
}

impl Index {
    /// The index of everything in `snapshot`.
    pub fn new(snapshot: &Snapshot) -> Self {
        let mut index = Self::default();
        for (key, port) in &snapshot.ports {
            index.set_port(key, Some(port));
        }
        for (key, subnet) in &snapshot.subnets {
            index.set_subnet(key, Some(subnet));
        }
        for (key, router) in &snapshot.routers {
            index.set_router(key, Some(router));
        }
        for (key, fip) in &snapshot.floating_ips {
            index.set_floating_ip(key, Some(fip));
        }
        for (key, network) in &snapshot.networks {
            index.set_network(key, Some(network));
        }
        for (key, group) in &snapshot.security_groups {
            index.set_group(key, Some(group));
        }
        for (key, claim) in &snapshot.ip_claims {
            index.set_ip_claim(key, Some(claim));
        }
        for (name, claim) in &snapshot.segment_claims {
            index.set_segment_claim(name, Some(claim));
        }
        index
    }

    /// Takes in the object `id` as it is now: `object`, or None once deleted.
    pub fn set(&mut self, id: &ObjectId, object: Option<&Object>) {
        let key = &id.key;
        match (id.kind, object) {
            (Kind::Port, Some(Object::Port(o))) => self.set_port(key, Some(o)),
            (Kind::Port, _) => self.set_port(key, None),
            (Kind::Subnet, Some(Object::Subnet(o))) => self.set_subnet(key, Some(o)),
            (Kind::Subnet, _) => self.set_subnet(key, None),
            (Kind::Router, Some(Object::Router(o))) => self.set_router(key, Some(o)),
            (Kind::Router, _) => self.set_router(key, None),
            (Kind::FloatingIP, Some(Object::FloatingIP(o))) => self.set_floating_ip(key, Some(o)),
            (Kind::FloatingIP, _) => self.set_floating_ip(key, None),
            (Kind::SecurityGroup, Some(Object::SecurityGroup(o))) => self.set_group(key, Some(o)),
            (Kind::SecurityGroup, _) => self.set_group(key, None),
            (Kind::Network, Some(Object::Network(o))) => self.set_network(key, Some(o)),
            (Kind::Network, _) => self.set_network(key, None),
        }
    }

    fn set_port(&mut self, key: &Key, port: Option<&Port>) {
        if let Some(old) = self.ports.remove(key) {
            if let Some(node) = &old.node {
                unlink(&mut self.ports_on_node, node, key);
            }
            unlink(&mut self.ports_in_network, &old.network, key);
            for group in &old.groups {
                unlink(&mut self.ports_in_group, group, key);
            }
        }
        if let Some(port) = port {
            let refs = PortRefs {
                node: port.spec.node_name.clone(),
                network: key.reference(&port.spec.network),
                groups: groups_of(key, port),
                port_security: port.spec.port_security,
            };
            if let Some(node) = &refs.node {
                link(&mut self.ports_on_node, node.clone(), key);
            }
            link(&mut self.ports_in_network, refs.network.clone(), key);
            for group in &refs.groups {
                link(&mut self.ports_in_group, group.clone(), key);
            }
            self.ports.insert(key.clone(), refs);
        }
    }

    fn set_subnet(&mut self, key: &Key, subnet: Option<&Subnet>) {
        if let Some(network) = self.subnets.remove(key) {
            unlink(&mut self.subnets_of_network, &network, key);
        }
        if let Some(subnet) = subnet {
            let network = key.reference(&subnet.spec.network);
            link(&mut self.subnets_of_network, network.clone(), key);
            self.subnets.insert(key.clone(), network);
        }
    }

    fn set_router(&mut self, key: &Key, router: Option<&Router>) {
        if let Some(old) = self.routers.remove(key) {
            if let Some(node) = &old.node {
                unlink(&mut self.routers_on_node, node, key);
            }
            for subnet in &old.subnets {
                unlink(&mut self.routers_on_subnet, subnet, key);
            }
            if let Some(network) = &old.gateway {
                unlink(&mut self.routers_on_gateway, network, key);
            }
        }
        if let Some(router) = router {
            let refs = RouterRefs {
                node: router.status.as_ref().and_then(|s| s.node.clone()),
                subnets: router
                    .spec
                    .interfaces
                    .iter()
                    .map(|i| key.reference(&i.subnet))
                    .collect(),
                gateway: router
                    .spec
                    .external_gateway
                    .as_ref()
                    .map(|g| key.shared_reference(&g.network)),
            };
            if let Some(node) = &refs.node {
                link(&mut self.routers_on_node, node.clone(), key);
            }
            for subnet in &refs.subnets {
                link(&mut self.routers_on_subnet, subnet.clone(), key);
            }
            if let Some(network) = &refs.gateway {
                link(&mut self.routers_on_gateway, network.clone(), key);
            }
            self.routers.insert(key.clone(), refs);
        }
    }

    fn set_floating_ip(&mut self, key: &Key, fip: Option<&FloatingIP>) {
        if let Some(old) = self.floating_ips.remove(key) {
            unlink(&mut self.fips_on_network, &old.network, key);
            if let Some(port) = &old.port {
                unlink(&mut self.fips_of_port, port, key);
            }
        }
        if let Some(fip) = fip {
            let refs = FipRefs {
                network: key.shared_reference(&fip.spec.network),
                port: fip.spec.port.as_ref().map(|p| key.reference(p)),
            };
            link(&mut self.fips_on_network, refs.network.clone(), key);
            if let Some(port) = &refs.port {
                link(&mut self.fips_of_port, port.clone(), key);
            }
            self.floating_ips.insert(key.clone(), refs);
        }
    }

    fn set_network(&mut self, key: &Key, network: Option<&Network>) {
        self.untunnelled.remove(key);
        if let Some(network) = network
            && matches!(
                network.spec.network_type,
                NetworkType::Flat | NetworkType::Vlan | NetworkType::Local
            )
        {
            self.untunnelled.insert(key.clone());
        }
    }

    fn set_group(&mut self, key: &Key, group: Option<&SecurityGroup>) {
        self.groups.remove(key);
        if let Some(group) = group {
            let remotes = group
                .spec
                .rules
                .iter()
                .filter_map(|r| r.remote_group.as_deref())
                .map(|r| key.reference(r))
                .collect();
            self.groups.insert(key.clone(), remotes);
        }
    }

    /// Takes in the address claim `key` as it is now.
    pub fn set_ip_claim(&mut self, key: &Key, claim: Option<&IPClaim>) {
        if let Some(holder) = self.ip_claims.remove(key) {
            unlink(&mut self.claims_of_holder, &holder, key);
        }
        if let Some(holder) = claim.and_then(|c| held_by(&c.spec.holder)) {
            let holder = holder.object();
            link(&mut self.claims_of_holder, holder.clone(), key);
            self.ip_claims.insert(key.clone(), holder);
        }
    }

    /// Takes in the segment claim `name` as it is now.
    pub fn set_segment_claim(&mut self, name: &str, claim: Option<&SegmentClaim>) {
        let name = name.to_string();
        if let Some(network) = self.segment_claims.remove(&name) {
            unlink(&mut self.segment_claims_of_network, &network, &name);
        }
        if let Some(claim) = claim {
            let network = &claim.spec.network;
            let network = Key::new(network.namespace.clone(), network.name.clone());
            link(&mut self.segment_claims_of_network, network.clone(), &name);
            self.segment_claims.insert(name, network);
        }
    }

    /// The networks a router has a leg on, as far as its spec says.
    fn networks_of_router(&self, router: &Key) -> Vec<Key> {
        let Some(refs) = self.routers.get(router) else {
            return Vec::new();
        };
        refs.subnets
            .iter()
            .filter_map(|s| self.subnets.get(s).cloned())
            .chain(refs.gateway.clone())
            .collect()
    }

    /// The routers with a leg on `network`.
    fn routers_on_network(&self, network: &Key) -> BTreeSet<Key> {
        each(&self.subnets_of_network, network)
            .flat_map(|s| each(&self.routers_on_subnet, &s).collect::<Vec<_>>())
            .chain(each(&self.routers_on_gateway, network))
            .collect()
    }

    /// The groups a group's rules name as remote.
    fn remote_groups(&self, group: &Key) -> Vec<Key> {
        match self.groups.get(group) {
            Some(remotes) => remotes.clone(),
            // The implicit default group names itself.
            None if group.name == DEFAULT_GROUP => vec![group.clone()],
            None => Vec::new(),
        }
    }
}

/// The keys chosen so far, kind by kind, with what is still to be followed.
#[derive(Clone, Debug, Default)]
struct Chosen {
    networks: BTreeSet<Key>,
    subnets: BTreeSet<Key>,
    ports: BTreeSet<Key>,
    routers: BTreeSet<Key>,
    floating_ips: BTreeSet<Key>,
    groups: BTreeSet<Key>,
    to_follow: Vec<(Kind, Key)>,
}

impl Chosen {
    fn of(&self, kind: Kind) -> &BTreeSet<Key> {
        match kind {
            Kind::Network => &self.networks,
            Kind::Subnet => &self.subnets,
            Kind::Port => &self.ports,
            Kind::Router => &self.routers,
            Kind::FloatingIP => &self.floating_ips,
            Kind::SecurityGroup => &self.groups,
        }
    }

    fn add(&mut self, kind: Kind, key: Key) {
        let set = match kind {
            Kind::Network => &mut self.networks,
            Kind::Subnet => &mut self.subnets,
            Kind::Port => &mut self.ports,
            Kind::Router => &mut self.routers,
            Kind::FloatingIP => &mut self.floating_ips,
            Kind::SecurityGroup => &mut self.groups,
        };
        if set.insert(key.clone()) {
            self.to_follow.push((kind, key));
        }
    }
}

/// What `node`'s plan depends on, out of `snapshot`.
pub fn for_node(snapshot: &Snapshot, node: &str) -> Snapshot {
    for_node_with_reach(snapshot, node).0
}

/// What a node's part was made of, and so which changes can alter it: an
/// object already in it, or one that would now be drawn in — a port bound
/// to the node, on a network it carries or in a group its rules name; a
/// router scheduled onto it or with a leg where it draws routers in; a
/// floating IP on a tunnelled network it carries or of a port in the part;
/// a subnet on a network it holds. A change that reaches none of these
/// leaves the part, and so the node's plan, as it was.
#[derive(Clone, Debug, Default)]
pub struct Reach {
    node: String,
    chosen: Chosen,
    /// The networks of the node's own ports and routers.
    carried: BTreeSet<Key>,
    /// Those of them with tunnels.
    tunnelled: BTreeSet<Key>,
    /// The groups the node's rules name as remote.
    remotes: BTreeSet<Key>,
    /// Where a router's leg draws it in: the tunnelled carried networks and
    /// those of the ports of the floating IPs in the part, and their
    /// subnets.
    leg_networks: BTreeSet<Key>,
    leg_subnets: BTreeSet<Key>,
    /// The ports that were bound to the node.
    own: BTreeSet<Key>,
}

impl Reach {
    /// Whether a change to `id`, which now reads `current` (None once
    /// deleted), can alter the node's part.
    pub fn reaches(&self, id: &ObjectId, current: Option<&Object>) -> bool {
        let chosen = &self.chosen;
        let held = match id.kind {
            Kind::Network => &chosen.networks,
            Kind::Subnet => &chosen.subnets,
            Kind::Port => &chosen.ports,
            Kind::Router => &chosen.routers,
            Kind::FloatingIP => &chosen.floating_ips,
            Kind::SecurityGroup => &chosen.groups,
        };
        if held.contains(&id.key) {
            return true;
        }
        let key = &id.key;
        match current {
            None | Some(Object::Network(_) | Object::SecurityGroup(_)) => false,
            Some(Object::Subnet(subnet)) => chosen
                .networks
                .contains(&key.reference(&subnet.spec.network)),
            Some(Object::Port(port)) => {
                port.spec.node_name.as_deref() == Some(self.node.as_str())
                    || self.carried.contains(&key.reference(&port.spec.network))
                    || groups_of(key, port)
                        .iter()
                        .any(|g| self.remotes.contains(g))
            }
            Some(Object::Router(router)) => {
                router.status.as_ref().and_then(|s| s.node.as_deref()) == Some(self.node.as_str())
                    || router
                        .spec
                        .interfaces
                        .iter()
                        .any(|i| self.leg_subnets.contains(&key.reference(&i.subnet)))
                    || router.spec.external_gateway.as_ref().is_some_and(|g| {
                        self.leg_networks
                            .contains(&key.shared_reference(&g.network))
                    })
            }
            Some(Object::FloatingIP(fip)) => {
                self.tunnelled
                    .contains(&key.shared_reference(&fip.spec.network))
                    || (fip.spec.port.as_ref())
                        .is_some_and(|p| chosen.ports.contains(&key.reference(p)))
            }
        }
    }
}

/// A change an agent's part takes in place, as [`Reach::patch`] found it:
/// every object and claim named reads here as the part taken afresh would
/// hold it.
#[derive(Clone, Debug, Default)]
pub struct Patch {
    /// Ports; None when gone or not Ready.
    pub ports: Vec<(Key, Option<Arc<Port>>)>,
    /// Those of them bound to the node.
    pub own: BTreeSet<Key>,
    /// Networks and subnets of the part whose status alone changed.
    pub networks: Vec<(Key, Arc<Network>)>,
    pub subnets: Vec<(Key, Arc<Subnet>)>,
    /// Claims changed; None when the part holds them no more.
    pub ip_claims: Vec<(Key, Option<Arc<IPClaim>>)>,
}

/// What `source` holds at `key` now, if it is Ready for its spec.
fn ready_in<K: ApiObject>(source: &impl Source, key: &Key) -> Option<Arc<K>> {
    source
        .shared::<K>(key)
        .filter(|o| crate::status::ready_now(&**o))
}

/// `old` and `new` differ in their status alone, and `new` is Ready.
fn status_only<K: ApiObject>(old: Option<&Arc<K>>, new: Option<Arc<K>>) -> Option<Arc<K>> {
    let new = new.filter(|n| crate::status::ready_now(&**n))?;
    crate::incremental::same_but_status(&**old?, &*new).then_some(new)
}

impl Reach {
    /// `changed` (objects, and the claims among them) as a patch to the
    /// ready part `ready` this reach was found with, when every change that
    /// reaches it brings in nothing but itself: a port with no floating IP,
    /// its network and groups already in the part — on another node, on a
    /// network the part carries or in a group its rules name; on the node,
    /// on a network it carries already, naming no remote group the part
    /// lacks — or the status alone of a network or subnet in the part.
    /// None when the part must be taken afresh; a port leaving the node
    /// takes it afresh too. [`Reach::grow`] takes the patch into the reach.
    pub fn patch(
        &self,
        index: &Index,
        source: &impl Source,
        ready: &Snapshot,
        changed: &BTreeSet<ObjectId>,
        ip_claims: &BTreeSet<Key>,
    ) -> Option<Patch> {
        let mut patch = Patch::default();
        let mut ports = Vec::new();
        for id in changed {
            let current = crate::with_kind!(id.kind, K => source
                .shared::<K>(&id.key)
                .map(|o| K::into_object((*o).clone())));
            if !self.reaches(id, current.as_ref()) {
                continue;
            }
            let key = &id.key;
            match id.kind {
                Kind::Network => {
                    let now = status_only(ready.networks.get(key), source.shared(key))?;
                    patch.networks.push((key.clone(), now));
                }
                Kind::Subnet => {
                    let now = status_only(ready.subnets.get(key), source.shared(key))?;
                    patch.subnets.push((key.clone(), now));
                }
                Kind::Port => {
                    if each(&index.fips_of_port, key).next().is_some() {
                        return None;
                    }
                    let local = matches!(&current, Some(Object::Port(port))
                        if port.spec.node_name.as_deref() == Some(self.node.as_str()));
                    // A port leaving the node may take networks and groups
                    // out of the part.
                    if self.own.contains(key) && !local {
                        return None;
                    }
                    if current.is_some() {
                        let refs = index.ports.get(key)?;
                        let held = self.chosen.networks.contains(&refs.network)
                            && refs.groups.iter().all(|g| self.chosen.groups.contains(g));
                        // One of the node's own draws in nothing new when its
                        // network is carried and its groups' remotes are
                        // drawn in already.
                        let drawn = if local {
                            self.carried.contains(&refs.network)
                                && (!refs.port_security
                                    || (refs.groups.iter())
                                        .flat_map(|g| index.remote_groups(g))
                                        .all(|r| self.remotes.contains(&r)))
                        } else {
                            self.carried.contains(&refs.network)
                                || refs.groups.iter().any(|g| self.remotes.contains(g))
                        };
                        if !drawn || !held {
                            return None;
                        }
                    }
                    if local {
                        patch.own.insert(key.clone());
                    }
                    ports.push(key.clone());
                }
                _ => return None,
            }
        }
        for key in &ports {
            patch.ports.push((key.clone(), ready_in(source, key)));
        }
        // A claim is in the part while its holder is chosen and there: the
        // claims changed, and those of the ports patched (a deleted port's
        // go with it).
        let held = ports.iter().flat_map(|port| {
            let holder = ObjectId::new(Kind::Port, port.clone());
            index.claims_of_holder.get(&holder).into_iter().flatten()
        });
        let claims: BTreeSet<&Key> = ip_claims.iter().chain(held).collect();
        for key in claims {
            let now = source.ip_claim(key).filter(|claim| {
                held_by(&claim.spec.holder).is_some_and(|holder| {
                    let id = holder.object();
                    let chosen = self.chosen.of(id.kind).contains(&id.key)
                        || (id.kind == Kind::Port && ports.contains(&id.key));
                    chosen && crate::with_kind!(id.kind, K => source.shared::<K>(&id.key).is_some())
                })
            });
            if now.is_some() || ready.ip_claims.contains_key(key) {
                patch.ip_claims.push((key.clone(), now));
            }
        }
        Some(patch)
    }

    /// The ports bound to the node, as far as the reach knows: those that
    /// were when it was found, and those patched in since.
    pub fn own(&self) -> &BTreeSet<Key> {
        &self.own
    }

    /// Takes a patch in: its ports are chosen from now on (a deleted
    /// port's key stays: the reach only grows).
    pub fn grow(&mut self, patch: &Patch) {
        for (key, _) in &patch.ports {
            self.chosen.ports.insert(key.clone());
        }
        self.own.extend(patch.own.iter().cloned());
    }
}

/// What `node`'s plan depends on, out of `snapshot`, and what reaches it.
pub fn for_node_with_reach(snapshot: &Snapshot, node: &str) -> (Snapshot, Reach) {
    part_of(&Index::new(snapshot), snapshot, node)
}

/// What `node`'s plan depends on, found through a kept `index` and copied
/// out of `source`, and what reaches it.
pub fn part_of(index: &Index, source: &impl Source, node: &str) -> (Snapshot, Reach) {
    let mut chosen = Chosen::default();
    let mut carried: BTreeSet<Key> = BTreeSet::new();
    // The groups this node's rules name as remote: their members'
    // addresses fill its ipsets.
    let mut remotes: BTreeSet<Key> = BTreeSet::new();
    for key in each(&index.ports_on_node, &node.to_string()) {
        let refs = &index.ports[&key];
        carried.insert(refs.network.clone());
        if refs.port_security {
            for group in &refs.groups {
                remotes.extend(index.remote_groups(group));
            }
        }
        chosen.add(Kind::Port, key);
    }
    for key in each(&index.routers_on_node, &node.to_string()) {
        carried.extend(index.networks_of_router(&key));
        chosen.add(Kind::Router, key);
    }
    for remote in &remotes {
        each(&index.ports_in_group, remote).for_each(|k| chosen.add(Kind::Port, k));
    }
    // Every port on a carried network, and the floating IPs that may map
    // one; on a tunnelled network every other endpoint too (router legs,
    // the floating IPs a gateway leg answers for), for its FDB entries.
    let tunnelled: BTreeSet<Key> = carried
        .iter()
        .filter(|n| !index.untunnelled.contains(*n))
        .cloned()
        .collect();
    for network in &carried {
        for port in each(&index.ports_in_network, network) {
            each(&index.fips_of_port, &port).for_each(|k| chosen.add(Kind::FloatingIP, k));
            chosen.add(Kind::Port, port);
        }
    }
    for network in &tunnelled {
        for router in index.routers_on_network(network) {
            chosen.add(Kind::Router, router);
        }
        each(&index.fips_on_network, network).for_each(|k| chosen.add(Kind::FloatingIP, k));
    }
    // And what each chosen object needs to resolve as it did.
    while let Some((kind, key)) = chosen.to_follow.pop() {
        match kind {
            Kind::Network => {
                each(&index.subnets_of_network, &key).for_each(|k| chosen.add(Kind::Subnet, k))
            }
            Kind::Subnet => {
                if let Some(network) = index.subnets.get(&key) {
                    chosen.add(Kind::Network, network.clone());
                }
            }
            Kind::Port => {
                if let Some(refs) = index.ports.get(&key) {
                    chosen.add(Kind::Network, refs.network.clone());
                    for group in &refs.groups {
                        chosen.add(Kind::SecurityGroup, group.clone());
                    }
                }
            }
            Kind::Router => {
                for network in index.networks_of_router(&key) {
                    chosen.add(Kind::Network, network);
                }
                if let Some(refs) = index.routers.get(&key) {
                    for subnet in &refs.subnets {
                        chosen.add(Kind::Subnet, subnet.clone());
                    }
                }
            }
            Kind::FloatingIP => {
                if let Some(refs) = index.floating_ips.get(&key) {
                    chosen.add(Kind::Network, refs.network.clone());
                    // The router that maps it has a leg on its port's network.
                    if let Some(port) = &refs.port {
                        if let Some(on) = index.ports.get(port) {
                            for router in index.routers_on_network(&on.network) {
                                chosen.add(Kind::Router, router);
                            }
                        }
                        chosen.add(Kind::Port, port.clone());
                    }
                }
            }
            Kind::SecurityGroup => {
                for remote in index.remote_groups(&key) {
                    chosen.add(Kind::SecurityGroup, remote);
                }
            }
        }
    }
    let part = take(index, source, &chosen);
    let fip_port_networks = chosen
        .floating_ips
        .iter()
        .filter_map(|k| index.floating_ips.get(k)?.port.as_ref())
        .filter_map(|p| Some(index.ports.get(p)?.network.clone()));
    let leg_networks: BTreeSet<Key> = tunnelled.iter().cloned().chain(fip_port_networks).collect();
    let leg_subnets = leg_networks
        .iter()
        .flat_map(|n| each(&index.subnets_of_network, n))
        .collect();
    let own = each(&index.ports_on_node, &node.to_string()).collect();
    let reach = Reach {
        own,
        node: node.to_string(),
        chosen,
        carried,
        tunnelled,
        remotes,
        leg_networks,
        leg_subnets,
    };
    (part, reach)
}

/// The chosen objects, and the claims they hold.
fn take(index: &Index, source: &impl Source, chosen: &Chosen) -> Snapshot {
    fn kind<K: ApiObject>(
        index: &Index,
        source: &impl Source,
        chosen: &Chosen,
        part: &mut Snapshot,
    ) {
        for key in chosen.of(K::KIND) {
            let Some(object) = source.shared::<K>(key) else {
                continue;
            };
            K::of_mut(part).insert(key.clone(), object);
            let id = ObjectId::new(K::KIND, key.clone());
            for claim in index.claims_of_holder.get(&id).into_iter().flatten() {
                if let Some(found) = source.ip_claim(claim) {
                    part.ip_claims.insert(claim.clone(), found);
                }
            }
        }
    }
    let mut part = Snapshot::default();
    crate::for_each_kind!(K => kind::<K>(index, source, chosen, &mut part));
    for network in &chosen.networks {
        for name in index
            .segment_claims_of_network
            .get(network)
            .into_iter()
            .flatten()
        {
            if let Some(found) = source.segment_claim(name) {
                part.segment_claims.insert(name.clone(), found);
            }
        }
    }
    part
}
