//! Where everything sits: the ready objects of a resolution indexed by
//! node, network, router and group, built once. Planning one node, or
//! learning which objects a node realises, then costs what is on that node
//! and the networks it carries, not the whole cluster.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use crate::allocate::Mac;
use crate::config::Nodes;
use crate::incremental::Touched;
use crate::resolve::{FloatingIpState, PortState, Resolution, RouterState};
use crate::{ClusterConfig, Key, Kind, NodeConfig, ObjectId};

/// Something with a MAC on a network, living on one node.
pub(super) struct Endpoint<'r> {
    pub node: &'r str,
    pub mac: Mac,
    pub ips: Vec<IpAddr>,
    pub owner: Owner<'r>,
}

/// What an endpoint belongs to; written out only into the FDB entries of
/// the nodes that plan them.
#[derive(Clone, Copy)]
pub(super) enum Owner<'r> {
    Port(&'r Key),
    Router(&'r Key),
}

impl std::fmt::Display for Owner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::Port(key) => write!(f, "port {key}"),
            Owner::Router(key) => write!(f, "router {key}"),
        }
    }
}

/// What planning again after a patch looks at: the networks and groups it
/// touched, the ready ports on those networks or in those groups, and
/// where each node stands in the configuration's list, so that finding a
/// few does not index them all.
pub struct Focus<'a, 'r> {
    pub touched: &'a Touched,
    pub ports: Vec<(&'r Key, &'r PortState)>,
    pub positions: &'a HashMap<String, usize>,
}

/// The indexes over one resolution and the nodes of one configuration.
pub struct Topology<'r> {
    pub(super) resolution: &'r Resolution,
    nodes: Nodes<'r>,
    /// Every bound endpoint (ports, then router legs), by network.
    endpoints: BTreeMap<&'r Key, Vec<Endpoint<'r>>>,
    /// The networks with an endpoint on each node.
    networks_on: BTreeMap<&'r str, BTreeSet<&'r Key>>,
    /// The ready ports bound to each node, in key order.
    ports_on: BTreeMap<&'r str, Vec<(&'r Key, &'r PortState)>>,
    /// The ready routers scheduled onto each node, in key order.
    routers_on: BTreeMap<&'r str, Vec<(&'r Key, &'r RouterState)>>,
    /// The ready floating IPs pointing through each router, in key order.
    floating_through: BTreeMap<&'r Key, Vec<(&'r Key, &'r FloatingIpState)>>,
    /// The ready ports in each security group, bound or not.
    members: BTreeMap<&'r Key, Vec<&'r PortState>>,
}

const NONE: &[(&Key, &PortState)] = &[];

impl<'r> Topology<'r> {
    pub fn new(resolution: &'r Resolution, config: &'r ClusterConfig) -> Self {
        Self::build(resolution, config, None)
    }

    /// The indexes of the endpoints on `focus`'s networks and the members
    /// of its groups alone, from the ports it names: what planning them
    /// again needs, at their cost.
    pub(super) fn focused(
        resolution: &'r Resolution,
        config: &'r ClusterConfig,
        focus: &Focus<'_, 'r>,
    ) -> Self {
        Self::build(resolution, config, Some(focus))
    }

    fn build(
        resolution: &'r Resolution,
        config: &'r ClusterConfig,
        focus: Option<&Focus<'_, 'r>>,
    ) -> Self {
        let network_in = |n: &Key| focus.is_none_or(|f| f.touched.networks.contains(n));
        let group_in = |g: &Key| focus.is_none_or(|f| f.touched.groups.contains(g));
        let nodes = match focus {
            None => config.indexed(),
            Some(_) => Nodes::some_of(&config.nodes, std::iter::empty()),
        };
        let mut topology = Topology {
            resolution,
            nodes,
            endpoints: BTreeMap::new(),
            networks_on: BTreeMap::new(),
            ports_on: BTreeMap::new(),
            routers_on: BTreeMap::new(),
            floating_through: BTreeMap::new(),
            members: BTreeMap::new(),
        };
        let ports: Box<dyn Iterator<Item = (&'r Key, &'r PortState)>> = match focus {
            None => Box::new(resolution.ready_ports()),
            Some(f) => Box::new(f.ports.iter().copied()),
        };
        for (key, port) in ports {
            for group in port.security_groups.iter().filter(|g| group_in(g)) {
                topology.members.entry(group).or_default().push(port);
            }
            let Some(node) = port.node.as_deref() else {
                continue;
            };
            if focus.is_none() {
                topology.ports_on.entry(node).or_default().push((key, port));
            }
            if !network_in(&port.network) {
                continue;
            }
            topology.add_endpoint(
                &port.network,
                Endpoint {
                    node,
                    mac: port.mac,
                    ips: port.fixed_ips.iter().map(|(_, ip)| *ip).collect(),
                    owner: Owner::Port(key),
                },
            );
        }
        for (key, fip) in resolution.ready_floating_ips() {
            if let Some(target) = &fip.target {
                topology
                    .floating_through
                    .entry(&target.router)
                    .or_default()
                    .push((key, fip));
            }
        }
        for (key, router) in resolution.ready_routers() {
            if focus.is_none() {
                topology
                    .routers_on
                    .entry(&router.node)
                    .or_default()
                    .push((key, router));
            }
            let legs = router
                .interfaces
                .iter()
                .map(|l| (l, false))
                .chain(router.gateway.iter().map(|g| (&g.leg, true)))
                .filter(|(l, _)| network_in(&l.network));
            for (leg, external) in legs {
                let mut ips = vec![leg.address.addr()];
                if external {
                    ips.extend(topology.floating_ips_through(key).map(|(_, f)| f.address));
                }
                topology.add_endpoint(
                    &leg.network,
                    Endpoint {
                        node: &router.node,
                        mac: leg.mac,
                        ips,
                        owner: Owner::Router(key),
                    },
                );
            }
        }
        if let Some(focus) = focus {
            let named: BTreeSet<&str> = topology
                .endpoints
                .values()
                .flatten()
                .map(|e| e.node)
                .collect();
            let found = named.into_iter().filter_map(|name| {
                let at = focus.positions.get(name).and_then(|&i| config.nodes.get(i));
                at.filter(|n| n.name == name).or_else(|| config.node(name))
            });
            topology.nodes = Nodes::some_of(&config.nodes, found);
        }
        topology
    }

    fn add_endpoint(&mut self, network: &'r Key, endpoint: Endpoint<'r>) {
        self.networks_on
            .entry(endpoint.node)
            .or_default()
            .insert(network);
        self.endpoints.entry(network).or_default().push(endpoint);
    }

    pub(super) fn node(&self, name: &str) -> Option<&'r NodeConfig> {
        self.nodes.get(name)
    }

    /// The networks with something on `node`, in key order.
    pub(super) fn networks_on(&self, node: &str) -> impl Iterator<Item = &'r Key> + '_ {
        self.networks_on.get(node).into_iter().flatten().copied()
    }

    pub(super) fn endpoints(&self, network: &Key) -> &[Endpoint<'r>] {
        self.endpoints.get(network).map_or(&[], Vec::as_slice)
    }

    pub(super) fn ports_on(&self, node: &str) -> &[(&'r Key, &'r PortState)] {
        self.ports_on.get(node).map_or(NONE, Vec::as_slice)
    }

    pub(super) fn routers_on(
        &self,
        node: &str,
    ) -> impl Iterator<Item = (&'r Key, &'r RouterState)> {
        self.routers_on.get(node).into_iter().flatten().copied()
    }

    pub(super) fn floating_ips_through(
        &self,
        router: &Key,
    ) -> impl Iterator<Item = (&'r Key, &'r FloatingIpState)> {
        self.floating_through
            .get(router)
            .into_iter()
            .flatten()
            .copied()
    }

    pub(super) fn members(&self, group: &Key) -> impl Iterator<Item = &'r PortState> {
        self.members.get(group).into_iter().flatten().copied()
    }

    /// The objects `node`'s plan realises: `planned_objects` of its plan,
    /// found without building the plan.
    pub fn objects_on(&self, node: &str) -> BTreeSet<ObjectId> {
        self.ids_on(node)
            .into_iter()
            .map(|(kind, key)| ObjectId::new(kind, key.clone()))
            .collect()
    }

    /// `objects_on`, borrowing the keys from the resolution.
    pub fn ids_on(&self, node: &str) -> BTreeSet<(Kind, &'r Key)> {
        let resolution = self.resolution;
        let mut objects: BTreeSet<(Kind, &'r Key)> = self
            .networks_on(node)
            .filter(|n| resolution.network(n).is_some())
            .map(|n| (Kind::Network, n))
            .collect();
        for &(key, port) in self.ports_on(node) {
            objects.insert((Kind::Port, key));
            for (subnet_key, _) in &port.fixed_ips {
                let serves = resolution.subnet(subnet_key).is_some_and(|s| {
                    s.enable_dhcp && s.dhcp.is_some() && resolution.network(&s.network).is_some()
                });
                if serves {
                    objects.insert((Kind::Subnet, subnet_key));
                }
            }
            if !port.port_security {
                continue;
            }
            for group in &port.security_groups {
                // A group is realised through its rules; one with none
                // leaves nothing on the node that names it.
                if resolution
                    .security_group(group)
                    .is_some_and(|g| !g.rules.is_empty())
                {
                    objects.insert((Kind::SecurityGroup, group));
                }
            }
        }
        for (key, router) in self.routers_on(node) {
            objects.insert((Kind::Router, key));
            if router.gateway.is_some() {
                for (fip, _) in self.floating_ips_through(key) {
                    objects.insert((Kind::FloatingIP, fip));
                }
            }
        }
        objects
    }
}
