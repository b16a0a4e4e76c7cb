//! The MTU a network can carry, from the underlay and the encapsulation.

use crate::ClusterConfig;
use neutrino_api::NetworkType;

/// VXLAN over IPv4: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14).
pub const VXLAN_OVERHEAD_V4: u32 = 50;
/// VXLAN over IPv6: the outer header is 40 bytes instead of 20.
pub const VXLAN_OVERHEAD_V6: u32 = 70;

/// The largest MTU a network of this type can offer its ports.
pub fn max_mtu(
    network_type: NetworkType,
    physical_network: Option<&str>,
    config: &ClusterConfig,
) -> u32 {
    match network_type {
        NetworkType::Vxlan => {
            let overhead = if config.nodes.iter().any(|n| n.tunnel_ip.is_ipv6()) {
                VXLAN_OVERHEAD_V6
            } else {
                VXLAN_OVERHEAD_V4
            };
            config.underlay_mtu.saturating_sub(overhead)
        }
        NetworkType::Flat | NetworkType::Vlan => physical_network
            .map(|p| config.physical_mtu(p))
            .unwrap_or(config.underlay_mtu),
        NetworkType::Local => config.underlay_mtu,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vxlan_pays_its_overhead() {
        let mut config = ClusterConfig::with_nodes(2);
        assert_eq!(max_mtu(NetworkType::Vxlan, None, &config), 1450);
        assert_eq!(max_mtu(NetworkType::Vlan, Some("physnet1"), &config), 1500);
        config.underlay_mtu = 9000;
        assert_eq!(max_mtu(NetworkType::Vxlan, None, &config), 8950);
        config.nodes[0].tunnel_ip = "fd00::1".parse().unwrap();
        assert_eq!(max_mtu(NetworkType::Vxlan, None, &config), 8930);
    }
}
