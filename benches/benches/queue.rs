//! The disk queue's throughput: append under each sync policy, and a cold drain through a cursor.
//!
//! Records are realistic: the prost encoding of a 512-span `ExportTraceServiceRequest` from loadgen's
//! builder (about 150 KB). Throughput is in bytes of that encoding (what a receiver hands the queue and
//! an exporter gets back), so MB/s here compares directly with network and exporter figures; records/s is
//! `1 / time` per record. Each sample runs on a fresh queue directory under the system temp dir.
//!
//! ```text
//! cargo bench -p outpost-benches --bench queue -- --warm-up-time 1 --measurement-time 5
//! ```

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use outpost_benches::loadgen::payload::traces_request;
use outpost_config::Signal;
use outpost_pipelines::queue::{Appended, Overflow, Queue, QueueOptions, StartAt, SyncPolicy};
use outpost_pipelines::Telemetry;
use prost::Message;

const SPANS: u32 = 512;
const GIB: u64 = 1 << 30;

fn options(dir: &Path, sync: SyncPolicy) -> QueueOptions {
    QueueOptions {
        directory: dir.to_owned(),
        // Bounded so long runs recycle the disk instead of filling it.
        max_size: 2 * GIB,
        high_watermark: GIB,
        low_watermark: GIB / 2,
        overflow: Overflow::DropOldest,
        sync,
        max_age: None,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// `iters` appends spread over `appenders` concurrent tasks; returns the time they took.
async fn append_n(queue: &Queue, payload: &[u8], iters: u64, appenders: u64) -> Duration {
    let stream = queue.stream("traces").expect("stream");
    let payload = bytes::Bytes::copy_from_slice(payload);
    let start = Instant::now();
    let tasks: Vec<_> = (0..appenders)
        .map(|a| {
            let n = iters / appenders + u64::from(a < iters % appenders);
            let stream = stream.clone();
            let payload = payload.clone();
            tokio::spawn(async move {
                for _ in 0..n {
                    match stream.append(Signal::Traces, SPANS, &payload).await {
                        Ok(Appended::Stored { .. }) => {}
                        other => panic!("append failed: {other:?}"),
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("appender");
    }
    start.elapsed()
}

fn bench_append(c: &mut Criterion) {
    let payload = traces_request(SPANS).encode_to_vec();
    eprintln!(
        "queue bench: record = {SPANS}-span export request, {} bytes encoded",
        payload.len()
    );
    let rt = runtime();
    let mut group = c.benchmark_group("queue_append");
    group.throughput(Throughput::Bytes(payload.len() as u64));
    group.sample_size(10);
    let cases = [
        ("always/1", SyncPolicy::Always, 1),
        ("always/8", SyncPolicy::Always, 8),
        ("always/32", SyncPolicy::Always, 32),
        (
            "interval_1s/1",
            SyncPolicy::Interval(Duration::from_secs(1)),
            1,
        ),
        ("never/1", SyncPolicy::Never, 1),
    ];
    for (name, sync, appenders) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let telemetry = Telemetry::new();
        let queue = rt
            .block_on(async { Queue::open(options(dir.path(), sync), &telemetry) })
            .expect("open");
        group.bench_function(name, |b| {
            b.iter_custom(|iters| rt.block_on(append_n(&queue, &payload, iters, appenders)))
        });
        rt.block_on(queue.close());
    }
    group.finish();
}

fn bench_drain(c: &mut Criterion) {
    const RECORDS: u64 = 400;
    let payload = traces_request(SPANS).encode_to_vec();
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let telemetry = Telemetry::new();
    rt.block_on(async {
        let queue = Queue::open(options(dir.path(), SyncPolicy::Never), &telemetry).expect("open");
        // A cursor that never moves keeps every record for the next sample.
        let stream = queue.stream("traces").expect("stream");
        stream.cursor("pin", StartAt::Oldest, None).expect("cursor");
        append_n(&queue, &payload, RECORDS, 2).await;
        queue.close().await;
    });
    let mut group = c.benchmark_group("queue_drain");
    group.throughput(Throughput::Bytes(payload.len() as u64 * RECORDS));
    group.sample_size(10);
    group.bench_function("cold_read_ack/400", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    // Cold: a freshly opened queue (RocksDB's caches empty; the OS page cache is not).
                    let queue = Queue::open(options(dir.path(), SyncPolicy::Never), &telemetry)
                        .expect("open");
                    let stream = queue.stream("traces").expect("stream");
                    let name = format!("drain-{i}");
                    let start = Instant::now();
                    let mut cursor = stream.cursor(&name, StartAt::Oldest, None).expect("cursor");
                    let mut read = 0;
                    while read < RECORDS {
                        let batch = cursor.next_batch(16).await.expect("read");
                        for r in &batch {
                            std::hint::black_box(&r.payload);
                            cursor.ack(r.seq).expect("ack");
                        }
                        read += batch.len() as u64;
                    }
                    total += start.elapsed();
                    drop(cursor);
                    queue.retain_cursors("traces", &["pin"]).expect("retain");
                    drop(stream);
                    queue.close().await;
                }
                total
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench_append, bench_drain);
criterion_main!(benches);
