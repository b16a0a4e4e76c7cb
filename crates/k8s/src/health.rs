//! `/healthz` (the process answers) and `/readyz` (the component is
//! ready: the controller's caches are filled, the agent has applied its
//! node's plan once since it started), for the pods' probes. The agent
//! runs in the node's network namespace, so it listens on the node's
//! loopback: nothing off the node reaches it.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once the component is ready; never unset.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

async fn ready(State(readiness): State<Readiness>) -> StatusCode {
    if readiness.get() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { StatusCode::OK }))
        .route("/readyz", get(ready))
        .with_state(readiness)
}

/// Binds `listen` and serves the probes in the background.
pub async fn serve(listen: SocketAddr, readiness: Readiness) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(readiness)).await {
            tracing::error!(error = %e, "the health server stopped");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn status(readiness: &Readiness, path: &str) -> StatusCode {
        router(readiness.clone())
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn ready_only_after_the_first_apply() {
        let readiness = Readiness::default();
        assert_eq!(status(&readiness, "/healthz").await, StatusCode::OK);
        assert_eq!(
            status(&readiness, "/readyz").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        readiness.set();
        assert_eq!(status(&readiness, "/readyz").await, StatusCode::OK);
    }
}
