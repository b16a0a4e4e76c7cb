//! Port security below IP, in the bridge: nftables' bridge family sees the
//! ARP and neighbour discovery that iptables does not. A port with port
//! security sends from its own MACs only, claims in ARP and in neighbour
//! advertisements only its own addresses and allowed address pairs, and
//! never answers as a DHCP server or advertises itself as a router — so a
//! workload cannot poison its neighbours' caches or hand out leases.
//!
//! The node's table holds one chain per port and a map from the port's
//! interface to its chain, so that a change rewrites only the chains it
//! touches ([`delta`]); [`table`] replaces the whole table in one
//! transaction.

use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use crate::plan::PortFilter;

/// The node's table, in the bridge family.
pub const TABLE: &str = "neutrino";

/// The map from a port's interface to its chain.
const PORTS: &str = "ports";

/// The chain of the port whose host end is `interface`.
pub fn chain(interface: &str) -> String {
    format!("guard-{interface}")
}

/// Each filtered port's rules, by interface: what [`table`] and [`delta`]
/// take.
pub fn chains(ports: &[PortFilter]) -> BTreeMap<String, String> {
    (ports.iter())
        .map(|p| (p.interface.clone(), port_rules(p)))
        .collect()
}

/// The rules of one port's chain, one per line, first match wins.
pub fn port_rules(port: &PortFilter) -> String {
    let mut out = String::new();
    let macs: BTreeSet<String> = (port.allowed_sources.iter())
        .map(|s| s.mac.to_string())
        .collect();
    // A port without addresses still has its MAC; without even that there
    // is nothing it may send.
    if macs.is_empty() {
        out.push_str("drop\n");
        return out;
    }
    let list = macs.iter().cloned().collect::<Vec<_>>().join(", ");
    let _ = writeln!(out, "ether saddr != {{ {list} }} drop");
    for source in port
        .allowed_sources
        .iter()
        .filter(|s| s.cidr.addr().is_ipv4())
    {
        let _ = writeln!(
            out,
            "ether type arp arp saddr ether {} arp saddr ip {} accept",
            source.mac,
            cidr(&source.cidr)
        );
    }
    // Address conflict detection probes from no address (RFC 5227).
    for mac in &macs {
        let _ = writeln!(
            out,
            "ether type arp arp operation request arp saddr ether {mac} arp saddr ip 0.0.0.0 accept"
        );
    }
    out.push_str("ether type arp drop\n");
    out.push_str("udp sport 67 udp dport 68 drop\n");
    out.push_str("udp sport 547 udp dport 546 drop\n");
    // A DHCP client names itself by its MAC (chaddr), which the server's
    // static hosts and releases go by.
    let raw_macs = raw_set(macs.iter().map(|m| format!("0x{}", m.replace(':', ""))));
    let _ = writeln!(
        out,
        "udp sport 68 udp dport 67 @th,288,48 != {raw_macs} drop"
    );
    out.push_str("icmpv6 type { nd-router-advert, nd-redirect } drop\n");
    // Neighbour discovery: solicitations from no address (duplicate
    // address detection, from which no neighbour entry is made), else
    // from the port's own addresses with its own MAC as the link-layer
    // option, or none; advertisements of its own addresses likewise. An
    // option elsewhere than first, or a second one, changes the length.
    out.push_str("icmpv6 type { nd-neighbor-solicit, nd-router-solicit } ip6 saddr :: accept\n");
    let own: Vec<&IpNet> = (port.allowed_sources.iter())
        .map(|s| &s.cidr)
        .filter(|c| c.addr().is_ipv6())
        .collect();
    if !own.is_empty() {
        let saddr = raw_set(own.iter().map(|c| cidr(c)));
        let option = |offset: u32, kind: u8| {
            format!(
                "@th,{offset},16 {:#06x} @th,{},48 {raw_macs}",
                u16::from(kind) << 8 | 1,
                offset + 16
            )
        };
        for (kind, length, offset) in [
            ("nd-neighbor-solicit", 24, 192),
            ("nd-router-solicit", 8, 64),
        ] {
            let _ = writeln!(
                out,
                "icmpv6 type {kind} ip6 saddr {saddr} ip6 length {length} accept"
            );
            let _ = writeln!(
                out,
                "icmpv6 type {kind} ip6 saddr {saddr} ip6 length {} {} accept",
                length + 8,
                option(offset, 1)
            );
        }
        for target in &own {
            let target = target_match(target);
            let _ = writeln!(
                out,
                "icmpv6 type nd-neighbor-advert ip6 saddr {saddr} {target} ip6 length 24 accept"
            );
            let _ = writeln!(
                out,
                "icmpv6 type nd-neighbor-advert ip6 saddr {saddr} {target} ip6 length 32 {} accept",
                option(192, 2)
            );
        }
    }
    out.push_str(
        "icmpv6 type { nd-neighbor-solicit, nd-router-solicit, nd-neighbor-advert } drop\n",
    );
    out
}

/// Values as nft takes them: one alone, several as an anonymous set.
fn raw_set(values: impl Iterator<Item = String>) -> String {
    let values: Vec<String> = values.collect();
    match &values[..] {
        [one] => one.clone(),
        _ => format!("{{ {} }}", values.join(", ")),
    }
}

/// A network as nft writes it: a host without its /32 or /128.
fn cidr(net: &IpNet) -> String {
    match net.prefix_len() == net.max_prefix_len() {
        true => net.addr().to_string(),
        false => net.trunc().to_string(),
    }
}

/// A neighbour advertisement's target address in `net`. This nft reads no
/// `icmpv6 taddr`, so the match is on the raw 128 bits after the message's
/// first 8 bytes, cut to the prefix.
fn target_match(net: &IpNet) -> String {
    let bits = u32::from(net.prefix_len());
    let address = match net.trunc().addr() {
        std::net::IpAddr::V6(a) => u128::from(a),
        std::net::IpAddr::V4(_) => unreachable!("only IPv6 targets are matched"),
    };
    if bits == 0 {
        return String::new();
    }
    let value = address >> (128 - bits);
    format!("@th,64,{bits} {value:#x}")
}

/// The whole table for `chains` (from [`chains`]), replacing whatever is
/// there in one transaction.
pub fn table(chains: &BTreeMap<String, String>) -> String {
    let mut out = format!("table bridge {TABLE} {{}}\ndelete table bridge {TABLE}\n");
    let _ = writeln!(out, "table bridge {TABLE} {{");
    let _ = writeln!(out, "  map {PORTS} {{ type ifname : verdict; }}");
    for (interface, rules) in chains {
        let _ = writeln!(out, "  chain {} {{", chain(interface));
        for rule in rules.lines() {
            let _ = writeln!(out, "    {rule}");
        }
        out.push_str("  }\n");
    }
    // Before anything else on the bridge sees the frame.
    out.push_str("  chain prerouting {\n");
    out.push_str("    type filter hook prerouting priority -200; policy accept;\n");
    let _ = writeln!(out, "    iifname vmap @{PORTS}");
    out.push_str("  }\n}\n");
    for interface in chains.keys() {
        let _ = writeln!(out, "{}", element(interface, true));
    }
    out
}

/// What takes the table from `old` to `new`: the chains that changed
/// flushed and filled again, new ports' chains and map elements added,
/// gone ports' taken out. Empty when nothing changed.
pub fn delta(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (interface, rules) in new {
        if old.get(interface) == Some(rules) {
            continue;
        }
        let name = chain(interface);
        let _ = writeln!(out, "add chain bridge {TABLE} {name}");
        let _ = writeln!(out, "flush chain bridge {TABLE} {name}");
        for rule in rules.lines() {
            let _ = writeln!(out, "add rule bridge {TABLE} {name} {rule}");
        }
        if !old.contains_key(interface) {
            let _ = writeln!(out, "{}", element(interface, true));
        }
    }
    for interface in old.keys().filter(|i| !new.contains_key(*i)) {
        let _ = writeln!(out, "{}", element(interface, false));
        let _ = writeln!(out, "delete chain bridge {TABLE} {}", chain(interface));
    }
    out
}

/// What a drift check can compare with what was applied without reading
/// back after every change (listing a table of a thousand ports takes nft
/// 0.1–0.15 s, ten times a change): each port chain's number of rules,
/// where the map sends each interface, and whether the hook is there. A
/// flushed, shortened or extended chain, a lost element or chain, or a
/// lost table shows in it; a rule rewritten in place, count unchanged,
/// shows only against the chain's listing at an earlier check
/// ([`Shape::listed_with_rules`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    pub chains: BTreeMap<String, usize>,
    pub map: BTreeMap<String, String>,
    pub hooked: bool,
}

impl Shape {
    /// The shape of the table [`table`] makes of `chains`; an empty one
    /// (no table) for none.
    pub fn of(chains: &BTreeMap<String, String>) -> Shape {
        Shape {
            chains: (chains.iter())
                .map(|(interface, rules)| (chain(interface), rules.lines().count()))
                .collect(),
            map: (chains.keys())
                .map(|interface| (interface.clone(), chain(interface)))
                .collect(),
            hooked: !chains.is_empty(),
        }
    }

    /// The shape of the table as `nft list table` prints it (empty when
    /// there is none).
    pub fn listed(listing: &str) -> Shape {
        Shape::listed_with_rules(listing).0
    }

    /// The shape of the table as `nft list table` prints it, and each port
    /// chain's rules as printed.
    pub fn listed_with_rules(listing: &str) -> (Shape, BTreeMap<String, String>) {
        let mut shape = Shape::default();
        let mut rules = BTreeMap::<String, String>::new();
        let mut current: Option<String> = None;
        let mut in_map = false;
        for line in listing.lines().map(str::trim) {
            if let Some(name) = line
                .strip_prefix("chain ")
                .and_then(|l| l.strip_suffix(" {"))
            {
                current = Some(name.to_string());
                if name.starts_with("guard-") {
                    shape.chains.insert(name.to_string(), 0);
                }
                continue;
            }
            if line.starts_with(&format!("map {PORTS} ")) {
                in_map = true;
                continue;
            }
            if line == "}" {
                (current, in_map) = (None, false);
                continue;
            }
            if in_map {
                // `"np-a" : jump guard-np-a,`, several to a line or one.
                for element in line.trim_start_matches("elements = {").split(',') {
                    let words: Vec<&str> = element.split_whitespace().collect();
                    if let [name, ":", "jump", target, ..] = words[..] {
                        let target = target.trim_end_matches('}').trim();
                        shape
                            .map
                            .insert(name.trim_matches('"').into(), target.into());
                    }
                }
                continue;
            }
            match current.as_deref() {
                Some("prerouting") if line == format!("iifname vmap @{PORTS}") => {
                    shape.hooked = true;
                }
                Some(name) if name.starts_with("guard-") && !line.is_empty() => {
                    *shape.chains.entry(name.to_string()).or_default() += 1;
                    let listed = rules.entry(name.to_string()).or_default();
                    listed.push_str(line);
                    listed.push('\n');
                }
                _ => {}
            }
        }
        (shape, rules)
    }
}

/// The map element that sends `interface`'s frames to its chain.
fn element(interface: &str, add: bool) -> String {
    match add {
        true => format!(
            "add element bridge {TABLE} {PORTS} {{ \"{interface}\" : jump {} }}",
            chain(interface)
        ),
        false => format!("delete element bridge {TABLE} {PORTS} {{ \"{interface}\" }}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Key;
    use crate::allocate::Mac;
    use crate::plan::AllowedSource;

    fn port(interface: &str, sources: &[(&str, [u8; 6])]) -> PortFilter {
        PortFilter {
            port: Key::new("t", interface),
            interface: interface.into(),
            allowed_sources: (sources.iter())
                .map(|(cidr, mac)| AllowedSource {
                    mac: Mac(*mac),
                    cidr: cidr.parse().unwrap(),
                })
                .collect(),
            ingress: Vec::new(),
            egress: Vec::new(),
        }
    }

    const MAC: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 5];
    const PAIR: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 9];

    #[test]
    fn a_port_claims_only_its_own_addresses_and_serves_nothing() {
        let rules = port_rules(&port(
            "np-a",
            &[
                ("10.0.0.5/32", MAC),
                ("10.9.0.0/24", PAIR),
                ("2001:db8::5/128", MAC),
                ("fe80::f816:3eff:fe00:5/128", MAC),
            ],
        ));
        let expected = "\
ether saddr != { fa:16:3e:00:00:05, fa:16:3e:00:00:09 } drop
ether type arp arp saddr ether fa:16:3e:00:00:05 arp saddr ip 10.0.0.5 accept
ether type arp arp saddr ether fa:16:3e:00:00:09 arp saddr ip 10.9.0.0/24 accept
ether type arp arp operation request arp saddr ether fa:16:3e:00:00:05 arp saddr ip 0.0.0.0 accept
ether type arp arp operation request arp saddr ether fa:16:3e:00:00:09 arp saddr ip 0.0.0.0 accept
ether type arp drop
udp sport 67 udp dport 68 drop
udp sport 547 udp dport 546 drop
udp sport 68 udp dport 67 @th,288,48 != { 0xfa163e000005, 0xfa163e000009 } drop
icmpv6 type { nd-router-advert, nd-redirect } drop
icmpv6 type { nd-neighbor-solicit, nd-router-solicit } ip6 saddr :: accept
icmpv6 type nd-neighbor-solicit ip6 saddr { 2001:db8::5, fe80::f816:3eff:fe00:5 } ip6 length 24 accept
icmpv6 type nd-neighbor-solicit ip6 saddr { 2001:db8::5, fe80::f816:3eff:fe00:5 } ip6 length 32 @th,192,16 0x0101 @th,208,48 { 0xfa163e000005, 0xfa163e000009 } accept
icmpv6 type nd-router-solicit ip6 saddr { 2001:db8::5, fe80::f816:3eff:fe00:5 } ip6 length 8 accept
icmpv6 type nd-router-solicit ip6 saddr { 2001:db8::5, fe80::f816:3eff:fe00:5 } ip6 length 16 @th,64,16 0x0101 @th,80,48 { 0xfa163e000005, 0xfa163e000009 } accept
icmpv6 type nd-neighbor-advert ip6 saddr { 2001:db8::5, fe80::f816:3eff:fe00:5 } @th,64,128 0x20010db8000000000000000000000005 ip6 length 24 accept
icmpv6 type nd-neighbor-advert ip6 saddr { 2001:db8::5, fe80::f816:3eff:fe00:5 } @th,64,128 0x20010db8000000000000000000000005 ip6 length 32 @th,192,16 0x0201 @th,208,48 { 0xfa163e000005, 0xfa163e000009 } accept
icmpv6 type nd-neighbor-advert ip6 saddr { 2001:db8::5, fe80::f816:3eff:fe00:5 } @th,64,128 0xfe80000000000000f8163efffe000005 ip6 length 24 accept
icmpv6 type nd-neighbor-advert ip6 saddr { 2001:db8::5, fe80::f816:3eff:fe00:5 } @th,64,128 0xfe80000000000000f8163efffe000005 ip6 length 32 @th,192,16 0x0201 @th,208,48 { 0xfa163e000005, 0xfa163e000009 } accept
icmpv6 type { nd-neighbor-solicit, nd-router-solicit, nd-neighbor-advert } drop
";
        assert_eq!(rules, expected);
    }

    #[test]
    fn an_ipv6_pair_matches_its_prefix_of_the_target() {
        assert_eq!(
            target_match(&"2001:db8:0:1::/64".parse().unwrap()),
            "@th,64,64 0x20010db800000001"
        );
        assert_eq!(
            target_match(&"2001:db8::/29".parse().unwrap()),
            format!("@th,64,29 {:#x}", 0x2001_0db8u32 >> 3)
        );
    }

    #[test]
    fn a_change_rewrites_only_the_chains_it_touches() {
        let a = port("np-a", &[("10.0.0.5/32", MAC)]);
        let b = port("np-b", &[("10.0.0.6/32", PAIR)]);
        let before = chains(&[a.clone(), b.clone()]);
        assert_eq!(delta(&before, &before), "");

        let moved = port("np-b", &[("10.0.0.7/32", PAIR)]);
        let c = port("np-c", &[("10.0.0.8/32", MAC)]);
        let after = chains(&[moved, c]);
        let script = delta(&before, &after);
        assert!(
            !script.contains("guard-np-a "),
            "np-a's chain goes whole:\n{script}"
        );
        assert!(script.contains("flush chain bridge neutrino guard-np-b\n"));
        assert!(
            !script.contains("ports { \"np-b\" : jump"),
            "np-b is mapped already"
        );
        assert!(
            script.contains("add element bridge neutrino ports { \"np-c\" : jump guard-np-c }")
        );
        let gone = script
            .find("delete element bridge neutrino ports { \"np-a\" }")
            .unwrap();
        let chain_gone = script
            .find("delete chain bridge neutrino guard-np-a")
            .unwrap();
        assert!(gone < chain_gone, "a chain goes once nothing jumps to it");
    }

    #[test]
    fn a_listed_table_has_the_shape_of_what_was_applied_and_a_changed_one_not() {
        // As nft 1.0.6 lists the table `table` makes of these chains.
        let listing = "table bridge neutrino {
	map ports {
		type ifname : verdict
		elements = { \"np-a\" : jump guard-np-a,
			     \"np-b\" : jump guard-np-b }
	}

	chain guard-np-a {
		ether saddr != fa:16:3e:00:00:05 drop
		ether type arp drop
	}

	chain guard-np-b {
		ether type arp drop
	}

	chain prerouting {
		type filter hook prerouting priority filter; policy accept;
		iifname vmap @ports
	}
}
";
        let chains = BTreeMap::from([
            (
                "np-a".to_string(),
                "ether saddr != { fa:16:3e:00:00:05 } drop\nether type arp drop\n".to_string(),
            ),
            ("np-b".to_string(), "ether type arp drop\n".to_string()),
        ]);
        assert_eq!(Shape::listed(listing), Shape::of(&chains));
        let flushed = listing.replace(
            "\t\tether type arp drop\n\t}\n\n\tchain prerouting",
            "\t}\n\n\tchain prerouting",
        );
        assert_ne!(Shape::listed(&flushed), Shape::of(&chains));
        let unmapped = listing.replace(",\n\t\t\t     \"np-b\" : jump guard-np-b", "");
        assert_ne!(Shape::listed(&unmapped), Shape::of(&chains));
        assert_eq!(Shape::listed(""), Shape::of(&BTreeMap::new()));

        // A rule replaced in place keeps the shape; only the chain's
        // listing shows it.
        let replaced = listing.replace(
            "\t\tether type arp drop\n\t}\n\n\tchain guard-np-b",
            "\t\taccept\n\t}\n\n\tchain guard-np-b",
        );
        let (shape, rules) = Shape::listed_with_rules(listing);
        let (shape_replaced, rules_replaced) = Shape::listed_with_rules(&replaced);
        assert_eq!(shape_replaced, shape);
        assert_eq!(
            rules["guard-np-a"],
            "ether saddr != fa:16:3e:00:00:05 drop\nether type arp drop\n"
        );
        assert_eq!(
            rules_replaced["guard-np-a"],
            "ether saddr != fa:16:3e:00:00:05 drop\naccept\n"
        );
        assert_eq!(rules_replaced["guard-np-b"], rules["guard-np-b"]);
    }

    #[test]
    fn the_table_is_replaced_whole_with_every_port_mapped() {
        let script = table(&chains(&[port("np-a", &[("10.0.0.5/32", MAC)])]));
        assert!(script.starts_with("table bridge neutrino {}\ndelete table bridge neutrino\n"));
        assert!(
            script
                .contains("  chain guard-np-a {\n    ether saddr != { fa:16:3e:00:00:05 } drop\n")
        );
        assert!(script.contains("iifname vmap @ports"));
        assert!(
            script.ends_with("add element bridge neutrino ports { \"np-a\" : jump guard-np-a }\n")
        );
    }
}
