//! Bridges, uplinks, ports, and l2population: the FDB and neighbour entries
//! towards every endpoint on other nodes of the networks this node carries.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

use super::topology::Topology;
use super::{Bridge, FdbEntry, Neighbour, PortPlan, Uplink, UplinkKind};
use crate::allocate::Mac;
use crate::config::VXLAN_PORT;
use crate::resolve::{PortState, Resolution};
use crate::{Key, NodeConfig, names};
use neutrino_api::NetworkType;

/// The layer-2 part of a node's plan.
pub(super) struct L2 {
    pub bridges: Vec<Bridge>,
    pub uplinks: Vec<Uplink>,
    pub fdb: Vec<FdbEntry>,
    pub neighbours: Vec<Neighbour>,
    pub ports: Vec<PortPlan>,
}

fn uplink(
    kind: NetworkType,
    segment: Option<u32>,
    physnet: Option<&str>,
    node: &NodeConfig,
) -> Option<UplinkKind> {
    let interface = || node.physical_interfaces.get(physnet?).cloned();
    match kind {
        NetworkType::Vxlan => Some(UplinkKind::Vxlan {
            vni: segment?,
            local: node.tunnel_ip,
            port: VXLAN_PORT,
        }),
        NetworkType::Vlan => Some(UplinkKind::Vlan {
            parent: interface()?,
            id: u16::try_from(segment?).ok()?,
        }),
        NetworkType::Flat => Some(UplinkKind::Flat {
            interface: interface()?,
        }),
        NetworkType::Local => None,
    }
}

pub(super) fn plan(topology: &Topology, node: &NodeConfig) -> L2 {
    let resolution = topology.resolution;
    let mut l2 = L2 {
        bridges: Vec::new(),
        uplinks: Vec::new(),
        fdb: Vec::new(),
        neighbours: Vec::new(),
        ports: Vec::new(),
    };
    for network_key in topology.networks_on(&node.name) {
        let Some(network) = resolution.network(network_key) else {
            continue;
        };
        let bridge = names::bridge(network_key);
        l2.bridges.push(Bridge {
            name: bridge.clone(),
            network: network_key.clone(),
            mtu: network.mtu,
        });
        let kind = uplink(
            network.network_type,
            network.segmentation_id,
            network.physical_network.as_deref(),
            node,
        );
        let name = match &kind {
            Some(UplinkKind::Vxlan { .. }) => names::vxlan(network_key),
            Some(UplinkKind::Vlan { .. }) => names::vlan(network_key),
            Some(UplinkKind::Flat { interface }) => interface.clone(),
            None => continue,
        };
        let vxlan = matches!(kind, Some(UplinkKind::Vxlan { .. }));
        l2.uplinks.push(Uplink {
            name: name.clone(),
            bridge,
            mtu: network.mtu,
            kind: kind.expect("matched above"),
        });
        if !vxlan {
            continue;
        }
        tunnel(
            topology,
            network_key,
            &name,
            node,
            &mut l2.fdb,
            &mut l2.neighbours,
        );
    }

    for (key, port) in topology.ports_on(&node.name) {
        l2.ports.push(port_plan(resolution, key, port));
    }
    l2
}

/// A port of the node's: its veth pair onto its network's bridge.
pub(super) fn port_plan(resolution: &Resolution, key: &Key, port: &PortState) -> PortPlan {
    let addresses = port
        .fixed_ips
        .iter()
        .filter_map(|(subnet, ip)| {
            IpNet::new(*ip, resolution.subnet(subnet)?.cidr.prefix_len()).ok()
        })
        .collect();
    PortPlan {
        port: key.clone(),
        interface: names::port(key),
        peer: names::port_peer(key),
        peer_netns: None,
        bridge: names::bridge(&port.network),
        mac: port.mac,
        mtu: port.mtu,
        addresses,
    }
}

/// The FDB and neighbour entries of the VXLAN device `device` of network
/// `network_key`: every endpoint on another node, and a flood entry per
/// peer node.
pub(super) fn tunnel(
    topology: &Topology,
    network_key: &Key,
    device: &str,
    node: &NodeConfig,
    fdb: &mut Vec<FdbEntry>,
    neighbours: &mut Vec<Neighbour>,
) {
    let mut peers = BTreeSet::new();
    let members = topology.endpoints(network_key);
    for endpoint in members.iter().filter(|e| e.node != node.name) {
        let Some(peer) = topology.node(endpoint.node) else {
            continue;
        };
        peers.insert((peer.tunnel_ip, peer.name.clone()));
        fdb.push(FdbEntry {
            device: device.to_string(),
            mac: endpoint.mac,
            destination: peer.tunnel_ip,
            node: peer.name.clone(),
            owner: endpoint.owner.to_string(),
        });
        // The link answers neighbour solicitations itself and drops those
        // it has no entry for: an IPv6 endpoint's link-local address (a
        // router's, which its advertisements name as the default route)
        // must resolve too.
        let link_local = (endpoint.ips.iter().any(IpAddr::is_ipv6))
            .then(|| IpAddr::V6(super::security::link_local(endpoint.mac)));
        for ip in endpoint.ips.iter().copied().chain(link_local) {
            neighbours.push(Neighbour {
                device: device.to_string(),
                ip,
                mac: endpoint.mac,
            });
        }
    }
    for (destination, peer) in peers {
        fdb.push(FdbEntry {
            device: device.to_string(),
            mac: Mac::ZERO,
            destination,
            node: peer,
            owner: "flood".into(),
        });
    }
}
