//! What the operator configures: id ranges, physical networks, the underlay
//! and the nodes. `neutrino plan` reads it from a small YAML file or takes
//! the defaults; the lab uses the same defaults.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use neutrino_api::NodeAgent;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};

/// Each Node's own addresses, by node name, as its kubelet reports them.
pub type NodeAddresses = BTreeMap<String, Vec<IpAddr>>;

/// The VXLAN UDP port assigned by IANA.
pub const VXLAN_PORT: u16 = 4789;

/// The most MAC addresses a network's bridge learns on one node. A port
/// without port security may send from any MAC: unbounded, one workload
/// fills every node's table with random ones. Past the bound the bridge
/// learns nothing new and floods to addresses it has not learned, which
/// slows only that network. Known endpoints are not learned on the tunnel
/// side alone, so the bound leaves room for networks of thousands.
pub const BRIDGE_LEARNED_MACS: u32 = 8192;

/// An inclusive range of segmentation ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub min: u32,
    pub max: u32,
}

impl IdRange {
    pub fn contains(&self, id: u32) -> bool {
        (self.min..=self.max).contains(&id)
    }
}

/// A physical network that flat and vlan networks ride on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PhysicalNetwork {
    /// VLAN ids tenants' vlan networks are allocated from.
    #[serde(default)]
    pub vlan_ranges: Vec<IdRange>,
    /// The MTU of the physical network; the underlay MTU when omitted.
    #[serde(default)]
    pub mtu: Option<u32>,
}

/// One node's identity, as the agent on it reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeConfig {
    pub name: String,
    /// The node's VXLAN tunnel endpoint on the underlay.
    #[serde(rename = "tunnelIP")]
    pub tunnel_ip: IpAddr,
    /// Physical network name → the node's interface on it.
    #[serde(default)]
    pub physical_interfaces: BTreeMap<String, String>,
    /// Whether routers may be scheduled onto this node.
    #[serde(default = "yes")]
    pub gateway: bool,
}

fn yes() -> bool {
    true
}

/// The nodes of a configuration, in their order and by name.
pub struct Nodes<'a> {
    pub list: &'a [NodeConfig],
    by_name: HashMap<&'a str, &'a NodeConfig>,
}

impl<'a> Nodes<'a> {
    pub fn get(&self, name: &str) -> Option<&'a NodeConfig> {
        self.by_name.get(name).copied()
    }

    /// Some of `list`'s nodes by name: what a lookup among a few needs.
    pub fn some_of(list: &'a [NodeConfig], nodes: impl Iterator<Item = &'a NodeConfig>) -> Self {
        Nodes {
            list,
            by_name: nodes.map(|n| (n.name.as_str(), n)).collect(),
        }
    }
}

/// The cluster-wide settings the core needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterConfig {
    /// MTU of the underlay the VXLAN tunnels run over.
    #[serde(rename = "underlayMTU", default = "default_underlay_mtu")]
    pub underlay_mtu: u32,
    /// VNIs vxlan networks are allocated from; explicit VNIs must lie here too.
    #[serde(default = "default_vni_ranges")]
    pub vni_ranges: Vec<IdRange>,
    /// The physical networks by name.
    #[serde(default = "default_physical_networks")]
    pub physical_networks: BTreeMap<String, PhysicalNetwork>,
    /// The underlay networks a NodeAgent's tunnel IP may lie in when it is
    /// not one of its Node's addresses (a separate tunnel NIC).
    #[serde(rename = "tunnelCIDRs", default)]
    pub tunnel_cidrs: Vec<IpNet>,
    /// The nodes.
    #[serde(default = "default_nodes")]
    pub nodes: Vec<NodeConfig>,
}

/// Node count when nothing else is said.
pub const DEFAULT_NODE_COUNT: usize = 3;

fn default_underlay_mtu() -> u32 {
    1500
}

fn default_vni_ranges() -> Vec<IdRange> {
    vec![IdRange {
        min: 1000,
        max: 65535,
    }]
}

fn default_physical_networks() -> BTreeMap<String, PhysicalNetwork> {
    BTreeMap::from([
        (
            "physnet1".to_string(),
            PhysicalNetwork {
                vlan_ranges: vec![IdRange { min: 100, max: 199 }],
                mtu: None,
            },
        ),
        ("extnet".to_string(), PhysicalNetwork::default()),
    ])
}

fn default_nodes() -> Vec<NodeConfig> {
    default_node_list(DEFAULT_NODE_COUNT)
}

/// Nodes `node-1` … `node-N` with tunnel endpoints 198.18.0.1 … (the
/// benchmarking range, never routed) and every default physical network
/// mapped to `eth1`, `eth2`, … in name order.
pub fn default_node_list(count: usize) -> Vec<NodeConfig> {
    nodes_on(count, &default_physical_networks())
}

/// Nodes `node-1` … `node-N` as `default_node_list` makes them, with each of
/// `physical_networks` mapped to `eth1`, `eth2`, … in name order: the nodes
/// a cluster file that names none stands for.
pub fn nodes_on<T>(count: usize, physical_networks: &BTreeMap<String, T>) -> Vec<NodeConfig> {
    let physical_interfaces: BTreeMap<String, String> = physical_networks
        .keys()
        .cloned()
        .enumerate()
        .map(|(i, physnet)| (physnet, format!("eth{}", i + 1)))
        .collect();
    (1..=count)
        .map(|i| NodeConfig {
            name: format!("node-{i}"),
            tunnel_ip: IpAddr::V4(Ipv4Addr::new(198, 18, (i / 250) as u8, (i % 250) as u8)),
            physical_interfaces: physical_interfaces.clone(),
            gateway: true,
        })
        .collect()
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            underlay_mtu: default_underlay_mtu(),
            vni_ranges: default_vni_ranges(),
            physical_networks: default_physical_networks(),
            tunnel_cidrs: Vec::new(),
            nodes: default_nodes(),
        }
    }
}

impl ClusterConfig {
    /// The defaults with `count` nodes.
    pub fn with_nodes(count: usize) -> Self {
        Self {
            nodes: default_node_list(count),
            ..Self::default()
        }
    }

    /// A scan: for many lookups, index the nodes once with `indexed`.
    pub fn node(&self, name: &str) -> Option<&NodeConfig> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The nodes indexed by name.
    pub fn indexed(&self) -> Nodes<'_> {
        Nodes {
            list: &self.nodes,
            by_name: self.nodes.iter().map(|n| (n.name.as_str(), n)).collect(),
        }
    }

    /// The MTU a physical network carries.
    pub fn physical_mtu(&self, physnet: &str) -> u32 {
        self.physical_networks
            .get(physnet)
            .and_then(|p| p.mtu)
            .unwrap_or(self.underlay_mtu)
    }

    /// The configuration with its nodes taken from the agents' records.
    /// A record is trusted only if its Node exists and its tunnel IP is one
    /// of that Node's own addresses (`addresses`, by node name, as the
    /// kubelet reports them) or lies inside `tunnelCIDRs`, the underlay the
    /// operator named: an agent can write nothing but its own record, but it
    /// could claim any address there and so draw every node's tunnel
    /// traffic to itself. Of records claiming one address only the node it
    /// belongs to keeps it. A record left out is named, with why.
    pub fn with_agents(
        &self,
        agents: &[NodeAgent],
        addresses: &NodeAddresses,
    ) -> (Self, Vec<String>) {
        let mut skipped = Vec::new();
        let mut nodes: Vec<NodeConfig> = agents
            .iter()
            .filter_map(|agent| {
                let name = agent.metadata.name.clone()?;
                let Ok(tunnel_ip) = agent.spec.tunnel_ip.parse::<IpAddr>() else {
                    skipped.push(format!(
                        "NodeAgent {name}: spec.tunnelIP {:?} is not an IP address",
                        agent.spec.tunnel_ip
                    ));
                    return None;
                };
                let Some(own) = addresses.get(&name) else {
                    skipped.push(format!(
                        "NodeAgent {name}: no Node {name} vouches for spec.tunnelIP {tunnel_ip}"
                    ));
                    return None;
                };
                if !own.contains(&tunnel_ip) && !self.tunnel_cidrs.iter().any(|n| n.contains(&tunnel_ip)) {
                    let mut message = format!(
                        "NodeAgent {name}: spec.tunnelIP {tunnel_ip} is not an address of Node {name} ({})",
                        own.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                    );
                    if !self.tunnel_cidrs.is_empty() {
                        message.push_str(" nor inside tunnelCIDRs");
                    }
                    skipped.push(message);
                    return None;
                }
                Some(NodeConfig {
                    name,
                    tunnel_ip,
                    physical_interfaces: agent.spec.physical_interfaces.clone(),
                    gateway: agent.spec.gateway,
                })
            })
            .collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let mut claims: BTreeMap<IpAddr, Vec<&str>> = BTreeMap::new();
        for node in &nodes {
            claims.entry(node.tunnel_ip).or_default().push(&node.name);
        }
        let vouched = |name: &str, ip: &IpAddr| addresses.get(name).is_some_and(|a| a.contains(ip));
        let mut dropped = std::collections::BTreeSet::new();
        for (ip, names) in claims.iter().filter(|(_, names)| names.len() > 1) {
            let owner = names.iter().find(|name| vouched(name, ip));
            for name in names.iter().filter(|name| Some(*name) != owner) {
                skipped.push(format!(
                    "NodeAgent {name}: spec.tunnelIP {ip} is claimed by {} too{}",
                    names
                        .iter()
                        .filter(|other| *other != name)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", "),
                    owner.map_or(String::new(), |owner| format!(", and it is Node {owner}'s")),
                ));
                dropped.insert(name.to_string());
            }
        }
        nodes.retain(|node| !dropped.contains(&node.name));
        (
            Self {
                nodes,
                ..self.clone()
            },
            skipped,
        )
    }

    /// Checks the configuration itself; every message names the setting.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        let mut tunnels = BTreeMap::new();
        for node in &self.nodes {
            if !names.insert(node.name.as_str()) {
                errors.push(format!("nodes: node {} is listed twice", node.name));
            }
            if let Some(other) = tunnels.insert(node.tunnel_ip, node.name.as_str()) {
                errors.push(format!(
                    "nodes: {} and {} share tunnelIP {}",
                    other, node.name, node.tunnel_ip
                ));
            }
            for physnet in node.physical_interfaces.keys() {
                if !self.physical_networks.contains_key(physnet) {
                    errors.push(format!(
                        "nodes: {} maps physical network {physnet}, which is not in physicalNetworks",
                        node.name
                    ));
                }
            }
        }
        for range in &self.vni_ranges {
            if range.min == 0 || range.min > range.max || range.max > 16_777_215 {
                errors.push(format!(
                    "vniRanges: {}-{} is not a range within 1-16777215",
                    range.min, range.max
                ));
            }
        }
        for (name, physnet) in &self.physical_networks {
            for range in &physnet.vlan_ranges {
                if range.min == 0 || range.min > range.max || range.max > 4094 {
                    errors.push(format!(
                        "physicalNetworks.{name}.vlanRanges: {}-{} is not a range within 1-4094",
                        range.min, range.max
                    ));
                }
            }
        }
        if !(576..=65535).contains(&self.underlay_mtu) {
            errors.push(format!(
                "underlayMTU: {} is not between 576 and 65535",
                self.underlay_mtu
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_nodes_are_numbered_from_one() {
        let config = ClusterConfig::with_nodes(2);
        assert_eq!(config.nodes[0].name, "node-1");
        assert_eq!(config.nodes[1].tunnel_ip.to_string(), "198.18.0.2");
        assert_eq!(config.nodes[1].physical_interfaces["physnet1"], "eth2");
        assert!(config.validate().is_ok());
    }

    fn agent(name: &str, ip: &str, gateway: bool) -> NodeAgent {
        let mut a = NodeAgent::new(
            name,
            neutrino_api::NodeAgentSpec {
                tunnel_endpoint: None,
                tunnel_ip: ip.into(),
                physical_interfaces: BTreeMap::from([("physnet1".into(), "eth1".into())]),
                gateway,
            },
        );
        a.metadata.name = Some(name.into());
        a
    }

    #[test]
    fn nodes_come_from_the_agents_records() {
        let agent = |name: &str, ip: &str| agent(name, ip, name == "b");
        let addresses = NodeAddresses::from([
            ("a".to_string(), vec!["192.0.2.1".parse().unwrap()]),
            ("b".to_string(), vec!["192.0.2.2".parse().unwrap()]),
            ("c".to_string(), vec!["192.0.2.3".parse().unwrap()]),
            ("d".to_string(), vec!["192.0.2.4".parse().unwrap()]),
        ]);
        let (config, skipped) = ClusterConfig::default().with_agents(
            &[
                agent("b", "192.0.2.2"),
                agent("a", "192.0.2.1"),
                agent("c", "nope"),
                // Another node's address, and an address no node has.
                agent("d", "192.0.2.1"),
                agent("e", "192.0.2.5"),
            ],
            &addresses,
        );
        let names: Vec<&str> = config.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(config.nodes[1].gateway && !config.nodes[0].gateway);
        assert_eq!(
            config.vni_ranges,
            ClusterConfig::default().vni_ranges,
            "the rest stays"
        );
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert!(
            skipped[0].contains("NodeAgent c: spec.tunnelIP"),
            "{skipped:?}"
        );
        assert_eq!(
            skipped[1],
            "NodeAgent d: spec.tunnelIP 192.0.2.1 is not an address of Node d (192.0.2.4)"
        );
        assert_eq!(
            skipped[2],
            "NodeAgent e: no Node e vouches for spec.tunnelIP 192.0.2.5"
        );
    }

    #[test]
    fn tunnel_cidrs_vouch_for_a_separate_underlay_nic() {
        let agent = |name: &str, ip: &str| agent(name, ip, false);
        let addresses = NodeAddresses::from([
            ("a".to_string(), vec!["192.168.1.1".parse().unwrap()]),
            ("b".to_string(), vec!["192.168.1.2".parse().unwrap()]),
            ("c".to_string(), vec!["192.168.1.3".parse().unwrap()]),
            ("d".to_string(), vec!["10.0.0.4".parse().unwrap()]),
        ]);
        let config = ClusterConfig {
            tunnel_cidrs: vec!["10.0.0.0/24".parse().unwrap()],
            ..ClusterConfig::default()
        };
        let (config, skipped) = config.with_agents(
            &[
                agent("a", "10.0.0.1"),
                agent("b", "10.0.1.2"),
                // Node d's own address, claimed by c inside the CIDR.
                agent("c", "10.0.0.4"),
                agent("d", "10.0.0.4"),
            ],
            &addresses,
        );
        let chosen: Vec<(&str, String)> = config
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.tunnel_ip.to_string()))
            .collect();
        assert_eq!(chosen, [("a", "10.0.0.1".into()), ("d", "10.0.0.4".into())]);
        assert_eq!(
            skipped,
            [
                "NodeAgent b: spec.tunnelIP 10.0.1.2 is not an address of Node b (192.168.1.2) nor inside tunnelCIDRs",
                "NodeAgent c: spec.tunnelIP 10.0.0.4 is claimed by d too, and it is Node d's",
            ]
        );
    }

    #[test]
    fn bad_config_names_the_setting() {
        let mut config = ClusterConfig::with_nodes(2);
        config.nodes[1].tunnel_ip = config.nodes[0].tunnel_ip;
        config.vni_ranges = vec![IdRange { min: 5, max: 1 }];
        let errors = config.validate().unwrap_err();
        assert!(
            errors.iter().any(|e| e.contains("share tunnelIP")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.starts_with("vniRanges")),
            "{errors:?}"
        );
    }
}
