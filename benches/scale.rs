//! The controller's and the agent's pure work on clusters generated in
//! memory, in CPU time of the one thread that does it, with the process's
//! peak memory. No root needed.
//!
//! `NEUTRINO_SCALE_SIZES` picks the clusters as PORTSxNODES (default
//! `10000x100,10000x1000,10000x5000,100000x100,100000x1000,100000x5000`),
//! `NEUTRINO_BENCH_ROUNDS` the repeats of each step (default 3). Beside the
//! indexed path it runs today's one where it still exists: which nodes
//! realise what by planning every node in full. Where that would take more
//! than `NEUTRINO_SCALE_OLD_BUDGET` seconds (default 60) it is estimated
//! from ten nodes, and printed as an estimate.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use neutrino::core::controller::{Actions, notices};
use neutrino::core::incremental::{Changed, Followed, Kept, NodeView};
use neutrino::core::plan::{Topology, plan_node};
use neutrino::core::realisation::{Acknowledged, AgentHealth, planned_objects, realised_digest};
use neutrino::core::scope::{self, Index};
use neutrino::core::status::ready_only;
use neutrino::core::{ClusterConfig, Key, Kind, ObjectId, Snapshot, kinds::key_of, resolve};
use nix::time::{ClockId, clock_gettime};

mod support;
#[path = "../tests/support/synthetic.rs"]
mod synthetic;
use support::{range, setting};
use synthetic::{Shape, all_ready, carry_out, cluster, converge, noted, port_beside};

/// CPU time this thread has used.
fn cpu() -> Duration {
    Duration::from(clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).expect("thread CPU clock"))
}

/// `f`'s CPU time in milliseconds, and what it returned.
fn timed<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let start = cpu();
    let out = f();
    ((cpu() - start).as_secs_f64() * 1e3, out)
}

/// The process's peak resident memory since the last `reset_peak`, in MB.
fn peak_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Hands what the allocator holds free back to the system (what earlier
/// clusters and the generator left), then starts counting the peak afresh.
fn reset_peak() {
    // SAFETY: malloc_trim only returns free memory; it touches no live
    // allocation and has no preconditions.
    unsafe {
        nix::libc::malloc_trim(0);
    }
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// One full controller round's pure part, as `neutrino controller` runs
/// it: the view copied out of the caches, resolved, realisation worked
/// out, actions and Events computed, the view kept for the next round.
fn controller_round(
    stores: &Snapshot,
    config: &ClusterConfig,
    agents: &BTreeMap<String, AgentHealth>,
    now: &Time,
) -> usize {
    let (kept, planned) = Kept::full(
        stores.clone(),
        config.clone(),
        agents,
        Acknowledged::default(),
        now,
    );
    let notices = notices(kept.snapshot(), &planned.statuses);
    planned.create_ip_claims.len() + notices.len()
}

/// A controller round after a change, from the view the last round kept:
/// the namespaces it touches resolved, the nodes it moves found afresh,
/// actions and Events computed.
fn controller_round_after(
    kept: &mut Kept,
    stores: &Snapshot,
    changed: &Changed,
    agents: &BTreeMap<String, AgentHealth>,
    now: &Time,
) -> Actions {
    let round = kept
        .after(stores, changed, agents, now)
        .expect("one port's change stays in its namespace");
    let notices = notices(kept.snapshot(), &round.actions.statuses);
    std::hint::black_box(notices);
    round.actions
}

/// What a change touched, as an agent's watches tell it: the objects, the
/// holders of changed claims among them, and the claims.
struct Change {
    objects: BTreeSet<ObjectId>,
    ip_claims: BTreeSet<Key>,
}

impl Change {
    fn between(before: &Snapshot, after: &Snapshot) -> Self {
        let (objects, ip_claims) = noted(before, after);
        Change { objects, ip_claims }
    }
}

/// What an agent keeps from before a change: the index over the caches,
/// and its node's view.
#[derive(Clone)]
struct AgentKept {
    index: Index,
    view: NodeView,
    node: String,
}

impl AgentKept {
    fn new(stores: &Snapshot, config: &ClusterConfig, node: &str) -> Self {
        let index = Index::new(stores);
        let me = config.node(node).expect("a generated node");
        AgentKept {
            view: NodeView::new(&index, stores, config, me),
            node: node.to_string(),
            index,
        }
    }

    /// The same, its view taken anew from `stores`.
    fn again(&self, stores: &Snapshot, config: &ClusterConfig) -> Self {
        let me = config.node(&self.node).expect("a generated node");
        AgentKept {
            view: NodeView::new(&self.index, stores, config, me),
            node: self.node.clone(),
            index: self.index.clone(),
        }
    }
}

/// One agent's pure work on a change that reaches its part, as `neutrino
/// agent` does it: the change taken into its kept index, then patched into
/// its view (ports that draw nothing new into its part, and the statuses
/// written beside them) or its part taken out of the caches afresh, resolved again in the
/// namespaces that differ and planned; with the digest of what it
/// realises. With nothing kept, as before: the whole cluster resolved and
/// the node planned.
fn agent_work(
    stores: &Snapshot,
    kept: Option<(&mut AgentKept, &Change)>,
    config: &ClusterConfig,
    node: &str,
) -> (usize, Option<Followed>) {
    let me = config.node(node).expect("a generated node");
    match kept {
        None => {
            let snapshot = ready_only(stores);
            let resolution = resolve(&snapshot, config);
            let plan = plan_node(&resolution, config, me);
            let digest = realised_digest(&planned_objects(&plan), &snapshot);
            (plan.fdb.len() + digest.len(), None)
        }
        Some((kept, change)) => {
            for id in &change.objects {
                kept.index.set(id, stores.object(id).as_ref());
            }
            for key in &change.ip_claims {
                (kept.index).set_ip_claim(key, stores.ip_claims.get(key).map(|c| &**c));
            }
            let changed = (&change.objects, &change.ip_claims);
            let followed = kept.view.follow(&kept.index, stores, config, me, changed);
            let plan = kept.view.plan();
            (plan.fdb.len() + kept.view.realised().len(), Some(followed))
        }
    }
}

/// A node, from the last, whose part a change to `changed` (in `after`)
/// does not reach, with that reach; None if the first twenty all hold it.
fn node_out_of_reach(
    before: (&Snapshot, &Index),
    after: &Snapshot,
    config: &ClusterConfig,
    changed: &ObjectId,
) -> Option<(String, scope::Reach)> {
    config.nodes.iter().rev().take(20).find_map(|node| {
        let (_, reach) = scope::part_of(before.1, before.0, &node.name);
        let current = after.object(changed);
        (!reach.reaches(changed, current.as_ref())).then(|| (node.name.clone(), reach))
    })
}

/// Which nodes realise what by planning every node in full, as the
/// controller did before the indexes; in ms, or an estimate from ten nodes.
fn planning_every_node(snapshot: &Snapshot, config: &ClusterConfig, budget: f64) -> (f64, bool) {
    let resolution = resolve(snapshot, config);
    let sample = config.nodes.len().min(10);
    let (ten, _) = timed(|| {
        for node in &config.nodes[..sample] {
            planned_objects(&plan_node(&resolution, config, node));
        }
    });
    let estimate = ten / sample as f64 * config.nodes.len() as f64;
    if estimate > budget * 1e3 {
        return (estimate, true);
    }
    let (all, _) = timed(|| {
        for node in &config.nodes {
            planned_objects(&plan_node(&resolution, config, node));
        }
    });
    (all, false)
}

fn parse_size(text: &str) -> Option<Shape> {
    let (ports, nodes) = text.trim().split_once('x')?;
    Some(Shape {
        ports: ports.parse().ok()?,
        nodes: nodes.parse().ok()?,
    })
}

fn main() {
    let sizes: Vec<Shape> = std::env::var("NEUTRINO_SCALE_SIZES")
        .unwrap_or_else(|_| {
            "10000x100,10000x1000,10000x5000,100000x100,100000x1000,100000x5000".into()
        })
        .split(',')
        .filter_map(parse_size)
        .collect();
    let rounds = setting("NEUTRINO_BENCH_ROUNDS", 3).max(1);
    let budget = setting("NEUTRINO_SCALE_OLD_BUDGET", 60) as f64;
    let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    println!("CPU ms of one thread, min–max of {rounds} rounds; targets in brackets");
    for shape in sizes {
        let (mut snapshot, config) = cluster(shape);
        let (settle, settled_in) = timed(|| converge(&mut snapshot, &config));
        let agents = all_ready(&snapshot, &resolve(&snapshot, &config), &config);
        println!(
            "\n{} ports, {} nodes, {} objects in all: settled in {settled_in} rounds, {:.1} s",
            shape.ports,
            shape.nodes,
            snapshot.networks.len()
                + snapshot.subnets.len()
                + snapshot.ports.len()
                + snapshot.routers.len()
                + snapshot.floating_ips.len()
                + snapshot.security_groups.len(),
            settle / 1e3
        );

        // A port of the first network, on node A, and one beside it on B.
        let first = snapshot.ports.keys().next().expect("ports").clone();
        let home = snapshot.ports[&first]
            .spec
            .node_name
            .clone()
            .expect("bound");
        let home_index: usize = home["node-".len()..].parse().expect("node-N");
        let away = home_index % shape.nodes + 1;

        // Memory first, with nothing but the cluster itself held: what is
        // resident before the round (the cluster), and at the round's peak.
        let before = {
            reset_peak();
            peak_mb()
        };
        // The controller keeps the view a full round builds.
        let (base, _) = Kept::full(
            snapshot.clone(),
            config.clone(),
            &agents,
            Acknowledged::default(),
            &now,
        );
        let peak = peak_mb();

        let mut full = Vec::new();
        let (mut one, mut one_before) = (Vec::new(), Vec::new());
        let (mut remote, mut remote_before) = (Vec::new(), Vec::new());
        let (mut local, mut local_before) = (Vec::new(), Vec::new());
        let mut elsewhere = Vec::new();
        let mut elsewhere_node = None;
        let (mut remote_how, mut local_how) = (None, None);
        let (mut carried, mut carried_how) = (Vec::new(), None);
        let away_node = format!("node-{away}");
        // What the agents on A and B keep, from before the change.
        let index = Index::new(&snapshot);
        let kept_home = AgentKept::new(&snapshot, &config, &home);
        let kept_away = AgentKept::new(&snapshot, &config, &away_node);
        for round in 0..rounds {
            full.push(timed(|| controller_round(&snapshot, &config, &agents, &now)).0);

            // One Port created: the round that allocates it and writes status.
            let mut changed = snapshot.clone();
            let added = port_beside(&snapshot, &first, &format!("bench-{round}"), away);
            let added_key = key_of(&added);
            changed
                .ports
                .insert(added_key.clone(), std::sync::Arc::new(added));
            let port_changed = Changed {
                objects: [ObjectId::new(Kind::Port, added_key.clone())].into(),
                ..Changed::default()
            };
            for whole in [round % 2 == 1, round % 2 == 0] {
                if whole {
                    one_before.push(timed(|| controller_round(&changed, &config, &agents, &now)).0);
                } else {
                    // Its round, which claims its addresses and writes its
                    // status once they are claimed, and the round the
                    // claims wake when the watches bring them, which finds
                    // nothing to do: the controller's whole work for it.
                    let mut kept = base.clone();
                    let (claiming, claims) = timed(|| {
                        controller_round_after(&mut kept, &changed, &port_changed, &agents, &now)
                    });
                    let mut claimed = changed.clone();
                    carry_out(&mut claimed, claims);
                    let seen = Changed::between(&changed, &claimed);
                    let (writing, _) =
                        timed(|| controller_round_after(&mut kept, &claimed, &seen, &agents, &now));
                    one.push(claiming + writing);
                }
            }

            // The agents see it once allocated: on node A it is remote, on
            // node B local. Today's path and the whole-cluster one alternate
            // which goes first.
            converge(&mut changed, &config);
            // On a node whose part it does not reach, it is weighed and
            // passed over.
            let id = ObjectId::new(Kind::Port, added_key);
            let before = (&snapshot, &index);
            if let Some((node, reach)) = node_out_of_reach(before, &changed, &config, &id) {
                let (ms, reached) = timed(|| reach.reaches(&id, changed.object(&id).as_ref()));
                assert!(!reached);
                elsewhere.push(ms);
                elsewhere_node = Some(node);
            }
            // What the agents' watches note from the port's creation to
            // its status: the port, its claims, and the counts written to
            // its subnet and network.
            let change = Change::between(&snapshot, &changed);
            for whole in [round % 2 == 1, round % 2 == 0] {
                // Views taken anew, so that none shares what it keeps with
                // another, as an agent's does not.
                let (mut a, mut b) = (
                    kept_home.again(&snapshot, &config),
                    kept_away.again(&snapshot, &config),
                );
                let kept_a = (!whole).then_some((&mut a, &change));
                let (r, (_, how)) = timed(|| agent_work(&changed, kept_a, &config, &home));
                let kept_b = (!whole).then_some((&mut b, &change));
                let (l, (_, local_followed)) =
                    timed(|| agent_work(&changed, kept_b, &config, &away_node));
                if !whole {
                    (remote_how, local_how) = (how, local_followed);
                }
                if whole {
                    remote_before.push(r);
                    local_before.push(l);
                } else {
                    remote.push(r);
                    local.push(l);
                }
            }

            // One more port on node A, on the network of one it has.
            let mut beside = snapshot.clone();
            let second = port_beside(&snapshot, &first, &format!("second-{round}"), home_index);
            beside
                .ports
                .insert(key_of(&second), std::sync::Arc::new(second));
            converge(&mut beside, &config);
            let change = Change::between(&snapshot, &beside);
            let mut a = kept_home.again(&snapshot, &config);
            let (ms, (_, how)) =
                timed(|| agent_work(&beside, Some((&mut a, &change)), &config, &home));
            carried.push(ms);
            carried_how = how;
        }
        println!(
            "  controller, full round            {:>15} ms [≤ 5000]",
            range(&full, 1)
        );
        println!(
            "  controller, one Port to status    {:>15} ms [≤ 50] (its round and the one its claims wake); one round resolving the whole cluster {} ms",
            range(&one, 1),
            range(&one_before, 1)
        );
        match &elsewhere_node {
            Some(node) => println!(
                "  agent, a change out of its part   {:>15} ms [≤ 1] ({node}: weighed, passed over)",
                range(&elsewhere, 3)
            ),
            None => println!("  agent, a change out of its part   every node sampled holds it"),
        }
        let how = |followed| match followed {
            Some(Followed::Patched) => "patched in",
            _ => "part taken afresh",
        };
        println!(
            "  agent, remote port change in part {:>15} ms [≤ 1] ({}); from the whole cluster {} ms",
            range(&remote, 2),
            how(remote_how),
            range(&remote_before, 1)
        );
        println!(
            "  agent, local port added           {:>15} ms ({}); from the whole cluster {} ms",
            range(&local, 1),
            how(local_how),
            range(&local_before, 1)
        );
        println!(
            "  agent, local port, network carried {:>14} ms ({})",
            range(&carried, 1),
            how(carried_how),
        );
        println!(
            "  peak RSS, full round kept         {peak:>15.0} MB [≤ 1024], {before:.0} MB of it resident before"
        );
        let (old, estimated) = planning_every_node(&snapshot, &config, budget);
        let resolution = resolve(&snapshot, &config);
        let (new, _) = timed(|| {
            let topology = Topology::new(&resolution, &config);
            config
                .nodes
                .iter()
                .map(|n| topology.objects_on(&n.name).len())
                .sum::<usize>()
        });
        println!(
            "  which nodes realise what: planning every node {}{:.0} ms, from the indexes {new:.1} ms",
            if estimated { "≈ " } else { "" },
            old
        );
    }
}
