//! OTLP/gRPC sending: tonic's generic [`Grpc`] client with the pass-through codec.
//!
//! Each `--connections` slot is its own lazily connected [`Channel`], so a server that is down
//! at the start (or goes down mid-run) costs counted `connect_error`s, never a failed start:
//! tonic reconnects on the next call. In-flight requests share their channel's HTTP/2 connection.
//! No retries, no deadlines sent to the server: the run's own timeout is applied by the driver.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use super::answer::{answer_for_status, answer_for_transport_error, Answer, Outcome};
use super::codec::PassThroughCodec;
use super::options::{LoadgenError, Plan};
use super::payload::Payload;
use super::signal::Signal;

/// Sends the run's request over one channel. Clones share the channel and its connection.
#[derive(Debug, Clone)]
pub struct GrpcSender {
    grpc: Grpc<Channel>,
    path: PathAndQuery,
    /// The encoded, uncompressed request: with compression on, tonic compresses it (see `codec`).
    message: Bytes,
    codec: PassThroughCodec,
    signal: Signal,
    /// With --fresh-trace-ids: the payload, and the run's request counter shared by all senders.
    fresh: Option<(Arc<Payload>, Arc<AtomicU64>)>,
}

impl GrpcSender {
    /// One sender per connection of the plan. Connections are made on first use.
    pub fn connect(plan: &Plan, payload: &Payload) -> Result<Vec<GrpcSender>, LoadgenError> {
        let endpoint = Endpoint::from_shared(plan.endpoint.clone())
            .map_err(|_| LoadgenError::Endpoint {
                endpoint: plan.endpoint.clone(),
                reason: "not a URL",
                expected: "expected host:port or http://host:port",
            })?
            .connect_timeout(plan.timeout)
            .tcp_nodelay(true);
        let message = payload.encoded().clone();
        let fresh = plan
            .fresh_trace_ids
            .then(|| (Arc::new(payload.clone()), Arc::new(AtomicU64::new(1))));
        let senders = (0..plan.connections.max(1))
            .map(|_| {
                let mut grpc = Grpc::new(endpoint.connect_lazy());
                if let Some(encoding) = plan.compression.grpc_encoding() {
                    grpc = grpc.send_compressed(encoding);
                }
                GrpcSender {
                    grpc,
                    path: PathAndQuery::from_static(payload.signal().grpc_path()),
                    message: message.clone(),
                    codec: PassThroughCodec::for_message_len(message.len()),
                    signal: payload.signal(),
                    fresh: fresh.clone(),
                }
            })
            .collect();
        Ok(senders)
    }

    /// Sends the request once and says how it ended.
    pub async fn send(&mut self) -> Outcome {
        if let Err(err) = self.grpc.ready().await {
            return Outcome::of(answer_for_transport_error(&err));
        }
        let message = match &self.fresh {
            Some((payload, counter)) => {
                payload.with_fresh_trace_ids(counter.fetch_add(1, Ordering::Relaxed))
            }
            None => self.message.clone(),
        };
        let request = tonic::Request::new(message);
        match self
            .grpc
            .unary(request, self.path.clone(), self.codec)
            .await
        {
            Ok(response) => match self.signal.rejected_items(response.get_ref()) {
                Ok(rejected) => Outcome {
                    answer: Answer::Grpc(Code::Ok),
                    rejected,
                },
                Err(_) => Outcome::of(Answer::BadResponse),
            },
            Err(status) => Outcome::of(answer_for_status(&status)),
        }
    }
}
