//! The [`Processor`] contract and the [`ProcessorChain`] that runs a pipeline's processors in order.
//!
//! A processor is synchronous and owns the batches passed to it: it may change them, hold them (a batch
//! processor waiting for more), split them, or drop items — but it must say so through [`Emit`], which
//! is how the chain counts, for every processor alike, items in, items out and items dropped by reason.
//! Processors never touch counters, sockets or the clock themselves; time-driven ones expose
//! [`Processor::next_deadline`] and are woken through [`Processor::on_deadline`], so they are tested and
//! benchmarked without a runtime.

use std::time::Instant;

use crate::batch::Batch;
use crate::signal::SignalData;
use crate::telemetry::ProcessorMetrics;

/// Where a processor puts what it produces.
pub struct Emit<T> {
    batches: Vec<Batch<T>>,
    dropped: Vec<(&'static str, usize)>,
}

impl<T> Default for Emit<T> {
    fn default() -> Self {
        Self {
            batches: Vec::new(),
            dropped: Vec::new(),
        }
    }
}

impl<T: SignalData> Emit<T> {
    /// Passes a batch on to the next stage.
    pub fn push(&mut self, batch: Batch<T>) {
        if batch.item_count() > 0 {
            self.batches.push(batch);
        }
    }

    /// Records that `items` were dropped on purpose, and why. Every dropped item must be recorded, and a
    /// dropped batch must be let go with [`Batch::discard`] so its clients are still answered.
    pub fn dropped(&mut self, reason: &'static str, items: usize) {
        if items > 0 {
            self.dropped.push((reason, items));
        }
    }

    /// What was reported dropped so far, by reason.
    pub fn dropped_reasons(&self) -> Vec<(&'static str, usize)> {
        self.dropped.clone()
    }

    pub fn batches(&self) -> &[Batch<T>] {
        &self.batches
    }

    pub fn take_batches(&mut self) -> Vec<Batch<T>> {
        std::mem::take(&mut self.batches)
    }

    /// What was reported dropped so far, by reason (tests and benches that run a processor alone).
    pub fn take_dropped(&mut self) -> Vec<(&'static str, usize)> {
        std::mem::take(&mut self.dropped)
    }
}

pub trait Processor<T: SignalData>: Send {
    /// Takes ownership of `batch`; whatever goes on goes through `out`.
    fn process(&mut self, batch: Batch<T>, out: &mut Emit<T>);

    /// When this processor next wants [`Processor::on_deadline`] called, if it holds anything.
    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    fn on_deadline(&mut self, _now: Instant, _out: &mut Emit<T>) {}

    /// Shutdown: emit everything still held.
    fn drain(&mut self, _out: &mut Emit<T>) {}

    /// Whether this processor handles batches whose payload is partly still encoded
    /// ([`Batch::from_encoded`]) without looking into it: it only counts, merges, splits or passes them.
    /// The chain decodes the encoded part for every other processor first.
    fn takes_encoded(&self) -> bool {
        false
    }
}

struct Stage<T> {
    processor: Box<dyn Processor<T>>,
    metrics: ProcessorMetrics,
}

/// A pipeline's processors, in config order, each wrapped with its counters.
pub struct ProcessorChain<T> {
    stages: Vec<Stage<T>>,
}

impl<T: SignalData> Default for ProcessorChain<T> {
    fn default() -> Self {
        Self { stages: Vec::new() }
    }
}

impl<T: SignalData> ProcessorChain<T> {
    pub fn push(&mut self, processor: Box<dyn Processor<T>>, metrics: ProcessorMetrics) {
        self.stages.push(Stage { processor, metrics });
    }

    pub fn len(&self) -> usize {
        self.stages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Runs `batch` through every stage; what leaves the last stage is appended to `out`.
    pub fn process(&mut self, batch: Batch<T>, out: &mut Vec<Batch<T>>) {
        self.run_from(0, vec![batch], out);
    }

    /// The earliest deadline any stage asked for.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.stages
            .iter()
            .filter_map(|s| s.processor.next_deadline())
            .min()
    }

    /// Wakes every stage whose deadline has passed and runs what they emit through the later stages.
    pub fn on_deadline(&mut self, now: Instant, out: &mut Vec<Batch<T>>) {
        for i in 0..self.stages.len() {
            if self.stages[i]
                .processor
                .next_deadline()
                .is_some_and(|d| d <= now)
            {
                let emitted = self.call(i, |p, emit| p.on_deadline(now, emit), 0);
                self.run_from(i + 1, emitted, out);
            }
        }
    }

    /// Flushes every stage, first to last, so what an early stage releases passes the later ones.
    pub fn drain(&mut self, out: &mut Vec<Batch<T>>) {
        for i in 0..self.stages.len() {
            let emitted = self.call(i, |p, emit| p.drain(emit), 0);
            self.run_from(i + 1, emitted, out);
        }
    }

    fn run_from(&mut self, start: usize, mut batches: Vec<Batch<T>>, out: &mut Vec<Batch<T>>) {
        for i in start..self.stages.len() {
            let mut next = Vec::new();
            for mut batch in batches {
                let items = batch.item_count();
                let lost = if batch.has_encoded() && !self.stages[i].processor.takes_encoded() {
                    batch.decode_encoded()
                } else {
                    0
                };
                next.extend(self.call(
                    i,
                    |p, emit| {
                        emit.dropped("internal_error", lost);
                        p.process(batch, emit)
                    },
                    items,
                ));
            }
            batches = next;
        }
        out.extend(batches);
    }

    /// Calls stage `i` and counts: `incoming` items entered, what it emitted left, what it reported dropped.
    fn call(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut dyn Processor<T>, &mut Emit<T>),
        incoming: usize,
    ) -> Vec<Batch<T>> {
        let stage = &mut self.stages[i];
        let mut emit = Emit::default();
        f(stage.processor.as_mut(), &mut emit);
        stage.metrics.incoming(incoming);
        let outgoing: usize = emit.batches.iter().map(Batch::item_count).sum();
        stage.metrics.outgoing(outgoing);
        for (reason, n) in emit.dropped {
            stage.metrics.dropped(reason, n);
        }
        emit.batches
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::tests::traces;
    use crate::signal::Traces;
    use crate::telemetry::Telemetry;

    /// Drops the first item of every batch, as a stand-in for any filtering processor.
    struct DropFirst;
    impl Processor<Traces> for DropFirst {
        fn process(&mut self, mut batch: Batch<Traces>, out: &mut Emit<Traces>) {
            batch.split_front(1).discard();
            out.dropped("test_reason", 1);
            out.push(batch);
        }
    }

    /// Records whether the batches it saw still had an encoded part.
    struct SawEncoded(std::sync::Arc<std::sync::Mutex<Vec<bool>>>);
    impl Processor<Traces> for SawEncoded {
        fn process(&mut self, batch: Batch<Traces>, out: &mut Emit<Traces>) {
            self.0.lock().unwrap().push(batch.has_encoded());
            out.push(batch);
        }
    }

    #[test]
    fn encoded_batches_are_decoded_only_for_processors_that_look_inside() {
        use crate::processors::batch::BatchProcessor;
        use outpost_config::{BatchConfig, HumanDuration};
        use prost::Message;
        let t = Telemetry::new();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut chain = ProcessorChain::default();
        chain.push(
            Box::new(BatchProcessor::new(&BatchConfig {
                send_batch_size: 1,
                send_batch_max_size: 0,
                timeout: HumanDuration(std::time::Duration::from_secs(1)),
            })),
            t.processor("traces", "batch"),
        );
        chain.push(
            Box::new(SawEncoded(seen.clone())),
            t.processor("traces", "seen"),
        );
        chain.push(Box::new(DropFirst), t.processor("traces", "drop"));
        let mut out = Vec::new();
        let sent = traces(2, 3);
        chain.run_from(
            0,
            vec![Batch::from_encoded(sent.encode_to_vec(), 12)],
            &mut out,
        );
        assert_eq!(
            *seen.lock().unwrap(),
            vec![false],
            "decoded before a processor that looks"
        );
        assert_eq!(out.iter().map(Batch::item_count).sum::<usize>(), 11);
    }

    #[test]
    fn chain_counts_in_out_and_dropped_per_stage() {
        let t = Telemetry::new();
        let mut chain = ProcessorChain::default();
        let first = t.processor("traces", "a");
        let second = t.processor("traces", "b");
        chain.push(Box::new(DropFirst), first.clone());
        chain.push(Box::new(DropFirst), second.clone());
        let mut out = Vec::new();
        chain.process(Batch::new(traces(1, 5)), &mut out); // 10 spans
        assert_eq!(out.iter().map(Batch::item_count).sum::<usize>(), 8);
        assert_eq!((first.incoming_total(), first.outgoing_total()), (10, 9));
        assert_eq!((second.incoming_total(), second.outgoing_total()), (9, 8));
        let text = t.encode();
        assert!(text.contains(
            r#"outpost_processor_dropped_items_total{pipeline="traces",processor="b",reason="test_reason"} 1"#
        ));
    }
}
