//! Ports: addresses, MAC, binding, security groups and address pairs.

use crate::config::Nodes;
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};

use super::addresses::{Addresses, Request, Wanted, claim_problem};
use super::claims::ClaimIndex;
use super::{Arrival, PortState, Resolution, Subnets, Verdict, arrival, lookup};
use crate::allocate::{Holder, Mac};
use crate::ident::{is_dns_label, is_dns_subdomain};
use crate::problem::Problems;
use crate::{Key, Kind, ObjectId, Problem, Reason, Snapshot};
use neutrino_api::Port;

/// The name of the group a port with no groups gets.
pub const DEFAULT_GROUP: &str = "default";

/// A port that passed its checks, waiting for its addresses and MAC.
pub struct PortDraft {
    network: Key,
    /// One entry per address: candidate subnets, what is wanted, the field to blame.
    wants: Vec<(Vec<Key>, Wanted, String)>,
    mac: Option<Mac>,
    mtu: u32,
    node: Option<String>,
    hostname: String,
    port_security: bool,
    security_groups: Vec<Key>,
    allowed_pairs: Vec<(IpNet, Option<Mac>)>,
    /// Addresses SLAAC makes from the MAC, known once the MAC is.
    autoconfigured: Vec<Autoconfigured>,
    arrival: Arrival,
}

/// An address on a SLAAC subnet: the EUI-64 of the port's MAC in its /64.
#[derive(Clone, Debug)]
struct Autoconfigured {
    /// Where it goes among the port's addresses.
    position: usize,
    subnet: Key,
    prefix: Ipv6Addr,
    field: String,
    /// The address `spec.fixedIPs` asked for, which must be that one.
    requested: Option<IpAddr>,
}

/// What a port already holds: its claims first (on a cluster they are the
/// truth), then what its status recorded. Each is handed out once.
struct Recorded {
    addresses: Vec<(Key, IpAddr)>,
    used: BTreeSet<usize>,
}

impl Recorded {
    fn of(key: &Key, port: &Port, claims: &ClaimIndex) -> Self {
        let mut addresses: Vec<(Key, IpAddr)> =
            claims.addresses_of(&Holder::Port(key.clone())).collect();
        for held in port
            .status
            .iter()
            .flat_map(|s| &s.fixed_ips)
            .filter_map(|a| Some((key.reference(&a.subnet), a.ip_address.parse().ok()?)))
        {
            if !addresses.contains(&held) {
                addresses.push(held);
            }
        }
        Self {
            addresses,
            used: BTreeSet::new(),
        }
    }

    /// The address it holds on one of `candidates`, as what is wanted.
    fn take(&mut self, candidates: &[Key]) -> Wanted {
        let found = self
            .addresses
            .iter()
            .enumerate()
            .find(|(i, (s, _))| candidates.contains(s) && !self.used.contains(i));
        match found {
            Some((i, (_, address))) => {
                let address = *address;
                self.used.insert(i);
                Wanted::Exact {
                    address,
                    recorded: true,
                }
            }
            None => Wanted::Any,
        }
    }
}

/// One want per address: what `spec.fixedIPs` asks for, or, without any,
/// one address of each family from the network's subnets.
#[allow(clippy::too_many_arguments)]
fn wanted_addresses(
    key: &Key,
    port: &Port,
    snapshot: &Snapshot,
    subnets: &Subnets,
    network_key: &Key,
    recorded: &mut Recorded,
    id: &ObjectId,
    problems: &mut Problems,
    autoconfigured: &mut Vec<Autoconfigured>,
) -> Vec<(Vec<Key>, Wanted, String)> {
    let spec = &port.spec;
    let mut wants = Vec::new();
    let mut seen = BTreeSet::new();
    let slaac = |key: &Key| -> Option<Ipv6Addr> {
        let subnet = subnets.verdicts.get(key)?.as_ref().ok()?;
        match subnet.cidr.network() {
            IpAddr::V6(prefix) if subnet.autoconfigured() => Some(prefix),
            _ => None,
        }
    };
    for (i, fixed) in spec.fixed_ips.iter().enumerate() {
        let field = format!("spec.fixedIPs[{i}]");
        let subnet_key = key.reference(&fixed.subnet);
        let subnet = match lookup(
            snapshot,
            subnets,
            Kind::Subnet,
            &subnet_key,
            id,
            &format!("{field}.subnet"),
        ) {
            Ok(s) => s,
            Err(p) => {
                problems.add(p);
                continue;
            }
        };
        if subnet.network != *network_key {
            problems.push(
                format!("{field}.subnet"),
                Reason::InvalidSpec,
                format!(
                    "subnet {subnet_key} is on network {}, not on the port's network {network_key}",
                    subnet.network
                ),
            );
            continue;
        }
        if let Some(prefix) = slaac(&subnet_key) {
            if autoconfigured.iter().any(|a| a.subnet == subnet_key) {
                problems.push(
                    format!("{field}.subnet"),
                    Reason::InvalidSpec,
                    format!("subnet {subnet_key} is listed twice; SLAAC gives a port one address there, the EUI-64 of its MAC"),
                );
                continue;
            }
            let requested = fixed.ip_address.as_deref();
            let parsed = requested.map(str::parse::<IpAddr>);
            if let Some(Err(_)) = parsed {
                let text = requested.unwrap_or_default();
                let message = format!("{text:?} is not an IP address");
                problems.push(format!("{field}.ipAddress"), Reason::InvalidSpec, message);
                continue;
            }
            autoconfigured.push(Autoconfigured {
                position: wants.len() + autoconfigured.len(),
                subnet: subnet_key,
                prefix,
                field: format!("{field}.ipAddress"),
                requested: parsed.and_then(Result::ok),
            });
            continue;
        }
        match fixed.ip_address.as_deref() {
            Some(text) => {
                let field = format!("{field}.ipAddress");
                match text.parse::<IpAddr>() {
                    Err(_) => problems.push(
                        &field,
                        Reason::InvalidSpec,
                        format!("{text:?} is not an IP address"),
                    ),
                    Ok(a) if !subnet.cidr.contains(&a) => problems.push(
                        &field,
                        Reason::OutOfRange,
                        format!("{a} is outside subnet {subnet_key} ({})", subnet.cidr),
                    ),
                    Ok(a) if !seen.insert(a) => {
                        problems.push(&field, Reason::InvalidSpec, format!("{a} is listed twice"))
                    }
                    Ok(address) => wants.push((
                        vec![subnet_key],
                        Wanted::Exact {
                            address,
                            recorded: false,
                        },
                        field,
                    )),
                }
            }
            None => {
                let wanted = recorded.take(std::slice::from_ref(&subnet_key));
                wants.push((vec![subnet_key], wanted, field));
            }
        }
    }
    if spec.fixed_ips.is_empty() {
        // As in Neutron: one address of each family, from the first subnet
        // of the network that has one left.
        // An address on every SLAAC subnet too: the guest configures
        // each one it hears advertised.
        for v4 in [true, false] {
            let (auto, candidates): (Vec<Key>, Vec<Key>) =
                (subnets.of(network_key, v4).into_iter()).partition(|k| slaac(k).is_some());
            for subnet in auto {
                autoconfigured.push(Autoconfigured {
                    position: wants.len() + autoconfigured.len(),
                    prefix: slaac(&subnet).expect("partitioned on it"),
                    subnet,
                    field: "spec.network".into(),
                    requested: None,
                });
            }
            if candidates.is_empty() {
                continue;
            }
            let wanted = recorded.take(&candidates);
            wants.push((candidates, wanted, "spec.network".into()));
        }
    }
    wants
}

/// `spec.macAddress`, if given and a unicast address.
fn requested_mac(port: &Port, problems: &mut Problems) -> Option<Mac> {
    let text = port.spec.mac_address.as_deref()?;
    match text.parse::<Mac>() {
        Ok(mac) if mac.is_unicast() => Some(mac),
        Ok(mac) => {
            problems.push(
                "spec.macAddress",
                Reason::InvalidSpec,
                format!("{mac} is a multicast address"),
            );
            None
        }
        Err(e) => {
            problems.push("spec.macAddress", Reason::InvalidSpec, e.to_string());
            None
        }
    }
}

/// The names a port gives its workload and its Secret must be ones the
/// workload and the API server take.
fn check_names(port: &Port, problems: &mut Problems) {
    if let Some(hostname) = &port.spec.hostname
        && !is_dns_label(hostname)
    {
        problems.push(
            "spec.hostname",
            Reason::InvalidSpec,
            format!(
                "{hostname:?} is not a DNS label (lowercase letters, digits and '-', at most 63)"
            ),
        );
    }
    if let Some(secret) = &port.spec.metadata_secret_name
        && !is_dns_subdomain(secret)
    {
        problems.push(
            "spec.metadataSecretName",
            Reason::InvalidSpec,
            format!("{secret:?} is not the name of a Secret (a DNS subdomain)"),
        );
    }
}

/// `spec.nodeName` must be a known node, with an interface on the
/// network's physical network if it has one.
fn check_binding(
    port: &Port,
    nodes: &Nodes,
    physical_network: Option<&String>,
    network_key: &Key,
    problems: &mut Problems,
) {
    let Some(node) = &port.spec.node_name else {
        return;
    };
    match nodes.get(node) {
        None => {
            // A few names say what nodes look like; thousands say nothing more.
            const SHOWN: usize = 10;
            let mut known: Vec<&str> = nodes
                .list
                .iter()
                .take(SHOWN)
                .map(|n| n.name.as_str())
                .collect();
            let more = nodes.list.len().saturating_sub(SHOWN);
            let rest = format!("and {more} more");
            if more > 0 {
                known.push(&rest);
            }
            problems.push(
                "spec.nodeName",
                Reason::UnknownNode,
                format!(
                    "node {node} is not known (known nodes: {})",
                    known.join(", ")
                ),
            );
        }
        Some(n) => {
            if let Some(physnet) = physical_network
                && !n.physical_interfaces.contains_key(physnet)
            {
                problems.push(
                    "spec.nodeName",
                    Reason::UnknownNode,
                    format!("node {node} has no interface on physical network {physnet}, which network {network_key} needs"),
                );
            }
        }
    }
}

/// The port's security groups (the namespace's `default` when it names
/// none), each checked to exist unless it is the implicit default.
fn security_groups(
    key: &Key,
    port: &Port,
    snapshot: &Snapshot,
    resolution: &Resolution,
    id: &ObjectId,
    problems: &mut Problems,
) -> Vec<Key> {
    let spec = &port.spec;
    if !spec.port_security && !spec.security_groups.is_empty() {
        problems.push(
            "spec.securityGroups",
            Reason::InvalidSpec,
            "security groups need portSecurity: true",
        );
    }
    if !spec.port_security && !spec.allowed_address_pairs.is_empty() {
        problems.push(
            "spec.allowedAddressPairs",
            Reason::InvalidSpec,
            "allowed address pairs need portSecurity: true",
        );
    }
    let names: Vec<&str> = if !spec.port_security {
        Vec::new()
    } else if spec.security_groups.is_empty() {
        vec![DEFAULT_GROUP]
    } else {
        spec.security_groups.iter().map(String::as_str).collect()
    };
    let mut groups = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        if let Some((namespace, _)) = name.split_once('/') {
            problems.push(
                format!("spec.securityGroups[{i}]"),
                Reason::OtherNamespace,
                format!(
                    "{name} is in namespace {namespace}: a port's security groups are its own namespace's ({})",
                    key.namespace
                ),
            );
            continue;
        }
        let group = key.reference(name);
        let implicit_default =
            name == DEFAULT_GROUP && !snapshot.security_groups.contains_key(&group);
        if !implicit_default {
            let field = format!("spec.securityGroups[{i}]");
            if let Err(p) = lookup(
                snapshot,
                &resolution.security_groups,
                Kind::SecurityGroup,
                &group,
                id,
                &field,
            ) {
                problems.add(p);
            }
        }
        groups.push(group);
    }
    groups
}

/// `spec.allowedAddressPairs`: each an address or CIDR, with a MAC or not.
fn allowed_pairs(port: &Port, problems: &mut Problems) -> Vec<(IpNet, Option<Mac>)> {
    let mut pairs = Vec::new();
    for (i, pair) in port.spec.allowed_address_pairs.iter().enumerate() {
        let field = format!("spec.allowedAddressPairs[{i}]");
        let net = pair
            .ip_address
            .parse::<IpNet>()
            .or_else(|_| pair.ip_address.parse::<IpAddr>().map(IpNet::from));
        let mac = match pair.mac_address.as_deref().map(str::parse::<Mac>) {
            Some(Err(e)) => {
                problems.push(
                    format!("{field}.macAddress"),
                    Reason::InvalidSpec,
                    e.to_string(),
                );
                continue;
            }
            Some(Ok(m)) => Some(m),
            None => None,
        };
        match net {
            Ok(net) => pairs.push((net.trunc(), mac)),
            Err(_) => problems.push(
                format!("{field}.ipAddress"),
                Reason::InvalidSpec,
                format!("{:?} is not an IP address or CIDR", pair.ip_address),
            ),
        }
    }
    pairs
}

fn check_one(
    key: &Key,
    port: &Port,
    snapshot: &Snapshot,
    nodes: &Nodes,
    resolution: &Resolution,
    subnets: &Subnets,
    claims: &ClaimIndex,
) -> Verdict<PortDraft> {
    let id = ObjectId::new(Kind::Port, key.clone());
    let mut problems = Problems::new(id.clone());
    let network_key = key.reference(&port.spec.network);
    let network = match lookup(
        snapshot,
        &resolution.networks,
        Kind::Network,
        &network_key,
        &id,
        "spec.network",
    ) {
        Ok(n) => n,
        Err(p) => return Err(vec![p]),
    };
    let mut recorded = Recorded::of(key, port, claims);
    let mut autoconfigured = Vec::new();
    let wants = wanted_addresses(
        key,
        port,
        snapshot,
        subnets,
        &network_key,
        &mut recorded,
        &id,
        &mut problems,
        &mut autoconfigured,
    );
    let mac = requested_mac(port, &mut problems);
    check_names(port, &mut problems);
    check_binding(
        port,
        nodes,
        network.physical_network.as_ref(),
        &network_key,
        &mut problems,
    );
    let security_groups = security_groups(key, port, snapshot, resolution, &id, &mut problems);
    let allowed_pairs = allowed_pairs(port, &mut problems);
    problems.finish(PortDraft {
        network: network_key,
        wants,
        mac,
        mtu: network.mtu,
        node: port.spec.node_name.clone(),
        hostname: hostname(key, port),
        port_security: port.spec.port_security,
        security_groups,
        allowed_pairs,
        autoconfigured,
        arrival: arrival(key, port),
    })
}

/// The name the port's workload goes by: `spec.hostname`, or the port's.
pub fn hostname(key: &Key, port: &Port) -> String {
    port.spec
        .hostname
        .clone()
        .unwrap_or_else(|| key.name.clone())
}

/// The state of a port the controller found Ready, read back from its
/// status rather than handed out again: how an agent takes in a port
/// without resolving its namespace. Its references are looked
/// up as resolving does; None when one is not ready, the status does not
/// read, or its node is unknown: the caller resolves instead.
pub fn trusted(
    key: &Key,
    port: &Port,
    snapshot: &Snapshot,
    resolution: &Resolution,
    config: &crate::ClusterConfig,
) -> Option<PortState> {
    let id = ObjectId::new(Kind::Port, key.clone());
    let mut problems = Problems::new(id.clone());
    let network_key = key.reference(&port.spec.network);
    let network = resolution.network(&network_key)?;
    let status = port.status.as_ref()?;
    let mut fixed_ips = Vec::new();
    for held in &status.fixed_ips {
        let subnet = key.reference(&held.subnet);
        if resolution.subnet(&subnet)?.network != network_key {
            return None;
        }
        fixed_ips.push((subnet, held.ip_address.parse().ok()?));
    }
    let recorded = status.mac_address.as_deref().and_then(|m| m.parse().ok());
    let mac = requested_mac(port, &mut problems).or(recorded)?;
    if let Some(name) = &port.spec.node_name {
        let node = config.node(name)?;
        let physnet = network.physical_network.as_ref();
        if physnet.is_some_and(|p| !node.physical_interfaces.contains_key(p)) {
            return None;
        }
    }
    let security_groups = security_groups(key, port, snapshot, resolution, &id, &mut problems);
    let allowed_pairs = allowed_pairs(port, &mut problems);
    if !problems.is_empty() {
        return None;
    }
    Some(PortState {
        network: network_key,
        fixed_ips,
        mac,
        mtu: network.mtu,
        node: port.spec.node_name.clone(),
        hostname: hostname(key, port),
        port_security: port.spec.port_security,
        security_groups,
        allowed_pairs: allowed_pairs
            .into_iter()
            .map(|(net, m)| (net, m.unwrap_or(mac)))
            .collect(),
    })
}

/// Checks every port; addresses and MACs come later.
pub fn check(
    snapshot: &Snapshot,
    nodes: &Nodes,
    resolution: &Resolution,
    subnets: &Subnets,
    claims: &ClaimIndex,
) -> BTreeMap<Key, Verdict<PortDraft>> {
    snapshot
        .ports
        .iter()
        .map(|(key, port)| {
            (
                key.clone(),
                check_one(key, port, snapshot, nodes, resolution, subnets, claims),
            )
        })
        .collect()
}

/// The addresses the ports want.
pub fn requests(drafts: &BTreeMap<Key, Verdict<PortDraft>>) -> Vec<Request> {
    drafts
        .iter()
        .filter_map(|(k, v)| Some((k, v.as_ref().ok()?)))
        .flat_map(|(key, draft)| {
            draft
                .wants
                .iter()
                .enumerate()
                .map(|(slot, (subnets, wanted, _))| Request {
                    holder: Holder::Port(key.clone()),
                    slot,
                    subnets: subnets.clone(),
                    wanted: wanted.clone(),
                    arrival: draft.arrival.clone(),
                })
        })
        .collect()
}

/// Puts the port's SLAAC addresses, made from `mac`, among the allocated
/// `fixed_ips`; an address `spec.fixedIPs` asked for must be that one.
fn autoconfigure(
    key: &Key,
    draft: &PortDraft,
    mac: Mac,
    fixed_ips: &mut Vec<(Key, IpAddr)>,
) -> Result<(), Vec<Problem>> {
    let mut problems = Problems::new(ObjectId::new(Kind::Port, key.clone()));
    for auto in &draft.autoconfigured {
        let address = IpAddr::V6(mac.eui64_in(auto.prefix));
        if let Some(requested) = auto.requested.filter(|r| *r != address) {
            problems.push(
                &auto.field,
                Reason::InvalidSpec,
                format!(
                    "subnet {} assigns addresses by SLAAC: the port's is {address}, from its MAC {mac}, not {requested}",
                    auto.subnet
                ),
            );
            continue;
        }
        let at = auto.position.min(fixed_ips.len());
        fixed_ips.insert(at, (auto.subnet.clone(), address));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.into_vec())
    }
}

/// Gives each port its addresses and its MAC.
pub fn finish(
    snapshot: &Snapshot,
    drafts: BTreeMap<Key, Verdict<PortDraft>>,
    addresses: &Addresses,
    resolution: &Resolution,
) -> BTreeMap<Key, Verdict<PortState>> {
    let mut verdicts = BTreeMap::new();
    let mut states = BTreeMap::new();
    for (key, draft) in drafts {
        let draft = match draft {
            Ok(d) => d,
            Err(p) => {
                verdicts.insert(key, Err(p));
                continue;
            }
        };
        let id = ObjectId::new(Kind::Port, key.clone());
        let mut problems = Problems::new(id);
        let mut fixed_ips = Vec::new();
        for (slot, (_, _, field)) in draft.wants.iter().enumerate() {
            match addresses.outcome(&Holder::Port(key.clone()), slot) {
                Some(Ok((subnet, address))) => {
                    if resolution.subnet(subnet).is_none() {
                        problems.push(
                            field,
                            Reason::DependencyNotReady,
                            format!("subnet {subnet} is not ready"),
                        );
                    }
                    fixed_ips.push((subnet.clone(), *address));
                }
                Some(Err(error)) => claim_problem(&mut problems, field, error),
                None => {}
            }
        }
        if problems.is_empty() {
            states.insert(key.clone(), (draft, fixed_ips));
        } else {
            verdicts.insert(key, Err(problems.into_vec()));
        }
    }

    // MACs are unique per network: asked-for ones first, then recorded ones,
    // then derived ones, each group in arrival order.
    let mut order: Vec<(u8, &Arrival, &Key)> = states
        .iter()
        .map(|(k, (d, _))| {
            let recorded = snapshot.ports[k]
                .status
                .as_ref()
                .and_then(|s| s.mac_address.as_ref())
                .is_some();
            let rank = if d.mac.is_some() {
                0
            } else if recorded {
                1
            } else {
                2
            };
            (rank, &d.arrival, k)
        })
        .collect();
    order.sort();
    let mut taken: BTreeMap<(Key, Mac), Key> = BTreeMap::new();
    let mut macs = BTreeMap::new();
    for (_, _, key) in order {
        let (draft, _) = &states[key];
        let recorded = snapshot.ports[key]
            .status
            .as_ref()
            .and_then(|s| s.mac_address.as_deref())
            .and_then(|m| m.parse::<Mac>().ok());
        let wanted = draft.mac.or(recorded);
        let mac = match wanted {
            Some(mac) => match taken.get(&(draft.network.clone(), mac)) {
                Some(other) => Err(format!(
                    "{mac} is already used by port {other} on network {}",
                    draft.network
                )),
                None => Ok(mac),
            },
            None => Ok((0..)
                .map(|attempt| Mac::derive(&key.to_string(), attempt))
                .find(|m| !taken.contains_key(&(draft.network.clone(), *m)))
                .expect("a free MAC exists")),
        };
        if let Ok(mac) = mac {
            taken.insert((draft.network.clone(), mac), key.clone());
        }
        macs.insert(key.clone(), mac);
    }

    for (key, (draft, mut fixed_ips)) in states {
        let mac = macs.remove(&key).expect("every port got a MAC verdict");
        if let Ok(mac) = mac
            && let Err(problems) = autoconfigure(&key, &draft, mac, &mut fixed_ips)
        {
            verdicts.insert(key, Err(problems));
            continue;
        }
        let verdict = match mac {
            Ok(mac) => Ok(PortState {
                network: draft.network,
                fixed_ips,
                mac,
                mtu: draft.mtu,
                node: draft.node,
                hostname: draft.hostname,
                port_security: draft.port_security,
                security_groups: draft.security_groups,
                allowed_pairs: draft
                    .allowed_pairs
                    .into_iter()
                    .map(|(net, m)| (net, m.unwrap_or(mac)))
                    .collect(),
            }),
            Err(message) => {
                let mut problems = Problems::new(ObjectId::new(Kind::Port, key.clone()));
                problems.push("spec.macAddress", Reason::InUse, message);
                Err(problems.into_vec())
            }
        };
        verdicts.insert(key, verdict);
    }
    verdicts
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::fixtures::object;
    use crate::{ClusterConfig, Key, Object, resolve};

    /// quickstart with a stateful and a SLAAC IPv6 subnet beside its IPv4
    /// one.
    fn dual_stack() -> crate::Snapshot {
        let mut snapshot = crate::fixtures::quickstart();
        for (name, cidr, mode) in [
            ("blue-v6", "2001:db8:1::/64", "dhcpv6-stateful"),
            ("blue-slaac", "2001:db8:2::/64", "slaac"),
        ] {
            let spec = json!({"network": "blue", "cidr": cidr, "ipv6AddressMode": mode, "ipv6RAMode": mode});
            let subnet = object("Subnet", "tenant-a", name, spec);
            snapshot.insert(Object::Subnet(subnet)).unwrap();
        }
        snapshot
    }

    #[test]
    fn a_port_takes_the_eui64_of_its_mac_on_every_slaac_subnet() {
        let resolution = resolve(&dual_stack(), &ClusterConfig::default());
        let port = resolution.port(&Key::new("tenant-a", "web-1")).unwrap();
        let addresses: Vec<(String, String)> = (port.fixed_ips.iter())
            .map(|(s, ip)| (s.name.clone(), ip.to_string()))
            .collect();
        let m = port.mac.0;
        let eui64 = format!(
            "2001:db8:2:0:{:x}:{:x}:{:x}:{:x}",
            u16::from_be_bytes([m[0] ^ 2, m[1]]),
            u16::from_be_bytes([m[2], 0xff]),
            u16::from_be_bytes([0xfe, m[3]]),
            u16::from_be_bytes([m[4], m[5]])
        );
        assert_eq!(
            addresses,
            [
                ("blue-v4".to_string(), "10.10.0.11".to_string()),
                ("blue-slaac".to_string(), eui64),
                ("blue-v6".to_string(), "2001:db8:1::3".to_string()),
            ]
        );
    }

    #[test]
    fn a_slaac_address_asked_for_is_the_eui64_or_refused() {
        let mut snapshot = dual_stack();
        let key = Key::new("tenant-a", "web-1");
        let port = std::sync::Arc::make_mut(snapshot.ports.get_mut(&key).unwrap());
        port.spec.mac_address = Some("fa:16:3e:00:00:05".into());
        port.spec.fixed_ips = vec![neutrino_api::FixedIP {
            subnet: "blue-slaac".into(),
            ip_address: Some("2001:db8:2:0:f816:3eff:fe00:5".into()),
        }];
        let resolution = resolve(&snapshot, &ClusterConfig::default());
        assert_eq!(
            resolution.port(&key).unwrap().fixed_ips[0].1.to_string(),
            "2001:db8:2:0:f816:3eff:fe00:5"
        );
        let port = std::sync::Arc::make_mut(snapshot.ports.get_mut(&key).unwrap());
        port.spec.fixed_ips[0].ip_address = Some("2001:db8:2::5".into());
        let resolution = resolve(&snapshot, &ClusterConfig::default());
        let problems = resolution.ports[&key].as_ref().unwrap_err();
        assert_eq!(problems[0].field, "spec.fixedIPs[0].ipAddress");
        assert!(
            problems[0]
                .message
                .contains("the port's is 2001:db8:2:0:f816:3eff:fe00:5"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn an_unknown_node_is_named_beside_a_few_known_ones() {
        let mut snapshot = crate::fixtures::quickstart();
        let key = Key::new("tenant-a", "web-1");
        std::sync::Arc::make_mut(snapshot.ports.get_mut(&key).unwrap())
            .spec
            .node_name = Some("node-99".into());
        let resolution = resolve(&snapshot, &ClusterConfig::with_nodes(12));
        let problems = resolution.ports[&key].as_ref().unwrap_err();
        assert_eq!(
            problems[0].message,
            "node node-99 is not known (known nodes: node-1, node-2, node-3, node-4, \
             node-5, node-6, node-7, node-8, node-9, node-10, and 2 more)"
        );
    }
}
