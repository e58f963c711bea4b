//! The queue against an in-memory model, with proptest choosing the operations (after Vector's disk_v2
//! model tests).
//!
//! [`delivery_matches_model`]: appends, reads and out-of-order acks over 1–3 cursors, with clean restarts
//! and crashes (dropping the queue without closing it; under `SyncPolicy::Always` everything that
//! returned is durable) in between. After every step: every record whose append returned `Stored` is
//! delivered, in order, to every cursor that existed before it; a cursor never sees a record at or below
//! its persisted watermark again, and after a restart sees exactly its un-acknowledged records again;
//! sequences strictly increase across restarts; byte accounting equals the sum of the stored records.
//!
//! [`overflow_matches_model`]: one stream under small limits and a random overflow policy. The model
//! simulates accounting, the watermark hysteresis and each policy exactly; every append's outcome
//! (stored with which sequence, dropped, refused), the pressure flag, the byte total and the dropped
//! counters must match it.
//!
//! `MODEL_DEBUG=1` prints the queue's and the model's accounting after every step of the overflow model.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use outpost_config::Signal;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::{noise, open, options};
use crate::queue::format::encode_record;
use crate::queue::{Appended, Cursor, Overflow, Queue, QueueError, StartAt, Stream};
use crate::telemetry::Telemetry;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn stored_len(items: u32, payload: &[u8]) -> u64 {
    encode_record(Signal::Traces, items, 0, payload)
        .map(|v| v.len() as u64)
        .unwrap_or(0)
}

/// One poll: the records `next_batch` returns right away, or nothing if it would wait.
async fn poll_batch(c: &mut Cursor, max: usize) -> Result<Vec<crate::queue::Record>, QueueError> {
    match tokio::time::timeout(Duration::ZERO, c.next_batch(max)).await {
        Ok(r) => r,
        Err(_) => Ok(Vec::new()),
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append { len: usize, items: u32 },
    Read { cursor: usize, max: usize },
    Ack { cursor: usize, pick: usize },
    Clean,
    Restart,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (1usize..4000, 1u32..100).prop_map(|(len, items)| Op::Append { len, items }),
        4 => (0usize..3, 1usize..5).prop_map(|(cursor, max)| Op::Read { cursor, max }),
        4 => (0usize..3, any::<usize>()).prop_map(|(cursor, pick)| Op::Ack { cursor, pick }),
        1 => Just(Op::Clean),
        1 => Just(Op::Restart),
        1 => Just(Op::Crash),
    ]
}

#[derive(Debug, Default, Clone)]
struct ModelCursor {
    read_pos: u64,
    in_flight: BTreeSet<u64>,
    watermark: u64,
}

impl ModelCursor {
    fn advance(&mut self) {
        self.watermark = self
            .in_flight
            .first()
            .map_or(self.read_pos, |first| first - 1);
    }
}

struct Live {
    queue: Queue,
    stream: Stream,
    cursors: Vec<Cursor>,
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("exporter-{i}")).collect()
}

async fn start(dir: &std::path::Path, t: &Telemetry, ncursors: usize) -> Live {
    let queue = open(options(dir), t);
    let stream = queue.stream("traces").expect("stream");
    let cursors = names(ncursors)
        .iter()
        .map(|n| stream.cursor(n, StartAt::Oldest, None).expect("cursor"))
        .collect();
    Live {
        queue,
        stream,
        cursors,
    }
}

async fn run_delivery(ncursors: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let t = Telemetry::new();
    let mut live = Some(start(dir.path(), &t, ncursors).await);
    // seq -> (payload, items, stored bytes)
    let mut records: BTreeMap<u64, (Vec<u8>, u32, u64)> = BTreeMap::new();
    let mut cursors = vec![ModelCursor::default(); ncursors];
    let mut last_seq = 0u64;
    let mut n = 0u64;

    for op in ops {
        let Some(l) = live.as_mut() else { break };
        match op {
            Op::Append { len, items } => {
                n += 1;
                let payload: Vec<u8> = format!("record {n}; ")
                    .into_bytes()
                    .into_iter()
                    .cycle()
                    .take(len)
                    .collect();
                let r = l.stream.append(Signal::Traces, items, &payload).await;
                let Ok(Appended::Stored { seq }) = r else {
                    return Err(TestCaseError::fail(format!("append: {r:?}")));
                };
                prop_assert!(seq > last_seq, "sequence {seq} after {last_seq}");
                last_seq = seq;
                let size = stored_len(items, &payload);
                records.insert(seq, (payload, items, size));
            }
            Op::Read { cursor, max } => {
                let i = cursor % ncursors;
                let m = &mut cursors[i];
                let expected: Vec<u64> = records
                    .range(m.read_pos + 1..)
                    .take(max)
                    .map(|(s, _)| *s)
                    .collect();
                let got = poll_batch(&mut l.cursors[i], max)
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let seqs: Vec<u64> = got.iter().map(|r| r.seq).collect();
                prop_assert_eq!(&seqs, &expected, "cursor {} read", i);
                for r in &got {
                    prop_assert!(
                        r.seq > m.watermark,
                        "re-delivered {} at or below watermark {}",
                        r.seq,
                        m.watermark
                    );
                    let (payload, items, _) = &records[&r.seq];
                    prop_assert_eq!(&r.payload[..], &payload[..]);
                    prop_assert_eq!(r.items, *items);
                    m.in_flight.insert(r.seq);
                    m.read_pos = r.seq;
                }
            }
            Op::Ack { cursor, pick } => {
                let i = cursor % ncursors;
                let m = &mut cursors[i];
                if m.in_flight.is_empty() {
                    continue;
                }
                let Some(&seq) = m.in_flight.iter().nth(pick % m.in_flight.len()) else {
                    continue;
                };
                l.cursors[i]
                    .ack(seq)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                m.in_flight.remove(&seq);
                m.advance();
                prop_assert_eq!(
                    l.cursors[i].watermark(),
                    m.watermark,
                    "watermark of cursor {}",
                    i
                );
            }
            Op::Clean => {
                l.queue
                    .run_maintenance()
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let min = cursors.iter().map(|c| c.watermark).min().unwrap_or(0);
                records.retain(|s, _| *s > min);
                let st = l.queue.stats();
                let bytes: u64 = records.values().map(|r| r.2).sum();
                prop_assert_eq!(st.bytes, bytes, "byte accounting");
                prop_assert_eq!(st.records, records.len() as u64);
            }
            Op::Restart | Op::Crash => {
                let Some(l) = live.take() else { break };
                let Live {
                    queue,
                    stream,
                    cursors: cs,
                } = l;
                drop(cs);
                drop(stream);
                if matches!(op, Op::Restart) {
                    queue.close().await;
                } else {
                    drop(queue);
                }
                let l = start(dir.path(), &t, ncursors).await;
                // Accounting is rebuilt from the index: everything not yet deleted.
                let st = l.queue.stats();
                let bytes: u64 = records.values().map(|r| r.2).sum();
                prop_assert_eq!(st.bytes, bytes, "byte accounting after reopen");
                for m in &mut cursors {
                    m.in_flight.clear();
                    m.read_pos = m.watermark;
                }
                live = Some(l);
            }
        }
    }
    // Finally every cursor drains everything past its watermark: nothing stored was lost.
    if let Some(mut l) = live {
        for (i, m) in cursors.iter_mut().enumerate() {
            let expected: Vec<u64> = records.range(m.read_pos + 1..).map(|(s, _)| *s).collect();
            let mut got = Vec::new();
            loop {
                let batch = poll_batch(&mut l.cursors[i], 16)
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                if batch.is_empty() {
                    break;
                }
                got.extend(batch.iter().map(|r| r.seq));
            }
            prop_assert_eq!(got, expected, "cursor {} drain", i);
        }
        l.queue.close().await;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn delivery_matches_model(ncursors in 1usize..=3, ops in prop::collection::vec(op(), 1..60)) {
        runtime().block_on(run_delivery(ncursors, ops))?;
    }
}

#[derive(Debug, Clone)]
enum OverflowOp {
    Append { len: usize, items: u32 },
    DeliverAll,
    Clean,
}

fn overflow_op() -> impl Strategy<Value = OverflowOp> {
    prop_oneof![
        6 => (200usize..3000, 1u32..10).prop_map(|(len, items)| OverflowOp::Append { len, items }),
        1 => Just(OverflowOp::DeliverAll),
        1 => Just(OverflowOp::Clean),
    ]
}

const MAX: u64 = 20_000;
const HIGH: u64 = 12_000;
const LOW: u64 = 6_000;

#[derive(Default)]
struct OverflowModel {
    /// seq -> (stored bytes, items)
    records: BTreeMap<u64, (u64, u32)>,
    total: u64,
    pressure: bool,
    next_seq: u64,
    read_pos: u64,
    watermark: u64,
    drop_newest: u64,
    drop_oldest: u64,
}

impl OverflowModel {
    fn update_pressure(&mut self) {
        if self.total > HIGH {
            self.pressure = true;
        } else if self.total < LOW {
            self.pressure = false;
        }
    }

    fn store(&mut self, size: u64, items: u32) -> Appended {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.records.insert(seq, (size, items));
        self.total += size;
        self.update_pressure();
        Appended::Stored { seq }
    }

    fn append(&mut self, policy: Overflow, size: u64, items: u32) -> Result<Appended, QueueError> {
        if !self.pressure && self.total + size <= MAX {
            return Ok(self.store(size, items));
        }
        match policy {
            Overflow::Block => Err(QueueError::Full),
            Overflow::DropNewest => {
                self.drop_newest += u64::from(items);
                Ok(Appended::Dropped { items })
            }
            Overflow::DropOldest => {
                let sizes: Vec<(u64, u64, u32)> = self
                    .records
                    .iter()
                    .map(|(s, (b, i))| (*s, *b, *i))
                    .collect();
                let need = |target: u64| {
                    let mut freed = 0;
                    for n in 0..=sizes.len() {
                        if self.total.saturating_sub(freed) + size <= target {
                            return Some(n);
                        }
                        if let Some(e) = sizes.get(n) {
                            freed += e.1;
                        }
                    }
                    None
                };
                let target = if self.pressure { HIGH } else { MAX };
                let Some(n) = need(target).or_else(|| need(MAX)) else {
                    self.drop_newest += u64::from(items);
                    return Ok(Appended::Dropped { items });
                };
                for &(seq, bytes, its) in &sizes[..n] {
                    if seq > self.watermark {
                        self.drop_oldest += u64::from(its);
                    }
                    self.records.remove(&seq);
                    self.total -= bytes;
                }
                if n > 0 {
                    let upto = sizes[n - 1].0;
                    self.watermark = self.watermark.max(upto);
                    self.read_pos = self.read_pos.max(upto);
                }
                Ok(self.store(size, items))
            }
        }
    }
}

async fn run_overflow(policy: Overflow, ops: Vec<OverflowOp>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let t = Telemetry::new();
    let mut o = options(dir.path());
    o.max_size = MAX;
    o.high_watermark = HIGH;
    o.low_watermark = LOW;
    o.overflow = policy;
    let q = open(o, &t);
    let s = q
        .stream("s")
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut c = s
        .cursor("e", StartAt::Oldest, None)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut m = OverflowModel {
        next_seq: 1,
        ..OverflowModel::default()
    };
    for (n, op) in ops.into_iter().enumerate() {
        match &op {
            OverflowOp::Append { len, items } => {
                let (len, items) = (*len, *items);
                let payload = noise(len, n as u64);
                let size = stored_len(items, &payload);
                let expected = m.append(policy, size, items);
                let got = s.append(Signal::Traces, items, &payload).await;
                prop_assert_eq!(got, expected, "append #{}", n);
            }
            OverflowOp::DeliverAll => {
                let expected: Vec<u64> =
                    m.records.range(m.read_pos + 1..).map(|(s, _)| *s).collect();
                let mut got = Vec::new();
                loop {
                    let batch = poll_batch(&mut c, 64)
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    if batch.is_empty() {
                        break;
                    }
                    for r in batch {
                        got.push(r.seq);
                        c.ack(r.seq)
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    }
                }
                prop_assert_eq!(&got, &expected);
                if let Some(&last) = got.last() {
                    m.read_pos = last;
                    m.watermark = last;
                }
            }
            OverflowOp::Clean => {}
        }
        if matches!(op, OverflowOp::DeliverAll | OverflowOp::Clean) {
            // An ack under pressure wakes the maintenance task by itself; settle it so the model knows.
            q.run_maintenance()
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let w = m.watermark;
            let gone: Vec<u64> = m.records.range(..=w).map(|(s, _)| *s).collect();
            for seq in gone {
                if let Some((b, _)) = m.records.remove(&seq) {
                    m.total -= b;
                }
            }
            m.update_pressure();
        }
        let st = q.stats();
        if std::env::var_os("MODEL_DEBUG").is_some() {
            eprintln!(
                "op #{n}: real {st:?} model total {} pressure {}",
                m.total, m.pressure
            );
        }
        prop_assert_eq!(st.bytes, m.total, "bytes after op #{}", n);
        prop_assert_eq!(st.records, m.records.len() as u64);
        prop_assert_eq!(st.pressure, m.pressure, "pressure after op #{}", n);
        prop_assert!(st.bytes <= MAX, "never above max_size");
    }
    let sm = t.queue().stream("s");
    prop_assert_eq!(sm.dropped_total("drop_newest"), m.drop_newest);
    prop_assert_eq!(sm.dropped_total("drop_oldest"), m.drop_oldest);
    q.close().await;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn overflow_matches_model(
        policy in prop_oneof![Just(Overflow::Block), Just(Overflow::DropNewest), Just(Overflow::DropOldest)],
        ops in prop::collection::vec(overflow_op(), 1..80),
    ) {
        runtime().block_on(run_overflow(policy, ops))?;
    }
}
