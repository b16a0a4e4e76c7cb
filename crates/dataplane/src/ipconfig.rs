//! Addresses, routes and links going up inside a namespace: what DHCP and
//! router namespaces need beyond their veth ends. Read into a
//! [`neutrino_core::inside::ObservedInside`], changed by the
//! [`InsideChange`]s core works out.

use futures::{StreamExt, TryStreamExt};
use ipnet::IpNet;
use netlink_packet_core::{NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressScope};
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::link::LinkFlags;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{LinkUnspec, RouteMessageBuilder};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Mutex;

use super::backend::{Applied, Failure, InsideNamespace};
use super::netlink::{Netlink, NetlinkError};
use super::netns;
use neutrino_core::inside::{
    FORWARDING, InnerNamespace, InsideChange, ObservedInside, ObservedInterface, interface_changes,
};
use neutrino_core::plan::RoutePlan;
use neutrino_core::tunnel::{HostAddress, RouteHit};

fn failed(what: String) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    move |cause| NetlinkError::Request { what, cause }
}

/// Addresses and routes as the kernel reported them, kept so that a
/// removal deletes exactly the message that was found.
#[derive(Default)]
struct Found {
    addresses: BTreeMap<(String, IpNet), AddressMessage>,
    routes: BTreeMap<RoutePlan, RouteMessage>,
}

/// What one interface dump found: each named interface's state, and the
/// address messages behind it.
type Interfaces = (
    BTreeMap<String, ObservedInterface>,
    BTreeMap<(String, IpNet), AddressMessage>,
);

impl Netlink {
    /// The state of the interfaces `names` that exist: up or not, and
    /// their global addresses (link-local ones the kernel adds are not
    /// ours).
    pub(crate) async fn interfaces(&self, names: &[&str]) -> Result<Interfaces, NetlinkError> {
        let links = self.links().await?;
        let mut by_index = BTreeMap::new();
        let mut interfaces = BTreeMap::new();
        for link in &links {
            let name = link.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(name) => Some(name.as_str()),
                _ => None,
            });
            if let Some(name) = name.filter(|n| names.contains(n)) {
                by_index.insert(link.header.index, name.to_string());
                interfaces.insert(
                    name.to_string(),
                    ObservedInterface {
                        up: link.header.flags.contains(LinkFlags::Up),
                        addresses: Vec::new(),
                    },
                );
            }
        }
        let messages: Vec<AddressMessage> = self
            .handle()
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(failed("listing addresses".into()))?;
        let mut found = BTreeMap::new();
        for message in messages {
            let Some(name) = by_index.get(&message.header.index) else {
                continue;
            };
            if message.header.scope != AddressScope::Universe {
                continue;
            }
            let address = message.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            if let Some(net) = address.and_then(|ip| IpNet::new(ip, message.header.prefix_len).ok())
            {
                if let Some(interface) = interfaces.get_mut(name) {
                    interface.addresses.push(net);
                }
                found.insert((name.clone(), net), message);
            }
        }
        Ok((interfaces, found))
    }

    /// The static routes of the main table, both families.
    async fn static_routes(&self) -> Result<BTreeMap<RoutePlan, RouteMessage>, NetlinkError> {
        let mut found = BTreeMap::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            for route in self.routes(family).await? {
                if route.header.protocol != RouteProtocol::Static {
                    continue;
                }
                if let Some(plan) = route_plan(&route) {
                    found.insert(plan, route);
                }
            }
        }
        Ok(found)
    }

    /// Applies changes inside this namespace, stopping at the first that
    /// fails: what follows it (an address on a link that is not up, a route
    /// through an address that is missing) would fail for the same reason.
    async fn apply_inside(&self, changes: &[InsideChange], found: &Found) -> Applied {
        let before = self.writes();
        let mut errors: Vec<Failure> = Vec::new();
        for change in changes {
            if let Err(e) = self.apply_one(change, found).await {
                errors.push(e.into());
                break;
            }
        }
        Applied {
            writes: self.writes() - before,
            errors,
            ..Applied::default()
        }
    }

    async fn apply_one(&self, change: &InsideChange, found: &Found) -> Result<(), NetlinkError> {
        match change {
            InsideChange::SetUp(name) => {
                let index = self.require(name, "setting up").await?;
                self.wrote();
                self.handle()
                    .link()
                    .set(LinkUnspec::new_with_index(index).up().build())
                    .execute()
                    .await
                    .map_err(failed(format!("setting {name} up")))
            }
            InsideChange::RemoveAddress(name, net) => {
                let Some(message) = found.addresses.get(&(name.clone(), *net)) else {
                    return Ok(());
                };
                self.wrote();
                self.handle()
                    .address()
                    .del(message.clone())
                    .execute()
                    .await
                    .map_err(failed(format!("removing {net} from {name}")))
            }
            InsideChange::AddAddress(name, net) => {
                let index = self.require(name, "setting addresses").await?;
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
                    .map_err(failed(format!("adding {net} to {name}")))
            }
            InsideChange::RemoveRoute(route) => {
                let Some(message) = found.routes.get(route) else {
                    return Ok(());
                };
                self.wrote();
                self.handle()
                    .route()
                    .del(message.clone())
                    .execute()
                    .await
                    .map_err(failed(format!("removing route to {}", route.destination)))
            }
            InsideChange::AddRoute(route) => {
                let (what, message) = route_message(route)?;
                self.wrote();
                self.handle()
                    .route()
                    .add(message)
                    .execute()
                    .await
                    .map_err(failed(what))
            }
            InsideChange::Forward(key) => {
                let namespace = self.namespace();
                self.wrote();
                netns::sysctl(namespace, key, "1").map_err(|e| NetlinkError::Invalid {
                    what: format!("setting {key}"),
                    message: e.to_string(),
                })
            }
        }
    }

    /// Brings the interface `name` up with exactly the global addresses
    /// `wanted`, the same way the agent does inside its namespaces.
    pub async fn sync_interface(&self, name: &str, wanted: &[IpNet]) -> Result<(), NetlinkError> {
        let (interfaces, addresses) = self.interfaces(&[name]).await?;
        let Some(found) = interfaces.get(name) else {
            return Err(NetlinkError::NoLink {
                what: "setting up".into(),
                name: name.into(),
            });
        };
        let changes = interface_changes(name, wanted, found);
        let found = Found {
            addresses,
            routes: BTreeMap::new(),
        };
        let mut applied = self.apply_inside(&changes, &found).await;
        match applied.errors.pop() {
            None => Ok(()),
            Some(e) => Err(*e.downcast::<NetlinkError>().expect("netlink errors only")),
        }
    }

    /// Routes each of `routes` through its next hop, replacing a route to
    /// the same destination: what a repeated call leaves is the same.
    pub async fn replace_routes(&self, routes: &[RoutePlan]) -> Result<(), NetlinkError> {
        for route in routes {
            let (what, message) = route_message(route)?;
            self.wrote();
            self.handle()
                .route()
                .add(message)
                .replace()
                .execute()
                .await
                .map_err(failed(what))?;
        }
        Ok(())
    }

    /// Sets the link `name` up unless it is; its addresses are left alone.
    pub async fn ensure_up(&self, name: &str) -> Result<(), NetlinkError> {
        if !self.link_flags(name).await? {
            self.apply_one(&InsideChange::SetUp(name.into()), &Found::default())
                .await?;
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
}

/// A DHCP server's or router's namespace, entered through a netlink
/// connection of its own.
pub struct InsideNetlink {
    netlink: Netlink,
    /// What the last [`InsideNamespace::observe`] found.
    found: Mutex<Found>,
}

impl InsideNetlink {
    pub async fn connect(namespace: &str) -> Result<Self, NetlinkError> {
        Ok(Self {
            netlink: Netlink::connect(Some(namespace)).await?,
            found: Mutex::new(Found::default()),
        })
    }

    fn in_namespace(&self, e: impl std::fmt::Display) -> Failure {
        format!(
            "in {}: {e}",
            self.netlink.namespace().unwrap_or("(current)")
        )
        .into()
    }
}

impl InsideNamespace for InsideNetlink {
    async fn observe(&self, wanted: &InnerNamespace) -> Result<ObservedInside, Failure> {
        let names: Vec<&str> = wanted.interface_names().collect();
        let (interfaces, addresses) = self
            .netlink
            .interfaces(&names)
            .await
            .map_err(|e| self.in_namespace(e))?;
        let routes = self
            .netlink
            .static_routes()
            .await
            .map_err(|e| self.in_namespace(e))?;
        let mut forwarding = BTreeSet::new();
        if wanted.forwarding {
            for key in FORWARDING {
                if netns::read_sysctl(self.netlink.namespace(), key).is_ok_and(|v| v == "1") {
                    forwarding.insert(key.to_string());
                }
            }
        }
        let observed = ObservedInside {
            interfaces,
            routes: routes.keys().cloned().collect(),
            forwarding,
        };
        *self.found.lock().unwrap_or_else(|p| p.into_inner()) = Found { addresses, routes };
        Ok(observed)
    }

    async fn apply(&self, changes: &[InsideChange]) -> Applied {
        let found = std::mem::take(&mut *self.found.lock().unwrap_or_else(|p| p.into_inner()));
        let mut applied = self.netlink.apply_inside(changes, &found).await;
        applied.errors = applied
            .errors
            .into_iter()
            .map(|e| self.in_namespace(e))
            .collect();
        applied
    }
}

impl Netlink {
    /// The namespace's global addresses, by interface index and then in
    /// the kernel's order: what a tunnel endpoint is chosen from.
    pub async fn host_addresses(&self) -> Result<Vec<HostAddress>, NetlinkError> {
        let links = self.links().await?;
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

/// The message adding `route`, and what it does, for errors.
fn route_message(route: &RoutePlan) -> Result<(String, RouteMessage), NetlinkError> {
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
    Ok((what, message))
}
