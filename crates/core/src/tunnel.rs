//! Which of a node's addresses its VXLAN tunnels end on, by the rules
//! operators know from Calico's `IP_AUTODETECTION_METHOD` and Flannel's
//! `--iface`: an address given outright, the default route's interface, an
//! interface by name, an address inside given CIDRs, or the address the
//! node reaches a given host from. The adapter reads the host's addresses
//! and asks the kernel for a route; the choice itself is made here.

use ipnet::IpNet;
use regex::Regex;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use neutrino_api::TunnelEndpoint;

/// How the tunnel endpoint is chosen.
#[derive(Clone, Debug)]
pub enum EndpointRule {
    /// This address, which must be one of the node's.
    Address(IpAddr),
    /// The first global address of the default route's interface.
    DefaultRoute,
    /// The first global address of the first interface whose whole name
    /// matches the pattern.
    Interface(Regex),
    /// The first global address inside any of these networks.
    Cidr(Vec<IpNet>),
    /// The source address the kernel's route to this host gives.
    CanReach(String),
}

impl PartialEq for EndpointRule {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

/// A rule that does not parse, with the form it should have.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum RuleError {
    #[error(
        "tunnel endpoint rule {0:?}: write one of default-route, address=IP, interface=NAME-PATTERN, cidr=CIDR[,CIDR...], can-reach=HOST"
    )]
    Unknown(String),
    #[error("tunnel endpoint rule {rule:?}: {message}")]
    Invalid { rule: String, message: String },
}

impl FromStr for EndpointRule {
    type Err = RuleError;

    fn from_str(text: &str) -> Result<Self, RuleError> {
        let invalid = |message: String| RuleError::Invalid {
            rule: text.to_string(),
            message,
        };
        let (method, value) = text.split_once('=').unwrap_or((text, ""));
        let value = value.trim();
        match method.trim() {
            "default-route" if value.is_empty() => Ok(Self::DefaultRoute),
            "address" => value
                .parse()
                .map(Self::Address)
                .map_err(|_| invalid(format!("{value:?} is not an IP address"))),
            "interface" if !value.is_empty() => Regex::new(&format!("^(?:{value})$"))
                .map(Self::Interface)
                .map_err(|e| invalid(format!("not a name pattern: {e}"))),
            "cidr" if !value.is_empty() => value
                .split(',')
                .map(|cidr| {
                    cidr.trim()
                        .parse::<IpNet>()
                        .map(|net| net.trunc())
                        .map_err(|_| invalid(format!("{:?} is not a CIDR", cidr.trim())))
                })
                .collect::<Result<_, _>>()
                .map(Self::Cidr),
            "can-reach" if !value.is_empty() => Ok(Self::CanReach(value.to_string())),
            _ => Err(RuleError::Unknown(text.to_string())),
        }
    }
}

impl fmt::Display for EndpointRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Address(ip) => write!(f, "address={ip}"),
            Self::DefaultRoute => write!(f, "default-route"),
            Self::Interface(pattern) => {
                let anchored = pattern.as_str();
                let inner = &anchored["^(?:".len()..anchored.len() - ")$".len()];
                write!(f, "interface={inner}")
            }
            Self::Cidr(nets) => {
                let nets: Vec<String> = nets.iter().map(ToString::to_string).collect();
                write!(f, "cidr={}", nets.join(","))
            }
            Self::CanReach(host) => write!(f, "can-reach={host}"),
        }
    }
}

/// One global address on one of the host's interfaces, in the kernel's
/// order (by interface index, then as the kernel lists them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostAddress {
    pub interface: String,
    pub index: u32,
    pub address: IpNet,
}

/// What the kernel's route lookup answered: the interface it leaves by and
/// the source address it would use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteHit {
    pub index: u32,
    pub source: Option<IpAddr>,
}

/// Why no endpoint could be chosen.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum EndpointError {
    #[error("tunnel endpoint {rule}: {ip} is not an address of this node")]
    NotOurs { rule: String, ip: IpAddr },
    #[error("tunnel endpoint {rule}: {what}")]
    NotFound { rule: String, what: String },
}

/// Chooses the endpoint `rule` names among `addresses`; `route` is the
/// kernel's answer for the default route or the `can-reach` host.
pub fn choose(
    rule: &EndpointRule,
    addresses: &[HostAddress],
    route: Option<RouteHit>,
) -> Result<(IpAddr, TunnelEndpoint), EndpointError> {
    let found = |hit: &HostAddress| {
        (
            hit.address.addr(),
            TunnelEndpoint {
                rule: rule.to_string(),
                interface: hit.interface.clone(),
            },
        )
    };
    let not_found = |what: String| EndpointError::NotFound {
        rule: rule.to_string(),
        what,
    };
    // IPv4 first: on a dual-stack interface that is what peers expect.
    let first_on = |index: u32| {
        addresses
            .iter()
            .filter(|a| a.index == index)
            .min_by_key(|a| a.address.addr().is_ipv6())
    };
    match rule {
        EndpointRule::Address(ip) => addresses
            .iter()
            .find(|a| a.address.addr() == *ip)
            .map(found)
            .ok_or(EndpointError::NotOurs {
                rule: rule.to_string(),
                ip: *ip,
            }),
        EndpointRule::DefaultRoute => {
            let hit = route.ok_or_else(|| not_found("there is no default route".into()))?;
            first_on(hit.index).map(found).ok_or_else(|| {
                not_found("the default route's interface has no global address".into())
            })
        }
        EndpointRule::CanReach(host) => {
            let hit = route.ok_or_else(|| not_found(format!("no route to {host}")))?;
            hit.source
                .and_then(|source| addresses.iter().find(|a| a.address.addr() == source))
                .or_else(|| first_on(hit.index))
                .map(found)
                .ok_or_else(|| {
                    not_found(format!(
                        "the interface that reaches {host} has no global address"
                    ))
                })
        }
        EndpointRule::Interface(pattern) => {
            let mut matching = addresses.iter().filter(|a| pattern.is_match(&a.interface));
            let first = matching
                .next()
                .ok_or_else(|| not_found("no interface with a global address matches".into()))?;
            Ok(found(first_on(first.index).unwrap_or(first)))
        }
        EndpointRule::Cidr(nets) => addresses
            .iter()
            .find(|a| nets.iter().any(|net| net.contains(&a.address.addr())))
            .map(found)
            .ok_or_else(|| not_found("no address of this node is inside".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Vec<HostAddress> {
        [
            ("eth0", 2, "192.168.1.10/24"),
            ("eth0", 2, "2001:db8::10/64"),
            ("eth1", 3, "2001:db8:1::5/64"),
            ("eth1", 3, "10.0.0.5/24"),
            ("ens4", 4, "10.1.0.7/16"),
        ]
        .into_iter()
        .map(|(interface, index, address)| HostAddress {
            interface: interface.into(),
            index,
            address: address.parse().unwrap(),
        })
        .collect()
    }

    fn pick(rule: &str, route: Option<RouteHit>) -> Result<(IpAddr, String), EndpointError> {
        let rule: EndpointRule = rule.parse().unwrap();
        choose(&rule, &host(), route).map(|(ip, why)| (ip, why.interface))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn rules_parse_and_print_as_written() {
        for rule in [
            "default-route",
            "address=10.0.0.5",
            "interface=eth1",
            "interface=eth1|ens.*",
            "cidr=10.0.0.0/24,10.1.0.0/16",
            "can-reach=10.0.0.1",
            "can-reach=gateway.example",
        ] {
            assert_eq!(rule.parse::<EndpointRule>().unwrap().to_string(), rule);
        }
        assert_eq!(
            "cidr=10.0.0.9/24"
                .parse::<EndpointRule>()
                .unwrap()
                .to_string(),
            "cidr=10.0.0.0/24"
        );
    }

    #[test]
    fn bad_rules_say_what_to_write() {
        let unknown = "eth1".parse::<EndpointRule>().unwrap_err().to_string();
        assert!(unknown.contains("interface=NAME-PATTERN"), "{unknown}");
        let unknown = "interface=".parse::<EndpointRule>().unwrap_err();
        assert_eq!(unknown, RuleError::Unknown("interface=".into()));
        let cidr = "cidr=10.0.0.0/24,10.1/8"
            .parse::<EndpointRule>()
            .unwrap_err();
        assert!(
            cidr.to_string().contains("\"10.1/8\" is not a CIDR"),
            "{cidr}"
        );
        let pattern = "interface=eth(".parse::<EndpointRule>().unwrap_err();
        assert!(
            pattern.to_string().contains("not a name pattern"),
            "{pattern}"
        );
        let address = "address=node-1".parse::<EndpointRule>().unwrap_err();
        assert!(
            address.to_string().contains("not an IP address"),
            "{address}"
        );
    }

    #[test]
    fn an_interface_gives_its_first_ipv4_address() {
        assert_eq!(
            pick("interface=eth1", None),
            Ok((ip("10.0.0.5"), "eth1".into()))
        );
        assert_eq!(
            pick("interface=ens.*", None),
            Ok((ip("10.1.0.7"), "ens4".into()))
        );
        // The whole name must match: eth matches neither eth0 nor eth1.
        assert!(matches!(
            pick("interface=eth", None),
            Err(EndpointError::NotFound { .. })
        ));
    }

    #[test]
    fn a_cidr_gives_the_first_address_inside_it() {
        assert_eq!(
            pick("cidr=10.1.0.0/16,10.0.0.0/8", None),
            Ok((ip("10.0.0.5"), "eth1".into()))
        );
        assert_eq!(
            pick("cidr=2001:db8:1::/48", None),
            Ok((ip("2001:db8:1::5"), "eth1".into()))
        );
        let none = pick("cidr=172.16.0.0/12", None).unwrap_err().to_string();
        assert_eq!(
            none,
            "tunnel endpoint cidr=172.16.0.0/12: no address of this node is inside"
        );
    }

    #[test]
    fn routes_give_the_default_and_can_reach_endpoints() {
        let via_eth0 = RouteHit {
            index: 2,
            source: None,
        };
        assert_eq!(
            pick("default-route", Some(via_eth0)),
            Ok((ip("192.168.1.10"), "eth0".into()))
        );
        let via_ens4 = RouteHit {
            index: 4,
            source: Some(ip("10.1.0.7")),
        };
        assert_eq!(
            pick("can-reach=10.1.0.1", Some(via_ens4)),
            Ok((ip("10.1.0.7"), "ens4".into()))
        );
        let error = pick("can-reach=10.9.9.9", None).unwrap_err().to_string();
        assert_eq!(
            error,
            "tunnel endpoint can-reach=10.9.9.9: no route to 10.9.9.9"
        );
        let error = pick("default-route", None).unwrap_err().to_string();
        assert!(error.contains("no default route"), "{error}");
    }

    #[test]
    fn an_address_given_outright_must_be_the_nodes() {
        assert_eq!(
            pick("address=10.1.0.7", None),
            Ok((ip("10.1.0.7"), "ens4".into()))
        );
        assert_eq!(
            pick("address=10.1.0.8", None),
            Err(EndpointError::NotOurs {
                rule: "address=10.1.0.8".into(),
                ip: ip("10.1.0.8")
            })
        );
    }
}
