//! The lab's physical world: an underlay namespace whose bridges stand for
//! the switches, and one namespace per node plugged into them — `eth0` on
//! the tunnel network, and one interface per physical network.

use ipnet::IpNet;

use neutrino_core::allocate::Mac;
use neutrino_core::reconcile::{Changes, DesiredLink, LinkChange, LinkKind};
use neutrino_core::{ClusterConfig, NodeConfig, names};
use neutrino_dataplane::netlink::Netlink;
use neutrino_dataplane::netns;

use super::LabError;

/// The bridge of the tunnel network in the underlay namespace.
const TUNNEL_SWITCH: &str = "ul-tunnel";

/// The underlay bridge standing for a physical network's switch.
pub fn physical_switch(index: usize) -> String {
    format!("ul-phys{index}")
}

/// The node's interface that carries its tunnel endpoint.
pub const TUNNEL_INTERFACE: &str = "eth0";

fn veth(
    name: String,
    bridge: &str,
    peer: &str,
    peer_netns: &str,
    mac_identity: &str,
    mtu: u32,
) -> DesiredLink {
    DesiredLink {
        name,
        kind: LinkKind::Veth {
            peer: peer.to_string(),
            peer_mac: Mac::derive(mac_identity, 0),
            peer_netns: Some(peer_netns.to_string()),
        },
        alias: names::alias("lab underlay"),
        mtu: Some(mtu),
        master: Some(bridge.to_string()),
        isolated: false,
    }
}

fn bridge(name: &str, mtu: u32) -> DesiredLink {
    DesiredLink {
        name: name.to_string(),
        kind: LinkKind::Bridge,
        alias: names::alias("lab switch"),
        mtu: Some(mtu),
        master: None,
        isolated: false,
    }
}

/// Creates the underlay namespace and its switches.
pub async fn build_underlay(namespace: &str, config: &ClusterConfig) -> Result<(), LabError> {
    netns::create(namespace)
        .map_err(|e| LabError::io(format!("creating namespace {namespace}"), e))?;
    let kernel = Netlink::connect(Some(namespace)).await?;
    let mut changes = Changes::default();
    for name in std::iter::once(TUNNEL_SWITCH.to_string())
        .chain((0..config.physical_networks.len()).map(physical_switch))
    {
        changes
            .links
            .push(LinkChange::Create(bridge(&name, config.underlay_mtu)));
    }
    check(kernel.apply(&changes).await)
}

/// Creates a node's namespace and plugs it into the underlay.
pub async fn build_node(
    underlay: &str,
    namespace: &str,
    index: usize,
    node: &NodeConfig,
    config: &ClusterConfig,
) -> Result<(), LabError> {
    netns::create(namespace)
        .map_err(|e| LabError::io(format!("creating namespace {namespace}"), e))?;
    let kernel = Netlink::connect(Some(underlay)).await?;
    let mut links = vec![(TUNNEL_INTERFACE.to_string(), TUNNEL_SWITCH.to_string())];
    for (i, physnet) in config.physical_networks.keys().enumerate() {
        if let Some(interface) = node.physical_interfaces.get(physnet) {
            links.push((interface.clone(), physical_switch(i)));
        }
    }
    let mut changes = Changes::default();
    for (interface, switch) in &links {
        let name = format!("n{index}-{interface}");
        let identity = format!("lab {namespace} {interface}");
        changes.links.push(LinkChange::Create(veth(
            name.clone(),
            switch,
            interface,
            namespace,
            &identity,
            config.underlay_mtu,
        )));
    }
    check(kernel.apply(&changes).await)?;

    let inside = Netlink::connect(Some(namespace)).await?;
    inside.ensure_up("lo").await?;
    for (interface, _) in &links {
        inside.ensure_up(interface).await?;
    }
    let prefix = if node.tunnel_ip.is_ipv4() { 16 } else { 64 };
    let tunnel = IpNet::new(node.tunnel_ip, prefix).map_err(|e| LabError::Setup(e.to_string()))?;
    inside.sync_interface(TUNNEL_INTERFACE, &[tunnel]).await?;
    Ok(())
}

fn check(errors: Vec<neutrino_dataplane::netlink::NetlinkError>) -> Result<(), LabError> {
    match errors.into_iter().next() {
        None => Ok(()),
        Some(e) => Err(e.into()),
    }
}

/// The outside host's interface on the switch of physical network `index`.
pub fn outside_interface(index: usize) -> String {
    format!("ext{index}")
}

/// Plugs the outside host into the switch of physical network `index`
/// (once) and gives it `addresses` there: the external subnets' gateways,
/// so routers have a next hop and floating IPs a client.
pub async fn build_outside(
    underlay: &str,
    namespace: &str,
    index: usize,
    addresses: &[IpNet],
    mtu: u32,
) -> Result<(), LabError> {
    netns::create(namespace)
        .map_err(|e| LabError::io(format!("creating namespace {namespace}"), e))?;
    let kernel = Netlink::connect(Some(underlay)).await?;
    let switch_port = format!("out{index}");
    let interface = outside_interface(index);
    if kernel.index(&switch_port).await?.is_none() {
        let identity = format!("lab {namespace} {interface}");
        let mut changes = Changes::default();
        let switch = physical_switch(index);
        changes.links.push(LinkChange::Create(veth(
            switch_port.clone(),
            &switch,
            &interface,
            namespace,
            &identity,
            mtu,
        )));
        check(kernel.apply(&changes).await)?;
    }
    let inside = Netlink::connect(Some(namespace)).await?;
    inside.ensure_up("lo").await?;
    inside.ensure_up(&interface).await?;
    inside.sync_interface(&interface, addresses).await?;
    Ok(())
}
