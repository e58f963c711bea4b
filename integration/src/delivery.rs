//! Accounting for delivery guarantees: which spans a client was told were accepted, which arrived at the
//! destination (a `file` exporter's output) and how often, and from the two the losses and duplicates.
//!
//! Spans are identified as [`crate::gen::traces`] builds them: by the request's `seed` attribute and the
//! span's `span.index`, so a test that gives every request its own seed can follow every span.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use crate::otlp_json::{self, Attr, JsonlTail, Signal};

/// (request seed, span index).
pub type SpanKey = (u32, u32);

/// Spans that arrived at a file sink, counted per key; read incrementally.
#[derive(Debug)]
pub struct Arrivals {
    tail: JsonlTail,
    counts: HashMap<SpanKey, u32>,
    total: u64,
    /// Spans without the `seed` / `span.index` attributes.
    unkeyed: u64,
}

impl Arrivals {
    /// Follows the OTLP JSON file at `path` (it may not exist yet).
    pub fn new(path: &Path) -> Arrivals {
        Arrivals {
            tail: JsonlTail::new(path),
            counts: HashMap::new(),
            total: 0,
            unkeyed: 0,
        }
    }

    /// Reads what was written since the last poll; returns how many spans that was.
    pub fn poll(&mut self) -> usize {
        let requests = self.tail.read_new();
        let items = otlp_json::items(Signal::Traces, &requests);
        for item in &items {
            self.total += 1;
            match (item.attr("seed"), item.attr("span.index")) {
                (Some(Attr::Int(seed)), Some(Attr::Int(index))) => {
                    *self
                        .counts
                        .entry((*seed as u32, *index as u32))
                        .or_default() += 1;
                }
                _ => self.unkeyed += 1,
            }
        }
        items.len()
    }

    /// How many times the span `key` arrived.
    pub fn count(&self, key: SpanKey) -> u32 {
        self.counts.get(&key).copied().unwrap_or(0)
    }

    /// Spans arrived, counting every copy.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Distinct spans arrived.
    pub fn distinct(&self) -> usize {
        self.counts.len()
    }

    pub fn unkeyed(&self) -> u64 {
        self.unkeyed
    }

    /// Compares with the requests (seeds of `spans_per_request` spans each) a client saw acknowledged.
    pub fn report(&self, acked: &BTreeSet<u32>, spans_per_request: u32) -> DeliveryReport {
        let mut lost = Vec::new();
        let mut duplicates = 0u64;
        let mut duplicated_spans = 0u64;
        for seed in acked {
            for index in 0..spans_per_request {
                match self.count((*seed, index)) {
                    0 => lost.push((*seed, index)),
                    1 => {}
                    n => {
                        duplicates += u64::from(n - 1);
                        duplicated_spans += 1;
                    }
                }
            }
        }
        let unacked: Vec<&SpanKey> = self
            .counts
            .keys()
            .filter(|(seed, _)| !acked.contains(seed))
            .collect();
        let unacked_copies: u64 = unacked.iter().map(|k| u64::from(self.counts[*k])).sum();
        DeliveryReport {
            acked_spans: acked.len() as u64 * u64::from(spans_per_request),
            lost,
            duplicates,
            duplicated_spans,
            unacked_arrived: unacked.len() as u64,
            unacked_copies,
            total_arrived: self.total,
        }
    }
}

/// See [`Arrivals::report`].
#[derive(Debug, Clone)]
pub struct DeliveryReport {
    /// Spans whose request was acknowledged OK.
    pub acked_spans: u64,
    /// Acknowledged spans that never arrived: each one breaks the promise.
    pub lost: Vec<SpanKey>,
    /// Extra copies of acknowledged spans (at-least-once allows them).
    pub duplicates: u64,
    /// Acknowledged spans that arrived more than once.
    pub duplicated_spans: u64,
    /// Distinct spans that arrived although their request was never acknowledged (its answer was lost,
    /// or the client gave up on it): allowed.
    pub unacked_arrived: u64,
    /// All copies of those.
    pub unacked_copies: u64,
    pub total_arrived: u64,
}

impl std::fmt::Display for DeliveryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} acknowledged spans: {} lost, {} duplicate copies ({} spans arrived more than once); \
             {} unacknowledged spans arrived too ({} copies); {} spans arrived in all",
            self.acked_spans,
            self.lost.len(),
            self.duplicates,
            self.duplicated_spans,
            self.unacked_arrived,
            self.unacked_copies,
            self.total_arrived
        )
    }
}
