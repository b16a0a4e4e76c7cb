//! Security groups and router NAT as iptables-restore and ipset-restore
//! input: whole rulesets built as text, applied in one process per table.
//!
//! On a node, neutrino keeps to chains of its own (`neutrino-*`, `nt-*`),
//! applied with `--noflush` so nobody else's rules are touched; a router's
//! namespace is all neutrino's, so its NAT table is replaced whole.

use std::collections::BTreeSet;
use std::fmt::Write;

use super::plan::{
    FilterRemote, FilterRule, IpSetPlan, NatRule, PortFilter, RouterPlan, SecurityPlan,
};
use super::resolve::PortMatch;
use neutrino_api::EtherType;

use super::names::is_our_ipset;
pub use super::names::{FORWARD_CHAIN, PORT_CHAIN_PREFIX, ZONE_CHAIN, port_chains};

/// A conntrack zone per bridge, so two tenants' identical addresses on one
/// node never share connection state.
pub fn zone(bridge: &str) -> u16 {
    // FNV-1a: stable across builds and platforms.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in bridge.bytes() {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    1 + (hash % 65_534) as u16
}

fn family(v6: bool) -> EtherType {
    if v6 { EtherType::IPv6 } else { EtherType::IPv4 }
}

/// The match part of one rule: protocol, ports or ICMP type, and peer.
fn rule_match(rule: &FilterRule, peer_flag: &str, set_direction: &str) -> String {
    let v6 = rule.ethertype == EtherType::IPv6;
    let mut out = String::new();
    if let Some(protocol) = rule.protocol {
        let name = match protocol {
            1 => "icmp".to_string(),
            6 => "tcp".into(),
            17 => "udp".into(),
            58 => "ipv6-icmp".into(),
            132 => "sctp".into(),
            n => n.to_string(),
        };
        let _ = write!(out, " -p {name}");
        match rule.ports {
            Some(PortMatch::Ports(min, max)) => {
                let _ = write!(out, " -m {name} --dport {min}:{max}");
            }
            Some(PortMatch::Icmp(kind, code)) => {
                let code = code.map_or(String::new(), |c| format!("/{c}"));
                if v6 {
                    let _ = write!(out, " -m icmp6 --icmpv6-type {kind}{code}");
                } else {
                    let _ = write!(out, " -m icmp --icmp-type {kind}{code}");
                }
            }
            None => {}
        }
    }
    match &rule.remote {
        FilterRemote::Any => {}
        FilterRemote::Cidr(net) => {
            let _ = write!(out, " {peer_flag} {net}");
        }
        FilterRemote::IpSet(set) => {
            let _ = write!(out, " -m set --match-set {set} {set_direction}");
        }
    }
    out
}

fn port_rules(out: &mut String, port: &PortFilter, v6: bool) {
    let [ingress, egress, spoof] = port_chains(&port.interface);
    let ether = family(v6);

    let _ = writeln!(
        out,
        "-A {ingress} -m state --state RELATED,ESTABLISHED -j RETURN"
    );
    let _ = writeln!(out, "-A {ingress} -m state --state INVALID -j DROP");
    if v6 {
        // Router and neighbour discovery, MLD, and DHCPv6 replies.
        for kind in [130, 131, 132, 134, 135, 136, 143] {
            let _ = writeln!(
                out,
                "-A {ingress} -p ipv6-icmp -m icmp6 --icmpv6-type {kind} -j RETURN"
            );
        }
        let _ = writeln!(
            out,
            "-A {ingress} -p udp -m udp --sport 547 --dport 546 -j RETURN"
        );
    } else {
        let _ = writeln!(
            out,
            "-A {ingress} -p udp -m udp --sport 67 --dport 68 -j RETURN"
        );
    }
    for rule in port.ingress.iter().filter(|r| r.ethertype == ether) {
        let _ = writeln!(
            out,
            "-A {ingress}{} -j RETURN",
            rule_match(rule, "-s", "src")
        );
    }
    let _ = writeln!(out, "-A {ingress} -j DROP");

    // DHCP and neighbour discovery go out before the source check: they are
    // sent from addresses a port does not hold yet (0.0.0.0, ::).
    if v6 {
        for kind in [131, 133, 135, 136, 143] {
            let _ = writeln!(
                out,
                "-A {egress} -p ipv6-icmp -m icmp6 --icmpv6-type {kind} -j RETURN"
            );
        }
        let _ = writeln!(
            out,
            "-A {egress} -p udp -m udp --sport 546 --dport 547 -j RETURN"
        );
    } else {
        let _ = writeln!(
            out,
            "-A {egress} -p udp -m udp --sport 68 --dport 67 -j RETURN"
        );
    }
    let _ = writeln!(out, "-A {egress} -j {spoof}");
    let _ = writeln!(
        out,
        "-A {egress} -m state --state RELATED,ESTABLISHED -j RETURN"
    );
    let _ = writeln!(out, "-A {egress} -m state --state INVALID -j DROP");
    for rule in port.egress.iter().filter(|r| r.ethertype == ether) {
        let _ = writeln!(
            out,
            "-A {egress}{} -j RETURN",
            rule_match(rule, "-d", "dst")
        );
    }
    let _ = writeln!(out, "-A {egress} -j DROP");

    for source in port
        .allowed_sources
        .iter()
        .filter(|s| s.cidr.addr().is_ipv6() == v6)
    {
        let _ = writeln!(
            out,
            "-A {spoof} -s {} -m mac --mac-source {} -j RETURN",
            source.cidr, source.mac
        );
    }
    let _ = writeln!(out, "-A {spoof} -j DROP");
}

/// `iptables-restore --noflush` input for one family: neutrino's filter
/// chains (declaring a chain flushes it, so each is rewritten whole) and its
/// conntrack zones. `bridges` are the node's bridges; `stale` are chains of
/// ours that must go; `jumps_missing` says whether the jumps from FORWARD
/// and PREROUTING must be added.
pub fn node_ruleset(
    plan: &SecurityPlan,
    bridges: &[String],
    v6: bool,
    stale: &[String],
    jumps_missing: bool,
) -> String {
    let mut out = String::from("*raw\n");
    let _ = writeln!(out, ":{ZONE_CHAIN} - [0:0]");
    if jumps_missing {
        let _ = writeln!(out, "-I PREROUTING 1 -j {ZONE_CHAIN}");
    }
    for bridge in bridges {
        let _ = writeln!(
            out,
            "-A {ZONE_CHAIN} -i {bridge} -j CT --zone {}",
            zone(bridge)
        );
    }
    out.push_str("COMMIT\n*filter\n");
    let _ = writeln!(out, ":{FORWARD_CHAIN} - [0:0]");
    for port in &plan.ports {
        for chain in port_chains(&port.interface) {
            let _ = writeln!(out, ":{chain} - [0:0]");
        }
    }
    for chain in stale {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    if jumps_missing {
        let _ = writeln!(
            out,
            "-I FORWARD 1 -m physdev --physdev-is-bridged -j {FORWARD_CHAIN}"
        );
    }
    for port in &plan.ports {
        let [ingress, _, _] = port_chains(&port.interface);
        let _ = writeln!(
            out,
            "-A {FORWARD_CHAIN} -m physdev --physdev-out {} --physdev-is-bridged -j {ingress}",
            port.interface
        );
    }
    for port in &plan.ports {
        let [_, egress, _] = port_chains(&port.interface);
        let _ = writeln!(
            out,
            "-A {FORWARD_CHAIN} -m physdev --physdev-in {} --physdev-is-bridged -j {egress}",
            port.interface
        );
    }
    // What passed the port checks, and everything else on neutrino's
    // bridges, is accepted whatever the host's own FORWARD policy says.
    for bridge in bridges {
        let _ = writeln!(out, "-A {FORWARD_CHAIN} -o {bridge} -j ACCEPT");
    }
    for port in &plan.ports {
        port_rules(&mut out, port, v6);
    }
    for chain in stale {
        let _ = writeln!(out, "-X {chain}");
    }
    out.push_str("COMMIT\n");
    out
}

/// The `--noflush` restore input that takes one family's tables, as
/// `iptables-save` printed them, to `plan`: port chains of ours no port
/// wants are emptied and dropped, and the jumps into neutrino's chains are
/// added only when they are missing (adding them again would double them).
pub fn node_restore(plan: &SecurityPlan, bridges: &[String], v6: bool, saved: &str) -> String {
    let wanted: BTreeSet<String> = plan
        .ports
        .iter()
        .flat_map(|p| port_chains(&p.interface))
        .collect();
    let stale: Vec<String> = saved
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| c.starts_with(PORT_CHAIN_PREFIX) && !wanted.contains(*c))
        .map(str::to_string)
        .collect();
    let jumps_missing = !(saved.contains(&format!("-j {FORWARD_CHAIN}"))
        && saved.contains(&format!("-j {ZONE_CHAIN}")));
    node_ruleset(plan, bridges, v6, &stale, jumps_missing)
}

/// `ipset restore` input that destroys the sets of ours that `listed`
/// (`ipset list -n`) holds and `plan` no longer wants; empty when none.
pub fn ipset_removal(plan: &SecurityPlan, listed: &str) -> String {
    let planned: BTreeSet<&str> = plan.ipsets.iter().map(|s| s.name.as_str()).collect();
    listed
        .lines()
        .filter(|s| is_our_ipset(s) && !planned.contains(s))
        .map(|s| format!("destroy {s}\n"))
        .collect()
}

/// `ipset restore` input that fills each set through a temporary set and a
/// swap, so a set is never seen half full.
pub fn ipset_restore(sets: &[IpSetPlan]) -> String {
    let mut out = String::new();
    for set in sets {
        let family = if set.ethertype == EtherType::IPv6 {
            "inet6"
        } else {
            "inet"
        };
        let temporary = format!("{}-new", set.name);
        let _ = writeln!(out, "create {} hash:net family {family} -exist", set.name);
        let _ = writeln!(out, "create {temporary} hash:net family {family} -exist");
        let _ = writeln!(out, "flush {temporary}");
        for member in &set.members {
            let _ = writeln!(out, "add {temporary} {member}");
        }
        let _ = writeln!(out, "swap {temporary} {}", set.name);
        let _ = writeln!(out, "destroy {temporary}");
    }
    out
}

/// The whole NAT table of a router's namespace: floating IPs both ways,
/// then source NAT of its subnets out of the gateway.
pub fn router_nat(router: &RouterPlan) -> String {
    let mut out = String::from(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n",
    );
    let gateway = router.gateway.as_ref().map(|g| g.interface.as_str());
    for rule in &router.nat {
        if let NatRule::FloatingIp {
            floating, fixed, ..
        } = rule
        {
            let _ = writeln!(
                out,
                "-A PREROUTING -d {floating}/32 -j DNAT --to-destination {fixed}"
            );
            let _ = writeln!(
                out,
                "-A OUTPUT -d {floating}/32 -j DNAT --to-destination {fixed}"
            );
            if let Some(gateway) = gateway {
                let _ = writeln!(
                    out,
                    "-A POSTROUTING -s {fixed}/32 -o {gateway} -j SNAT --to-source {floating}"
                );
            }
        }
    }
    for rule in &router.nat {
        if let NatRule::Snat {
            source,
            to,
            interface,
        } = rule
        {
            let _ = writeln!(
                out,
                "-A POSTROUTING -s {source} -o {interface} -j SNAT --to-source {to}"
            );
        }
    }
    out.push_str("COMMIT\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Key;
    use crate::allocate::Mac;
    use crate::plan::AllowedSource;

    fn port() -> PortFilter {
        PortFilter {
            port: Key::new("t", "web"),
            interface: "ntp-0123456789".into(),
            allowed_sources: vec![AllowedSource {
                mac: Mac([2, 0, 0, 0, 0, 1]),
                cidr: "10.0.0.5/32".parse().unwrap(),
            }],
            ingress: vec![
                FilterRule {
                    ethertype: EtherType::IPv4,
                    protocol: Some(6),
                    ports: Some(PortMatch::Ports(80, 80)),
                    remote: FilterRemote::Cidr("0.0.0.0/0".parse().unwrap()),
                    group: Key::new("t", "web"),
                },
                FilterRule {
                    ethertype: EtherType::IPv4,
                    protocol: Some(1),
                    ports: None,
                    remote: FilterRemote::IpSet("nt4-abc".into()),
                    group: Key::new("t", "web"),
                },
            ],
            egress: vec![FilterRule {
                ethertype: EtherType::IPv4,
                protocol: None,
                ports: None,
                remote: FilterRemote::Any,
                group: Key::new("t", "web"),
            }],
        }
    }

    #[test]
    fn a_port_gets_ingress_egress_and_spoofing_chains() {
        let plan = SecurityPlan {
            ipsets: vec![],
            ports: vec![port()],
            unfiltered: vec![],
        };
        let text = node_ruleset(&plan, &["ntb-1".into()], false, &[], true);
        for line in [
            "-I FORWARD 1 -m physdev --physdev-is-bridged -j neutrino-FORWARD",
            "-A neutrino-FORWARD -m physdev --physdev-out ntp-0123456789 --physdev-is-bridged -j nt-i-0123456789",
            "-A neutrino-FORWARD -m physdev --physdev-in ntp-0123456789 --physdev-is-bridged -j nt-o-0123456789",
            "-A nt-i-0123456789 -p tcp -m tcp --dport 80:80 -s 0.0.0.0/0 -j RETURN",
            "-A nt-i-0123456789 -p icmp -m set --match-set nt4-abc src -j RETURN",
            "-A nt-i-0123456789 -j DROP",
            "-A nt-o-0123456789 -j nt-s-0123456789",
            "-A nt-s-0123456789 -s 10.0.0.5/32 -m mac --mac-source 02:00:00:00:00:01 -j RETURN",
            "-A neutrino-ZONES -i ntb-1 -j CT --zone",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        let v6 = node_ruleset(&plan, &["ntb-1".into()], true, &["nt-i-gone".into()], false);
        assert!(
            !v6.contains("--dport 80"),
            "IPv4 rules stay out of ip6tables"
        );
        assert!(v6.contains(":nt-i-gone - [0:0]") && v6.contains("-X nt-i-gone"));
        assert!(!v6.contains("-I FORWARD"));
    }

    #[test]
    fn a_restore_drops_stale_port_chains_and_adds_jumps_only_when_missing() {
        let plan = SecurityPlan {
            ipsets: vec![],
            ports: vec![port()],
            unfiltered: vec![],
        };
        let bridges = ["ntb-1".to_string()];
        let fresh = node_restore(
            &plan,
            &bridges,
            false,
            "*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n",
        );
        assert!(fresh.contains("-I FORWARD 1 -m physdev --physdev-is-bridged -j neutrino-FORWARD"));
        assert!(fresh.contains("-I PREROUTING 1 -j neutrino-ZONES"));
        assert!(!fresh.contains("-X "), "{fresh}");

        let saved = "*raw\n:neutrino-ZONES - [0:0]\n-A PREROUTING -j neutrino-ZONES\nCOMMIT\n\
                     *filter\n:neutrino-FORWARD - [0:0]\n:nt-i-0123456789 - [0:0]\n:nt-i-gone - [0:0]\n:nt-o-gone - [0:0]\n\
                     -A FORWARD -m physdev --physdev-is-bridged -j neutrino-FORWARD\nCOMMIT\n";
        let again = node_restore(&plan, &bridges, false, saved);
        assert!(
            !again.contains("-I FORWARD") && !again.contains("-I PREROUTING"),
            "{again}"
        );
        let dropped: Vec<&str> = again.lines().filter(|l| l.starts_with("-X ")).collect();
        assert_eq!(dropped, ["-X nt-i-gone", "-X nt-o-gone"]);
    }

    #[test]
    fn only_our_sets_that_no_group_wants_are_destroyed() {
        let plan = SecurityPlan {
            ipsets: vec![IpSetPlan {
                name: "nt4-abc".into(),
                group: Key::new("t", "app"),
                ethertype: EtherType::IPv4,
                members: vec![],
            }],
            ports: vec![],
            unfiltered: vec![],
        };
        assert_eq!(
            ipset_removal(&plan, "nt4-abc\nnt4-old\nnt6-old\nKUBE-SVC\n"),
            "destroy nt4-old\ndestroy nt6-old\n"
        );
        assert_eq!(ipset_removal(&plan, "nt4-abc\n"), "");
    }

    #[test]
    fn ipsets_are_swapped_in_whole() {
        let text = ipset_restore(&[IpSetPlan {
            name: "nt4-abc".into(),
            group: Key::new("t", "app"),
            ethertype: EtherType::IPv4,
            members: vec!["10.0.0.5/32".parse().unwrap()],
        }]);
        assert!(
            text.contains(
                "add nt4-abc-new 10.0.0.5/32\nswap nt4-abc-new nt4-abc\ndestroy nt4-abc-new"
            ),
            "{text}"
        );
    }

    #[test]
    fn zones_are_stable_and_in_range() {
        // FNV-1a of the name, worked out apart from this code: a zone
        // must not move when neutrino is rebuilt or upgraded.
        assert_eq!(zone("ntb-0123456789"), 12_022);
        assert_ne!(zone("ntb-0123456789"), zone("ntb-0123456788"));
        assert!(zone("x") >= 1);
    }
}
