//! Prometheus metrics and the health endpoints.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;

use super::health::{self, Readiness};

use neutrino_core::controller::in_namespace;
use neutrino_core::resolve::{Resolution, SubnetState};
use neutrino_core::{Key, Kind};
use std::collections::BTreeSet;

/// A subnet's addresses by state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SubnetLabels {
    pub namespace: String,
    pub subnet: String,
    pub state: String,
}

/// A kind's objects by readiness.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
    pub ready: String,
}

/// One kind of request to the API server, and how it ended: `ok`, the
/// HTTP status code, `timeout`, or `error` (no answer).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
    pub resource: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MalformedLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestKindLabels {
    pub verb: String,
    pub resource: String,
}

/// The controller's metrics.
pub struct Metrics {
    registry: Registry,
    pub rounds: Counter,
    /// Rounds that resolved the whole cluster.
    pub full_rounds: Counter,
    pub errors: Counter,
    pub claims_lost: Counter,
    pub duration: Histogram,
    pub addresses: Family<SubnetLabels, Gauge>,
    pub objects: Family<KindLabels, Gauge>,
    pub requests: Family<RequestLabels, Counter>,
    /// Objects the watchers skip because they do not read as their kind.
    pub malformed: Family<MalformedLabels, Gauge>,
    pub request_duration: Family<RequestKindLabels, Histogram>,
    /// Set once the watch caches are filled.
    pub ready: Readiness,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("neutrino_controller");
        let rounds = Counter::default();
        let full_rounds = Counter::default();
        let errors = Counter::default();
        let claims_lost = Counter::default();
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        let addresses = Family::<SubnetLabels, Gauge>::default();
        let objects = Family::<KindLabels, Gauge>::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let malformed = Family::<MalformedLabels, Gauge>::default();
        let request_duration = Family::<RequestKindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 15))
        });
        registry.register("reconciles", "Reconcile rounds run", rounds.clone());
        registry.register(
            "full_reconciles",
            "Reconcile rounds that resolved the whole cluster, not only what changed",
            full_rounds.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Requests that failed in a round",
            errors.clone(),
        );
        registry.register(
            "claims_lost",
            "Claims another writer created first",
            claims_lost.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "How long a round took",
            duration.clone(),
        );
        registry.register(
            "subnet_addresses",
            "Addresses per subnet, used and free",
            addresses.clone(),
        );
        registry.register("objects", "Objects per kind, ready or not", objects.clone());
        registry.register(
            "malformed_objects",
            "Objects skipped because they do not read as their kind",
            malformed.clone(),
        );
        registry.register(
            "api_requests",
            "Requests to the API server, by verb, resource and result",
            requests.clone(),
        );
        registry.register(
            "api_request_duration_seconds",
            "How long requests to the API server took",
            request_duration.clone(),
        );
        Self {
            registry,
            rounds,
            full_rounds,
            errors,
            claims_lost,
            duration,
            addresses,
            objects,
            requests,
            malformed,
            request_duration,
            ready: Readiness::default(),
        }
    }
}

impl Metrics {
    /// Records the address usage and readiness a resolution found.
    pub fn observe(&self, resolution: &Resolution) {
        self.addresses.clear();
        self.observe_subnets(resolution.ready_subnets());
        self.observe_counts(resolution);
    }

    /// Records what a round over `namespaces` found: their subnets'
    /// addresses (a subnet deleted there keeps its figures until the next
    /// full round), and every kind's readiness.
    pub fn observe_namespaces(&self, resolution: &Resolution, namespaces: &BTreeSet<String>) {
        for namespace in namespaces {
            let subnets = in_namespace(&resolution.subnets, namespace);
            self.observe_subnets(subnets.filter_map(|(k, v)| Some((k, v.as_ref().ok()?))));
        }
        self.observe_counts(resolution);
    }

    fn observe_subnets<'a>(&self, subnets: impl Iterator<Item = (&'a Key, &'a SubnetState)>) {
        for (key, subnet) in subnets {
            for (state, value) in [("used", subnet.used), ("free", subnet.free)] {
                let labels = SubnetLabels {
                    namespace: key.namespace.clone(),
                    subnet: key.name.clone(),
                    state: state.into(),
                };
                self.addresses
                    .get_or_create(&labels)
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            }
        }
    }

    fn observe_counts(&self, resolution: &Resolution) {
        let count = |kind: &str, ready: usize, total: usize| {
            for (state, value) in [("true", ready), ("false", total - ready)] {
                let labels = KindLabels {
                    kind: kind.into(),
                    ready: state.into(),
                };
                self.objects.get_or_create(&labels).set(value as i64);
            }
        };
        for kind in Kind::ALL {
            let (ready, total) = resolution.counts(kind);
            count(kind.name(), ready, total);
        }
    }

    /// Counts the skipped objects by kind (every kind of the API, so a
    /// kind that is clean again shows 0).
    pub fn observe_malformed(&self, malformed: &[super::stores::Malformed]) {
        let kinds = Kind::ALL.map(Kind::name);
        for kind in kinds
            .into_iter()
            .chain(["IPClaim", "SegmentClaim", "NodeAgent"])
        {
            let count = malformed
                .iter()
                .filter(|m| m.reference.kind.as_deref() == Some(kind))
                .count();
            self.malformed
                .get_or_create(&MalformedLabels { kind: kind.into() })
                .set(count as i64);
        }
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

async fn metrics_text(State(metrics): State<Arc<Metrics>>) -> String {
    metrics.render()
}

/// `/metrics`, `/healthz` (alive) and `/readyz` (watch caches filled).
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .with_state(metrics.clone())
        .merge(health::router(metrics.ready.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use axum::http::StatusCode;
    use tower::ServiceExt;

    async fn get(router: Router, path: &str) -> (StatusCode, String) {
        let response = router
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn health_readiness_and_metrics() {
        let metrics = Arc::new(Metrics::default());
        let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .join("examples/quickstart");
        let snapshot = neutrino_manifest::load(&dir).unwrap().snapshot;
        metrics.observe(&neutrino_core::resolve(
            &snapshot,
            &neutrino_core::ClusterConfig::default(),
        ));
        metrics.rounds.inc();
        metrics.observe_malformed(&[crate::stores::Malformed {
            reference: k8s_openapi::api::core::v1::ObjectReference {
                kind: Some("Port".into()),
                name: Some("broken".into()),
                ..Default::default()
            },
            field: "spec.network".into(),
            error: "invalid type: integer `7`, expected a string".into(),
        }]);
        // One request, so that the request families have a sample to show.
        let request = RequestKindLabels {
            verb: "patch".into(),
            resource: "ports/status".into(),
        };
        metrics
            .request_duration
            .get_or_create(&request)
            .observe(0.01);
        metrics
            .requests
            .get_or_create(&RequestLabels {
                verb: request.verb,
                resource: request.resource,
                result: "ok".into(),
            })
            .inc();

        assert_eq!(
            get(router(metrics.clone()), "/healthz").await.0,
            StatusCode::OK
        );
        assert_eq!(
            get(router(metrics.clone()), "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        metrics.ready.set();
        assert_eq!(
            get(router(metrics.clone()), "/readyz").await.0,
            StatusCode::OK
        );
        let (status, text) = get(router(metrics), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            text.contains("neutrino_controller_reconciles_total 1"),
            "{text}"
        );
        assert!(
            text.contains(r#"neutrino_controller_subnet_addresses{namespace="tenant-a",subnet="blue-v4",state="used"} 4"#),
            "{text}"
        );
        assert!(
            text.contains(r#"neutrino_controller_objects{kind="Port",ready="true"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"neutrino_controller_malformed_objects{kind="Port"} 1"#)
                && text.contains(r#"neutrino_controller_malformed_objects{kind="Subnet"} 0"#),
            "{text}"
        );

        // docs/operations.md lists exactly the metrics served.
        let served: std::collections::BTreeSet<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        let doc = std::fs::read_to_string(
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
                .join("docs/operations.md"),
        )
        .unwrap();
        let documented: std::collections::BTreeSet<String> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `neutrino_controller_"))
            .map(|l| {
                let name: String = l
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                format!("neutrino_controller_{name}")
            })
            .map(|name| {
                // The exposition's TYPE line names a counter without `_total`.
                name.strip_suffix("_total")
                    .map_or(name.clone(), str::to_string)
            })
            .collect();
        let served: std::collections::BTreeSet<String> =
            served.into_iter().map(str::to_string).collect();
        assert_eq!(documented, served);
    }
}
