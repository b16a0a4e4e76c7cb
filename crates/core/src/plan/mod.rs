//! The planner: from a resolution and one node's identity, the dataplane
//! that node's kernel must have. Pure and complete: every FDB entry,
//! neighbour, DHCP host and filter rule is listed in full, so the agent can
//! diff it against the kernel (level-triggered, never event-driven).

mod dhcp;
mod l2;
pub mod render;
mod router;
mod security;
mod topology;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::IpAddr;

use super::allocate::Mac;
use super::resolve::{PortMatch, PortState, Resolution};
use super::{ClusterConfig, Key, NodeConfig, names};
use neutrino_api::{EtherType, Ipv6Mode};
pub use topology::{Focus, Topology};

/// Everything one node's kernel must have. Every list is sorted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePlan {
    pub node: String,
    #[serde(rename = "tunnelIP")]
    pub tunnel_ip: IpAddr,
    pub bridges: Vec<Bridge>,
    pub uplinks: Vec<Uplink>,
    pub fdb: Vec<FdbEntry>,
    pub neighbours: Vec<Neighbour>,
    pub ports: Vec<PortPlan>,
    pub dhcp: Vec<DhcpPlan>,
    pub routers: Vec<RouterPlan>,
    pub security: SecurityPlan,
}

/// A Linux bridge: one per network the node carries.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Bridge {
    pub name: String,
    pub network: Key,
    pub mtu: u32,
}

/// How a network's bridge reaches the other nodes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum UplinkKind {
    /// A VXLAN link with learning off; FDB and neighbour entries are
    /// programmed from port bindings, and the link answers ARP from them.
    Vxlan { vni: u32, local: IpAddr, port: u16 },
    /// An 802.1Q sub-interface of the physical network's interface.
    Vlan { parent: String, id: u16 },
    /// The physical network's interface itself, untagged.
    Flat { interface: String },
}

/// A bridge's uplink.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Uplink {
    pub name: String,
    pub bridge: String,
    pub mtu: u32,
    #[serde(flatten)]
    pub kind: UplinkKind,
}

/// A VXLAN forwarding entry: frames for `mac` go to `destination`. The
/// all-zero MAC floods broadcast and unknown traffic to a peer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct FdbEntry {
    pub device: String,
    pub mac: Mac,
    pub destination: IpAddr,
    /// The node behind `destination`.
    pub node: String,
    /// What the entry leads to: a port, a router leg, or `flood`.
    pub owner: String,
}

/// A static neighbour entry on a VXLAN link, so it answers ARP and NDP for
/// remote ports without flooding.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Neighbour {
    pub device: String,
    pub ip: IpAddr,
    pub mac: Mac,
}

/// A port bound to this node: a veth pair whose host end is on the bridge
/// and whose other end, carrying the port's MAC, goes to the workload.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PortPlan {
    pub port: Key,
    pub interface: String,
    /// The workload end, until the workload takes it into its namespace.
    pub peer: String,
    /// Where the workload end is made, when a workload is already there to
    /// take it (a pod attached through the CNI plugin); the node's own
    /// namespace otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_netns: Option<String>,
    pub bridge: String,
    pub mac: Mac,
    pub mtu: u32,
    pub addresses: Vec<IpNet>,
}

/// One static DHCP host entry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct DhcpHost {
    pub mac: Mac,
    pub ip: IpAddr,
    pub hostname: String,
}

/// A route handed out by DHCP.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct RoutePlan {
    pub destination: IpNet,
    pub nexthop: IpAddr,
}

/// One DHCP server on this node: a subnet's namespace, its veth pair to
/// the network's bridge, and the static hosts bound to this node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DhcpPlan {
    pub subnet: Key,
    pub network: Key,
    pub namespace: String,
    pub bridge: String,
    /// The bridge end of the veth pair into the namespace.
    pub bridge_port: String,
    /// The namespace end.
    pub interface: String,
    /// The same on every node: each node's server answers only locally.
    pub mac: Mac,
    pub cidr: IpNet,
    /// The server's own address, with the subnet's prefix.
    pub address: IpNet,
    pub router: Option<IpAddr>,
    pub dns: Vec<IpAddr>,
    /// Classless static routes (option 121); they include the default route
    /// when there is a gateway, since clients ignore option 3 beside them.
    pub routes: Vec<RoutePlan>,
    pub mtu: u32,
    pub lease_seconds: u32,
    pub hosts: Vec<DhcpHost>,
    /// IPv6: how ports get their addresses (SLAAC ones are not hosts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address_mode: Option<Ipv6Mode>,
    /// IPv6: whether the server advertises the prefix (as no router).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub advertise: bool,
}

/// A router's leg: a veth pair from its namespace to a network's bridge.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouterLegPlan {
    pub subnet: Key,
    pub network: Key,
    pub bridge: String,
    pub bridge_port: String,
    pub interface: String,
    pub mac: Mac,
    pub address: IpNet,
    pub mtu: u32,
    /// IPv6: the mode the leg advertises its prefix and itself as the
    /// default router with, when the subnet asks for advertisements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise: Option<Ipv6Mode>,
}

/// A NAT rule in a router's namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum NatRule {
    /// 1:1 translation between a floating IP and a port's fixed IP.
    #[serde(rename_all = "camelCase")]
    FloatingIp {
        floating: IpAddr,
        fixed: IpAddr,
        floating_ip: Key,
    },
    /// Traffic from `source` leaving through the gateway takes `to`.
    #[serde(rename_all = "camelCase")]
    Snat {
        source: IpNet,
        to: IpAddr,
        interface: String,
    },
}

/// A router scheduled onto this node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouterPlan {
    pub router: Key,
    pub namespace: String,
    pub interfaces: Vec<RouterLegPlan>,
    pub gateway: Option<RouterLegPlan>,
    /// Floating addresses the gateway leg also answers for.
    pub floating_ips: Vec<IpAddr>,
    pub routes: Vec<RoutePlan>,
    pub nat: Vec<NatRule>,
}

/// The peer a filter rule allows.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FilterRemote {
    Any,
    Cidr(IpNet),
    /// The members of a remote group, kept in an ipset.
    IpSet(String),
}

/// One stateful allow rule for one port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FilterRule {
    pub ethertype: EtherType,
    pub protocol: Option<u8>,
    pub ports: Option<PortMatch>,
    pub remote: FilterRemote,
    /// The group the rule comes from.
    pub group: Key,
}

/// A source MAC and address (or CIDR) a port may send from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AllowedSource {
    pub mac: Mac,
    pub cidr: IpNet,
}

/// What may leave and enter one port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortFilter {
    pub port: Key,
    pub interface: String,
    /// What the port may send from; everything else is spoofing and dropped.
    pub allowed_sources: Vec<AllowedSource>,
    pub ingress: Vec<FilterRule>,
    pub egress: Vec<FilterRule>,
}

/// The members of a remote group, by family.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IpSetPlan {
    pub name: String,
    pub group: Key,
    pub ethertype: EtherType,
    pub members: Vec<IpNet>,
}

/// Security groups as this node enforces them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityPlan {
    pub ipsets: Vec<IpSetPlan>,
    pub ports: Vec<PortFilter>,
    /// Ports on this node with port security off: not filtered at all.
    pub unfiltered: Vec<Key>,
}

impl NodePlan {
    /// The plan with `prefix` before the names of the namespaces it keeps,
    /// so that several nodes can share one kernel (the lab).
    pub fn with_namespace_prefix(mut self, prefix: &str) -> Self {
        if prefix.is_empty() {
            return self;
        }
        for dhcp in &mut self.dhcp {
            dhcp.namespace = format!("{prefix}{}", dhcp.namespace);
        }
        for router in &mut self.routers {
            router.namespace = format!("{prefix}{}", router.namespace);
        }
        self
    }
}

/// The desired dataplane of `node`. Objects that are not ready are left
/// out. Indexes the whole resolution first: to plan many nodes, build one
/// [`Topology`] and call [`Topology::plan`] for each.
pub fn plan_node(resolution: &Resolution, config: &ClusterConfig, node: &NodeConfig) -> NodePlan {
    Topology::new(resolution, config).plan(node)
}

/// `plan`, made before a change that moved only endpoints on other nodes
/// and group members, as `focus` names them, brought up to date: the
/// FDB and neighbour entries of the touched networks the node tunnels and
/// the members of the touched groups' ipsets are made again, the rest is
/// as it was. It equals `plan_node` then, at the cost of those networks.
pub fn patch_plan(
    plan: &mut NodePlan,
    resolution: &Resolution,
    config: &ClusterConfig,
    node: &NodeConfig,
    focus: &Focus,
) {
    let touched = focus.touched;
    let topology = Topology::focused(resolution, config, focus);
    let tunnels: Vec<(&Key, String)> = (plan.bridges.iter())
        .filter(|b| touched.networks.contains(&b.network))
        .filter_map(|b| {
            let uplink = plan.uplinks.iter().find(|u| u.bridge == b.name)?;
            let vxlan = matches!(uplink.kind, UplinkKind::Vxlan { .. });
            vxlan.then(|| (&b.network, uplink.name.clone()))
        })
        .collect();
    for (network, device) in tunnels {
        let (mut fdb, mut neighbours) = (Vec::new(), Vec::new());
        l2::tunnel(&topology, network, &device, node, &mut fdb, &mut neighbours);
        fdb.sort();
        neighbours.sort();
        // Both lists are sorted by device first: a device's entries are
        // one run, replaced where it stands.
        splice(&mut plan.fdb, &device, |e| &e.device, fdb);
        splice(&mut plan.neighbours, &device, |n| &n.device, neighbours);
    }
    for set in &mut plan.security.ipsets {
        if touched.groups.contains(&set.group) {
            set.members = security::members(&topology, &set.group, set.ethertype);
        }
    }
}

/// `plan` brought up to date after the node's own ports named in
/// `changed` came, changed or went, on networks the node carries; `own` is
/// every ready port of the node now, in key order. Alike to `plan_node`:
/// their veths, the DHCP servers' hosts and the filters are made again from
/// the node's own ports, the ipsets of `focus`'s groups from its ports; the
/// FDB and the rest stay as they were. False, with `plan` as it was, when
/// the change reaches further — a bridge coming or going, a remote group
/// the node's rules did not name: the caller plans the node.
pub fn patch_own(
    plan: &mut NodePlan,
    resolution: &Resolution,
    config: &ClusterConfig,
    own: &[(&Key, &PortState)],
    changed: &BTreeSet<Key>,
    focus: &Focus,
) -> bool {
    // The node's ports stay on the networks they were on: no bridge comes
    // or goes.
    let before: BTreeSet<&str> = plan.ports.iter().map(|p| p.bridge.as_str()).collect();
    let after: BTreeSet<String> = own.iter().map(|(_, p)| names::bridge(&p.network)).collect();
    if before.len() != after.len() || !after.iter().all(|b| before.contains(b.as_str())) {
        return false;
    }
    let mut sets = BTreeSet::new();
    let mut security = SecurityPlan::default();
    for &(key, port) in own {
        match security::port_filter(resolution, key, port, &mut sets) {
            Some(filter) => security.ports.push(filter),
            None => security.unfiltered.push(key.clone()),
        }
    }
    let topology = Topology::focused(resolution, config, focus);
    for (group, ethertype) in sets {
        let old = plan
            .security
            .ipsets
            .iter()
            .find(|s| s.group == group && s.ethertype == ethertype);
        let set = match old {
            Some(set) if !focus.touched.groups.contains(&group) => set.clone(),
            _ if focus.touched.groups.contains(&group) => {
                security::ipset(&topology, group, ethertype)
            }
            _ => return false,
        };
        security.ipsets.push(set);
    }
    plan.security = security;
    plan.ports.retain(|p| !changed.contains(&p.port));
    for &(key, port) in own.iter().filter(|(k, _)| changed.contains(*k)) {
        plan.ports.push(l2::port_plan(resolution, key, port));
    }
    plan.ports.sort();
    let hosts = dhcp::hosts_by_subnet(own.iter().copied());
    plan.dhcp = (hosts.into_iter())
        .filter_map(|(subnet, hosts)| dhcp::server(resolution, subnet, hosts))
        .collect();
    plan.dhcp.sort();
    true
}

/// Replaces the run of `device`'s entries in the sorted `list` with
/// `entries`, themselves sorted.
fn splice<T>(list: &mut Vec<T>, device: &str, device_of: impl Fn(&T) -> &String, entries: Vec<T>) {
    let start = list.partition_point(|e| device_of(e).as_str() < device);
    let end = start + list[start..].partition_point(|e| device_of(e) == device);
    list.splice(start..end, entries);
}

impl Topology<'_> {
    /// The desired dataplane of `node`, from the indexes: its cost is what
    /// the node carries.
    pub fn plan(&self, node: &NodeConfig) -> NodePlan {
        let l2 = l2::plan(self, node);
        let mut plan = NodePlan {
            node: node.name.clone(),
            tunnel_ip: node.tunnel_ip,
            bridges: l2.bridges,
            uplinks: l2.uplinks,
            fdb: l2.fdb,
            neighbours: l2.neighbours,
            ports: l2.ports,
            dhcp: dhcp::plan(self, &node.name),
            routers: router::plan(self, &node.name),
            security: security::plan(self, &node.name),
        };
        plan.bridges.sort();
        plan.uplinks.sort();
        plan.fdb.sort();
        plan.neighbours.sort();
        plan.ports.sort();
        plan.dhcp.sort();
        plan.routers.sort();
        plan
    }
}
