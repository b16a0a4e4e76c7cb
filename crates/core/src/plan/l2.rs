//! Bridges, uplinks, ports, and l2population: the FDB and neighbour entries
//! towards every endpoint on other nodes, computed in full each time.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::{Bridge, FdbEntry, Neighbour, PortPlan, Uplink, UplinkKind};
use crate::allocate::Mac;
use crate::config::VXLAN_PORT;
use crate::resolve::Resolution;
use crate::{ClusterConfig, Key, NodeConfig, names};
use neutrino_api::NetworkType;

/// Something with a MAC on a network, living on one node.
pub(super) struct Endpoint {
    pub node: String,
    pub mac: Mac,
    pub ips: Vec<IpAddr>,
    pub owner: String,
}

/// Every bound endpoint (ports and router legs), by network.
pub(super) fn endpoints(resolution: &Resolution) -> BTreeMap<Key, Vec<Endpoint>> {
    let mut found: BTreeMap<Key, Vec<Endpoint>> = BTreeMap::new();
    for (key, port) in resolution.ready_ports() {
        if let Some(node) = &port.node {
            found
                .entry(port.network.clone())
                .or_default()
                .push(Endpoint {
                    node: node.clone(),
                    mac: port.mac,
                    ips: port.fixed_ips.iter().map(|(_, ip)| *ip).collect(),
                    owner: format!("port {key}"),
                });
        }
    }
    for (key, router) in resolution.ready_routers() {
        let floating: Vec<IpAddr> = resolution
            .ready_floating_ips()
            .filter(|(_, f)| f.target.as_ref().is_some_and(|t| &t.router == key))
            .map(|(_, f)| f.address)
            .collect();
        let legs = router
            .interfaces
            .iter()
            .map(|l| (l, false))
            .chain(router.gateway.iter().map(|g| (&g.leg, true)));
        for (leg, external) in legs {
            let mut ips = vec![leg.address.addr()];
            if external {
                ips.extend(&floating);
            }
            found
                .entry(leg.network.clone())
                .or_default()
                .push(Endpoint {
                    node: router.node.clone(),
                    mac: leg.mac,
                    ips,
                    owner: format!("router {key}"),
                });
        }
    }
    found
}

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

pub(super) fn plan(resolution: &Resolution, config: &ClusterConfig, node: &NodeConfig) -> L2 {
    let endpoints = endpoints(resolution);
    let mut l2 = L2 {
        bridges: Vec::new(),
        uplinks: Vec::new(),
        fdb: Vec::new(),
        neighbours: Vec::new(),
        ports: Vec::new(),
    };
    for (network_key, members) in &endpoints {
        if !members.iter().any(|e| e.node == node.name) {
            continue;
        }
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
        let mut peers = BTreeSet::new();
        for endpoint in members.iter().filter(|e| e.node != node.name) {
            let Some(peer) = config.node(&endpoint.node) else {
                continue;
            };
            peers.insert((peer.tunnel_ip, peer.name.clone()));
            l2.fdb.push(FdbEntry {
                device: name.clone(),
                mac: endpoint.mac,
                destination: peer.tunnel_ip,
                node: peer.name.clone(),
                owner: endpoint.owner.clone(),
            });
            for ip in &endpoint.ips {
                l2.neighbours.push(Neighbour {
                    device: name.clone(),
                    ip: *ip,
                    mac: endpoint.mac,
                });
            }
        }
        for (destination, peer) in peers {
            l2.fdb.push(FdbEntry {
                device: name.clone(),
                mac: Mac::ZERO,
                destination,
                node: peer,
                owner: "flood".into(),
            });
        }
    }

    for (key, port) in resolution.ready_ports() {
        if port.node.as_deref() != Some(node.name.as_str()) {
            continue;
        }
        let addresses = port
            .fixed_ips
            .iter()
            .filter_map(|(subnet, ip)| {
                IpNet::new(*ip, resolution.subnet(subnet)?.cidr.prefix_len()).ok()
            })
            .collect();
        l2.ports.push(PortPlan {
            port: key.clone(),
            interface: names::port(key),
            peer: names::port_peer(key),
            bridge: names::bridge(&port.network),
            mac: port.mac,
            mtu: port.mtu,
            addresses,
        });
    }
    l2
}
