//! DHCP: on each node, a server per DHCP-enabled subnet with ports bound
//! there, answering those ports only from static host entries.

use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::topology::Topology;
use super::{DhcpHost, DhcpPlan, RoutePlan};
use crate::allocate::Mac;
use crate::resolve::{PortState, Resolution};
use crate::{Key, metadata, names};

/// Neutron's default lease: a day.
pub const LEASE_SECONDS: u32 = 86_400;

/// The MAC of a subnet's DHCP servers: the same on every node, since each
/// node's server answers only for the ports bound there.
pub fn dhcp_mac(subnet: &Key) -> Mac {
    Mac::derive(&format!("dhcp {subnet}"), 0)
}

pub(super) fn plan(topology: &Topology, node: &str) -> Vec<DhcpPlan> {
    let hosts_of = hosts_by_subnet(topology.ports_on(node).iter().copied());
    (hosts_of.into_iter())
        .filter_map(|(subnet, hosts)| server(topology.resolution, subnet, hosts))
        .collect()
}

/// The static hosts `ports` make, by subnet.
pub(super) fn hosts_by_subnet<'r>(
    ports: impl Iterator<Item = (&'r Key, &'r PortState)>,
) -> BTreeMap<&'r Key, Vec<DhcpHost>> {
    let mut hosts_of: BTreeMap<&Key, Vec<DhcpHost>> = BTreeMap::new();
    for (_, port) in ports {
        for (subnet, ip) in &port.fixed_ips {
            hosts_of.entry(subnet).or_default().push(DhcpHost {
                mac: port.mac,
                ip: *ip,
                hostname: port.hostname.clone(),
            });
        }
    }
    hosts_of
}

/// The DHCP server of `subnet_key` answering `hosts`, if the subnet serves
/// DHCP.
pub(super) fn server(
    resolution: &Resolution,
    subnet_key: &Key,
    mut hosts: Vec<DhcpHost>,
) -> Option<DhcpPlan> {
    let subnet = resolution.subnet(subnet_key)?;
    let server = subnet.dhcp.filter(|_| subnet.enable_dhcp)?;
    let network = resolution.network(&subnet.network)?;
    if subnet.autoconfigured() {
        // Ports make their own addresses: there is nothing to hand out.
        hosts.clear();
    }
    hosts.sort();
    let mut routes: Vec<RoutePlan> = subnet
        .host_routes
        .iter()
        .map(|(destination, nexthop)| RoutePlan {
            destination: *destination,
            nexthop: *nexthop,
        })
        .collect();
    if subnet.cidr.addr().is_ipv4() {
        // The metadata service answers in this namespace, as Neutron's
        // does for isolated networks; the route keeps its requests on the
        // node even where a router could take them.
        routes.push(RoutePlan {
            destination: metadata::host_route(),
            nexthop: server,
        });
    }
    if let Some(gateway) = subnet
        .gateway
        .filter(|_| !routes.is_empty() && subnet.cidr.addr().is_ipv4())
    {
        routes.push(RoutePlan {
            destination: IpNet::new(Ipv4Addr::UNSPECIFIED.into(), 0).expect("0 is a valid prefix"),
            nexthop: gateway,
        });
    }
    let (bridge_port, interface) = names::dhcp_link(subnet_key);
    Some(DhcpPlan {
        subnet: subnet_key.clone(),
        network: subnet.network.clone(),
        namespace: names::dhcp_namespace(subnet_key),
        bridge: names::bridge(&subnet.network),
        bridge_port,
        interface,
        mac: dhcp_mac(subnet_key),
        cidr: subnet.cidr,
        address: IpNet::new(server, subnet.cidr.prefix_len()).expect("prefix of a parsed CIDR"),
        router: subnet.gateway,
        dns: subnet.dns.clone(),
        routes,
        mtu: network.mtu,
        lease_seconds: LEASE_SECONDS,
        hosts,
        ipv6_address_mode: subnet.ipv6_address_mode,
        advertise: subnet.ipv6_ra_mode.is_some(),
    })
}
