//! [`Batch`]: a signal payload travelling through a pipeline, with the admissions of the client requests
//! it carries.
//!
//! An [`Admission`] stands for one client request accepted into one pipeline. It travels with the data:
//! a processor that splits a batch clones it into both halves, one that merges batches concatenates
//! them. When the last copy is gone, the admission releases its bytes from the pipeline's [`ByteBudget`]
//! and resolves the client's [`AckWait`]. The request is answered only then, so a client is never told
//! "accepted" for data still held in memory.
//!
//! A batch leaves a pipeline in exactly one of three ways, and only the first two count as success:
//! [`Batch::into_parts`] at the end of the chain (the queue seam), [`Batch::discard`] when a processor
//! drops it by policy (counted), or being dropped any other way — an aborted shutdown, a panic — which
//! fails its clients' requests with a retryable error, so data that was lost is never acknowledged.
//!
//! Part of a batch's payload may travel *encoded* ([`Batch::from_encoded`]): the prost encoding of more
//! of the same export request, as a processor that stores data encoded (tail_sampling) releases it, or
//! as a receiver that writes its requests encoded (prometheus, from its scrape cache) admits it. An
//! export request's only field is its repeated list of resource groups, so the concatenation of two
//! encodings is the encoding of the merged request: merging appends bytes and the queue seam
//! ([`Batch::take_payload`]) writes them as they are, so data that was encoded once is never decoded and
//! encoded again on its way to the queue. A stage that reads or changes items sees them decoded: the
//! processor chain decodes the encoded part before every processor that does not say it handles it
//! ([`crate::Processor::takes_encoded`]), and [`Batch::split_front`] and [`Batch::into_parts`] decode
//! it first too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::oneshot;

use crate::signal::SignalData;

/// Telemetry in flight through a pipeline.
#[derive(Debug)]
pub struct Batch<T> {
    /// The decoded part of the payload. A batch may carry more of it encoded (see the module docs).
    pub data: T,
    encoded: Option<Encoded>,
    admissions: Vec<Arc<Admission>>,
}

/// Part of a payload in its prost encoding, with the items it holds.
#[derive(Debug, Default)]
struct Encoded {
    bytes: Vec<u8>,
    items: usize,
}

impl<T: SignalData> Batch<T> {
    /// A batch that answers to nobody (produced inside outpost, or in tests).
    pub fn new(data: T) -> Self {
        Self {
            data,
            encoded: None,
            admissions: Vec::new(),
        }
    }

    pub fn with_admission(data: T, admission: Arc<Admission>) -> Self {
        Self {
            data,
            encoded: None,
            admissions: vec![admission],
        }
    }

    /// A batch (answering to nobody) whose payload is `bytes`, the prost encoding of a `T` holding
    /// `items` items. The caller vouches for both: only data this process encoded itself belongs here.
    pub fn from_encoded(bytes: Vec<u8>, items: usize) -> Self {
        Self {
            data: T::default(),
            encoded: Some(Encoded { bytes, items }),
            admissions: Vec::new(),
        }
    }

    /// [`Batch::from_encoded`] for one client request: `bytes` as a receiver encoded them itself (the
    /// prometheus receiver writes a scrape's request straight from its scrape cache).
    pub fn from_encoded_with_admission(
        bytes: Vec<u8>,
        items: usize,
        admission: Arc<Admission>,
    ) -> Self {
        Self {
            data: T::default(),
            encoded: Some(Encoded { bytes, items }),
            admissions: vec![admission],
        }
    }

    pub fn item_count(&self) -> usize {
        self.data.item_count() + self.encoded.as_ref().map_or(0, |e| e.items)
    }

    /// Whether part of the payload is still encoded.
    pub fn has_encoded(&self) -> bool {
        self.encoded.is_some()
    }

    /// Decodes the encoded part of the payload into [`Batch::data`]. Returns the items lost if it does
    /// not decode, which only a bug in outpost can cause (the bytes are its own encoding); those items'
    /// clients are refused with a retryable error, never told their data was stored.
    pub fn decode_encoded(&mut self) -> usize {
        let Some(enc) = self.encoded.take() else {
            return 0;
        };
        match T::decode(enc.bytes.as_slice()) {
            Ok(data) => {
                self.data.append(data);
                0
            }
            Err(e) => {
                tracing::error!(error = %e, items = enc.items, "an encoded batch did not decode");
                self.refuse(Refusal::Unavailable("internal_error"));
                enc.items
            }
        }
    }

    /// Appends `other`; the result answers to both batches' clients. Encoded parts are concatenated,
    /// not decoded.
    pub fn merge(&mut self, mut other: Batch<T>) {
        self.data.append(std::mem::take(&mut other.data));
        if let Some(theirs) = other.encoded.take() {
            match &mut self.encoded {
                Some(ours) => {
                    ours.bytes.extend_from_slice(&theirs.bytes);
                    ours.items += theirs.items;
                }
                None => self.encoded = Some(theirs),
            }
        }
        self.admissions.append(&mut other.admissions);
    }

    /// Splits off the first `n` items (the encoded part is decoded first). Both halves answer to all of
    /// this batch's clients, so a client is acknowledged only when every part of its request has reached
    /// the end.
    pub fn split_front(&mut self, n: usize) -> Batch<T> {
        self.decode_encoded();
        Batch {
            data: self.data.split_front(n),
            encoded: None,
            admissions: self.admissions.clone(),
        }
    }

    /// The prost encoding of the whole payload, for the queue: the decoded part is encoded and the
    /// encoded part follows it as it is. The batch is left without payload, still holding its clients'
    /// admissions for [`Batch::into_parts`] or [`Batch::refuse`].
    pub fn take_payload(&mut self) -> Vec<u8> {
        let data = std::mem::take(&mut self.data);
        match self.encoded.take() {
            Some(enc) if data.encoded_len() == 0 => enc.bytes,
            Some(enc) => {
                let mut out = Vec::with_capacity(data.encoded_len() + enc.bytes.len());
                data.encode(&mut out).expect("a Vec grows as needed");
                out.extend_from_slice(&enc.bytes);
                out
            }
            None => data.encode_to_vec(),
        }
    }

    /// Marks every client of this batch as refused: their requests are answered with `refusal` (always
    /// retryable) instead of success once the last part of the batch is gone.
    pub fn refuse(&self, refusal: Refusal) {
        for a in &self.admissions {
            a.refuse(refusal);
        }
    }

    /// Parts: the payload (decoded), and the admissions to drop once the payload is safe (which
    /// acknowledges them).
    pub fn into_parts(mut self) -> (T, Vec<Arc<Admission>>) {
        self.decode_encoded();
        (
            std::mem::take(&mut self.data),
            std::mem::take(&mut self.admissions),
        )
    }

    /// Drops this batch on purpose (a processor's policy; the caller counts it): its clients' requests
    /// still succeed, since their data was handled as configured.
    pub fn discard(mut self) {
        self.admissions.clear();
    }
}

impl<T> Drop for Batch<T> {
    fn drop(&mut self) {
        for a in &self.admissions {
            a.refuse(Refusal::Unavailable("dropped_in_flight"));
        }
    }
}

impl<T: SignalData> Batch<T> {}

/// Why a pipeline did not take a request. Both are retryable for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The pipeline is at its memory bound or its input is full: retry after a short wait
    /// (gRPC RESOURCE_EXHAUSTED / HTTP 429).
    Pressure(&'static str),
    /// The pipeline is shutting down or stopped (gRPC UNAVAILABLE / HTTP 503).
    Unavailable(&'static str),
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Pressure(r) | Refusal::Unavailable(r) => r,
        }
    }
}

/// Bytes of telemetry in flight in the pipelines that share one `memory_limiter`.
#[derive(Debug)]
pub struct ByteBudget {
    limit: u64,
    used: AtomicU64,
    /// Mirrors `used` for `/metrics`.
    inflight_gauge: Option<Gauge>,
}

impl ByteBudget {
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicU64::new(0),
            inflight_gauge: None,
        })
    }

    /// A budget reported as `(inflight, limit)` gauges.
    pub fn with_gauges(limit: u64, (inflight, limit_gauge): (Gauge, Gauge)) -> Arc<Self> {
        limit_gauge.set(i64::try_from(limit).unwrap_or(i64::MAX));
        Arc::new(Self {
            limit,
            used: AtomicU64::new(0),
            inflight_gauge: Some(inflight),
        })
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Reserves `bytes` if they fit under the limit. A single request larger than the whole limit is
    /// admitted when nothing else is in flight, so a limit below the largest request cannot wedge a
    /// pipeline forever.
    pub fn try_reserve(&self, bytes: u64) -> bool {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            let next = cur.saturating_add(bytes);
            if next > self.limit && cur > 0 {
                return false;
            }
            match self
                .used
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    if let Some(g) = &self.inflight_gauge {
                        g.inc_by(bytes as i64);
                    }
                    return true;
                }
                Err(actual) => cur = actual,
            }
        }
    }

    pub fn release(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
        if let Some(g) = &self.inflight_gauge {
            g.dec_by(bytes as i64);
        }
    }
}

/// The outcome a client request waits for.
pub type AckResult = Result<(), Refusal>;

/// One client request admitted into one pipeline. See the module docs.
#[derive(Debug)]
pub struct Admission {
    bytes: u64,
    budget: Option<Arc<ByteBudget>>,
    failure: Mutex<Option<Refusal>>,
    done: Mutex<Option<oneshot::Sender<AckResult>>>,
}

impl Admission {
    /// Creates an admission holding `bytes` already reserved in `budget` (if any), and the future its
    /// client awaits.
    pub fn new(bytes: u64, budget: Option<Arc<ByteBudget>>) -> (Arc<Self>, AckWait) {
        let (tx, rx) = oneshot::channel();
        let adm = Arc::new(Self {
            bytes,
            budget,
            failure: Mutex::new(None),
            done: Mutex::new(Some(tx)),
        });
        (adm, AckWait(rx))
    }

    /// The first refusal wins: it is the cause, later ones are consequences.
    pub fn refuse(&self, refusal: Refusal) {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(refusal);
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.release(self.bytes);
        }
        let result = match *self.failure.get_mut().unwrap_or_else(|e| e.into_inner()) {
            Some(refusal) => Err(refusal),
            None => Ok(()),
        };
        if let Some(tx) = self
            .done
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            // The client may have gone away (timeout, disconnect); nobody to tell then.
            let _ = tx.send(result);
        }
    }
}

/// Resolves when every part of the admitted request has left the pipeline.
#[derive(Debug)]
pub struct AckWait(oneshot::Receiver<AckResult>);

impl AckWait {
    pub async fn wait(self) -> AckResult {
        // The sender is only dropped without sending if the Admission itself leaked through a panic;
        // treat that as a retryable failure rather than a success.
        self.0
            .await
            .unwrap_or(Err(Refusal::Unavailable("pipeline_stopped")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::tests::traces;
    use crate::signal::Traces;

    #[tokio::test]
    async fn ack_fires_when_the_last_part_is_settled() {
        let budget = ByteBudget::new(1000);
        assert!(budget.try_reserve(100));
        let (adm, wait) = Admission::new(100, Some(budget.clone()));
        let mut b = Batch::with_admission(traces(1, 4), adm);
        let head = b.split_front(3);
        head.discard();
        assert_eq!(budget.used(), 100, "half the batch is still in flight");
        let mut wait = Box::pin(wait.wait());
        assert!(futures_poll_once(&mut wait).is_none());
        let (_data, admissions) = b.into_parts();
        drop(admissions);
        assert_eq!(wait.await, Ok(()));
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn a_batch_lost_without_delivery_fails_its_clients() {
        let (adm, wait) = Admission::new(0, None);
        let mut b = Batch::with_admission(traces(1, 2), adm);
        let mut other = Batch::new(traces(1, 1));
        other.merge(b.split_front(1));
        let (_data, admissions) = other.into_parts();
        drop(admissions);
        // The rest of the request is dropped as in an aborted shutdown: the client must not hear "ok".
        drop(b);
        assert_eq!(
            wait.wait().await,
            Err(Refusal::Unavailable("dropped_in_flight"))
        );
    }

    #[tokio::test]
    async fn a_failed_part_fails_the_request() {
        let (adm, wait) = Admission::new(0, None);
        let mut b = Batch::with_admission(traces(1, 2), adm);
        let head = b.split_front(1);
        head.refuse(Refusal::Unavailable("shutdown"));
        head.discard();
        b.discard();
        assert_eq!(wait.wait().await, Err(Refusal::Unavailable("shutdown")));
    }

    #[test]
    fn encoded_parts_merge_by_concatenation_and_decode_on_demand() {
        use prost::Message;
        let (a, b, c) = (traces(1, 2), traces(2, 1), traces(1, 3));
        let mut batch = Batch::<Traces>::from_encoded(a.encode_to_vec(), 4);
        batch.merge(Batch::from_encoded(b.encode_to_vec(), 4));
        batch.merge(Batch::new(c.clone()));
        assert!(batch.has_encoded());
        assert_eq!(batch.item_count(), 14);
        // The queue's payload: the decoded part, then the encoded parts as they were.
        let payload = batch.take_payload();
        let mut want = c.clone();
        want.append(a.clone());
        want.append(b.clone());
        assert_eq!(Traces::decode(payload.as_slice()).unwrap(), want);

        let mut batch = Batch::<Traces>::from_encoded(a.encode_to_vec(), 4);
        let head = batch.split_front(1);
        assert!(!batch.has_encoded() && !head.has_encoded());
        assert_eq!((head.item_count(), batch.item_count()), (1, 3));
        let (data, _) = Batch::<Traces>::from_encoded(b.encode_to_vec(), 4).into_parts();
        assert_eq!(data, b);
    }

    #[tokio::test]
    async fn an_encoded_part_that_does_not_decode_fails_its_clients() {
        let (adm, wait) = Admission::new(0, None);
        let mut batch = Batch::with_admission(traces(1, 1), adm);
        batch.merge(Batch::from_encoded(vec![0x0a, 0x05, 0x01], 3));
        assert_eq!(batch.decode_encoded(), 3);
        assert_eq!(batch.item_count(), 2, "the decoded part is left as it was");
        drop(batch.into_parts());
        assert_eq!(
            wait.wait().await,
            Err(Refusal::Unavailable("internal_error"))
        );
    }

    #[test]
    fn budget_refuses_above_limit_but_never_wedges() {
        let b = ByteBudget::new(100);
        assert!(b.try_reserve(500), "an oversized request alone is admitted");
        assert!(!b.try_reserve(1));
        b.release(500);
        assert!(b.try_reserve(60));
        assert!(b.try_reserve(40));
        assert!(!b.try_reserve(1));
    }

    fn futures_poll_once<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        use std::task::{Context, Poll, Waker};
        let mut cx = Context::from_waker(Waker::noop());
        match std::pin::Pin::new(f).poll(&mut cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        }
    }
}
