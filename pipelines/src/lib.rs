//! outpost's data plane without sockets: the signal model ([`signal`]), batches and client
//! acknowledgement ([`batch`]), the processor contract and its counting runner ([`processor`]), the
//! processors ([`processors`]), the pipeline runtime ([`pipeline`]), the disk queue ([`queue`]) and
//! self-telemetry ([`telemetry`]).
//!
//! Everything here is generic over [`signal::SignalData`]: one implementation serves traces, metrics and
//! logs. Processors are synchronous so they can be tested and benchmarked without a runtime.

pub mod batch;
pub mod connectors;
pub mod pipeline;
pub mod processor;
pub mod processors;
pub mod queue;
pub mod signal;
pub mod telemetry;

pub use batch::{AckWait, Batch, ByteBudget, Refusal};
pub use pipeline::{Pipeline, PipelineInput};
pub use processor::{Emit, Processor, ProcessorChain};
pub use signal::{Logs, Metrics, SignalData, Traces};
pub use telemetry::Telemetry;
