//! One node's agent: takes the node's plan to its kernel — namespaces,
//! links, FDB and neighbour entries, addresses and routes inside DHCP and
//! router namespaces, and the DHCP servers — changing only what differs.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use super::dnsmasq::{DhcpReport, Dnsmasq};
use super::iptables::{self, Firewall};
use super::netlink::Netlink;
use super::netns;
use neutrino_core::names;
use neutrino_core::plan::{NodePlan, SecurityPlan};
use neutrino_core::reconcile::{InnerNamespace, diff, inner_namespaces};
use neutrino_core::xtables::{Backend, Choice};

/// The state directory's parts: the DHCP servers' files, and what the
/// firewall last applied.
const DHCP_DIR: &str = "dhcp";
const FIREWALL_DIR: &str = "firewall";

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
    /// How often unchanged iptables rules and ipsets are read back to put
    /// back what was changed behind the agent's back (its resync interval).
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
    /// Names the plan wants that something else holds: left alone.
    pub conflicts: Vec<String>,
}

impl ApplyReport {
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty() && self.conflicts.is_empty()
    }
}

/// A node's agent.
pub struct Agent {
    config: AgentConfig,
    kernel: Netlink,
    dnsmasq: Dnsmasq,
    firewall: Firewall,
    /// Why the firewall's backend is the one it is.
    backend_reason: String,
}

impl Agent {
    pub async fn new(config: AgentConfig) -> Result<Self, super::netlink::NetlinkError> {
        let kernel = Netlink::connect(config.netns.as_deref()).await?;
        let dnsmasq = Dnsmasq::new(config.state_dir.join(DHCP_DIR));
        let (backend, backend_reason) = iptables::backend(config.netns.as_deref(), config.iptables);
        tracing::info!(%backend, reason = %backend_reason, "iptables backend chosen");
        let firewall = Firewall::new(config.state_dir.join(FIREWALL_DIR), backend)
            .checking_drift_every(config.drift_check);
        if let Err(e) = firewall.evict_other_backend(config.netns.as_deref()) {
            tracing::error!(error = %e, "could not take neutrino's chains out of the other iptables backend");
        }
        Ok(Self {
            config,
            kernel,
            dnsmasq,
            firewall,
            backend_reason,
        })
    }

    /// The iptables backend in use, and why.
    pub fn iptables(&self) -> (Backend, &str) {
        (self.firewall.backend(), &self.backend_reason)
    }

    /// The DHCP servers' manager, for looking at them.
    pub fn dnsmasq(&self) -> &Dnsmasq {
        &self.dnsmasq
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
    /// them, links before what lives on them, and a namespace the plan
    /// dropped last, once nothing uses it.
    pub async fn apply(&self, plan: &NodePlan) -> ApplyReport {
        let plan = plan
            .clone()
            .with_namespace_prefix(&self.config.namespace_prefix);
        let mut report = ApplyReport::default();
        let inner = inner_namespaces(&plan);
        self.create_namespaces(&inner, &mut report);
        self.sync_links(&plan, &mut report).await;
        for namespace in &inner {
            self.sync_inside(namespace, &mut report).await;
        }
        self.sync_firewall(&plan, &mut report);
        let (dhcp, errors) = self.dnsmasq.sync(&plan.dhcp);
        report.dhcp = dhcp;
        report
            .errors
            .extend(errors.into_iter().map(|e| e.to_string()));
        self.remove_namespaces(&inner, &mut report);
        report
    }

    /// The DHCP and router namespaces the plan wants, made if missing.
    fn create_namespaces(&self, inner: &[InnerNamespace], report: &mut ApplyReport) {
        for namespace in inner {
            if !netns::exists(&namespace.name) {
                match netns::create(&namespace.name) {
                    Ok(()) => report.namespaces_created.push(namespace.name.clone()),
                    Err(e) => report
                        .errors
                        .push(format!("creating namespace {}: {e}", namespace.name)),
                }
            }
        }
    }

    /// The node's links, FDB and neighbour entries: what differs from the
    /// plan is changed.
    async fn sync_links(&self, plan: &NodePlan, report: &mut ApplyReport) {
        let before = self.kernel.writes();
        match self.kernel.observe().await {
            Ok(observed) => {
                let changes = diff(&observed, plan);
                report.conflicts = changes.conflicts.clone();
                report.errors.extend(
                    self.kernel
                        .apply(&changes)
                        .await
                        .into_iter()
                        .map(|e| e.to_string()),
                );
            }
            Err(e) => report.errors.push(e.to_string()),
        }
        report.writes += self.kernel.writes() - before;
    }

    /// Inside a DHCP or router namespace: its interfaces up with their
    /// addresses, its routes, and forwarding for a router.
    async fn sync_inside(&self, namespace: &InnerNamespace, report: &mut ApplyReport) {
        match Netlink::connect(Some(&namespace.name)).await {
            Err(e) => report.errors.push(e.to_string()),
            Ok(inside) => {
                let mut steps = vec![inside.ensure_up("lo").await];
                for (interface, addresses) in &namespace.interfaces {
                    steps.push(inside.ensure_up(interface).await);
                    steps.push(inside.sync_addresses(interface, addresses).await);
                }
                steps.push(inside.sync_routes(&namespace.routes).await);
                report.errors.extend(
                    steps
                        .into_iter()
                        .filter_map(Result::err)
                        .map(|e| format!("in {}: {e}", namespace.name)),
                );
                report.writes += inside.writes();
            }
        }
        if namespace.forwarding {
            for key in ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"] {
                match netns::read_sysctl(Some(&namespace.name), key) {
                    Ok(v) if v == "1" => {}
                    _ => match netns::sysctl(Some(&namespace.name), key, "1") {
                        Ok(()) => report.writes += 1,
                        Err(e) => report
                            .errors
                            .push(format!("in {}: setting {key}: {e}", namespace.name)),
                    },
                }
            }
        }
    }

    /// Security groups on the node, and each router's NAT.
    fn sync_firewall(&self, plan: &NodePlan, report: &mut ApplyReport) {
        let bridges: Vec<String> = plan.bridges.iter().map(|b| b.name.clone()).collect();
        match self
            .firewall
            .sync_node(self.config.netns.as_deref(), &plan.security, &bridges)
        {
            Ok(writes) => report.writes += writes,
            Err(e) => report.errors.push(format!("security groups: {e}")),
        }
        for router in &plan.routers {
            match self.firewall.sync_router(router) {
                Ok(writes) => report.writes += writes,
                Err(e) => report
                    .errors
                    .push(format!("NAT of router {}: {e}", router.router)),
            }
        }
        let routers: Vec<&str> = plan.routers.iter().map(|r| r.namespace.as_str()).collect();
        self.firewall.forget_routers_except(&routers);
    }

    /// The namespaces of ours the plan no longer wants.
    fn remove_namespaces(&self, inner: &[InnerNamespace], report: &mut ApplyReport) {
        match netns::list() {
            Ok(existing) => {
                for name in existing {
                    if self.owns_namespace(&name) && !inner.iter().any(|n| n.name == name) {
                        match netns::delete(&name) {
                            Ok(()) => report.namespaces_removed.push(name),
                            Err(e) => report
                                .errors
                                .push(format!("removing namespace {name}: {e}")),
                        }
                    }
                }
            }
            Err(e) => report.errors.push(format!("listing namespaces: {e}")),
        }
    }

    /// Takes everything neutrino made on this node out of its kernel: the
    /// links, FDB and neighbour entries, DHCP and router namespaces and
    /// their dnsmasq servers, neutrino's chains in both iptables backends
    /// and its ipsets, and then the state directory. Others' links, chains
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
        let mut report = self.apply(&nothing).await;
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
