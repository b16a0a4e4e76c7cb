//! The node's own boundary. A tenant bridge carries no address of the
//! node's, yet the kernel would hand a frame addressed to the bridge's MAC
//! up to the node's stack, which answers for every address it holds (the
//! kubelet's included) on every interface. So whatever a tenant bridge
//! passes up is dropped, ARP included, and VXLAN is taken only from the
//! tunnel endpoints of the nodes this one shares networks with: a
//! workload (or anything beyond the node) cannot put frames into another
//! tenant's network by sending to the node's VXLAN port. None of this
//! depends on the host's `rp_filter`, `accept_ra` or forwarding settings.
//!
//! Two small tables, in the `inet` and `arp` families, replaced whole in
//! one transaction when they change.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::net::IpAddr;

use crate::names;
use crate::plan::{NodePlan, UplinkKind};

/// The name of both tables.
pub const TABLE: &str = "neutrino-host";

/// The sets of tunnel peers, by family.
const PEERS_V4: &str = "tunnel-peers-v4";
const PEERS_V6: &str = "tunnel-peers-v6";

/// What the node takes from outside its own stack.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Boundary {
    /// The UDP ports the node's VXLAN links listen on.
    pub vxlan_ports: BTreeSet<u16>,
    /// The tunnel endpoints VXLAN is taken from.
    pub peers: BTreeSet<IpAddr>,
}

/// The boundary `plan` needs: VXLAN from the peers its FDB floods to.
pub fn of(plan: &NodePlan) -> Boundary {
    let vxlans: BTreeSet<&str> = (plan.uplinks.iter())
        .filter(|u| matches!(u.kind, UplinkKind::Vxlan { .. }))
        .map(|u| u.name.as_str())
        .collect();
    Boundary {
        vxlan_ports: (plan.uplinks.iter())
            .filter_map(|u| match u.kind {
                UplinkKind::Vxlan { port, .. } => Some(port),
                _ => None,
            })
            .collect(),
        peers: (plan.fdb.iter())
            .filter(|e| vxlans.contains(e.device.as_str()))
            .map(|e| e.destination)
            .collect(),
    }
}

/// Both tables for `boundary`, replacing whatever is there, in one
/// transaction.
pub fn script(boundary: &Boundary) -> String {
    let bridges = format!("{}b-*", names::PREFIX);
    let mut out = removal();
    let _ = writeln!(out, "table arp {TABLE} {{");
    out.push_str("  chain input {\n");
    out.push_str("    type filter hook input priority filter; policy accept;\n");
    let _ = writeln!(out, "    iifname \"{bridges}\" drop");
    out.push_str("  }\n}\n");
    let _ = writeln!(out, "table inet {TABLE} {{");
    for (name, kind, v4) in [
        (PEERS_V4, "ipv4_addr", true),
        (PEERS_V6, "ipv6_addr", false),
    ] {
        let members: Vec<String> = (boundary.peers.iter())
            .filter(|p| p.is_ipv4() == v4)
            .map(IpAddr::to_string)
            .collect();
        let _ = write!(out, "  set {name} {{ type {kind};");
        if !members.is_empty() {
            let _ = write!(out, " elements = {{ {} }};", members.join(", "));
        }
        out.push_str(" }\n");
    }
    // Before conntrack: a forged packet leaves no entry behind.
    out.push_str("  chain input {\n");
    out.push_str("    type filter hook input priority raw; policy accept;\n");
    let _ = writeln!(out, "    iifname \"{bridges}\" drop");
    if !boundary.vxlan_ports.is_empty() {
        let ports: Vec<String> = boundary.vxlan_ports.iter().map(u16::to_string).collect();
        let ports = ports.join(", ");
        let _ = writeln!(
            out,
            "    udp dport {{ {ports} }} ip saddr != @{PEERS_V4} drop"
        );
        let _ = writeln!(
            out,
            "    udp dport {{ {ports} }} ip6 saddr != @{PEERS_V6} drop"
        );
    }
    out.push_str("  }\n}\n");
    out
}

/// What takes both tables away (and is harmless where they are not).
pub fn removal() -> String {
    let mut out = String::new();
    for family in ["arp", "inet"] {
        let _ = writeln!(out, "table {family} {TABLE} {{}}");
        let _ = writeln!(out, "delete table {family} {TABLE}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::quickstart_plan;

    #[test]
    fn vxlan_is_taken_only_from_the_peers_the_fdb_floods_to() {
        let plan = quickstart_plan("node-1");
        let boundary = of(&plan);
        let flooded: BTreeSet<IpAddr> = (plan.fdb.iter())
            .filter(|e| e.mac.0 == [0; 6])
            .map(|e| e.destination)
            .collect();
        assert!(!flooded.is_empty());
        assert_eq!(boundary.peers, flooded);
        assert!(!boundary.peers.contains(&plan.tunnel_ip));
        assert_eq!(boundary.vxlan_ports, BTreeSet::from([4789]));
        let script = script(&boundary);
        let peers: Vec<String> = flooded.iter().map(IpAddr::to_string).collect();
        assert!(
            script.contains(&format!("elements = {{ {} }}", peers.join(", "))),
            "{script}"
        );
        assert!(script.contains("udp dport { 4789 } ip saddr != @tunnel-peers-v4 drop"));
    }

    #[test]
    fn a_node_without_vxlan_still_drops_what_its_bridges_pass_up() {
        let script = script(&Boundary::default());
        assert_eq!(
            script.matches("iifname \"ntb-*\" drop").count(),
            2,
            "{script}"
        );
        assert!(!script.contains("udp dport"), "{script}");
        assert!(script.starts_with(&removal()));
    }
}
