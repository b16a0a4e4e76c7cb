//! DHCP: on each node, a server per DHCP-enabled subnet with ports bound
//! there, answering those ports only from static host entries.

use ipnet::IpNet;
use std::collections::BTreeMap;

use super::{DhcpHost, DhcpPlan, DhcpServer, RoutePlan};
use crate::core::allocate::Mac;
use crate::core::resolve::Resolution;
use crate::core::{Key, names};

/// Neutron's default lease: a day.
pub const LEASE_SECONDS: u32 = 86_400;

/// The MAC of a network's DHCP servers: the same on every node, since each
/// node's server answers only for the ports bound there.
pub fn dhcp_mac(network: &Key) -> Mac {
    Mac::derive(&format!("dhcp {network}"), 0)
}

pub(super) fn plan(resolution: &Resolution, node: &str) -> Vec<DhcpPlan> {
    let mut by_network: BTreeMap<Key, Vec<DhcpServer>> = BTreeMap::new();
    for (subnet_key, subnet) in resolution.ready_subnets() {
        let Some(server) = subnet.dhcp.filter(|_| subnet.enable_dhcp) else {
            continue;
        };
        let mut hosts: Vec<DhcpHost> = resolution
            .ready_ports()
            .filter(|(_, p)| p.node.as_deref() == Some(node))
            .flat_map(|(key, p)| {
                p.fixed_ips
                    .iter()
                    .filter(|(s, _)| s == subnet_key)
                    .map(move |(_, ip)| DhcpHost {
                        mac: p.mac,
                        ip: *ip,
                        hostname: key.name.clone(),
                    })
            })
            .collect();
        if hosts.is_empty() {
            continue;
        }
        hosts.sort();
        let Some(network) = resolution.network(&subnet.network) else {
            continue;
        };
        let mut routes: Vec<RoutePlan> = subnet
            .host_routes
            .iter()
            .map(|(destination, nexthop)| RoutePlan {
                destination: *destination,
                nexthop: *nexthop,
            })
            .collect();
        if let Some(gateway) = subnet
            .gateway
            .filter(|_| !routes.is_empty() && subnet.cidr.addr().is_ipv4())
        {
            routes.push(RoutePlan {
                destination: IpNet::new(std::net::Ipv4Addr::UNSPECIFIED.into(), 0)
                    .expect("0 is a valid prefix"),
                nexthop: gateway,
            });
        }
        by_network
            .entry(subnet.network.clone())
            .or_default()
            .push(DhcpServer {
                subnet: subnet_key.clone(),
                cidr: subnet.cidr,
                address: IpNet::new(server, subnet.cidr.prefix_len())
                    .expect("prefix of a parsed CIDR"),
                router: subnet.gateway,
                dns: subnet.dns.clone(),
                routes,
                mtu: network.mtu,
                lease_seconds: LEASE_SECONDS,
                hosts,
            });
    }
    by_network
        .into_iter()
        .filter_map(|(network_key, servers)| {
            let network = resolution.network(&network_key)?;
            let (bridge_port, interface) = names::dhcp_link(&network_key);
            Some(DhcpPlan {
                namespace: names::dhcp_namespace(&network_key),
                bridge: names::bridge(&network_key),
                bridge_port,
                interface,
                mac: dhcp_mac(&network_key),
                mtu: network.mtu,
                network: network_key,
                servers,
            })
        })
        .collect()
}
