//! Kubernetes Events for what users should see: objects allocated or
//! rejected, and nodes whose agent realised its plan or failed to.

use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};
use std::collections::BTreeMap;

use neutrino_api::NodeAgent;
use neutrino_core::controller::Notice;
use neutrino_core::{ApiObject, Snapshot, with_kind};

fn reference(
    snapshot: &Snapshot,
    notice: &Notice,
) -> Option<k8s_openapi::api::core::v1::ObjectReference> {
    let id = &notice.object;
    with_kind!(id.kind, K => K::of(snapshot).get(&id.key).map(|o| o.object_ref(&())))
}

async fn publish(
    recorder: &Recorder,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    warning: bool,
    reason: &str,
    note: String,
    action: &str,
) {
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_string(),
        note: Some(note),
        action: action.to_string(),
        secondary: None,
    };
    match recorder.publish(&event, reference).await {
        Ok(()) => {}
        Err(e) if super::execute::namespace_terminating(&e) => {
            tracing::debug!(error = %e, "no event: the namespace is being deleted");
        }
        Err(e) => tracing::warn!(error = %e, "could not publish an event"),
    }
}

/// Publishes the notices of a round against the objects they concern.
pub async fn publish_notices(recorder: &Recorder, snapshot: &Snapshot, notices: &[Notice]) {
    for notice in notices {
        if let Some(reference) = reference(snapshot, notice) {
            publish(
                recorder,
                &reference,
                notice.warning,
                &notice.reason,
                notice.note.clone(),
                "Allocate",
            )
            .await;
        }
    }
}

/// Publishes an Event for every node whose agent's Ready changed since the
/// last call (`seen` keeps what was last seen).
pub async fn publish_agents(
    recorder: &Recorder,
    agents: &[NodeAgent],
    seen: &mut BTreeMap<String, String>,
) {
    for agent in agents {
        let Some(name) = agent.metadata.name.clone() else {
            continue;
        };
        let Some(ready) = agent
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        else {
            continue;
        };
        let state = format!("{}/{}", ready.status, ready.reason);
        if seen.get(&name) == Some(&state) {
            continue;
        }
        let first = seen.insert(name.clone(), state).is_none();
        if first && ready.status == "True" {
            continue;
        }
        let note = format!("node {name}: {}", ready.message);
        publish(
            recorder,
            &agent.object_ref(&()),
            ready.status != "True",
            &ready.reason,
            note,
            "Realise",
        )
        .await;
    }
}

/// Publishes a Warning on every object the watchers skip because it does
/// not read as its kind, once for each version of it (`seen` keeps the
/// versions already told, and forgets what is no longer skipped).
pub async fn publish_malformed(
    recorder: &Recorder,
    malformed: &[super::stores::Malformed],
    seen: &mut BTreeMap<String, String>,
) {
    let now: BTreeMap<String, String> = malformed
        .iter()
        .filter_map(|m| {
            Some((
                m.reference.uid.clone()?,
                m.reference.resource_version.clone().unwrap_or_default(),
            ))
        })
        .collect();
    seen.retain(|uid, _| now.contains_key(uid));
    for object in malformed {
        let Some(uid) = object.reference.uid.clone() else {
            continue;
        };
        let version = object
            .reference
            .resource_version
            .clone()
            .unwrap_or_default();
        if seen.get(&uid) == Some(&version) {
            continue;
        }
        seen.insert(uid, version);
        let note = format!(
            "{}: {}; neutrino skips this object, and keeps what it last read of it, until it is fixed",
            object.field, object.error
        );
        publish(recorder, &object.reference, true, "Malformed", note, "Read").await;
    }
}
