//! Validation across objects and allocation, as one pure pass.
//!
//! [`resolve`] gives every object either its state (what the system decided
//! for it) or the problems that keep it from being ready. An object that
//! depends on one that is not ready is not ready either, with a reason that
//! says so. Conflicts go to the object that came first (creation time, then
//! namespace and name), and allocations already recorded in status are
//! honoured before anything new is handed out, so a replay changes nothing.

mod addresses;
mod claims;
mod floating_ip;
mod network;
mod port;
mod router;
mod security_group;
mod subnet;

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube_core::Resource;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

use super::allocate::Mac;
use super::{ApiObject, ClusterConfig, Key, Kind, ObjectId, Problem, Reason, Snapshot};
use crate::{for_each_kind, with_kind};
use addresses::Request;
pub use claims::{ClaimIndex, Segment, claim_holder, held_by};
use neutrino_api::{Direction, EtherType, Ipv6Mode, NetworkType};
pub(crate) use port::DEFAULT_GROUP;
pub use port::{hostname, trusted as trusted_port};
pub(crate) use security_group::implicit_default;

/// Either what was decided for an object, or why it is not ready.
pub type Verdict<T> = Result<T, Vec<Problem>>;

/// What the system decided for a network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NetworkState {
    pub network_type: NetworkType,
    pub segmentation_id: Option<u32>,
    pub physical_network: Option<String>,
    pub mtu: u32,
    pub external: bool,
}

/// What the system decided for a subnet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SubnetState {
    pub network: Key,
    pub cidr: IpNet,
    pub gateway: Option<IpAddr>,
    pub enable_dhcp: bool,
    /// The address the DHCP servers answer from, when DHCP is on.
    pub dhcp: Option<IpAddr>,
    pub pools: Vec<(IpAddr, IpAddr)>,
    pub dns: Vec<IpAddr>,
    pub host_routes: Vec<(IpNet, IpAddr)>,
    /// IPv6: how ports get their addresses, and what router
    /// advertisements say.
    pub ipv6_address_mode: Option<Ipv6Mode>,
    pub ipv6_ra_mode: Option<Ipv6Mode>,
    pub used: u128,
    pub free: u128,
}

impl SubnetState {
    /// Whether its ports take the EUI-64 of their MAC, as SLAAC makes it.
    pub fn autoconfigured(&self) -> bool {
        self.ipv6_address_mode
            .is_some_and(Ipv6Mode::is_autoconfigured)
    }
}

/// What the system decided for a port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PortState {
    pub network: Key,
    /// (subnet, address) in the order requested.
    pub fixed_ips: Vec<(Key, IpAddr)>,
    pub mac: Mac,
    pub mtu: u32,
    pub node: Option<String>,
    /// The name its workload goes by (DHCP, metadata).
    pub hostname: String,
    pub port_security: bool,
    /// The groups in effect: the named ones, or the namespace's `default`.
    pub security_groups: Vec<Key>,
    /// (address or CIDR, MAC) pairs the port may also send from.
    pub allowed_pairs: Vec<(IpNet, Mac)>,
}

/// A router's leg on one of its subnets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouterLeg {
    pub subnet: Key,
    pub network: Key,
    /// The address with the subnet's prefix length.
    pub address: IpNet,
    pub mac: Mac,
}

/// A router's way out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GatewayState {
    pub leg: RouterLeg,
    /// The external subnet's gateway, for the default route.
    pub nexthop: Option<IpAddr>,
    pub snat: bool,
}

/// What the system decided for a router.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouterState {
    pub node: String,
    pub interfaces: Vec<RouterLeg>,
    pub gateway: Option<GatewayState>,
    pub routes: Vec<(IpNet, IpAddr)>,
}

/// Where a floating IP points.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FloatingTarget {
    pub port: Key,
    pub fixed: IpAddr,
    pub router: Key,
}

/// What the system decided for a floating IP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FloatingIpState {
    pub network: Key,
    pub subnet: Key,
    pub address: IpAddr,
    pub target: Option<FloatingTarget>,
}

/// What a rule matches beyond the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PortMatch {
    /// A tcp, udp or sctp destination port range.
    Ports(u16, u16),
    /// An ICMP type and optionally a code.
    Icmp(u8, Option<u8>),
}

/// The peer a rule allows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Remote {
    Any,
    Cidr(IpNet),
    Group(Key),
}

/// One rule, parsed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleState {
    pub direction: Direction,
    pub ethertype: EtherType,
    pub protocol: Option<u8>,
    pub ports: Option<PortMatch>,
    pub remote: Remote,
}

/// What the system decided for a security group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SecurityGroupState {
    pub rules: Vec<RuleState>,
    /// True for a namespace's `default` group that no object defines:
    /// Neutron's default rules apply.
    pub implicit: bool,
}

/// Every object's verdict.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resolution {
    pub networks: BTreeMap<Key, Verdict<NetworkState>>,
    pub subnets: BTreeMap<Key, Verdict<SubnetState>>,
    pub ports: BTreeMap<Key, Verdict<PortState>>,
    pub routers: BTreeMap<Key, Verdict<RouterState>>,
    pub floating_ips: BTreeMap<Key, Verdict<FloatingIpState>>,
    pub security_groups: BTreeMap<Key, Verdict<SecurityGroupState>>,
    /// How many ready ports each security group holds.
    pub group_members: BTreeMap<Key, usize>,
}

fn problems_of<T>(map: &BTreeMap<Key, Verdict<T>>) -> impl Iterator<Item = &Problem> {
    map.values().filter_map(|v| v.as_ref().err()).flatten()
}

fn ready<T>(map: &BTreeMap<Key, Verdict<T>>) -> impl Iterator<Item = (&Key, &T)> {
    map.iter()
        .filter_map(|(k, v)| v.as_ref().ok().map(|s| (k, s)))
}

impl Resolution {
    /// Every problem found, kind by kind.
    pub fn problems(&self) -> Vec<&Problem> {
        let mut problems = Vec::new();
        for_each_kind!(K => problems.extend(problems_of(K::verdicts(self))));
        problems
    }

    /// Whether the object `id` names resolved to a state.
    pub fn is_ready(&self, id: &ObjectId) -> bool {
        with_kind!(id.kind, K => K::verdicts(self).get(&id.key).is_some_and(Result::is_ok))
    }

    /// How many objects of `kind` were resolved, and how many of those are ready.
    pub fn counts(&self, kind: Kind) -> (usize, usize) {
        with_kind!(kind, K => {
            let verdicts = K::verdicts(self);
            (verdicts.values().filter(|v| v.is_ok()).count(), verdicts.len())
        })
    }

    pub fn network(&self, key: &Key) -> Option<&NetworkState> {
        self.networks.get(key)?.as_ref().ok()
    }

    pub fn subnet(&self, key: &Key) -> Option<&SubnetState> {
        self.subnets.get(key)?.as_ref().ok()
    }

    pub fn port(&self, key: &Key) -> Option<&PortState> {
        self.ports.get(key)?.as_ref().ok()
    }

    pub fn security_group(&self, key: &Key) -> Option<&SecurityGroupState> {
        self.security_groups.get(key)?.as_ref().ok()
    }

    pub fn ready_networks(&self) -> impl Iterator<Item = (&Key, &NetworkState)> {
        ready(&self.networks)
    }

    pub fn ready_subnets(&self) -> impl Iterator<Item = (&Key, &SubnetState)> {
        ready(&self.subnets)
    }

    pub fn ready_ports(&self) -> impl Iterator<Item = (&Key, &PortState)> {
        ready(&self.ports)
    }

    pub fn ready_routers(&self) -> impl Iterator<Item = (&Key, &RouterState)> {
        ready(&self.routers)
    }

    pub fn ready_floating_ips(&self) -> impl Iterator<Item = (&Key, &FloatingIpState)> {
        ready(&self.floating_ips)
    }
}

/// When an object arrived: conflicts go to the earlier one.
pub(crate) type Arrival = (Option<Time>, Key);

pub(crate) fn arrival<R: Resource>(key: &Key, object: &R) -> Arrival {
    (object.meta().creation_timestamp.clone(), key.clone())
}

/// Keys of `map` in arrival order.
pub(crate) fn by_arrival<R: Resource>(map: &BTreeMap<Key, std::sync::Arc<R>>) -> Vec<&Key> {
    let mut keys: Vec<(Arrival, &Key)> = map.iter().map(|(k, o)| (arrival(k, &**o), k)).collect();
    keys.sort();
    keys.into_iter().map(|(_, k)| k).collect()
}

/// The subnets' verdicts before addresses are handed out, with each
/// network's ready subnets of each family in arrival order: where a port,
/// gateway or floating IP that names no subnet takes its address. Built
/// once, so that finding them costs nothing per request.
pub(crate) struct Subnets {
    verdicts: BTreeMap<Key, Verdict<SubnetState>>,
    by_network: BTreeMap<(Key, bool), Vec<Key>>,
}

impl Subnets {
    pub(crate) fn new(snapshot: &Snapshot, verdicts: BTreeMap<Key, Verdict<SubnetState>>) -> Self {
        let mut found: BTreeMap<(Key, bool), Vec<(Arrival, Key)>> = BTreeMap::new();
        for (key, verdict) in &verdicts {
            if let Ok(subnet) = verdict {
                found
                    .entry((subnet.network.clone(), subnet.cidr.addr().is_ipv4()))
                    .or_default()
                    .push((arrival(key, &*snapshot.subnets[key]), key.clone()));
            }
        }
        let by_network = found
            .into_iter()
            .map(|(network, mut subnets)| {
                subnets.sort();
                (network, subnets.into_iter().map(|(_, k)| k).collect())
            })
            .collect();
        Self {
            verdicts,
            by_network,
        }
    }

    /// The ready subnets of `network` of one family, in arrival order.
    pub(crate) fn of(&self, network: &Key, ipv4: bool) -> Vec<Key> {
        self.by_network
            .get(&(network.clone(), ipv4))
            .cloned()
            .unwrap_or_default()
    }

    /// Refuses `address` on the ready `subnet` of an external network to
    /// an object in another namespace than the network's when it lies
    /// outside the subnet's allocation pools: the rest (gateways, DNS
    /// servers, whatever the provider keeps for itself) is the provider's
    /// to hand out, as in Neutron, where only an admin picks such an
    /// address. The message says why.
    pub(crate) fn provider_address(
        &self,
        requester: &Key,
        subnet: &Key,
        address: IpAddr,
    ) -> Result<(), String> {
        let Some(Ok(state)) = self.verdicts.get(subnet) else {
            return Ok(());
        };
        let in_pool = (state.pools.iter()).any(|(start, end)| *start <= address && address <= *end);
        if in_pool || requester.namespace == subnet.namespace {
            return Ok(());
        }
        Err(format!(
            "{address} is outside the allocation pools of subnet {subnet}; only objects in namespace {} may take addresses outside them",
            subnet.namespace
        ))
    }

    pub(crate) fn into_verdicts(self) -> BTreeMap<Key, Verdict<SubnetState>> {
        self.verdicts
    }
}

impl std::ops::Deref for Subnets {
    type Target = BTreeMap<Key, Verdict<SubnetState>>;

    fn deref(&self) -> &Self::Target {
        &self.verdicts
    }
}

/// Looks up a reference and explains a miss: absent, in another namespace, or not ready.
pub(crate) fn lookup<'a, T>(
    snapshot: &Snapshot,
    verdicts: &'a BTreeMap<Key, Verdict<T>>,
    kind: Kind,
    target: &Key,
    from: &ObjectId,
    field: &str,
) -> Result<&'a T, Problem> {
    match verdicts.get(target) {
        Some(Ok(state)) => Ok(state),
        Some(Err(_)) => Err(Problem::new(
            from,
            field,
            Reason::DependencyNotReady,
            format!("{kind} {target} is not ready"),
        )),
        None => {
            let elsewhere: Vec<String> = snapshot
                .namespaces_holding(kind, &target.name)
                .into_iter()
                .filter(|ns| *ns != target.namespace)
                .collect();
            if target.namespace == from.key.namespace && !elsewhere.is_empty() {
                Err(Problem::new(
                    from,
                    field,
                    Reason::OtherNamespace,
                    format!(
                        "{kind} {} does not exist in namespace {}; the one in namespace {} cannot be used from here",
                        target.name,
                        target.namespace,
                        elsewhere.join(", ")
                    ),
                ))
            } else {
                Err(Problem::new(
                    from,
                    field,
                    Reason::NotFound,
                    format!("{kind} {target} does not exist"),
                ))
            }
        }
    }
}

/// Validates and allocates everything in `snapshot`.
pub fn resolve(snapshot: &Snapshot, config: &ClusterConfig) -> Resolution {
    let claims = ClaimIndex::new(snapshot);
    let nodes = config.indexed();
    let mut resolution = Resolution {
        security_groups: security_group::check(snapshot),
        networks: network::resolve(snapshot, config, &claims),
        ..Resolution::default()
    };
    let subnets = Subnets::new(snapshot, subnet::check(snapshot, &resolution));
    let ports = port::check(snapshot, &nodes, &resolution, &subnets, &claims);
    let routers = router::check(snapshot, &resolution, &subnets, &claims);
    let floating_ips = floating_ip::check(snapshot, &resolution, &subnets, &claims);

    let mut requests: Vec<Request> = Vec::new();
    requests.extend(subnet::requests(snapshot, &subnets, &claims));
    requests.extend(port::requests(&ports));
    requests.extend(router::requests(&routers));
    requests.extend(floating_ip::requests(&floating_ips));
    let book = addresses::run(&subnets, &requests, &claims);

    resolution.subnets = subnet::finish(subnets.into_verdicts(), &book);
    resolution.ports = port::finish(snapshot, ports, &book, &resolution);
    security_group::count_members_and_add_implicit_defaults(&mut resolution);
    resolution.routers = router::finish(snapshot, &nodes, routers, &book, &resolution);
    resolution.floating_ips = floating_ip::finish(snapshot, floating_ips, &book, &resolution);
    resolution
}
