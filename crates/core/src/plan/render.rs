//! A node's plan as a network engineer reads it: one section per kind of
//! kernel object, tables with aligned columns.

use std::fmt::Write;

use super::{FilterRemote, FilterRule, NatRule, NodePlan, PortFilter, RouterLegPlan, UplinkKind};
use crate::resolve::PortMatch;

/// Rows of cells printed with aligned columns.
struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn write(&self, out: &mut String, indent: &str) {
        if self.rows.len() == 1 {
            let _ = writeln!(out, "{indent}(none)");
            return;
        }
        let columns = self.rows[0].len();
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| r[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &self.rows {
            let mut line = String::from(indent);
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == columns {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
}

fn protocol_name(protocol: Option<u8>) -> String {
    match protocol {
        None => "any".into(),
        Some(1) => "icmp".into(),
        Some(6) => "tcp".into(),
        Some(17) => "udp".into(),
        Some(58) => "icmpv6".into(),
        Some(132) => "sctp".into(),
        Some(n) => format!("proto {n}"),
    }
}

fn rule_text(rule: &FilterRule, towards: &str) -> Vec<String> {
    let ports = match rule.ports {
        None => String::new(),
        Some(PortMatch::Ports(a, b)) if a == b => format!("port {a}"),
        Some(PortMatch::Ports(a, b)) => format!("ports {a}-{b}"),
        Some(PortMatch::Icmp(t, None)) => format!("type {t}"),
        Some(PortMatch::Icmp(t, Some(c))) => format!("type {t} code {c}"),
    };
    let remote = match &rule.remote {
        FilterRemote::Any => "any".to_string(),
        FilterRemote::Cidr(net) => net.to_string(),
        FilterRemote::IpSet(set) => format!("ipset {set}"),
    };
    vec![
        format!("{:?}", rule.ethertype),
        protocol_name(rule.protocol),
        ports,
        format!("{towards} {remote}"),
        rule.group.to_string(),
    ]
}

fn join<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn leg_row(role: &str, leg: &RouterLegPlan) -> Vec<String> {
    vec![
        role.into(),
        leg.subnet.to_string(),
        leg.interface.clone(),
        leg.bridge_port.clone(),
        leg.bridge.clone(),
        leg.mac.to_string(),
        leg.address.to_string(),
    ]
}

fn nat_text(rule: &NatRule) -> String {
    match rule {
        NatRule::FloatingIp {
            floating,
            fixed,
            floating_ip,
        } => format!("{floating} <-> {fixed} (floating IP {floating_ip})"),
        NatRule::Snat {
            source,
            to,
            interface,
        } => format!("SNAT {source} -> {to} out {interface}"),
    }
}

/// The bridges, one per network on the node.
fn bridges(plan: &NodePlan, out: &mut String) {
    let _ = writeln!(out, "\nBridges");
    let mut t = Table::new(&["NAME", "NETWORK", "MTU"]);
    for b in &plan.bridges {
        t.row(vec![
            b.name.clone(),
            b.network.to_string(),
            b.mtu.to_string(),
        ]);
    }
    t.write(out, "  ");
}

/// How each bridge leaves the node: a VXLAN, VLAN or flat uplink.
fn uplinks(plan: &NodePlan, out: &mut String) {
    let _ = writeln!(out, "\nUplinks");
    let mut t = Table::new(&["NAME", "BRIDGE", "TYPE", "MTU", "DETAILS"]);
    for u in &plan.uplinks {
        let (kind, details) = match &u.kind {
            UplinkKind::Vxlan { vni, local, port } => (
                "vxlan",
                format!("vni {vni}, local {local}, dstport {port}, learning off, arp proxy"),
            ),
            UplinkKind::Vlan { parent, id } => ("vlan", format!("id {id} on {parent}")),
            UplinkKind::Flat { interface } => ("flat", format!("{interface} untagged")),
        };
        t.row(vec![
            u.name.clone(),
            u.bridge.clone(),
            kind.into(),
            u.mtu.to_string(),
            details,
        ]);
    }
    t.write(out, "  ");
}

/// The forwarding entries l2population puts on the VXLAN devices.
fn fdb(plan: &NodePlan, out: &mut String) {
    let _ = writeln!(out, "\nFDB entries (l2population)");
    let mut t = Table::new(&["DEVICE", "MAC", "DESTINATION", "NODE", "FOR"]);
    for f in &plan.fdb {
        t.row(vec![
            f.device.clone(),
            f.mac.to_string(),
            f.destination.to_string(),
            f.node.clone(),
            f.owner.clone(),
        ]);
    }
    t.write(out, "  ");
}

/// The ARP and NDP answers given on the node.
fn neighbours(plan: &NodePlan, out: &mut String) {
    let _ = writeln!(out, "\nNeighbours (ARP/NDP answered locally)");
    let mut t = Table::new(&["DEVICE", "IP", "MAC"]);
    for n in &plan.neighbours {
        t.row(vec![n.device.clone(), n.ip.to_string(), n.mac.to_string()]);
    }
    t.write(out, "  ");
}

/// The ports and their interfaces.
fn ports(plan: &NodePlan, out: &mut String) {
    let _ = writeln!(out, "\nPorts");
    let mut t = Table::new(&["PORT", "INTERFACE", "BRIDGE", "MAC", "MTU", "ADDRESSES"]);
    for p in &plan.ports {
        t.row(vec![
            p.port.to_string(),
            p.interface.clone(),
            p.bridge.clone(),
            p.mac.to_string(),
            p.mtu.to_string(),
            join(&p.addresses),
        ]);
    }
    t.write(out, "  ");
}

/// Each DHCP server: where it answers, its options and its hosts.
fn dhcp(plan: &NodePlan, out: &mut String) {
    let _ = writeln!(out, "\nDHCP");
    if plan.dhcp.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for d in &plan.dhcp {
        let _ = writeln!(
            out,
            "  subnet {} ({}) in namespace {}: server {} on {} (mac {}, via {} on {})",
            d.subnet, d.cidr, d.namespace, d.address, d.interface, d.mac, d.bridge_port, d.bridge
        );
        let _ = writeln!(
            out,
            "    router {}, dns {}, mtu {}, lease {}s",
            d.router.map_or("-".into(), |r| r.to_string()),
            join(&d.dns),
            d.mtu,
            d.lease_seconds
        );
        if !d.routes.is_empty() {
            let routes: Vec<String> = d
                .routes
                .iter()
                .map(|r| format!("{} via {}", r.destination, r.nexthop))
                .collect();
            let _ = writeln!(out, "    routes: {}", routes.join(", "));
        }
        let mut t = Table::new(&["HOST MAC", "IP", "HOSTNAME"]);
        for h in &d.hosts {
            t.row(vec![
                h.mac.to_string(),
                h.ip.to_string(),
                h.hostname.clone(),
            ]);
        }
        t.write(out, "    ");
    }
}

/// Each router: its legs, routes and NAT.
fn routers(plan: &NodePlan, out: &mut String) {
    let _ = writeln!(out, "\nRouters");
    if plan.routers.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for r in &plan.routers {
        let _ = writeln!(out, "  router {} in namespace {}", r.router, r.namespace);
        let mut t = Table::new(&[
            "LEG",
            "SUBNET",
            "INTERFACE",
            "BRIDGE PORT",
            "BRIDGE",
            "MAC",
            "ADDRESS",
        ]);
        for leg in &r.interfaces {
            t.row(leg_row("internal", leg));
        }
        if let Some(g) = &r.gateway {
            t.row(leg_row("gateway", g));
        }
        t.write(out, "    ");
        if !r.floating_ips.is_empty() {
            let _ = writeln!(
                out,
                "    floating IPs on the gateway: {}",
                join(&r.floating_ips)
            );
        }
        let routes: Vec<String> = r
            .routes
            .iter()
            .map(|x| format!("{} via {}", x.destination, x.nexthop))
            .collect();
        let _ = writeln!(out, "    routes: {}", join(&routes));
        let nat: Vec<String> = r.nat.iter().map(nat_text).collect();
        let _ = writeln!(out, "    NAT: {}", join(&nat));
    }
}

/// One filtered port: the sources it may send from and its rules.
fn port_filter(f: &PortFilter, out: &mut String) {
    let _ = writeln!(out, "  port {} on {}", f.port, f.interface);
    let sources: Vec<String> = f
        .allowed_sources
        .iter()
        .map(|s| format!("{} {}", s.mac, s.cidr))
        .collect();
    let _ = writeln!(out, "    may send from: {}", join(&sources));
    let mut t = Table::new(&[
        "DIRECTION",
        "ETHERTYPE",
        "PROTOCOL",
        "PORTS",
        "PEER",
        "GROUP",
    ]);
    for rule in &f.ingress {
        let mut row = vec!["ingress".to_string()];
        row.extend(rule_text(rule, "from"));
        t.row(row);
    }
    for rule in &f.egress {
        let mut row = vec!["egress".to_string()];
        row.extend(rule_text(rule, "to"));
        t.row(row);
    }
    t.write(out, "    ");
}

/// Each filtered port's rules, the unfiltered ports and the ipsets of remote groups.
fn security(plan: &NodePlan, out: &mut String) {
    let _ = writeln!(out, "\nSecurity groups");
    if plan.security.ports.is_empty() && plan.security.unfiltered.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for f in &plan.security.ports {
        port_filter(f, out);
    }
    for port in &plan.security.unfiltered {
        let _ = writeln!(out, "  port {port}: port security off, not filtered");
    }
    if !plan.security.ipsets.is_empty() {
        let _ = writeln!(out, "  ipsets (remote group members)");
        let mut t = Table::new(&["NAME", "GROUP", "ETHERTYPE", "MEMBERS"]);
        for s in &plan.security.ipsets {
            t.row(vec![
                s.name.clone(),
                s.group.to_string(),
                format!("{:?}", s.ethertype),
                join(&s.members),
            ]);
        }
        t.write(out, "    ");
    }
}

/// The plan as text.
pub fn text(plan: &NodePlan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Node {} (tunnel endpoint {})",
        plan.node, plan.tunnel_ip
    );
    bridges(plan, &mut out);
    uplinks(plan, &mut out);
    fdb(plan, &mut out);
    neighbours(plan, &mut out);
    ports(plan, &mut out);
    dhcp(plan, &mut out);
    routers(plan, &mut out);
    security(plan, &mut out);
    out
}
