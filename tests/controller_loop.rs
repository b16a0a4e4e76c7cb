//! The whole controller — watches, caches, leader election, rounds —
//! against a small fake API server that keeps objects by path, refuses a
//! second object of one name and a stale resourceVersion, and never ends a
//! watch (no events: the controller works from its lists and its resync).

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tower_test::mock;

use neutrino::core::ClusterConfig;
use neutrino::k8s::controller::{Options, run};

type Objects = Arc<Mutex<BTreeMap<String, Value>>>;

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
            object["metadata"]["uid"] = json!(format!("uid-{name}"));
            object["metadata"]["resourceVersion"] = json!(version);
            objects.insert(path, object.clone());
            (201, object)
        }
        Method::PATCH | Method::PUT => {
            let stored = objects.get(&object_path).cloned();
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
        Method::DELETE => match objects.remove(path) {
            Some(_) => (200, status(200, "Success")),
            None => (404, status(404, "NotFound")),
        },
        _ => (405, status(405, "MethodNotAllowed")),
    }
}

type FakeBody = BoxBody<Bytes, std::io::Error>;

fn full(value: &Value) -> FakeBody {
    Full::new(Bytes::from(serde_json::to_vec(value).unwrap()))
        .map_err(|never| match never {})
        .boxed()
}

/// Serves requests until the test ends. A watch stays open and gets an
/// event for every later write in its collection, as from a real server.
async fn serve(mut handle: mock::Handle<Request<Body>, Response<FakeBody>>, objects: Objects) {
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

/// The quickstart and two node records, stored by path.
fn cluster() -> BTreeMap<String, Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    let snapshot = neutrino::manifest::load(&dir).unwrap().snapshot;
    let mut objects = BTreeMap::new();
    fn each<K: kube::Resource<DynamicType = ()> + serde::Serialize>(
        out: &mut BTreeMap<String, Value>,
        map: &BTreeMap<neutrino::core::Key, K>,
    ) {
        for (key, object) in map {
            let mut value = serde_json::to_value(object).unwrap();
            value["metadata"]["uid"] = json!(format!("uid-{}", key.name));
            value["metadata"]["resourceVersion"] = json!("1");
            let path = format!(
                "/apis/neutrino.dev/v1alpha1/namespaces/{}/{}/{}",
                key.namespace,
                K::plural(&()),
                key.name
            );
            out.insert(path, value);
        }
    }
    each(&mut objects, &snapshot.networks);
    each(&mut objects, &snapshot.subnets);
    each(&mut objects, &snapshot.ports);
    for (i, node) in ["node-1", "node-2"].iter().enumerate() {
        objects.insert(
            format!("/apis/neutrino.dev/v1alpha1/nodeagents/{node}"),
            json!({"apiVersion": "neutrino.dev/v1alpha1", "kind": "NodeAgent",
                   "metadata": {"name": node, "uid": format!("uid-{node}"), "resourceVersion": "1"},
                   "spec": {"tunnelIP": format!("198.18.0.{}", i + 1), "gateway": true}}),
        );
    }
    objects
}

#[tokio::test(flavor = "multi_thread")]
async fn the_controller_claims_then_writes_status_as_leader() {
    let (service, handle) = mock::pair::<Request<Body>, Response<FakeBody>>();
    let client = Client::new(service, "default");
    let objects: Objects = Arc::new(Mutex::new(cluster()));
    tokio::spawn(serve(handle, objects.clone()));

    let controller = tokio::spawn(run(
        client,
        Options {
            cluster: ClusterConfig {
                nodes: vec![],
                ..ClusterConfig::default()
            },
            listen: "127.0.0.1:0".parse().unwrap(),
            lease_namespace: "neutrino-system".into(),
            identity: "replica-a".into(),
            resync: Duration::from_millis(200),
        },
    ));

    let port = "/apis/neutrino.dev/v1alpha1/namespaces/tenant-a/ports/web-1";
    let lease =
        "/apis/coordination.k8s.io/v1/namespaces/neutrino-system/leases/neutrino-controller";
    let mut holder = Value::Null;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let objects = objects.lock().unwrap();
        if objects[port]["status"]["conditions"][0]["status"] == "True" {
            holder = objects[lease]["spec"]["holderIdentity"].clone();
            break;
        }
    }
    assert_eq!(
        holder,
        "replica-a",
        "web-1 became Ready under the leader: {:#?}",
        objects.lock().unwrap().get(port)
    );

    // Stopping hands the Lease back at once.
    controller.abort();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if objects.lock().unwrap()[lease]["spec"]["holderIdentity"].is_null() {
            break;
        }
    }
    let objects = objects.lock().unwrap();
    assert!(
        objects[lease]["spec"]["holderIdentity"].is_null(),
        "{:#}",
        objects[lease]
    );
    let claim =
        &objects["/apis/neutrino.dev/v1alpha1/namespaces/tenant-a/ipclaims/blue-v4.10.10.0.11"];
    assert_eq!(claim["spec"]["holder"]["name"], "web-1");
    assert!(objects.contains_key("/apis/neutrino.dev/v1alpha1/segmentclaims/vxlan.1001"));
    assert_eq!(
        objects[port]["status"]["fixedIPs"][0]["ipAddress"],
        "10.10.0.11"
    );
    let subnet = &objects["/apis/neutrino.dev/v1alpha1/namespaces/tenant-a/subnets/blue-v4"];
    assert_eq!(subnet["status"]["dhcpIP"], "10.10.0.10");
    assert!(objects[port]["spec"].is_object(), "spec untouched");
    assert_eq!(objects[port]["spec"]["nodeName"], "node-1");
}
