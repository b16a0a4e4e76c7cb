//! The connections a security-group change no longer allows. The port
//! chains let established connections through before any rule, so a rule
//! taken away would leave the connections it admitted flowing. The agent
//! marks their conntrack entries with [`CUT_MARK`] instead, and each
//! bridge's chain drops the packets of marked entries first, in both
//! directions, as Neutron's OVS firewall does. Deleting the entries would
//! not do: conntrack picks a TCP connection up again mid-stream, so the
//! port's next segment out would open a new entry that its egress rules
//! allow, and the peer's replies would flow again. Which entries are cut
//! is decided here, over values: the entries as `conntrack -L` prints them
//! and the port's filter as the new plan has it.

use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::plan::{FilterRemote, FilterRule, IpSetPlan, PortFilter, SecurityPlan};
use crate::resolve::PortMatch;
use neutrino_api::EtherType;

/// The bit of a conntrack entry's mark that says its connection was cut:
/// one nothing else sets on the entries of neutrino's zones.
pub const CUT_MARK: u32 = 0x0200_0000;

/// One conntrack entry, in its original direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    pub protocol: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    /// ICMP type and code, for ICMP.
    pub icmp: Option<(u8, u8)>,
    /// The ICMP echo identifier, which ICMP entries are keyed by too.
    pub icmp_id: Option<u16>,
    pub mark: u32,
}

impl Flow {
    /// An entry as `conntrack -L` prints it: the protocol's name and
    /// number, then the original direction's `key=value` fields, then the
    /// reply's; `None` for a line that does not read.
    pub fn parse(line: &str) -> Option<Flow> {
        let mut words = line.split_whitespace();
        let _name = words.next()?;
        let protocol: u8 = words.next()?.parse().ok()?;
        let mut field = BTreeMap::new();
        for word in words {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            // The reply direction repeats the keys: the first is the original.
            field.entry(key).or_insert(value);
        }
        let number = |key: &str| field.get(key).and_then(|v| v.parse::<u16>().ok());
        let byte = |key: &str| field.get(key).and_then(|v| v.parse::<u8>().ok());
        let icmp = match (byte("type"), byte("code")) {
            (Some(kind), Some(code)) => Some((kind, code)),
            _ => None,
        };
        Some(Flow {
            protocol,
            src: field.get("src")?.parse().ok()?,
            dst: field.get("dst")?.parse().ok()?,
            sport: number("sport"),
            dport: number("dport"),
            icmp,
            icmp_id: number("id"),
            mark: field.get("mark").and_then(|m| m.parse().ok()).unwrap_or(0),
        })
    }
}

/// Whether `flow` is sent or received by one of `port`'s addresses.
fn involves(port: &PortFilter, flow: &Flow) -> bool {
    let own = |ip: &IpAddr| port.allowed_sources.iter().any(|s| s.cidr.contains(ip));
    own(&flow.src) || own(&flow.dst)
}

/// The flows among `flows` (one zone's, as listed) that one of `ports`
/// sends or receives and its rules no longer admit, and that are not cut
/// already: the ones to mark, each once.
pub fn to_cut<'a>(
    ports: &[&PortFilter],
    sets: &BTreeMap<&str, &IpSetPlan>,
    flows: impl IntoIterator<Item = &'a Flow>,
) -> Vec<&'a Flow> {
    (flows.into_iter())
        .filter(|flow| flow.mark & CUT_MARK == 0)
        .filter(|flow| {
            (ports.iter()).any(|port| involves(port, flow) && !allowed(port, sets, flow))
        })
        .collect()
}

/// Whether the rules of `port` still admit `flow`: as it came in, if the
/// port is its destination, as it went out, if the port is its source. A
/// flow the port neither sends nor receives is none of its business.
pub fn allowed(port: &PortFilter, sets: &BTreeMap<&str, &IpSetPlan>, flow: &Flow) -> bool {
    let own = |ip: &IpAddr| port.allowed_sources.iter().any(|s| s.cidr.contains(ip));
    let admits = |rules: &[FilterRule], remote: &IpAddr| {
        rules
            .iter()
            .any(|rule| rule_admits(rule, sets, flow, remote))
    };
    if own(&flow.dst) && !admits(&port.ingress, &flow.src) {
        return false;
    }
    if own(&flow.src) && !admits(&port.egress, &flow.dst) {
        return false;
    }
    true
}

fn rule_admits(
    rule: &FilterRule,
    sets: &BTreeMap<&str, &IpSetPlan>,
    flow: &Flow,
    remote: &IpAddr,
) -> bool {
    let family = match remote {
        IpAddr::V4(_) => EtherType::IPv4,
        IpAddr::V6(_) => EtherType::IPv6,
    };
    if rule.ethertype != family {
        return false;
    }
    if rule.protocol.is_some_and(|p| p != flow.protocol) {
        return false;
    }
    let ports = match rule.ports {
        None => true,
        Some(PortMatch::Ports(min, max)) => flow.dport.is_some_and(|p| (min..=max).contains(&p)),
        Some(PortMatch::Icmp(kind, code)) => flow
            .icmp
            .is_some_and(|(k, c)| k == kind && code.is_none_or(|code| code == c)),
    };
    let peer = match &rule.remote {
        FilterRemote::Any => true,
        FilterRemote::Cidr(net) => net.contains(remote),
        FilterRemote::IpSet(name) => (sets.get(name.as_str()))
            .is_some_and(|set| set.members.iter().any(|m: &IpNet| m.contains(remote))),
    };
    ports && peer
}

/// The ports of `new` whose rules may admit less than in `old`: their
/// rules changed, or a remote group they name lost members. A port new to
/// the node has no connections to cut.
pub fn narrowed<'a>(old: &SecurityPlan, new: &'a SecurityPlan) -> Vec<&'a PortFilter> {
    let before: BTreeMap<&str, &PortFilter> = (old.ports.iter())
        .map(|p| (p.interface.as_str(), p))
        .collect();
    let members = |plan: &SecurityPlan| -> BTreeMap<String, Vec<IpNet>> {
        (plan.ipsets.iter())
            .map(|s| (s.name.clone(), s.members.clone()))
            .collect()
    };
    let (was, is) = (members(old), members(new));
    let shrunk = |set: &str| {
        let now = is.get(set).cloned().unwrap_or_default();
        (was.get(set).into_iter().flatten()).any(|m| !now.contains(m))
    };
    let names_shrunk = |port: &PortFilter| {
        (port.ingress.iter().chain(&port.egress)).any(|rule| match &rule.remote {
            FilterRemote::IpSet(set) => shrunk(set),
            _ => false,
        })
    };
    (new.ports.iter())
        .filter(|port| match before.get(port.interface.as_str()) {
            None => false,
            Some(old) => {
                old.ingress != port.ingress || old.egress != port.egress || names_shrunk(port)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Key;
    use crate::allocate::Mac;
    use crate::plan::AllowedSource;

    fn rule(protocol: Option<u8>, ports: Option<PortMatch>, remote: FilterRemote) -> FilterRule {
        FilterRule {
            ethertype: EtherType::IPv4,
            protocol,
            ports,
            remote,
            group: Key::new("t", "g"),
        }
    }

    fn port(ingress: Vec<FilterRule>, egress: Vec<FilterRule>) -> PortFilter {
        PortFilter {
            port: Key::new("t", "server"),
            interface: "np-server".into(),
            allowed_sources: vec![AllowedSource {
                mac: Mac([0xfa, 0x16, 0x3e, 0, 0, 5]),
                cidr: "10.0.0.22/32".parse().unwrap(),
            }],
            ingress,
            egress,
        }
    }

    fn flow(line: &str) -> Flow {
        Flow::parse(line).unwrap()
    }

    const TCP_IN: &str = "tcp      6 431999 ESTABLISHED src=10.0.0.21 dst=10.0.0.22 sport=40000 dport=5000 src=10.0.0.22 dst=10.0.0.21 sport=5000 dport=40000 [ASSURED] mark=0 zone=7 use=1";
    const PING_IN: &str = "icmp     1 29 src=10.0.0.21 dst=10.0.0.22 type=8 code=0 id=7 src=10.0.0.22 dst=10.0.0.21 type=0 code=0 id=7 mark=0 zone=7 use=1";
    const TCP_OUT: &str = "tcp      6 431999 ESTABLISHED src=10.0.0.22 dst=192.0.2.9 sport=41000 dport=443 src=192.0.2.9 dst=10.0.0.22 sport=443 dport=41000 [ASSURED] mark=0 zone=7 use=1";

    #[test]
    fn an_entry_reads_in_its_original_direction() {
        assert_eq!(
            flow(TCP_IN),
            Flow {
                protocol: 6,
                src: "10.0.0.21".parse().unwrap(),
                dst: "10.0.0.22".parse().unwrap(),
                sport: Some(40000),
                dport: Some(5000),
                icmp: None,
                icmp_id: None,
                mark: 0,
            }
        );
        assert_eq!(flow(PING_IN).icmp, Some((8, 0)));
        assert_eq!(flow(PING_IN).icmp_id, Some(7));
        assert_eq!(
            Flow::parse("conntrack v1.4.7 (conntrack-tools): 2 flow entries"),
            None
        );
    }

    #[test]
    fn a_flow_stays_while_a_rule_admits_it_in_its_direction() {
        let tcp = rule(
            Some(6),
            Some(PortMatch::Ports(5000, 5000)),
            FilterRemote::Cidr("10.0.0.0/24".parse().unwrap()),
        );
        let ping = rule(Some(1), Some(PortMatch::Icmp(8, None)), FilterRemote::Any);
        let out = rule(None, None, FilterRemote::Any);
        let sets = BTreeMap::new();
        let both = port(vec![tcp.clone(), ping.clone()], vec![out.clone()]);
        for line in [TCP_IN, PING_IN, TCP_OUT] {
            assert!(allowed(&both, &sets, &flow(line)), "{line}");
        }
        let no_tcp = port(vec![ping], vec![out.clone()]);
        assert!(!allowed(&no_tcp, &sets, &flow(TCP_IN)));
        assert!(allowed(&no_tcp, &sets, &flow(PING_IN)));
        let no_egress = port(vec![tcp], Vec::new());
        assert!(!allowed(&no_egress, &sets, &flow(TCP_OUT)));
        assert!(allowed(&no_egress, &sets, &flow(TCP_IN)));
        // Of a zone's flows, only the port's own that its rules refuse go.
        let others = flow(&TCP_IN.replace("dst=10.0.0.22", "dst=10.0.0.99"));
        let listed = [flow(TCP_IN), flow(PING_IN), flow(TCP_OUT), others];
        assert_eq!(to_cut(&[&no_tcp], &sets, &listed), vec![&listed[0]]);
        // A flow between two ports of the zone that both cut is cut once.
        let mut client = no_tcp.clone();
        client.allowed_sources[0].cidr = "10.0.0.21/32".parse().unwrap();
        assert_eq!(
            to_cut(&[&no_tcp, &client], &sets, &listed),
            vec![&listed[0]]
        );
        // One cut already is not cut again.
        let marked = flow(&TCP_IN.replace("mark=0", &format!("mark={}", CUT_MARK | 1)));
        assert_eq!(marked.mark, CUT_MARK | 1);
        assert!(to_cut(&[&no_tcp], &sets, [&marked]).is_empty());
    }

    #[test]
    fn a_remote_group_admits_its_members_only() {
        let set = IpSetPlan {
            name: "nt4-web".into(),
            group: Key::new("t", "web"),
            ethertype: EtherType::IPv4,
            members: vec!["10.0.0.21/32".parse().unwrap()],
        };
        let sets = BTreeMap::from([("nt4-web", &set)]);
        let from_web = port(
            vec![rule(Some(6), None, FilterRemote::IpSet("nt4-web".into()))],
            Vec::new(),
        );
        assert!(allowed(&from_web, &sets, &flow(TCP_IN)));
        assert!(!allowed(&from_web, &BTreeMap::new(), &flow(TCP_IN)));
    }

    #[test]
    fn only_ports_whose_rules_may_admit_less_are_looked_at() {
        let tcp = rule(Some(6), None, FilterRemote::IpSet("nt4-web".into()));
        let set = |members: &[&str]| IpSetPlan {
            name: "nt4-web".into(),
            group: Key::new("t", "web"),
            ethertype: EtherType::IPv4,
            members: members.iter().map(|m| m.parse().unwrap()).collect(),
        };
        let plan = |rules: Vec<FilterRule>, members: &[&str]| SecurityPlan {
            ipsets: vec![set(members)],
            ports: vec![port(rules, Vec::new())],
            unfiltered: Vec::new(),
        };
        let old = plan(vec![tcp.clone()], &["10.0.0.21/32", "10.0.0.23/32"]);
        assert!(narrowed(&old, &old).is_empty());
        assert!(
            narrowed(&SecurityPlan::default(), &old).is_empty(),
            "a new port"
        );
        assert_eq!(
            narrowed(&old, &plan(Vec::new(), &["10.0.0.21/32", "10.0.0.23/32"])).len(),
            1
        );
        assert_eq!(
            narrowed(&old, &plan(vec![tcp.clone()], &["10.0.0.21/32"])).len(),
            1
        );
        let grown = plan(vec![tcp], &["10.0.0.21/32", "10.0.0.23/32", "10.0.0.24/32"]);
        assert!(narrowed(&old, &grown).is_empty(), "a group that only grew");
    }

    #[test]
    fn a_plan_recorded_for_the_next_agent_reads_back_the_same() {
        let plan = SecurityPlan {
            ipsets: vec![IpSetPlan {
                name: "nt4-web".into(),
                group: Key::new("t", "web"),
                ethertype: EtherType::IPv4,
                members: vec!["10.0.0.21/32".parse().unwrap()],
            }],
            ports: vec![port(
                vec![
                    rule(Some(6), Some(PortMatch::Ports(80, 443)), FilterRemote::Any),
                    rule(Some(1), Some(PortMatch::Icmp(8, None)), FilterRemote::Any),
                    rule(None, None, FilterRemote::IpSet("nt4-web".into())),
                ],
                vec![rule(
                    None,
                    None,
                    FilterRemote::Cidr("0.0.0.0/0".parse().unwrap()),
                )],
            )],
            unfiltered: vec![Key::new("t", "open")],
        };
        let text = serde_json::to_string(&plan).unwrap();
        assert_eq!(serde_json::from_str::<SecurityPlan>(&text).unwrap(), plan);
    }
}
