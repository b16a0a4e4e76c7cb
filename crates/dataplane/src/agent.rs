//! One node's agent: takes the node's plan to its kernel — namespaces,
//! links, FDB and neighbour entries, addresses and routes inside DHCP and
//! router namespaces, the metadata service's sockets, the DHCP servers and
//! the routers' advertisements — changing only what differs.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::backend::{
    Backends, DhcpServers, Host, HostInside, HostNamespaces, Inside, InsideNamespace, LastSecurity,
    Links, Namespaces, NodeRules, Rules,
};
use super::dnsmasq::{DhcpError, DhcpReport, Dnsmasq};
use super::iptables::{self, Firewall};
use super::metadata::{Directory, MetadataService};
use super::netlink::Netlink;
use neutrino_core::firewall::bridge_ports;
use neutrino_core::inside::{self, InnerNamespace, inner_namespaces};
use neutrino_core::plan::{NodePlan, SecurityPlan};
use neutrino_core::reconcile::{diff, diff_only};
use neutrino_core::xtables::{Backend, Choice};
use neutrino_core::{boundary, delta, dnsmasq, metadata, names};

/// The state directory's parts: the DHCP servers' files, and what the
/// firewall last applied.
const DHCP_DIR: &str = "dhcp";
const FIREWALL_DIR: &str = "firewall";
/// The security plan last applied, in [`FIREWALL_DIR`].
const SECURITY_RECORD: &str = "security-plan.json";

/// What the agent puts before the names of the DHCP and router namespaces
/// it keeps: the node's namespace and a dash when it programs one (the
/// lab's nodes), so that agents side by side keep apart; nothing on a host.
pub fn namespace_prefix(netns: Option<&str>) -> String {
    netns.map_or(String::new(), |ns| format!("{ns}-"))
}

/// Where an agent works.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The namespace that is the node (the lab); `None` for the host's own.
    pub netns: Option<String>,
    /// Put before the names of the DHCP and router namespaces it keeps.
    pub namespace_prefix: String,
    /// Where DHCP servers keep their files.
    pub state_dir: PathBuf,
    /// The iptables backend: the host's (auto) or one named.
    pub iptables: Choice,
    /// How often what the agent keeps no live view of — iptables rules and
    /// ipsets, DHCP files, addresses and routes inside its namespaces — is
    /// read back to put back what was changed behind its back, and the
    /// links and entries dumped whole (its resync interval).
    pub drift_check: Duration,
}

/// What one apply did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Kernel writes made (links, entries, addresses, routes, sysctls).
    pub writes: usize,
    pub dhcp: DhcpReport,
    pub namespaces_created: Vec<String>,
    pub namespaces_removed: Vec<String>,
    /// What could not be done, each naming the object and the operation.
    pub errors: Vec<String>,
    /// The links whose own changes failed: a port whose veth is among
    /// them is not plugged.
    pub failed_links: BTreeSet<String>,
    /// Names the plan wants that something else holds: left alone.
    pub conflicts: Vec<String>,
}

impl ApplyReport {
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty() && self.conflicts.is_empty()
    }
}

/// A node's agent, over its kernel backends.
pub struct Agent<B: Backends = Host> {
    config: AgentConfig,
    links: B::Links,
    namespaces: B::Namespaces,
    inside: B::Inside,
    rules: B::Rules,
    dhcp: B::Dhcp,
    /// The iptables backend, and why it is the one it is.
    iptables: (Backend, String),
    /// Each inner namespace as the last apply brought it to the plan, and
    /// when: unchanged since, it is read again only once per drift check.
    insides: Mutex<HashMap<String, (InnerNamespace, Instant)>>,
    /// The plan whose links the last apply realised without a failure or
    /// a conflict: the next compares only what changed since.
    links_applied: Mutex<Option<NodePlan>>,
    /// The metadata service, when the agent was given what it reads.
    metadata: Option<MetadataService>,
}

impl Agent<Host> {
    pub async fn new(config: AgentConfig) -> Result<Self, super::netlink::NetlinkError> {
        let links = Netlink::connect(config.netns.as_deref())
            .await?
            .dumping_every(config.drift_check);
        let dnsmasq =
            Dnsmasq::new(config.state_dir.join(DHCP_DIR)).checking_drift_every(config.drift_check);
        let (backend, backend_reason) = iptables::backend(config.netns.as_deref(), config.iptables);
        tracing::info!(%backend, reason = %backend_reason, "iptables backend chosen");
        let firewall = Firewall::new(config.state_dir.join(FIREWALL_DIR), backend)
            .checking_drift_every(config.drift_check);
        if let Err(e) = firewall.evict_other_backend(config.netns.as_deref()) {
            tracing::error!(error = %e, "could not take neutrino's chains out of the other iptables backend");
        }
        let rules = NodeRules {
            firewall,
            guard: super::guard::Guard::new(config.drift_check),
            boundary: super::boundary::HostBoundary::new(config.drift_check),
            namespace: config.netns.clone(),
            applied: LastSecurity::load(config.state_dir.join(FIREWALL_DIR).join(SECURITY_RECORD)),
        };
        Ok(Self::with_backends(
            config,
            Parts {
                links,
                namespaces: HostNamespaces,
                inside: HostInside,
                rules,
                dhcp: dnsmasq,
            },
            (backend, backend_reason),
        ))
    }

    /// The DHCP servers' manager, for looking at them.
    pub fn dnsmasq(&self) -> &Dnsmasq {
        &self.dhcp
    }
}

/// One of each backend, for [`Agent::with_backends`].
pub struct Parts<B: Backends> {
    pub links: B::Links,
    pub namespaces: B::Namespaces,
    pub inside: B::Inside,
    pub rules: B::Rules,
    pub dhcp: B::Dhcp,
}

impl<B: Backends> Agent<B> {
    /// An agent over the given backends; `iptables` says which backend the
    /// rules go to, and why.
    pub fn with_backends(
        config: AgentConfig,
        parts: Parts<B>,
        iptables: (Backend, String),
    ) -> Self {
        Self {
            config,
            links: parts.links,
            namespaces: parts.namespaces,
            inside: parts.inside,
            rules: parts.rules,
            dhcp: parts.dhcp,
            iptables,
            insides: Mutex::new(HashMap::new()),
            links_applied: Mutex::new(None),
            metadata: None,
        }
    }

    /// The agent, serving the metadata service from `directory` in its
    /// DHCP namespaces and on its routers' legs.
    pub fn serving_metadata(mut self, directory: Arc<dyn Directory>) -> Self {
        self.metadata = Some(MetadataService::new(directory));
        self
    }

    /// The iptables backend in use, and why.
    pub fn iptables(&self) -> (Backend, &str) {
        (self.iptables.0, &self.iptables.1)
    }

    /// Whether a namespace name is one this agent keeps.
    fn owns_namespace(&self, name: &str) -> bool {
        let Some(rest) = name.strip_prefix(&self.config.namespace_prefix) else {
            return false;
        };
        rest.starts_with(&format!("{}-dhcp-", names::PREFIX))
            || rest.starts_with(&format!("{}-router-", names::PREFIX))
    }

    /// Brings the kernel to `plan`. Every step is tried; failures are
    /// reported, not fatal, so one broken object never blocks the rest.
    /// The order matters: namespaces before the links whose ends go into
    /// them, links before what lives on them, addresses before the DHCP
    /// servers that bind to them, and a namespace the plan dropped last,
    /// once nothing uses it.
    pub async fn apply(&self, plan: NodePlan) -> ApplyReport {
        let plan = plan.with_namespace_prefix(&self.config.namespace_prefix);
        let mut report = ApplyReport::default();
        let started = Instant::now();
        let mut phases: Vec<(&str, f64)> = Vec::new();
        let mut since = started;
        let mut lap = |phase: &'static str| {
            phases.push((phase, since.elapsed().as_secs_f64() * 1e3));
            since = Instant::now();
        };
        let inner = inner_namespaces(&plan);
        let existing = match self.namespaces.list() {
            Ok(existing) => existing,
            Err(e) => {
                report.errors.push(e.to_string());
                Vec::new()
            }
        };
        // The node closed to its tenants before any of their links is up;
        // a node with no tenant bridge has nothing to close.
        let wanted = (!plan.bridges.is_empty()).then(|| boundary::of(&plan));
        match self.rules.sync_boundary(wanted.as_ref()) {
            Ok(writes) => report.writes += writes,
            Err(e) => report.errors.push(format!("the node's boundary: {e}")),
        }
        self.create_namespaces(&inner, &existing, &mut report);
        lap("boundary and namespaces");
        let (mut touched, links_clean) = self.sync_links(&plan, &mut report).await;
        lap("links");
        touched.extend(report.namespaces_created.iter().cloned());
        for namespace in &inner {
            if !touched.contains(&namespace.name) && self.inside_is_current(namespace) {
                continue;
            }
            let errors = report.errors.len();
            self.sync_inside(namespace, &mut report).await;
            let mut insides = self.insides();
            if report.errors.len() == errors {
                insides.insert(namespace.name.clone(), (namespace.clone(), Instant::now()));
            } else {
                insides.remove(&namespace.name);
            }
        }
        self.insides()
            .retain(|name, _| inner.iter().any(|n| &n.name == name));
        lap("insides");
        if let Some(service) = &self.metadata {
            let wanted = metadata::listeners(&plan);
            let errors = service.sync(&wanted, &|namespace| touched.contains(namespace));
            report.errors.extend(errors);
        }
        lap("metadata");
        self.sync_firewall(&plan, &mut report);
        lap("firewall");
        self.sync_dhcp(&plan, &mut report);
        lap("dhcp");
        self.remove_namespaces(&inner, &existing, &mut report);
        if links_clean {
            *self.links_applied() = Some(plan);
        }
        tracing::debug!(
            ms = started.elapsed().as_secs_f64() * 1e3,
            ?phases,
            writes = report.writes,
            "apply"
        );
        report
    }

    /// The DHCP and router namespaces the plan wants, made if missing.
    fn create_namespaces(
        &self,
        inner: &[InnerNamespace],
        existing: &[String],
        report: &mut ApplyReport,
    ) {
        for namespace in inner.iter().filter(|n| !existing.contains(&n.name)) {
            match self.namespaces.create(&namespace.name) {
                Ok(()) => report.namespaces_created.push(namespace.name.clone()),
                Err(e) => report.errors.push(e.to_string()),
            }
        }
    }

    fn links_applied(&self) -> MutexGuard<'_, Option<NodePlan>> {
        self.links_applied
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn insides(&self) -> MutexGuard<'_, HashMap<String, (InnerNamespace, Instant)>> {
        self.insides
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the last apply brought `namespace` to this very plan, and
    /// not longer than a drift check ago.
    fn inside_is_current(&self, namespace: &InnerNamespace) -> bool {
        self.insides()
            .get(&namespace.name)
            .is_some_and(|(applied, at)| {
                applied == namespace && at.elapsed() < self.config.drift_check
            })
    }

    /// The node's links, FDB and neighbour entries: what differs from the
    /// plan is changed. When the last apply left the links as its plan
    /// wanted, only what differs between the two plans and what the kernel
    /// says changed since is compared. Returns the inner namespaces that
    /// got a new interface, whose insides must be set up again.
    async fn sync_links(
        &self,
        plan: &NodePlan,
        report: &mut ApplyReport,
    ) -> (BTreeSet<String>, bool) {
        let last = self.links_applied().take();
        let observed = match self.links.touched().await {
            Ok(touched) => {
                let only = touched
                    .zip(last)
                    .map(|(touched, before)| delta::affected(&before, plan, touched));
                self.links
                    .observe(only.as_ref())
                    .await
                    .map(|observed| (observed, only))
            }
            Err(e) => Err(e),
        };
        let (observed, only) = match observed {
            Ok(found) => found,
            Err(e) => {
                report.errors.push(e.to_string());
                return (BTreeSet::new(), false);
            }
        };
        let changes = match &only {
            Some(names) => diff_only(&observed, plan, names),
            None => diff(&observed, plan),
        };
        report.conflicts = changes.conflicts.clone();
        let applied = self.links.apply(&changes).await;
        report.writes += applied.writes;
        report.failed_links.extend(applied.failed_links);
        report
            .errors
            .extend(applied.errors.iter().map(ToString::to_string));
        // The plan is trusted as the kernel's state only when nothing
        // failed and no link was left alone.
        let clean = applied.errors.is_empty() && changes.conflicts.is_empty();
        (changes.namespaces_given_links(), clean)
    }

    /// Inside a DHCP or router namespace: its interfaces up with their
    /// addresses, its routes, and forwarding for a router.
    async fn sync_inside(&self, namespace: &InnerNamespace, report: &mut ApplyReport) {
        let entered = match self.inside.enter(&namespace.name).await {
            Ok(entered) => entered,
            Err(e) => return report.errors.push(e.to_string()),
        };
        match entered.observe(namespace).await {
            Ok(observed) => {
                let applied = entered.apply(&inside::diff(namespace, &observed)).await;
                report.writes += applied.writes;
                report
                    .errors
                    .extend(applied.errors.iter().map(ToString::to_string));
            }
            Err(e) => report.errors.push(e.to_string()),
        }
    }

    /// Security groups on the node, and each router's NAT.
    fn sync_firewall(&self, plan: &NodePlan, report: &mut ApplyReport) {
        match self.rules.sync_node(&plan.security, &bridge_ports(plan)) {
            Ok(writes) => report.writes += writes,
            Err(e) => report.errors.push(format!("security groups: {e}")),
        }
        for router in &plan.routers {
            match self.rules.sync_router(router) {
                Ok(writes) => report.writes += writes,
                Err(e) => report
                    .errors
                    .push(format!("NAT of router {}: {e}", router.router)),
            }
        }
        let routers: Vec<&str> = plan.routers.iter().map(|r| r.namespace.as_str()).collect();
        self.rules.forget_routers_except(&routers);
    }

    /// The DHCP servers: their files, then their processes.
    fn sync_dhcp(&self, plan: &NodePlan, report: &mut ApplyReport) {
        let mut wanted: Vec<_> = plan
            .dhcp
            .iter()
            .map(|p| dnsmasq::server(p, &self.dhcp.server_dir(&p.namespace)))
            .collect();
        // The routers' advertisements: one more dnsmasq in a router's
        // namespace, kept as the DHCP servers are.
        wanted.extend(
            plan.routers
                .iter()
                .filter_map(|r| dnsmasq::advertiser(r, &self.dhcp.server_dir(&r.namespace))),
        );
        let changes = dnsmasq::diff(&wanted, &self.dhcp.observe());
        let (dhcp, errors) = self.dhcp.apply(&changes);
        report.dhcp = dhcp;
        for e in errors {
            // Name the subnet: the namespace's name does not say it.
            let failed = e.downcast_ref::<DhcpError>().and_then(|failed| {
                let plan = plan.dhcp.iter().find(|d| d.namespace == failed.namespace)?;
                Some((plan, failed))
            });
            let router = e.downcast_ref::<DhcpError>().and_then(|failed| {
                let plan = plan
                    .routers
                    .iter()
                    .find(|r| r.namespace == failed.namespace)?;
                Some((plan, failed))
            });
            report.errors.push(match (failed, router) {
                (Some((plan, failed)), _) => format!(
                    "DHCP server of subnet {} in {}: {}: {}",
                    plan.subnet, failed.namespace, failed.what, failed.cause
                ),
                (None, Some((plan, failed))) => format!(
                    "router advertisements of router {} in {}: {}: {}",
                    plan.router, failed.namespace, failed.what, failed.cause
                ),
                (None, None) => e.to_string(),
            });
        }
    }

    /// The namespaces of ours the plan no longer wants.
    fn remove_namespaces(
        &self,
        inner: &[InnerNamespace],
        existing: &[String],
        report: &mut ApplyReport,
    ) {
        for name in existing {
            if self.owns_namespace(name) && !inner.iter().any(|n| &n.name == name) {
                match self.namespaces.delete(name) {
                    Ok(()) => report.namespaces_removed.push(name.clone()),
                    Err(e) => report.errors.push(e.to_string()),
                }
            }
        }
    }
}

impl Agent<Host> {
    /// Takes everything neutrino made on this node out of its kernel: the
    /// links, FDB and neighbour entries, DHCP and router namespaces and
    /// their dnsmasq servers, the node's boundary tables (an empty plan
    /// has no bridge to guard), neutrino's chains in both iptables
    /// backends and its ipsets, the ports' guard, and then the state
    /// directory. Others' links, chains
    /// and sets are left as they are.
    pub async fn remove_all(&self) -> ApplyReport {
        let nothing = NodePlan {
            node: String::new(),
            tunnel_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            bridges: Vec::new(),
            uplinks: Vec::new(),
            fdb: Vec::new(),
            neighbours: Vec::new(),
            ports: Vec::new(),
            dhcp: Vec::new(),
            routers: Vec::new(),
            security: SecurityPlan::default(),
        };
        let mut report = self.apply(nothing).await;
        let namespace = self.config.netns.as_deref();
        for backend in [Backend::Nft, Backend::Legacy] {
            match iptables::remove_chains(namespace, backend) {
                Ok(writes) => report.writes += writes,
                Err(e) => report.errors.push(format!("iptables ({backend}): {e}")),
            }
        }
        match iptables::remove_ipsets(namespace) {
            Ok(writes) => report.writes += writes,
            Err(e) => report.errors.push(format!("ipsets: {e}")),
        }
        match super::guard::remove(namespace) {
            Ok(writes) => report.writes += writes,
            Err(e) => report.errors.push(format!("the ports' guard: {e}")),
        }
        if report.errors.is_empty() {
            // Only what the agent keeps there; the directory itself if that
            // leaves it empty.
            for dir in [DHCP_DIR, FIREWALL_DIR] {
                let path = self.config.state_dir.join(dir);
                match std::fs::remove_dir_all(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => report
                        .errors
                        .push(format!("removing {}: {e}", path.display())),
                    _ => {}
                }
            }
            let _ = std::fs::remove_dir(&self.config.state_dir);
        }
        report
    }
}
