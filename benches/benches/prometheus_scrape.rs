//! The CPU cost of one scrape after the bytes have arrived: text page → samples (parse) → OTLP metrics
//! with start times and staleness (convert) → the protobuf the queue stores (encode). Throughput is in
//! Prometheus samples (lines of the page), the unit the comparison with Prometheus uses.
//!
//! The page is shaped like a node exporter's: counters and gauges with 2–4 labels, histograms with 10
//! buckets, summaries with 5 quantiles. `scrape` runs the same page twice in a row per iteration's state,
//! as a steady-state scrape does (every series known, start times looked up, nothing stale).
//!
//! `parse` and `parse_convert_encode` read every line in full (the path a scrape took before the scrape
//! cache, and still takes for a series seen for the first time); `cached_parse_convert[_encode]` is the
//! scrape loop's path through the target's line cache as it was before the direct encoder (owned OTLP
//! structs, then prost's encode), commit included; `cached_parse_convert_direct_encode` is the scrape
//! loop's path now: the line cache, then the request written straight into protobuf bytes.
//!
//! The allocator is mimalloc, as in the `outpost` binary. Time is the benchmark thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`), not wall time: the build machine is shared, and wall time there measures
//! the neighbours as much as the scrape.
//!
//!     cargo bench --workspace --bench prometheus_scrape -- --warm-up-time 1 --measurement-time 3

use std::fmt::Write;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use outpost::prom::to_otlp::Endpoint;
use outpost::receivers::prometheus::convert::{self, PageStats, ScrapeReport, SeriesCache, Target};
use outpost::receivers::prometheus::parse;
use prost::Message;

/// A page of about `series` samples.
fn page(series: usize) -> String {
    let mut out = String::new();
    let mut n = 0;
    let mut family = 0;
    while n < series {
        match family % 4 {
            0 => {
                writeln!(out, "# HELP app_requests_{family}_total Requests.").unwrap();
                writeln!(out, "# TYPE app_requests_{family}_total counter").unwrap();
                for code in ["200", "404", "500"] {
                    for method in ["GET", "POST", "PUT", "DELETE"] {
                        writeln!(
                            out,
                            "app_requests_{family}_total{{code=\"{code}\",method=\"{method}\",handler=\"/api/v1/items\"}} {}",
                            n * 17 + 3
                        )
                        .unwrap();
                        n += 1;
                    }
                }
            }
            1 => {
                writeln!(out, "# TYPE node_filesystem_{family}_bytes gauge").unwrap();
                for dev in 0..8 {
                    writeln!(
                        out,
                        "node_filesystem_{family}_bytes{{device=\"/dev/sda{dev}\",fstype=\"ext4\",mountpoint=\"/mnt/{dev}\"}} {}.5e+09",
                        n
                    )
                    .unwrap();
                    n += 1;
                }
            }
            2 => {
                writeln!(out, "# TYPE http_latency_{family}_seconds histogram").unwrap();
                for route in ["a", "b"] {
                    let mut c = 0;
                    for le in [
                        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
                    ] {
                        c += 3;
                        writeln!(out, "http_latency_{family}_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {c}").unwrap();
                    }
                    writeln!(
                        out,
                        "http_latency_{family}_seconds_sum{{route=\"{route}\"}} 12.5"
                    )
                    .unwrap();
                    writeln!(
                        out,
                        "http_latency_{family}_seconds_count{{route=\"{route}\"}} {c}"
                    )
                    .unwrap();
                    n += 12;
                }
            }
            _ => {
                writeln!(out, "# TYPE rpc_{family}_seconds summary").unwrap();
                for q in ["0", "0.25", "0.5", "0.75", "1"] {
                    writeln!(out, "rpc_{family}_seconds{{quantile=\"{q}\"}} 0.{family}").unwrap();
                }
                writeln!(out, "rpc_{family}_seconds_sum 1.5").unwrap();
                writeln!(out, "rpc_{family}_seconds_count 40").unwrap();
                n += 7;
            }
        }
        family += 1;
    }
    out
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

/// Runs `f` `iters` times and returns the thread CPU time it took.
fn cpu_time(iters: u64, mut f: impl FnMut()) -> Duration {
    let start = thread_cpu_time();
    for _ in 0..iters {
        f();
    }
    thread_cpu_time() - start
}

/// The report of a successful 10 ms scrape that read `stats`.
fn ok_report(stats: &PageStats) -> Option<ScrapeReport> {
    Some(ScrapeReport {
        up: true,
        duration_seconds: 0.01,
        samples_scraped: stats.exposed,
        samples_post_relabeling: stats.kept,
    })
}

fn target() -> Target {
    Target {
        job: "node".into(),
        instance: "127.0.0.1:9100".into(),
        endpoint: Endpoint {
            scheme: "http".into(),
            host: "127.0.0.1".into(),
            port: Some(9100),
        },
        labels: vec![("site".into(), "store-42".into())],
        honor_timestamps: true,
    }
}

fn scrape(c: &mut Criterion) {
    let text = page(2_000);
    let samples = parse::parse(&text).unwrap().samples.len();
    let t = target();
    let mut group = c.benchmark_group("prometheus_scrape");
    group.throughput(Throughput::Elements(samples as u64));

    group.bench_function("parse", |b| {
        b.iter_custom(|iters| {
            cpu_time(iters, || {
                black_box(parse::parse(black_box(&text)).unwrap());
            })
        })
    });

    // Steady state: the cache already holds every series of the page.
    let mut cache = SeriesCache::default();
    let first = parse::parse(&text).unwrap();
    let report = ScrapeReport {
        up: true,
        duration_seconds: 0.01,
        samples_scraped: samples,
        samples_post_relabeling: samples,
    };
    let warm = convert::convert(
        &t,
        &mut cache,
        first.samples,
        &first.families,
        Some(report),
        1,
    );
    let warm_points = warm.points;
    convert::commit(&mut cache, warm.next);

    group.bench_function("parse_convert_encode", |b| {
        let mut now = 2u64;
        b.iter_custom(|iters| {
            cpu_time(iters, || {
                let page = parse::parse(&text).unwrap();
                now += 1_000_000_000;
                let out = convert::convert(
                    &t,
                    &mut cache,
                    page.samples,
                    &page.families,
                    Some(report),
                    now,
                );
                black_box(out.request.encode_to_vec());
                black_box(out.points);
            })
        })
    });

    // The scrape loop's path: the page read through the target's line cache, which already knows every
    // series text, then converted, encoded and committed.
    let mut lines = SeriesCache::default();
    let cached = |cache: &mut SeriesCache, now: u64, encode: bool| {
        cache.begin(&t, now);
        let stats = cache.add_page(&t, &text, |_| Ok(true)).unwrap();
        let out = cache.finish(&t, ok_report(&stats));
        if encode {
            black_box(out.request.encode_to_vec());
        }
        let points = out.points;
        convert::commit(cache, out.next);
        points
    };
    assert_eq!(cached(&mut lines, 1, false), warm_points);
    for (name, encode) in [
        ("cached_parse_convert", false),
        ("cached_parse_convert_encode", true),
    ] {
        group.bench_function(name, |b| {
            let mut now = 2u64;
            b.iter_custom(|iters| {
                cpu_time(iters, || {
                    now += 1_000_000_000;
                    black_box(cached(&mut lines, now, encode));
                })
            })
        });
    }

    // The scrape loop's path now: the same request written straight into its protobuf encoding from
    // the cache, no OTLP structs, the bytes freed as the queue would after its append.
    let mut direct = SeriesCache::default();
    let direct_scrape = |cache: &mut SeriesCache, now: u64| {
        cache.begin(&t, now);
        let stats = cache.add_page(&t, &text, |_| Ok(true)).unwrap();
        let out = cache.finish_encoded(&t, ok_report(&stats));
        let points = out.points;
        black_box(out.request);
        convert::commit(cache, out.next);
        points
    };
    assert_eq!(direct_scrape(&mut direct, 1), warm_points);
    group.bench_function("cached_parse_convert_direct_encode", |b| {
        let mut now = 2u64;
        b.iter_custom(|iters| {
            cpu_time(iters, || {
                now += 1_000_000_000;
                black_box(direct_scrape(&mut direct, now));
            })
        })
    });
    group.finish();
}

/// The queue's side of a scrape: compressing its encoded request (one scrape of the page, in steady
/// state) at the queue's zstd level and at faster ones, with a fresh zstd context per record (as
/// `zstd::bulk::compress` does, which the queue's `encode_record` uses) and with one reused. The
/// compressed size of each level is printed once: the trade is speed against the queue's disk footprint.
fn queue_zstd(c: &mut Criterion) {
    let text = page(2_000);
    let t = target();
    let mut cache = SeriesCache::default();
    let mut payload = Vec::new();
    for now in [1, 2] {
        cache.begin(&t, now);
        let stats = cache.add_page(&t, &text, |_| Ok(true)).unwrap();
        let out = cache.finish_encoded(&t, ok_report(&stats));
        convert::commit(&mut cache, out.next);
        payload = out.request;
    }
    let samples = parse::parse(&text).unwrap().samples.len();
    let mut group = c.benchmark_group("prometheus_queue_zstd");
    group.throughput(Throughput::Elements(samples as u64));
    for level in [3, 1, -1, -3, -5] {
        let compressed = zstd::bulk::compress(&payload, level).unwrap();
        eprintln!(
            "zstd level {level}: {} → {} bytes ({:.2}x)",
            payload.len(),
            compressed.len(),
            payload.len() as f64 / compressed.len() as f64
        );
        group.bench_function(format!("level_{level}"), |b| {
            b.iter_custom(|iters| {
                cpu_time(iters, || {
                    black_box(zstd::bulk::compress(black_box(&payload), level).unwrap());
                })
            })
        });
        let mut reused = zstd::bulk::Compressor::new(level).unwrap();
        group.bench_function(format!("level_{level}_reused_context"), |b| {
            b.iter_custom(|iters| {
                cpu_time(iters, || {
                    black_box(reused.compress(black_box(&payload)).unwrap());
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, scrape, queue_zstd);
criterion_main!(benches);
