//! Processor `batch`: gathers small batches into larger ones, and splits oversized ones, so exporters
//! send fewer, fuller requests.
//!
//! Guarantees: a batch leaves as soon as it holds `send_batch_size` items, or `timeout` after its first
//! item arrived; no batch leaves larger than `send_batch_max_size` (when set); items keep their arrival
//! order; nothing is held past [`Processor::drain`].

use std::time::{Duration, Instant};

use outpost_config::BatchConfig;

use crate::batch::Batch;
use crate::processor::{Emit, Processor};
use crate::signal::SignalData;

pub struct BatchProcessor<T> {
    send_batch_size: usize,
    send_batch_max_size: usize,
    timeout: Duration,
    pending: Option<Batch<T>>,
    pending_items: usize,
    deadline: Option<Instant>,
}

impl<T: SignalData> BatchProcessor<T> {
    pub fn new(cfg: &BatchConfig) -> Self {
        Self {
            send_batch_size: cfg.send_batch_size.max(1),
            send_batch_max_size: cfg.send_batch_max_size,
            timeout: cfg.timeout.get(),
            pending: None,
            pending_items: 0,
            deadline: None,
        }
    }

    fn flush(&mut self, out: &mut Emit<T>) {
        self.deadline = None;
        self.pending_items = 0;
        let Some(mut batch) = self.pending.take() else {
            return;
        };
        if self.send_batch_max_size > 0 {
            while batch.item_count() > self.send_batch_max_size {
                out.push(batch.split_front(self.send_batch_max_size));
            }
        }
        out.push(batch);
    }

    fn process_at(&mut self, batch: Batch<T>, now: Instant, out: &mut Emit<T>) {
        let items = batch.item_count();
        if items == 0 {
            return;
        }
        match &mut self.pending {
            Some(p) => p.merge(batch),
            None => {
                self.pending = Some(batch);
                self.deadline = Some(now + self.timeout);
            }
        }
        self.pending_items += items;
        if self.pending_items >= self.send_batch_size {
            self.flush(out);
        }
    }
}

impl<T: SignalData> Processor<T> for BatchProcessor<T> {
    fn process(&mut self, batch: Batch<T>, out: &mut Emit<T>) {
        self.process_at(batch, Instant::now(), out);
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn on_deadline(&mut self, now: Instant, out: &mut Emit<T>) {
        if self.deadline.is_some_and(|d| d <= now) {
            self.flush(out);
        }
    }

    fn drain(&mut self, out: &mut Emit<T>) {
        self.flush(out);
    }

    /// Merging concatenates encoded payloads and splitting decodes them: this processor never needs
    /// them decoded otherwise.
    fn takes_encoded(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::tests::traces;
    use crate::signal::Traces;
    use outpost_config::HumanDuration;

    fn cfg(size: usize, max: usize) -> BatchConfig {
        BatchConfig {
            send_batch_size: size,
            send_batch_max_size: max,
            timeout: HumanDuration(Duration::from_millis(200)),
        }
    }

    fn sizes(out: &Emit<Traces>) -> Vec<usize> {
        out.batches().iter().map(Batch::item_count).collect()
    }

    #[test]
    fn holds_until_size_then_emits_everything() {
        let mut p = BatchProcessor::new(&cfg(10, 0));
        let mut out = Emit::default();
        let t0 = Instant::now();
        p.process_at(Batch::new(traces(1, 2)), t0, &mut out); // 4
        p.process_at(Batch::new(traces(1, 2)), t0, &mut out); // 8
        assert!(sizes(&out).is_empty());
        assert_eq!(p.next_deadline(), Some(t0 + Duration::from_millis(200)));
        p.process_at(Batch::new(traces(1, 2)), t0, &mut out); // 12
        assert_eq!(sizes(&out), vec![12]);
        assert_eq!(p.next_deadline(), None);
    }

    #[test]
    fn max_size_splits_large_batches() {
        let mut p = BatchProcessor::new(&cfg(5, 5));
        let mut out = Emit::default();
        p.process(Batch::new(traces(2, 6)), &mut out); // 24
        assert_eq!(sizes(&out), vec![5, 5, 5, 5, 4]);
    }

    #[test]
    fn timeout_flushes_a_partial_batch_and_drain_empties() {
        let mut p = BatchProcessor::new(&cfg(100, 0));
        let mut out = Emit::default();
        let t0 = Instant::now();
        p.process_at(Batch::new(traces(1, 1)), t0, &mut out);
        p.on_deadline(t0 + Duration::from_millis(199), &mut out);
        assert!(sizes(&out).is_empty(), "not yet due");
        p.on_deadline(t0 + Duration::from_millis(200), &mut out);
        assert_eq!(sizes(&out), vec![2]);
        p.process_at(Batch::new(traces(1, 1)), t0, &mut out);
        p.drain(&mut out);
        assert_eq!(sizes(&out), vec![2, 2]);
        assert_eq!(p.next_deadline(), None);
    }
}
