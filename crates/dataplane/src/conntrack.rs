//! Cutting the connections a security-group change no longer allows (see
//! [`neutrino_core::conntrack`]), through the `conntrack` tool: the port's
//! zone listed, and each entry its rules no longer admit deleted.

use neutrino_core::conntrack::{Flow, to_cut};
use neutrino_core::plan::{IpSetPlan, PortFilter};
use std::collections::BTreeMap;

use super::iptables::{FirewallError, run};

/// Deletes the entries of `port` in conntrack zone `zone` of `namespace`
/// (the current one when `None`) that its rules no longer admit; how many.
pub fn cut(
    namespace: Option<&str>,
    zone: u16,
    port: &PortFilter,
    sets: &BTreeMap<&str, &IpSetPlan>,
) -> Result<usize, FirewallError> {
    let zone = zone.to_string();
    let listed = run(namespace, "conntrack", &["-L", "--zone", &zone], "")?;
    let flows: Vec<Flow> = listed.lines().filter_map(Flow::parse).collect();
    let mut cut = 0;
    for flow in to_cut(port, sets, &flows) {
        let (protocol, src, dst) = (
            match flow.protocol {
                1 => "icmp".to_string(),
                6 => "tcp".into(),
                17 => "udp".into(),
                58 => "icmpv6".into(),
                132 => "sctp".into(),
                n => n.to_string(),
            },
            flow.src.to_string(),
            flow.dst.to_string(),
        );
        let mut args = vec![
            "-D", "--zone", &zone, "-p", &protocol, "-s", &src, "-d", &dst,
        ];
        let (sport, dport) = (
            flow.sport.map(|p| p.to_string()),
            flow.dport.map(|p| p.to_string()),
        );
        if let (Some(sport), Some(dport)) = (&sport, &dport) {
            args.extend(["--sport", sport, "--dport", dport]);
        }
        // Gone already (it timed out, or the other end's port cut it) is
        // fine: conntrack says so by failing.
        if run(namespace, "conntrack", &args, "").is_ok() {
            cut += 1;
        }
    }
    Ok(cut)
}
