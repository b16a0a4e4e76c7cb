//! Cutting the connections a security-group change no longer allows (see
//! [`neutrino_core::conntrack`]): the port's zone listed through the
//! `conntrack` tool, and each entry its rules no longer admit marked
//! [`CUT_MARK`] over ctnetlink. The tool cannot do the marking: its update
//! command refuses `--zone`, and without it the same addresses and ports
//! in another tenant's zone would be marked too.

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};
use neutrino_core::conntrack::{CUT_MARK, Flow, to_cut};
use neutrino_core::plan::{IpSetPlan, PortFilter};
use nix::errno::Errno;
use nix::sys::socket::AddressFamily;
use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;

use super::iptables::{FirewallError, run};
use super::netns;

/// Marks the entries of `ports` in conntrack zone `zone` of `namespace`
/// (the current one when `None`) that their rules no longer admit, the
/// zone listed once; how many.
pub fn cut(
    namespace: Option<&str>,
    zone: u16,
    ports: &[&PortFilter],
    sets: &BTreeMap<&str, &IpSetPlan>,
) -> Result<usize, FirewallError> {
    let listed = run(
        namespace,
        "conntrack",
        &["-L", "--zone", &zone.to_string()],
        "",
    )?;
    let flows: Vec<Flow> = listed.lines().filter_map(Flow::parse).collect();
    let requests: Vec<Vec<u8>> = (to_cut(ports, sets, &flows).into_iter())
        .zip(1..)
        .map(|(flow, sequence)| mark_request(flow, zone, sequence))
        .collect();
    if requests.is_empty() {
        return Ok(0);
    }
    let failed = |e: io::Error| FirewallError {
        what: format!("marking connections in conntrack zone {zone}"),
        message: e.to_string(),
    };
    netns::run_in(namespace, move || send(&requests))
        .map_err(failed)?
        .map_err(failed)
}

/// Sends `requests` and reads one acknowledgement for each; how many
/// entries were marked. One already gone (timed out, or cut from the
/// other end's port) is fine; one refused does not keep the others from
/// being marked, and is reported after them.
fn send(requests: &[Vec<u8>]) -> io::Result<usize> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut marked = 0;
    let mut refused = Vec::new();
    // In batches, so that the acknowledgements fit the receive buffer.
    for batch in requests.chunks(128) {
        socket.send(&batch.concat(), 0)?;
        let mut acknowledged = 0;
        let mut buffer = Vec::with_capacity(1 << 16);
        while acknowledged < batch.len() {
            buffer.clear();
            socket.recv(&mut buffer, 0)?;
            for code in acknowledgements(&buffer) {
                acknowledged += 1;
                match code {
                    0 => marked += 1,
                    code if -code == Errno::ENOENT as i32 => {}
                    code => refused.push(io::Error::from_raw_os_error(-code)),
                }
            }
        }
    }
    match refused.first() {
        None => Ok(marked),
        Some(first) => Err(io::Error::other(format!(
            "{} of {} entries refused ({first}); {marked} marked",
            refused.len(),
            requests.len()
        ))),
    }
}

/// The error codes of the acknowledgements in a received datagram.
fn acknowledgements(datagram: &[u8]) -> Vec<i32> {
    const NLMSG_ERROR: u16 = 2;
    let mut codes = Vec::new();
    let mut rest = datagram;
    while rest.len() >= 16 {
        let length = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes(rest[4..6].try_into().unwrap());
        if length < 16 || length > rest.len() {
            break;
        }
        if kind == NLMSG_ERROR && length >= 20 {
            codes.push(i32::from_ne_bytes(rest[16..20].try_into().unwrap()));
        }
        rest = &rest[align(length).min(rest.len())..];
    }
    codes
}

fn align(length: usize) -> usize {
    (length + 3) & !3
}

/// Appends an attribute of `kind` holding `payload`.
fn attribute(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    out.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(align(out.len()), 0);
}

/// Appends a nested attribute of `kind` whose content `fill` writes.
fn nested(out: &mut Vec<u8>, kind: u16, fill: impl FnOnce(&mut Vec<u8>)) {
    const NLA_F_NESTED: u16 = 0x8000;
    let mut inner = Vec::new();
    fill(&mut inner);
    attribute(out, kind | NLA_F_NESTED, &inner);
}

/// An update of the entry `flow` names in `zone` that sets [`CUT_MARK`]
/// and keeps the mark's other bits (IPCTNL_MSG_CT_NEW on an existing
/// entry, without NLM_F_CREATE: an entry gone is not made again).
fn mark_request(flow: &Flow, zone: u16, sequence: u32) -> Vec<u8> {
    // include/uapi/linux/netfilter/nfnetlink_conntrack.h
    const CTA_TUPLE_ORIG: u16 = 1;
    const CTA_TUPLE_IP: u16 = 1;
    const CTA_TUPLE_PROTO: u16 = 2;
    const CTA_MARK: u16 = 8;
    const CTA_ZONE: u16 = 18;
    const CTA_MARK_MASK: u16 = 21;
    const CTA_PROTO_NUM: u16 = 1;
    const CTA_PROTO_SRC_PORT: u16 = 2;
    const CTA_PROTO_DST_PORT: u16 = 3;
    const NFNL_SUBSYS_CTNETLINK: u16 = 1;
    const IPCTNL_MSG_CT_NEW: u16 = 0;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_ACK: u16 = 4;

    let (family, v6) = match flow.src {
        IpAddr::V4(_) => (AddressFamily::Inet, false),
        IpAddr::V6(_) => (AddressFamily::Inet6, true),
    };
    // nfgenmsg: the family, version 0, resource 0.
    let mut body = vec![family as u8, 0, 0, 0];
    nested(&mut body, CTA_TUPLE_ORIG, |tuple| {
        nested(tuple, CTA_TUPLE_IP, |ip| {
            let (src, dst) = if v6 { (3, 4) } else { (1, 2) };
            attribute(ip, src, &octets(flow.src));
            attribute(ip, dst, &octets(flow.dst));
        });
        nested(tuple, CTA_TUPLE_PROTO, |proto| {
            attribute(proto, CTA_PROTO_NUM, &[flow.protocol]);
            if let (Some(sport), Some(dport)) = (flow.sport, flow.dport) {
                attribute(proto, CTA_PROTO_SRC_PORT, &sport.to_be_bytes());
                attribute(proto, CTA_PROTO_DST_PORT, &dport.to_be_bytes());
            }
            if let (Some((kind, code)), Some(id)) = (flow.icmp, flow.icmp_id) {
                // CTA_PROTO_ICMP_{ID,TYPE,CODE}, or their ICMPv6 twins.
                let first = if v6 { 7 } else { 4 };
                attribute(proto, first, &id.to_be_bytes());
                attribute(proto, first + 1, &[kind]);
                attribute(proto, first + 2, &[code]);
            }
        });
    });
    attribute(&mut body, CTA_ZONE, &zone.to_be_bytes());
    attribute(&mut body, CTA_MARK, &CUT_MARK.to_be_bytes());
    attribute(&mut body, CTA_MARK_MASK, &CUT_MARK.to_be_bytes());

    let mut message = Vec::with_capacity(16 + body.len());
    message.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    message.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW).to_ne_bytes());
    message.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    message.extend_from_slice(&sequence.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes());
    message.extend_from_slice(&body);
    message
}

fn octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    }
}
