//! Names of the kernel objects neutrino owns.
//!
//! Each name is a short prefix that marks it as neutrino's plus a hash of the
//! owning object's identity, so it survives restarts, is the same on every
//! node, and fits the kernel's 15 characters (ipset names: 31).

use super::Key;

/// The longest interface name the kernel accepts.
pub const IFNAME_MAX: usize = 15;

/// Every interface neutrino creates starts with this.
pub const PREFIX: &str = "nt";

/// 10 hex digits (40 bits) of the identity's SHA-256.
fn hash(parts: &[&str]) -> String {
    crate::digest::hex(parts, 5)
}

fn key_hash(kind: &str, key: &Key) -> String {
    hash(&[kind, &key.namespace, &key.name])
}

/// The bridge of a network.
pub fn bridge(network: &Key) -> String {
    format!("{PREFIX}b-{}", key_hash("network", network))
}

/// The VXLAN link of a network.
pub fn vxlan(network: &Key) -> String {
    format!("{PREFIX}x-{}", key_hash("network", network))
}

/// The VLAN sub-interface of a network on its physical interface.
pub fn vlan(network: &Key) -> String {
    format!("{PREFIX}v-{}", key_hash("network", network))
}

/// The host end of a port's veth pair.
pub fn port(port: &Key) -> String {
    format!("{PREFIX}p-{}", key_hash("port", port))
}

/// The workload end of a port's veth pair, until the workload (a CNI
/// plugin, the lab) moves it into its own namespace.
pub fn port_peer(port: &Key) -> String {
    format!("{PREFIX}w-{}", key_hash("port", port))
}

/// The alias that marks a link as neutrino's, saying what it is for.
pub fn alias(what: &str) -> String {
    format!("{ALIAS_MARK} {what}")
}

/// Every link neutrino creates carries an alias that starts with this.
pub const ALIAS_MARK: &str = "neutrino:";

/// The network namespace of a subnet's DHCP server on a node.
pub fn dhcp_namespace(subnet: &Key) -> String {
    format!("{PREFIX}-dhcp-{}", key_hash("subnet", subnet))
}

/// The bridge end and the namespace end of a DHCP server's veth pair.
pub fn dhcp_link(subnet: &Key) -> (String, String) {
    let h = key_hash("subnet", subnet);
    (format!("{PREFIX}d-{h}"), format!("ns-{h}"))
}

/// The network namespace of a router.
pub fn router_namespace(router: &Key) -> String {
    format!("{PREFIX}-router-{}", key_hash("router", router))
}

/// The bridge end and the namespace end of a router's leg on a subnet;
/// `external` picks the gateway's prefix (qg-) over an interface's (qr-).
pub fn router_link(router: &Key, subnet: &Key, external: bool) -> (String, String) {
    let h = hash(&[
        "router-leg",
        &router.namespace,
        &router.name,
        &subnet.namespace,
        &subnet.name,
    ]);
    let (outer, inner) = if external { ("g", "qg") } else { ("r", "qr") };
    (format!("{PREFIX}{outer}-{h}"), format!("{inner}-{h}"))
}

/// The ipset of a security group's member addresses of one family.
pub fn ipset(group: &Key, ipv6: bool) -> String {
    let family = if ipv6 { 6 } else { 4 };
    format!("{PREFIX}{family}-{}", key_hash("security-group", group))
}

/// Whether an ipset is neutrino's.
pub fn is_our_ipset(name: &str) -> bool {
    name.starts_with(&format!("{PREFIX}4-")) || name.starts_with(&format!("{PREFIX}6-"))
}

/// The chain bridged traffic of neutrino's ports goes through.
pub const FORWARD_CHAIN: &str = "neutrino-FORWARD";
/// The chain that puts each network's traffic in its conntrack zone.
pub const ZONE_CHAIN: &str = "neutrino-ZONES";
/// Prefix of the per-port chains.
pub const PORT_CHAIN_PREFIX: &str = "nt-";

/// The chains of one port (by its host end): traffic to it, from it, and
/// its source check.
pub fn port_chains(interface: &str) -> [String; 3] {
    let id = interface.trim_start_matches(&format!("{PREFIX}p-"));
    [
        format!("{PORT_CHAIN_PREFIX}i-{id}"),
        format!("{PORT_CHAIN_PREFIX}o-{id}"),
        format!("{PORT_CHAIN_PREFIX}s-{id}"),
    ]
}

/// The chain that dispatches a bridge's traffic to its ports' chains.
pub fn bridge_chain(bridge: &str) -> String {
    let id = bridge.trim_start_matches(&format!("{PREFIX}b-"));
    format!("{PORT_CHAIN_PREFIX}b-{id}")
}

/// Whether an iptables chain is neutrino's.
pub fn is_our_chain(chain: &str) -> bool {
    chain == FORWARD_CHAIN || chain == ZONE_CHAIN || chain.starts_with(PORT_CHAIN_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_and_ipsets_are_told_apart_from_others() {
        let [ingress, egress, spoof] = port_chains("ntp-0123456789");
        assert_eq!(
            [ingress.as_str(), egress.as_str(), spoof.as_str()],
            ["nt-i-0123456789", "nt-o-0123456789", "nt-s-0123456789"]
        );
        assert!(is_our_chain(&ingress) && is_our_chain(FORWARD_CHAIN) && is_our_chain(ZONE_CHAIN));
        assert!(!is_our_chain("FORWARD") && !is_our_chain("KUBE-FORWARD"));
        let group = Key::new("t", "web");
        assert!(is_our_ipset(&ipset(&group, false)) && is_our_ipset(&ipset(&group, true)));
        assert!(!is_our_ipset("KUBE-CLUSTER-IP"));
    }

    #[test]
    fn names_fit_the_kernel_and_are_stable() {
        let net = Key::new(
            "tenant-a",
            "a-network-name-that-is-quite-long-indeed-and-then-some",
        );
        let names = [
            bridge(&net),
            vxlan(&net),
            vlan(&net),
            port(&net),
            port_peer(&net),
            dhcp_link(&net).0,
            dhcp_link(&net).1,
            router_link(&net, &net, true).0,
            router_link(&net, &net, false).1,
        ];
        for name in &names {
            assert!(name.len() <= IFNAME_MAX, "{name}");
        }
        assert!(ipset(&net, true).len() <= 31);
        // SHA-256 of "network\0tenant-a\0<name>\0", worked out apart from
        // this code: a bridge must keep its name across upgrades.
        assert_eq!(bridge(&net), "ntb-5d217acb52");
        assert_ne!(
            bridge(&net),
            bridge(&Key::new("tenant-b", &net.name)),
            "tenants never share a bridge"
        );
        assert_ne!(bridge(&net), vxlan(&net));
    }

    #[test]
    fn hashing_separates_the_parts() {
        assert_ne!(port(&Key::new("ab", "c")), port(&Key::new("a", "bc")));
    }
}
