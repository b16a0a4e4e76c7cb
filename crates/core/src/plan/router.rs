//! Routers on their gateway node: a namespace with a leg on every subnet,
//! the gateway leg, routes, SNAT and floating IPs.

use ipnet::IpNet;
use std::net::Ipv4Addr;

use super::topology::Topology;
use super::{NatRule, RoutePlan, RouterLegPlan, RouterPlan};
use crate::resolve::{Resolution, RouterLeg};
use crate::{Key, names};

fn leg_plan(
    resolution: &Resolution,
    router: &Key,
    leg: &RouterLeg,
    external: bool,
) -> RouterLegPlan {
    let (bridge_port, interface) = names::router_link(router, &leg.subnet, external);
    RouterLegPlan {
        subnet: leg.subnet.clone(),
        network: leg.network.clone(),
        bridge: names::bridge(&leg.network),
        bridge_port,
        interface,
        mac: leg.mac,
        address: leg.address,
        mtu: resolution.network(&leg.network).map_or(1500, |n| n.mtu),
        advertise: (resolution.subnet(&leg.subnet))
            .filter(|_| !external)
            .and_then(|s| s.ipv6_ra_mode),
    }
}

pub(super) fn plan(topology: &Topology, node: &str) -> Vec<RouterPlan> {
    let resolution = topology.resolution;
    topology
        .routers_on(node)
        .map(|(key, router)| {
            let interfaces: Vec<RouterLegPlan> = router
                .interfaces
                .iter()
                .map(|leg| leg_plan(resolution, key, leg, false))
                .collect();
            let gateway = router
                .gateway
                .as_ref()
                .map(|g| leg_plan(resolution, key, &g.leg, true));
            let mut routes: Vec<RoutePlan> = router
                .routes
                .iter()
                .map(|(destination, nexthop)| RoutePlan {
                    destination: *destination,
                    nexthop: *nexthop,
                })
                .collect();
            let mut nat = Vec::new();
            let mut floating_ips = Vec::new();
            if let (Some(state), Some(leg)) = (&router.gateway, &gateway) {
                if let Some(nexthop) = state.nexthop {
                    routes.push(RoutePlan {
                        destination: IpNet::new(Ipv4Addr::UNSPECIFIED.into(), 0)
                            .expect("0 is a valid prefix"),
                        nexthop,
                    });
                }
                for (fip_key, fip) in topology.floating_ips_through(key) {
                    if let Some(target) = &fip.target {
                        floating_ips.push(fip.address);
                        nat.push(NatRule::FloatingIp {
                            floating: fip.address,
                            fixed: target.fixed,
                            floating_ip: fip_key.clone(),
                        });
                    }
                }
                if state.snat {
                    for interface in interfaces.iter().filter(|i| i.address.addr().is_ipv4()) {
                        nat.push(NatRule::Snat {
                            source: interface.address.trunc(),
                            to: leg.address.addr(),
                            interface: leg.interface.clone(),
                        });
                    }
                }
            }
            routes.sort();
            nat.sort();
            floating_ips.sort();
            RouterPlan {
                router: key.clone(),
                namespace: names::router_namespace(key),
                interfaces,
                gateway,
                floating_ips,
                routes,
                nat,
            }
        })
        .collect()
}
