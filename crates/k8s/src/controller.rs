//! `neutrino controller`: watches everything, and while it holds the
//! leader Lease, runs rounds — resolve, compute the actions, carry them
//! out — whenever something changed, and every `resync` besides. A round
//! after a few changes resolves only the namespaces they touch, from the
//! view the last round kept (`core::incremental`); the first round, and one
//! every `resync`, resolve the whole snapshot. Replicas that are not the
//! leader only keep their caches warm, so a failover starts from a full
//! view.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

use super::events;
use super::execute::{FIELD_MANAGER, execute};
use super::metrics::{self, Metrics};
use super::pace;
use super::stores::{Changes, Peer, Stores};
use super::takeover;
use kube::runtime::events::{Recorder, Reporter};
use neutrino_api::NodeAgent;
use neutrino_core::ClusterConfig;
use neutrino_core::controller::notices;
use neutrino_core::incremental::{Changed, Kept};
use neutrino_core::realisation::{Acknowledged, AgentHealth};
use std::collections::{BTreeMap, BTreeSet};

/// The Lease the replicas compete for.
pub const LEASE_NAME: &str = "neutrino-controller";

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Ranges, physical networks and underlay MTU; nodes come from the
    /// agents' NodeAgent records.
    pub cluster: ClusterConfig,
    /// Where /metrics, /healthz and /readyz listen.
    pub listen: SocketAddr,
    /// The namespace of the leader Lease (the controller's own).
    pub lease_namespace: String,
    /// This replica's name in the Lease (its pod name).
    pub identity: String,
    /// A round at least this often, changes or not.
    pub resync: Duration,
    /// How long the Lease holds without renewal (whole seconds, at least
    /// 2): a replica that stops renewing loses its writes after this long.
    pub lease_duration: Duration,
}

/// Why the controller stopped.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("listening on {listen}: {cause}")]
    Listen {
        listen: SocketAddr,
        cause: std::io::Error,
    },
    #[error("leader election on Lease {namespace}/{LEASE_NAME}: {cause}")]
    Lease {
        namespace: String,
        cause: kube_lease_manager::LeaseManagerError,
    },
    #[error("waiting for SIGTERM: {0}")]
    Signal(std::io::Error),
}

/// An agent whose heartbeat is older than this is taken for gone.
const HEARTBEAT_TIMEOUT: i64 = 120;

/// A node's agent as its record last says: Ready, or failed and why; None
/// for a record that has not reported.
pub fn agent_health(
    agent: &NodeAgent,
    now: k8s_openapi::jiff::Timestamp,
) -> Option<(String, AgentHealth)> {
    let name = agent.metadata.name.clone()?;
    let status = agent.status.as_ref()?;
    let age = status.heartbeat.as_ref().map(|h| (now - h.0).get_seconds());
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
    let health = match age {
        Some(age) if age > HEARTBEAT_TIMEOUT => {
            AgentHealth::Failed(format!("no heartbeat for {age}s"))
        }
        _ if ready.status == "True" => AgentHealth::Ready(status.realised.clone()),
        _ => AgentHealth::Failed(ready.message.clone()),
    };
    Some((name, health))
}

/// Each node's agent as its record last said.
pub fn health(
    agents: &[NodeAgent],
    now: k8s_openapi::jiff::Timestamp,
) -> BTreeMap<String, AgentHealth> {
    agents.iter().filter_map(|a| agent_health(a, now)).collect()
}

/// What earlier rounds already told in Events: each agent's readiness,
/// and the version of each malformed object.
#[derive(Default)]
struct Seen {
    agents: BTreeMap<String, String>,
    malformed: BTreeMap<String, String>,
}

/// What the leader keeps from round to round: the view of the last round
/// (None: the next round is full), what agents were seen to realise, each
/// node's record and its agent's health, and the configuration they make.
struct View {
    kept: Option<Kept>,
    acknowledged: Acknowledged,
    peers: BTreeMap<String, Peer>,
    agents: BTreeMap<String, AgentHealth>,
    config: ClusterConfig,
    last_full: Instant,
}

impl View {
    fn new(cluster: &ClusterConfig) -> Self {
        View {
            kept: None,
            acknowledged: Acknowledged::default(),
            peers: BTreeMap::new(),
            agents: BTreeMap::new(),
            config: cluster.clone(),
            last_full: Instant::now(),
        }
    }

    /// Drops the kept view, so that the next round is full; what agents
    /// were seen to realise stays, so that the full round does not count
    /// a node's every object as unrealised because one of them changed.
    fn forget(&mut self) {
        if let Some(kept) = self.kept.take() {
            self.acknowledged = kept.acknowledged(&self.agents);
        }
    }

    /// Brings the nodes up to date: every record when `whole`, else those
    /// `changes` name. A node whose record (spec, annotations) or Node
    /// changed remakes the configuration; one whose status alone changed
    /// (a heartbeat, a report) only its agent's health. Returns whether the
    /// configuration was made afresh, and the nodes whose health changed.
    fn nodes(
        &mut self,
        stores: &Stores,
        cluster: &ClusterConfig,
        changes: &Changes,
        whole: bool,
    ) -> (bool, BTreeSet<String>) {
        let now = k8s_openapi::jiff::Timestamp::now();
        let mut remake = whole;
        let mut moved = BTreeSet::new();
        if whole {
            self.peers = stores.peers();
        } else {
            for name in &changes.nodes {
                let peer = stores.peer(name);
                remake |= self.peers.get(name) != Some(&peer);
                self.peers.insert(name.clone(), peer);
                let health = stores.agent(name).and_then(|a| agent_health(&a, now));
                let before = match health {
                    Some((_, health)) => self.agents.insert(name.clone(), health.clone()),
                    None => self.agents.remove(name),
                };
                if before != self.agents.get(name).cloned() {
                    moved.insert(name.clone());
                }
            }
        }
        if remake {
            let agents = stores.agents();
            let (config, skipped) = cluster.with_agents(&agents, &stores.node_addresses());
            for record in skipped {
                tracing::warn!(%record, "node left out");
            }
            self.config = config;
            self.agents = health(&agents, now);
        }
        (remake, moved)
    }
}

/// One round; returns whether another should follow at once (a claim was
/// lost or a status was stale: the caches are behind).
///
/// A round resolves only the namespaces the changes touch, from the view
/// the last round kept; it is full on the first round, after a watch
/// listed afresh, when a change reaches past its namespaces, after a round
/// that did not go through, and every `resync`.
async fn round(
    client: &Client,
    stores: &Stores,
    view: &mut View,
    options: &Options,
    metrics: &Metrics,
    recorder: &Recorder,
    seen: &mut Seen,
) -> bool {
    let started = Instant::now();
    let changes = stores.take_changes();
    let mut full_due =
        changes.everything || view.kept.is_none() || view.last_full.elapsed() >= options.resync;
    let (remade, health_changed) = view.nodes(stores, &options.cluster, &changes, full_due);
    full_due |= remade
        && view
            .kept
            .as_ref()
            .is_none_or(|k| *k.config() != view.config);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let changed = Changed {
        objects: changes.objects,
        ip_claims: changes.ip_claims,
        segment_claims: changes.segment_claims,
        nodes: health_changed,
    };
    let scoped = match view.kept.as_mut().filter(|_| !full_due) {
        Some(kept) => match kept.after(stores, &changed, &view.agents, &now) {
            Ok(round) => Some(round),
            Err(why) => {
                tracing::debug!(%why, "a full round");
                None
            }
        },
        None => None,
    };
    let (planned, namespaces) = match scoped {
        Some(round) => (round.actions, Some(round.namespaces)),
        None => {
            // The old view goes first: the two are never held at once.
            view.forget();
            let acknowledged = std::mem::take(&mut view.acknowledged);
            let (kept, planned) = Kept::full(
                stores.snapshot(),
                view.config.clone(),
                &view.agents,
                acknowledged,
                &now,
            );
            view.kept = Some(kept);
            view.last_full = Instant::now();
            metrics.full_rounds.inc();
            (planned, None)
        }
    };
    let kept = view.kept.as_ref().expect("a round leaves a view");
    match &namespaces {
        Some(namespaces) => metrics.observe_namespaces(kept.resolution(), namespaces),
        None => metrics.observe(kept.resolution()),
    }
    metrics.rounds.inc();
    let agents = stores.agents();
    events::publish_agents(recorder, &agents, &mut seen.agents).await;
    let malformed = stores.malformed();
    metrics.observe_malformed(&malformed);
    events::publish_malformed(recorder, &malformed, &mut seen.malformed).await;
    if planned.is_empty() {
        metrics.duration.observe(started.elapsed().as_secs_f64());
        return false;
    }
    let snapshot = kept.snapshot();
    let notices = notices(snapshot, &planned.statuses);
    let outcome = execute(client, snapshot, planned, metrics).await;
    events::publish_notices(recorder, snapshot, &notices).await;
    metrics.duration.observe(started.elapsed().as_secs_f64());
    metrics.errors.inc_by(outcome.errors.len() as u64);
    metrics.claims_lost.inc_by(outcome.claims_lost.len() as u64);
    for error in &outcome.errors {
        tracing::error!(%error, "request failed");
    }
    tracing::info!(
        namespaces = namespaces.as_ref().map_or(usize::MAX, BTreeSet::len),
        claims_created = outcome.claims_created,
        claims_lost = outcome.claims_lost.len(),
        statuses = outcome.statuses_written,
        stale = outcome.statuses_stale,
        released = outcome.claims_deleted,
        "round"
    );
    let again = !outcome.claims_lost.is_empty() || outcome.statuses_stale > 0;
    if again || !outcome.errors.is_empty() {
        // What did not go through left no change to be noted: the next
        // round looks at everything.
        view.forget();
    }
    again
}

/// Runs the controller until SIGTERM.
pub async fn run(client: Client, options: Options) -> Result<(), ControllerError> {
    let changed = Arc::new(Notify::new());
    let stores = Stores::start_noting_changes(&client, &changed);
    let metrics = Arc::new(Metrics::default());

    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|cause| ControllerError::Listen {
            listen: options.listen,
            cause,
        })?;
    let server = axum::serve(listener, metrics::router(metrics.clone()));
    tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "the metrics and health server stopped");
        }
    });

    stores.ready().await;
    metrics.ready.set();
    tracing::info!("caches filled");

    let lease_error = |cause| ControllerError::Lease {
        namespace: options.lease_namespace.clone(),
        cause,
    };
    // Renew with a third of the lease to spare, so one slow request does not lose it.
    let duration = options.lease_duration.as_secs().max(2);
    let manager = LeaseManagerBuilder::new(client.clone(), LEASE_NAME)
        .with_namespace(&options.lease_namespace)
        .with_duration(duration)
        .with_grace((duration / 3).max(1))
        .with_identity(&options.identity)
        .with_field_manager(FIELD_MANAGER)
        .build()
        .await
        .map_err(lease_error)?;
    let (mut leader, lease) = manager.watch().await;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(ControllerError::Signal)?;

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(options.identity.clone()),
        },
    );
    let mut seen = Seen::default();
    let mut view = View::new(&options.cluster);
    let mut again = true;
    let mut first = true;
    let mut last_round: Option<pace::Round> = None;
    loop {
        if again && !first {
            // The caches are behind the server: give the watches a moment.
            tokio::time::sleep(Duration::from_millis(500)).await;
        } else if !again {
            tokio::select! {
                _ = changed.notified() => {}
                _ = tokio::time::sleep(options.resync) => {}
                _ = leader.changed() => {
                    tracing::info!(leader = *leader.borrow(), "leadership changed");
                }
                _ = terminate.recv() => break,
            }
            // A burst of events gathers into one round.
            pace::settle(last_round).await;
        }
        first = false;
        let started = Instant::now();
        if !*leader.borrow() {
            // Another replica writes: what it changes arrives as events a
            // view kept here would miss while it is not ours to act on.
            view.forget();
            let _ = stores.take_changes();
            again = false;
            last_round = Some(pace::Round::ended(started));
            continue;
        }
        again = round(
            &client, &stores, &mut view, &options, &metrics, &recorder, &mut seen,
        )
        .await;
        again |= takeover::answer(&client, &stores).await;
        last_round = Some(pace::Round::ended(started));
    }
    // Closing the channel releases the Lease, so another replica takes over at once.
    drop(leader);
    let _ = lease.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
    use neutrino_api::{NodeAgentSpec, NodeAgentStatus};

    fn agent(name: &str, ready: &str, heartbeat: k8s_openapi::jiff::Timestamp) -> NodeAgent {
        let mut agent = NodeAgent::new(
            name,
            NodeAgentSpec {
                tunnel_endpoint: None,
                tunnel_ip: "192.0.2.1".into(),
                physical_interfaces: Default::default(),
                gateway: true,
            },
        );
        agent.status = Some(NodeAgentStatus {
            heartbeat: Some(Time(heartbeat)),
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: ready.into(),
                reason: "x".into(),
                message: format!("{name} says {ready}"),
                observed_generation: Some(0),
                last_transition_time: Time(heartbeat),
            }],
            ..NodeAgentStatus::default()
        });
        agent
    }

    #[test]
    fn agents_are_ready_failed_or_silent() {
        let now = k8s_openapi::jiff::Timestamp::now();
        let old = now - k8s_openapi::jiff::SignedDuration::from_secs(600);
        let health = health(
            &[
                agent("a", "True", now),
                agent("b", "False", now),
                agent("c", "True", old),
            ],
            now,
        );
        assert_eq!(health["a"], AgentHealth::Ready(None));
        assert_eq!(health["b"], AgentHealth::Failed("b says False".into()));
        assert!(
            matches!(&health["c"], AgentHealth::Failed(m) if m.starts_with("no heartbeat for 6"))
        );
    }
}
