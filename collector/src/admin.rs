//! The admin HTTP endpoint: `/healthz` (the process is alive), `/readyz` (every pipeline is running,
//! 503 with the reason otherwise; 200 with the reason when degraded), `/metrics` (outpost's own metrics,
//! Prometheus text / OpenMetrics) and `POST /-/reload` (reload the config file, answered with the
//! result). `/debug/cardinality` shows what the cardinality_limit processors see (JSON).
//! It is served on every address the config names (health_check extensions and
//! `service.telemetry.metrics.address`), by default 127.0.0.1:13133. With
//! `service.telemetry.metrics.tls`, the metrics address speaks TLS (mTLS with `client_ca_file`, failed
//! handshakes counted under `receiver="admin"`), with the certificate reloaded like every receiver's; the
//! health_check endpoints stay plaintext for local liveness probes.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use outpost_pipelines::Telemetry;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What `/readyz` reports: `Ok` while pipelines run, the reason otherwise; and, while running, why the
/// node is degraded (its config file was refused and an older config runs). A degraded node still takes
/// and ships telemetry, so it stays ready (200): taking it out of service would lose the data its
/// applications send, which is worse than running yesterday's config.
#[derive(Clone)]
pub struct Readiness(Arc<RwLock<ReadyState>>);

/// Ready or why not, and why degraded if so.
type ReadyState = (Result<(), String>, Option<String>);

impl Readiness {
    pub fn new() -> Self {
        Self(Arc::new(RwLock::new((Err("starting".into()), None))))
    }
    pub fn set(&self, state: Result<(), String>) {
        self.0.write().unwrap_or_else(|e| e.into_inner()).0 = state;
    }
    /// `Some(reason)` marks the node degraded; `None` clears it.
    pub fn set_degraded(&self, reason: Option<String>) {
        self.0.write().unwrap_or_else(|e| e.into_inner()).1 = reason;
    }
    fn get(&self) -> ReadyState {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A reload asked for over HTTP, answered with what became of it.
pub struct ReloadRequest {
    pub reply: oneshot::Sender<Result<String, String>>,
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
    reload: Option<mpsc::Sender<ReloadRequest>>,
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    match s.readiness.get() {
        (Ok(()), None) => (StatusCode::OK, "ready\n".to_string()),
        (Ok(()), Some(why)) => (StatusCode::OK, format!("ready, degraded: {why}\n")),
        (Err(reason), _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

async fn reload(State(s): State<AdminState>) -> impl IntoResponse {
    let Some(tx) = s.reload else {
        return (
            StatusCode::NOT_FOUND,
            "this agent runs the embedded default config; there is no file to reload\n".to_string(),
        );
    };
    let (reply, answer) = oneshot::channel();
    if tx.send(ReloadRequest { reply }).await.is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down\n".to_string(),
        );
    }
    match answer.await {
        Ok(Ok(msg)) => (StatusCode::OK, format!("{msg}\n")),
        Ok(Err(msg)) => (StatusCode::BAD_REQUEST, format!("{msg}\n")),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down\n".to_string(),
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

pub fn router(
    telemetry: Telemetry,
    readiness: Readiness,
    extra_health_paths: &[String],
    reload_tx: Option<mpsc::Sender<ReloadRequest>>,
) -> Router {
    let mut r = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/-/reload", post(reload))
        .route("/debug/cardinality", get(debug_cardinality));
    for p in extra_health_paths {
        if p.starts_with('/') && !["/healthz", "/readyz", "/metrics"].contains(&p.as_str()) {
            r = r.route(p, get(healthz));
        }
    }
    r.with_state(AdminState {
        telemetry,
        readiness,
        reload: reload_tx,
    })
}

/// Connections one admin address serves at once; more wait in the accept backlog.
const MAX_CONNECTIONS: usize = 64;

/// Binds every admin address (all bind errors reported) and serves until `shutdown`; `tls` is the
/// address that speaks TLS and its server config.
pub async fn serve(
    addrs: &[SocketAddr],
    tls: Option<(SocketAddr, crate::net::ServerTls)>,
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
                let tls = tls
                    .as_ref()
                    .filter(|(a, _)| a == addr)
                    .map(|(_, t)| t.clone());
                tracing::info!(
                    addr = %addr,
                    tls = tls.is_some(),
                    "admin endpoint listening (/healthz, /readyz, /metrics)"
                );
                handles.push(tokio::spawn(async move {
                    let served = match tls {
                        Some(tls) => {
                            let listener = crate::net::LimitedListener::with_tls(
                                listener,
                                MAX_CONNECTIONS,
                                Some(tls),
                            );
                            axum::serve(listener, app)
                                .with_graceful_shutdown(token.cancelled_owned())
                                .await
                        }
                        None => {
                            axum::serve(listener, app)
                                .with_graceful_shutdown(token.cancelled_owned())
                                .await
                        }
                    };
                    if let Err(e) = served {
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
