//! Floating IPs: an external address, the port it maps to, the router that maps it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::addresses::{Addresses, Request, Wanted, claim_problem};
use super::claims::ClaimIndex;
use super::{
    Arrival, FloatingIpState, FloatingTarget, Resolution, Subnets, Verdict, arrival, by_arrival,
    lookup,
};
use crate::allocate::Holder;
use crate::problem::Problems;
use crate::{Key, Kind, ObjectId, Problem, Reason, Snapshot};
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

/// `spec.network`: an external network with a ready IPv4 subnet; gives
/// the network and its IPv4 subnets in arrival order. Nothing else is
/// checked without one.
fn external_network(
    key: &Key,
    fip: &FloatingIP,
    snapshot: &Snapshot,
    resolution: &Resolution,
    subnets: &Subnets,
    id: &ObjectId,
) -> Result<(Key, Vec<Key>), Problem> {
    let network_key = key.shared_reference(&fip.spec.network);
    let network = lookup(
        snapshot,
        &resolution.networks,
        Kind::Network,
        &network_key,
        id,
        "spec.network",
    )?;
    if !network.external {
        return Err(Problem::new(
            id,
            "spec.network",
            Reason::NotExternal,
            format!(
                "network {network_key} is not external (spec.external: false); floating IPs come from external networks"
            ),
        ));
    }
    let candidates = subnets.of(&network_key, true);
    if candidates.is_empty() {
        return Err(Problem::new(
            id,
            "spec.network",
            Reason::NotFound,
            format!("network {network_key} has no ready IPv4 subnet to take a floating IP from"),
        ));
    }
    Ok((network_key, candidates))
}

/// The address the floating IP wants and the subnets it may come from:
/// the one `spec.floatingIPAddress` asks for, else the one it holds
/// already (claimed, or recorded in status) while a subnet still has it,
/// else any address of any candidate.
fn wanted_address(
    key: &Key,
    fip: &FloatingIP,
    network: &Key,
    candidates: Vec<Key>,
    subnets: &Subnets,
    claims: &ClaimIndex,
    id: &ObjectId,
) -> Result<(Vec<Key>, Wanted), Problem> {
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
    let exact = |address, subnet, recorded| (vec![subnet], Wanted::Exact { address, recorded });
    if let Some(text) = fip.spec.floating_ip_address.as_deref() {
        return match text
            .parse::<IpAddr>()
            .ok()
            .and_then(|a| Some((a, containing(a)?)))
        {
            Some((address, subnet)) => match subnets.provider_address(key, &subnet, address) {
                Ok(()) => Ok(exact(address, subnet, false)),
                Err(message) => Err(Problem::new(
                    id,
                    "spec.floatingIPAddress",
                    Reason::OutOfRange,
                    message,
                )),
            },
            None => Err(Problem::new(
                id,
                "spec.floatingIPAddress",
                Reason::OutOfRange,
                format!("{text} is not inside any IPv4 subnet of network {network}"),
            )),
        };
    }
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
    Ok(match recorded.and_then(|a| Some((a, containing(a)?))) {
        Some((address, subnet)) => exact(address, subnet, true),
        None => (candidates, Wanted::Any),
    })
}

/// `spec.fixedIPAddress`: an address, and only beside a port.
fn fixed_address(fip: &FloatingIP, problems: &mut Problems) -> Option<IpAddr> {
    let spec = &fip.spec;
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
    fixed
}

/// `spec.port`: a port that exists; whether it is ready is asked once the
/// ports are allocated.
fn target_port(
    key: &Key,
    fip: &FloatingIP,
    snapshot: &Snapshot,
    resolution: &Resolution,
    problems: &mut Problems,
) -> Option<Key> {
    let port = key.reference(fip.spec.port.as_deref()?);
    if !snapshot.ports.contains_key(&port)
        && let Err(p) = lookup(
            snapshot,
            &resolution.ports,
            Kind::Port,
            &port,
            problems.object(),
            "spec.port",
        )
    {
        problems.add(p);
    }
    Some(port)
}

fn check_one(
    key: &Key,
    fip: &FloatingIP,
    snapshot: &Snapshot,
    resolution: &Resolution,
    subnets: &Subnets,
    claims: &ClaimIndex,
) -> Verdict<FloatingDraft> {
    let id = ObjectId::new(Kind::FloatingIP, key.clone());
    let (network, candidates) =
        external_network(key, fip, snapshot, resolution, subnets, &id).map_err(|p| vec![p])?;
    let (subnets, wanted) = wanted_address(key, fip, &network, candidates, subnets, claims, &id)
        .map_err(|p| vec![p])?;
    let mut problems = Problems::new(id);
    let fixed = fixed_address(fip, &mut problems);
    let port = target_port(key, fip, snapshot, resolution, &mut problems);
    problems.finish(FloatingDraft {
        network,
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
    subnets: &Subnets,
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

/// Where a floating IP points: its port's fixed IP (the one
/// `spec.fixedIPAddress` names, else the port's first IPv4 address),
/// through a ready router that joins that address's subnet to the floating
/// IP's network. A fixed IP an earlier floating IP maps (`mapped`) is not
/// mapped twice.
fn target(
    key: &Key,
    draft: &FloatingDraft,
    snapshot: &Snapshot,
    resolution: &Resolution,
    mapped: &mut BTreeMap<IpAddr, Key>,
    problems: &mut Problems,
) -> Option<FloatingTarget> {
    let port_key = draft.port.as_ref()?;
    let port = match lookup(
        snapshot,
        &resolution.ports,
        Kind::Port,
        port_key,
        problems.object(),
        "spec.port",
    ) {
        Ok(port) => port,
        Err(p) => {
            problems.add(p);
            return None;
        }
    };
    let fixed = match draft.fixed {
        Some(a) => port.fixed_ips.iter().find(|(_, f)| *f == a),
        None => port.fixed_ips.iter().find(|(_, f)| f.is_ipv4()),
    };
    let Some((fixed_subnet, fixed)) = fixed else {
        problems.push(
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
        );
        return None;
    };
    let router = resolution.ready_routers().find(|(_, r)| {
        r.gateway
            .as_ref()
            .is_some_and(|g| g.leg.network == draft.network)
            && r.interfaces.iter().any(|l| &l.subnet == fixed_subnet)
    });
    match (router, mapped.get(fixed)) {
        (_, Some(other)) => {
            problems.push(
                "spec.port",
                Reason::InUse,
                format!("{fixed} of port {port_key} is already mapped by floating IP {other}"),
            );
            None
        }
        (None, None) => {
            problems.push(
                "spec.port",
                Reason::Unreachable,
                format!(
                    "no ready router joins subnet {fixed_subnet} of port {port_key} to external network {}",
                    draft.network
                ),
            );
            None
        }
        (Some((router, _)), None) => {
            mapped.insert(*fixed, key.clone());
            Some(FloatingTarget {
                port: port_key.clone(),
                fixed: *fixed,
                router: router.clone(),
            })
        }
    }
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
        let mut problems = Problems::new(ObjectId::new(Kind::FloatingIP, key.clone()));
        let (subnet, address) = match addresses.outcome(&Holder::FloatingIP(key.clone()), 0) {
            Some(Ok((s, a))) => (s.clone(), *a),
            Some(Err(error)) => {
                claim_problem(&mut problems, "spec.floatingIPAddress", error);
                verdicts.insert(key.clone(), Err(problems.into_vec()));
                continue;
            }
            None => unreachable!("every floating IP draft made a request"),
        };
        let target = target(
            key,
            &draft,
            snapshot,
            resolution,
            &mut mapped,
            &mut problems,
        );
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
