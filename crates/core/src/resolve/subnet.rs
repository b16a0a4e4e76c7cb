//! Subnets: CIDR, gateway, pools, DHCP options and overlaps on a network.

use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;

use super::addresses::{Addresses, Request, Wanted};
use super::claims::ClaimIndex;
use super::{NetworkState, Resolution, SubnetState, Verdict, arrival, by_arrival, lookup};
use crate::allocate::Holder;
use crate::allocate::ipam::default_pool;
use crate::problem::Problems;
use crate::{Key, Kind, ObjectId, Reason, Snapshot};
use neutrino_api::Subnet;

/// IPv6 needs links of at least this MTU.
const IPV6_MIN_MTU: u32 = 1280;

fn parse_ip(
    problems: &mut Problems,
    field: &str,
    text: &str,
    cidr: Option<IpNet>,
) -> Option<IpAddr> {
    let Ok(address) = text.parse::<IpAddr>() else {
        problems.push(
            field,
            Reason::InvalidSpec,
            format!("{text:?} is not an IP address"),
        );
        return None;
    };
    if let Some(cidr) = cidr
        && address.is_ipv4() != cidr.addr().is_ipv4()
    {
        problems.push(
            field,
            Reason::InvalidSpec,
            format!("{address} is not of the IP family of {cidr}"),
        );
        return None;
    }
    Some(address)
}

/// Whether `address` is the network or broadcast address of an IPv4 CIDR.
fn is_network_or_broadcast(cidr: IpNet, address: IpAddr) -> bool {
    matches!(cidr, IpNet::V4(_))
        && cidr.prefix_len() < 31
        && (address == cidr.network() || address == cidr.broadcast())
}

fn parse_cidr(problems: &mut Problems, text: &str) -> Option<IpNet> {
    let Ok(cidr) = text.parse::<IpNet>() else {
        problems.push(
            "spec.cidr",
            Reason::InvalidSpec,
            format!("{text:?} is not a CIDR such as 10.10.0.0/24"),
        );
        return None;
    };
    if cidr != cidr.trunc() {
        problems.push(
            "spec.cidr",
            Reason::InvalidSpec,
            format!("{cidr} has host bits set; the network is {}", cidr.trunc()),
        );
        return None;
    }
    let max_prefix = if cidr.addr().is_ipv4() { 30 } else { 126 };
    if cidr.prefix_len() > max_prefix {
        problems.push(
            "spec.cidr",
            Reason::InvalidSpec,
            format!("{cidr} is too small: at most /{max_prefix} for its family"),
        );
        return None;
    }
    Some(cidr)
}

/// `spec.gatewayIP`: inside the CIDR and neither its network nor its
/// broadcast address; absent, the CIDR's first host; empty, no gateway.
fn gateway(subnet: &Subnet, cidr: IpNet, problems: &mut Problems) -> Option<IpAddr> {
    let text = match subnet.spec.gateway_ip.as_deref() {
        Some("") => return None,
        None => return Some(default_pool(cidr).0),
        Some(text) => text,
    };
    let gateway = parse_ip(problems, "spec.gatewayIP", text, Some(cidr));
    match gateway {
        Some(g) if !cidr.contains(&g) => {
            problems.push(
                "spec.gatewayIP",
                Reason::InvalidSpec,
                format!("{g} is outside cidr {cidr}"),
            );
        }
        Some(g) if is_network_or_broadcast(cidr, g) => problems.push(
            "spec.gatewayIP",
            Reason::InvalidSpec,
            format!("{g} is the network or broadcast address of {cidr}"),
        ),
        _ => {}
    }
    gateway
}

/// `spec.allocationPools`: each inside the CIDR, in order, clear of the
/// network, broadcast and gateway addresses, and none overlapping another;
/// none given, the CIDR's default pool.
fn allocation_pools(
    subnet: &Subnet,
    cidr: IpNet,
    gateway: Option<IpAddr>,
    problems: &mut Problems,
) -> Vec<(IpAddr, IpAddr)> {
    let spec = &subnet.spec;
    let mut pools = Vec::new();
    for (i, pool) in spec.allocation_pools.iter().enumerate() {
        let field = format!("spec.allocationPools[{i}]");
        let start = parse_ip(problems, &format!("{field}.start"), &pool.start, Some(cidr));
        let end = parse_ip(problems, &format!("{field}.end"), &pool.end, Some(cidr));
        let (Some(start), Some(end)) = (start, end) else {
            continue;
        };
        if !cidr.contains(&start) || !cidr.contains(&end) {
            problems.push(
                &field,
                Reason::InvalidSpec,
                format!("{start}-{end} is not inside cidr {cidr}"),
            );
        } else if start > end {
            problems.push(
                &field,
                Reason::InvalidSpec,
                format!("start {start} is above end {end}"),
            );
        } else if is_network_or_broadcast(cidr, start) || is_network_or_broadcast(cidr, end) {
            problems.push(
                &field,
                Reason::InvalidSpec,
                format!("{start}-{end} includes the network or broadcast address of {cidr}"),
            );
        } else if let Some(g) = gateway.filter(|g| (start..=end).contains(g)) {
            problems.push(
                &field,
                Reason::InvalidSpec,
                format!("{start}-{end} includes the gateway {g}; a pool must leave it out"),
            );
        } else {
            pools.push((start, end));
        }
    }
    let mut sorted = pools.clone();
    sorted.sort();
    for pair in sorted.windows(2) {
        if pair[1].0 <= pair[0].1 {
            problems.push(
                "spec.allocationPools",
                Reason::Overlap,
                format!(
                    "pools {}-{} and {}-{} overlap",
                    pair[0].0, pair[0].1, pair[1].0, pair[1].1
                ),
            );
        }
    }
    if spec.allocation_pools.is_empty() {
        pools.push(default_pool(cidr));
    }
    pools
}

/// `spec.dnsNameservers`: addresses of the CIDR's family.
fn dns_nameservers(subnet: &Subnet, cidr: IpNet, problems: &mut Problems) -> Vec<IpAddr> {
    subnet
        .spec
        .dns_nameservers
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            parse_ip(
                problems,
                &format!("spec.dnsNameservers[{i}]"),
                d,
                Some(cidr),
            )
        })
        .collect()
}

/// `spec.hostRoutes`: destinations and nexthops of the CIDR's family.
fn host_routes(subnet: &Subnet, cidr: IpNet, problems: &mut Problems) -> Vec<(IpNet, IpAddr)> {
    let mut host_routes = Vec::new();
    for (i, route) in subnet.spec.host_routes.iter().enumerate() {
        let field = format!("spec.hostRoutes[{i}]");
        let destination = route.destination.parse::<IpNet>();
        let nexthop = parse_ip(
            problems,
            &format!("{field}.nexthop"),
            &route.nexthop,
            Some(cidr),
        );
        match (destination, nexthop) {
            (Ok(d), Some(n)) if d.addr().is_ipv4() == n.is_ipv4() => {
                host_routes.push((d.trunc(), n))
            }
            (Ok(d), Some(_)) => problems.push(
                format!("{field}.destination"),
                Reason::InvalidSpec,
                format!("{d} is not of the IP family of {cidr}"),
            ),
            (Err(_), _) => problems.push(
                format!("{field}.destination"),
                Reason::InvalidSpec,
                format!("{:?} is not a CIDR", route.destination),
            ),
            _ => {}
        }
    }
    host_routes
}

/// Parses and checks one subnet's own fields.
fn check_spec(subnet: &Subnet, problems: &mut Problems) -> Option<SubnetState> {
    let cidr = parse_cidr(problems, &subnet.spec.cidr)?;
    let gateway = gateway(subnet, cidr, problems);
    let pools = allocation_pools(subnet, cidr, gateway, problems);
    let dns = dns_nameservers(subnet, cidr, problems);
    let host_routes = host_routes(subnet, cidr, problems);
    check_ipv6_modes(subnet, cidr, problems);
    Some(SubnetState {
        network: Key::default(),
        cidr,
        gateway,
        enable_dhcp: subnet.spec.enable_dhcp,
        dhcp: None,
        pools,
        dns,
        host_routes,
        ipv6_address_mode: subnet.spec.ipv6_address_mode,
        ipv6_ra_mode: subnet.spec.ipv6_ra_mode,
        used: 0,
        free: 0,
    })
}

/// `spec.ipv6AddressMode` and `spec.ipv6RAMode`: IPv6 only, advertisements
/// only with the same address mode (Neutron's valid pairs), and a /64 for
/// SLAAC, whose interface identifiers are 64 bits.
fn check_ipv6_modes(subnet: &Subnet, cidr: IpNet, problems: &mut Problems) {
    let (address, ra) = (subnet.spec.ipv6_address_mode, subnet.spec.ipv6_ra_mode);
    if cidr.addr().is_ipv4() {
        for (field, mode) in [("spec.ipv6AddressMode", address), ("spec.ipv6RAMode", ra)] {
            if let Some(mode) = mode {
                problems.push(
                    field,
                    Reason::InvalidSpec,
                    format!("{mode} is for IPv6 subnets; {cidr} is IPv4"),
                );
            }
        }
        return;
    }
    if let Some(ra) = ra
        && address != Some(ra)
    {
        let address = address.map_or("unset".to_string(), |a| a.to_string());
        problems.push(
            "spec.ipv6RAMode",
            Reason::InvalidSpec,
            format!("{ra} needs ipv6AddressMode {ra} too (it is {address}): what the advertisements say is how ports get their addresses"),
        );
    }
    for (field, mode) in [("spec.ipv6AddressMode", address), ("spec.ipv6RAMode", ra)] {
        if let Some(mode) = mode.filter(|m| m.is_autoconfigured())
            && cidr.prefix_len() != 64
        {
            problems.push(
                field,
                Reason::InvalidSpec,
                format!("{mode} needs a /64 (SLAAC makes 64-bit interface identifiers); {cidr} is a /{}", cidr.prefix_len()),
            );
        }
    }
}

/// Checks a subnet against its network: an IPv6 subnet needs a network
/// MTU IPv6 can use, and no subnet may overlap one checked before it
/// (`earlier`: the ready subnets of the same network, in arrival order).
fn check_on_network(
    state: &SubnetState,
    network: &NetworkState,
    earlier: &[(Key, IpNet)],
    problems: &mut Problems,
) {
    if state.cidr.addr().is_ipv6() && network.mtu < IPV6_MIN_MTU {
        problems.push(
            "spec.cidr",
            Reason::InvalidSpec,
            format!(
                "IPv6 needs an MTU of at least {IPV6_MIN_MTU}, but network {} has {}",
                state.network, network.mtu
            ),
        );
    }
    let overlapping = earlier
        .iter()
        .find(|(_, cidr)| cidr.contains(&state.cidr) || state.cidr.contains(cidr));
    if let Some((other, cidr)) = overlapping {
        problems.push(
            "spec.cidr",
            Reason::Overlap,
            format!(
                "{} overlaps {cidr} of subnet {other}, which is on the same network {}",
                state.cidr, state.network
            ),
        );
    }
}

/// Checks every subnet; the addresses come later.
pub fn check(snapshot: &Snapshot, resolution: &Resolution) -> BTreeMap<Key, Verdict<SubnetState>> {
    let mut verdicts: BTreeMap<Key, Verdict<SubnetState>> = BTreeMap::new();
    // Grouped by network, so that the overlap check costs the network's
    // subnets and not the cluster's.
    let mut ready_on: BTreeMap<Key, Vec<(Key, IpNet)>> = BTreeMap::new();
    for key in by_arrival(&snapshot.subnets) {
        let subnet = &snapshot.subnets[key];
        let id = ObjectId::new(Kind::Subnet, key.clone());
        let mut problems = Problems::new(id.clone());
        let network_key = key.reference(&subnet.spec.network);
        let network = lookup(
            snapshot,
            &resolution.networks,
            Kind::Network,
            &network_key,
            &id,
            "spec.network",
        );
        let state = check_spec(subnet, &mut problems);
        if let Err(problem) = &network {
            problems.add(problem.clone());
        }
        let (Some(mut state), Ok(network)) = (state, network) else {
            verdicts.insert(key.clone(), Err(problems.into_vec()));
            continue;
        };
        let earlier = ready_on.entry(network_key.clone()).or_default();
        state.network = network_key;
        check_on_network(&state, network, earlier, &mut problems);
        let verdict = problems.finish(state);
        if let Ok(ready) = &verdict {
            earlier.push((key.clone(), ready.cidr));
        }
        verdicts.insert(key.clone(), verdict);
    }
    verdicts
}

/// The DHCP servers' addresses.
pub fn requests(
    snapshot: &Snapshot,
    subnets: &BTreeMap<Key, Verdict<SubnetState>>,
    claims: &ClaimIndex,
) -> Vec<Request> {
    subnets
        .iter()
        .filter_map(|(key, v)| Some((key, v.as_ref().ok()?)))
        .filter(|(_, s)| s.enable_dhcp)
        .map(|(key, state)| {
            let subnet = &snapshot.subnets[key];
            let holder = Holder::Dhcp(key.clone());
            let recorded = claims
                .addresses_of(&holder)
                .map(|(_, a)| a)
                .next()
                .or_else(|| {
                    subnet
                        .status
                        .as_ref()
                        .and_then(|s| s.dhcp_ip.as_deref())
                        .and_then(|a| a.parse::<IpAddr>().ok())
                })
                .filter(|a| state.cidr.contains(a));
            Request {
                holder,
                slot: 0,
                subnets: vec![key.clone()],
                wanted: match recorded {
                    Some(address) => Wanted::Exact {
                        address,
                        recorded: true,
                    },
                    None => Wanted::Any,
                },
                arrival: arrival(key, &**subnet),
            }
        })
        .collect()
}

/// Fills in the DHCP address and the usage counts.
pub fn finish(
    subnets: BTreeMap<Key, Verdict<SubnetState>>,
    addresses: &Addresses,
) -> BTreeMap<Key, Verdict<SubnetState>> {
    subnets
        .into_iter()
        .map(|(key, verdict)| {
            let verdict = verdict.and_then(|mut state| {
                if state.enable_dhcp {
                    match addresses.outcome(&Holder::Dhcp(key.clone()), 0) {
                        Some(Ok((_, address))) => state.dhcp = Some(*address),
                        Some(Err(error)) => {
                            let mut problems =
                                Problems::new(ObjectId::new(Kind::Subnet, key.clone()));
                            problems.push(
                                "spec.enableDHCP",
                                Reason::Exhausted,
                                format!("the DHCP server needs an address: {error}"),
                            );
                            return Err(problems.into_vec());
                        }
                        None => {}
                    }
                }
                (state.used, state.free) = addresses.book.usage(&key);
                Ok(state)
            });
            (key, verdict)
        })
        .collect()
}
