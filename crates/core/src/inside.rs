//! Inside the namespaces the agent keeps besides the node's own — a DHCP
//! server's and a router's: their interfaces up with their addresses, their
//! static routes, and forwarding for a router. What the plan wants there is
//! an [`InnerNamespace`], what the kernel has an [`ObservedInside`], and
//! [`diff`] the changes between them.

use ipnet::IpNet;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

use super::metadata;
use super::plan::{NodePlan, RoutePlan};

/// The sysctls that make a namespace forward, both families.
pub const FORWARDING: [&str; 2] = ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"];

/// The interface every namespace has and needs up.
const LOOPBACK: &str = "lo";

/// What the plan wants inside one namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InnerNamespace {
    pub name: String,
    /// Each interface (the namespace end of a veth pair) and its addresses.
    pub interfaces: Vec<(String, Vec<IpNet>)>,
    /// Addresses on loopback beyond the kernel's own: the metadata
    /// service's, which the namespace's legs all reach.
    pub loopback: Vec<IpNet>,
    pub routes: Vec<RoutePlan>,
    /// Routers forward; DHCP servers do not.
    pub forwarding: bool,
}

impl InnerNamespace {
    /// The interfaces whose state matters: loopback and the planned ones.
    pub fn interface_names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(LOOPBACK).chain(self.interfaces.iter().map(|(name, _)| name.as_str()))
    }
}

/// The DHCP and router namespaces a plan wants.
pub fn inner_namespaces(plan: &NodePlan) -> Vec<InnerNamespace> {
    let dhcp = plan.dhcp.iter().map(|d| InnerNamespace {
        name: d.namespace.clone(),
        interfaces: vec![(d.interface.clone(), vec![d.address])],
        loopback: metadata_address(std::iter::once(&d.address)),
        routes: Vec::new(),
        forwarding: false,
    });
    let routers = plan.routers.iter().map(|r| {
        let mut interfaces: Vec<(String, Vec<IpNet>)> = r
            .interfaces
            .iter()
            .map(|leg| (leg.interface.clone(), vec![leg.address]))
            .collect();
        if let Some(gateway) = &r.gateway {
            // The gateway leg answers for its floating IPs too.
            let mut addresses = vec![gateway.address];
            addresses.extend(r.floating_ips.iter().map(|ip| IpNet::from(*ip)));
            interfaces.push((gateway.interface.clone(), addresses));
        }
        InnerNamespace {
            name: r.namespace.clone(),
            loopback: metadata_address(r.interfaces.iter().map(|leg| &leg.address)),
            interfaces,
            routes: r.routes.clone(),
            forwarding: true,
        }
    });
    dhcp.chain(routers).collect()
}

/// The metadata service's address, where one of `legs` is IPv4: the
/// service answers IPv4 callers.
fn metadata_address<'a>(mut legs: impl Iterator<Item = &'a IpNet>) -> Vec<IpNet> {
    let v4 = legs.any(|a| a.addr().is_ipv4());
    v4.then(metadata::host_route).into_iter().collect()
}

/// An interface as the kernel reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedInterface {
    pub up: bool,
    /// Its global addresses; link-local ones the kernel adds are not ours.
    pub addresses: Vec<IpNet>,
}

/// What one namespace holds, as far as its plan cares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedInside {
    /// The interfaces asked about that exist.
    pub interfaces: BTreeMap<String, ObservedInterface>,
    /// The static routes of the main table, both families.
    pub routes: Vec<RoutePlan>,
    /// The [`FORWARDING`] sysctls that are on.
    pub forwarding: BTreeSet<String>,
}

/// One change inside a namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum InsideChange {
    SetUp(String),
    RemoveAddress(String, IpNet),
    AddAddress(String, IpNet),
    RemoveRoute(RoutePlan),
    AddRoute(RoutePlan),
    /// Turns one of the [`FORWARDING`] sysctls on.
    Forward(String),
}

/// The changes that bring one interface up with exactly the addresses
/// `wanted`: up first, then stale addresses out, then new ones in.
pub fn interface_changes(
    name: &str,
    wanted: &[IpNet],
    found: &ObservedInterface,
) -> Vec<InsideChange> {
    let mut changes = Vec::new();
    if !found.up {
        changes.push(InsideChange::SetUp(name.into()));
    }
    changes.extend(
        found
            .addresses
            .iter()
            .filter(|a| !wanted.contains(a))
            .map(|a| InsideChange::RemoveAddress(name.into(), *a)),
    );
    changes.extend(
        wanted
            .iter()
            .filter(|a| !found.addresses.contains(a))
            .map(|a| InsideChange::AddAddress(name.into(), *a)),
    );
    changes
}

/// The changes that take `observed` to `desired`, in the order they must be
/// applied: each interface up before its addresses, stale addresses and
/// routes out before new ones in (a changed prefix must not be held twice),
/// routes after the addresses their next hops are reached through, and
/// forwarding last. An interface that is missing still gets its changes:
/// applying them is what reports it.
pub fn diff(desired: &InnerNamespace, observed: &ObservedInside) -> Vec<InsideChange> {
    let absent = ObservedInterface::default();
    let found = |name: &str| observed.interfaces.get(name).unwrap_or(&absent);
    // Loopback keeps the kernel's own addresses (host scope, never seen
    // here) beside the planned ones.
    let mut changes = interface_changes(LOOPBACK, &desired.loopback, found(LOOPBACK));
    for (name, wanted) in &desired.interfaces {
        changes.extend(interface_changes(name, wanted, found(name)));
    }
    changes.extend(
        observed
            .routes
            .iter()
            .filter(|r| !desired.routes.contains(r))
            .cloned()
            .map(InsideChange::RemoveRoute),
    );
    changes.extend(
        desired
            .routes
            .iter()
            .filter(|r| !observed.routes.contains(r))
            .cloned()
            .map(InsideChange::AddRoute),
    );
    if desired.forwarding {
        changes.extend(
            FORWARDING
                .iter()
                .filter(|key| !observed.forwarding.contains(**key))
                .map(|key| InsideChange::Forward((*key).into())),
        );
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn route(destination: &str, nexthop: &str) -> RoutePlan {
        RoutePlan {
            destination: net(destination),
            nexthop: nexthop.parse().unwrap(),
        }
    }

    fn router() -> InnerNamespace {
        InnerNamespace {
            name: "nt-router-x".into(),
            interfaces: vec![
                ("qr-a".into(), vec![net("10.0.0.1/24")]),
                (
                    "qg-a".into(),
                    vec![net("203.0.113.5/24"), net("203.0.113.9/32")],
                ),
            ],
            loopback: vec![net("169.254.169.254/32")],
            routes: vec![route("0.0.0.0/0", "203.0.113.1")],
            forwarding: true,
        }
    }

    fn up(addresses: &[&str]) -> ObservedInterface {
        ObservedInterface {
            up: true,
            addresses: addresses.iter().map(|a| net(a)).collect(),
        }
    }

    /// The namespace as the plan wants it.
    fn settled() -> ObservedInside {
        ObservedInside {
            interfaces: [
                ("lo".to_string(), up(&["169.254.169.254/32"])),
                ("qr-a".to_string(), up(&["10.0.0.1/24"])),
                (
                    "qg-a".to_string(),
                    up(&["203.0.113.5/24", "203.0.113.9/32"]),
                ),
            ]
            .into(),
            routes: vec![route("0.0.0.0/0", "203.0.113.1")],
            forwarding: FORWARDING.iter().map(|k| k.to_string()).collect(),
        }
    }

    #[test]
    fn a_fresh_namespace_gets_everything_in_order() {
        let fresh = ObservedInside {
            interfaces: [
                ("lo".to_string(), ObservedInterface::default()),
                ("qr-a".to_string(), ObservedInterface::default()),
                ("qg-a".to_string(), ObservedInterface::default()),
            ]
            .into(),
            ..Default::default()
        };
        assert_eq!(
            diff(&router(), &fresh),
            vec![
                InsideChange::SetUp("lo".into()),
                InsideChange::AddAddress("lo".into(), net("169.254.169.254/32")),
                InsideChange::SetUp("qr-a".into()),
                InsideChange::AddAddress("qr-a".into(), net("10.0.0.1/24")),
                InsideChange::SetUp("qg-a".into()),
                InsideChange::AddAddress("qg-a".into(), net("203.0.113.5/24")),
                InsideChange::AddAddress("qg-a".into(), net("203.0.113.9/32")),
                InsideChange::AddRoute(route("0.0.0.0/0", "203.0.113.1")),
                InsideChange::Forward("net.ipv4.ip_forward".into()),
                InsideChange::Forward("net.ipv6.conf.all.forwarding".into()),
            ]
        );
    }

    #[test]
    fn a_settled_namespace_needs_nothing() {
        assert_eq!(diff(&router(), &settled()), vec![]);
    }

    #[test]
    fn only_what_drifted_is_put_back() {
        let mut drifted = settled();
        drifted.interfaces.get_mut("qg-a").unwrap().addresses = vec![net("203.0.113.5/24")];
        drifted.routes.push(route("192.0.2.0/24", "10.0.0.7"));
        drifted.forwarding.remove("net.ipv4.ip_forward");
        assert_eq!(
            diff(&router(), &drifted),
            vec![
                InsideChange::AddAddress("qg-a".into(), net("203.0.113.9/32")),
                InsideChange::RemoveRoute(route("192.0.2.0/24", "10.0.0.7")),
                InsideChange::Forward("net.ipv4.ip_forward".into()),
            ]
        );
    }

    #[test]
    fn a_changed_address_goes_out_before_its_successor_comes_in() {
        let mut dhcp = InnerNamespace {
            name: "nt-dhcp-x".into(),
            interfaces: vec![("ns-a".into(), vec![net("10.0.0.2/24")])],
            loopback: vec![],
            routes: vec![],
            forwarding: false,
        };
        let observed = ObservedInside {
            interfaces: [
                ("lo".to_string(), up(&[])),
                ("ns-a".to_string(), up(&["10.0.0.2/24"])),
            ]
            .into(),
            // A DHCP namespace never forwards, whatever the sysctl says.
            ..Default::default()
        };
        assert_eq!(diff(&dhcp, &observed), vec![]);
        dhcp.interfaces[0].1 = vec![net("10.0.0.2/25")];
        assert_eq!(
            diff(&dhcp, &observed),
            vec![
                InsideChange::RemoveAddress("ns-a".into(), net("10.0.0.2/24")),
                InsideChange::AddAddress("ns-a".into(), net("10.0.0.2/25")),
            ]
        );
    }

    #[test]
    fn a_missing_interface_is_asked_for_so_that_applying_reports_it() {
        let mut missing = settled();
        missing.interfaces.remove("qr-a");
        assert_eq!(
            diff(&router(), &missing),
            vec![
                InsideChange::SetUp("qr-a".into()),
                InsideChange::AddAddress("qr-a".into(), net("10.0.0.1/24")),
            ]
        );
    }
}
