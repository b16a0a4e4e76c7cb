//! `neutrino agent` on a cluster: publishes the node's NodeAgent record,
//! watches what the node needs, and drives the same dataplane agent as the
//! lab — but only with objects the controller found Ready, and only once
//! its caches are filled, so that a restart or an unreachable API server
//! never takes down what is running: the kernel stays as it is.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

use super::cni;
use super::execute::{Failure, bounded};
use super::health::{self, Readiness};
use super::metadata::ClusterDirectory;
use super::pace;
use super::stores::{Changes, Peer, Stores};
use neutrino_api::{IptablesBackend, NodeAgent, NodeAgentSpec, NodeAgentStatus, TunnelEndpoint};
use neutrino_core::attachment::{configurations, with_sandboxes};
use neutrino_core::incremental::NodeView;
use neutrino_core::plan::NodePlan;
use neutrino_core::scope::{self, Index};
use neutrino_core::xtables::Choice;
use neutrino_core::{ClusterConfig, NodeConfig};
use neutrino_dataplane::agent::{Agent, AgentConfig, ApplyReport, namespace_prefix};
use neutrino_dataplane::netlink::NetlinkError;

/// The field manager of what agents write.
pub const FIELD_MANAGER: &str = "neutrino-agent";

/// How an agent runs.
#[derive(Clone, Debug)]
pub struct Options {
    pub node: String,
    pub tunnel_ip: IpAddr,
    /// How `tunnel_ip` was chosen.
    pub tunnel_endpoint: Option<TunnelEndpoint>,
    pub physical_interfaces: BTreeMap<String, String>,
    pub gateway: bool,
    /// Program this namespace instead of the agent's own.
    pub netns: Option<String>,
    /// Where DHCP servers and the firewall keep their files.
    pub state_dir: PathBuf,
    /// Ranges and physical networks; nodes come from the NodeAgent records.
    pub cluster: ClusterConfig,
    /// An apply and a heartbeat at least this often.
    pub resync: Duration,
    /// The iptables backend: the host's, or one named.
    pub iptables: Choice,
    /// Where to serve the CNI plugin, if anywhere.
    pub cni_socket: Option<PathBuf>,
    /// Where the node's runtime finds the CNI plugin: removed with the rest
    /// when the agent is asked to remove neutrino, put back from beside the
    /// agent's own binary at start if it is missing.
    pub cni_plugin: Option<PathBuf>,
    /// Where to serve `/healthz` and `/readyz`, if anywhere.
    pub health_listen: Option<SocketAddr>,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("publishing NodeAgent {node}: {cause}")]
    Publish { node: String, cause: kube::Error },
    #[error(transparent)]
    Dataplane(#[from] NetlinkError),
    #[error("waiting for SIGTERM: {0}")]
    Signal(std::io::Error),
    #[error("serving /healthz and /readyz on {listen}: {cause}")]
    Health {
        listen: SocketAddr,
        cause: std::io::Error,
    },
    #[error("installing the CNI plugin as {plugin}: {cause}")]
    CniPlugin {
        plugin: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "the removal of neutrino from this node was called off after the CNI plugin went: \
         starting again to serve it"
    )]
    RemovalCalledOff,
    #[error("serving the CNI plugin on {socket}: {cause}")]
    CniSocket {
        socket: PathBuf,
        cause: std::io::Error,
    },
}

/// A condition of a NodeAgent's status, as of `now`.
fn condition(type_: &str, status: bool, reason: &str, message: String, now: &Time) -> Condition {
    Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        observed_generation: Some(0),
        last_transition_time: now.clone(),
    }
}

/// What a condition says of `report`: `done` when it went without
/// errors, else the errors.
fn said(report: &ApplyReport, done: String) -> String {
    if report.errors.is_empty() {
        done
    } else {
        report.errors.join("; ")
    }
}

/// The NodeAgent status after `report`: this agent's version, a heartbeat
/// and the apply's writes and errors, with `conditions`.
fn status(report: &ApplyReport, now: &Time, conditions: Vec<Condition>) -> NodeAgentStatus {
    NodeAgentStatus {
        version: env!("CARGO_PKG_VERSION").into(),
        heartbeat: Some(now.clone()),
        iptables: None,
        last_apply_writes: report.writes as i64,
        last_apply_errors: report.errors.clone(),
        realised: None,
        conditions,
    }
}

/// The NodeAgent status an apply report makes; `realised` is the digest of
/// the objects the apply realised.
pub fn report_status(
    report: &ApplyReport,
    realised: String,
    iptables: IptablesBackend,
    now: &Time,
) -> NodeAgentStatus {
    let ready = report.errors.is_empty();
    let message = said(
        report,
        format!(
            "the node's plan is realised ({} kernel writes in the last apply)",
            report.writes
        ),
    );
    let reason = if ready { "Realised" } else { "ApplyFailed" };
    NodeAgentStatus {
        iptables: Some(iptables),
        last_apply_errors: (report.errors.iter())
            .chain(&report.conflicts)
            .cloned()
            .collect(),
        realised: ready.then_some(realised),
        ..status(
            report,
            now,
            vec![condition("Ready", ready, reason, message, now)],
        )
    }
}

/// The annotation that asks an agent to take everything neutrino made out
/// of its node and then do nothing more: how `neutrino uninstall` empties
/// every node before the chart's DaemonSet goes.
pub const REMOVE_ANNOTATION: &str = "neutrino.dev/remove";

/// The NodeAgent status after a removal: `Removed` says whether the node is
/// clean, and the agent is no longer Ready for anything.
pub fn removal_status(report: &ApplyReport, now: &Time) -> NodeAgentStatus {
    let clean = report.errors.is_empty();
    let message = said(
        report,
        format!(
            "everything neutrino made on this node is removed ({} kernel writes)",
            report.writes
        ),
    );
    let asked = "asked to remove neutrino from this node".to_string();
    let reason = if clean { "Removed" } else { "RemoveFailed" };
    status(
        report,
        now,
        vec![
            condition("Ready", false, "Removed", asked, now),
            condition("Removed", clean, reason, message, now),
        ],
    )
}

/// The NodeAgent record of `node` with one part (`spec` or `status`), as
/// the agent applies it.
fn record(node: &str, part: &str, value: impl serde::Serialize) -> serde_json::Value {
    json!({
        "apiVersion": NodeAgent::api_version(&()),
        "kind": NodeAgent::kind(&()),
        "metadata": {"name": node},
        part: value,
    })
}

/// A pass that settled: what it applied is reported.
struct Pass {
    at: Instant,
}

impl Pass {
    /// Whether `changes` leave this node's plan as the pass made it: none
    /// reaches its part, and the drift check is not yet due. (A heartbeat
    /// changes a record's status only, which the configuration does not
    /// read; the caller weighs the records.)
    fn untouched_by(
        &self,
        reach: &scope::Reach,
        changes: &Changes,
        stores: &Stores,
        resync: Duration,
    ) -> bool {
        if changes.everything || self.at.elapsed() >= resync {
            return false;
        }
        changes
            .objects
            .iter()
            .all(|id| !reach.reaches(id, stores.object(id).as_ref()))
    }
}

/// Tells the CNI socket what the apply plugged: every port of the plan,
/// unless the apply failed on the port's own links.
fn publish_plugged(sender: &cni::PluggedSender, view: &NodeView, report: &ApplyReport) {
    let plan = view.plan();
    let mut ports = configurations(view.resolved().resolution(), &plan.ports);
    let failed = |link: &String| report.failed_links.contains(link);
    ports.retain(|_, c| !failed(&c.interface) && !failed(&c.peer));
    let not_ready = (!report.errors.is_empty()).then(|| report.errors.join("; "));
    sender.send_replace(Some(Arc::new(cni::Plugged { ports, not_ready })));
}

/// Puts the CNI plugin that ships beside this binary at `plugin`, whole or
/// not at all, unless one is there (the DaemonSet's init container puts it
/// there first; this brings it back after a removal that was called off).
fn install_plugin(plugin: &Path) -> std::io::Result<()> {
    if plugin.exists() {
        return Ok(());
    }
    let source = std::env::current_exe()?.with_file_name("neutrino-cni");
    let partial = plugin.with_file_name(".neutrino-cni.partial");
    std::fs::copy(&source, &partial)?;
    std::fs::rename(&partial, plugin)
}

/// What the CNI service keeps on the node: its socket, its records and
/// the plugin itself. Once they are gone the runtime's calls fail (DEL the
/// plugin answers by itself), as they must on a node neutrino has left.
fn remove_cni_files(options: &Options) -> Vec<String> {
    let mut errors = Vec::new();
    let mut gone = |path: &Path, removed: std::io::Result<()>| match removed {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            errors.push(format!("removing {}: {e}", path.display()))
        }
        _ => {}
    };
    for file in options.cni_socket.iter().chain(&options.cni_plugin) {
        gone(file, std::fs::remove_file(file));
    }
    let records = options.state_dir.join(cni::RECORDS_DIR);
    gone(&records, std::fs::remove_dir_all(&records));
    let _ = std::fs::remove_dir(&options.state_dir);
    errors
}

/// Runs the agent until SIGTERM.
pub async fn run(client: Client, options: Options) -> Result<(), AgentError> {
    let readiness = Readiness::default();
    if let Some(listen) = options.health_listen {
        health::serve(listen, readiness.clone())
            .await
            .map_err(|cause| AgentError::Health { listen, cause })?;
    }
    let api: Api<NodeAgent> = Api::all(client.clone());
    let spec = NodeAgentSpec {
        tunnel_ip: options.tunnel_ip.to_string(),
        tunnel_endpoint: options.tunnel_endpoint.clone(),
        physical_interfaces: options.physical_interfaces.clone(),
        gateway: options.gateway,
    };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(
        &options.node,
        &params,
        &Patch::Apply(&record(&options.node, "spec", spec)),
    )
    .await
    .map_err(|cause| AgentError::Publish {
        node: options.node.clone(),
        cause,
    })?;

    if let Some(plugin) = &options.cni_plugin {
        install_plugin(plugin).map_err(|cause| AgentError::CniPlugin {
            plugin: plugin.clone(),
            cause,
        })?;
    }
    let changed = Arc::new(Notify::new());
    let stores = Arc::new(Stores::start_noting_changes(&client, &changed));
    stores.ready().await;
    tracing::info!(node = %options.node, "caches filled");
    let plugged = match &options.cni_socket {
        None => None,
        Some(socket) => {
            let (sender, receiver) = tokio::sync::watch::channel(None);
            let held = cni::Held::default();
            let service = cni::Service::new(
                client.clone(),
                options.node.clone(),
                options.netns.clone(),
                &options.state_dir,
                held.clone(),
                receiver,
                stores.clone(),
            );
            cni::start(service, socket.clone(), options.resync).map_err(|cause| {
                AgentError::CniSocket {
                    socket: socket.clone(),
                    cause,
                }
            })?;
            Some((sender, held))
        }
    };

    let prefix = namespace_prefix(options.netns.as_deref());
    let dataplane = Agent::new(AgentConfig {
        netns: options.netns.clone(),
        namespace_prefix: prefix,
        state_dir: options.state_dir.clone(),
        iptables: options.iptables,
        drift_check: options.resync,
    })
    .await?
    .serving_metadata(Arc::new(ClusterDirectory {
        stores: stores.clone(),
        client: client.clone(),
    }));
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(AgentError::Signal)?;
    let me = NodeConfig {
        name: options.node.clone(),
        tunnel_ip: options.tunnel_ip,
        physical_interfaces: options.physical_interfaces.clone(),
        gateway: options.gateway,
    };
    let agent = AgentLoop {
        options,
        me,
        stores,
        changed,
        terminate,
        api,
        params,
        dataplane,
        plugged,
        readiness,
        kept: None,
        view: None,
        peers: BTreeMap::new(),
        skipped: Vec::new(),
        last_pass: None,
        last_full: None,
        reported: None,
        reported_at: Instant::now(),
        removed: false,
    };
    agent.run().await
}

/// What a pass reports: whether it wrote, its errors and conflicts, and
/// the digest of what it realised. Reported when it changes.
#[derive(Clone, PartialEq)]
struct Outcome {
    wrote: bool,
    errors: Vec<String>,
    conflicts: Vec<String>,
    realised: String,
}

/// The agent's loop, one pass at a time, in named steps: take in what the
/// watches changed, bring the resolved part of the cluster up to date,
/// plan, apply, report; then wait for the next change.
struct AgentLoop {
    options: Options,
    me: NodeConfig,
    stores: Arc<Stores>,
    changed: Arc<Notify>,
    terminate: tokio::signal::unix::Signal,
    api: Api<NodeAgent>,
    params: PatchParams,
    dataplane: Agent,
    /// The CNI socket's view of what is plugged, and the sandboxes that
    /// hold ports; none without the socket.
    plugged: Option<(cni::PluggedSender, cni::Held)>,
    readiness: Readiness,
    /// Kept from pass to pass and updated from the changes: the index of
    /// who refers to whom, the configuration, and each node's record.
    kept: Option<(Index, ClusterConfig)>,
    peers: BTreeMap<String, Peer>,
    /// The records left out of the configuration, as last warned about.
    skipped: Vec<String>,
    /// The part the last pass planned, resolved, with its plan.
    view: Option<NodeView>,
    /// The last pass, if it settled; and when the part was last resolved
    /// in full.
    last_pass: Option<Pass>,
    last_full: Option<Instant>,
    /// The last outcome reported, and when it was.
    reported: Option<Outcome>,
    reported_at: Instant,
    /// Whether this node was cleared at the removal's request.
    removed: bool,
}

impl AgentLoop {
    async fn run(mut self) -> Result<(), AgentError> {
        loop {
            let started = Instant::now();
            let changes = self.stores.take_changes();
            tracing::debug!(
                objects = changes.objects.len(),
                everything = changes.everything,
                "pass"
            );
            let at_most = self.pass(&changes).await?;
            if !self.wait(started, at_most).await {
                return Ok(());
            }
        }
    }

    /// One pass over `changes`; how long the next may wait for a change.
    async fn pass(&mut self, changes: &Changes) -> Result<Duration, AgentError> {
        if self.remove_if_asked().await? {
            return Ok(self.options.resync);
        }
        let peers_changed = self.take_in(changes);
        if !peers_changed
            && let (Some(pass), Some(view)) = (&self.last_pass, &self.view)
            && pass.untouched_by(view.reach(), changes, &self.stores, self.options.resync)
        {
            tracing::trace!(
                changes = changes.objects.len(),
                "no change reaches this node"
            );
            return Ok(self.options.resync.saturating_sub(pass.at.elapsed()));
        }
        self.resolve(changes, peers_changed);
        let view = self.view.as_ref().expect("resolved above");
        let (plan, realised) = (view.plan().clone(), view.realised().to_string());
        let report = self.apply(plan).await;
        let outcome = self.report(&report, realised).await;
        // Changes that do not reach the part may be passed over only while
        // what this pass did is applied and reported.
        let settled = report.errors.is_empty() && self.reported.as_ref() == Some(&outcome);
        self.last_pass = settled.then(|| Pass { at: Instant::now() });
        Ok(self.options.resync)
    }

    /// Waits for a change (paced after the pass that `started`), at most
    /// `at_most`; false once the agent is asked to stop.
    async fn wait(&mut self, started: Instant, at_most: Duration) -> bool {
        tokio::select! {
            _ = self.changed.notified() => {
                pace::settle(Some(pace::Round::ended(started))).await;
                true
            }
            _ = tokio::time::sleep(at_most) => true,
            _ = self.terminate.recv() => false,
        }
    }

    /// Clears the node while its record asks for the removal (once), and
    /// says whether it asks. A removal called off after the CNI plugin went
    /// ends the agent, to start afresh and serve it again.
    async fn remove_if_asked(&mut self) -> Result<bool, AgentError> {
        // Asked while our record carries the annotation; once removed, also
        // after the record itself is gone (the uninstall deletes it), so that
        // only a record without it calls the removal off.
        let own = self.stores.peer(&self.options.node);
        let asked = match &own.spec {
            Some(_) => own.annotations.contains_key(REMOVE_ANNOTATION),
            None => self.removed,
        };
        if asked && !self.removed && own.spec.is_some() {
            let mut report = self.dataplane.remove_all().await;
            if report.errors.is_empty() && self.plugged.is_some() {
                report.errors.extend(remove_cni_files(&self.options));
            }
            tracing::warn!(writes = report.writes, errors = ?report.errors, "removed neutrino from this node, as asked");
            self.removed = report.errors.is_empty();
            let now = Time(k8s_openapi::jiff::Timestamp::now());
            let body = record(&self.options.node, "status", removal_status(&report, &now));
            if let Err(e) = self.write_status(&body).await {
                tracing::warn!(error = %e, "could not report the removal");
                self.removed = false;
            }
        }
        if asked {
            // The changes passed over here are not taken in: start afresh.
            self.last_pass = None;
            self.kept = None;
            self.view = None;
            if let Some((plugged, _)) = &self.plugged {
                plugged.send_replace(Some(Arc::new(cni::Plugged {
                    ports: BTreeMap::new(),
                    not_ready: Some("asked to remove neutrino from this node".into()),
                })));
            }
            return Ok(true);
        }
        if self.removed {
            // The removal was called off: build the node up again, from a
            // fresh start if the CNI plugin's socket and files went.
            if self.plugged.is_some() {
                return Err(AgentError::RemovalCalledOff);
            }
            self.removed = false;
            self.reported = None;
        }
        Ok(false)
    }

    /// Brings what is kept up to date with `changes`: from the changes
    /// alone, unless a watch listed afresh or nothing is kept yet. Whether
    /// the nodes' records changed.
    fn take_in(&mut self, changes: &Changes) -> bool {
        let fresh = changes.everything || self.kept.is_none();
        let mut peers_changed = fresh;
        if fresh {
            self.peers = self.stores.peers();
        } else {
            for name in &changes.nodes {
                let now = self.stores.peer(name);
                peers_changed |= self.peers.get(name).cloned().unwrap_or_default() != now;
                self.peers.insert(name.clone(), now);
            }
        }
        if fresh {
            let index = Index::new(&self.stores.snapshot());
            self.kept = Some((index, self.options.cluster.clone()));
        }
        let (index, config) = self.kept.as_mut().expect("filled above");
        if !fresh {
            self.stores.update(index, changes);
        }
        if peers_changed {
            let (with_agents, skipped) = (self.options.cluster)
                .with_agents(&self.stores.agents(), &self.stores.node_addresses());
            if skipped != self.skipped {
                for record in &skipped {
                    tracing::warn!(%record, "peer left out");
                }
                self.skipped = skipped;
            }
            *config = with_agents;
            // Our own record may not have reached the cache yet.
            if config.node(&self.options.node).is_none() {
                config.nodes.push(self.me.clone());
            }
        }
        peers_changed
    }

    /// Only the part of the cluster this node's plan depends on, with the
    /// allocations the controller recorded for it: a change made of ports
    /// that draw nothing new into the part patched in, anything else
    /// resolved again only in the namespaces where the part differs; in
    /// full when the nodes changed, after a pass that did not settle, and
    /// every resync (counted from the last full one), as a safety net.
    fn resolve(&mut self, changes: &Changes, peers_changed: bool) {
        let resolve_all = peers_changed
            || self.last_pass.is_none()
            || (self.last_full).is_none_or(|at| at.elapsed() >= self.options.resync);
        let fresh = changes.everything;
        let (index, config) = self.kept.as_ref().expect("taken in first");
        let node = config
            .node(&self.options.node)
            .expect("added when taken in");
        let stores = &*self.stores;
        match self.view.as_mut().filter(|_| !resolve_all) {
            Some(kept) if fresh => kept.afresh(index, stores, config, node),
            Some(kept) => {
                let changed = (&changes.objects, &changes.ip_claims);
                let followed = kept.follow(index, stores, config, node, changed);
                tracing::trace!(
                    ?followed,
                    changes = changes.objects.len(),
                    "part brought up to date"
                );
            }
            None => {
                self.last_full = Some(Instant::now());
                self.view = Some(NodeView::new(index, stores, config, node));
            }
        }
    }

    /// Applies `plan`, with the ports the CNI socket's sandboxes hold, and
    /// tells the socket what is plugged.
    async fn apply(&mut self, plan: NodePlan) -> ApplyReport {
        let report = match &self.plugged {
            None => self.dataplane.apply(plan).await,
            Some((sender, held)) => {
                let stores = &self.stores;
                let plan =
                    with_sandboxes(plan, &held.sandboxes(), |port| cni::claimed(stores, port));
                let report = {
                    let _links = held.links().await;
                    self.dataplane.apply(plan).await
                };
                let view = self.view.as_ref().expect("resolved before");
                publish_plugged(sender, view, &report);
                report
            }
        };
        if report.writes > 0 || !report.errors.is_empty() {
            tracing::info!(writes = report.writes, errors = ?report.errors, "applied");
        }
        // Ready once the node's plan is applied, errors or not: they are
        // reported in the NodeAgent's status, and a rolling update must not
        // stall on a network that cannot be realised.
        self.readiness.set();
        report
    }

    /// Reports what changed at once and a heartbeat every resync, but not
    /// on every wake-up: our own report wakes us (and every agent) again.
    async fn report(&mut self, report: &ApplyReport, realised: String) -> Outcome {
        let outcome = Outcome {
            wrote: report.writes > 0,
            errors: report.errors.clone(),
            conflicts: report.conflicts.clone(),
            realised: realised.clone(),
        };
        if !outcome.wrote
            && self.reported.as_ref() == Some(&outcome)
            && self.reported_at.elapsed() < self.options.resync
        {
            return outcome;
        }
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let (backend, reason) = self.dataplane.iptables();
        let iptables = IptablesBackend {
            backend: backend.to_string(),
            reason: reason.to_string(),
        };
        let status = report_status(report, realised, iptables, &now);
        match self
            .write_status(&record(&self.options.node, "status", status))
            .await
        {
            Ok(()) => {
                self.reported_at = Instant::now();
                self.reported = Some(outcome.clone());
            }
            // The dataplane does not depend on the API: keep going.
            Err(e) => tracing::warn!(error = %e, "could not report to the API server"),
        }
        outcome
    }

    /// Writes the agent's status, giving up after the controller's request
    /// timeout: a hung request must not hold the next apply back.
    async fn write_status(&self, body: &serde_json::Value) -> Result<(), Failure> {
        bounded(
            self.api
                .patch_status(&self.options.node, &self.params, &Patch::Apply(body)),
        )
        .await
        .map(|_| ())
    }
}
