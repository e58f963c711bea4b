//! Receivers: the entrances of outpost. A receiver decodes requests (or reads files, or syslog
//! messages) into signal payloads and admits them into every pipeline that lists it ([`Inputs`]),
//! answering the client — or advancing its checkpoint — only once the data has left those pipelines
//! (see `outpost_pipelines::batch`).

pub mod filelog;
pub mod gate;
pub mod logrecord;
pub mod offer;
pub mod otlp;
pub mod prometheus;
pub mod prometheus_remote_write;
pub mod syslog;

use std::sync::{Arc, RwLock};

use outpost_pipelines::telemetry::ReceiverMetrics;
use outpost_pipelines::{AckWait, Logs, Metrics, PipelineInput, Refusal, Traces};

use crate::otlp::{OtlpSignal, Rejected};

/// The pipelines a receiver feeds, per signal.
#[derive(Clone, Default)]
pub struct Routes {
    pub traces: Vec<PipelineInput<Traces>>,
    pub metrics: Vec<PipelineInput<Metrics>>,
    pub logs: Vec<PipelineInput<Logs>>,
}

/// A receiver's [`Routes`], replaceable while it runs: a config reload that leaves a receiver unchanged
/// points it at the new pipelines without closing its listeners or connections. Every request takes
/// the routes current when it arrives and keeps them until it is answered, so a request in flight
/// during a reload finishes in the pipelines that admitted it.
#[derive(Clone, Default)]
pub struct Inputs(Arc<RwLock<Arc<Routes>>>);

impl Inputs {
    pub fn new(routes: Routes) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(routes))))
    }

    /// The routes for one request (or one batch of a file or a connection).
    pub fn current(&self) -> Arc<Routes> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Points every later request at `routes`; the old routes live on in the requests holding them.
    pub fn replace(&self, routes: Routes) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(routes);
    }
}

/// Generic access to [`Routes`] by signal type.
pub trait InputsOf: Sized {
    fn of(routes: &Routes) -> &Vec<PipelineInput<Self>>;
    fn of_mut(routes: &mut Routes) -> &mut Vec<PipelineInput<Self>>;
}

macro_rules! inputs_of {
    ($ty:ty, $field:ident) => {
        impl InputsOf for $ty {
            fn of(routes: &Routes) -> &Vec<PipelineInput<Self>> {
                &routes.$field
            }
            fn of_mut(routes: &mut Routes) -> &mut Vec<PipelineInput<Self>> {
                &mut routes.$field
            }
        }
    };
}
inputs_of!(Traces, traces);
inputs_of!(Metrics, metrics);
inputs_of!(Logs, logs);

/// How a request ended, for the transport to turn into a gRPC status or HTTP response.
pub enum Outcome {
    /// Accepted; `rejected` items were invalid and left out (partial success).
    Accepted(Rejected),
    Refused(Refusal),
    /// No pipeline takes this signal from this receiver.
    NotEnabled,
}

/// Admits one decoded request into every pipeline of its signal and waits for all of them.
pub async fn admit<T: OtlpSignal + InputsOf>(
    inputs: &Inputs,
    metrics: &ReceiverMetrics,
    mut data: T,
    bytes: u64,
) -> Outcome {
    let routes = inputs.current();
    let targets = T::of(&routes);
    if targets.is_empty() {
        metrics.refused(T::SIGNAL, "signal_not_enabled", data.item_count());
        return Outcome::NotEnabled;
    }
    let rejected = data.reject_invalid();
    if rejected.items > 0 {
        metrics.refused(T::SIGNAL, "invalid", rejected.items);
    }
    let items = data.item_count();
    if items == 0 {
        return Outcome::Accepted(rejected);
    }
    let mut data = Some(data);
    let last = targets.len() - 1;
    let admitted = admit_each(targets, |i, input| {
        let payload = if i == last {
            data.take().expect("taken once, by the last pipeline")
        } else {
            data.as_ref()
                .expect("present until the last pipeline")
                .clone()
        };
        input.try_admit(payload, bytes)
    })
    .await;
    if let Err(refusal) = admitted {
        metrics.refused(T::SIGNAL, refusal.reason(), items);
        return Outcome::Refused(refusal);
    }
    metrics.accepted(T::SIGNAL, items);
    Outcome::Accepted(rejected)
}

/// [`admit`] for a request the receiver wrote encoded itself: `payload` is the prost encoding of a `T`
/// holding `items` valid items (the receiver vouches for both; see `Batch::from_encoded`). Pipelines
/// get it encoded: it reaches the queue as it is unless a processor needs its items decoded.
pub async fn admit_encoded<T: OtlpSignal + InputsOf>(
    inputs: &Inputs,
    metrics: &ReceiverMetrics,
    payload: Vec<u8>,
    items: usize,
    bytes: u64,
) -> Outcome {
    let routes = inputs.current();
    let targets = T::of(&routes);
    if targets.is_empty() {
        metrics.refused(T::SIGNAL, "signal_not_enabled", items);
        return Outcome::NotEnabled;
    }
    if items == 0 {
        return Outcome::Accepted(Rejected::default());
    }
    let mut payload = Some(payload);
    let last = targets.len() - 1;
    let admitted = admit_each(targets, |i, input| {
        let bytes_of = if i == last {
            payload.take().expect("taken once, by the last pipeline")
        } else {
            payload
                .as_ref()
                .expect("present until the last pipeline")
                .clone()
        };
        input.try_admit_encoded(bytes_of, items, bytes)
    })
    .await;
    if let Err(refusal) = admitted {
        metrics.refused(T::SIGNAL, refusal.reason(), items);
        return Outcome::Refused(refusal);
    }
    metrics.accepted(T::SIGNAL, items);
    Outcome::Accepted(Rejected::default())
}

/// Admits one request into every pipeline in `targets` (`try_one` hands pipeline `i` its copy) and
/// waits until every one has queued it. The first refusal ends it: pipelines that already took the
/// data keep it; the client's retry may duplicate it there, which at-least-once delivery allows, while
/// refusing loses nothing.
async fn admit_each<T>(
    targets: &[PipelineInput<T>],
    mut try_one: impl FnMut(usize, &PipelineInput<T>) -> Result<AckWait, Refusal>,
) -> Result<(), Refusal> {
    let mut waits = Vec::with_capacity(targets.len());
    for (i, input) in targets.iter().enumerate() {
        waits.push(try_one(i, input)?);
    }
    for w in waits {
        w.wait().await?;
    }
    Ok(())
}
