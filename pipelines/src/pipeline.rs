//! The pipeline runtime, one implementation for every signal: a bounded input, the processor chain, and
//! the disk queue at the end.
//!
//! Backpressure runs upstream without unbounded buffers anywhere: receivers only ever `try_admit`, and are
//! refused with a retryable [`Refusal`] (RESOURCE_EXHAUSTED / 429) when the memory budget is spent, the
//! bounded input is full, or the queue is under pressure with `overflow: block`. Time-driven processors are
//! woken by their deadlines even under constant input, because the deadline branch is polled first.
//!
//! The end of the chain is the queue seam ([`Pipeline::deliver`]): each batch is encoded once and appended
//! to the pipeline's queue stream, and its clients are acknowledged only when the append is durable under
//! the queue's sync policy. Exporters (and connectors) read the stream through their own cursors.

use std::sync::Arc;

use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::time::Instant as TokioInstant;
use tokio_util::sync::CancellationToken;

use crate::batch::{AckWait, Admission, Batch, ByteBudget, Refusal};
use crate::processor::ProcessorChain;
use crate::queue::{Queue, QueueError, Stream};
use crate::signal::SignalData;

/// Batches waiting at a pipeline's entrance before receivers are pushed back.
pub const INPUT_CAPACITY: usize = 64;

/// The entrance of one pipeline; cheap to clone, one per receiver or connector feeding it. The pipeline
/// stops (drains and ends) once every clone is dropped.
pub struct PipelineInput<T> {
    id: Arc<str>,
    tx: mpsc::Sender<Batch<T>>,
    budget: Option<Arc<ByteBudget>>,
    /// With `overflow: block`, the queue whose pressure refuses new data at the door.
    gate: Option<Queue>,
}

impl<T> Clone for PipelineInput<T> {
    fn clone(&self) -> Self {
        Self {
            id: self.id.clone(),
            tx: self.tx.clone(),
            budget: self.budget.clone(),
            gate: self.gate.clone(),
        }
    }
}

impl<T: SignalData> PipelineInput<T> {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Admits one client request of `bytes` (its decoded size on the wire) without waiting. The returned
    /// [`AckWait`] resolves once all of it is durably queued (or dropped by a counted policy).
    pub fn try_admit(&self, data: T, bytes: u64) -> Result<AckWait, Refusal> {
        self.try_admit_or_return(data, bytes)
            .map_err(|(refusal, _)| refusal)
    }

    /// [`PipelineInput::try_admit`] that hands the data back when it is refused, for a receiver that
    /// holds on to it and tries again later (a file tailer under backpressure) without copying it first.
    pub fn try_admit_or_return(&self, data: T, bytes: u64) -> Result<AckWait, (Refusal, T)> {
        if let Err(refusal) = self.reserve(bytes) {
            return Err((refusal, data));
        }
        let (admission, wait) = Admission::new(bytes, self.budget.clone());
        let refused = |batch: Batch<T>| {
            // Nobody waits on the refused admission; dropping it releases its reservation.
            let (data, _admission) = batch.into_parts();
            data
        };
        match self.tx.try_send(Batch::with_admission(data, admission)) {
            Ok(()) => Ok(wait),
            Err(TrySendError::Full(b)) => Err((Refusal::Pressure("pipeline_full"), refused(b))),
            Err(TrySendError::Closed(b)) => {
                Err((Refusal::Unavailable("pipeline_stopped"), refused(b)))
            }
        }
    }

    /// [`PipelineInput::try_admit`] for a request the receiver encoded itself: `payload` is the prost
    /// encoding of a `T` holding `items` items (see [`Batch::from_encoded`]). It travels encoded to the
    /// queue unless a processor needs to look at its items.
    pub fn try_admit_encoded(
        &self,
        payload: Vec<u8>,
        items: usize,
        bytes: u64,
    ) -> Result<AckWait, Refusal> {
        self.reserve(bytes)?;
        let (admission, wait) = Admission::new(bytes, self.budget.clone());
        match self.tx.try_send(Batch::from_encoded_with_admission(
            payload, items, admission,
        )) {
            Ok(()) => Ok(wait),
            // Dropping the refused admission releases its reservation; nobody waits on it, and the
            // payload is not decoded just to be dropped.
            Err(TrySendError::Full(b)) => {
                b.discard();
                Err(Refusal::Pressure("pipeline_full"))
            }
            Err(TrySendError::Closed(b)) => {
                b.discard();
                Err(Refusal::Unavailable("pipeline_stopped"))
            }
        }
    }

    /// Takes `bytes` from the memory budget, unless the queue (`overflow: block`) or the budget says no.
    fn reserve(&self, bytes: u64) -> Result<(), Refusal> {
        if self.gate.as_ref().is_some_and(Queue::pressure) {
            return Err(Refusal::Pressure("queue_full"));
        }
        if let Some(budget) = &self.budget {
            if !budget.try_reserve(bytes) {
                return Err(Refusal::Pressure("memory_limit"));
            }
        }
        Ok(())
    }

    /// Admits data produced inside outpost (a connector's), waiting for room instead of refusing, so
    /// backpressure reaches the upstream reader. The [`AckWait`] resolves once the data is durably queued
    /// here, which is when the connector may let go of its own copy.
    pub async fn admit_waiting(&self, data: T) -> Result<AckWait, Refusal> {
        let (admission, wait) = Admission::new(0, None);
        self.tx
            .send(Batch::with_admission(data, admission))
            .await
            .map_err(|_| Refusal::Unavailable("pipeline_stopped"))?;
        Ok(wait)
    }
}

/// One running pipeline. Build with [`Pipeline::new`], run with [`Pipeline::run`].
pub struct Pipeline<T> {
    rx: mpsc::Receiver<Batch<T>>,
    chain: ProcessorChain<T>,
    stream: Stream,
}

impl<T: SignalData> Pipeline<T> {
    /// `gate`: the queue to consult at admission (set it when the queue's overflow policy is `block`).
    pub fn new(
        id: &str,
        chain: ProcessorChain<T>,
        stream: Stream,
        budget: Option<Arc<ByteBudget>>,
        gate: Option<Queue>,
    ) -> (Self, PipelineInput<T>) {
        let (tx, rx) = mpsc::channel(INPUT_CAPACITY);
        let input = PipelineInput {
            id: id.into(),
            tx,
            budget,
            gate,
        };
        (Self { rx, chain, stream }, input)
    }

    /// Runs until every [`PipelineInput`] is dropped, then drains the processors and queues what they
    /// held.
    ///
    /// Once `stop` is cancelled the pipeline drains: processors give up what they hold at once and after
    /// every later batch, so clients waiting on held data are answered while the receivers wind down,
    /// instead of both sides waiting on each other until the shutdown deadline. Input stays open, so
    /// connectors can still hand over what they read.
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
        for mut batch in out.drain(..) {
            let items = u32::try_from(batch.item_count()).unwrap_or(u32::MAX);
            // Parts a processor released encoded are written as they are (see `Batch`).
            let payload = batch.take_payload();
            match self.stream.append(T::SIGNAL, items, &payload).await {
                // Stored, or shed by a drop policy (the queue counts it): either way the request was
                // handled as configured, so its clients are answered with success.
                Ok(_) => drop(batch.into_parts()),
                Err(e) => {
                    tracing::warn!(stream = self.stream.name(), items, error = %e, "queue append failed; clients are told to retry");
                    batch.refuse(match e {
                        QueueError::Full => Refusal::Pressure("queue_full"),
                        // The device is full before the queue is: a different alarm for the operator.
                        QueueError::NoSpace(_) => Refusal::Pressure("no_space"),
                        _ => Refusal::Unavailable("queue_error"),
                    });
                }
            }
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
    use crate::queue::{Appended, Cursor, Overflow, QueueOptions, StartAt, SyncPolicy};
    use crate::signal::tests::traces;
    use crate::signal::Traces;
    use crate::telemetry::Telemetry;
    use outpost_config::{BatchConfig, HumanDuration, Signal};
    use prost::Message;
    use std::time::Duration;

    fn open_queue(dir: &std::path::Path, max_size: u64, overflow: Overflow) -> Queue {
        Queue::open(
            QueueOptions {
                directory: dir.to_path_buf(),
                max_size,
                high_watermark: max_size / 2,
                low_watermark: max_size / 4,
                overflow,
                sync: SyncPolicy::Always,
                max_age: None,
            },
            &Telemetry::new(),
        )
        .unwrap()
    }

    /// Reads the next record of `cursor` as traces and acknowledges it.
    async fn read(cursor: &mut Cursor) -> Traces {
        let rec = tokio::time::timeout(Duration::from_secs(5), cursor.next_batch(1))
            .await
            .expect("a record arrives")
            .unwrap()
            .remove(0);
        cursor.ack(rec.seq).unwrap();
        Traces::decode(rec.payload).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acks_after_a_durable_append_that_every_cursor_reads() {
        let dir = tempfile::tempdir().unwrap();
        let q = open_queue(dir.path(), 64 << 20, Overflow::Block);
        let stream = q.stream("traces").unwrap();
        let mut a = stream.cursor("a", StartAt::Oldest, None).unwrap();
        let mut b = stream.cursor("b", StartAt::Oldest, None).unwrap();
        let (p, input) = Pipeline::new("traces", ProcessorChain::default(), stream, None, None);
        let task = tokio::spawn(p.run(CancellationToken::new()));
        let ack = input.try_admit(traces(1, 3), 10).unwrap();
        assert_eq!(ack.wait().await, Ok(()));
        let sent = traces(1, 3);
        assert_eq!(read(&mut a).await, sent);
        assert_eq!(read(&mut b).await, sent);
        drop(input);
        task.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queue_pressure_refuses_at_the_door_with_block() {
        let dir = tempfile::tempdir().unwrap();
        let q = open_queue(dir.path(), 1 << 20, Overflow::Block);
        let stream = q.stream("traces").unwrap();
        let (_p, input) = Pipeline::<Traces>::new(
            "traces",
            ProcessorChain::default(),
            stream.clone(),
            None,
            Some(q.clone()),
        );
        // Incompressible filler pushes the queue over its high watermark (half of max_size).
        let mut filler = vec![0u8; 64 << 10];
        let mut x: u32 = 1;
        for byte in filler.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *byte = x as u8;
        }
        while !q.pressure() {
            match stream.append(Signal::Traces, 1, &filler).await {
                Ok(Appended::Stored { .. }) => {}
                other => panic!("filler append: {other:?}"),
            }
        }
        assert_eq!(
            input.try_admit(traces(1, 1), 1).unwrap_err(),
            Refusal::Pressure("queue_full")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_budget_refuses_and_releases_after_queueing() {
        let dir = tempfile::tempdir().unwrap();
        let q = open_queue(dir.path(), 64 << 20, Overflow::Block);
        let budget = ByteBudget::new(100);
        let (p, input) = Pipeline::<Traces>::new(
            "traces",
            ProcessorChain::default(),
            q.stream("traces").unwrap(),
            Some(budget.clone()),
            None,
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
    }

    fn batch_chain(t: &Telemetry, timeout: Duration) -> ProcessorChain<Traces> {
        let mut chain = ProcessorChain::default();
        chain.push(
            Box::new(BatchProcessor::new(&BatchConfig {
                send_batch_size: 1000,
                send_batch_max_size: 0,
                timeout: HumanDuration(timeout),
            })),
            t.processor("traces", "batch"),
        );
        chain
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stop_releases_held_batches_while_inputs_are_still_open() {
        let dir = tempfile::tempdir().unwrap();
        let q = open_queue(dir.path(), 64 << 20, Overflow::Block);
        let stream = q.stream("traces").unwrap();
        let mut cursor = stream.cursor("a", StartAt::Oldest, None).unwrap();
        let t = Telemetry::new();
        let (p, input) = Pipeline::new(
            "traces",
            batch_chain(&t, Duration::from_secs(3600)),
            stream,
            None,
            None,
        );
        let stop = CancellationToken::new();
        let task = tokio::spawn(p.run(stop.clone()));
        let held = input.try_admit(traces(1, 1), 1).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        stop.cancel();
        // The held request is answered although its input is still alive (as a receiver finishing its
        // in-flight requests would keep it).
        assert_eq!(held.wait().await, Ok(()));
        assert_eq!(read(&mut cursor).await.item_count(), 2);
        // Later requests pass straight through.
        let late = input.try_admit(traces(1, 2), 1).unwrap();
        assert_eq!(late.wait().await, Ok(()));
        assert_eq!(read(&mut cursor).await.item_count(), 4);
        drop(input);
        task.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batch_timeout_flushes_into_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let q = open_queue(dir.path(), 64 << 20, Overflow::Block);
        let stream = q.stream("traces").unwrap();
        let mut cursor = stream.cursor("a", StartAt::Oldest, None).unwrap();
        let t = Telemetry::new();
        let (p, input) = Pipeline::new(
            "traces",
            batch_chain(&t, Duration::from_millis(50)),
            stream,
            None,
            None,
        );
        tokio::spawn(p.run(CancellationToken::new()));
        let ack = input.try_admit(traces(1, 1), 1).unwrap();
        assert_eq!(read(&mut cursor).await.item_count(), 2);
        assert_eq!(ack.wait().await, Ok(()));
    }
}
