//! The processors of the spine. Each is a [`crate::processor::Processor`] generic over the signal.

pub mod attributes;
pub mod batch;
pub mod cardinality;
pub mod memory_limiter;
pub mod redaction;
pub mod tail_sampling;
pub mod transform;
