//! Carries the controller's actions out against the API server, in the
//! order that keeps its guarantee: claims first (a 409 means someone else
//! holds it: the holder's status waits), then statuses by server-side apply
//! with the resourceVersion that was read as a precondition, then claim
//! deletions with the claim's uid as a precondition.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::metrics::{Metrics, RequestKindLabels, RequestLabels};

use neutrino_api::{ClaimHolder, IPClaim, SegmentClaim};
use neutrino_core::controller::Actions;
use neutrino_core::finalizers::FINALIZER;
use neutrino_core::kinds::key_of;
use neutrino_core::resolve::held_by;
use neutrino_core::{ApiObject, Key, ObjectId, Snapshot, for_each_kind, with_kind};

/// The field manager of everything the controller writes.
pub const FIELD_MANAGER: &str = "neutrino-controller";

/// What one execution did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub claims_created: usize,
    /// Claims someone else created first (409): their holders wait a round.
    pub claims_lost: Vec<String>,
    pub statuses_written: usize,
    /// Status writes refused because the object changed since it was read.
    pub statuses_stale: usize,
    pub claims_deleted: usize,
    /// Finalizers added or removed.
    pub finalizers_changed: usize,
    /// Everything else that failed, each naming the object and the request.
    pub errors: Vec<String>,
}

/// How long one request may take. A request the server never answers must
/// not stall the round while this replica holds the Lease: it fails, and
/// the next round tries again.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A request that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("no answer within {} s", REQUEST_TIMEOUT.as_secs())]
    Timeout,
}

fn code(failure: &Failure) -> Option<u16> {
    match failure {
        Failure::Api(kube::Error::Api(status)) => Some(status.code),
        _ => None,
    }
}

/// `request`, given up after [`REQUEST_TIMEOUT`].
pub async fn bounded<T>(
    request: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(answer) => answer.map_err(Failure::Api),
        Err(_) => Err(Failure::Timeout),
    }
}

/// Every request of a round goes through here: bounded by
/// [`REQUEST_TIMEOUT`], counted by verb, resource and result, and timed.
struct Requests<'a> {
    metrics: &'a Metrics,
}

impl Requests<'_> {
    async fn send<T>(
        &self,
        verb: &str,
        resource: &str,
        request: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, Failure> {
        let started = Instant::now();
        let result = bounded(request).await;
        let outcome = match &result {
            Ok(_) => "ok".to_string(),
            Err(Failure::Timeout) => "timeout".into(),
            Err(failure) => code(failure).map_or("error".into(), |c| c.to_string()),
        };
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                verb: verb.into(),
                resource: resource.into(),
                result: outcome,
            })
            .inc();
        self.metrics
            .request_duration
            .get_or_create(&RequestKindLabels {
                verb: verb.into(),
                resource: resource.into(),
            })
            .observe(started.elapsed().as_secs_f64());
        result
    }
}

/// Whether the server refused a create because the namespace is being
/// deleted: nothing is wrong, and everything in it is about to go.
pub fn namespace_terminating(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status
            .details
            .as_ref()
            .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating")),
        _ => false,
    }
}

/// The owner reference that makes Kubernetes delete a claim with its holder,
/// if the holder is known (with its uid) to this snapshot and lives in the
/// claim's namespace. The garbage collector resolves an owner only in its
/// dependent's namespace and deletes a dependent whose owner it cannot
/// find there: a router's claim on another namespace's external subnet
/// would vanish as soon as it was made. A cluster-scoped claim cannot have
/// a namespaced owner at all. Claims without an owner are released by the
/// controller once their holder is gone.
fn owner(
    snapshot: &Snapshot,
    holder: &ClaimHolder,
    claim_namespace: Option<&str>,
) -> Option<OwnerReference> {
    if claim_namespace != Some(holder.namespace.as_str()) {
        return None;
    }
    fn reference<K: Resource<DynamicType = ()>>(object: &K) -> Option<OwnerReference> {
        object.controller_owner_ref(&()).map(|mut r| {
            r.controller = Some(false);
            r
        })
    }
    let id = held_by(holder)?.object();
    with_kind!(id.kind, K => K::of(snapshot).get(&id.key).and_then(|o| reference(&**o)))
}

fn holder_id(holder: &ClaimHolder) -> String {
    format!("{} {}/{}", holder.kind, holder.namespace, holder.name)
}

async fn write_statuses<K: ApiObject>(
    client: &Client,
    requests: &Requests<'_>,
    statuses: &Snapshot,
    lost: &BTreeSet<String>,
    versions: &BTreeMap<String, String>,
    outcome: &mut Outcome,
) {
    let kind = K::KIND;
    for (key, object) in K::of(statuses) {
        let id = format!("{kind} {key}");
        if lost.contains(&id) {
            continue;
        }
        let version = versions.get(&id).cloned().or(object.resource_version());
        let api: Api<K> = Api::namespaced(client.clone(), &key.namespace);
        let body = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "metadata": {"name": key.name, "resourceVersion": version},
            "status": object.status(),
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let resource = format!("{}/status", K::plural(&()));
        match requests
            .send(
                "patch",
                &resource,
                api.patch_status(&key.name, &params, &Patch::Apply(&body)),
            )
            .await
        {
            Ok(_) => outcome.statuses_written += 1,
            Err(e) if code(&e) == Some(409) => outcome.statuses_stale += 1,
            Err(e) if code(&e) == Some(404) => {}
            Err(e) => outcome
                .errors
                .push(format!("writing the status of {kind} {key}: {e}")),
        }
    }
}

/// A claim's holder, whatever the claim's kind.
pub trait Claim {
    fn holder(&self) -> &ClaimHolder;
}

impl Claim for IPClaim {
    fn holder(&self) -> &ClaimHolder {
        &self.spec.holder
    }
}

impl Claim for SegmentClaim {
    fn holder(&self) -> &ClaimHolder {
        &self.spec.network
    }
}

/// Creates one claim. A conflict is a claim of that name already there: the
/// holder's own (created in an earlier round the caches have not shown yet)
/// is fine; anyone else's means the holder lost it and waits a round.
async fn create_claim<K>(
    requests: &Requests<'_>,
    api: &Api<K>,
    claim: &K,
    outcome: &mut Outcome,
    lost: &mut BTreeSet<String>,
) where
    K: Resource<DynamicType = ()>
        + Claim
        + Clone
        + Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let resource = K::plural(&()).to_string();
    let holder = claim.holder();
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    let failed = match requests
        .send("create", &resource, api.create(&params, claim))
        .await
    {
        Ok(_) => {
            outcome.claims_created += 1;
            return;
        }
        Err(e) if code(&e) == Some(409) => match requests
            .send("get", &resource, api.get(&claim.name_any()))
            .await
        {
            Ok(existing) if existing.holder() == holder => return,
            Ok(_) => None,
            Err(e) => Some(e),
        },
        // The holder waits; its namespace (or the claim's) is going away.
        Err(Failure::Api(e)) if namespace_terminating(&e) => {
            lost.insert(holder_id(holder));
            return;
        }
        Err(e) => Some(e),
    };
    match failed {
        None => outcome.claims_lost.push(claim.name_any()),
        Some(e) => outcome.errors.push(format!(
            "claiming {} for {}: {e}",
            claim.name_any(),
            holder_id(holder)
        )),
    }
    // Its holder's status must not show what it does not hold.
    lost.insert(holder_id(holder));
}

/// Deletes one claim, only if it is still the one seen (by uid).
async fn release<K>(
    requests: &Requests<'_>,
    api: &Api<K>,
    name: &str,
    uid: Option<String>,
    outcome: &mut Outcome,
) where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid,
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match requests
        .send("delete", &K::plural(&()), api.delete(name, &params))
        .await
    {
        Ok(_) => outcome.claims_deleted += 1,
        // Gone already, or replaced by another holder's claim since.
        Err(e) if matches!(code(&e), Some(404 | 409)) => {}
        Err(e) => outcome.errors.push(format!("releasing claim {name}: {e}")),
    }
}

/// Sets an object's finalizers to what it had, with ours added or removed,
/// on condition that it has not changed since it was read.
async fn finalize<K>(
    client: &Client,
    requests: &Requests<'_>,
    key: &Key,
    object: &K,
    add: bool,
    outcome: &mut Outcome,
) -> Option<String>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let mut finalizers: Vec<String> = object.meta().finalizers.clone().unwrap_or_default();
    finalizers.retain(|f| f != FINALIZER);
    if add {
        finalizers.push(FINALIZER.into());
    }
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": object.resource_version()}});
    let api: Api<K> = Api::namespaced(client.clone(), &key.namespace);
    match requests
        .send(
            "patch",
            &K::plural(&()),
            api.patch(&key.name, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await
    {
        Ok(changed) => {
            outcome.finalizers_changed += 1;
            return changed.meta().resource_version.clone();
        }
        Err(e) if matches!(code(&e), Some(404 | 409)) => {}
        Err(e) => outcome.errors.push(format!(
            "{} the finalizer of {} {key}: {e}",
            if add { "adding" } else { "removing" },
            K::kind(&())
        )),
    }
    None
}

async fn finalizers(
    client: &Client,
    requests: &Requests<'_>,
    snapshot: &Snapshot,
    ids: &[ObjectId],
    add: bool,
    outcome: &mut Outcome,
) -> BTreeMap<String, String> {
    let mut versions = BTreeMap::new();
    for id in ids {
        with_kind!(id.kind, K => {
            if let Some(o) = K::of(snapshot).get(&id.key)
                && let Some(version) = finalize(client, requests, &id.key, &**o, add, outcome).await
            {
                versions.insert(id.to_string(), version);
            }
        });
    }
    versions
}

/// Carries out `actions`, computed from `snapshot`; every request is
/// counted and timed in `metrics`.
pub async fn execute(
    client: &Client,
    snapshot: &Snapshot,
    actions: Actions,
    metrics: &Metrics,
) -> Outcome {
    let requests = &Requests { metrics };
    let mut outcome = Outcome::default();
    let mut lost = BTreeSet::new();
    // A Network or Subnet is guarded before anything comes to depend on it.
    // The finalizer is its only change since it was read: its status goes
    // on from the version the finalizer made, in this same round.
    let versions = finalizers(
        client,
        requests,
        snapshot,
        &actions.finalizers.add,
        true,
        &mut outcome,
    )
    .await;

    for mut claim in actions.create_ip_claims {
        let holder = claim.spec.holder.clone();
        let namespace = key_of(&claim).namespace;
        claim.metadata.owner_references =
            owner(snapshot, &holder, Some(&namespace)).map(|o| vec![o]);
        let api: Api<IPClaim> = Api::namespaced(client.clone(), &namespace);
        create_claim(requests, &api, &claim, &mut outcome, &mut lost).await;
    }
    for claim in actions.create_segment_claims {
        create_claim(
            requests,
            &Api::all(client.clone()),
            &claim,
            &mut outcome,
            &mut lost,
        )
        .await;
    }

    let statuses = &actions.statuses;
    for_each_kind!(K => write_statuses::<K>(client, requests, statuses, &lost, &versions, &mut outcome).await);

    for key in actions.delete_ip_claims {
        let uid = snapshot.ip_claims.get(&key).and_then(|c| c.uid());
        let api: Api<IPClaim> = Api::namespaced(client.clone(), &key.namespace);
        release(requests, &api, &key.name, uid, &mut outcome).await;
    }
    for name in actions.delete_segment_claims {
        let uid = snapshot.segment_claims.get(&name).and_then(|c| c.uid());
        release(
            requests,
            &Api::<SegmentClaim>::all(client.clone()),
            &name,
            uid,
            &mut outcome,
        )
        .await;
    }
    // Let go of what nothing uses any more, last.
    finalizers(
        client,
        requests,
        snapshot,
        &actions.finalizers.remove,
        false,
        &mut outcome,
    )
    .await;
    outcome
}
