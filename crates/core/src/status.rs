//! What the controller writes to each object's `status`: the allocations of
//! a [`Resolution`] and a `Ready` condition. Pure: the caller passes the time.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube_core::Resource;
use std::sync::Arc;

use super::resolve::{Resolution, Verdict};
use super::{ApiObject, Key, Problem, Reason, Snapshot};
use crate::for_each_kind;
use neutrino_api::ObjectStatus;

/// The reason of a `Ready=True` condition.
pub const READY_REASON: &str = "Allocated";

/// The `Ready` condition for a verdict. `previous` keeps the transition time
/// when the status does not change.
pub fn ready_condition<T>(
    verdict: &Verdict<T>,
    generation: i64,
    now: &Time,
    previous: &[Condition],
) -> Condition {
    let (status, reason, message) = match verdict {
        Ok(_) => (
            "True",
            READY_REASON.to_string(),
            "allocated and valid".to_string(),
        ),
        Err(problems) => (
            "False",
            problems
                .first()
                .map_or("Invalid", |p| p.reason.as_str())
                .to_string(),
            problems
                .iter()
                .map(problem_text)
                .collect::<Vec<_>>()
                .join("; "),
        ),
    };
    condition("Ready", status, reason, message, generation, now, previous)
}

fn condition(
    kind: &str,
    status: &str,
    reason: String,
    message: String,
    generation: i64,
    now: &Time,
    previous: &[Condition],
) -> Condition {
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == kind && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: kind.into(),
        status: status.into(),
        reason,
        message,
        observed_generation: Some(generation),
        last_transition_time,
    }
}

/// The conditions of a verdict, as kstatus (Argo CD, Flux) reads them:
/// `Ready`, and beside a `Ready=False` either `Reconciling` (waiting for
/// another object) or `Stalled` (it needs the user to change something).
pub fn verdict_conditions<T>(
    verdict: &Verdict<T>,
    generation: i64,
    now: &Time,
    previous: &[Condition],
) -> Vec<Condition> {
    let ready = ready_condition(verdict, generation, now, previous);
    let mut all = vec![ready.clone()];
    if let Err(problems) = verdict {
        let waiting = problems
            .iter()
            .all(|p| p.reason == Reason::DependencyNotReady);
        let kind = if waiting { "Reconciling" } else { "Stalled" };
        all.push(condition(
            kind,
            "True",
            ready.reason,
            ready.message,
            generation,
            now,
            previous,
        ));
    }
    all
}

/// The conditions of an object whose deletion waits for its users.
pub fn deleting(
    generation: i64,
    now: &Time,
    users: &[String],
    previous: &[Condition],
) -> Vec<Condition> {
    let message = format!(
        "being deleted; waits until these no longer use it: {}",
        users.join(", ")
    );
    vec![
        condition(
            "Ready",
            "False",
            "Deleting".into(),
            message.clone(),
            generation,
            now,
            previous,
        ),
        condition(
            "Reconciling",
            "True",
            "Deleting".into(),
            message,
            generation,
            now,
            previous,
        ),
    ]
}

/// The reason of the conditions an object has while its claims are made.
pub const ALLOCATING_REASON: &str = "Allocating";

/// The conditions of an object whose allocations are being claimed:
/// `Ready=Unknown` and `Reconciling=True`, so no tool takes the silence of
/// an empty status for health.
pub fn allocating(generation: i64, now: &Time) -> Vec<Condition> {
    let message = "claiming its allocations".to_string();
    vec![
        condition(
            "Ready",
            "Unknown",
            ALLOCATING_REASON.into(),
            message.clone(),
            generation,
            now,
            &[],
        ),
        condition(
            "Reconciling",
            "True",
            ALLOCATING_REASON.into(),
            message,
            generation,
            now,
            &[],
        ),
    ]
}

fn problem_text(problem: &Problem) -> String {
    format!("{}: {}", problem.field, problem.message)
}

fn generation<R: Resource>(object: &R) -> i64 {
    object.meta().generation.unwrap_or(0)
}

/// Writes every object's status from `resolution`, as the controller would.
pub fn apply(snapshot: &mut Snapshot, resolution: &Resolution, now: &Time) {
    for_each_kind!(K => write_kind::<K>(snapshot, resolution, now));
}

/// Writes the status of every object of kind `K` that `resolution` judged.
fn write_kind<K: ApiObject>(snapshot: &mut Snapshot, resolution: &Resolution, now: &Time) {
    let verdicts = K::verdicts(resolution);
    for (key, object) in K::of_mut(snapshot).iter_mut() {
        if let Some(verdict) = verdicts.get(key) {
            let status = status_of(key, &**object, verdict, resolution, now);
            *Arc::make_mut(object).status_mut() = Some(status);
        }
    }
}

/// An object's status for its verdict: what was decided for it, the
/// conditions that say whether it is Ready and the generation they
/// describe; how far the nodes have come stays as recorded.
pub(crate) fn status_of<K: ApiObject>(
    key: &Key,
    object: &K,
    verdict: &Verdict<K::State>,
    resolution: &Resolution,
    now: &Time,
) -> K::Status {
    let previous = object.status();
    let generation = generation(object);
    let mut status = K::allocated(key, object, verdict.as_ref().ok(), resolution);
    status.set_nodes(previous.and_then(|s| s.nodes()).cloned());
    status.set_observed_generation(generation);
    status.set_conditions(verdict_conditions(
        verdict,
        generation,
        now,
        previous.map_or(&[], |s| s.conditions()),
    ));
    status
}

/// Whether an object's status says Ready for the spec it has now.
pub fn ready_now<K: ApiObject>(object: &K) -> bool {
    let generation = generation(object);
    let conditions = object.status().map_or(&[][..], |s| s.conditions());
    conditions.iter().any(|c| {
        c.type_ == "Ready" && c.status == "True" && c.observed_generation.unwrap_or(0) == generation
    })
}

/// Only the objects the controller has found Ready for their current spec,
/// with their recorded allocations: what an agent may realise. Kinds that
/// are not gated on Ready (security groups) are kept whole.
pub fn ready_only(snapshot: &Snapshot) -> Snapshot {
    // The objects are shared: copying the snapshot copies no object.
    into_ready_only(snapshot.clone())
}

/// `ready_only` of a snapshot needed no more: what is not Ready is dropped
/// in place.
pub fn into_ready_only(mut snapshot: Snapshot) -> Snapshot {
    for_each_kind!(K => {
        if K::GATED {
            K::of_mut(&mut snapshot).retain(|_, o| ready_now(&**o));
        }
    });
    snapshot
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClusterConfig, resolve};

    #[test]
    fn kstatus_reads_stalled_or_reconciling_beside_ready_false() {
        let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let id = crate::ObjectId::new(crate::Kind::Port, Key::new("t", "p"));
        let verdict =
            |reason| -> Verdict<()> { Err(vec![Problem::new(&id, "spec.network", reason, "x")]) };
        let kinds = |v: &Verdict<()>| -> Vec<(String, String)> {
            verdict_conditions(v, 3, &now, &[])
                .into_iter()
                .map(|c| (c.type_, c.status))
                .collect()
        };
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(kinds(&Ok(())), [pair("Ready", "True")]);
        assert_eq!(
            kinds(&verdict(Reason::InvalidSpec)),
            [pair("Ready", "False"), pair("Stalled", "True")]
        );
        assert_eq!(
            kinds(&verdict(Reason::DependencyNotReady)),
            [pair("Ready", "False"), pair("Reconciling", "True")]
        );
        let conditions = verdict_conditions(&verdict(Reason::InUse), 3, &now, &[]);
        assert!(conditions.iter().all(|c| c.observed_generation == Some(3)));
        assert_eq!(conditions[1].reason, "InUse");
    }

    #[test]
    fn only_what_is_ready_for_its_current_spec_is_realised() {
        let mut snapshot = crate::fixtures::quickstart();
        assert!(
            ready_only(&snapshot).ports.is_empty(),
            "nothing before the controller has spoken"
        );
        let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let resolution = resolve(&snapshot, &ClusterConfig::default());
        apply(&mut snapshot, &resolution, &now);
        assert_eq!(ready_only(&snapshot).ports.len(), 2);
        // A changed spec the controller has not looked at yet waits.
        let web1 = snapshot
            .ports
            .get_mut(&Key::new("tenant-a", "web-1"))
            .unwrap();
        Arc::make_mut(web1).metadata.generation = Some(2);
        assert_eq!(ready_only(&snapshot).ports.len(), 1);
    }
}
