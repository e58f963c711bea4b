//! The redaction engine's throughput on realistic attribute values, with the default packs (pii-core,
//! secrets, and the URL query parameter rule), against the same rules applied one regex at a time.
//!
//! The corpus is what edge telemetry carries: routes, full URLs, user agents, SQL, host and pod names,
//! UUIDs, trace ids, timestamps, versions, status codes, log lines with order numbers, error messages.
//! About 2% of values carry PII (an email, a card number, a bearer token, an SSN), so the bench covers
//! the fast path and the confirmation path in realistic proportions. Throughput is bytes of values
//! scanned per second, on one thread (one core).
//!
//! Time is the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall time: the build machine
//! is shared, and wall time there measures the neighbours as much as the engine. The allocator is
//! mimalloc, as in the `outpost` binary.
//!
//! The baseline compiles every rule's pattern (the same regexes, same builder) and, for each value,
//! runs each of them in turn and confirms matches with the same validators: what a straightforward
//! implementation does, and what the engine's single pass with a prefilter is measured against.
//!
//! ```text
//! cargo bench --workspace --bench redaction -- --warm-up-time 1 --measurement-time 3
//! ```

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use outpost_config::redaction::build_regex;
use outpost_config::RedactionProcessorConfig;
use outpost_pipelines::processors::redaction::engine::{Engine, RuleSpec, Scratch, Verdict};
use outpost_pipelines::processors::redaction::{packs, validators, Redaction};
use std::hint::black_box;
use std::time::Duration;

/// Values per batch in the batched case: one OTLP export of a few hundred spans, ~300 KB of values.
const BATCH: usize = 5_000;

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

/// Runs `f` `iters` times and returns the CPU time this thread spent on it.
fn cpu_time(iters: u64, mut f: impl FnMut() -> usize) -> Duration {
    let start = thread_cpu_time();
    for _ in 0..iters {
        black_box(f());
    }
    thread_cpu_time() - start
}

/// A deterministic generator (SplitMix64), so every run scans the same corpus.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
    fn hex(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(b"0123456789abcdef"[self.below(16) as usize]))
            .collect()
    }
}

/// `(key, value)` pairs as an instrumented service would send them. User agents recur verbatim, as
/// they do in a node's traffic; with `REDACTION_UNIQUE_AGENTS=1` each differs (its Chrome build is
/// the value's index). Their one shape leaves rules possible (the version is a long run of digits),
/// so each goes to the engine's per-value stages, and none recurs for its memo of clean values to
/// answer: the bench's worst case for its memos.
pub fn corpus(n: usize) -> Vec<(&'static str, String)> {
    let unique_agents = std::env::var_os("REDACTION_UNIQUE_AGENTS").is_some();
    let mut r = Rng(0x5eed);
    let words = [
        "checkout",
        "inventory",
        "payment",
        "cart",
        "search",
        "catalog",
        "shipping",
        "pricing",
        "loyalty",
        "session",
        "profile",
        "orders",
    ];
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let w = r.pick(&words);
        let (key, value) = match r.below(100) {
            0..=9 => ("http.route", format!("/api/v{}/{w}/{{id}}/items", r.below(3) + 1)),
            10..=19 => (
                "url.full",
                format!(
                    "https://{w}.shop.example.com/api/v2/{w}/{}?page={}&sort=desc&lang=en-GB",
                    r.below(100_000),
                    r.below(50)
                ),
            ),
            20..=24 => (
                "user_agent.original",
                if unique_agents {
                    format!(
                        "Mozilla/5.0 (Linux; Android 13; SM-T220) AppleWebKit/537.36 (KHTML, like Gecko) \
                         Chrome/120.0.{i}.144 Safari/537.36"
                    )
                } else {
                    "Mozilla/5.0 (Linux; Android 13; SM-T220) AppleWebKit/537.36 (KHTML, like Gecko) \
                     Chrome/120.0.6099.144 Safari/537.36"
                        .to_string()
                },
            ),
            25..=29 => (
                "db.statement",
                format!("SELECT id, sku, qty, price FROM {w}_items WHERE store_id = ? AND updated_at > ? LIMIT 500"),
            ),
            30..=34 => ("host.name", format!("edge-{w}-{:02}.store-{}.local", r.below(40), r.below(900))),
            35..=39 => ("k8s.pod.name", format!("{w}-{}-{}", r.hex(10), r.hex(5))),
            40..=44 => ("order.id", format!("{}-{}-{}-{}-{}", r.hex(8), r.hex(4), r.hex(4), r.hex(4), r.hex(12))),
            45..=49 => ("trace.parent", format!("00-{}-{}-01", r.hex(32), r.hex(16))),
            50..=54 => ("event.time", format!("2024-0{}-1{}T1{}:2{}:3{}.{}Z", r.below(9) + 1, r.below(9), r.below(9), r.below(9), r.below(9), r.below(1000))),
            55..=57 => ("service.version", format!("{}.{}.{}-rc.{}", r.below(3), r.below(30), r.below(10), r.below(5))),
            58..=62 => ("http.response.status_code", r.pick(&["200", "201", "204", "304", "404", "500"]).to_string()),
            63..=65 => ("duration", format!("{}ms", r.below(5000))),
            66..=79 => (
                "message",
                format!(
                    "{w} order {} for store {} completed in {} ms ({} items, {} retries)",
                    r.below(10_000_000),
                    r.below(900),
                    r.below(3000),
                    r.below(40),
                    r.below(3)
                ),
            ),
            80..=89 => (
                "exception.message",
                format!(
                    "upstream {w} service returned status 503 after 3 attempts: connection reset by peer \
                     (pool={w}-pool, active={}, idle={})",
                    r.below(64),
                    r.below(8)
                ),
            ),
            90..=97 => ("feature.flags", format!("{w}_v2=on,{w}_beta=off,dark_mode=on,cohort={}", r.below(12))),
            // The ~2% that carry something to redact.
            _ => match i % 4 {
                0 => ("customer", format!("refund requested by jane.doe{}@example.com", r.below(1000))),
                1 => ("payment", "card 4111 1111 1111 1111 declined".to_string()),
                2 => ("http.request.header.authorization", format!("Bearer {}{}", r.hex(24), r.hex(16))),
                _ => ("note", "verified ssn 536-22-8142 on file".to_string()),
            },
        };
        out.push((key, value));
    }
    out
}

/// The baseline: every rule's regex in turn over every value, matches confirmed by the validators.
struct OneAtATime {
    rules: Vec<(RuleSpec, regex::bytes::Regex, Option<regex::bytes::Regex>)>,
}

impl OneAtATime {
    fn new(specs: Vec<RuleSpec>) -> Self {
        Self {
            rules: specs
                .into_iter()
                .map(|s| {
                    let re = build_regex(&s.pattern).expect("shipped patterns compile");
                    let keys = s
                        .keys
                        .as_deref()
                        .map(|k| build_regex(k).expect("keys compile"));
                    (s, re, keys)
                })
                .collect(),
        }
    }

    fn findings(&self, key: &str, value: &[u8]) -> usize {
        let mut n = 0;
        for (spec, re, keys) in &self.rules {
            if keys.as_ref().is_some_and(|k| !k.is_match(key.as_bytes())) {
                continue;
            }
            for m in re.find_iter(value) {
                let ok = match spec.validator {
                    Some(v) => validators::confirm(v, value, m.range()).is_some(),
                    None => true,
                };
                n += usize::from(ok);
            }
        }
        n
    }
}

/// `REDACTION_DUMP=DIR` writes the corpus (`values.bin`, the values joined by NUL bytes) and the
/// default packs' rules that apply under any key (`patterns.tsv`: `caseless<TAB>pattern`, capture
/// names dropped and a leading `(?i)` moved to the flag) for another engine to scan the same text:
/// `benches/scripts/redaction-hyperscan.sh`.
fn dump(dir: &str, cfg: &RedactionProcessorConfig, values: &[(&str, String)]) {
    let dir = std::path::Path::new(dir);
    std::fs::create_dir_all(dir).expect("dump directory");
    let joined: Vec<&[u8]> = values.iter().map(|(_, v)| v.as_bytes()).collect();
    std::fs::write(dir.join("values.bin"), joined.join(&0u8)).expect("values.bin");
    let names = regex::Regex::new(r"\(\?P<\w+>").expect("capture names");
    let mut tsv = String::new();
    for spec in packs::rule_specs(cfg).expect("default packs") {
        if spec.keys.is_some() {
            continue;
        }
        let pattern = names.replace_all(&spec.pattern, "(?:");
        let (caseless, pattern) = match pattern.strip_prefix("(?i)") {
            Some(rest) => (1, rest),
            None => (0, &pattern[..]),
        };
        tsv.push_str(&format!("{caseless}\t{pattern}\n"));
    }
    std::fs::write(dir.join("patterns.tsv"), tsv).expect("patterns.tsv");
    eprintln!(
        "wrote {} values and the patterns to {}",
        values.len(),
        dir.display()
    );
}

/// `REDACTION_FIXED_WORK=batched:N` (or `single:N`) scans the corpus N times the processor's way (or
/// value by value) and exits without measuring: a fixed amount of work for an instruction counter
/// such as `valgrind --tool=callgrind`, whose counts, unlike times on a shared machine, repeat.
/// The difference between two values of N is the instructions of N passes over the corpus.
fn fixed_work(spec: &str, engine: &Engine, values: &[(&str, String)]) {
    let (how, n) = spec
        .split_once(':')
        .expect("REDACTION_FIXED_WORK=batched:N or single:N");
    let n: usize = n.parse().expect("a number of passes");
    let mut scratch = Scratch::default();
    let mut found = Vec::new();
    let mut changed = 0;
    for _ in 0..n {
        changed += match how {
            "batched" => scan_batched(engine, values, &mut scratch, &mut found),
            "single" => scan_each(engine, values, &mut scratch),
            other => panic!("REDACTION_FIXED_WORK: unknown scan {other:?}"),
        };
    }
    eprintln!("{n} passes of {how} scans, {changed} bytes rewritten");
}

/// Scans `values` one by one and rewrites those with findings; returns the rewritten bytes.
fn scan_each(engine: &Engine, values: &[(&str, String)], scratch: &mut Scratch) -> usize {
    let mut changed = 0;
    for (k, v) in values {
        engine.scan(Some(k), v.as_bytes(), scratch).expect("fits");
        if !scratch.findings().is_empty() {
            if let Verdict::Rewrite(out) = engine.verdict(v.as_bytes(), true, scratch) {
                changed += out.len();
            }
        }
    }
    changed
}

/// As the processor scans: the values of one OTLP batch at a time, gathered and scanned together,
/// then the verdict for each value with findings. Returns the rewritten bytes.
fn scan_batched(
    engine: &Engine,
    values: &[(&str, String)],
    scratch: &mut Scratch,
    found: &mut Vec<usize>,
) -> usize {
    let mut changed = 0;
    for chunk in values.chunks(BATCH) {
        engine.scan_many(chunk.iter().map(|(k, v)| (Some(*k), v.as_bytes())), scratch);
        found.clear();
        found.extend(scratch.batch_results().map(|(i, _)| i));
        for &i in found.iter() {
            if scratch.load_batch_findings(i).is_ok() {
                if let Verdict::Rewrite(out) = engine.verdict(chunk[i].1.as_bytes(), true, scratch)
                {
                    changed += out.len();
                }
            }
        }
    }
    changed
}

fn bench(c: &mut Criterion) {
    let cfg = RedactionProcessorConfig::default();
    let redaction = Redaction::new(&cfg).expect("default packs build");
    let engine = redaction.engine();
    let baseline = OneAtATime::new(packs::rule_specs(&cfg).expect("default packs"));
    let values = corpus(20_000);
    let bytes: usize = values.iter().map(|(_, v)| v.len()).sum();
    if let Ok(dir) = std::env::var("REDACTION_DUMP") {
        dump(&dir, &cfg, &values);
        return;
    }
    if let Ok(spec) = std::env::var("REDACTION_FIXED_WORK") {
        fixed_work(&spec, engine, &values);
        return;
    }

    // Both find something in the same values: a check that the comparison is fair.
    let mut scratch = Scratch::default();
    let with_findings = |f: &dyn Fn(&str, &[u8]) -> usize| {
        values
            .iter()
            .filter(|(k, v)| f(k, v.as_bytes()) > 0)
            .count()
    };
    let engine_hits = with_findings(&|k, v| {
        let mut s = Scratch::default();
        engine.scan(Some(k), v, &mut s).expect("fits");
        s.findings().len()
    });
    let baseline_hits = with_findings(&|k, v| baseline.findings(k, v));
    // The batch API finds exactly what scanning each value alone finds.
    let mut batched_hits = 0;
    for chunk in values.chunks(BATCH) {
        engine.scan_many(
            chunk.iter().map(|(k, v)| (Some(*k), v.as_bytes())),
            &mut scratch,
        );
        let results: Vec<(usize, Vec<_>)> = scratch
            .batch_results()
            .map(|(i, f)| (i, f.expect("fits").to_vec()))
            .collect();
        for (i, (k, v)) in chunk.iter().enumerate() {
            let mut s = Scratch::default();
            engine.scan(Some(k), v.as_bytes(), &mut s).expect("fits");
            let batched = results.iter().find(|(j, _)| *j == i).map(|(_, f)| &f[..]);
            assert_eq!(batched.unwrap_or(&[]), s.findings(), "{k}={v}");
        }
        batched_hits += results.len();
    }
    eprintln!(
        "corpus: {} values, {bytes} bytes (mean {:.0} B); values with findings: engine {engine_hits}, \
         engine batched {batched_hits}, baseline {baseline_hits}",
        values.len(),
        bytes as f64 / values.len() as f64
    );

    let mut g = c.benchmark_group("redaction");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function(BenchmarkId::new("engine", "default_packs"), |b| {
        b.iter_custom(|iters| cpu_time(iters, || scan_each(engine, &values, &mut scratch)))
    });
    let mut found = Vec::new();
    g.bench_function(BenchmarkId::new("engine", "default_packs_batched"), |b| {
        b.iter_custom(|iters| {
            cpu_time(iters, || {
                scan_batched(engine, &values, &mut scratch, &mut found)
            })
        })
    });
    g.finish();

    // The fast path alone: the corpus's values with fewer than 6 digits and nothing to redact, where no
    // rule passes its prefilter.
    let plain: Vec<&(&str, String)> = values
        .iter()
        .filter(|(_, v)| v.bytes().filter(u8::is_ascii_digit).count() < 6)
        .collect();
    let plain_bytes: usize = plain.iter().map(|(_, v)| v.len()).sum();
    let mut g = c.benchmark_group("redaction");
    g.throughput(Throughput::Bytes(plain_bytes as u64));
    g.bench_function(BenchmarkId::new("engine", "values_with_few_digits"), |b| {
        b.iter_custom(|iters| {
            cpu_time(iters, || {
                let mut n = 0;
                for (k, v) in &plain {
                    engine
                        .scan(Some(k), v.as_bytes(), &mut scratch)
                        .expect("fits");
                    n += scratch.findings().len();
                }
                n
            })
        })
    });
    g.bench_function(
        BenchmarkId::new("baseline", "values_with_few_digits"),
        |b| {
            b.iter_custom(|iters| {
                cpu_time(iters, || {
                    plain
                        .iter()
                        .map(|(k, v)| baseline.findings(k, v.as_bytes()))
                        .sum()
                })
            })
        },
    );
    g.finish();

    let mut g = c.benchmark_group("redaction");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function(BenchmarkId::new("baseline", "one_regex_at_a_time"), |b| {
        b.iter_custom(|iters| {
            cpu_time(iters, || {
                values
                    .iter()
                    .map(|(k, v)| baseline.findings(k, v.as_bytes()))
                    .sum()
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
