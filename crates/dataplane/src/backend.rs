//! The agent's kernel backends, each behind a small trait. Every backend
//! has the same three-part shape: the agent computes what the plan wants
//! (in core), asks the backend what the kernel has, lets core work out the
//! difference, and hands the changes back. The host's implementations are
//! the adapters beside this module; [`crate::fake`] holds in-memory ones,
//! so the agent's ordering can be tested without root.
//!
//! iptables keeps its own record of what it applied (reading the tables
//! back costs processes), so its trait takes the desired rules whole.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;

use neutrino_core::boundary::Boundary;
use neutrino_core::dnsmasq::{DhcpChange, ObservedServer};
use neutrino_core::firewall::BridgePorts;
use neutrino_core::inside::{InnerNamespace, InsideChange, ObservedInside};
use neutrino_core::plan::{RouterPlan, SecurityPlan};
use neutrino_core::reconcile::{Changes, Observed};

use super::dnsmasq::DhcpReport;

/// Why a backend could not read or write, with what it was doing.
pub type Failure = Box<dyn std::error::Error + Send + Sync>;

/// What applying a list of changes did.
#[derive(Debug, Default)]
pub struct Applied {
    pub writes: usize,
    pub errors: Vec<Failure>,
    /// The links whose own changes failed (a failed entry names none).
    pub failed_links: BTreeSet<String>,
}

/// The node's own links, FDB and neighbour entries.
pub trait Links: Send + Sync {
    /// The links whose state or entries changed since the last call, by
    /// name with their masters, when the backend keeps track; `None` when
    /// it does not, or lost track, and everything must be looked at.
    fn touched(&self) -> impl Future<Output = Result<Option<BTreeSet<String>>, Failure>>;
    /// Every link and entry; or, with `only`, the links named, their
    /// masters, and the entries of those.
    fn observe(
        &self,
        only: Option<&BTreeSet<String>>,
    ) -> impl Future<Output = Result<Observed, Failure>>;
    /// Applies every change it can, in order.
    fn apply(&self, changes: &Changes) -> impl Future<Output = Applied>;
}

/// The network namespaces the agent keeps besides the node's own.
pub trait Namespaces: Send + Sync {
    fn list(&self) -> Result<Vec<String>, Failure>;
    fn create(&self, name: &str) -> Result<(), Failure>;
    fn delete(&self, name: &str) -> Result<(), Failure>;
}

/// Interfaces, addresses, routes and forwarding inside those namespaces.
pub trait Inside: Send + Sync {
    type Namespace: InsideNamespace;
    fn enter(&self, name: &str) -> impl Future<Output = Result<Self::Namespace, Failure>>;
}

/// One namespace entered.
pub trait InsideNamespace: Send + Sync {
    /// What the namespace holds of what `wanted` is about.
    fn observe(
        &self,
        wanted: &InnerNamespace,
    ) -> impl Future<Output = Result<ObservedInside, Failure>>;
    fn apply(&self, changes: &[InsideChange]) -> impl Future<Output = Applied>;
}

/// Security groups on the node and each router's NAT. Each sync is its
/// kernel writes, zero when the rules are as wanted.
pub trait Rules: Send + Sync {
    /// The node's own boundary: what tenant bridges pass up dropped, VXLAN
    /// only from tunnel peers; none without tenant bridges.
    fn sync_boundary(&self, boundary: Option<&Boundary>) -> Result<usize, Failure>;
    fn sync_node(&self, plan: &SecurityPlan, bridges: &[BridgePorts]) -> Result<usize, Failure>;
    fn sync_router(&self, router: &RouterPlan) -> Result<usize, Failure>;
    /// Forgets the routers not named (their namespace took their rules).
    fn forget_routers_except(&self, keep: &[&str]);
}

/// The node's DHCP servers.
pub trait DhcpServers: Send + Sync {
    /// Where a server's files are.
    fn server_dir(&self, namespace: &str) -> std::path::PathBuf;
    /// Every server found, by namespace.
    fn observe(&self) -> BTreeMap<String, ObservedServer>;
    fn apply(&self, changes: &[DhcpChange]) -> (DhcpReport, Vec<Failure>);
}

/// One implementation of every backend.
pub trait Backends {
    type Links: Links;
    type Namespaces: Namespaces;
    type Inside: Inside;
    type Rules: Rules;
    type Dhcp: DhcpServers;
}

/// The host's kernel and programs.
pub struct Host;

impl Backends for Host {
    type Links = super::netlink::Netlink;
    type Namespaces = HostNamespaces;
    type Inside = HostInside;
    type Rules = NodeRules;
    type Dhcp = super::dnsmasq::Dnsmasq;
}

/// Named namespaces under /run/netns.
pub struct HostNamespaces;

impl Namespaces for HostNamespaces {
    fn list(&self) -> Result<Vec<String>, Failure> {
        super::netns::list().map_err(|e| format!("listing namespaces: {e}").into())
    }

    fn create(&self, name: &str) -> Result<(), Failure> {
        super::netns::create(name).map_err(|e| format!("creating namespace {name}: {e}").into())
    }

    fn delete(&self, name: &str) -> Result<(), Failure> {
        super::netns::delete(name).map_err(|e| format!("removing namespace {name}: {e}").into())
    }
}

/// Enters a namespace with a netlink connection of its own.
pub struct HostInside;

impl Inside for HostInside {
    type Namespace = super::ipconfig::InsideNetlink;

    async fn enter(&self, name: &str) -> Result<Self::Namespace, Failure> {
        Ok(super::ipconfig::InsideNetlink::connect(name).await?)
    }
}

/// The firewall of the namespace that is the node: security groups in
/// iptables, the ports' guard in the bridges, and the connections a
/// change no longer allows cut.
pub struct NodeRules {
    pub firewall: super::iptables::Firewall,
    pub guard: super::guard::Guard,
    pub boundary: super::boundary::HostBoundary,
    pub namespace: Option<String>,
    pub applied: LastSecurity,
}

/// The security plan last applied, kept in memory and in a record, so
/// that an agent started again still cuts the connections that changes
/// made while no agent ran no longer allow.
pub struct LastSecurity {
    record: PathBuf,
    plan: Mutex<Option<SecurityPlan>>,
}

impl LastSecurity {
    /// The plan recorded at `record` by an earlier agent, if it left one
    /// this agent can read.
    pub fn load(record: PathBuf) -> Self {
        let plan = match std::fs::read(&record) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .inspect_err(|e| {
                    tracing::warn!(record = %record.display(), error = %e,
                        "the last security plan cannot be read; changes made before this start cut nothing");
                })
                .ok(),
            Err(_) => None,
        };
        LastSecurity {
            record,
            plan: Mutex::new(plan),
        }
    }

    /// Makes `new` the plan last applied; the one before it, if there was
    /// one and it differed.
    fn replace(&self, new: &SecurityPlan) -> Result<Option<SecurityPlan>, Failure> {
        let mut plan = self.plan.lock().unwrap_or_else(|e| e.into_inner());
        // Most applies leave the security plan as it was: no copy then.
        if plan.as_ref() == Some(new) {
            return Ok(None);
        }
        let text = serde_json::to_vec(new)?;
        if let Some(dir) = self.record.parent() {
            std::fs::create_dir_all(dir)?;
        }
        super::files::write_atomic(&self.record, &text)
            .map_err(|e| format!("recording the security plan: {e}"))?;
        Ok(plan.replace(new.clone()))
    }
}

/// Marks the conntrack entries that the ports whose rules narrowed from
/// `old` to `new` no longer admit; how many.
fn cut_connections(
    namespace: Option<&str>,
    old: &SecurityPlan,
    new: &SecurityPlan,
    bridges: &[BridgePorts],
) -> Result<usize, Failure> {
    let narrowed = neutrino_core::conntrack::narrowed(old, new);
    if narrowed.is_empty() {
        return Ok(0);
    }
    let sets: BTreeMap<&str, &neutrino_core::plan::IpSetPlan> =
        (new.ipsets.iter()).map(|s| (s.name.as_str(), s)).collect();
    let bridge_of: BTreeMap<&str, &str> = (bridges.iter())
        .flat_map(|b| b.ports.iter().map(move |p| (p.as_str(), b.bridge.as_str())))
        .collect();
    // A zone is listed once for all its ports that narrowed.
    let mut by_zone: BTreeMap<u16, Vec<&neutrino_core::plan::PortFilter>> = BTreeMap::new();
    for port in narrowed {
        if let Some(bridge) = bridge_of.get(port.interface.as_str()) {
            let zone = neutrino_core::firewall::zone(bridge);
            by_zone.entry(zone).or_default().push(port);
        }
    }
    let mut cut = 0;
    for (zone, ports) in by_zone {
        cut += super::conntrack::cut(namespace, zone, &ports, &sets).map_err(|e| {
            let names: Vec<String> = ports.iter().map(|p| p.port.to_string()).collect();
            Failure::from(format!("cutting connections of {}: {e}", names.join(", ")))
        })?;
    }
    Ok(cut)
}

impl Rules for NodeRules {
    fn sync_boundary(&self, boundary: Option<&Boundary>) -> Result<usize, Failure> {
        Ok(self.boundary.sync(self.namespace.as_deref(), boundary)?)
    }

    fn sync_node(&self, plan: &SecurityPlan, bridges: &[BridgePorts]) -> Result<usize, Failure> {
        let namespace = self.namespace.as_deref();
        let rules = self.firewall.sync_node(namespace, plan, bridges)?;
        let guard = (self.guard.sync(namespace, &plan.ports))
            .map_err(|e| Failure::from(format!("the ports' guard: {e}")))?;
        let cut = match self.applied.replace(plan)? {
            Some(old) => cut_connections(namespace, &old, plan, bridges)?,
            None => 0,
        };
        Ok(rules + guard + cut)
    }

    fn sync_router(&self, router: &RouterPlan) -> Result<usize, Failure> {
        Ok(self.firewall.sync_router(router)?)
    }

    fn forget_routers_except(&self, keep: &[&str]) {
        self.firewall.forget_routers_except(keep);
    }
}
