//! metrics-feed: sends OTLP metrics whose samples a time-series database will actually store, for the
//! Prometheus remote-write benchmarks (benches/scripts/prw-e2e.sh).
//!
//! loadgen sends one pre-encoded request again and again: fine for traces and logs, but for a
//! time-series database every repeat is the same sample again (same series, same timestamp), which it
//! drops as a duplicate. Here each request carries new timestamps, later than the previous request's,
//! and each in-flight slot has series of its own (a `feed.slot` attribute), so the samples of a series
//! reach the destination in time order however the slots interleave. The request is loadgen's metrics
//! payload (gauges and sums, six attributes a point); timestamps are patched into the encoded bytes (a
//! fixed64 field), so the feed costs a copy per request, not an encode.
//!
//!   metrics-feed --endpoint 127.0.0.1:4317 --batch 1000 --requests 2000 --in-flight 4
//!
//! Prints a JSON line: requests, points sent and accepted, elapsed seconds, points per second.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Parser;
use futures::future::join_all;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use outpost_benches::loadgen::payload::metrics_request;
use outpost_benches::loadgen::{PassThroughCodec, Signal};
use prost::Message;
use tonic::client::Grpc;
use tonic::transport::Endpoint;

/// A timestamp no real request holds, to find where timestamps sit in the encoded bytes.
const SENTINEL: u64 = 0x5EED_0F71_3E57_A3B5;

#[derive(Parser)]
#[command(
    name = "metrics-feed",
    about = "OTLP metrics with fresh timestamps per request"
)]
struct Args {
    /// OTLP/gRPC endpoint, host:port
    #[arg(long)]
    endpoint: String,
    /// Data points per request
    #[arg(long, default_value_t = 1000)]
    batch: u32,
    /// Requests to send in all
    #[arg(long, default_value_t = 1000)]
    requests: u64,
    /// Requests in flight, each slot with its own series
    #[arg(long = "in-flight", default_value_t = 4)]
    in_flight: u32,
    /// Milliseconds between the timestamps of consecutive requests of a slot
    #[arg(long = "step-ms", default_value_t = 10)]
    step_ms: u64,
}

/// One slot's request: encoded bytes and where its timestamps are.
struct Template {
    bytes: Vec<u8>,
    offsets: Vec<usize>,
}

fn template(batch: u32, slot: u32) -> anyhow::Result<Template> {
    let mut req = metrics_request(batch);
    for rm in &mut req.resource_metrics {
        for sm in &mut rm.scope_metrics {
            for m in &mut sm.metrics {
                let points = match &mut m.data {
                    Some(Data::Gauge(g)) => &mut g.data_points,
                    Some(Data::Sum(s)) => &mut s.data_points,
                    _ => bail!("metrics_request holds only gauges and sums"),
                };
                for p in points {
                    p.time_unix_nano = SENTINEL;
                    p.attributes.push(KeyValue {
                        key: "feed.slot".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::IntValue(i64::from(slot))),
                        }),
                        ..Default::default()
                    });
                }
            }
        }
    }
    let bytes = req.encode_to_vec();
    let needle = SENTINEL.to_le_bytes();
    let offsets: Vec<usize> = bytes
        .windows(8)
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    if offsets.len() != batch as usize {
        bail!(
            "found {} timestamps in the encoded request, expected {batch}",
            offsets.len()
        );
    }
    Ok(Template { bytes, offsets })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let endpoint = Endpoint::from_shared(format!("http://{}", args.endpoint))
        .context("--endpoint must be host:port")?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    let channel = endpoint.connect().await.context("connecting")?;
    let slots = args.in_flight.max(1);
    let per_slot = args.requests.div_ceil(u64::from(slots));
    // The last request of a slot is stamped "now" at the start; earlier ones step back from it, so every
    // sample is recent (Prometheus refuses samples more than about an hour older than its newest).
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    let first = now - per_slot * args.step_ms * 1_000_000;
    let started = Instant::now();
    let tasks = (0..slots).map(|slot| {
        let channel = channel.clone();
        let args = &args;
        async move {
            let t = template(args.batch, slot)?;
            let codec = PassThroughCodec::for_message_len(t.bytes.len());
            let mut grpc = Grpc::new(channel);
            let path = http::uri::PathAndQuery::from_static(Signal::Metrics.grpc_path());
            let mut accepted = 0u64;
            for i in 0..per_slot {
                let mut body = t.bytes.clone();
                let ts = (first + i * args.step_ms * 1_000_000).to_le_bytes();
                for &o in &t.offsets {
                    body[o..o + 8].copy_from_slice(&ts);
                }
                grpc.ready().await?;
                let answer = grpc
                    .unary(tonic::Request::new(Bytes::from(body)), path.clone(), codec)
                    .await;
                match answer {
                    Ok(_) => accepted += u64::from(args.batch),
                    Err(status) => bail!("request {i} of slot {slot} refused: {status}"),
                }
            }
            anyhow::Ok(accepted)
        }
    });
    let accepted: u64 = join_all(tasks)
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<u64>>>()?
        .into_iter()
        .sum();
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "requests": per_slot * u64::from(slots),
            "points_accepted": accepted,
            "elapsed_s": (elapsed * 1000.0).round() / 1000.0,
            "points_per_s": (accepted as f64 / elapsed).round(),
        })
    );
    Ok(())
}
