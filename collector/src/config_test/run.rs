//! Running one test: the input through the fed pipelines' processors, and what leaves them on through
//! the connectors they export to, into the pipelines those feed.
//!
//! Everything is in-process and synchronous: the processor chains are built by [`crate::stages`] as the
//! agent builds them, but nothing is queued and nothing reaches an exporter. What leaves a pipeline's
//! processors is its output (what the agent would append to the queue). Time-driven processors are
//! woken deterministically: each deadline they ask for is treated as reached at once, so a
//! `tail_sampling` decision (after `decision_wait`) or a `batch` timeout happens without waiting, and the
//! chain is drained at the end so nothing stays held. A summarizing connector aggregates the whole
//! output and is flushed once.

use std::collections::HashMap;

use indexmap::IndexMap;
use outpost_config::{Config, ConnectorConfig, PipelineId};
use outpost_pipelines::processors::redaction::{Redact, Redaction};
use outpost_pipelines::processors::transform::Transformable;
use outpost_pipelines::{Batch, Metrics, ProcessorChain, SignalData, Telemetry};

use super::spec::Data;
use crate::otlp::OtlpSignal;
use crate::stages;

/// Wake-ups of time-driven processors per pipeline run before giving up (a processor that keeps asking
/// for another deadline would otherwise never let a test end).
const MAX_WAKEUPS: usize = 100_000;
/// Connector hops from the fed pipeline; validation refuses cycles, this is a second guard.
const MAX_DEPTH: usize = 16;

pub(super) struct Harness<'a> {
    config: &'a Config,
    telemetry: Telemetry,
    redactions: &'a HashMap<outpost_config::ComponentId, Redaction>,
    /// What entered each pipeline that was reached (to tell, for `sampled`, which spans were dropped).
    pub inputs: IndexMap<PipelineId, Data>,
    /// Output per pipeline, in the order pipelines produced it.
    pub outputs: IndexMap<PipelineId, Data>,
}

/// The signal types a test can carry, with the conversions to and from [`Data`].
pub(super) trait TestSignal: OtlpSignal + Redact + Transformable {
    fn into_data(self) -> Data;
    fn from_data(data: Data) -> Option<Self>;
}

macro_rules! test_signal {
    ($t:ty, $v:ident) => {
        impl TestSignal for $t {
            fn into_data(self) -> Data {
                Data::$v(self)
            }
            fn from_data(data: Data) -> Option<Self> {
                match data {
                    Data::$v(d) => Some(d),
                    _ => None,
                }
            }
        }
    };
}
test_signal!(outpost_pipelines::Traces, Traces);
test_signal!(outpost_pipelines::Metrics, Metrics);
test_signal!(outpost_pipelines::Logs, Logs);

impl<'a> Harness<'a> {
    pub fn new(
        config: &'a Config,
        redactions: &'a HashMap<outpost_config::ComponentId, Redaction>,
    ) -> Self {
        Self {
            config,
            // Each test counts into its own registry: nothing is exposed, but the stages need one.
            telemetry: Telemetry::new(),
            redactions,
            inputs: IndexMap::new(),
            outputs: IndexMap::new(),
        }
    }

    pub fn feed(&mut self, pid: &PipelineId, data: Data) -> Result<(), String> {
        self.feed_at(pid, data, 0)
    }

    fn feed_at(&mut self, pid: &PipelineId, data: Data, depth: usize) -> Result<(), String> {
        use outpost_pipelines::{Logs, Traces};
        match data {
            Data::Traces(d) => self.run::<Traces>(pid, d, depth),
            Data::Metrics(d) => self.run::<Metrics>(pid, d, depth),
            Data::Logs(d) => self.run::<Logs>(pid, d, depth),
        }
    }

    fn run<T: TestSignal>(
        &mut self,
        pid: &PipelineId,
        data: T,
        depth: usize,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "service.pipelines.{pid}: more than {MAX_DEPTH} connector hops from the fed pipeline"
            ));
        }
        let config = self.config;
        let pipeline = config
            .service
            .pipelines
            .get(pid)
            .ok_or_else(|| format!("no pipeline '{pid}'"))?;
        let pname = pid.to_string();
        let mut chain = ProcessorChain::<T>::default();
        for proc_id in &pipeline.processors {
            let cfg = config.processors.get(proc_id).ok_or_else(|| {
                format!("service.pipelines.{pid}.processors: '{proc_id}' is not defined")
            })?;
            if let Some(stage) = stages::processor::<T>(
                proc_id,
                cfg,
                &pname,
                &self.telemetry,
                self.redactions,
                None,
            )? {
                chain.push(
                    stage,
                    self.telemetry.processor(&pname, &proc_id.to_string()),
                );
            }
        }

        accumulate(&mut self.inputs, pid, data.clone());
        let mut out = Vec::new();
        chain.process(Batch::new(data), &mut out);
        let mut wakeups = 0;
        while let Some(at) = chain.next_deadline() {
            wakeups += 1;
            if wakeups > MAX_WAKEUPS {
                return Err(format!(
                    "service.pipelines.{pid}: a processor kept asking to be woken; its held data was drained"
                ));
            }
            chain.on_deadline(at, &mut out);
        }
        chain.drain(&mut out);
        let mut output = T::default();
        for batch in out {
            output.append(batch.into_parts().0);
        }

        accumulate(&mut self.outputs, pid, output.clone());

        for eid in &pipeline.exporters {
            let Some(connector) = config.connectors.get(eid) else {
                continue; // an exporter: the output stops here
            };
            let downstream: Vec<PipelineId> = config
                .service
                .pipelines
                .iter()
                .filter(|(_, p)| p.receivers.contains(eid))
                .map(|(id, _)| id.clone())
                .collect();
            match connector {
                ConnectorConfig::Forward(_) => {
                    for d in downstream.iter().filter(|d| d.signal == pid.signal) {
                        self.run::<T>(d, output.clone(), depth + 1)?;
                    }
                }
                ConnectorConfig::SpanMetrics(_) | ConnectorConfig::Count(_) => {
                    let (mut agg, _interval) = stages::summarizer::<T>(connector)
                        .map_err(|e| format!("connectors.{eid}: {e}"))?;
                    agg.consume(&output);
                    let metrics = agg.flush(outpost_pipelines::connectors::unix_nanos_now());
                    if metrics.item_count() == 0 {
                        continue;
                    }
                    for d in downstream
                        .iter()
                        .filter(|d| d.signal == outpost_config::Signal::Metrics)
                    {
                        self.run::<Metrics>(d, metrics.clone(), depth + 1)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Appends `data` to what `map` holds for `pid`.
fn accumulate<T: TestSignal>(map: &mut IndexMap<PipelineId, Data>, pid: &PipelineId, data: T) {
    let mut all = map
        .get(pid)
        .cloned()
        .and_then(T::from_data)
        .unwrap_or_default();
    all.append(data);
    map.insert(pid.clone(), all.into_data());
}
