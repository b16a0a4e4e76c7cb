//! Addresses, routes and links going up inside a namespace: what DHCP and
//! router namespaces need beyond their veth ends.

use futures::{StreamExt, TryStreamExt};
use ipnet::IpNet;
use netlink_packet_core::{NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressScope};
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{LinkUnspec, RouteMessageBuilder};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::netlink::{Netlink, NetlinkError};
use neutrino_core::plan::RoutePlan;
use neutrino_core::tunnel::{HostAddress, RouteHit};

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

    /// Every route of one family.
    async fn routes(&self, family: AddressFamily) -> Result<Vec<RouteMessage>, NetlinkError> {
        let mut query = RouteMessageBuilder::<IpAddr>::new().build();
        query.header.address_family = family;
        self.handle()
            .route()
            .get(query)
            .execute()
            .try_collect()
            .await
            .map_err(failed("listing routes".into()))
    }

    /// Makes the static routes of the main table exactly `wanted`.
    pub async fn sync_routes(&self, wanted: &[RoutePlan]) -> Result<(), NetlinkError> {
        let mut have = BTreeSet::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            for route in self.routes(family).await? {
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
    /// The namespace's global addresses, by interface index and then in
    /// the kernel's order: what a tunnel endpoint is chosen from.
    pub async fn host_addresses(&self) -> Result<Vec<HostAddress>, NetlinkError> {
        let links: Vec<_> = self
            .handle()
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(failed("listing links".into()))?;
        let names: BTreeMap<u32, String> = links
            .iter()
            .filter_map(|link| {
                link.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(name) => Some((link.header.index, name.clone())),
                    _ => None,
                })
            })
            .collect();
        let messages: Vec<_> = self
            .handle()
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(failed("listing addresses".into()))?;
        let mut addresses: Vec<HostAddress> = messages
            .iter()
            .filter(|m| m.header.scope == AddressScope::Universe)
            .filter_map(|m| {
                let ip = m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })?;
                Some(HostAddress {
                    interface: names.get(&m.header.index)?.clone(),
                    index: m.header.index,
                    address: IpNet::new(ip, m.header.prefix_len).ok()?,
                })
            })
            .collect();
        addresses.sort_by_key(|a| a.index);
        Ok(addresses)
    }

    /// The IPv4 default route's interface, if there is one.
    pub async fn default_route(&self) -> Result<Option<RouteHit>, NetlinkError> {
        Ok(self
            .routes(AddressFamily::Inet)
            .await?
            .iter()
            .filter(|r| r.header.destination_prefix_length == 0)
            .find_map(route_hit))
    }

    /// What the kernel's routing answers for `destination` (`ip route get`):
    /// the interface and source address, or `None` when unreachable.
    pub async fn route_to(&self, destination: IpAddr) -> Result<Option<RouteHit>, NetlinkError> {
        let message = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(destination, if destination.is_ipv4() { 32 } else { 128 })
            .map_err(|e| NetlinkError::Invalid {
                what: format!("looking up the route to {destination}"),
                message: e.to_string(),
            })?
            .build();
        let mut request = NetlinkMessage::from(RouteNetlinkMessage::GetRoute(message));
        request.header.flags = NLM_F_REQUEST;
        let mut handle = self.handle().clone();
        let mut responses = handle
            .request(request)
            .map_err(failed(format!("looking up the route to {destination}")))?;
        while let Some(response) = responses.next().await {
            match response.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(route)) => {
                    return Ok(route_hit(&route));
                }
                // Unreachable and no route both come back as errors.
                NetlinkPayload::Error(e) if e.code.is_some() => return Ok(None),
                _ => {}
            }
        }
        Ok(None)
    }
}

fn route_hit(route: &RouteMessage) -> Option<RouteHit> {
    let index = route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(index) => Some(*index),
        _ => None,
    })?;
    let source = route.attributes.iter().find_map(|a| match a {
        RouteAttribute::PrefSource(source) => route_address(source),
        _ => None,
    });
    Some(RouteHit { index, source })
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
