//! `neutrino uninstall`: what the chart's pre-delete hook runs, so that
//! `helm uninstall` leaves nothing of neutrino behind.
//!
//! While the controller and the agents still run: every tenant object is
//! deleted and the controller releases finalizers and claims as it always
//! does; then every agent is asked (an annotation on its NodeAgent) to take
//! what neutrino made out of its node, and the records go. Whatever a
//! component that is already gone could not release is released here, and
//! named, so nothing hangs on a finalizer and no claim is left.

use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use std::fmt::Debug;
use std::time::{Duration, Instant};

use super::agent::REMOVE_ANNOTATION;
use neutrino_api::{IPClaim, NodeAgent, SegmentClaim};
use neutrino_core::kinds::key_of;
use neutrino_core::{Kind, for_each_kind};

#[derive(Debug, thiserror::Error)]
#[error("{what}: {cause}")]
pub struct UninstallError {
    what: String,
    cause: kube::Error,
}

fn failed(what: String) -> impl FnOnce(kube::Error) -> UninstallError {
    move |cause| UninstallError { what, cause }
}

/// What an uninstall did.
#[derive(Debug, Default)]
pub struct Uninstalled {
    /// Tenant objects deleted.
    pub deleted: usize,
    /// Objects whose finalizers had to be taken off here, as kind ns/name.
    pub finalizers_released: Vec<String>,
    /// Claims nothing released, deleted here.
    pub claims_deleted: Vec<String>,
    /// Nodes whose agents removed everything neutrino made on them.
    pub nodes_clean: Vec<String>,
    /// Nodes whose agents did not (down, or failing), with what they said.
    pub nodes_not_clean: Vec<String>,
}

/// What uninstall lists and deletes: the kinds of the API and the claims.
trait Listed:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + serde::Serialize
{
}

impl<K> Listed for K where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned
        + serde::Serialize
{
}

fn missing(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

fn name_of<K: Listed>(object: &K) -> String {
    format!("{} {}", K::kind(&()), key_of(object))
}

async fn list<K: Listed>(client: &Client) -> Result<Vec<K>, UninstallError> {
    Api::<K>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|list| list.items)
        .map_err(failed(format!("listing {}", K::plural(&()))))
}

async fn delete<K: Listed>(client: &Client, object: &K) -> Result<(), UninstallError> {
    let api = Api::<K>::namespaced(client.clone(), &key_of(object).namespace);
    match api
        .delete(&object.name_any(), &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if missing(&e) => Ok(()),
        Err(cause) => Err(UninstallError {
            what: format!("deleting {}", name_of(object)),
            cause,
        }),
    }
}

async fn delete_all<K: Listed>(client: &Client) -> Result<usize, UninstallError> {
    let objects = list::<K>(client).await?;
    for object in &objects {
        delete(client, object).await?;
    }
    Ok(objects.len())
}

/// Takes the finalizers off what is still there (the controller, which
/// would have, is gone); deletes what has none left.
async fn release<K: Listed>(
    client: &Client,
    released: &mut Vec<String>,
) -> Result<(), UninstallError> {
    for object in list::<K>(client).await? {
        if !object.finalizers().is_empty() {
            let api = Api::<K>::namespaced(client.clone(), &key_of(&object).namespace);
            let patch = json!({"metadata": {"finalizers": null}});
            match api
                .patch(
                    &object.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Err(cause) if !missing(&cause) => {
                    return Err(UninstallError {
                        what: format!("releasing the finalizers of {}", name_of(&object)),
                        cause,
                    });
                }
                _ => released.push(name_of(&object)),
            }
        }
        delete(client, &object).await?;
    }
    Ok(())
}

async fn remaining(client: &Client) -> Result<usize, UninstallError> {
    let mut count = 0;
    for_each_kind!(K => count += list::<K>(client).await?.len());
    Ok(count)
}

fn condition<'a>(
    agent: &'a NodeAgent,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    agent
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// Empties the cluster of neutrino, waiting up to `timeout` for each of
/// the controller and the agents.
pub async fn uninstall(client: &Client, timeout: Duration) -> Result<Uninstalled, UninstallError> {
    let mut done = Uninstalled::default();
    // Dependents first, so the controller can release each holder at once.
    for_each_kind!(Kind::DELETION_ORDER, K => done.deleted += delete_all::<K>(client).await?);
    tracing::info!(
        deleted = done.deleted,
        "tenant objects deleted; waiting for the controller"
    );
    let deadline = Instant::now() + timeout;
    while remaining(client).await? > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for_each_kind!(Kind::DELETION_ORDER, K => {
        release::<K>(client, &mut done.finalizers_released).await?
    });
    // The controller releases a claim a round after its holder goes.
    let segments: Api<SegmentClaim> = Api::all(client.clone());
    let segment_claims = || async {
        segments
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .map_err(failed("listing segmentclaims".into()))
    };
    while Instant::now() < deadline
        && list::<IPClaim>(client).await?.len() + segment_claims().await?.len() > 0
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for claim in list::<IPClaim>(client).await? {
        delete(client, &claim).await?;
        done.claims_deleted.push(name_of(&claim));
    }
    for claim in segment_claims().await? {
        match segments
            .delete(&claim.name_any(), &DeleteParams::background())
            .await
        {
            Err(cause) if !missing(&cause) => {
                return Err(UninstallError {
                    what: format!("deleting SegmentClaim {}", claim.name_any()),
                    cause,
                });
            }
            _ => done
                .claims_deleted
                .push(format!("SegmentClaim {}", claim.name_any())),
        }
    }

    let agents: Api<NodeAgent> = Api::all(client.clone());
    let records = agents
        .list(&ListParams::default())
        .await
        .map_err(failed("listing nodeagents".into()))?
        .items;
    let ask = json!({"metadata": {"annotations": {REMOVE_ANNOTATION: "uninstall"}}});
    for record in &records {
        agents
            .patch(
                &record.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&ask),
            )
            .await
            .map_err(failed(format!(
                "asking NodeAgent {} to remove",
                record.name_any()
            )))?;
    }
    tracing::info!(
        nodes = records.len(),
        "agents asked to remove neutrino from their nodes"
    );
    let deadline = Instant::now() + timeout;
    let mut pending: Vec<String> = records.iter().map(|r| r.name_any()).collect();
    while !pending.is_empty() {
        let now = agents
            .list(&ListParams::default())
            .await
            .map_err(failed("listing nodeagents".into()))?
            .items;
        let removed = |name: &String| {
            now.iter()
                .find(|a| a.name_any() == *name)
                .and_then(|a| condition(a, "Removed"))
                .is_some_and(|c| c.status == "True")
        };
        let (clean, still): (Vec<String>, Vec<String>) = pending.into_iter().partition(removed);
        done.nodes_clean.extend(clean);
        pending = still;
        if Instant::now() >= deadline {
            for name in &pending {
                let said = now
                    .iter()
                    .find(|a| a.name_any() == *name)
                    .and_then(|a| condition(a, "Removed"))
                    .map_or("its agent did not answer".to_string(), |c| {
                        c.message.clone()
                    });
                done.nodes_not_clean.push(format!("{name}: {said}"));
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for record in &records {
        match agents
            .delete(&record.name_any(), &DeleteParams::default())
            .await
        {
            Err(cause) if !missing(&cause) => {
                return Err(UninstallError {
                    what: format!("deleting NodeAgent {}", record.name_any()),
                    cause,
                });
            }
            _ => {}
        }
    }
    Ok(done)
}
