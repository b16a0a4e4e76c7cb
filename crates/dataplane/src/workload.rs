//! A port's workload end: the veth peer the agent made for a port, moved
//! from the node into the workload's network namespace (a pod's, a VM
//! launcher's, a lab guest's) under the interface name the workload wants,
//! and brought up with loopback. The agent gave the peer the port's MAC and
//! the network's MTU when it made it, so they travel with it.

use ipnet::IpNet;
use netlink_packet_route::link::LinkAttribute;
use neutrino_core::plan::RoutePlan;
use neutrino_core::reconcile::DesiredLink;
use rtnetlink::LinkUnspec;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::netlink::{Netlink, NetlinkError};
use super::netns;

/// What plugging could not do.
#[derive(Debug, thiserror::Error)]
pub enum PlugError {
    #[error("network namespace {namespace}: {cause}")]
    Namespace {
        namespace: String,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Kernel(#[from] NetlinkError),
}

/// Moves `peer` from `node` (the agent's own namespace when `None`) into the
/// namespace `target`, created if missing, as `interface`, and brings it and
/// loopback up there.
pub async fn plug(
    node: Option<&str>,
    peer: &str,
    target: &str,
    interface: &str,
) -> Result<(), PlugError> {
    let namespace_error = |cause| PlugError::Namespace {
        namespace: target.to_string(),
        cause,
    };
    netns::create(target).map_err(namespace_error)?;
    move_into(node, peer, target, interface).await?;
    let inside = Netlink::connect(Some(target)).await?;
    inside.ensure_up("lo").await?;
    inside.ensure_up(interface).await?;
    Ok(())
}

/// Attaches `peer` to the namespace a container runtime made, at the path
/// `netns` (a CNI call's `CNI_NETNS`), as `interface`: up, with loopback,
/// holding exactly `addresses` and routed by `routes`. A workload that takes
/// its address itself (a KubeVirt VM asking DHCP) gets none of either.
pub async fn attach(
    node: Option<&str>,
    peer: &str,
    netns: &Path,
    interface: &str,
    addresses: &[IpNet],
    routes: &[RoutePlan],
) -> Result<(), PlugError> {
    let target = netns.to_string_lossy().into_owned();
    if !netns.is_absolute() || !netns.exists() {
        return Err(PlugError::Namespace {
            namespace: target,
            cause: std::io::Error::new(std::io::ErrorKind::NotFound, "no such namespace"),
        });
    }
    let inside = Netlink::connect(Some(&target)).await?;
    // A repeated ADD finds it there already (the caller made sure it is
    // the port's).
    if inside.index(interface).await?.is_none() {
        move_into(node, peer, &target, interface).await?;
    }
    inside.ensure_up("lo").await?;
    inside.sync_interface(interface, addresses).await?;
    inside.replace_routes(routes).await?;
    Ok(())
}

/// Moves `peer` from `node` into the namespace `target` as `interface`.
async fn move_into(
    node: Option<&str>,
    peer: &str,
    target: &str,
    interface: &str,
) -> Result<(), PlugError> {
    let namespace_error = |cause| PlugError::Namespace {
        namespace: target.to_string(),
        cause,
    };
    let kernel = Netlink::connect(node).await?;
    let index = kernel
        .require(peer, "moving a port into its workload")
        .await?;
    let file = netns::open(target).map_err(namespace_error)?;
    let mut message = LinkUnspec::new_with_index(index)
        .setns_by_fd(file.as_raw_fd())
        .build();
    message
        .attributes
        .push(LinkAttribute::IfName(interface.into()));
    kernel
        .handle()
        .link()
        .set(message)
        .execute()
        .await
        .map_err(|cause| NetlinkError::Request {
            what: format!("moving {peer} into {target} as {interface}"),
            cause,
        })?;
    drop(file);
    Ok(())
}

/// Makes a port's veth pair as `link` says, its workload end straight in
/// the namespace the link names (a pod's, given by path), in `node` (the
/// agent's own namespace when `None`).
pub async fn make(node: Option<&str>, link: &DesiredLink) -> Result<(), PlugError> {
    Ok(Netlink::connect(node).await?.create(link).await?)
}

/// Gives the link `name` of `node` the alias `alias`: how a link made
/// outside the plan (a live migration's standby) becomes neutrino's, for
/// the next apply to take as it stands.
pub async fn mark(node: Option<&str>, name: &str, alias: &str) -> Result<(), PlugError> {
    let mut message = LinkUnspec::new_with_name(name).build();
    message
        .attributes
        .push(LinkAttribute::IfAlias(alias.to_string()));
    Ok(Netlink::connect(node)
        .await?
        .set(message, format!("marking {name} as neutrino's"))
        .await?)
}

/// Deletes the interface `interface` of the namespace at `netns`, and its
/// veth peer with it: a runtime's DEL. With `mac`, only an interface with
/// that MAC: a DEL that cannot tell the interface was its own leaves
/// another plugin's alone. A namespace or an interface already gone is
/// fine.
pub async fn detach(netns: &Path, interface: &str, mac: Option<&[u8]>) -> Result<(), PlugError> {
    if !netns.is_absolute() || !netns.exists() {
        return Ok(());
    }
    let target = netns.to_string_lossy().into_owned();
    let inside = Netlink::connect(Some(&target)).await?;
    let Some(index) = inside.index(interface).await? else {
        return Ok(());
    };
    if let Some(mac) = mac {
        let seen = inspect(netns, interface).await?;
        if seen.is_none_or(|s| s.mac != mac) {
            tracing::info!(%interface, netns = %target, "not deleting an interface this port does not own");
            return Ok(());
        }
    }
    let deleted = inside.handle().link().del(index).execute().await;
    Ok(deleted.map_err(|cause| NetlinkError::Request {
        what: format!("deleting {interface} of {target}"),
        cause,
    })?)
}

/// Whether `node` (the agent's own namespace when `None`) has a link `name`.
pub async fn has_link(node: Option<&str>, name: &str) -> Result<bool, PlugError> {
    Ok(Netlink::connect(node).await?.index(name).await?.is_some())
}

/// Deletes the link `name` of `node`, and its veth peer wherever it is.
pub async fn remove_link(node: Option<&str>, name: &str) -> Result<(), PlugError> {
    let kernel = Netlink::connect(node).await?;
    let Some(index) = kernel.index(name).await? else {
        return Ok(());
    };
    let deleted = kernel.handle().link().del(index).execute().await;
    Ok(deleted.map_err(|cause| NetlinkError::Request {
        what: format!("deleting {name}"),
        cause,
    })?)
}

/// An interface in a workload's namespace, as CHECK compares it with its port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub mac: Vec<u8>,
    pub mtu: u32,
    pub up: bool,
    pub addresses: Vec<IpNet>,
}

/// The interface `interface` of the namespace at `netns`, if both exist.
pub async fn inspect(netns: &Path, interface: &str) -> Result<Option<Seen>, PlugError> {
    if !netns.is_absolute() || !netns.exists() {
        return Ok(None);
    }
    let inside = Netlink::connect(Some(&netns.to_string_lossy())).await?;
    let (interfaces, _) = inside.interfaces(&[interface]).await?;
    let Some(found) = interfaces.get(interface) else {
        return Ok(None);
    };
    let links = inside.links().await?;
    let link = links.iter().find(|l| {
        (l.attributes.iter()).any(|a| matches!(a, LinkAttribute::IfName(n) if n == interface))
    });
    let (mut mac, mut mtu) = (Vec::new(), 0);
    for attribute in link.iter().flat_map(|l| &l.attributes) {
        match attribute {
            LinkAttribute::Address(address) => mac = address.clone(),
            LinkAttribute::Mtu(value) => mtu = *value,
            _ => {}
        }
    }
    Ok(Some(Seen {
        mac,
        mtu,
        up: found.up,
        addresses: found.addresses.clone(),
    }))
}

/// Whether the namespace `target` exists and holds `interface`.
pub async fn is_plugged(target: &str, interface: &str) -> bool {
    if !netns::exists(target) {
        return false;
    }
    match Netlink::connect(Some(target)).await {
        Ok(inside) => matches!(inside.index(interface).await, Ok(Some(_))),
        Err(_) => false,
    }
}
