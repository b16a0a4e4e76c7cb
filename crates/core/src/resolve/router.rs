//! Routers: interfaces, external gateway, static routes and the gateway node.

use crate::config::Nodes;
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::addresses::{Addresses, Request, Wanted, claim_problem};
use super::claims::ClaimIndex;
use super::{
    Arrival, GatewayState, Resolution, RouterLeg, RouterState, Subnets, Verdict, arrival,
    by_arrival, lookup,
};
use crate::allocate::{Holder, Mac};
use crate::problem::Problems;
use crate::{Key, Kind, NodeConfig, ObjectId, Reason, Snapshot};
use neutrino_api::Router;

/// A router that passed its checks, waiting for its gateway address.
pub struct RouterDraft {
    /// (subnet, network, gateway address with the subnet's prefix).
    interfaces: Vec<(Key, Key, IpNet)>,
    /// The external network, its candidate subnets, and the wanted address.
    gateway: Option<(Key, Vec<Key>, Wanted, bool)>,
    routes: Vec<(IpNet, IpAddr)>,
    arrival: Arrival,
}

/// The node a router runs on: the one recorded in status while it still
/// qualifies, else the qualifying gateway node with the fewest routers
/// (Neutron's least-routers scheduler), ties going to the first listed.
fn schedule(
    recorded: Option<&str>,
    physnets: &BTreeSet<String>,
    nodes: &Nodes,
    load: &mut BTreeMap<String, usize>,
) -> Option<String> {
    let qualifies = |n: &NodeConfig| {
        n.gateway
            && physnets
                .iter()
                .all(|p| n.physical_interfaces.contains_key(p))
    };
    let chosen = match recorded
        .and_then(|name| nodes.get(name))
        .filter(|n| qualifies(n))
    {
        Some(node) => node,
        None => nodes
            .list
            .iter()
            .filter(|n| qualifies(n))
            .min_by_key(|n| load.get(&n.name).copied().unwrap_or(0))?,
    };
    *load.entry(chosen.name.clone()).or_default() += 1;
    Some(chosen.name.clone())
}

/// `spec.interfaces`: each a subnet with a gateway address, none
/// overlapping another; the router's leg takes the subnet's gateway.
fn interfaces(
    key: &Key,
    router: &Router,
    snapshot: &Snapshot,
    subnets: &Subnets,
    id: &ObjectId,
    problems: &mut Problems,
) -> Vec<(Key, Key, IpNet)> {
    let spec = &router.spec;
    let mut interfaces: Vec<(Key, Key, IpNet)> = Vec::new();
    for (i, interface) in spec.interfaces.iter().enumerate() {
        let field = format!("spec.interfaces[{i}].subnet");
        let subnet_key = key.reference(&interface.subnet);
        let subnet = match lookup(snapshot, subnets, Kind::Subnet, &subnet_key, id, &field) {
            Ok(s) => s,
            Err(p) => {
                problems.add(p);
                continue;
            }
        };
        let Some(gateway) = subnet.gateway else {
            problems.push(
                &field,
                Reason::InvalidSpec,
                format!("subnet {subnet_key} has no gatewayIP, so a router cannot attach to it"),
            );
            continue;
        };
        if let Some((other, _, net)) = interfaces
            .iter()
            .find(|(_, _, net)| net.contains(&subnet.cidr) || subnet.cidr.contains(net))
        {
            let message = if *other == subnet_key {
                format!("subnet {subnet_key} is listed twice")
            } else {
                format!(
                    "{} of subnet {subnet_key} overlaps {} of subnet {other}; a router cannot attach to both",
                    subnet.cidr,
                    net.trunc()
                )
            };
            problems.push(&field, Reason::Overlap, message);
            continue;
        }
        let address =
            IpNet::new(gateway, subnet.cidr.prefix_len()).expect("prefix of a parsed CIDR");
        interfaces.push((subnet_key, subnet.network.clone(), address));
    }
    interfaces
}

/// `spec.externalGateway`: an external network, and the address the
/// gateway wants on one of its IPv4 subnets (asked for, held already, or
/// any); the external subnets join `on_link` for the routes' nexthops.
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
fn external_gateway(
    key: &Key,
    router: &Router,
    snapshot: &Snapshot,
    resolution: &Resolution,
    subnets: &Subnets,
    claims: &ClaimIndex,
    id: &ObjectId,
    on_link: &mut Vec<IpNet>,
    problems: &mut Problems,
) -> Option<(Key, Vec<Key>, Wanted, bool)> {
    let ext = router.spec.external_gateway.as_ref()?;
    let mut gateway = None;
    let network_key = key.shared_reference(&ext.network);
    match lookup(
        snapshot,
        &resolution.networks,
        Kind::Network,
        &network_key,
        id,
        "spec.externalGateway.network",
    ) {
        Err(p) => problems.add(p),
        Ok(network) if !network.external => problems.push(
            "spec.externalGateway.network",
            Reason::NotExternal,
            format!("network {network_key} is not external (spec.external: false)"),
        ),
        Ok(_) => {
            let candidates = subnets.of(&network_key, true);
            on_link.extend(
                candidates
                    .iter()
                    .filter_map(|k| subnets[k].as_ref().ok())
                    .map(|s| s.cidr),
            );
            let recorded = claims
                .addresses_of(&Holder::RouterGateway(key.clone()))
                .map(|(_, a)| a)
                .next()
                .or_else(|| {
                    router
                        .status
                        .as_ref()
                        .and_then(|s| s.external_gateway.as_ref())
                        .and_then(|g| g.ip_address.parse::<IpAddr>().ok())
                });
            let containing = |address: IpAddr| {
                candidates
                    .iter()
                    .find(|k| {
                        subnets[*k]
                            .as_ref()
                            .is_ok_and(|s| s.cidr.contains(&address))
                    })
                    .map(|k| vec![k.clone()])
            };
            let wanted = match (ext.ip_address.as_deref(), recorded) {
                (Some(text), _) => match text.parse::<IpAddr>() {
                    Err(_) => Err((
                        Reason::InvalidSpec,
                        format!("{text:?} is not an IP address"),
                    )),
                    Ok(address) => containing(address)
                        .ok_or_else(|| {
                            let message = format!(
                                "{address} is not inside any IPv4 subnet of network {network_key}"
                            );
                            (Reason::OutOfRange, message)
                        })
                        .and_then(|s| {
                            (subnets.provider_address(key, &s[0], address))
                                .map_err(|message| (Reason::OutOfRange, message))?;
                            Ok((
                                s,
                                Wanted::Exact {
                                    address,
                                    recorded: false,
                                },
                            ))
                        }),
                },
                _ if candidates.is_empty() => Err((
                    Reason::NotFound,
                    format!(
                        "network {network_key} has no ready IPv4 subnet to take an address from"
                    ),
                )),
                (None, Some(address)) => Ok(containing(address)
                    .map(|s| {
                        (
                            s,
                            Wanted::Exact {
                                address,
                                recorded: true,
                            },
                        )
                    })
                    .unwrap_or((candidates, Wanted::Any))),
                (None, None) => Ok((candidates, Wanted::Any)),
            };
            match wanted {
                Ok((subnets, wanted)) => {
                    gateway = Some((network_key, subnets, wanted, ext.enable_snat))
                }
                Err((reason, message)) => {
                    problems.push("spec.externalGateway.ipAddress", reason, message)
                }
            }
        }
    }
    gateway
}

/// `spec.routes`: each a CIDR through a nexthop on a subnet the router is
/// attached to.
fn routes(router: &Router, on_link: &[IpNet], problems: &mut Problems) -> Vec<(IpNet, IpAddr)> {
    let spec = &router.spec;
    let mut routes = Vec::new();
    for (i, route) in spec.routes.iter().enumerate() {
        let field = format!("spec.routes[{i}]");
        let (Ok(destination), Ok(nexthop)) = (
            route.destination.parse::<IpNet>(),
            route.nexthop.parse::<IpAddr>(),
        ) else {
            problems.push(
                &field,
                Reason::InvalidSpec,
                "destination must be a CIDR and nexthop an IP address",
            );
            continue;
        };
        if !on_link.iter().any(|net| net.contains(&nexthop)) {
            problems.push(
                format!("{field}.nexthop"),
                Reason::Unreachable,
                format!("nexthop {nexthop} is not on any subnet the router is attached to"),
            );
            continue;
        }
        routes.push((destination.trunc(), nexthop));
    }
    routes
}

fn check_one(
    key: &Key,
    router: &Router,
    snapshot: &Snapshot,
    resolution: &Resolution,
    subnets: &Subnets,
    claims: &ClaimIndex,
) -> Verdict<RouterDraft> {
    let id = ObjectId::new(Kind::Router, key.clone());
    let mut problems = Problems::new(id.clone());
    let interfaces = interfaces(key, router, snapshot, subnets, &id, &mut problems);
    let mut on_link: Vec<IpNet> = interfaces.iter().map(|(_, _, a)| a.trunc()).collect();
    let gateway = external_gateway(
        key,
        router,
        snapshot,
        resolution,
        subnets,
        claims,
        &id,
        &mut on_link,
        &mut problems,
    );
    let routes = routes(router, &on_link, &mut problems);
    problems.finish(RouterDraft {
        interfaces,
        gateway,
        routes,
        arrival: arrival(key, router),
    })
}

/// Checks every router; the gateway address comes later.
pub fn check(
    snapshot: &Snapshot,
    resolution: &Resolution,
    subnets: &Subnets,
    claims: &ClaimIndex,
) -> BTreeMap<Key, Verdict<RouterDraft>> {
    snapshot
        .routers
        .iter()
        .map(|(key, router)| {
            (
                key.clone(),
                check_one(key, router, snapshot, resolution, subnets, claims),
            )
        })
        .collect()
}

/// The gateway addresses the routers want.
pub fn requests(drafts: &BTreeMap<Key, Verdict<RouterDraft>>) -> Vec<Request> {
    drafts
        .iter()
        .filter_map(|(k, v)| Some((k, v.as_ref().ok()?)))
        .filter_map(|(key, draft)| {
            let (_, subnets, wanted, _) = draft.gateway.as_ref()?;
            Some(Request {
                holder: Holder::RouterGateway(key.clone()),
                slot: 0,
                subnets: subnets.clone(),
                wanted: wanted.clone(),
                arrival: draft.arrival.clone(),
            })
        })
        .collect()
}

fn leg(router: &Key, subnet: Key, network: Key, address: IpNet) -> RouterLeg {
    let mac = Mac::derive(&format!("router {router} {subnet}"), 0);
    RouterLeg {
        subnet,
        network,
        address,
        mac,
    }
}

/// Gives each router its gateway address and legs; a subnet's gateway goes
/// to the first router that attaches to it.
pub fn finish(
    snapshot: &Snapshot,
    nodes: &Nodes,
    mut drafts: BTreeMap<Key, Verdict<RouterDraft>>,
    addresses: &Addresses,
    resolution: &Resolution,
) -> BTreeMap<Key, Verdict<RouterState>> {
    let mut attached: BTreeMap<Key, Key> = BTreeMap::new();
    let mut load = BTreeMap::new();
    let mut verdicts = BTreeMap::new();
    for key in by_arrival(&snapshot.routers) {
        let draft = match drafts.remove(key).expect("a draft per router") {
            Ok(d) => d,
            Err(p) => {
                verdicts.insert(key.clone(), Err(p));
                continue;
            }
        };
        let mut problems = Problems::new(ObjectId::new(Kind::Router, key.clone()));
        let mut interfaces = Vec::new();
        for (i, (subnet, network, address)) in draft.interfaces.into_iter().enumerate() {
            let field = format!("spec.interfaces[{i}].subnet");
            if resolution.subnet(&subnet).is_none() {
                problems.push(
                    &field,
                    Reason::DependencyNotReady,
                    format!("subnet {subnet} is not ready"),
                );
            } else if let Some(other) = attached.get(&subnet) {
                problems.push(
                    &field,
                    Reason::InUse,
                    format!(
                        "the gateway {} of subnet {subnet} is already taken by router {other}",
                        address.addr()
                    ),
                );
            } else {
                interfaces.push(leg(key, subnet, network, address));
            }
        }
        let mut gateway = None;
        if let Some((network, _, _, snat)) = draft.gateway {
            match addresses.outcome(&Holder::RouterGateway(key.clone()), 0) {
                Some(Ok((subnet, address))) => match resolution.subnet(subnet) {
                    Some(state) => {
                        let address = IpNet::new(*address, state.cidr.prefix_len())
                            .expect("prefix of a parsed CIDR");
                        gateway = Some(GatewayState {
                            leg: leg(key, subnet.clone(), network, address),
                            nexthop: state.gateway,
                            snat,
                        });
                    }
                    None => problems.push(
                        "spec.externalGateway.network",
                        Reason::DependencyNotReady,
                        format!("subnet {subnet} of network {network} is not ready"),
                    ),
                },
                Some(Err(error)) => {
                    claim_problem(&mut problems, "spec.externalGateway.ipAddress", error)
                }
                None => {}
            }
        }
        let physnets: BTreeSet<String> = interfaces
            .iter()
            .chain(gateway.as_ref().map(|g| &g.leg))
            .filter_map(|leg| resolution.network(&leg.network)?.physical_network.clone())
            .collect();
        let recorded = snapshot.routers[key]
            .status
            .as_ref()
            .and_then(|s| s.node.as_deref());
        let node = if problems.is_empty() {
            schedule(recorded, &physnets, nodes, &mut load)
        } else {
            None
        };
        if problems.is_empty() && node.is_none() {
            problems.push(
                "status.node",
                Reason::UnknownNode,
                format!(
                    "no node may host this router: none has gateway: true and an interface on every physical network it needs ({})",
                    physnets.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
        }
        let verdict = problems.finish(()).map(|()| {
            for leg in &interfaces {
                attached.insert(leg.subnet.clone(), key.clone());
            }
            RouterState {
                node: node.expect("scheduled when there are no problems"),
                interfaces,
                gateway,
                routes: draft.routes,
            }
        });
        verdicts.insert(key.clone(), verdict);
    }
    verdicts
}
