//! Addresses, routes and links going up inside a namespace: what DHCP and
//! router namespaces need beyond their veth ends.

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressScope};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol};
use rtnetlink::{LinkUnspec, RouteMessageBuilder};
use std::collections::BTreeSet;
use std::net::IpAddr;

use super::netlink::{Netlink, NetlinkError};
use crate::core::plan::RoutePlan;

fn failed(what: String) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    move |cause| NetlinkError::Request { what, cause }
}

impl Netlink {
    /// Sets the link `name` up unless it is.
    pub async fn ensure_up(&self, name: &str) -> Result<(), NetlinkError> {
        let link = self.link_flags(name).await?;
        if !link {
            let index = self.require(name, "setting up").await?;
            self.wrote();
            self.handle()
                .link()
                .set(LinkUnspec::new_with_index(index).up().build())
                .execute()
                .await
                .map_err(failed(format!("setting {name} up")))?;
        }
        Ok(())
    }

    /// Makes the global addresses of `name` exactly `wanted`; link-local
    /// addresses the kernel adds are left alone.
    pub async fn sync_addresses(&self, name: &str, wanted: &[IpNet]) -> Result<(), NetlinkError> {
        let index = self.require(name, "setting addresses").await?;
        let current: Vec<_> = self
            .handle()
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(failed(format!("listing addresses of {name}")))?;
        let mut have = BTreeSet::new();
        for message in current {
            if message.header.scope != AddressScope::Universe {
                continue;
            }
            let address = message.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            if let Some(net) = address.and_then(|ip| IpNet::new(ip, message.header.prefix_len).ok())
            {
                if wanted.contains(&net) {
                    have.insert(net);
                } else {
                    self.wrote();
                    self.handle()
                        .address()
                        .del(message)
                        .execute()
                        .await
                        .map_err(failed(format!("removing {net} from {name}")))?;
                }
            }
        }
        for net in wanted.iter().filter(|n| !have.contains(n)) {
            let mut request = self
                .handle()
                .address()
                .add(index, net.addr(), net.prefix_len());
            if net.addr().is_ipv6() {
                // No duplicate address detection: the address is ours by allocation.
                request
                    .message_mut()
                    .attributes
                    .push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
            self.wrote();
            request
                .execute()
                .await
                .map_err(failed(format!("adding {net} to {name}")))?;
        }
        Ok(())
    }

    /// Makes the static routes of the main table exactly `wanted`.
    pub async fn sync_routes(&self, wanted: &[RoutePlan]) -> Result<(), NetlinkError> {
        let mut have = BTreeSet::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut query = RouteMessageBuilder::<IpAddr>::new().build();
            query.header.address_family = family;
            let routes: Vec<RouteMessage> = self
                .handle()
                .route()
                .get(query)
                .execute()
                .try_collect()
                .await
                .map_err(failed("listing routes".into()))?;
            for route in routes {
                if route.header.protocol != RouteProtocol::Static {
                    continue;
                }
                let Some(plan) = route_plan(&route) else {
                    continue;
                };
                if wanted.contains(&plan) {
                    have.insert(plan);
                } else {
                    self.wrote();
                    self.handle()
                        .route()
                        .del(route)
                        .execute()
                        .await
                        .map_err(failed(format!("removing route to {}", plan.destination)))?;
                }
            }
        }
        for route in wanted.iter().filter(|r| !have.contains(r)) {
            let what = format!(
                "adding route to {} via {}",
                route.destination, route.nexthop
            );
            let message = RouteMessageBuilder::<IpAddr>::new()
                .destination_prefix(route.destination.addr(), route.destination.prefix_len())
                .and_then(|b| b.gateway(route.nexthop))
                .map_err(|e| NetlinkError::Invalid {
                    what: what.clone(),
                    message: e.to_string(),
                })?
                .protocol(RouteProtocol::Static)
                .build();
            self.wrote();
            self.handle()
                .route()
                .add(message)
                .execute()
                .await
                .map_err(failed(what))?;
        }
        Ok(())
    }
}

impl Netlink {
    /// The address this namespace reaches others from: the first global
    /// address of the default route's interface, else its only global
    /// address. `None` when that does not single one out.
    pub async fn primary_address(&self) -> Result<Option<IpAddr>, NetlinkError> {
        let mut query = RouteMessageBuilder::<IpAddr>::new().build();
        query.header.address_family = AddressFamily::Inet;
        let routes: Vec<RouteMessage> = self
            .handle()
            .route()
            .get(query)
            .execute()
            .try_collect()
            .await
            .map_err(failed("listing routes".into()))?;
        let default_interface = routes
            .iter()
            .filter(|r| r.header.destination_prefix_length == 0)
            .find_map(|r| {
                r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Oif(index) => Some(*index),
                    _ => None,
                })
            });
        let addresses: Vec<_> = self
            .handle()
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(failed("listing addresses".into()))?;
        let global: Vec<(u32, IpAddr)> = addresses
            .iter()
            .filter(|m| m.header.scope == AddressScope::Universe)
            .filter_map(|m| {
                let ip = m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })?;
                Some((m.header.index, ip))
            })
            .collect();
        Ok(match default_interface {
            Some(index) => global.iter().find(|(i, _)| *i == index).map(|(_, ip)| *ip),
            None if global.len() == 1 => Some(global[0].1),
            None => None,
        })
    }
}

fn route_address(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

fn route_plan(route: &RouteMessage) -> Option<RoutePlan> {
    let destination = route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Destination(d) => route_address(d),
            _ => None,
        })
        .or(match route.header.address_family {
            AddressFamily::Inet6 => Some(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)),
            _ => Some(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
        })?;
    let nexthop = route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(g) => route_address(g),
        _ => None,
    })?;
    Some(RoutePlan {
        destination: IpNet::new(destination, route.header.destination_prefix_length).ok()?,
        nexthop,
    })
}
