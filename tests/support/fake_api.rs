//! A small fake API server for the adapter tests: it keeps objects by path,
//! refuses a second object of one name and a stale resourceVersion, and
//! streams watch events for later writes, as a real server does.

#![allow(dead_code)]

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use kube::client::Body;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tower_test::mock;

pub type Objects = Arc<Mutex<BTreeMap<String, Value>>>;

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "code": code, "reason": reason,
           "status": if code < 300 { "Success" } else { "Failure" }, "message": reason})
}

/// `/apis/g/v/namespaces/ns/plural` or `/apis/g/v/plural` → (prefix, plural).
fn collection_of(path: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts[..] {
        ["apis", group, version, plural] => {
            Some((format!("/apis/{group}/{version}"), plural.to_string()))
        }
        ["apis", group, version, "namespaces", namespace, plural] => Some((
            format!("/apis/{group}/{version}/namespaces/{namespace}"),
            plural.to_string(),
        )),
        ["api", version, plural] => Some((format!("/api/{version}"), plural.to_string())),
        _ => None,
    }
}

/// Whether the object at `object` belongs to the collection at `path`.
fn in_collection(path: &str, object: &str) -> bool {
    let Some((prefix, plural)) = collection_of(path) else {
        return false;
    };
    let parts: Vec<&str> = object.trim_start_matches('/').split('/').collect();
    object.starts_with(&prefix) && parts.len() >= 2 && parts[parts.len() - 2] == plural
}

fn list(objects: &BTreeMap<String, Value>, path: &str) -> Value {
    let items: Vec<Value> = objects
        .iter()
        .filter(|(p, _)| in_collection(path, p))
        .map(|(_, v)| v.clone())
        .collect();
    json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items})
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// Answers one request against `objects`.
fn answer(
    objects: &mut BTreeMap<String, Value>,
    method: &Method,
    path: &str,
    body: Value,
    counter: &mut u64,
) -> (u16, Value) {
    *counter += 1;
    let version = counter.to_string();
    let object_path = path.trim_end_matches("/status").to_string();
    let is_status = path.ends_with("/status");
    match *method {
        Method::GET if collection_of(path).is_some() && !objects.contains_key(path) => {
            (200, list(objects, path))
        }
        Method::GET => match objects.get(path) {
            Some(o) => (200, o.clone()),
            None => (404, status(404, "NotFound")),
        },
        Method::POST => {
            let name = body["metadata"]["name"].as_str().unwrap().to_string();
            let path = format!("{path}/{name}");
            if objects.contains_key(&path) {
                return (409, status(409, "AlreadyExists"));
            }
            let mut object = body;
            // A name made again is another object: a uid of its own.
            object["metadata"]["uid"] = json!(format!("uid-{name}-{version}"));
            object["metadata"]["resourceVersion"] = json!(version);
            objects.insert(path, object.clone());
            (201, object)
        }
        Method::PATCH | Method::PUT => {
            let stored = objects.get(&object_path).cloned();
            if is_status && stored.is_none() {
                return (404, status(404, "NotFound"));
            }
            if let (Some(stored), Some(wanted)) =
                (&stored, body["metadata"]["resourceVersion"].as_str())
                && stored["metadata"]["resourceVersion"].as_str() != Some(wanted)
            {
                return (409, status(409, "Conflict"));
            }
            let mut object = stored.unwrap_or_else(|| body.clone());
            if is_status {
                object["status"] = body["status"].clone();
            } else {
                merge(&mut object, &body);
            }
            object["metadata"]["resourceVersion"] = json!(version);
            objects.insert(object_path, object.clone());
            (200, object)
        }
        Method::DELETE => {
            let Some(stored) = objects.get(path) else {
                return (404, status(404, "NotFound"));
            };
            if let Some(uid) = body["preconditions"]["uid"].as_str()
                && stored["metadata"]["uid"].as_str() != Some(uid)
            {
                return (409, status(409, "Conflict"));
            }
            objects.remove(path);
            (200, status(200, "Success"))
        }
        _ => (405, status(405, "MethodNotAllowed")),
    }
}

pub type FakeBody = BoxBody<Bytes, std::io::Error>;

fn full(value: &Value) -> FakeBody {
    Full::new(Bytes::from(serde_json::to_vec(value).unwrap()))
        .map_err(|never| match never {})
        .boxed()
}

/// Serves requests until the test ends. A watch stays open and gets an
/// event for every later write in its collection, as from a real server.
pub async fn serve(mut handle: mock::Handle<Request<Body>, Response<FakeBody>>, objects: Objects) {
    let mut watches: Vec<(String, mpsc::UnboundedSender<Bytes>)> = Vec::new();
    let mut counter = 100;
    while let Some((request, respond)) = handle.next_request().await {
        let uri = request.uri().clone();
        if uri.query().is_some_and(|q| q.contains("watch=true")) {
            let (events, stream) = mpsc::unbounded_channel::<Bytes>();
            watches.push((uri.path().to_string(), events));
            let frames = futures::stream::unfold(stream, |mut stream| async move {
                stream
                    .recv()
                    .await
                    .map(|bytes| (Ok(Frame::data(bytes)), stream))
            });
            respond.send_response(
                Response::builder()
                    .status(200)
                    .body(StreamBody::new(frames).boxed())
                    .unwrap(),
            );
            continue;
        }
        let method = request.method().clone();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        let (code, value) = answer(
            &mut objects.lock().unwrap(),
            &method,
            uri.path(),
            body,
            &mut counter,
        );
        if code < 300 && method != Method::GET {
            let object_path = match method {
                Method::POST => format!(
                    "{}/{}",
                    uri.path(),
                    value["metadata"]["name"].as_str().unwrap_or_default()
                ),
                _ => uri.path().trim_end_matches("/status").to_string(),
            };
            let kind = match method {
                Method::POST => "ADDED",
                Method::DELETE => "DELETED",
                _ => "MODIFIED",
            };
            let object = if method == Method::DELETE {
                json!({})
            } else {
                value.clone()
            };
            let line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap();
            for (path, events) in &watches {
                if in_collection(path, &object_path) && method != Method::DELETE {
                    let _ = events.send(Bytes::from([line.clone(), b"\n".to_vec()].concat()));
                }
            }
        }
        respond.send_response(Response::builder().status(code).body(full(&value)).unwrap());
    }
}

/// A client talking to a fake server holding `objects`.
pub fn client(objects: Objects) -> kube::Client {
    let (service, handle) = mock::pair::<Request<Body>, Response<FakeBody>>();
    tokio::spawn(serve(handle, objects));
    kube::Client::new(service, "default")
}

/// The path an object lives at on the server.
fn path_of<K: kube::Resource<DynamicType = ()>>(key: &neutrino::core::Key) -> String {
    format!(
        "/apis/neutrino.dev/v1alpha1/namespaces/{}/{}/{}",
        key.namespace,
        K::plural(&()),
        key.name
    )
}

/// A snapshot's networks, subnets and ports as the server stores them, with
/// uids and resource versions.
pub fn stored(snapshot: &neutrino::core::Snapshot) -> BTreeMap<String, Value> {
    fn each<K: kube::Resource<DynamicType = ()> + serde::Serialize>(
        out: &mut BTreeMap<String, Value>,
        map: &BTreeMap<neutrino::core::Key, std::sync::Arc<K>>,
    ) {
        for (key, object) in map {
            let mut value = serde_json::to_value(&**object).unwrap();
            value["metadata"]["uid"] = json!(format!("uid-{}", key.name));
            value["metadata"]["resourceVersion"] = json!("1");
            out.insert(path_of::<K>(key), value);
        }
    }
    let mut objects = BTreeMap::new();
    each(&mut objects, &snapshot.networks);
    each(&mut objects, &snapshot.subnets);
    each(&mut objects, &snapshot.ports);
    objects
}

/// What the server holds, read back as a controller's watch caches would
/// show it.
pub fn snapshot_of(objects: &BTreeMap<String, Value>) -> neutrino::core::Snapshot {
    use neutrino::api::{IPClaim, Network, Port, SegmentClaim, Subnet};
    use neutrino::core::Key;
    fn shared<K: serde::de::DeserializeOwned>(
        map: &mut BTreeMap<Key, std::sync::Arc<K>>,
        value: &Value,
    ) {
        put_as(map, value, std::sync::Arc::new)
    }
    fn put_as<K: serde::de::DeserializeOwned, T>(
        map: &mut BTreeMap<Key, T>,
        value: &Value,
        wrap: fn(K) -> T,
    ) {
        let key = Key::new(
            value["metadata"]["namespace"].as_str().unwrap_or_default(),
            value["metadata"]["name"].as_str().unwrap(),
        );
        map.insert(key, wrap(serde_json::from_value(value.clone()).unwrap()));
    }
    let mut snapshot = neutrino::core::Snapshot::default();
    for (path, value) in objects {
        let plural = path.rsplit('/').nth(1).unwrap_or_default();
        match plural {
            "networks" => shared::<Network>(&mut snapshot.networks, value),
            "subnets" => shared::<Subnet>(&mut snapshot.subnets, value),
            "ports" => shared::<Port>(&mut snapshot.ports, value),
            "ipclaims" => shared::<IPClaim>(&mut snapshot.ip_claims, value),
            "segmentclaims" => {
                let claim: SegmentClaim = serde_json::from_value(value.clone()).unwrap();
                snapshot.segment_claims.insert(
                    claim.metadata.name.clone().unwrap(),
                    std::sync::Arc::new(claim),
                );
            }
            _ => {}
        }
    }
    snapshot
}

/// A Node whose kubelet reports `address` as its InternalIP.
pub fn node(name: &str, address: &str) -> (String, Value) {
    (
        format!("/api/v1/nodes/{name}"),
        json!({"apiVersion": "v1", "kind": "Node",
               "metadata": {"name": name, "uid": format!("uid-node-{name}"), "resourceVersion": "1"},
               "status": {"addresses": [{"type": "InternalIP", "address": address}]}}),
    )
}

/// A NodeAgent record as an agent publishes it.
pub fn node_agent(name: &str, tunnel_ip: &str) -> (String, Value) {
    (
        format!("/apis/neutrino.dev/v1alpha1/nodeagents/{name}"),
        json!({"apiVersion": "neutrino.dev/v1alpha1", "kind": "NodeAgent",
               "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": "1"},
               "spec": {"tunnelIP": tunnel_ip, "gateway": true}}),
    )
}
