//! Security groups as one node enforces them: per-port rule lists, the
//! anti-spoofing pairs, and ipsets for the members of remote groups.

use ipnet::IpNet;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr};

use super::topology::Topology;
use super::{AllowedSource, FilterRemote, FilterRule, IpSetPlan, PortFilter, SecurityPlan};
use crate::allocate::Mac;
use crate::resolve::{PortState, Remote, Resolution};
use crate::{Key, names};
use neutrino_api::{Direction, EtherType};

/// The IPv6 link-local address (EUI-64) a port with this MAC uses for NDP.
pub fn link_local(mac: Mac) -> Ipv6Addr {
    mac.eui64_in(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0))
}

fn host(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

pub(super) fn members(topology: &Topology, group: &Key, ethertype: EtherType) -> Vec<IpNet> {
    let v4 = ethertype == EtherType::IPv4;
    let mut found: BTreeSet<IpNet> = BTreeSet::new();
    for port in topology.members(group) {
        found.extend(
            port.fixed_ips
                .iter()
                .map(|(_, ip)| host(*ip))
                .filter(|n| n.addr().is_ipv4() == v4),
        );
        found.extend(
            port.allowed_pairs
                .iter()
                .map(|(n, _)| *n)
                .filter(|n| n.addr().is_ipv4() == v4),
        );
    }
    found.into_iter().collect()
}

pub(super) fn plan(topology: &Topology, node: &str) -> SecurityPlan {
    let resolution = topology.resolution;
    let mut plan = SecurityPlan::default();
    let mut sets: BTreeSet<(Key, EtherType)> = BTreeSet::new();
    for &(key, port) in topology.ports_on(node) {
        match port_filter(resolution, key, port, &mut sets) {
            Some(filter) => plan.ports.push(filter),
            None => plan.unfiltered.push(key.clone()),
        }
    }
    plan.ipsets = sets
        .into_iter()
        .map(|(group, ethertype)| ipset(topology, group, ethertype))
        .collect();
    plan
}

/// The ipset of `group`'s members of one family.
pub(super) fn ipset(topology: &Topology, group: Key, ethertype: EtherType) -> IpSetPlan {
    IpSetPlan {
        name: names::ipset(&group, ethertype == EtherType::IPv6),
        members: members(topology, &group, ethertype),
        group,
        ethertype,
    }
}

/// The filter of one port of the node, adding the remote groups its rules
/// name to `sets`; None for a port with port security off.
pub(super) fn port_filter(
    resolution: &Resolution,
    key: &Key,
    port: &PortState,
    sets: &mut BTreeSet<(Key, EtherType)>,
) -> Option<PortFilter> {
    if !port.port_security {
        return None;
    }
    let source = |mac, cidr| AllowedSource { mac, cidr };
    let mut allowed_sources: Vec<AllowedSource> = port
        .fixed_ips
        .iter()
        .map(|(_, ip)| source(port.mac, host(*ip)))
        .collect();
    if port.fixed_ips.iter().any(|(_, ip)| ip.is_ipv6()) {
        allowed_sources.push(source(port.mac, host(IpAddr::V6(link_local(port.mac)))));
    }
    allowed_sources.extend(
        port.allowed_pairs
            .iter()
            .map(|(net, mac)| source(*mac, *net)),
    );
    allowed_sources.sort();
    allowed_sources.dedup();

    let mut ingress = Vec::new();
    let mut egress = Vec::new();
    for group in &port.security_groups {
        let Some(state) = resolution.security_group(group) else {
            continue;
        };
        for rule in &state.rules {
            let remote = match &rule.remote {
                Remote::Any => FilterRemote::Any,
                Remote::Cidr(net) => FilterRemote::Cidr(*net),
                Remote::Group(g) => {
                    sets.insert((g.clone(), rule.ethertype));
                    FilterRemote::IpSet(names::ipset(g, rule.ethertype == EtherType::IPv6))
                }
            };
            let filter = FilterRule {
                ethertype: rule.ethertype,
                protocol: rule.protocol,
                ports: rule.ports,
                remote,
                group: group.clone(),
            };
            match rule.direction {
                Direction::Ingress => ingress.push(filter),
                Direction::Egress => egress.push(filter),
            }
        }
    }
    ingress.sort();
    ingress.dedup();
    egress.sort();
    egress.dedup();
    Some(PortFilter {
        port: key.clone(),
        interface: names::port(key),
        allowed_sources,
        ingress,
        egress,
    })
}
