//! Topology: turns a validated [`Config`] into running tasks, and stops them in an order that loses
//! nothing.
//!
//! Start is downstream-first: exporters, then connectors and pipelines, then receivers, so no receiver
//! accepts data before the path out exists. Stop is upstream-first: receivers stop accepting and, at the
//! same moment, pipelines start draining (their processors give up held data), so requests in flight —
//! which wait for their data to leave the pipeline — are answered and the receivers can finish. Their
//! ending drops the pipeline inputs; each pipeline then closes its outputs; connectors end when their
//! upstream does, closing the pipelines they feed; exporters deliver what is left in their channels and
//! end. All of it runs under one deadline, after which what is still running is aborted and said so in
//! the log; requests whose data was lost that way are answered UNAVAILABLE, never OK.
//!
//! Everything per signal goes through one generic [`SignalBuild`], so traces, metrics and logs are
//! wired by the same code.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use outpost_config::{
    ComponentId, Config, ConnectorConfig, PipelineId, ProcessorConfig, ReceiverConfig, Signal,
};
use outpost_pipelines::processors::attributes::{AttributesProcessor, Target};
use outpost_pipelines::processors::batch::BatchProcessor;
use outpost_pipelines::processors::memory_limiter::{self, MemoryLimiterStage};
use outpost_pipelines::{
    Batch, ByteBudget, Logs, Metrics, Output, Pipeline, PipelineInput, Processor, ProcessorChain,
    Telemetry, Traces,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::exporters;
use crate::otlp::OtlpSignal;
use crate::receivers::{self, Inputs, InputsOf};

/// Batches waiting for an exporter before its pipeline blocks.
const EXPORTER_CAPACITY: usize = 4;

/// A running topology.
pub struct Running {
    stop_receivers: CancellationToken,
    drain_pipelines: CancellationToken,
    receivers: Vec<JoinHandle<()>>,
    pipelines: Vec<JoinHandle<()>>,
    connectors: Vec<JoinHandle<()>>,
    exporters: Vec<JoinHandle<()>>,
}

/// Starts everything `config` describes. On any error nothing is left running and every error is
/// returned, each naming its config key.
pub async fn start(config: &Config, telemetry: &Telemetry) -> Result<Running, Vec<String>> {
    let mut errors = Vec::new();
    let budgets: HashMap<ComponentId, Arc<ByteBudget>> = config
        .processors
        .iter()
        .filter_map(|(id, p)| match p {
            ProcessorConfig::MemoryLimiter(c) => Some((
                id.clone(),
                memory_limiter::budget(&id.to_string(), c, telemetry),
            )),
            _ => None,
        })
        .collect();

    let mut inputs: HashMap<ComponentId, Inputs> = HashMap::new();
    let mut tasks = Tasks::default();
    let drain_pipelines = CancellationToken::new();
    let mut ctx = BuildContext {
        config,
        telemetry,
        budgets: &budgets,
        drain: drain_pipelines.clone(),
        exporters: exporters::Factory::default(),
    };
    SignalBuild::<Traces>::run(&mut ctx, &mut inputs, &mut tasks, &mut errors);
    SignalBuild::<Metrics>::run(&mut ctx, &mut inputs, &mut tasks, &mut errors);
    SignalBuild::<Logs>::run(&mut ctx, &mut inputs, &mut tasks, &mut errors);

    let stop_receivers = CancellationToken::new();
    let mut receiver_tasks = Vec::new();
    if errors.is_empty() {
        for (id, receiver) in &config.receivers {
            let Some(receiver_inputs) = inputs.remove(id) else {
                continue; // defined but unused: validation warned about it
            };
            match receiver {
                ReceiverConfig::Otlp(cfg) => {
                    match receivers::otlp::start(
                        id,
                        cfg,
                        receiver_inputs,
                        telemetry,
                        stop_receivers.clone(),
                    )
                    .await
                    {
                        Ok(h) => receiver_tasks.extend(h),
                        Err(e) => errors.extend(e),
                    }
                }
            }
        }
    }
    // Inputs not handed to a receiver must not keep their pipelines alive.
    drop(inputs);

    let running = Running {
        stop_receivers,
        drain_pipelines,
        receivers: receiver_tasks,
        pipelines: tasks.pipelines,
        connectors: tasks.connectors,
        exporters: tasks.exporters,
    };
    if errors.is_empty() {
        Ok(running)
    } else {
        running.shutdown(Duration::from_secs(5)).await;
        Err(errors)
    }
}

impl Running {
    /// Stops upstream-first (see the module docs) within `deadline`. Returns whether everything drained.
    pub async fn shutdown(self, deadline: Duration) -> bool {
        self.stop_receivers.cancel();
        self.drain_pipelines.cancel();
        let stages = [
            ("receivers", self.receivers),
            ("pipelines", self.pipelines),
            ("connectors", self.connectors),
            ("exporters", self.exporters),
        ];
        let aborts: Vec<_> = stages
            .iter()
            .flat_map(|(_, hs)| hs.iter().map(JoinHandle::abort_handle))
            .collect();
        let drain = async {
            for (stage, handles) in stages {
                for h in handles {
                    if let Err(e) = h.await {
                        tracing::error!(stage, error = %e, "a task ended abnormally during shutdown");
                    }
                }
                tracing::debug!(stage, "stopped");
            }
        };
        match tokio::time::timeout(deadline, drain).await {
            Ok(()) => true,
            Err(_) => {
                let left = aborts.iter().filter(|a| !a.is_finished()).count();
                tracing::warn!(
                    tasks = left,
                    deadline = ?deadline,
                    "shutdown deadline passed; aborting what is still running (data still in memory is lost)"
                );
                for a in aborts {
                    a.abort();
                }
                false
            }
        }
    }
}

#[derive(Default)]
struct Tasks {
    pipelines: Vec<JoinHandle<()>>,
    connectors: Vec<JoinHandle<()>>,
    exporters: Vec<JoinHandle<()>>,
}

struct BuildContext<'a> {
    config: &'a Config,
    telemetry: &'a Telemetry,
    budgets: &'a HashMap<ComponentId, Arc<ByteBudget>>,
    drain: CancellationToken,
    /// Shares what one exporter id uses across its signals (one file writer per path).
    exporters: exporters::Factory,
}

/// Wiring of all pipelines of one signal.
struct SignalBuild<T>(std::marker::PhantomData<T>);

impl<T: OtlpSignal + InputsOf> SignalBuild<T> {
    fn run(
        ctx: &mut BuildContext<'_>,
        receiver_inputs: &mut HashMap<ComponentId, Inputs>,
        tasks: &mut Tasks,
        errors: &mut Vec<String>,
    ) {
        let config = ctx.config;
        let pipelines: Vec<(&PipelineId, _)> = config
            .service
            .pipelines
            .iter()
            .filter(|(id, _)| id.signal == T::SIGNAL)
            .collect();
        if pipelines.is_empty() {
            return;
        }

        // One channel per exporter (or connector) of this signal, shared by every pipeline naming it.
        let mut senders: HashMap<ComponentId, mpsc::Sender<T>> = HashMap::new();
        let mut channel_ends: Vec<(ComponentId, mpsc::Receiver<T>)> = Vec::new();
        let mut built = Vec::new();
        let mut inputs_by_pipeline: HashMap<PipelineId, PipelineInput<T>> = HashMap::new();
        for (pid, p) in &pipelines {
            let pname = pid.to_string();
            let mut outputs = Vec::new();
            for eid in &p.exporters {
                let tx = senders.entry(eid.clone()).or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(EXPORTER_CAPACITY);
                    channel_ends.push((eid.clone(), rx));
                    tx
                });
                outputs.push(Output {
                    name: eid.to_string(),
                    tx: tx.clone(),
                    metrics: ctx.telemetry.exporter(&eid.to_string(), T::SIGNAL),
                });
            }
            let mut chain = ProcessorChain::default();
            let mut budget = None;
            for proc_id in &p.processors {
                let Some(cfg) = config.processors.get(proc_id) else {
                    errors.push(format!(
                        "service.pipelines.{pid}.processors: '{proc_id}' is not defined"
                    ));
                    continue;
                };
                let stage: Box<dyn Processor<T>> = match cfg {
                    ProcessorConfig::Batch(c) => Box::new(BatchProcessor::new(c)),
                    ProcessorConfig::Resource(c) => {
                        Box::new(AttributesProcessor::new(Target::Resource, &c.attributes))
                    }
                    ProcessorConfig::Attributes(c) => {
                        Box::new(AttributesProcessor::new(Target::Items, &c.actions))
                    }
                    ProcessorConfig::MemoryLimiter(_) => {
                        budget = ctx.budgets.get(proc_id).cloned();
                        Box::new(MemoryLimiterStage)
                    }
                };
                chain.push(stage, ctx.telemetry.processor(&pname, &proc_id.to_string()));
            }
            let (pipeline, input) = Pipeline::new(&pname, chain, outputs, budget);
            built.push(pipeline);
            inputs_by_pipeline.insert((*pid).clone(), input);
        }
        drop(senders);

        // Receivers (and connectors acting as receivers) get the inputs of the pipelines that list them.
        for (pid, p) in &pipelines {
            for rid in &p.receivers {
                if config.receivers.contains_key(rid) {
                    T::of_mut(receiver_inputs.entry(rid.clone()).or_default())
                        .push(inputs_by_pipeline[*pid].clone());
                }
            }
        }

        for (eid, rx) in channel_ends {
            if let Some(connector) = config.connectors.get(&eid) {
                let targets: Vec<PipelineInput<T>> = pipelines
                    .iter()
                    .filter(|(_, p)| p.receivers.contains(&eid))
                    .map(|(pid, _)| inputs_by_pipeline[*pid].clone())
                    .collect();
                match connector {
                    ConnectorConfig::Forward(_) => {
                        tasks.connectors.push(tokio::spawn(forward(rx, targets)))
                    }
                }
            } else if let Some(cfg) = config.exporters.get(&eid) {
                match ctx.exporters.build::<T>(&eid, cfg) {
                    Ok(exporter) => {
                        let metrics = ctx.telemetry.exporter(&eid.to_string(), T::SIGNAL);
                        tasks.exporters.push(tokio::spawn(exporters::run(
                            eid.to_string(),
                            exporter,
                            rx,
                            metrics,
                        )));
                    }
                    Err(e) => errors.push(e),
                }
            } else {
                errors.push(format!(
                    "'{eid}' is not defined under exporters or connectors"
                ));
            }
        }
        drop(inputs_by_pipeline);
        for pipeline in built {
            tasks
                .pipelines
                .push(tokio::spawn(pipeline.run(ctx.drain.clone())));
        }
    }
}

/// Connector `forward`: hands one pipeline's output to other pipelines of the same signal, waiting for
/// room so backpressure reaches the upstream pipeline.
async fn forward<T: OtlpSignal>(mut rx: mpsc::Receiver<T>, targets: Vec<PipelineInput<T>>) {
    while let Some(data) = rx.recv().await {
        let last = targets.len().saturating_sub(1);
        let mut data = Some(data);
        for (i, t) in targets.iter().enumerate() {
            let payload = if i == last {
                data.take().expect("taken once, by the last target")
            } else {
                data.as_ref()
                    .expect("present until the last target")
                    .clone()
            };
            if t.send(Batch::new(payload)).await.is_err() {
                tracing::error!(
                    pipeline = t.id(),
                    "forward connector: downstream pipeline stopped"
                );
            }
        }
    }
}

/// The signals a config uses, for logging at start.
pub fn signals_in_use(config: &Config) -> Vec<Signal> {
    let mut s: Vec<Signal> = config.service.pipelines.keys().map(|p| p.signal).collect();
    s.sort();
    s.dedup();
    s
}
