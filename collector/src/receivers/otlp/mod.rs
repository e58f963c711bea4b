//! Receiver `otlp`: OTLP over gRPC and over HTTP (protobuf and JSON), all three signals.
//!
//! Both transports share [`super::admit`], so they answer alike: success (with partial_success naming
//! the invalid items left out), RESOURCE_EXHAUSTED / 429 with a retry delay when the pipelines are under
//! pressure, UNAVAILABLE / 503 while shutting down, INVALID_ARGUMENT / 400 for input that does not decode.
//! Limits hold on every request before it costs memory: connections per listener, body size on the wire,
//! and size after decompression (a gzip bomb stops at the limit, it is never inflated in full).

pub mod grpc;
pub mod http;

use std::sync::Arc;

use outpost_config::{
    ComponentId, OtlpReceiverConfig, RateLimitConfig, ReceiverAuthConfig, TlsConfig,
};
use outpost_pipelines::telemetry::ReceiverMetrics;
use outpost_pipelines::Telemetry;

use crate::net::ServerTls;
use crate::receivers::gate::Gate;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Inputs;

/// Seconds a refused client is asked to wait before retrying.
pub const RETRY_AFTER_SECS: u64 = 1;

/// TLS and the auth / rate-limit gate of one protocol; errors name `path`'s keys.
pub(crate) fn guard(
    path: &str,
    tls: Option<&TlsConfig>,
    auth: Option<&ReceiverAuthConfig>,
    rate_limit: Option<&RateLimitConfig>,
    metrics: &ReceiverMetrics,
    telemetry: &Telemetry,
    alpn: &[&[u8]],
) -> Result<(Option<ServerTls>, Arc<Gate>), String> {
    let server_tls = match tls {
        Some(t) => Some(ServerTls {
            config: crate::tls::server_config(t, &telemetry.tls(path), alpn)
                .map_err(|e| format!("{path}.tls: {e}"))?,
            metrics: metrics.clone(),
        }),
        None => None,
    };
    let gate = Gate::new(auth, tls, rate_limit, metrics.clone())
        .map_err(|e| format!("{path}.auth: {e}"))?;
    Ok((server_tls, Arc::new(gate)))
}

/// Binds every enabled protocol of one `otlp` receiver and starts serving. Bind failures are all
/// returned, each naming its config key.
pub async fn start(
    id: &ComponentId,
    cfg: &OtlpReceiverConfig,
    inputs: Inputs,
    telemetry: &Telemetry,
    shutdown: CancellationToken,
) -> Result<Vec<JoinHandle<()>>, Vec<String>> {
    let inputs = Arc::new(inputs);
    let mut handles = Vec::new();
    let mut errors = Vec::new();
    if let Some(grpc_cfg) = &cfg.protocols.grpc {
        let key = format!("receivers.{id}.protocols.grpc.endpoint");
        let metrics = telemetry.receiver(&id.to_string(), "grpc");
        let path = format!("receivers.{id}.protocols.grpc");
        let guard = guard(
            &path,
            grpc_cfg.tls.as_ref(),
            grpc_cfg.auth.as_ref(),
            grpc_cfg.rate_limit.as_ref(),
            &metrics,
            telemetry,
            &[b"h2"],
        );
        match (crate::net::bind(grpc_cfg.endpoint, &key).await, guard) {
            (Ok(listener), Ok(guard)) => handles.push(grpc::serve(
                listener,
                grpc_cfg,
                inputs.clone(),
                metrics,
                guard,
                shutdown.clone(),
            )),
            (Err(e), _) | (_, Err(e)) => errors.push(e),
        }
    }
    if let Some(http_cfg) = &cfg.protocols.http {
        let key = format!("receivers.{id}.protocols.http.endpoint");
        let metrics = telemetry.receiver(&id.to_string(), "http");
        let path = format!("receivers.{id}.protocols.http");
        let guard = guard(
            &path,
            http_cfg.tls.as_ref(),
            http_cfg.auth.as_ref(),
            http_cfg.rate_limit.as_ref(),
            &metrics,
            telemetry,
            &[b"h2", b"http/1.1"],
        );
        match (crate::net::bind(http_cfg.endpoint, &key).await, guard) {
            (Ok(listener), Ok(guard)) => handles.push(http::serve(
                listener,
                http_cfg,
                inputs.clone(),
                metrics,
                guard,
                shutdown.clone(),
            )),
            (Err(e), _) | (_, Err(e)) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(handles)
    } else {
        shutdown.cancel();
        Err(errors)
    }
}
