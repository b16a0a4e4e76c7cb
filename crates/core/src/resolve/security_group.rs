//! Security groups: rules parsed into matches, remote groups checked, and
//! Neutron's implicit `default` group.

use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};

use super::port::DEFAULT_GROUP;
use super::{PortMatch, Remote, Resolution, RuleState, SecurityGroupState, Verdict};
use crate::problem::Problems;
use crate::{Key, Kind, ObjectId, Reason, Snapshot};
use neutrino_api::{Direction, EtherType, SecurityGroupRule};

/// IP protocol numbers of the protocols rules may name.
pub fn protocol_number(name: &str) -> Option<u8> {
    match name {
        "icmp" => Some(1),
        "tcp" => Some(6),
        "udp" => Some(17),
        "icmpv6" | "ipv6-icmp" => Some(58),
        "sctp" => Some(132),
        number => number.parse().ok(),
    }
}

pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;
const WITH_PORTS: [u8; 3] = [6, 17, 132];

fn check_rule(
    owner: &Key,
    rule: &SecurityGroupRule,
    field: &str,
    snapshot: &Snapshot,
    problems: &mut Problems,
) -> Option<RuleState> {
    let before = problems.len();
    let protocol = match rule.protocol.as_deref() {
        None => None,
        Some(name) => match protocol_number(name) {
            Some(n) => Some(n),
            None => {
                problems.push(
                    format!("{field}.protocol"),
                    Reason::InvalidSpec,
                    format!("{name:?} is not tcp, udp, sctp, icmp, icmpv6 or a number 0-255"),
                );
                return None;
            }
        },
    };
    match (protocol, rule.ethertype) {
        (Some(ICMP), EtherType::IPv6) => problems.push(
            format!("{field}.protocol"),
            Reason::InvalidSpec,
            "icmp needs ethertype IPv4; use icmpv6 for IPv6",
        ),
        (Some(ICMPV6), EtherType::IPv4) => problems.push(
            format!("{field}.protocol"),
            Reason::InvalidSpec,
            "icmpv6 needs ethertype IPv6",
        ),
        _ => {}
    }
    let ports = match (rule.port_range_min, rule.port_range_max, protocol) {
        (None, None, _) => None,
        (min, max, Some(p)) if WITH_PORTS.contains(&p) => {
            let (min, max) = (min.or(max).unwrap_or(0), max.or(min).unwrap_or(0));
            if min > max {
                problems.push(
                    format!("{field}.portRangeMin"),
                    Reason::InvalidSpec,
                    format!("portRangeMin {min} is above portRangeMax {max}"),
                );
            } else if min == 0 || max > 65535 {
                problems.push(
                    format!("{field}.portRangeMin"),
                    Reason::InvalidSpec,
                    format!("ports {min}-{max} are not within 1-65535"),
                );
            }
            Some(PortMatch::Ports(min as u16, max as u16))
        }
        (min, max, Some(ICMP | ICMPV6)) => match (min, max) {
            (Some(t), code) if t <= 255 && code.is_none_or(|c| c <= 255) => {
                Some(PortMatch::Icmp(t as u8, code.map(|c| c as u8)))
            }
            _ => {
                problems.push(
                    format!("{field}.portRangeMin"),
                    Reason::InvalidSpec,
                    "for icmp, portRangeMin is the type (0-255) and portRangeMax the code (0-255); a code needs a type",
                );
                None
            }
        },
        _ => {
            problems.push(
                format!("{field}.portRangeMin"),
                Reason::InvalidSpec,
                "a port range needs protocol tcp, udp or sctp (or icmp, for type and code)",
            );
            None
        }
    };
    let remote = match (&rule.remote_ip_prefix, &rule.remote_group) {
        (Some(_), Some(_)) => {
            problems.push(
                format!("{field}.remoteGroup"),
                Reason::InvalidSpec,
                "remoteIPPrefix and remoteGroup are mutually exclusive",
            );
            Remote::Any
        }
        (Some(prefix), None) => match prefix.parse::<IpNet>() {
            Err(_) => {
                problems.push(
                    format!("{field}.remoteIPPrefix"),
                    Reason::InvalidSpec,
                    format!("{prefix:?} is not a CIDR such as 0.0.0.0/0"),
                );
                Remote::Any
            }
            Ok(net) if net.addr().is_ipv4() != (rule.ethertype == EtherType::IPv4) => {
                problems.push(
                    format!("{field}.remoteIPPrefix"),
                    Reason::InvalidSpec,
                    format!("{net} is not of ethertype {:?}", rule.ethertype),
                );
                Remote::Any
            }
            Ok(net) => Remote::Cidr(net.trunc()),
        },
        (None, Some(group)) => {
            let target = owner.reference(group);
            if group != DEFAULT_GROUP && !snapshot.security_groups.contains_key(&target) {
                problems.push(
                    format!("{field}.remoteGroup"),
                    Reason::NotFound,
                    format!("SecurityGroup {target} does not exist"),
                );
            }
            Remote::Group(target)
        }
        (None, None) => Remote::Any,
    };
    (problems.len() == before).then_some(RuleState {
        direction: rule.direction,
        ethertype: rule.ethertype,
        protocol,
        ports,
        remote,
    })
}

/// Checks every security group.
pub fn check(snapshot: &Snapshot) -> BTreeMap<Key, Verdict<SecurityGroupState>> {
    snapshot
        .security_groups
        .iter()
        .map(|(key, group)| {
            let mut problems = Problems::new(ObjectId::new(Kind::SecurityGroup, key.clone()));
            let rules: Vec<RuleState> = group
                .spec
                .rules
                .iter()
                .enumerate()
                .filter_map(|(i, rule)| {
                    check_rule(
                        key,
                        rule,
                        &format!("spec.rules[{i}]"),
                        snapshot,
                        &mut problems,
                    )
                })
                .collect();
            (
                key.clone(),
                problems.finish(SecurityGroupState {
                    rules,
                    implicit: false,
                }),
            )
        })
        .collect()
}

/// Neutron's default group: all egress; ingress from members of the group.
pub(crate) fn implicit_default(key: &Key) -> SecurityGroupState {
    let rule = |direction, ethertype, remote| RuleState {
        direction,
        ethertype,
        protocol: None,
        ports: None,
        remote,
    };
    let members = Remote::Group(key.clone());
    SecurityGroupState {
        rules: vec![
            rule(Direction::Ingress, EtherType::IPv4, members.clone()),
            rule(Direction::Ingress, EtherType::IPv6, members),
            rule(Direction::Egress, EtherType::IPv4, Remote::Any),
            rule(Direction::Egress, EtherType::IPv6, Remote::Any),
        ],
        implicit: true,
    }
}

/// Counts each group's ready ports, and adds the implicit `default` group
/// of every namespace where a port or a rule uses it and no object
/// defines it.
pub fn count_members_and_add_implicit_defaults(resolution: &mut Resolution) {
    let mut members: BTreeMap<Key, usize> = BTreeMap::new();
    for (_, port) in resolution.ready_ports() {
        for group in &port.security_groups {
            *members.entry(group.clone()).or_default() += 1;
        }
    }
    let mut used: BTreeSet<Key> = members.keys().cloned().collect();
    resolution.group_members = members;
    for state in resolution
        .security_groups
        .values()
        .filter_map(|v| v.as_ref().ok())
    {
        for rule in &state.rules {
            if let Remote::Group(group) = &rule.remote {
                used.insert(group.clone());
            }
        }
    }
    for key in used {
        if key.name == DEFAULT_GROUP && !resolution.security_groups.contains_key(&key) {
            let state = implicit_default(&key);
            resolution.security_groups.insert(key, Ok(state));
        }
    }
}
