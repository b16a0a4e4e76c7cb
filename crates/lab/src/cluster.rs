//! The lab with a real API server in the middle: the manifests go to the
//! API server by server-side apply, `neutrino controller` validates and
//! allocates there, and each node is a `neutrino agent` that reads the
//! cluster, as on a real cluster. This module is the lab's side of that
//! conversation: CRDs, Node records, the objects, and reading them back.

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use super::LabError;
use neutrino_api::NodeAgent;
use neutrino_core::kinds::key_of;
use neutrino_core::{ApiObject, ClusterConfig, Key, Kind, Snapshot, for_each_kind, with_kind};

/// The field manager of what the lab writes.
pub const FIELD_MANAGER: &str = "neutrino-lab";

/// The label on the Node records a lab registers.
pub const NODE_LABEL: &str = "neutrino.dev/lab";

fn api_error(what: impl std::fmt::Display) -> impl FnOnce(kube::Error) -> LabError {
    let what = what.to_string();
    move |e| LabError::Api(format!("{what}: {e}"))
}

/// A client for the cluster a kubeconfig file names.
pub async fn connect(kubeconfig: &Path) -> Result<Client, LabError> {
    let file = Kubeconfig::read_from(kubeconfig)
        .map_err(|e| LabError::Api(format!("reading {}: {e}", kubeconfig.display())))?;
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .map_err(|e| LabError::Api(format!("{}: {e}", kubeconfig.display())))?;
    Client::try_from(config).map_err(api_error(format!(
        "connecting to the API server of {}",
        kubeconfig.display()
    )))
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Installs (or updates) neutrino's CRDs and waits until the server serves
/// them.
pub async fn install_crds(client: &Client) -> Result<(), LabError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    for (_, crd) in neutrino_api::crds() {
        let name = crd.name_any();
        api.patch(&name, &apply_params(), &Patch::Apply(&crd))
            .await
            .map_err(api_error(format!("installing CRD {name}")))?;
        names.push(name);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for name in names {
        loop {
            let crd = api
                .get(&name)
                .await
                .map_err(api_error(format!("reading CRD {name}")))?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            if Instant::now() > deadline {
                return Err(LabError::Api(format!(
                    "CRD {name} was not established in 30 s"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Registers each lab node as a Node whose InternalIP is its tunnel
/// endpoint, as a kubelet would: the controller trusts a NodeAgent's tunnel
/// IP only if its Node has that address.
pub async fn register_nodes(client: &Client, config: &ClusterConfig) -> Result<(), LabError> {
    let api: Api<Node> = Api::all(client.clone());
    for node in &config.nodes {
        let body = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node.name, "labels": {NODE_LABEL: "true"}},
        });
        api.patch(&node.name, &apply_params(), &Patch::Apply(&body))
            .await
            .map_err(api_error(format!("registering Node {}", node.name)))?;
        let status = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node.name},
            "status": {"addresses": [
                {"type": "InternalIP", "address": node.tunnel_ip.to_string()},
                {"type": "Hostname", "address": node.name},
            ]},
        });
        api.patch_status(&node.name, &apply_params(), &Patch::Apply(&status))
            .await
            .map_err(api_error(format!(
                "writing the addresses of Node {}",
                node.name
            )))?;
    }
    Ok(())
}

/// Removes the Node and NodeAgent records of the lab's nodes.
pub async fn unregister_nodes(client: &Client, config: &ClusterConfig) -> Vec<String> {
    let mut errors = Vec::new();
    let nodes: Api<Node> = Api::all(client.clone());
    let agents: Api<NodeAgent> = Api::all(client.clone());
    for node in &config.nodes {
        if let Err(e) = agents.delete(&node.name, &DeleteParams::default()).await
            && !not_found(&e)
        {
            errors.push(format!("deleting NodeAgent {}: {e}", node.name));
        }
        if let Err(e) = nodes.delete(&node.name, &DeleteParams::default()).await
            && !not_found(&e)
        {
            errors.push(format!("deleting Node {}: {e}", node.name));
        }
    }
    errors
}

fn not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// Creates the namespaces the objects live in; returns those it created.
pub async fn ensure_namespaces(
    client: &Client,
    snapshot: &Snapshot,
    lease_namespace: &str,
) -> Result<Vec<String>, LabError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let mut wanted: BTreeSet<String> = ids(snapshot)
        .into_iter()
        .map(|(_, key)| key.namespace)
        .collect();
    wanted.insert(lease_namespace.to_string());
    let mut created = Vec::new();
    for name in wanted {
        if api
            .get_opt(&name)
            .await
            .map_err(api_error(format!("reading namespace {name}")))?
            .is_some()
        {
            continue;
        }
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        api.patch(&name, &apply_params(), &Patch::Apply(&body))
            .await
            .map_err(api_error(format!("creating namespace {name}")))?;
        created.push(name);
    }
    Ok(created)
}

/// Every object of a snapshot as (kind, key).
pub fn ids(snapshot: &Snapshot) -> Vec<(String, Key)> {
    let mut ids = Vec::new();
    for_each_kind!(Kind::CREATION_ORDER, K => {
        ids.extend(K::of(snapshot).keys().map(|k| (K::KIND.to_string(), k.clone())));
    });
    ids
}

/// The object as the user wrote it: apiVersion, kind, metadata and spec.
fn desired<K: Resource<DynamicType = ()> + Serialize>(object: &K) -> Value {
    let mut value = serde_json::to_value(object).expect("objects serialize");
    if let Some(fields) = value.as_object_mut() {
        fields.remove("status");
        fields.insert("apiVersion".into(), K::api_version(&()).into());
        fields.insert("kind".into(), K::kind(&()).into());
    }
    value
}

async fn apply_kind<K>(
    client: &Client,
    objects: &BTreeMap<Key, std::sync::Arc<K>>,
) -> Result<(), LabError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    for (key, object) in objects {
        let api: Api<K> = Api::namespaced(client.clone(), &key.namespace);
        api.patch(
            &key.name,
            &apply_params(),
            &Patch::Apply(&desired(&**object)),
        )
        .await
        .map_err(api_error(format!("applying {} {key}", K::kind(&()))))?;
    }
    Ok(())
}

/// Applies every object of `snapshot`, and deletes those of `previous`
/// that it no longer holds.
pub async fn apply(
    client: &Client,
    snapshot: &Snapshot,
    previous: &[(String, Key)],
) -> Result<(), LabError> {
    for_each_kind!(Kind::CREATION_ORDER, K => apply_kind(client, K::of(snapshot)).await?);
    let now = ids(snapshot);
    let gone: Vec<(String, Key)> = previous
        .iter()
        .filter(|id| !now.contains(id))
        .cloned()
        .collect();
    let errors = delete(client, &gone).await;
    if errors.is_empty() {
        Ok(())
    } else {
        Err(LabError::Api(errors.join("; ")))
    }
}

/// Applies the Secrets the manifests held.
pub async fn apply_secrets(
    client: &Client,
    secrets: &BTreeMap<Key, k8s_openapi::api::core::v1::Secret>,
) -> Result<(), LabError> {
    let shared = secrets
        .iter()
        .map(|(k, s)| (k.clone(), std::sync::Arc::new(s.clone())))
        .collect();
    apply_kind(client, &shared).await
}

async fn delete_one<K>(client: &Client, key: &Key) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), &key.namespace);
    match api.delete(&key.name, &DeleteParams::default()).await {
        Err(e) if !not_found(&e) => Err(e),
        _ => Ok(()),
    }
}

/// Deletes the objects; returns what failed.
pub async fn delete(client: &Client, objects: &[(String, Key)]) -> Vec<String> {
    let mut errors = Vec::new();
    for (kind, key) in objects {
        let result = match Kind::parse(kind) {
            Some(known) => with_kind!(known, K => delete_one::<K>(client, key).await),
            None => Ok(()),
        };
        if let Err(e) = result {
            errors.push(format!("deleting {kind} {key}: {e}"));
        }
    }
    errors
}

async fn list<K>(client: &Client) -> Result<BTreeMap<Key, std::sync::Arc<K>>, LabError>
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    Ok(api
        .list(&ListParams::default())
        .await
        .map_err(api_error(format!("listing {}", K::plural(&()))))?
        .items
        .into_iter()
        .map(|o| (key_of(&o), std::sync::Arc::new(o)))
        .collect())
}

/// Every neutrino object on the server, statuses included.
pub async fn read(client: &Client) -> Result<Snapshot, LabError> {
    let mut snapshot = Snapshot::default();
    for_each_kind!(K => *K::of_mut(&mut snapshot) = list(client).await?);
    Ok(snapshot)
}

/// The NodeAgent records.
pub async fn agents(client: &Client) -> Result<Vec<NodeAgent>, LabError> {
    Ok(Api::<NodeAgent>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(api_error("listing NodeAgents"))?
        .items)
}

/// An object of `snapshot` as JSON, by kind name and key.
fn object(snapshot: &Snapshot, kind: &str, key: &Key) -> Option<Value> {
    with_kind!(Kind::parse(kind)?, K => K::of(snapshot)
        .get(key)
        .map(|o| serde_json::to_value(&**o).expect("objects serialize")))
}

/// An object's Ready condition, if its status has one.
fn ready_condition(object: &Value) -> Option<&Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
}

/// A condition as `STATUS (Reason: message)`.
fn condition_text(condition: &Value) -> String {
    format!(
        "{} ({}: {})",
        condition["status"].as_str().unwrap_or("?"),
        condition["reason"].as_str().unwrap_or(""),
        condition["message"].as_str().unwrap_or("")
    )
}

/// Why an object is not ready yet, from what its status says; None once it
/// is Ready for its current generation and realised on every node it needs.
fn not_ready(object: &Value) -> Option<String> {
    let Some(ready) = ready_condition(object) else {
        return Some("no Ready condition yet".into());
    };
    if ready["status"] != "True" {
        return Some(format!("Ready={}", condition_text(ready)));
    }
    if ready["observedGeneration"].as_i64() != object["metadata"]["generation"].as_i64() {
        return Some("its status is for an older generation".into());
    }
    let nodes = &object["status"]["nodes"];
    if nodes.is_object() && nodes["ready"] != nodes["desired"] {
        return Some(format!(
            "realised on {} of {} nodes",
            nodes["ready"], nodes["desired"]
        ));
    }
    None
}

/// What keeps each of `wanted` from being ready, read from `snapshot`.
pub fn waiting(snapshot: &Snapshot, wanted: &[(String, Key)]) -> Vec<String> {
    wanted
        .iter()
        .filter_map(|(kind, key)| {
            let why = match object(snapshot, kind, key) {
                None => Some("not on the server".into()),
                Some(object) => not_ready(&object),
            }?;
            Some(format!("{kind} {key}: {why}"))
        })
        .collect()
}

/// Waits until every one of `wanted` is Ready and realised, and returns
/// the server's objects then.
pub async fn wait_ready(
    client: &Client,
    wanted: &[(String, Key)],
    timeout: Duration,
) -> Result<Snapshot, LabError> {
    let deadline = Instant::now() + timeout;
    loop {
        let snapshot = read(client).await?;
        let waiting = waiting(&snapshot, wanted);
        if waiting.is_empty() {
            return Ok(snapshot);
        }
        if Instant::now() > deadline {
            return Err(LabError::Setup(format!(
                "not ready after {} s:\n  {}",
                timeout.as_secs(),
                waiting.join("\n  ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until none of `objects` is left on the server (their finalizers
/// released).
pub async fn wait_gone(
    client: &Client,
    objects: &[(String, Key)],
    timeout: Duration,
) -> Result<(), LabError> {
    let deadline = Instant::now() + timeout;
    loop {
        let present = ids(&read(client).await?);
        let left: Vec<String> = objects
            .iter()
            .filter(|id| present.contains(id))
            .map(|(kind, key)| format!("{kind} {key}"))
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(LabError::Setup(format!(
                "still on the server after {} s: {}",
                timeout.as_secs(),
                left.join(", ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Deletes namespaces the lab created and waits until they are gone (the
/// controller-manager empties them first).
pub async fn delete_namespaces(client: &Client, names: &[String]) -> Vec<String> {
    let api: Api<Namespace> = Api::all(client.clone());
    let mut errors = Vec::new();
    for name in names {
        if let Err(e) = api.delete(name, &DeleteParams::default()).await
            && !not_found(&e)
        {
            errors.push(format!("deleting namespace {name}: {e}"));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for name in names {
        loop {
            match api.get_opt(name).await {
                Ok(None) => break,
                Ok(Some(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Ok(Some(_)) => {
                    errors.push(format!("namespace {name} is still terminating after 60 s"));
                    break;
                }
                Err(e) => {
                    errors.push(format!("reading namespace {name}: {e}"));
                    break;
                }
            }
        }
    }
    errors
}

/// An object's Ready condition as `lab status` shows it; None for an
/// object the server does not hold (a namespace's implicit default group).
pub fn ready_text(snapshot: &Snapshot, kind: &str, key: &Key) -> Option<String> {
    let object = object(snapshot, kind, key)?;
    Some(match ready_condition(&object) {
        None => "Unknown (no status yet)".into(),
        Some(c) if c["status"] == "True" => "True".into(),
        Some(c) => condition_text(c),
    })
}

/// A Helm release of charts/neutrino whose service accounts the lab's
/// controller and agents run with, as the chart's pods would.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChartRelease {
    pub namespace: String,
    pub name: String,
}

impl std::str::FromStr for ChartRelease {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('/') {
            Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() => Ok(Self {
                namespace: namespace.into(),
                name: name.into(),
            }),
            _ => Err(format!(
                "{text:?}: name the release as NAMESPACE/NAME, e.g. neutrino-system/neutrino"
            )),
        }
    }
}

impl std::fmt::Display for ChartRelease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl ChartRelease {
    /// The service account of one of its components (`controller`, `agent`).
    pub fn service_account(&self, component: &str) -> String {
        format!("{}-{component}", self.name)
    }

    /// The stand-in for the agent pod the DaemonSet would run on `node`.
    pub fn agent_pod(&self, node: &str) -> String {
        format!("{}-agent-{node}", self.name)
    }
}

/// How long the components' tokens hold: longer than any lab session.
const TOKEN_SECONDS: i64 = 24 * 3600;

/// A token of `component`'s service account from the TokenRequest API; an
/// agent's is bound to a stand-in Pod on its node, as a kubelet binds the
/// token of the DaemonSet's pod, so it carries the node's name.
pub async fn service_account_token(
    client: &Client,
    release: &ChartRelease,
    component: &str,
    node: Option<&str>,
) -> Result<String, LabError> {
    let account = release.service_account(component);
    let bound = match node {
        None => None,
        Some(node) => {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &release.namespace);
            let name = release.agent_pod(node);
            let body = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": {NODE_LABEL: "true"}},
                "spec": {
                    "nodeName": node,
                    "serviceAccountName": account,
                    "containers": [{"name": "agent", "image": "neutrino"}],
                },
            });
            let pod = pods
                .patch(&name, &apply_params(), &Patch::Apply(&body))
                .await
                .map_err(api_error(format!("creating the agent pod {name}")))?;
            Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name),
                uid: pod.metadata.uid,
            })
        }
    };
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(TOKEN_SECONDS),
            bound_object_ref: bound,
        },
        ..TokenRequest::default()
    };
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &release.namespace);
    let granted = accounts
        .create_token_request(&account, &PostParams::default(), &request)
        .await
        .map_err(api_error(format!(
            "requesting a token of service account {}/{account} (is the chart installed as {release}?)",
            release.namespace
        )))?;
    granted
        .status
        .map(|s| s.token)
        .ok_or_else(|| LabError::Api(format!("no token granted for {account}")))
}

/// Removes the stand-in agent pods.
pub async fn delete_agent_pods(
    client: &Client,
    release: &ChartRelease,
    config: &ClusterConfig,
) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &release.namespace);
    // No kubelet confirms a graceful deletion: delete at once.
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    let mut errors = Vec::new();
    for node in &config.nodes {
        let name = release.agent_pod(&node.name);
        if let Err(e) = pods.delete(&name, &now).await
            && !not_found(&e)
        {
            errors.push(format!("deleting pod {name}: {e}"));
        }
    }
    errors
}

/// A kubeconfig for the cluster `admin` names that authenticates with
/// `token` instead.
pub fn token_kubeconfig(admin: &Path, token: &str) -> Result<String, LabError> {
    let file = Kubeconfig::read_from(admin)
        .map_err(|e| LabError::Api(format!("reading {}: {e}", admin.display())))?;
    let unusable = |why: &str| LabError::Api(format!("{}: {why}", admin.display()));
    let context = file
        .current_context
        .as_ref()
        .and_then(|name| file.contexts.iter().find(|c| &c.name == name))
        .and_then(|c| c.context.as_ref())
        .ok_or_else(|| unusable("no current context"))?;
    let mut cluster = file
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.clone())
        .ok_or_else(|| unusable("the current context names no cluster"))?;
    // A relative path is relative to the file that names it.
    if let Some(ca) = &cluster.certificate_authority
        && Path::new(ca).is_relative()
    {
        let base = admin.parent().unwrap_or(Path::new("."));
        cluster.certificate_authority = Some(base.join(ca).to_string_lossy().into_owned());
    }
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": cluster}],
        "users": [{"name": "service-account", "user": {"token": token}}],
        "contexts": [{"name": "lab", "context": {"cluster": "cluster", "user": "service-account"}}],
        "current-context": "lab",
    });
    Ok(serde_json::to_string_pretty(&config).expect("JSON"))
}
