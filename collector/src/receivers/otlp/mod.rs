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

use outpost_config::{ComponentId, OtlpReceiverConfig};
use outpost_pipelines::Telemetry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Inputs;

/// Seconds a refused client is asked to wait before retrying.
pub const RETRY_AFTER_SECS: u64 = 1;

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
        match crate::net::bind(grpc_cfg.endpoint, &key).await {
            Ok(listener) => handles.push(grpc::serve(
                listener,
                grpc_cfg,
                inputs.clone(),
                telemetry.receiver(&id.to_string(), "grpc"),
                shutdown.clone(),
            )),
            Err(e) => errors.push(e),
        }
    }
    if let Some(http_cfg) = &cfg.protocols.http {
        let key = format!("receivers.{id}.protocols.http.endpoint");
        match crate::net::bind(http_cfg.endpoint, &key).await {
            Ok(listener) => handles.push(http::serve(
                listener,
                http_cfg,
                inputs.clone(),
                telemetry.receiver(&id.to_string(), "http"),
                shutdown.clone(),
            )),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(handles)
    } else {
        shutdown.cancel();
        Err(errors)
    }
}
