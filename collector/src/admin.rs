//! The admin HTTP endpoint: `/healthz` (the process is alive), `/readyz` (every pipeline is running,
//! 503 with the reason otherwise) and `/metrics` (outpost's own metrics, Prometheus text / OpenMetrics).
//! `/debug/cardinality` shows what the cardinality_limit processors see (JSON). It is served on every
//! address the config names (health_check extensions and
//! `service.telemetry.metrics.address`), by default 127.0.0.1:13133.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use outpost_pipelines::Telemetry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What `/readyz` reports: `Ok` while pipelines run, the reason otherwise.
#[derive(Clone)]
pub struct Readiness(Arc<RwLock<Result<(), String>>>);

impl Readiness {
    pub fn new() -> Self {
        Self(Arc::new(RwLock::new(Err("starting".into()))))
    }
    pub fn set(&self, state: Result<(), String>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = state;
    }
    fn get(&self) -> Result<(), String> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Clone)]
struct AdminState {
    telemetry: Telemetry,
    readiness: Readiness,
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    match s.readiness.get() {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.telemetry.encode(),
    )
}

/// `/debug/cardinality`: each cardinality_limit processor's budgets, tracked series and worst offenders
/// (the labels and metrics whose distinct values grow fastest), as JSON.
async fn debug_cardinality(State(s): State<AdminState>) -> impl IntoResponse {
    let body = serde_json::json!({ "processors": s.telemetry.cardinality_reports() });
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string_pretty(&body).unwrap_or_default(),
    )
}

pub fn router(telemetry: Telemetry, readiness: Readiness, extra_health_paths: &[String]) -> Router {
    let mut r = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/debug/cardinality", get(debug_cardinality));
    for p in extra_health_paths {
        if p.starts_with('/') && !["/healthz", "/readyz", "/metrics"].contains(&p.as_str()) {
            r = r.route(p, get(healthz));
        }
    }
    r.with_state(AdminState {
        telemetry,
        readiness,
    })
}

/// Binds every admin address (all bind errors reported) and serves until `shutdown`.
pub async fn serve(
    addrs: &[SocketAddr],
    app: Router,
    shutdown: CancellationToken,
) -> Result<Vec<JoinHandle<()>>, Vec<String>> {
    let mut handles = Vec::new();
    let mut errors = Vec::new();
    for addr in addrs {
        match crate::net::bind(*addr, "extensions.health_check.endpoint").await {
            Ok(listener) => {
                let app = app.clone();
                let token = shutdown.clone();
                tracing::info!(addr = %addr, "admin endpoint listening (/healthz, /readyz, /metrics)");
                handles.push(tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, app)
                        .with_graceful_shutdown(token.cancelled_owned())
                        .await
                    {
                        tracing::error!(error = %e, "admin endpoint stopped with an error");
                    }
                }));
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(handles)
    } else {
        Err(errors)
    }
}
