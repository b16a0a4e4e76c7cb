//! The part of a snapshot one node's plan depends on, so that an agent
//! resolves and plans that part rather than the whole cluster.
//!
//! A node carries the networks of its ports and of the routers scheduled
//! onto it; its plan needs every endpoint on those networks (ports, router
//! legs, the floating IPs a gateway leg answers for), the members of the
//! groups its rules name as remote, and whatever those objects need to
//! resolve the way they did on the controller: their networks and every
//! subnet of them, their groups, the routers a floating IP may go through,
//! and the claims they hold. Taking a little more than needed is harmless;
//! taking less would leave out an object the controller found Ready, which
//! `tests/topology.rs` checks never happens.

use std::collections::{BTreeMap, BTreeSet};

use neutrino_api::{Port, Router};

use crate::resolve::DEFAULT_GROUP;
use crate::resolve::held_by;
use crate::{Key, Kind, Snapshot};

/// Who refers to whom, by key, from the specs (and a router's recorded node).
struct Index<'s> {
    ports_in_network: BTreeMap<Key, Vec<&'s Key>>,
    ports_in_group: BTreeMap<Key, Vec<&'s Key>>,
    subnets_of_network: BTreeMap<Key, Vec<&'s Key>>,
    routers_on_network: BTreeMap<Key, Vec<&'s Key>>,
    networks_of_router: BTreeMap<&'s Key, Vec<Key>>,
    fips_on_network: BTreeMap<Key, Vec<&'s Key>>,
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

/// The networks a router has a leg on, as far as its spec says.
fn router_networks(snapshot: &Snapshot, key: &Key, router: &Router) -> Vec<Key> {
    let mut networks: Vec<Key> = router
        .spec
        .interfaces
        .iter()
        .filter_map(|i| {
            let subnet = key.reference(&i.subnet);
            let spec = &snapshot.subnets.get(&subnet)?.spec;
            Some(subnet.reference(&spec.network))
        })
        .collect();
    if let Some(gateway) = &router.spec.external_gateway {
        networks.push(key.reference(&gateway.network));
    }
    networks
}

impl<'s> Index<'s> {
    fn networks_of_router(&self, router: &Key) -> impl Iterator<Item = &Key> {
        self.networks_of_router.get(router).into_iter().flatten()
    }

    fn new(snapshot: &'s Snapshot) -> Self {
        let mut index = Index {
            ports_in_network: BTreeMap::new(),
            ports_in_group: BTreeMap::new(),
            subnets_of_network: BTreeMap::new(),
            routers_on_network: BTreeMap::new(),
            networks_of_router: BTreeMap::new(),
            fips_on_network: BTreeMap::new(),
        };
        for (key, port) in &snapshot.ports {
            let network = key.reference(&port.spec.network);
            index.ports_in_network.entry(network).or_default().push(key);
            for group in groups_of(key, port) {
                index.ports_in_group.entry(group).or_default().push(key);
            }
        }
        for (key, subnet) in &snapshot.subnets {
            let network = key.reference(&subnet.spec.network);
            index
                .subnets_of_network
                .entry(network)
                .or_default()
                .push(key);
        }
        for (key, router) in &snapshot.routers {
            let networks = router_networks(snapshot, key, router);
            for network in &networks {
                index
                    .routers_on_network
                    .entry(network.clone())
                    .or_default()
                    .push(key);
            }
            index.networks_of_router.insert(key, networks);
        }
        for (key, fip) in &snapshot.floating_ips {
            let network = key.reference(&fip.spec.network);
            index.fips_on_network.entry(network).or_default().push(key);
        }
        index
    }
}

/// The groups a group's rules name as remote.
fn remote_groups(snapshot: &Snapshot, group: &Key) -> Vec<Key> {
    match snapshot.security_groups.get(group) {
        Some(object) => object
            .spec
            .rules
            .iter()
            .filter_map(|r| r.remote_group.as_deref())
            .map(|r| group.reference(r))
            .collect(),
        // The implicit default group names itself.
        None if group.name == DEFAULT_GROUP => vec![group.clone()],
        None => Vec::new(),
    }
}

fn each<'a>(map: &'a BTreeMap<Key, Vec<&Key>>, key: &Key) -> impl Iterator<Item = Key> + 'a {
    map.get(key).into_iter().flatten().map(|k| (*k).clone())
}

/// The keys chosen so far, kind by kind, with what is still to be followed.
#[derive(Default)]
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
    let index = Index::new(snapshot);
    let mut chosen = Chosen::default();
    let mut carried: BTreeSet<Key> = BTreeSet::new();
    // The groups this node's rules name as remote: their members'
    // addresses fill its ipsets.
    let mut remotes: BTreeSet<Key> = BTreeSet::new();
    for (key, port) in &snapshot.ports {
        if port.spec.node_name.as_deref() != Some(node) {
            continue;
        }
        carried.insert(key.reference(&port.spec.network));
        chosen.add(Kind::Port, key.clone());
        if port.spec.port_security {
            for group in groups_of(key, port) {
                remotes.extend(remote_groups(snapshot, &group));
            }
        }
    }
    for (key, router) in &snapshot.routers {
        let here = router.status.as_ref().and_then(|s| s.node.as_deref()) == Some(node);
        if here {
            carried.extend(index.networks_of_router(key).cloned());
            chosen.add(Kind::Router, key.clone());
        }
    }
    for remote in &remotes {
        each(&index.ports_in_group, remote).for_each(|k| chosen.add(Kind::Port, k));
    }
    // Every endpoint on a carried network.
    for network in &carried {
        each(&index.ports_in_network, network).for_each(|k| chosen.add(Kind::Port, k));
        each(&index.routers_on_network, network).for_each(|k| chosen.add(Kind::Router, k));
        each(&index.fips_on_network, network).for_each(|k| chosen.add(Kind::FloatingIP, k));
    }
    // And what each chosen object needs to resolve as it did.
    while let Some((kind, key)) = chosen.to_follow.pop() {
        match kind {
            Kind::Network => {
                each(&index.subnets_of_network, &key).for_each(|k| chosen.add(Kind::Subnet, k))
            }
            Kind::Subnet => {
                if let Some(subnet) = snapshot.subnets.get(&key) {
                    chosen.add(Kind::Network, key.reference(&subnet.spec.network));
                }
            }
            Kind::Port => {
                if let Some(port) = snapshot.ports.get(&key) {
                    chosen.add(Kind::Network, key.reference(&port.spec.network));
                    groups_of(&key, port)
                        .into_iter()
                        .for_each(|g| chosen.add(Kind::SecurityGroup, g));
                }
            }
            Kind::Router => {
                for network in index.networks_of_router(&key) {
                    chosen.add(Kind::Network, network.clone());
                }
                if let Some(router) = snapshot.routers.get(&key) {
                    for interface in &router.spec.interfaces {
                        chosen.add(Kind::Subnet, key.reference(&interface.subnet));
                    }
                }
            }
            Kind::FloatingIP => {
                if let Some(fip) = snapshot.floating_ips.get(&key) {
                    let network = key.reference(&fip.spec.network);
                    each(&index.routers_on_network, &network)
                        .for_each(|k| chosen.add(Kind::Router, k));
                    chosen.add(Kind::Network, network);
                    if let Some(port) = &fip.spec.port {
                        chosen.add(Kind::Port, key.reference(port));
                    }
                }
            }
            Kind::SecurityGroup => {
                for remote in remote_groups(snapshot, &key) {
                    chosen.add(Kind::SecurityGroup, remote);
                }
            }
        }
    }
    take(snapshot, &chosen)
}

/// The chosen objects, and the claims they hold.
fn take(snapshot: &Snapshot, chosen: &Chosen) -> Snapshot {
    fn pick<T: Clone>(all: &BTreeMap<Key, T>, keys: &BTreeSet<Key>) -> BTreeMap<Key, T> {
        keys.iter()
            .filter_map(|k| Some((k.clone(), all.get(k)?.clone())))
            .collect()
    }
    let mut part = Snapshot {
        networks: pick(&snapshot.networks, &chosen.networks),
        subnets: pick(&snapshot.subnets, &chosen.subnets),
        ports: pick(&snapshot.ports, &chosen.ports),
        routers: pick(&snapshot.routers, &chosen.routers),
        floating_ips: pick(&snapshot.floating_ips, &chosen.floating_ips),
        security_groups: pick(&snapshot.security_groups, &chosen.groups),
        ..Snapshot::default()
    };
    part.ip_claims = snapshot
        .ip_claims
        .iter()
        .filter(|(_, c)| held_by(&c.spec.holder).is_some_and(|h| part.contains(&h.object())))
        .map(|(k, c)| (k.clone(), c.clone()))
        .collect();
    part.segment_claims = snapshot
        .segment_claims
        .iter()
        .filter(|(_, c)| {
            let holder = &c.spec.network;
            chosen
                .networks
                .contains(&Key::new(holder.namespace.clone(), holder.name.clone()))
        })
        .map(|(k, c)| (k.clone(), c.clone()))
        .collect();
    part
}
