//! The requests the controller makes, against a mocked API server that
//! checks each one: claims before statuses, statuses by server-side apply
//! with the field manager and the resourceVersion read, a 409 on a claim
//! holding its holder's status back, deletions with the claim's uid.

use http::{Request, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::client::Body;
use kube::{Client, Resource};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use tower_test::mock;

use neutrino::core::controller::{Actions, actions};
use neutrino::core::{ClusterConfig, Key, Snapshot, resolve};
use neutrino::k8s::execute::{FIELD_MANAGER, execute};
use neutrino::k8s::metrics::Metrics;

/// One request the server expects, and its answer.
struct Expect {
    method: &'static str,
    path: String,
    status: u16,
    /// An answer of its own, instead of the one the method implies.
    answer: Option<Value>,
}

fn expect(method: &'static str, path: &str, status: u16) -> Expect {
    Expect {
        method,
        path: path.into(),
        status,
        answer: None,
    }
}

/// Serves `script` in order and returns what it saw. A success answers a
/// POST with the object sent, a status PATCH with the stored object (from
/// `objects`, by path) carrying the new status, and a DELETE with a Status.
async fn serve(
    mut handle: mock::Handle<Request<Body>, Response<Body>>,
    script: Vec<Expect>,
    objects: BTreeMap<String, Value>,
) -> Vec<(String, Value)> {
    let mut seen = Vec::new();
    for step in script {
        let (request, respond) = handle.next_request().await.expect("a request");
        let method = request.method().to_string();
        let uri = request.uri().to_string();
        assert_eq!(method, step.method, "{uri}");
        let path = uri.split('?').next().unwrap().to_string();
        assert_eq!(path, step.path, "{method} {uri}");
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        let status = |code: u16, reason: &str| {
            json!({"kind": "Status", "apiVersion": "v1", "status": if code < 300 { "Success" } else { "Failure" },
                   "code": code, "reason": reason, "message": reason, "metadata": {}})
        };
        let answer = match (step.status, step.method) {
            _ if step.answer.is_some() => step.answer.clone().unwrap(),
            (code, _) if code >= 300 => status(
                code,
                if code == 409 {
                    "AlreadyExists"
                } else {
                    "Failure"
                },
            ),
            (_, "POST") => {
                let mut object = body.clone();
                object["metadata"]["uid"] = json!("uid-new");
                object["metadata"]["resourceVersion"] = json!("2");
                object
            }
            (_, "PATCH") => {
                let mut object = objects[path.trim_end_matches("/status")].clone();
                object["status"] = body["status"].clone();
                object
            }
            _ => status(200, "Success"),
        };
        seen.push((uri, body));
        respond.send_response(
            Response::builder()
                .status(step.status)
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap(),
        );
    }
    seen
}

/// The objects of `snapshot` by their API path, as the server stores them.
fn stored(snapshot: &Snapshot) -> BTreeMap<String, Value> {
    fn each<K: Resource<DynamicType = ()> + serde::Serialize>(
        out: &mut BTreeMap<String, Value>,
        map: &BTreeMap<Key, std::sync::Arc<K>>,
    ) {
        for (key, object) in map {
            let object = &**object;
            let path = format!(
                "/apis/neutrino.dev/v1alpha1/namespaces/{}/{}/{}",
                key.namespace,
                K::plural(&()),
                key.name
            );
            out.insert(path, serde_json::to_value(object).unwrap());
        }
    }
    let mut out = BTreeMap::new();
    each(&mut out, &snapshot.networks);
    each(&mut out, &snapshot.subnets);
    each(&mut out, &snapshot.ports);
    out
}

/// The quickstart as an API server would hand it out: with uids and
/// resource versions.
fn quickstart() -> Snapshot {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    let mut snapshot = neutrino::manifest::load(&dir).unwrap().snapshot;
    fn stamp<K: Resource + Clone>(map: &mut std::collections::BTreeMap<Key, std::sync::Arc<K>>) {
        for (key, object) in map.iter_mut() {
            let object = std::sync::Arc::make_mut(object);
            object.meta_mut().uid = Some(format!("uid-{}", key.name));
            object.meta_mut().resource_version = Some("1".into());
        }
    }
    stamp(&mut snapshot.networks);
    stamp(&mut snapshot.subnets);
    stamp(&mut snapshot.ports);
    // As after the first round: the Network and Subnet are guarded.
    let guard = || Some(vec![neutrino::core::finalizers::FINALIZER.to_string()]);
    snapshot
        .networks
        .values_mut()
        .for_each(|n| std::sync::Arc::make_mut(n).metadata.finalizers = guard());
    snapshot
        .subnets
        .values_mut()
        .for_each(|n| std::sync::Arc::make_mut(n).metadata.finalizers = guard());
    snapshot
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}

/// What the controller would do with `snapshot` in one round.
fn round_of(snapshot: &Snapshot) -> Actions {
    actions(
        snapshot,
        &resolve(snapshot, &ClusterConfig::default()),
        &Default::default(),
        &now(),
    )
}

/// The claims a round created, as the server then stores them (with uids).
fn record_claims(snapshot: &mut Snapshot, round: Actions) {
    for mut claim in round.create_ip_claims {
        let key = Key::new(
            claim.metadata.namespace.clone().unwrap(),
            claim.metadata.name.clone().unwrap(),
        );
        claim.metadata.uid = Some(format!("uid-{}", key.name));
        snapshot.ip_claims.insert(key, std::sync::Arc::new(claim));
    }
    for claim in round.create_segment_claims {
        snapshot.segment_claims.insert(
            claim.metadata.name.clone().unwrap(),
            std::sync::Arc::new(claim),
        );
    }
}

/// Where a tenant-a object's status is written.
fn status_of(plural: &str, name: &str) -> String {
    format!("/apis/neutrino.dev/v1alpha1/namespaces/tenant-a/{plural}/{name}/status")
}

const CLAIMS: &str = "/apis/neutrino.dev/v1alpha1/namespaces/tenant-a/ipclaims";

#[tokio::test]
async fn claims_first_and_a_lost_claim_holds_its_holder_back() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let snapshot = quickstart();
    let round = round_of(&snapshot);

    // Someone else took web-2's address first.
    let server = tokio::spawn(serve(
        handle,
        vec![
            expect("POST", CLAIMS, 201),
            expect("POST", CLAIMS, 201),
            expect("POST", CLAIMS, 409),
            // Whose is it? Another port's: web-2 lost the race.
            Expect {
                answer: Some(json!({
                    "apiVersion": "neutrino.dev/v1alpha1", "kind": "IPClaim",
                    "metadata": {"name": "blue-v4.10.10.0.12", "namespace": "tenant-a", "uid": "uid-other"},
                    "spec": {"subnet": "blue-v4", "address": "10.10.0.12",
                             "holder": {"kind": "Port", "namespace": "tenant-a", "name": "someone-else"}},
                })),
                ..expect("GET", &format!("{CLAIMS}/blue-v4.10.10.0.12"), 200)
            },
            expect("POST", "/apis/neutrino.dev/v1alpha1/segmentclaims", 201),
            // Then the statuses, showing what was claimed; web-2, which
            // lost, is left for the next round.
            expect("PATCH", &status_of("networks", "blue"), 200),
            expect("PATCH", &status_of("subnets", "blue-v4"), 200),
            expect("PATCH", &status_of("ports", "web-1"), 200),
        ],
        stored(&snapshot),
    ));
    let outcome = execute(&client, &snapshot, round, &Metrics::default()).await;
    let seen = server.await.unwrap();
    assert_eq!(outcome.claims_created, 3);
    assert_eq!(outcome.claims_lost, vec!["blue-v4.10.10.0.12".to_string()]);
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    assert_eq!(outcome.statuses_written, 3);
    let web_1 = &seen[7].1["status"];
    assert_eq!(
        web_1["fixedIPs"][0]["ipAddress"], "10.10.0.11",
        "a status shows its address once the claim is made: {web_1}"
    );
    assert!(
        seen.iter().all(|(uri, _)| !uri.contains("ports/web-2")),
        "no status shows an address whose claim was lost"
    );

    let (uri, claim) = &seen[1];
    assert!(
        uri.contains(&format!("fieldManager={FIELD_MANAGER}")),
        "{uri}"
    );
    assert_eq!(claim["metadata"]["name"], "blue-v4.10.10.0.11");
    assert_eq!(
        claim["spec"]["holder"],
        json!({"kind": "Port", "namespace": "tenant-a", "name": "web-1"})
    );
    let owner = &claim["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Port");
    assert_eq!(owner["uid"], "uid-web-1", "the claim goes with its port");
    assert_eq!(seen[4].1["spec"]["network"]["name"], "blue");
}

#[tokio::test]
async fn a_claim_already_held_by_its_holder_is_no_loss() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let snapshot = quickstart();
    let round = round_of(&snapshot);
    // The first claim was created in an earlier round the caches do not show yet.
    let mine = json!({
        "apiVersion": "neutrino.dev/v1alpha1", "kind": "IPClaim",
        "metadata": {"name": "blue-v4.10.10.0.10", "namespace": "tenant-a", "uid": "uid-mine"},
        "spec": {"subnet": "blue-v4", "address": "10.10.0.10",
                 "holder": {"kind": "Subnet", "namespace": "tenant-a", "name": "blue-v4"}},
    });
    let server = tokio::spawn(serve(
        handle,
        vec![
            expect("POST", CLAIMS, 409),
            Expect {
                answer: Some(mine),
                ..expect("GET", &format!("{CLAIMS}/blue-v4.10.10.0.10"), 200)
            },
            expect("POST", CLAIMS, 201),
            expect("POST", CLAIMS, 201),
            expect("POST", "/apis/neutrino.dev/v1alpha1/segmentclaims", 201),
            expect("PATCH", &status_of("networks", "blue"), 200),
            expect("PATCH", &status_of("subnets", "blue-v4"), 200),
            expect("PATCH", &status_of("ports", "web-1"), 200),
            expect("PATCH", &status_of("ports", "web-2"), 200),
        ],
        stored(&snapshot),
    ));
    let outcome = execute(&client, &snapshot, round, &Metrics::default()).await;
    server.await.unwrap();
    assert!(
        outcome.claims_lost.is_empty() && outcome.errors.is_empty(),
        "{outcome:?}"
    );
    assert_eq!(outcome.claims_created, 3);
}

#[tokio::test]
async fn statuses_by_server_side_apply_with_the_version_read() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let mut snapshot = quickstart();
    // The claims exist (round one went through).
    let first = round_of(&snapshot);
    record_claims(&mut snapshot, first);
    let round = round_of(&snapshot);

    // web-2 changed since it was read: its write is refused, the rest land.
    let server = tokio::spawn(serve(
        handle,
        vec![
            expect("PATCH", &status_of("networks", "blue"), 201),
            expect("PATCH", &status_of("subnets", "blue-v4"), 201),
            expect("PATCH", &status_of("ports", "web-1"), 201),
            expect("PATCH", &status_of("ports", "web-2"), 409),
        ],
        stored(&snapshot),
    ));
    let outcome = execute(&client, &snapshot, round, &Metrics::default()).await;
    let seen = server.await.unwrap();
    assert_eq!((outcome.statuses_written, outcome.statuses_stale), (3, 1));
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);

    let (uri, patch) = &seen[2];
    assert!(
        uri.contains("fieldManager=neutrino-controller") && uri.contains("force=true"),
        "{uri}"
    );
    assert_eq!(patch["apiVersion"], "neutrino.dev/v1alpha1");
    assert_eq!(patch["kind"], "Port");
    assert_eq!(
        patch["metadata"]["resourceVersion"], "1",
        "the write is conditional on what was read"
    );
    assert_eq!(patch["status"]["fixedIPs"][0]["ipAddress"], "10.10.0.11");
    assert_eq!(patch["status"]["conditions"][0]["type"], "Ready");
    assert_eq!(patch["status"]["conditions"][0]["status"], "True");
    assert_eq!(patch["status"]["observedGeneration"], 0);
    assert!(patch.get("spec").is_none(), "spec is the user's alone");
}

#[tokio::test]
async fn a_deleted_port_releases_its_claim_by_uid() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let mut snapshot = quickstart();
    let first = round_of(&snapshot);
    record_claims(&mut snapshot, first);
    snapshot.ports.remove(&Key::new("tenant-a", "web-2"));
    let round = round_of(&snapshot);
    assert!(round.create_ip_claims.is_empty());

    let mut script = Vec::new();
    for path in ["networks/blue", "subnets/blue-v4", "ports/web-1"] {
        script.push(expect(
            "PATCH",
            &format!("/apis/neutrino.dev/v1alpha1/namespaces/tenant-a/{path}/status"),
            200,
        ));
    }
    script.push(expect(
        "DELETE",
        &format!("{CLAIMS}/blue-v4.10.10.0.12"),
        200,
    ));
    let server = tokio::spawn(serve(handle, script, stored(&snapshot)));
    let outcome = execute(&client, &snapshot, round, &Metrics::default()).await;
    let seen = server.await.unwrap();
    assert_eq!(outcome.claims_deleted, 1, "{outcome:?}");
    let delete = &seen.last().unwrap().1;
    assert_eq!(
        delete["preconditions"]["uid"], "uid-blue-v4.10.10.0.12",
        "only the claim that was seen goes"
    );
}

#[tokio::test]
async fn networks_are_guarded_and_let_go_only_when_unused() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let mut snapshot = quickstart();
    snapshot.ports.clear();
    // A new network gets the finalizer, conditionally on the version read.
    let blue = Key::new("tenant-a", "blue");
    std::sync::Arc::make_mut(snapshot.networks.get_mut(&blue).unwrap())
        .metadata
        .finalizers = None;
    let mut round = round_of(&snapshot);
    round.statuses = Snapshot::default();
    round.create_ip_claims.clear();
    round.create_segment_claims.clear();
    let server = tokio::spawn(serve(
        handle,
        vec![expect(
            "PATCH",
            "/apis/neutrino.dev/v1alpha1/namespaces/tenant-a/networks/blue",
            200,
        )],
        stored(&snapshot),
    ));
    let outcome = execute(&client, &snapshot, round, &Metrics::default()).await;
    let seen = server.await.unwrap();
    assert_eq!(outcome.finalizers_changed, 1, "{outcome:?}");
    let (uri, patch) = &seen[0];
    assert!(!uri.contains("/status"), "{uri}");
    assert_eq!(
        patch["metadata"]["finalizers"],
        json!(["neutrino.dev/in-use"])
    );
    assert_eq!(patch["metadata"]["resourceVersion"], "1");

    // Being deleted while its subnet remains: it waits, and says why.
    let deleted = std::sync::Arc::make_mut(snapshot.networks.get_mut(&blue).unwrap());
    deleted.metadata.finalizers = Some(vec!["neutrino.dev/in-use".into()]);
    deleted.metadata.deletion_timestamp = Some(now());
    let round = round_of(&snapshot);
    assert!(round.finalizers.remove.is_empty());
    let status = round.statuses.networks[&blue].status.clone().unwrap();
    assert_eq!(status.conditions[0].reason, "Deleting");
    assert!(
        status.conditions[0]
            .message
            .contains("subnet tenant-a/blue-v4"),
        "{:?}",
        status.conditions
    );

    // Once nothing uses it, the finalizer goes.
    snapshot.subnets.clear();
    let round = round_of(&snapshot);
    assert_eq!(round.finalizers.remove.len(), 1);
}

/// A server that answers every request with what `serve` would, but never
/// answers the status write of port web-1.
async fn hang_on_web_1(
    mut handle: mock::Handle<Request<Body>, Response<Body>>,
    objects: BTreeMap<String, Value>,
) {
    let mut held = Vec::new();
    while let Some((request, respond)) = handle.next_request().await {
        let path = request.uri().path().to_string();
        if path == status_of("ports", "web-1") {
            held.push(respond);
            continue;
        }
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let mut answer: Value = match objects.get(path.trim_end_matches("/status")) {
            Some(stored) => stored.clone(),
            None => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        };
        if let Ok(sent) = serde_json::from_slice::<Value>(&bytes)
            && let Some(status) = sent.get("status")
        {
            answer["status"] = status.clone();
        }
        let body = serde_json::to_vec(&answer).unwrap();
        respond.send_response(
            Response::builder()
                .status(200)
                .body(Body::from(body))
                .unwrap(),
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_the_server_never_answers_fails_alone_and_is_counted() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let mut snapshot = quickstart();
    let first = round_of(&snapshot);
    record_claims(&mut snapshot, first);
    let round = round_of(&snapshot);
    let server = tokio::spawn(hang_on_web_1(handle, stored(&snapshot)));
    let metrics = Metrics::default();
    // Time is paused: the 10 s the hung request is given pass at once.
    let outcome = execute(&client, &snapshot, round, &metrics).await;
    server.abort();
    assert_eq!(
        outcome.errors,
        ["writing the status of Port tenant-a/web-1: no answer within 10 s"]
    );
    assert!(outcome.statuses_written >= 3, "{outcome:?}");
    let text = metrics.render();
    assert!(
        text.contains(r#"neutrino_controller_api_requests_total{verb="patch",resource="ports/status",result="timeout"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"neutrino_controller_api_requests_total{verb="patch",resource="networks/status",result="ok"} 1"#),
        "{text}"
    );
}
