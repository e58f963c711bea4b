//! The load generator behind the `loadgen` binary: OTLP export requests at a controlled load,
//! and a report of what the server made of them.
//!
//! Use it from a benchmark as:
//!
//! ```no_run
//! # async fn bench() -> Result<(), outpost_benches::loadgen::LoadgenError> {
//! use clap::Parser;
//! use outpost_benches::loadgen::{run, Options};
//!
//! let plan = Options::parse_from(["loadgen", "--signal", "logs", "--count", "1000"]).plan()?;
//! let report = run(&plan).await?;
//! assert_eq!(report.answers.get("OK"), Some(&1000));
//! # Ok(())
//! # }
//! ```
//!
//! What it guarantees, and why:
//! - The request is built, encoded and (for HTTP) compressed once ([`payload`]); every call sends
//!   the same bytes, so loadgen's CPU goes to I/O and the server is what gets measured.
//! - gRPC calls go through tonic's generic client with a pass-through codec ([`codec`]), so the
//!   pre-encoded bytes are sent without re-encoding.
//! - Nothing is retried and errors never stop a run: each request ends in exactly one counted
//!   answer ([`answer`]), and a server that is down is counted as `connect_error` until the end.
//! - [`run`] fails only on setup a user can fix (a bad endpoint); the server's behaviour is in
//!   the [`Report`].

pub mod answer;
pub mod codec;
pub mod compression;
pub mod driver;
pub mod grpc;
pub mod http;
pub mod options;
pub mod payload;
pub mod report;
pub mod signal;

#[cfg(test)]
mod tests;

pub use answer::{Answer, Outcome};
pub use codec::PassThroughCodec;
pub use compression::Compression;
pub use options::{LoadgenError, Options, Plan, Protocol, Stop};
pub use payload::Payload;
pub use report::{Latency, Report};
pub use signal::Signal;

use codec::GRPC_MESSAGE_HEADER;
use driver::Sender;

/// Runs `plan` to its end and reports. Must be called within a tokio runtime.
pub async fn run(plan: &Plan) -> Result<Report, LoadgenError> {
    let payload = Payload::build(plan.signal, plan.batch, plan.compression);
    let (senders, request_bytes) = match plan.protocol {
        Protocol::Grpc => {
            let senders = grpc::GrpcSender::connect(plan, &payload)?;
            let senders = senders.into_iter().map(Sender::Grpc).collect::<Vec<_>>();
            (senders, GRPC_MESSAGE_HEADER + payload.wire_body().len())
        }
        Protocol::Http => {
            let senders = http::HttpSender::connect(plan, &payload)?;
            let senders = senders.into_iter().map(Sender::Http).collect::<Vec<_>>();
            (senders, payload.wire_body().len())
        }
    };
    let request_bytes = request_bytes as u64;
    let (tally, elapsed) = driver::drive(plan, payload.items(), request_bytes, senders).await;
    Ok(Report::new(plan, request_bytes, &tally, elapsed))
}
