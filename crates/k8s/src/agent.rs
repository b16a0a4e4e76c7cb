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

/// The NodeAgent status an apply report makes; `realised` is the digest of
/// the objects the apply realised.
pub fn report_status(
    report: &ApplyReport,
    realised: String,
    iptables: IptablesBackend,
    now: &Time,
) -> NodeAgentStatus {
    let ready = report.errors.is_empty();
    NodeAgentStatus {
        version: env!("CARGO_PKG_VERSION").into(),
        heartbeat: Some(now.clone()),
        iptables: Some(iptables),
        last_apply_writes: report.writes as i64,
        last_apply_errors: report
            .errors
            .iter()
            .chain(&report.conflicts)
            .cloned()
            .collect(),
        realised: ready.then_some(realised),
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            reason: if ready { "Realised" } else { "ApplyFailed" }.into(),
            message: if ready {
                format!(
                    "the node's plan is realised ({} kernel writes in the last apply)",
                    report.writes
                )
            } else {
                report.errors.join("; ")
            },
            observed_generation: Some(0),
            last_transition_time: now.clone(),
        }],
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
    let condition = |type_: &str, status: bool, reason: &str, message: String| Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        observed_generation: Some(0),
        last_transition_time: now.clone(),
    };
    let message = if clean {
        format!(
            "everything neutrino made on this node is removed ({} kernel writes)",
            report.writes
        )
    } else {
        report.errors.join("; ")
    };
    NodeAgentStatus {
        version: env!("CARGO_PKG_VERSION").into(),
        heartbeat: Some(now.clone()),
        iptables: None,
        last_apply_writes: report.writes as i64,
        last_apply_errors: report.errors.clone(),
        realised: None,
        conditions: vec![
            condition(
                "Ready",
                false,
                "Removed",
                "asked to remove neutrino from this node".into(),
            ),
            condition(
                "Removed",
                clean,
                if clean { "Removed" } else { "RemoveFailed" },
                message,
            ),
        ],
    }
}

/// Writes the agent's status, giving up after the controller's request
/// timeout: a hung request must not hold the next apply back.
async fn write_status(
    api: &Api<NodeAgent>,
    node: &str,
    params: &PatchParams,
    body: &serde_json::Value,
) -> Result<(), Failure> {
    bounded(api.patch_status(node, params, &Patch::Apply(body)))
        .await
        .map(|_| ())
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
    ports.retain(|_, c| !report.errors.iter().any(|e| e.contains(&c.peer)));
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
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let spec = NodeAgentSpec {
        tunnel_ip: options.tunnel_ip.to_string(),
        tunnel_endpoint: options.tunnel_endpoint.clone(),
        physical_interfaces: options.physical_interfaces.clone(),
        gateway: options.gateway,
    };
    let body = json!({
        "apiVersion": NodeAgent::api_version(&()),
        "kind": NodeAgent::kind(&()),
        "metadata": {"name": options.node},
        "spec": spec,
    });
    api.patch(&options.node, &apply, &Patch::Apply(&body))
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
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(AgentError::Signal)?;
    let me = NodeConfig {
        name: options.node.clone(),
        tunnel_ip: options.tunnel_ip,
        physical_interfaces: options.physical_interfaces.clone(),
        gateway: options.gateway,
    };
    let mut last_report = Instant::now();
    let mut last_outcome = None;
    let mut last_skipped = Vec::new();
    let mut removed = false;
    // The last pass, if it settled; and when the part was last resolved
    // in full.
    let mut last_pass: Option<Pass> = None;
    let mut last_full: Option<Instant> = None;
    // Kept from pass to pass and updated from the changes: the index of
    // who refers to whom, the configuration, and each node's record.
    let mut kept: Option<(Index, ClusterConfig)> = None;
    // The part the last pass planned, resolved, with its plan.
    let mut view: Option<NodeView> = None;
    let mut peers: BTreeMap<String, Peer> = BTreeMap::new();
    loop {
        let started = Instant::now();
        let changes = stores.take_changes();
        tracing::debug!(
            objects = changes.objects.len(),
            everything = changes.everything,
            "pass"
        );
        // Asked while our record carries the annotation; once removed, also
        // after the record itself is gone (the uninstall deletes it), so that
        // only a record without it calls the removal off.
        let own = stores.peer(&options.node);
        let asked_to_remove = match &own.spec {
            Some(_) => own.annotations.contains_key(REMOVE_ANNOTATION),
            None => removed,
        };
        if asked_to_remove && !removed && own.spec.is_some() {
            let mut report = dataplane.remove_all().await;
            if report.errors.is_empty() && plugged.is_some() {
                report.errors.extend(remove_cni_files(&options));
            }
            tracing::warn!(writes = report.writes, errors = ?report.errors, "removed neutrino from this node, as asked");
            removed = report.errors.is_empty();
            let now = Time(k8s_openapi::jiff::Timestamp::now());
            let body = json!({
                "apiVersion": NodeAgent::api_version(&()),
                "kind": NodeAgent::kind(&()),
                "metadata": {"name": options.node},
                "status": removal_status(&report, &now),
            });
            if let Err(e) = write_status(&api, &options.node, &apply, &body).await {
                tracing::warn!(error = %e, "could not report the removal");
                removed = false;
            }
        }
        if asked_to_remove {
            // The changes passed over here are not taken in: start afresh.
            last_pass = None;
            kept = None;
            view = None;
            if let Some((plugged, _)) = &plugged {
                plugged.send_replace(Some(Arc::new(cni::Plugged {
                    ports: BTreeMap::new(),
                    not_ready: Some("asked to remove neutrino from this node".into()),
                })));
            }
            tokio::select! {
                _ = changed.notified() => pace::settle(Some(pace::Round::ended(started))).await,
                _ = tokio::time::sleep(options.resync) => {}
                _ = terminate.recv() => return Ok(()),
            }
            continue;
        }
        if removed {
            // The removal was called off: build the node up again, from a
            // fresh start if the CNI plugin's socket and files went.
            if plugged.is_some() {
                return Err(AgentError::RemovalCalledOff);
            }
            removed = false;
            last_outcome = None;
        }
        // Bring what is kept up to date: from the changes alone, unless a
        // watch listed afresh or nothing is kept yet.
        let fresh = changes.everything || kept.is_none();
        let mut peers_changed = fresh;
        if fresh {
            peers = stores.peers();
        } else {
            for name in &changes.nodes {
                let now = stores.peer(name);
                peers_changed |= peers.get(name).cloned().unwrap_or_default() != now;
                peers.insert(name.clone(), now);
            }
        }
        if fresh {
            kept = Some((Index::new(&stores.snapshot()), options.cluster.clone()));
        }
        let (index, config) = kept.as_mut().expect("filled above");
        if !fresh {
            stores.update(index, &changes);
        }
        if peers_changed {
            let (with_agents, skipped) = options
                .cluster
                .with_agents(&stores.agents(), &stores.node_addresses());
            if skipped != last_skipped {
                for record in &skipped {
                    tracing::warn!(%record, "peer left out");
                }
                last_skipped = skipped;
            }
            *config = with_agents;
            // Our own record may not have reached the cache yet.
            if config.node(&options.node).is_none() {
                config.nodes.push(me.clone());
            }
        }
        if !peers_changed
            && let (Some(pass), Some(view)) = (&last_pass, &view)
            && pass.untouched_by(view.reach(), &changes, &stores, options.resync)
        {
            tracing::trace!(
                changes = changes.objects.len(),
                "no change reaches this node"
            );
            tokio::select! {
                _ = changed.notified() => pace::settle(Some(pace::Round::ended(started))).await,
                _ = tokio::time::sleep(options.resync.saturating_sub(pass.at.elapsed())) => {}
                _ = terminate.recv() => return Ok(()),
            }
            continue;
        }
        // Only the part of the cluster this node's plan depends on, with
        // the allocations the controller recorded for it: a change made of
        // ports that draw nothing new into the part patched in, anything
        // else resolved again only in the namespaces where the part
        // differs; in full when the nodes changed, after a pass that did
        // not settle, and every resync (counted from the last full one),
        // as a safety net.
        let resolve_all = peers_changed
            || last_pass.is_none()
            || last_full.is_none_or(|at| at.elapsed() >= options.resync);
        let node = config.node(&options.node).expect("added above");
        let current = match view.as_mut().filter(|_| !resolve_all) {
            Some(kept) if fresh => {
                kept.afresh(index, &*stores, config, node);
                kept
            }
            Some(kept) => {
                let changed = (&changes.objects, &changes.ip_claims);
                let followed = kept.follow(index, &*stores, config, node, changed);
                tracing::trace!(
                    ?followed,
                    changes = changes.objects.len(),
                    "part brought up to date"
                );
                kept
            }
            None => {
                last_full = Some(Instant::now());
                view.insert(NodeView::new(index, &*stores, config, node))
            }
        };
        let plan = current.plan().clone();
        let realised = current.realised().to_string();
        let report = match &plugged {
            None => dataplane.apply(plan).await,
            Some((sender, held)) => {
                let plan =
                    with_sandboxes(plan, &held.sandboxes(), |port| cni::claimed(&stores, port));
                let report = {
                    let _links = held.links().await;
                    dataplane.apply(plan).await
                };
                publish_plugged(sender, current, &report);
                report
            }
        };
        if report.writes > 0 || !report.errors.is_empty() {
            tracing::info!(writes = report.writes, errors = ?report.errors, "applied");
        }
        // Ready once the node's plan is applied, errors or not: they are
        // reported in the NodeAgent's status, and a rolling update must not
        // stall on a network that cannot be realised.
        readiness.set();
        // Report what changed at once and a heartbeat every resync, but not
        // on every wake-up: our own report wakes us (and every agent) again.
        let outcome = (
            report.writes > 0,
            report.errors.clone(),
            report.conflicts.clone(),
            realised.clone(),
        );
        if outcome.0
            || last_outcome.as_ref() != Some(&outcome)
            || last_report.elapsed() >= options.resync
        {
            let now = Time(k8s_openapi::jiff::Timestamp::now());
            let (backend, reason) = dataplane.iptables();
            let iptables = IptablesBackend {
                backend: backend.to_string(),
                reason: reason.to_string(),
            };
            let status = report_status(&report, realised, iptables, &now);
            let body = json!({
                "apiVersion": NodeAgent::api_version(&()),
                "kind": NodeAgent::kind(&()),
                "metadata": {"name": options.node},
                "status": status,
            });
            match write_status(&api, &options.node, &apply, &body).await {
                Ok(_) => {
                    last_report = Instant::now();
                    last_outcome = Some(outcome.clone());
                }
                // The dataplane does not depend on the API: keep going.
                Err(e) => tracing::warn!(error = %e, "could not report to the API server"),
            }
        }
        // Changes that do not reach the part may be passed over only while
        // what this pass did is applied and reported.
        let settled = report.errors.is_empty() && last_outcome.as_ref() == Some(&outcome);
        last_pass = settled.then(|| Pass { at: Instant::now() });
        tokio::select! {
            _ = changed.notified() => pace::settle(Some(pace::Round::ended(started))).await,
            _ = tokio::time::sleep(options.resync) => {}
            _ = terminate.recv() => return Ok(()),
        }
    }
}
