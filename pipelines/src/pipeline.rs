//! The pipeline runtime, one implementation for every signal: a bounded input, the processor chain, and
//! fan-out to the pipeline's exporters.
//!
//! Backpressure runs upstream without unbounded buffers anywhere: an exporter that falls behind fills its
//! bounded channel; the pipeline task then waits on that send and stops pulling from its own bounded
//! input; receivers, which only ever `try_admit`, are refused with a retryable [`Refusal`] that they turn
//! into RESOURCE_EXHAUSTED / 429. Time-driven processors are woken by their deadlines even under
//! constant input, because the deadline branch is polled first.
//!
//! The end of the chain is the queue seam: [`Pipeline::deliver`] is where the disk queue appends. Until it
//! exists, data is handed to the exporters' channels and the clients' admissions are released there.

use std::sync::Arc;

use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::time::Instant as TokioInstant;
use tokio_util::sync::CancellationToken;

use crate::batch::{AckWait, Admission, Batch, ByteBudget, Refusal};
use crate::processor::ProcessorChain;
use crate::signal::SignalData;
use crate::telemetry::ExporterMetrics;

/// Batches waiting at a pipeline's entrance before receivers are pushed back.
pub const INPUT_CAPACITY: usize = 64;

/// The entrance of one pipeline; cheap to clone, one per receiver or connector feeding it. The pipeline
/// stops (drains and ends) once every clone is dropped.
pub struct PipelineInput<T> {
    id: Arc<str>,
    tx: mpsc::Sender<Batch<T>>,
    budget: Option<Arc<ByteBudget>>,
}

impl<T> Clone for PipelineInput<T> {
    fn clone(&self) -> Self {
        Self {
            id: self.id.clone(),
            tx: self.tx.clone(),
            budget: self.budget.clone(),
        }
    }
}

impl<T: SignalData> PipelineInput<T> {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Admits one client request of `bytes` (its decoded size on the wire) without waiting. The returned
    /// [`AckWait`] resolves once all of it has left the pipeline.
    pub fn try_admit(&self, data: T, bytes: u64) -> Result<AckWait, Refusal> {
        if let Some(budget) = &self.budget {
            if !budget.try_reserve(bytes) {
                return Err(Refusal::Pressure("memory_limit"));
            }
        }
        let (admission, wait) = Admission::new(bytes, self.budget.clone());
        match self.tx.try_send(Batch::with_admission(data, admission)) {
            Ok(()) => Ok(wait),
            // Dropping the refused batch releases its reservation; nobody waits on its ack.
            Err(TrySendError::Full(_)) => Err(Refusal::Pressure("pipeline_full")),
            Err(TrySendError::Closed(_)) => Err(Refusal::Unavailable("pipeline_stopped")),
        }
    }

    /// Sends a batch produced inside outpost (by a connector), waiting for room: backpressure then flows
    /// into the upstream pipeline instead of refusing data already accepted from a client.
    pub async fn send(&self, batch: Batch<T>) -> Result<(), Refusal> {
        self.tx
            .send(batch)
            .await
            .map_err(|_| Refusal::Unavailable("pipeline_stopped"))
    }
}

/// Where a pipeline hands its output: an exporter's (or connector's) bounded channel.
pub struct Output<T> {
    pub name: String,
    pub tx: mpsc::Sender<T>,
    /// Counts items this output could not take because it had stopped.
    pub metrics: ExporterMetrics,
}

/// One running pipeline. Build with [`Pipeline::new`], run with [`Pipeline::run`].
pub struct Pipeline<T> {
    rx: mpsc::Receiver<Batch<T>>,
    chain: ProcessorChain<T>,
    outputs: Vec<Output<T>>,
}

impl<T: SignalData> Pipeline<T> {
    pub fn new(
        id: &str,
        chain: ProcessorChain<T>,
        outputs: Vec<Output<T>>,
        budget: Option<Arc<ByteBudget>>,
    ) -> (Self, PipelineInput<T>) {
        let (tx, rx) = mpsc::channel(INPUT_CAPACITY);
        let input = PipelineInput {
            id: id.into(),
            tx,
            budget,
        };
        (Self { rx, chain, outputs }, input)
    }

    /// Runs until every [`PipelineInput`] is dropped, then drains the processors and delivers what they
    /// held. Returning drops the outputs, which tells the exporters to flush and stop.
    ///
    /// Once `stop` is cancelled the pipeline drains: processors give up what they hold at once and after
    /// every later batch, so clients waiting on held data are answered while the receivers wind down,
    /// instead of both sides waiting on each other until the shutdown deadline. Input stays open, so
    /// connectors can still hand over what upstream pipelines drain.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut out = Vec::new();
        let mut draining = false;
        loop {
            let deadline = self.chain.next_deadline().filter(|_| !draining);
            tokio::select! {
                biased;
                _ = stop.cancelled(), if !draining => {
                    draining = true;
                    self.chain.drain(&mut out);
                }
                _ = sleep_until_opt(deadline), if deadline.is_some() => {
                    self.chain.on_deadline(std::time::Instant::now(), &mut out);
                }
                next = self.rx.recv() => match next {
                    Some(batch) => {
                        self.chain.process(batch, &mut out);
                        if draining {
                            self.chain.drain(&mut out);
                        }
                    }
                    None => break,
                },
            }
            self.deliver(&mut out).await;
        }
        self.chain.drain(&mut out);
        self.deliver(&mut out).await;
    }

    /// The queue seam (see the module docs).
    async fn deliver(&mut self, out: &mut Vec<Batch<T>>) {
        for batch in out.drain(..) {
            let (data, admissions) = batch.into_parts();
            let items = data.item_count();
            let last = self.outputs.len().saturating_sub(1);
            let mut data = Some(data);
            for (i, output) in self.outputs.iter().enumerate() {
                // Every output but the last gets a copy; the last takes the original.
                let payload = if i == last {
                    data.take().expect("taken once, by the last output")
                } else {
                    data.as_ref()
                        .expect("present until the last output")
                        .clone()
                };
                if output.tx.send(payload).await.is_err() {
                    output.metrics.failed("exporter_stopped", items);
                }
            }
            drop(admissions);
        }
    }
}

async fn sleep_until_opt(deadline: Option<std::time::Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(TokioInstant::from_std(d)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processors::batch::BatchProcessor;
    use crate::signal::tests::traces;
    use crate::signal::Traces;
    use crate::telemetry::Telemetry;
    use outpost_config::{BatchConfig, HumanDuration, Signal};
    use std::time::Duration;

    fn output(t: &Telemetry, name: &str, cap: usize) -> (Output<Traces>, mpsc::Receiver<Traces>) {
        let (tx, rx) = mpsc::channel(cap);
        (
            Output {
                name: name.into(),
                tx,
                metrics: t.exporter(name, Signal::Traces),
            },
            rx,
        )
    }

    #[tokio::test]
    async fn fans_out_to_every_exporter_and_acks_after_delivery() {
        let t = Telemetry::new();
        let (a, mut rx_a) = output(&t, "a", 4);
        let (b, mut rx_b) = output(&t, "b", 4);
        let (p, input) = Pipeline::new("traces", ProcessorChain::default(), vec![a, b], None);
        let task = tokio::spawn(p.run(CancellationToken::new()));
        let ack = input.try_admit(traces(1, 3), 10).unwrap();
        assert_eq!(ack.wait().await, Ok(()));
        assert_eq!(rx_a.recv().await.unwrap().item_count(), 6);
        assert_eq!(rx_b.recv().await.unwrap().item_count(), 6);
        drop(input);
        task.await.unwrap();
        assert!(
            rx_a.recv().await.is_none(),
            "outputs close when the pipeline ends"
        );
    }

    #[tokio::test]
    async fn a_stalled_exporter_pushes_back_to_receivers() {
        let t = Telemetry::new();
        let (a, mut rx_a) = output(&t, "a", 1);
        let (p, input) = Pipeline::new("traces", ProcessorChain::default(), vec![a], None);
        tokio::spawn(p.run(CancellationToken::new()));
        let mut refused = None;
        for i in 0..(INPUT_CAPACITY + 10) {
            match input.try_admit(traces(1, 1), 1) {
                Ok(_) => {}
                Err(r) => {
                    refused = Some((i, r));
                    break;
                }
            }
            tokio::task::yield_now().await;
        }
        let (i, r) = refused.expect("the input must fill while the exporter does not read");
        assert_eq!(r, Refusal::Pressure("pipeline_full"));
        assert!(i <= INPUT_CAPACITY + 2, "refused after {i} requests");
        // Once the exporter reads again, admission resumes.
        while rx_a.try_recv().is_ok() {}
        let mut resumed = false;
        for _ in 0..100 {
            while rx_a.try_recv().is_ok() {}
            if input.try_admit(traces(1, 1), 1).is_ok() {
                resumed = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(resumed);
    }

    #[tokio::test]
    async fn memory_budget_refuses_and_releases_after_delivery() {
        let t = Telemetry::new();
        let (a, mut rx_a) = output(&t, "a", 8);
        let budget = ByteBudget::new(100);
        let (p, input) = Pipeline::new(
            "traces",
            ProcessorChain::default(),
            vec![a],
            Some(budget.clone()),
        );
        let first = input.try_admit(traces(1, 1), 80).unwrap();
        assert_eq!(
            input.try_admit(traces(1, 1), 30).unwrap_err(),
            Refusal::Pressure("memory_limit")
        );
        tokio::spawn(p.run(CancellationToken::new()));
        assert_eq!(first.wait().await, Ok(()));
        assert_eq!(budget.used(), 0);
        assert!(input.try_admit(traces(1, 1), 30).is_ok());
        assert!(rx_a.recv().await.is_some());
    }

    #[tokio::test]
    async fn stop_releases_held_batches_while_inputs_are_still_open() {
        let t = Telemetry::new();
        let (a, mut rx_a) = output(&t, "a", 8);
        let mut chain = ProcessorChain::default();
        chain.push(
            Box::new(BatchProcessor::new(&BatchConfig {
                send_batch_size: 1000,
                send_batch_max_size: 0,
                timeout: HumanDuration(Duration::from_secs(3600)),
            })),
            t.processor("traces", "batch"),
        );
        let (p, input) = Pipeline::new("traces", chain, vec![a], None);
        let stop = CancellationToken::new();
        let task = tokio::spawn(p.run(stop.clone()));
        let held = input.try_admit(traces(1, 1), 1).unwrap();
        tokio::task::yield_now().await;
        stop.cancel();
        // The held request is answered although its input is still alive (as a receiver finishing its
        // in-flight requests would keep it).
        assert_eq!(held.wait().await, Ok(()));
        assert_eq!(rx_a.recv().await.unwrap().item_count(), 2);
        // Later requests pass straight through.
        let late = input.try_admit(traces(1, 2), 1).unwrap();
        assert_eq!(late.wait().await, Ok(()));
        assert_eq!(rx_a.recv().await.unwrap().item_count(), 4);
        drop(input);
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn batch_timeout_fires_under_the_runtime_clock() {
        let t = Telemetry::new();
        let (a, mut rx_a) = output(&t, "a", 8);
        let mut chain = ProcessorChain::default();
        chain.push(
            Box::new(BatchProcessor::new(&BatchConfig {
                send_batch_size: 1000,
                send_batch_max_size: 0,
                timeout: HumanDuration(Duration::from_millis(50)),
            })),
            t.processor("traces", "batch"),
        );
        let (p, input) = Pipeline::new("traces", chain, vec![a], None);
        tokio::spawn(p.run(CancellationToken::new()));
        let ack = input.try_admit(traces(1, 1), 1).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), rx_a.recv()).await;
        assert_eq!(got.unwrap().unwrap().item_count(), 2);
        assert_eq!(ack.wait().await, Ok(()));
    }
}
