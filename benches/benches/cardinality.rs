//! The cost of `cardinality_limit` per data point, and its memory per tracked series.
//!
//! - `admit_path`: 10,000 series already admitted (3 labels each, a cumulative sum), batches of 1,000 of
//!   them pass again: the steady state of a pipeline within budget (one fingerprint and one lookup per
//!   point).
//! - `over_budget`: the metric's budget is full and every point is a new series (an exploding `user_id`):
//!   each point is checked against the label and series budgets and aggregated into the overflow series.
//! - `drop_label`: `user_id` is over its `value_limit` with `drop_label`: each point loses the label and is
//!   aggregated into the series without it.
//!
//! Memory: a counting global allocator measures the heap growth of admitting 1,000,000 series (exact
//! mode, persistence off) after the batches that carried them are freed, divided by the series count.
//!
//! ```text
//! cargo bench -p outpost-benches --bench cardinality -- --warm-up-time 1 --measurement-time 3
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point::Value, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use outpost_config::CardinalityLimitConfig;
use outpost_pipelines::processors::cardinality::CardinalityLimit;
use outpost_pipelines::{Batch, Emit, Metrics, Telemetry};

/// Counts live heap bytes.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const BATCH: u64 = 1000;

fn kv(k: &str, v: String) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v)),
        }),
        ..Default::default()
    }
}

/// One request of `BATCH` points of `requests_total`, series `first..first + BATCH` (user_id = the
/// series number, route and method from it).
fn batch(first: u64) -> Metrics {
    let points = (first..first + BATCH)
        .map(|i| NumberDataPoint {
            attributes: vec![
                kv("user_id", format!("user-{i}")),
                kv("http.route", format!("/api/v{}", i % 7)),
                kv("http.method", ["GET", "POST"][(i % 2) as usize].to_string()),
            ],
            start_time_unix_nano: 1,
            time_unix_nano: 2,
            value: Some(Value::AsInt(i as i64)),
            ..Default::default()
        })
        .collect();
    Metrics {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "shop".into())],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "requests_total".into(),
                    data: Some(Data::Sum(Sum {
                        data_points: points,
                        aggregation_temporality: 2,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn processor(cfg: serde_json::Value) -> CardinalityLimit {
    let cfg: CardinalityLimitConfig = serde_json::from_value(cfg).unwrap();
    CardinalityLimit::new(
        &cfg,
        Telemetry::new().cardinality("metrics", "cardinality_limit"),
        ("metrics", "cardinality_limit"),
        None,
    )
    .unwrap()
}

fn run(p: &mut CardinalityLimit, data: Metrics, now: Instant, out: &mut Emit<Metrics>) {
    p.process_at(Batch::new(data), now, out);
    for b in out.take_batches() {
        b.discard();
    }
    out.take_dropped();
}

fn memory_report() {
    const SERIES: u64 = 1_000_000;
    let mut p = processor(serde_json::json!({"max_series": 0, "persist": false}));
    let now = Instant::now();
    let mut out = Emit::default();
    // The processor's own fixed parts (and the per-metric state) are allocated by the first batch.
    run(&mut p, batch(0), now, &mut out);
    let before = LIVE.load(Ordering::Relaxed);
    let mut first = BATCH;
    while first < SERIES {
        run(&mut p, batch(first), now, &mut out);
        first += BATCH;
    }
    let grown = LIVE.load(Ordering::Relaxed) - before;
    let added = SERIES - BATCH;
    println!(
        "cardinality_limit memory: {} series tracked; heap growth {:.1} B per series (labels have no value_limit: \
         their report sets are capped at 1024 values)",
        p.tracked_series(),
        grown as f64 / added as f64
    );
}

fn per_point(c: &mut Criterion) {
    memory_report();
    let mut group = c.benchmark_group("cardinality_limit");
    group.throughput(Throughput::Elements(BATCH));
    let now = Instant::now();

    group.bench_function("admit_path", |b| {
        let mut p = processor(serde_json::json!({"persist": false}));
        let mut out = Emit::default();
        for i in 0..10 {
            run(&mut p, batch(i * BATCH), now, &mut out);
        }
        let mut i = 0;
        b.iter_batched(
            || {
                i = (i + 1) % 10;
                batch(i * BATCH)
            },
            |data| run(&mut p, data, now, &mut out),
            BatchSize::SmallInput,
        )
    });

    group.bench_function("over_budget", |b| {
        let mut p = processor(serde_json::json!({
            "persist": false,
            "metrics": [{"name": "requests_total", "max_series": 1000}],
        }));
        let mut out = Emit::default();
        run(&mut p, batch(0), now, &mut out);
        let mut next = BATCH;
        b.iter_batched(
            || {
                next += BATCH;
                batch(next)
            },
            |data| run(&mut p, data, now, &mut out),
            BatchSize::SmallInput,
        )
    });

    group.bench_function("drop_label", |b| {
        let mut p = processor(serde_json::json!({
            "persist": false,
            "labels": {"user_id": {"value_limit": 100, "action": "drop_label"}},
        }));
        let mut out = Emit::default();
        run(&mut p, batch(0), now, &mut out);
        let mut next = BATCH;
        b.iter_batched(
            || {
                next += BATCH;
                batch(next)
            },
            |data| run(&mut p, data, now, &mut out),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, per_point);
criterion_main!(benches);
