//! Floating IPs: an external address, the port it maps to, the router that maps it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::addresses::{Addresses, Request, Wanted, claim_problem};
use super::claims::ClaimIndex;
use super::{
    Arrival, FloatingIpState, FloatingTarget, Resolution, SubnetState, Verdict, arrival,
    by_arrival, lookup, subnets_of,
};
use crate::allocate::Holder;
use crate::problem::Problems;
use crate::{Key, Kind, ObjectId, Reason, Snapshot};
use neutrino_api::FloatingIP;

/// A floating IP that passed its checks, waiting for its address.
pub struct FloatingDraft {
    network: Key,
    subnets: Vec<Key>,
    wanted: Wanted,
    port: Option<Key>,
    fixed: Option<IpAddr>,
    arrival: Arrival,
}

fn check_one(
    key: &Key,
    fip: &FloatingIP,
    snapshot: &Snapshot,
    resolution: &Resolution,
    subnets: &BTreeMap<Key, Verdict<SubnetState>>,
    claims: &ClaimIndex,
) -> Verdict<FloatingDraft> {
    let spec = &fip.spec;
    let id = ObjectId::new(Kind::FloatingIP, key.clone());
    let mut problems = Problems::new(id.clone());
    let network_key = key.reference(&spec.network);
    match lookup(
        snapshot,
        &resolution.networks,
        Kind::Network,
        &network_key,
        &id,
        "spec.network",
    ) {
        Err(p) => return Err(vec![p]),
        Ok(n) if !n.external => {
            problems.push(
                "spec.network",
                Reason::NotExternal,
                format!("network {network_key} is not external (spec.external: false); floating IPs come from external networks"),
            );
            return Err(problems.into_vec());
        }
        Ok(_) => {}
    }
    let candidates = subnets_of(snapshot, subnets, &network_key, true);
    if candidates.is_empty() {
        problems.push(
            "spec.network",
            Reason::NotFound,
            format!("network {network_key} has no ready IPv4 subnet to take a floating IP from"),
        );
        return Err(problems.into_vec());
    }
    let containing = |address: IpAddr| {
        candidates
            .iter()
            .find(|k| {
                subnets[*k]
                    .as_ref()
                    .is_ok_and(|s| s.cidr.contains(&address))
            })
            .cloned()
    };
    let recorded = claims
        .addresses_of(&Holder::FloatingIP(key.clone()))
        .map(|(_, a)| a)
        .next()
        .or_else(|| {
            fip.status
                .as_ref()
                .and_then(|s| s.floating_ip_address.as_deref())
                .and_then(|a| a.parse::<IpAddr>().ok())
        });
    let (subnets, wanted) = match spec.floating_ip_address.as_deref() {
        Some(text) => match text
            .parse::<IpAddr>()
            .ok()
            .and_then(|a| Some((a, containing(a)?)))
        {
            Some((address, subnet)) => (
                vec![subnet],
                Wanted::Exact {
                    address,
                    recorded: false,
                },
            ),
            None => {
                problems.push(
                    "spec.floatingIPAddress",
                    Reason::OutOfRange,
                    format!("{text} is not inside any IPv4 subnet of network {network_key}"),
                );
                return Err(problems.into_vec());
            }
        },
        None => match recorded.and_then(|a| Some((a, containing(a)?))) {
            Some((address, subnet)) => (
                vec![subnet],
                Wanted::Exact {
                    address,
                    recorded: true,
                },
            ),
            None => (candidates, Wanted::Any),
        },
    };
    let fixed = match spec.fixed_ip_address.as_deref().map(str::parse::<IpAddr>) {
        Some(Err(_)) => {
            problems.push(
                "spec.fixedIPAddress",
                Reason::InvalidSpec,
                "fixedIPAddress must be an IP address",
            );
            None
        }
        Some(Ok(a)) => Some(a),
        None => None,
    };
    if fixed.is_some() && spec.port.is_none() {
        problems.push(
            "spec.fixedIPAddress",
            Reason::InvalidSpec,
            "fixedIPAddress needs a port",
        );
    }
    let port = spec.port.as_deref().map(|p| key.reference(p));
    if let Some(port) = &port
        && !snapshot.ports.contains_key(port)
    {
        let p = lookup(
            snapshot,
            &resolution.ports,
            Kind::Port,
            port,
            &id,
            "spec.port",
        )
        .err();
        if let Some(p) = p {
            problems.add(p);
        }
    }
    problems.finish(FloatingDraft {
        network: network_key,
        subnets,
        wanted,
        port,
        fixed,
        arrival: arrival(key, fip),
    })
}

/// Checks every floating IP; the address and the target come later.
pub fn check(
    snapshot: &Snapshot,
    resolution: &Resolution,
    subnets: &BTreeMap<Key, Verdict<SubnetState>>,
    claims: &ClaimIndex,
) -> BTreeMap<Key, Verdict<FloatingDraft>> {
    snapshot
        .floating_ips
        .iter()
        .map(|(key, fip)| {
            (
                key.clone(),
                check_one(key, fip, snapshot, resolution, subnets, claims),
            )
        })
        .collect()
}

/// The addresses the floating IPs want.
pub fn requests(drafts: &BTreeMap<Key, Verdict<FloatingDraft>>) -> Vec<Request> {
    drafts
        .iter()
        .filter_map(|(k, v)| Some((k, v.as_ref().ok()?)))
        .map(|(key, draft)| Request {
            holder: Holder::FloatingIP(key.clone()),
            slot: 0,
            subnets: draft.subnets.clone(),
            wanted: draft.wanted.clone(),
            arrival: draft.arrival.clone(),
        })
        .collect()
}

/// Gives each floating IP its address, its port's fixed IP and its router.
/// A fixed IP is mapped by the first floating IP that asks for it.
pub fn finish(
    snapshot: &Snapshot,
    mut drafts: BTreeMap<Key, Verdict<FloatingDraft>>,
    addresses: &Addresses,
    resolution: &Resolution,
) -> BTreeMap<Key, Verdict<FloatingIpState>> {
    let mut mapped: BTreeMap<IpAddr, Key> = BTreeMap::new();
    let mut verdicts = BTreeMap::new();
    for key in by_arrival(&snapshot.floating_ips) {
        let draft = match drafts.remove(key).expect("a draft per floating IP") {
            Ok(d) => d,
            Err(p) => {
                verdicts.insert(key.clone(), Err(p));
                continue;
            }
        };
        let id = ObjectId::new(Kind::FloatingIP, key.clone());
        let mut problems = Problems::new(id.clone());
        let (subnet, address) = match addresses.outcome(&Holder::FloatingIP(key.clone()), 0) {
            Some(Ok((s, a))) => (s.clone(), *a),
            Some(Err(error)) => {
                claim_problem(&mut problems, "spec.floatingIPAddress", error);
                verdicts.insert(key.clone(), Err(problems.into_vec()));
                continue;
            }
            None => unreachable!("every floating IP draft made a request"),
        };
        let mut target = None;
        if let Some(port_key) = &draft.port {
            match lookup(
                snapshot,
                &resolution.ports,
                Kind::Port,
                port_key,
                &id,
                "spec.port",
            ) {
                Err(p) => problems.add(p),
                Ok(port) => {
                    let fixed = match draft.fixed {
                        Some(a) => port.fixed_ips.iter().find(|(_, f)| *f == a),
                        None => port.fixed_ips.iter().find(|(_, f)| f.is_ipv4()),
                    };
                    match fixed {
                        None => problems.push(
                            if draft.fixed.is_some() {
                                "spec.fixedIPAddress"
                            } else {
                                "spec.port"
                            },
                            Reason::NotFound,
                            match draft.fixed {
                                Some(a) => format!("port {port_key} does not hold {a}"),
                                None => format!("port {port_key} has no IPv4 address"),
                            },
                        ),
                        Some((fixed_subnet, fixed)) => {
                            let router = resolution.ready_routers().find(|(_, r)| {
                                r.gateway
                                    .as_ref()
                                    .is_some_and(|g| g.leg.network == draft.network)
                                    && r.interfaces.iter().any(|l| &l.subnet == fixed_subnet)
                            });
                            match (router, mapped.get(fixed)) {
                                (_, Some(other)) => problems.push(
                                    "spec.port",
                                    Reason::InUse,
                                    format!("{fixed} of port {port_key} is already mapped by floating IP {other}"),
                                ),
                                (None, None) => problems.push(
                                    "spec.port",
                                    Reason::Unreachable,
                                    format!(
                                        "no ready router joins subnet {fixed_subnet} of port {port_key} to external network {}",
                                        draft.network
                                    ),
                                ),
                                (Some((router, _)), None) => {
                                    mapped.insert(*fixed, key.clone());
                                    target = Some(FloatingTarget {
                                        port: port_key.clone(),
                                        fixed: *fixed,
                                        router: router.clone(),
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
        let verdict = problems.finish(FloatingIpState {
            network: draft.network,
            subnet,
            address,
            target,
        });
        verdicts.insert(key.clone(), verdict);
    }
    verdicts
}
