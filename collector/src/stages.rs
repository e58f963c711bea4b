//! Building a pipeline's stages from config: its processors, in config order, and the aggregators of
//! summarizing connectors.
//!
//! The running topology and `outpost test` both build through these functions, so a config test runs
//! exactly the processors the agent would run, built the same way from the same settings.

use std::collections::HashMap;
use std::time::Duration;

use outpost_config::{
    CardinalityLimitConfig, ComponentId, Config, ConnectorConfig, ProcessorConfig, Signal,
};
use outpost_pipelines::connectors::count::Count;
use outpost_pipelines::connectors::spanmetrics::SpanMetrics;
use outpost_pipelines::connectors::Summarizer;
use outpost_pipelines::processors::attributes::{AttributesProcessor, Target};
use outpost_pipelines::processors::batch::BatchProcessor;
use outpost_pipelines::processors::cardinality::CardinalityLimit;
use outpost_pipelines::processors::memory_limiter::MemoryLimiterStage;
use outpost_pipelines::processors::redaction::{Redact, Redaction};
use outpost_pipelines::processors::tail_sampling::TailSampling;
use outpost_pipelines::processors::transform::{TransformProcessor, Transformable};
use outpost_pipelines::queue::StateStore;
use outpost_pipelines::{Logs, Metrics, Processor, Telemetry, Traces};

use crate::otlp::OtlpSignal;

/// Compiles every redaction processor's rules once, to be shared by the pipelines that list it. A
/// processor whose rules do not compile is left out and its error pushed (naming its config key).
pub fn redactions(config: &Config, errors: &mut Vec<String>) -> HashMap<ComponentId, Redaction> {
    let mut out = HashMap::new();
    for (id, p) in &config.processors {
        if let ProcessorConfig::Redaction(c) = p {
            match Redaction::new(c) {
                Ok(r) => {
                    out.insert(id.clone(), r);
                }
                Err(e) => errors.push(format!("processors.{id}: {e}")),
            }
        }
    }
    out
}

/// The processor `proc_id` (settings `cfg`) for pipeline `pipeline` of signal `T`.
///
/// `Ok(None)` when there is nothing to build because its error was already reported (a redaction
/// processor whose rules did not compile). A `memory_limiter` is only a marker stage here: its byte
/// budget is the pipeline's admission, which the caller wires.
pub fn processor<T: OtlpSignal + Redact + Transformable>(
    proc_id: &ComponentId,
    cfg: &ProcessorConfig,
    pipeline: &str,
    telemetry: &Telemetry,
    redactions: &HashMap<ComponentId, Redaction>,
    state: Option<StateStore>,
) -> Result<Option<Box<dyn Processor<T>>>, String> {
    let stage: Box<dyn Processor<T>> = match cfg {
        ProcessorConfig::Batch(c) => Box::new(BatchProcessor::new(c)),
        ProcessorConfig::Resource(c) => {
            Box::new(AttributesProcessor::new(Target::Resource, &c.attributes))
        }
        ProcessorConfig::Attributes(c) => {
            Box::new(AttributesProcessor::new(Target::Items, &c.actions))
        }
        ProcessorConfig::MemoryLimiter(_) => Box::new(MemoryLimiterStage),
        ProcessorConfig::Redaction(_) => match redactions.get(proc_id) {
            Some(r) => Box::new(r.processor::<T>(telemetry)),
            None => return Ok(None),
        },
        ProcessorConfig::Transform(c) => {
            let counters = telemetry.transform_errors(pipeline, &proc_id.to_string());
            TransformProcessor::new(c, counters)
                .map(|p| Box::new(p) as Box<dyn Processor<T>>)
                .map_err(|e| format!("processors.{proc_id}: {e}"))?
        }
        ProcessorConfig::TailSampling(c) => {
            tail_sampling::<T>(c, telemetry, pipeline, &proc_id.to_string())
                .map_err(|e| format!("processors.{proc_id}: {e}"))?
        }
        ProcessorConfig::CardinalityLimit(c) => {
            cardinality_limit::<T>(c, telemetry, pipeline, &proc_id.to_string(), state)
                .map_err(|e| format!("processors.{proc_id}: {e}"))?
        }
    };
    Ok(Some(stage))
}

/// Builds `cardinality_limit` for a pipeline of signal `T`, which validation has checked is metrics. Its
/// admitted series live in `state` (the queue's state store) under the pipeline's and the processor's
/// names; without one (`outpost test`) they are kept in memory only.
fn cardinality_limit<T: OtlpSignal>(
    cfg: &CardinalityLimitConfig,
    telemetry: &Telemetry,
    pipeline: &str,
    id: &str,
    state: Option<StateStore>,
) -> Result<Box<dyn Processor<T>>, String> {
    let metrics = telemetry.cardinality(pipeline, id);
    let stage: Box<dyn Processor<Metrics>> =
        Box::new(CardinalityLimit::new(cfg, metrics, (pipeline, id), state)?);
    let any: Box<dyn std::any::Any> = Box::new(stage);
    any.downcast::<Box<dyn Processor<T>>>()
        .map(|b| *b)
        .map_err(|_| "cardinality_limit works on metrics pipelines only".to_string())
}

/// Builds `tail_sampling` for a pipeline of signal `T`, which validation has checked is traces.
fn tail_sampling<T: OtlpSignal>(
    cfg: &outpost_config::TailSamplingConfig,
    telemetry: &Telemetry,
    pipeline: &str,
    id: &str,
) -> Result<Box<dyn Processor<T>>, String> {
    let names: Vec<&str> = cfg.policies.iter().map(|p| p.name.as_str()).collect();
    let metrics = telemetry.tail_sampling(pipeline, id, &names);
    let stage: Box<dyn Processor<Traces>> = Box::new(TailSampling::new(cfg, metrics)?);
    // The processor exists for traces only; for T = Traces this downcast is the identity.
    let any: Box<dyn std::any::Any> = Box::new(stage);
    any.downcast::<Box<dyn Processor<T>>>()
        .map(|b| *b)
        .map_err(|_| "tail_sampling works on traces pipelines only".to_string())
}

/// The aggregator of a summarizing connector reading signal `T`, and its flush interval.
pub fn summarizer<T: OtlpSignal>(
    connector: &ConnectorConfig,
) -> Result<(Box<dyn Summarizer<T>>, Duration), String> {
    let boxed: Box<dyn std::any::Any> = match connector {
        ConnectorConfig::SpanMetrics(c) => {
            let agg: Box<dyn Summarizer<Traces>> = Box::new(SpanMetrics::new(c));
            return downcast::<T, Traces>(agg, "spanmetrics reads traces only")
                .map(|a| (a, c.metrics_flush_interval.get()));
        }
        ConnectorConfig::Count(c) => match T::SIGNAL {
            Signal::Traces => {
                Box::new(Box::new(Count::new(c, T::SIGNAL)?) as Box<dyn Summarizer<Traces>>)
            }
            Signal::Metrics => {
                Box::new(Box::new(Count::new(c, T::SIGNAL)?) as Box<dyn Summarizer<Metrics>>)
            }
            Signal::Logs => {
                Box::new(Box::new(Count::new(c, T::SIGNAL)?) as Box<dyn Summarizer<Logs>>)
            }
        },
        ConnectorConfig::Forward(_) => return Err("forward does not summarize".into()),
    };
    let interval = match connector {
        ConnectorConfig::Count(c) => c.flush_interval.get(),
        _ => Duration::from_secs(60),
    };
    boxed
        .downcast::<Box<dyn Summarizer<T>>>()
        .map(|b| (*b, interval))
        .map_err(|_| "unsupported input signal".to_string())
}

fn downcast<T: OtlpSignal, S: 'static>(
    agg: Box<dyn Summarizer<S>>,
    err: &str,
) -> Result<Box<dyn Summarizer<T>>, String> {
    let any: Box<dyn std::any::Any> = Box::new(agg);
    any.downcast::<Box<dyn Summarizer<T>>>()
        .map(|b| *b)
        .map_err(|_| err.to_string())
}
