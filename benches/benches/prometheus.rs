//! The `prometheusremotewrite` exporter's CPU work per payload, without the network: OTLP decode,
//! translation to Prometheus series, packing into requests and snappy, exactly as
//! `PrometheusRemoteWriteExporter` does for one queued record. Throughput is in samples.
//!
//! The allocator is mimalloc, as in the `outpost` binary. Time is the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall time: the build machine
//! is shared, and wall time there measures the neighbours as much as the exporter.
//!
//! Two payloads: loadgen's metrics request (gauges and sums with six attributes a point, 8192 points, one
//! sample each) and a histogram payload (1024 points of 10 buckets: 13 samples each).
//!
//! ```text
//! cargo bench --workspace --bench prometheus -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, AggregationTemporality, Histogram, HistogramDataPoint, Metric, ResourceMetrics,
    ScopeMetrics,
};
use outpost::prom::pack::pack;
use outpost::prom::translate::{translate, Settings};
use outpost_benches::loadgen::payload::metrics_request;
use prost::Message;

fn kv(k: &str, v: String) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v)),
        }),
        ..Default::default()
    }
}

fn histograms(n: u64) -> ExportMetricsServiceRequest {
    let bounds = vec![5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 1000.0];
    let points = (0..n)
        .map(|i| HistogramDataPoint {
            attributes: vec![
                kv("http.route", format!("/api/v1/items/{}", i % 64)),
                kv("http.method", "GET".into()),
                kv("server.instance", format!("pod-{}", i / 64)),
            ],
            time_unix_nano: 1_700_000_000_000_000_000,
            count: 100 + i,
            sum: Some(1234.5 + i as f64),
            bucket_counts: (0..10).map(|b| b * 3 + i % 7).collect(),
            explicit_bounds: bounds.clone(),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
                attributes: vec![
                    kv("service.name", "checkout".into()),
                    kv("service.instance.id", "node-7".into()),
                    kv("host.name", "edge-1".into()),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "http.server.request.duration".into(),
                    unit: "ms".into(),
                    data: Some(Data::Histogram(Histogram {
                        data_points: points,
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// What the exporter does with one queued record; returns the compressed bytes (to keep it alive).
fn export_work(encoded: &[u8], settings: &Settings) -> usize {
    let req = ExportMetricsServiceRequest::decode(encoded).expect("valid payload");
    let t = translate(&req, settings);
    pack(t, 3_000_000, 2000)
        .into_iter()
        .map(|r| r.body.encode_snappy().expect("snappy").len())
        .sum()
}

fn samples(encoded: &[u8], settings: &Settings) -> u64 {
    let req = ExportMetricsServiceRequest::decode(encoded).expect("valid payload");
    pack(translate(&req, settings), 3_000_000, 2000)
        .iter()
        .map(|r| r.samples as u64)
        .sum()
}

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn bench(c: &mut Criterion) {
    let settings = Settings::default();
    let mut group = c.benchmark_group("prometheusremotewrite");
    for (name, req) in [
        ("gauges_and_sums_8192_points", metrics_request(8192)),
        ("histograms_1024_points", histograms(1024)),
    ] {
        let encoded = req.encode_to_vec();
        let n = samples(&encoded, &settings);
        group.throughput(Throughput::Elements(n));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = thread_cpu_time();
                for _ in 0..iters {
                    black_box(export_work(&encoded, &settings));
                }
                thread_cpu_time() - start
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
