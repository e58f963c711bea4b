//! The cost of `tail_sampling`, and the memory of held spans.
//!
//! Throughput: the pipeline's own work per request — decode the request as a receiver does, run the
//! processor chain, encode what leaves and compress it as the queue does (zstd level 1) — with an empty
//! chain (the pass-through baseline) and with `tail_sampling` (errors, slow traces and 10% of the rest,
//! decision_wait 1s on a simulated clock advancing 10 ms per request, so about 100 requests of traces are
//! held and decided in steady state). Each side is charged for what it sends on: the pass-through
//! baseline makes a queue record (encode, zstd, checksum: the queue's own `encode_record`) of every
//! span, tail sampling of the ~20% it keeps. Requests come from the tail_sampling trace generator: 20
//! traces, about 110 spans and 33 KB each, 5% errors and 5% slow.
//!
//! Group `pipeline_seam` stops at the record value: RocksDB's write is left out, which favours the
//! baseline (it writes five times the bytes). Group `pipeline_queue` runs the same two chains into a real
//! queue (`Stream::append`, sync `never` so that fsync's waiting is not counted), and measures the
//! process's CPU time, which includes the queue's writer thread and RocksDB's own threads.
//!
//! Before the criterion groups, `paired_report` runs both comparisons again in interleaved blocks (see
//! its doc): criterion's figures for the two sides are taken seconds apart and move with the machine's
//! neighbours; the paired cost does not.
//!
//! Time is CPU time (`CLOCK_THREAD_CPUTIME_ID` for the seam, `CLOCK_PROCESS_CPUTIME_ID` with the queue),
//! not wall time: the build machine is shared, and wall time there measures the neighbours as much as
//! the processor.
//!
//! Memory: before the timed runs, the bench holds 3,000 requests of traces (no decision due), then
//! reports the heap growth measured by a counting global allocator and the processor's own accounting,
//! each as a fraction of the OTLP-encoded size of what is held.
//!
//! ```text
//! cargo bench --workspace --bench tail_sampling -- --warm-up-time 1 --measurement-time 3
//! ```

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use outpost_config::{Signal, TailSamplingConfig};
use outpost_pipelines::processors::tail_sampling::gen::TraceGen;
use outpost_pipelines::processors::tail_sampling::TailSampling;
use outpost_pipelines::queue::format::encode_record;
use outpost_pipelines::queue::{Appended, Overflow, Queue, QueueOptions, Stream, SyncPolicy};
use outpost_pipelines::{Batch, Emit, Processor, Telemetry, Traces};
use prost::Message;

/// Counts live heap bytes, to measure what held spans really occupy; the allocation itself is mimalloc's,
/// as in the `outpost` binary.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.realloc(p, l, n) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn cpu_time(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime({clock})");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    cpu_time(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time every thread of this process has used.
fn process_cpu_time() -> Duration {
    cpu_time(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn processor(decision_wait: &str) -> TailSampling {
    let cfg: TailSamplingConfig = serde_json::from_value(serde_json::json!({
        "decision_wait": decision_wait,
        "max_memory": 1u64 << 32,
        "num_traces": 10_000_000,
        "policies": [
            {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
            {"name": "slow", "type": "latency", "latency": {"threshold_ms": 500}},
            {"name": "sample-10", "type": "probabilistic", "probabilistic": {"sampling_percentage": 10}},
        ]
    }))
    .unwrap();
    let names: Vec<&str> = cfg.policies.iter().map(|p| p.name.as_str()).collect();
    TailSampling::new(
        &cfg,
        Telemetry::new().tail_sampling("traces", "tail_sampling", &names),
    )
    .unwrap()
}

/// `n` encoded requests of 20 generated traces each.
fn requests(n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut g = TraceGen::new(seed);
    (0..n)
        .map(|_| {
            let spans = (0..20)
                .flat_map(|_| {
                    let k = g.kind(5, 5, 0);
                    g.trace(k).spans
                })
                .collect();
            g.request(spans).encode_to_vec()
        })
        .collect()
}

/// Makes request `i`'s trace ids unique across passes over the request set, so repeated requests are
/// new traces rather than late spans of decided ones.
fn fresh(mut data: Traces, i: usize) -> Traces {
    for rs in &mut data.resource_spans {
        for ss in &mut rs.scope_spans {
            for s in &mut ss.spans {
                for (b, x) in s.trace_id[8..].iter_mut().zip((i as u64).to_be_bytes()) {
                    *b ^= x;
                }
            }
        }
    }
    data
}

/// What the queue seam does with what leaves the chain, with the same calls: the payload's encoding
/// (encoded here, or as a processor released it encoded) made into a record value (zstd, checksum,
/// header) by the queue's own `encode_record`.
fn seal(out: &mut Emit<Traces>) -> usize {
    let mut bytes = 0;
    for mut b in out.take_batches() {
        let items = b.item_count() as u32;
        let payload = b.take_payload();
        bytes += encode_record(Signal::Traces, items, 0, &payload)
            .unwrap()
            .len();
        drop(b.into_parts());
    }
    out.take_dropped();
    bytes
}

/// What the queue seam does, including the write: every batch appended to `stream` as `Pipeline` does.
fn seal_into(out: &mut Emit<Traces>, stream: &Stream, rt: &tokio::runtime::Runtime) -> usize {
    let mut bytes = 0;
    for mut b in out.take_batches() {
        let items = b.item_count() as u32;
        let payload = b.take_payload();
        bytes += payload.len();
        match rt.block_on(stream.append(Signal::Traces, items, &payload)) {
            Ok(Appended::Stored { .. }) => {}
            other => panic!("append failed: {other:?}"),
        }
        drop(b.into_parts());
    }
    out.take_dropped();
    bytes
}

fn memory_report() {
    let reqs = requests(3000, 42);
    let encoded: usize = reqs.iter().map(Vec::len).sum();
    let spans: usize = reqs
        .iter()
        .map(|r| outpost_pipelines::SignalData::item_count(&Traces::decode(r.as_slice()).unwrap()))
        .sum();
    // Train the dictionary first on other traces, so the figure is the steady state.
    let mut p = processor("1h");
    let t0 = Instant::now();
    let mut out = Emit::default();
    for r in requests(60, 7) {
        p.process_at(
            Batch::new(Traces::decode(r.as_slice()).unwrap()),
            t0,
            &mut out,
        );
    }
    let before_held = p.held_bytes();
    let before = LIVE.load(Ordering::Relaxed);
    for r in &reqs {
        p.process_at(
            Batch::new(Traces::decode(r.as_slice()).unwrap()),
            t0,
            &mut out,
        );
    }
    let heap = (LIVE.load(Ordering::Relaxed) - before) as f64;
    let held = (p.held_bytes() - before_held) as f64;
    println!(
        "tail_sampling memory: {spans} spans held, {encoded} bytes as OTLP ({:.0} B/span); heap growth \
         {:.0} B/span = {:.3} of OTLP; processor accounting {:.0} B/span = {:.3} of OTLP; compressing: {}",
        encoded as f64 / spans as f64,
        heap / spans as f64,
        heap / encoded as f64,
        held / spans as f64,
        held / encoded as f64,
        p.compressing()
    );
}

/// One side of the comparison with its own state: `tail_sampling` holds traces across requests, the
/// pass-through side has nothing to hold.
struct Side<'a> {
    reqs: &'a [Vec<u8>],
    p: Option<TailSampling>,
    clock: Instant,
    i: usize,
    out: Emit<Traces>,
}

impl<'a> Side<'a> {
    fn new(reqs: &'a [Vec<u8>], tail: bool) -> Self {
        let mut side = Side {
            reqs,
            p: tail.then(|| processor("1s")),
            clock: Instant::now(),
            i: 0,
            out: Emit::default(),
        };
        // To the steady state first: the dictionary trained and a full decision_wait of traces held.
        for _ in 0..300 {
            side.chain();
            seal(&mut side.out);
        }
        if let Some(p) = &side.p {
            assert!(p.compressing() && p.held_traces() > 0);
        }
        side
    }

    /// Decodes the next request as a receiver does and runs it through the chain; what leaves is in
    /// `self.out`.
    fn chain(&mut self) {
        let data = fresh(
            Traces::decode(self.reqs[self.i % self.reqs.len()].as_slice()).unwrap(),
            self.i,
        );
        self.i += 1;
        self.clock += Duration::from_millis(10);
        match &mut self.p {
            Some(p) => {
                p.process_at(Batch::new(data), self.clock, &mut self.out);
                if p.next_deadline().is_some_and(|d| d <= self.clock) {
                    p.on_deadline(self.clock, &mut self.out);
                }
            }
            None => self.out.push(Batch::new(data)),
        }
    }
}

/// Both comparisons measured in interleaved blocks: `ROUNDS` rounds, each running `BLOCK` requests
/// through the pass-through side and then `BLOCK` through `tail_sampling`, CPU time summed per side.
/// Criterion measures one side for seconds and then the other, so a neighbour that starts or stops in
/// between (this is a shared 2-vCPU machine) lands on one side only; interleaving in blocks of a few
/// milliseconds puts such changes on both sides alike, and the spread of the per-round ratios shows what
/// is left. The seam is timed on this thread; with the queue write, the whole process is timed (the
/// queue's writer thread and RocksDB's threads), so a RocksDB flush or compaction is charged to
/// whichever side's block it ran in — mostly caused by the pass-through side, which writes five times
/// the bytes, so that charge goes against `tail_sampling` as often as not.
fn paired_report() {
    const ROUNDS: usize = 200;
    const BLOCK: usize = 20;
    let reqs = requests(400, 3);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let queues: Vec<(Queue, Stream)> = ["pass_through", "tail_sampling"]
        .iter()
        .map(|side| {
            let q = open_queue(&rt, &dir.path().join(side));
            let s = q.stream("traces").expect("stream");
            (q, s)
        })
        .collect();
    for with_queue in [false, true] {
        let mut sides = [Side::new(&reqs, false), Side::new(&reqs, true)];
        let mut totals = [Duration::ZERO; 2];
        let mut ratios = Vec::with_capacity(ROUNDS);
        let clock = if with_queue {
            process_cpu_time
        } else {
            thread_cpu_time
        };
        for _ in 0..ROUNDS {
            let mut round = [Duration::ZERO; 2];
            for (k, side) in sides.iter_mut().enumerate() {
                let start = clock();
                for _ in 0..BLOCK {
                    side.chain();
                    if with_queue {
                        black_box(seal_into(&mut side.out, &queues[k].1, &rt));
                    } else {
                        black_box(seal(&mut side.out));
                    }
                }
                round[k] = clock() - start;
                totals[k] += round[k];
            }
            ratios.push(round[1].as_secs_f64() / round[0].as_secs_f64());
        }
        ratios.sort_by(f64::total_cmp);
        let q = |f: f64| ratios[((ratios.len() - 1) as f64 * f).round() as usize];
        let per_req = |d: Duration| d.as_secs_f64() * 1e6 / (ROUNDS * BLOCK) as f64;
        println!(
            "tail_sampling paired {} ({ROUNDS} rounds of {BLOCK} requests a side): pass-through {:.1} µs, \
             tail_sampling {:.1} µs per request; cost {:+.1}% on the totals; per-round ratio median {:.3} \
             (quartiles {:.3}–{:.3})",
            if with_queue { "with queue write" } else { "seam" },
            per_req(totals[0]),
            per_req(totals[1]),
            (totals[1].as_secs_f64() / totals[0].as_secs_f64() - 1.0) * 100.0,
            q(0.5),
            q(0.25),
            q(0.75)
        );
    }
    for (q, s) in queues {
        drop(s);
        rt.block_on(q.close());
    }
}

/// A queue in `dir` as the agent opens one, except sync `never` (fsync's waiting is not CPU work).
fn open_queue(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> Queue {
    rt.block_on(async {
        Queue::open(
            QueueOptions {
                directory: dir.to_owned(),
                // Bounded so long runs recycle the disk instead of filling it.
                max_size: 1 << 30,
                high_watermark: 1 << 29,
                low_watermark: 1 << 28,
                overflow: Overflow::DropOldest,
                sync: SyncPolicy::Never,
                max_age: None,
            },
            &Telemetry::new(),
        )
    })
    .expect("open queue")
}

fn throughput(c: &mut Criterion) {
    memory_report();
    paired_report();
    let reqs = requests(400, 1);
    let bytes: usize = reqs.iter().map(Vec::len).sum();
    let mut group = c.benchmark_group("pipeline_seam");
    group.throughput(Throughput::Bytes((bytes / reqs.len()) as u64));
    for (name, tail) in [("pass_through", false), ("tail_sampling", true)] {
        // State lives outside the closure: criterion calls a bench function's closure once per sample,
        // and a processor made there would start empty (and train its dictionary) in every sample
        // instead of being measured in its steady state.
        let mut side = Side::new(&reqs, tail);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = thread_cpu_time();
                for _ in 0..iters {
                    side.chain();
                    black_box(seal(&mut side.out));
                }
                thread_cpu_time() - start
            })
        });
    }
    group.finish();
}

fn with_queue(c: &mut Criterion) {
    let reqs = requests(400, 2);
    let bytes: usize = reqs.iter().map(Vec::len).sum();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut group = c.benchmark_group("pipeline_queue");
    group.throughput(Throughput::Bytes((bytes / reqs.len()) as u64));
    for (name, tail) in [("pass_through", false), ("tail_sampling", true)] {
        let dir = tempfile::tempdir().expect("temp dir");
        let queue = open_queue(&rt, dir.path());
        let stream = queue.stream("traces").expect("stream");
        let mut side = Side::new(&reqs, tail);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = process_cpu_time();
                for _ in 0..iters {
                    side.chain();
                    black_box(seal_into(&mut side.out, &stream, &rt));
                }
                process_cpu_time() - start
            })
        });
        drop(stream);
        rt.block_on(queue.close());
    }
    group.finish();
}

criterion_group!(benches, throughput, with_queue);
criterion_main!(benches);
