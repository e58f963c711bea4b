//! Processor `tail_sampling`: holds every trace's spans until the trace is decided, then keeps or drops
//! the whole trace by policy, with the OpenTelemetry Collector's configuration.
//!
//! Guarantees:
//! - A trace is decided `decision_wait` after its first span arrived, or `decision_wait_after_root_received`
//!   after its root span (no parent) arrived if that is sooner. Spans arriving after the decision follow
//!   it: while the trace is still in the trace table (the last `num_traces` traces), or in the
//!   `decision_cache` (kept and dropped trace ids, each bounded, oldest forgotten first).
//! - Memory is bounded in bytes: held spans never occupy more than `max_memory` after a request is taken
//!   in (during one, by at most one fragment more). Reaching it decides the oldest pending traces early,
//!   and `num_traces` does the same to the oldest trace; both are counted
//!   (`outpost_tail_sampling_early_decisions_total{reason}`). Receivers are never blocked by this
//!   processor and nothing is dropped for lack of room without a decision.
//! - Held spans are stored compactly ([`store`]): interned resource/scope, no trace id, zstd with a
//!   trained dictionary.
//! - Policies decide on a summary of each trace taken as its spans arrive (span count, encoded size,
//!   earliest start and latest end, and one bit per span condition the policies name: status code,
//!   attribute values, trace state — see [`policy::Predicate`]). So a decision never decodes a held
//!   span: a dropped trace's fragments are freed as they are.
//! - A held span is encoded once, and that encoding is what reaches the queue: a kept trace's fragments
//!   are decompressed and their span encodings framed into an export request ([`Batch::from_encoded`]),
//!   never decoded and encoded again. The encoding replaces the one the queue seam would have made, so
//!   holding a span costs the pass-through path's work plus compressing it with the dictionary.
//! - A kept span carries the attribute [`POLICY_ATTRIBUTE`] naming the policy that kept its trace.
//! - Every dropped span is counted by the chain's runner (`not_sampled`, `invalid_trace_id`).
//!
//! Acknowledgement: like the Collector's processor, a client is answered once its spans are held here,
//! not when a decision is made (which may be 30 s later, longer than an SDK's export timeout). From then
//! on the spans are this processor's responsibility: on shutdown every pending trace is decided at once
//! (counted as an early decision, reason `shutdown`) and what is kept is queued; a crash loses what was
//! held in memory, the price of sampling on whole traces. Spans that pass straight through (late spans
//! of a kept trace) keep their client's acknowledgement until they are queued, as everywhere else.

pub mod gen;
mod policy;
mod store;

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use outpost_config::TailSamplingConfig;
use prost::encoding::{encode_varint, encoded_len_varint};
use prost::Message;

use crate::batch::Batch;
use crate::processor::{Emit, Processor};
use crate::signal::Traces;
use crate::telemetry::TailSamplingMetrics;

pub use policy::Verdict;
use policy::{combine, Policy, Predicate, Summary, TraceView};
use store::{Codec, Fragment, Group, GroupKey, Groups};

/// The span attribute naming the policy that kept the span's trace.
pub const POLICY_ATTRIBUTE: &str = "tailsampling.policy";

/// What one pending trace costs besides its fragments: its table entry (with the trace's summary),
/// deque entries, the fragment list's allocation. Set from the tail_sampling bench's counting allocator,
/// so that `max_memory` bounds the real heap: with 300 here the bench's heap growth was 111 B/span
/// against 91 B/span accounted, at 5.5 spans per trace, so 110 bytes a trace were missing.
const TRACE_OVERHEAD: usize = 420;

type TraceId = [u8; 16];

/// Hashes trace ids with xxh3 under a seed drawn per processor: a trace id is 16 bytes a client chose,
/// so the hash must not be predictable (SipHash's reason), but SipHash costs several times more per id
/// on the busiest maps here, consulted for every span.
#[derive(Clone, Copy)]
struct IdHash(u64);

impl IdHash {
    fn new() -> Self {
        Self(std::collections::hash_map::RandomState::new().hash_one(0u64))
    }
}

impl BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(self.0)
    }
}

struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }
    /// The length a slice hashes in front of itself: always 16 here.
    fn write_usize(&mut self, n: usize) {
        self.0 ^= n as u64;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type IdMap<V> = HashMap<TraceId, V, IdHash>;

/// Why a trace was decided before its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyReason {
    MaxMemory,
    NumTraces,
    Shutdown,
}

impl EarlyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EarlyReason::MaxMemory => "max_memory",
            EarlyReason::NumTraces => "num_traces",
            EarlyReason::Shutdown => "shutdown",
        }
    }
}

/// Counts kept by the processor itself, for tests and benches (the same events go to `/metrics`).
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub traces_sampled: u64,
    pub traces_not_sampled: u64,
    /// Final decisions by deciding policy (`""` when no policy matched).
    pub by_policy: HashMap<String, (u64, u64)>,
    pub early: HashMap<&'static str, u64>,
    pub late_spans_sampled: u64,
    pub late_spans_not_sampled: u64,
    /// The most `held_bytes` ever reached after taking in a fragment and making room.
    pub peak_held_bytes: usize,
    /// Held spans taken out of their fragments again: those of kept traces only.
    pub spans_unpacked: u64,
}

struct Pending {
    gen: u64,
    frags: Vec<Fragment>,
    /// What the policies decide on, taken from the spans as they arrived.
    summary: Summary,
    cost: usize,
    root_seen: bool,
}

enum State {
    Pending(Pending),
    /// `policy`: index of the deciding policy, if one decided.
    Decided {
        gen: u64,
        keep: bool,
        policy: Option<u16>,
    },
}

impl State {
    fn gen(&self) -> u64 {
        match self {
            State::Pending(p) => p.gen,
            State::Decided { gen, .. } => *gen,
        }
    }
}

/// A bounded set of remembered decisions; the oldest is forgotten first.
struct DecisionCache {
    cap: usize,
    map: IdMap<Option<u16>>,
    fifo: VecDeque<TraceId>,
}

impl DecisionCache {
    fn new(cap: usize, hash: IdHash) -> Self {
        Self {
            cap,
            map: HashMap::with_hasher(hash),
            fifo: VecDeque::new(),
        }
    }
    fn insert(&mut self, id: TraceId, policy: Option<u16>) {
        if self.cap == 0 {
            return;
        }
        if self.map.insert(id, policy).is_none() {
            self.fifo.push_back(id);
            if self.fifo.len() > self.cap {
                if let Some(old) = self.fifo.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }
    fn get(&self, id: &TraceId) -> Option<Option<u16>> {
        self.map.get(id).copied()
    }
}

/// Buffers of the per-request work, reused from one request to the next.
struct Scratch {
    /// Per span of the scope at hand: its index in `traces`, or `u32::MAX` for an invalid trace id.
    slot: Vec<u32>,
    /// The scope's traces in order of first appearance: id, start in `order`, span count.
    traces: Vec<(TraceId, u32, u32)>,
    /// Span indexes grouped by trace, in arrival order within a trace.
    order: Vec<u32>,
    where_: IdMap<usize>,
    key: GroupKey,
}

impl Scratch {
    fn new(hash: IdHash) -> Self {
        Self {
            slot: Vec::new(),
            traces: Vec::new(),
            order: Vec::new(),
            where_: HashMap::with_hasher(hash),
            key: GroupKey::default(),
        }
    }

    /// Groups `spans` by trace into `traces` and `order` without moving them; returns how many have
    /// an invalid trace id (those are left out).
    fn group_by_trace(&mut self, spans: &[Span]) -> usize {
        self.slot.clear();
        self.traces.clear();
        self.where_.clear();
        let mut invalid = 0;
        for span in spans {
            let Ok(id) = <TraceId>::try_from(span.trace_id.as_slice()) else {
                invalid += 1;
                self.slot.push(u32::MAX);
                continue;
            };
            // A trace's spans are usually adjacent: try the previous one's before hashing.
            let t = match self.traces.last() {
                Some((last, _, _)) if *last == id => self.traces.len() - 1,
                _ => *self.where_.entry(id).or_insert_with(|| {
                    self.traces.push((id, 0, 0));
                    self.traces.len() - 1
                }),
            };
            self.traces[t].2 += 1;
            self.slot.push(t as u32);
        }
        // A counting sort: each trace's start, then its spans' indexes in arrival order.
        let mut at = 0;
        for t in &mut self.traces {
            t.1 = at;
            at += t.2;
            t.2 = 0;
        }
        self.order.clear();
        self.order.resize(at as usize, 0);
        for (k, &t) in self.slot.iter().enumerate() {
            if let Some(e) = self.traces.get_mut(t as usize) {
                self.order[(e.1 + e.2) as usize] = k as u32;
                e.2 += 1;
            }
        }
        invalid
    }
}

/// Kept spans gathered into one encoded payload (an export request's encoding), grouped under their
/// resource and scope.
#[derive(Default)]
struct Kept {
    groups: Vec<KeptGroup>,
    /// Group id → indexes into `groups` holding that group (checked for equality, since a group id can
    /// be reused once its last span is let go).
    index: HashMap<u32, Vec<usize>>,
    spans: usize,
    /// Emptied span buffers of earlier takes, so a steady flow of kept traces does not grow new ones.
    pool: Vec<Vec<u8>>,
}

/// A span buffer larger than this is freed after a take rather than kept in [`Kept::pool`].
const KEPT_POOL_MAX_CAPACITY: usize = 1 << 20;

struct KeptGroup {
    rs_head: Vec<u8>,
    ss_head: Vec<u8>,
    /// `ScopeSpans.spans` entries: tag, length, span.
    spans: Vec<u8>,
}

/// Tags of the length-delimited fields written here: `ExportTraceServiceRequest.resource_spans` (1),
/// `ResourceSpans.scope_spans` (2), `ScopeSpans.spans` (2), `Span.trace_id` (1), `Span.attributes` (9).
const TAG_RESOURCE_SPANS: u8 = 1 << 3 | 2;
const TAG_SCOPE_SPANS: u8 = 2 << 3 | 2;
const TAG_SPAN: u8 = 2 << 3 | 2;
const TAG_TRACE_ID: u8 = 1 << 3 | 2;
const TAG_ATTRIBUTE: u8 = 9 << 3 | 2;

impl Kept {
    /// The group to put spans of group `gid` with these heads under.
    fn slot(&mut self, gid: u32, rs_head: &[u8], ss_head: &[u8]) -> usize {
        let slots = self.index.entry(gid).or_default();
        if let Some(i) = slots.iter().copied().find(|&i| {
            let g = &self.groups[i];
            g.rs_head == rs_head && g.ss_head == ss_head
        }) {
            return i;
        }
        self.groups.push(KeptGroup {
            rs_head: rs_head.to_vec(),
            ss_head: ss_head.to_vec(),
            spans: self.pool.pop().unwrap_or_default(),
        });
        let i = self.groups.len() - 1;
        slots.push(i);
        i
    }

    /// Appends a held span's encoding (`span`, without trace id) to group `slot`, with its trace id and
    /// `attr`, the encoded policy attribute, as trailing fields.
    fn push(&mut self, slot: usize, span: &[u8], id: &TraceId, attr: &[u8]) {
        let out = &mut self.groups[slot].spans;
        let len = span.len() + 2 + id.len() + attr.len();
        out.reserve(1 + encoded_len_varint(len as u64) + len);
        out.push(TAG_SPAN);
        encode_varint(len as u64, out);
        out.extend_from_slice(span);
        out.push(TAG_TRACE_ID);
        out.push(id.len() as u8);
        out.extend_from_slice(id);
        out.extend_from_slice(attr);
        self.spans += 1;
    }

    /// The export request's encoding and its span count; empties `self`.
    fn take(&mut self) -> (Vec<u8>, usize) {
        let sizes: Vec<(usize, usize)> = self
            .groups
            .iter()
            .map(|g| {
                let ss = g.ss_head.len() + g.spans.len();
                let rs = g.rs_head.len() + 1 + encoded_len_varint(ss as u64) + ss;
                (rs, ss)
            })
            .collect();
        let total: usize = sizes
            .iter()
            .map(|&(rs, _)| 1 + encoded_len_varint(rs as u64) + rs)
            .sum();
        let mut out = Vec::with_capacity(total);
        for (g, (rs, ss)) in self.groups.iter().zip(sizes) {
            out.push(TAG_RESOURCE_SPANS);
            encode_varint(rs as u64, &mut out);
            out.extend_from_slice(&g.rs_head);
            out.push(TAG_SCOPE_SPANS);
            encode_varint(ss as u64, &mut out);
            out.extend_from_slice(&g.ss_head);
            out.extend_from_slice(&g.spans);
        }
        let spans = self.spans;
        self.spans = 0;
        self.index.clear();
        for g in self.groups.drain(..) {
            let mut buf = g.spans;
            if buf.capacity() <= KEPT_POOL_MAX_CAPACITY {
                buf.clear();
                self.pool.push(buf);
            }
        }
        (out, spans)
    }
}

/// The encoding of a `Span.attributes` entry naming `policy` as the one that kept the span.
fn policy_attribute(policy: &str) -> Vec<u8> {
    let kv = KeyValue {
        key: POLICY_ATTRIBUTE.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(policy.to_owned())),
        }),
        ..Default::default()
    };
    let mut out = vec![TAG_ATTRIBUTE];
    kv.encode_length_delimited(&mut out)
        .expect("a Vec grows as needed");
    out
}

pub struct TailSampling {
    policies: Vec<Policy>,
    /// The span conditions the policies name, checked on every span as it arrives.
    predicates: Vec<Predicate>,
    decision_wait: Duration,
    after_root: Option<Duration>,
    num_traces: usize,
    max_memory: usize,
    traces: IdMap<State>,
    /// Every trace in `traces`, oldest first, with its generation.
    order: VecDeque<(TraceId, u64)>,
    /// Pending traces by `decision_wait` deadline (= arrival order, so also the oldest first).
    waits: VecDeque<(Instant, TraceId, u64)>,
    root_waits: VecDeque<(Instant, TraceId, u64)>,
    sampled_cache: DecisionCache,
    non_sampled_cache: DecisionCache,
    groups: Groups,
    codec: Codec,
    held_bytes: usize,
    held_traces: usize,
    next_gen: u64,
    kept: Kept,
    scratch: Option<Scratch>,
    /// [`policy_attribute`] of every policy by index, and last of none (`""`).
    policy_attrs: Vec<Vec<u8>>,
    /// The hasher of the trace maps, also for the per-request grouping of spans by trace.
    id_hash: IdHash,
    stats: Stats,
    metrics: TailSamplingMetrics,
}

impl TailSampling {
    /// Builds the processor; fails only on a policy that validation would have refused.
    pub fn new(cfg: &TailSamplingConfig, metrics: TailSamplingMetrics) -> Result<Self, String> {
        let mut predicates = Vec::new();
        let policies = cfg
            .policies
            .iter()
            .map(|p| policy::build(p, &mut predicates))
            .collect::<Result<Vec<_>, _>>()?;
        let capacity = (cfg.expected_new_traces_per_sec as usize)
            .saturating_mul(cfg.decision_wait.get().as_secs().max(1) as usize)
            .min(cfg.num_traces as usize)
            .min(1 << 20);
        let id_hash = IdHash::new();
        let policy_attrs = policies
            .iter()
            .map(|p| policy_attribute(&p.name))
            .chain(std::iter::once(policy_attribute("")))
            .collect();
        Ok(Self {
            policies,
            predicates,
            decision_wait: cfg.decision_wait.get(),
            after_root: cfg.decision_wait_after_root_received.map(|d| d.get()),
            num_traces: cfg.num_traces.max(1) as usize,
            max_memory: cfg.max_memory.bytes() as usize,
            traces: HashMap::with_capacity_and_hasher(capacity, id_hash),
            order: VecDeque::new(),
            waits: VecDeque::new(),
            root_waits: VecDeque::new(),
            sampled_cache: DecisionCache::new(cfg.decision_cache.sampled_cache_size, id_hash),
            non_sampled_cache: DecisionCache::new(
                cfg.decision_cache.non_sampled_cache_size,
                id_hash,
            ),
            groups: Groups::default(),
            codec: Codec::default(),
            held_bytes: 0,
            held_traces: 0,
            next_gen: 0,
            kept: Kept::default(),
            scratch: None,
            policy_attrs,
            id_hash,
            stats: Stats::default(),
            metrics,
        })
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Heap bytes of held spans (fragments, per-trace bookkeeping and interned resources/scopes).
    pub fn held_bytes(&self) -> usize {
        self.held_bytes + self.groups.bytes()
    }

    pub fn held_traces(&self) -> usize {
        self.held_traces
    }

    /// Whether held spans are compressed yet (the dictionary is trained on the first ~256 KiB).
    pub fn compressing(&self) -> bool {
        self.codec.trained()
    }

    /// [`Processor::process`] at a given time (tests and benches drive the clock).
    pub fn process_at(&mut self, mut batch: Batch<Traces>, now: Instant, out: &mut Emit<Traces>) {
        let data = std::mem::take(&mut batch.data);
        let mut passthrough = Traces::default();
        let mut invalid = 0usize;
        let mut late_dropped = 0usize;
        let mut scratch = self
            .scratch
            .take()
            .unwrap_or_else(|| Scratch::new(self.id_hash));
        for rs in data.resource_spans {
            let ResourceSpans {
                resource,
                scope_spans,
                schema_url: resource_schema_url,
            } = rs;
            for ss in scope_spans {
                let ScopeSpans {
                    scope,
                    mut spans,
                    schema_url: scope_schema_url,
                } = ss;
                let group = Group {
                    resource: resource.as_ref(),
                    resource_schema_url: &resource_schema_url,
                    scope: scope.as_ref(),
                    scope_schema_url: &scope_schema_url,
                };
                // Keyed only if some span of the scope is held.
                let mut keyed = false;
                invalid += scratch.group_by_trace(&spans);
                let mut pass_spans = Vec::new();
                for &(id, start, len) in &scratch.traces {
                    let idx = &scratch.order[start as usize..(start + len) as usize];
                    match self.settled(&id) {
                        Some((true, policy)) => {
                            self.late(true, idx.len());
                            let name = self.policy_name(policy);
                            for &k in idx {
                                let mut s = std::mem::take(&mut spans[k as usize]);
                                mark(&mut s, name);
                                pass_spans.push(s);
                            }
                        }
                        Some((false, _)) => {
                            self.late(false, idx.len());
                            late_dropped += idx.len();
                        }
                        None => {
                            if !keyed {
                                scratch.key.set(&group);
                                keyed = true;
                            }
                            self.hold(id, &group, &scratch.key, (&mut spans, idx), now, out)
                        }
                    }
                }
                if !pass_spans.is_empty() {
                    passthrough.resource_spans.push(ResourceSpans {
                        resource: resource.clone(),
                        schema_url: resource_schema_url.clone(),
                        scope_spans: vec![ScopeSpans {
                            scope,
                            schema_url: scope_schema_url,
                            spans: pass_spans,
                        }],
                    });
                }
            }
        }
        self.scratch = Some(scratch);
        out.dropped("invalid_trace_id", invalid);
        out.dropped("not_sampled", late_dropped);
        self.flush_kept(out);
        // The client's request: what passes straight through keeps its acknowledgement until queued; the
        // held rest is ours now (see the module docs).
        batch.data = passthrough;
        if batch.item_count() > 0 {
            out.push(batch);
        } else {
            batch.discard();
        }
        self.publish();
    }

    /// The decision already made for `id`, if any: (kept, deciding policy).
    fn settled(&self, id: &TraceId) -> Option<(bool, Option<u16>)> {
        match self.traces.get(id) {
            Some(State::Decided { keep, policy, .. }) => Some((*keep, *policy)),
            Some(State::Pending(_)) => None,
            None => {
                if let Some(p) = self.sampled_cache.get(id) {
                    Some((true, p))
                } else {
                    self.non_sampled_cache.get(id).map(|p| (false, p))
                }
            }
        }
    }

    fn policy_name(&self, policy: Option<u16>) -> &str {
        policy
            .and_then(|i| self.policies.get(usize::from(i)))
            .map_or("", |p| p.name.as_str())
    }

    fn late(&mut self, keep: bool, n: usize) {
        if keep {
            self.stats.late_spans_sampled += n as u64;
        } else {
            self.stats.late_spans_not_sampled += n as u64;
        }
        self.metrics.late_spans(keep, n);
    }

    /// Adds the spans of trace `id` (those of `spans.0` at the indexes `spans.1`) to what is held, then
    /// makes room if that went over a bound.
    fn hold(
        &mut self,
        id: TraceId,
        group: &Group<'_>,
        key: &GroupKey,
        (spans, idx): (&mut [Span], &[u32]),
        now: Instant,
        out: &mut Emit<Traces>,
    ) {
        let gid = self
            .groups
            .intern(group, key, idx.len() as u64, &self.predicates);
        let mut summary = Summary::default();
        if let Some(hits) = self.groups.hits(gid) {
            summary.hits.union(hits);
        }
        let mut root = false;
        self.codec.begin(gid);
        for &k in idx {
            let s = &mut spans[k as usize];
            root |= s.parent_span_id.is_empty();
            s.trace_id.clear();
            // A policy attribute the span came with is replaced by ours when the trace is kept, so it
            // is not stored; the policies still see the span as sent.
            let stripped = strip_policy_attribute(s);
            let len = self.codec.push(s);
            let stripped_len: usize = stripped
                .iter()
                .map(|kv| 1 + encoded_len_varint(kv.encoded_len() as u64) + kv.encoded_len())
                .sum();
            s.attributes.extend(stripped);
            // 16 trace-id bytes with their tag and length, and the span's own tag, were part of the
            // span as sent.
            summary.add(s, (len + stripped_len + 1 + 18) as u64, &self.predicates);
        }
        let frag = self.codec.finish();
        let cost = frag.cost();
        if !self.traces.contains_key(&id) {
            self.make_room_for_trace(out);
            let gen = self.next_gen;
            self.next_gen += 1;
            self.traces.insert(
                id,
                State::Pending(Pending {
                    gen,
                    frags: Vec::new(),
                    summary: Summary::default(),
                    cost: TRACE_OVERHEAD,
                    root_seen: false,
                }),
            );
            self.order.push_back((id, gen));
            self.waits.push_back((now + self.decision_wait, id, gen));
            self.held_bytes += TRACE_OVERHEAD;
            self.held_traces += 1;
        }
        let Some(State::Pending(p)) = self.traces.get_mut(&id) else {
            unreachable!("a trace without a decision is pending");
        };
        p.frags.push(frag);
        p.summary.merge(&summary);
        p.cost += cost;
        self.held_bytes += cost;
        if root && !p.root_seen {
            p.root_seen = true;
            if let Some(wait) = self.after_root {
                self.root_waits.push_back((now + wait, id, p.gen));
            }
        }
        while self.held_bytes() > self.max_memory {
            if !self.decide_oldest(EarlyReason::MaxMemory, now, out) {
                break;
            }
        }
        self.stats.peak_held_bytes = self.stats.peak_held_bytes.max(self.held_bytes());
    }

    /// Lets go of the oldest traces until a new one fits under `num_traces`.
    fn make_room_for_trace(&mut self, out: &mut Emit<Traces>) {
        while self.traces.len() >= self.num_traces {
            let Some((id, gen)) = self.order.pop_front() else {
                break;
            };
            match self.traces.get(&id) {
                Some(s) if s.gen() == gen => {}
                _ => continue,
            }
            if matches!(self.traces.get(&id), Some(State::Pending(_))) {
                self.decide(id, Some(EarlyReason::NumTraces), Instant::now(), out);
            }
            self.traces.remove(&id);
        }
    }

    /// Decides the oldest pending trace early. False when nothing is pending.
    fn decide_oldest(&mut self, reason: EarlyReason, now: Instant, out: &mut Emit<Traces>) -> bool {
        while let Some((_, id, gen)) = self.waits.pop_front() {
            if matches!(self.traces.get(&id), Some(State::Pending(p)) if p.gen == gen) {
                self.decide(id, Some(reason), now, out);
                return true;
            }
        }
        false
    }

    /// Decides trace `id` (pending): evaluates the policies, gathers its spans into `self.kept` or counts
    /// them dropped, and remembers the decision.
    fn decide(
        &mut self,
        id: TraceId,
        early: Option<EarlyReason>,
        now: Instant,
        out: &mut Emit<Traces>,
    ) {
        let Some(State::Pending(p)) = self.traces.remove(&id) else {
            return;
        };
        self.held_bytes -= p.cost;
        self.held_traces -= 1;
        let view = TraceView {
            trace_id: &id,
            summary: &p.summary,
        };
        let mut verdicts = Vec::with_capacity(self.policies.len());
        for (i, pol) in self.policies.iter_mut().enumerate() {
            let v = pol.evaluate(&view, now);
            self.metrics.policy_verdict(i, v.samples());
            verdicts.push(v);
        }
        let (keep, by_index) = combine(&verdicts);
        let by_name = by_index.map_or("", |i| self.policies[i].name.as_str());
        self.metrics.trace_decided(by_index, keep);
        let entry = match self.stats.by_policy.get_mut(by_name) {
            Some(e) => e,
            None => self.stats.by_policy.entry(by_name.to_owned()).or_default(),
        };
        if keep {
            self.stats.traces_sampled += 1;
            entry.0 += 1;
        } else {
            self.stats.traces_not_sampled += 1;
            entry.1 += 1;
        }
        if let Some(reason) = early {
            *self.stats.early.entry(reason.as_str()).or_default() += 1;
            self.metrics.early_decision(reason.as_str());
        }
        if keep {
            // Kept spans leave in the encoding they were held in; a dropped trace's fragments are freed
            // as they are.
            let attr = &self.policy_attrs[by_index.unwrap_or(self.policies.len())];
            let before = self.kept.spans;
            for f in &p.frags {
                let Some((rs_head, ss_head)) = self.groups.heads(f.group().0) else {
                    continue;
                };
                let slot = self.kept.slot(f.group().0, rs_head, ss_head);
                let kept = &mut self.kept;
                if let Err(e) = self
                    .codec
                    .unpack(f, |span| kept.push(slot, span, &id, attr))
                {
                    // Our own encoding: only a bug gets here. Count what was lost rather than panic.
                    tracing::error!(error = %e, "tail_sampling: a held fragment did not unpack");
                }
            }
            // Spans handed out before a fragment failed are kept; the rest are counted lost.
            let unpacked = self.kept.spans - before;
            self.stats.spans_unpacked += unpacked as u64;
            out.dropped(
                "internal_error",
                (p.summary.spans as usize).saturating_sub(unpacked),
            );
        } else {
            out.dropped("not_sampled", p.summary.spans as usize);
        }
        for f in &p.frags {
            let (gid, n) = f.group();
            self.groups.release(gid, n);
        }
        let policy = by_index.map(|i| i as u16);
        self.traces.insert(
            id,
            State::Decided {
                gen: p.gen,
                keep,
                policy,
            },
        );
        if keep {
            self.sampled_cache.insert(id, policy);
        } else {
            self.non_sampled_cache.insert(id, policy);
        }
    }

    fn flush_kept(&mut self, out: &mut Emit<Traces>) {
        if self.kept.spans > 0 {
            let (bytes, spans) = self.kept.take();
            out.push(Batch::from_encoded(bytes, spans));
        }
    }

    fn publish(&self) {
        self.metrics.set_held(self.held_bytes(), self.held_traces);
    }

    /// Decides every trace whose time has come at `now`.
    pub fn on_deadline_at(&mut self, now: Instant, out: &mut Emit<Traces>) {
        for root in [false, true] {
            loop {
                let q = if root {
                    &mut self.root_waits
                } else {
                    &mut self.waits
                };
                match q.front() {
                    Some((at, id, gen)) if *at <= now => {
                        let (id, gen) = (*id, *gen);
                        q.pop_front();
                        if matches!(self.traces.get(&id), Some(State::Pending(p)) if p.gen == gen) {
                            self.decide(id, None, now, out);
                        }
                    }
                    _ => break,
                }
            }
        }
        self.flush_kept(out);
        self.publish();
    }
}

/// Takes every attribute named [`POLICY_ATTRIBUTE`] off `span`.
fn strip_policy_attribute(span: &mut Span) -> Vec<KeyValue> {
    if !span.attributes.iter().any(|kv| kv.key == POLICY_ATTRIBUTE) {
        return Vec::new();
    }
    let (ours, rest) = std::mem::take(&mut span.attributes)
        .into_iter()
        .partition(|kv| kv.key == POLICY_ATTRIBUTE);
    span.attributes = rest;
    ours
}

/// Records on a kept span which policy kept it.
fn mark(span: &mut Span, policy: &str) {
    let value = Some(AnyValue {
        value: Some(any_value::Value::StringValue(policy.to_owned())),
    });
    match span
        .attributes
        .iter_mut()
        .find(|kv| kv.key == POLICY_ATTRIBUTE)
    {
        Some(kv) => kv.value = value,
        None => span.attributes.push(KeyValue {
            key: POLICY_ATTRIBUTE.into(),
            value,
            ..Default::default()
        }),
    }
}

impl Processor<Traces> for TailSampling {
    fn process(&mut self, batch: Batch<Traces>, out: &mut Emit<Traces>) {
        self.process_at(batch, Instant::now(), out);
    }

    fn next_deadline(&self) -> Option<Instant> {
        let a = self.waits.front().map(|w| w.0);
        let b = self.root_waits.front().map(|w| w.0);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_deadline(&mut self, now: Instant, out: &mut Emit<Traces>) {
        self.on_deadline_at(now, out);
    }

    fn drain(&mut self, out: &mut Emit<Traces>) {
        let now = Instant::now();
        while self.decide_oldest(EarlyReason::Shutdown, now, out) {}
        self.root_waits.clear();
        self.flush_kept(out);
        self.publish();
    }
}

#[cfg(test)]
mod tests;
