//! Topology: turns a validated [`Config`] into running tasks, and stops them in an order that loses
//! nothing.
//!
//! The disk queue is opened first; every pipeline appends to its own stream, and every exporter and
//! connector of a pipeline reads that stream through its own cursor (named after the component id).
//!
//! Start is downstream-first: exporters and connectors, then pipelines, then receivers, so no receiver
//! accepts data before the path out exists. Stop is upstream-first: receivers stop accepting and, at the
//! same moment, pipelines start draining (their processors give up held data into the queue), so requests
//! in flight — which wait for their data to be queued — are answered and the receivers can finish. Their
//! ending drops the inputs of the pipelines they feed, which then end. Exporters and connectors are then
//! told to finish: they deliver what is already queued while their destination accepts it, and leave the
//! rest queued for the next start. The queue is closed last. All of it runs under one deadline, after
//! which what is still running is aborted and said so in the log; requests whose data was lost that way
//! are answered UNAVAILABLE, never OK.
//!
//! Everything per signal goes through one generic [`SignalBuild`], so traces, metrics and logs are
//! wired by the same code.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use outpost_config::{
    CardinalityLimitConfig, ComponentId, Config, ConnectorConfig, ExporterConfig, OverflowPolicy,
    PipelineId, ProcessorConfig, ReceiverConfig, Signal, TailSamplingConfig,
};
use outpost_pipelines::connectors::count::Count;
use outpost_pipelines::connectors::spanmetrics::SpanMetrics;
use outpost_pipelines::connectors::Summarizer;
use outpost_pipelines::processors::attributes::{AttributesProcessor, Target};
use outpost_pipelines::processors::batch::BatchProcessor;
use outpost_pipelines::processors::cardinality::CardinalityLimit;
use outpost_pipelines::processors::memory_limiter::{self, MemoryLimiterStage};
use outpost_pipelines::processors::redaction::{Redact, Redaction};
use outpost_pipelines::processors::tail_sampling::TailSampling;
use outpost_pipelines::processors::transform::{TransformProcessor, Transformable};
use outpost_pipelines::queue::{
    Cursor, MaxLag, Overflow, Queue, QueueError, QueueOptions, StartAt, Stream, SyncPolicy,
};
use outpost_pipelines::{
    ByteBudget, Logs, Metrics, Pipeline, PipelineInput, Processor, ProcessorChain, Refusal,
    Telemetry, Traces,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::exporters;
use crate::otlp::OtlpSignal;
use crate::receivers::{self, Inputs, InputsOf};

/// Records a connector reads from its upstream stream at once.
const CONNECTOR_BATCH: usize = 16;

/// A running topology.
pub struct Running {
    queue: Queue,
    stop_receivers: CancellationToken,
    drain_pipelines: CancellationToken,
    finish_readers: CancellationToken,
    receivers: Vec<JoinHandle<()>>,
    /// Pipelines fed by receivers only; they end once the receivers have.
    pipelines: Vec<JoinHandle<()>>,
    /// Pipelines fed by a connector; they end once their connectors have.
    downstream_pipelines: Vec<JoinHandle<()>>,
    connectors: Vec<JoinHandle<()>>,
    exporters: Vec<JoinHandle<()>>,
}

/// Starts everything `config` describes. On any error nothing is left running and every error is
/// returned, each naming its config key.
pub async fn start(config: &Config, telemetry: &Telemetry) -> Result<Running, Vec<String>> {
    let mut errors = Vec::new();
    let queue = Queue::open(queue_options(config), telemetry).map_err(|e| {
        vec![format!(
            "queue.directory: cannot open the disk queue in '{}': {e}",
            queue_dir(&config.data_dir()).display()
        )]
    })?;
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

    // Each redaction processor's rules are compiled once and shared by the pipelines that list it.
    let mut redactions: HashMap<ComponentId, Redaction> = HashMap::new();
    for (id, p) in &config.processors {
        if let ProcessorConfig::Redaction(c) = p {
            match Redaction::new(c) {
                Ok(r) => {
                    redactions.insert(id.clone(), r);
                }
                Err(e) => errors.push(format!("processors.{id}: {e}")),
            }
        }
    }

    let mut inputs: HashMap<ComponentId, Inputs> = HashMap::new();
    let mut tasks = Tasks::default();
    let drain_pipelines = CancellationToken::new();
    let finish_readers = CancellationToken::new();
    let mut ctx = BuildContext {
        config,
        telemetry,
        budgets: &budgets,
        redactions: &redactions,
        queue: &queue,
        drain: drain_pipelines.clone(),
        finish: finish_readers.clone(),
        exporters: exporters::Factory::default(),
        metrics_inputs: HashMap::new(),
    };
    // Metrics first: summarizing connectors of every signal feed metrics pipelines.
    SignalBuild::<Metrics>::run(&mut ctx, &mut inputs, &mut tasks, &mut errors);
    SignalBuild::<Traces>::run(&mut ctx, &mut inputs, &mut tasks, &mut errors);
    SignalBuild::<Logs>::run(&mut ctx, &mut inputs, &mut tasks, &mut errors);
    ctx.metrics_inputs.clear();

    let stop_receivers = CancellationToken::new();
    let mut receiver_tasks = Vec::new();
    if errors.is_empty() {
        for (id, receiver) in &config.receivers {
            let Some(receiver_inputs) = inputs.remove(id) else {
                continue; // defined but unused: validation warned about it
            };
            let started = match receiver {
                ReceiverConfig::Otlp(cfg) => {
                    receivers::otlp::start(
                        id,
                        cfg,
                        receiver_inputs,
                        telemetry,
                        stop_receivers.clone(),
                    )
                    .await
                }
                ReceiverConfig::Filelog(cfg) => receivers::filelog::start(
                    id,
                    cfg,
                    receiver_inputs,
                    telemetry,
                    &queue,
                    stop_receivers.clone(),
                )
                .map(|h| vec![h]),
                ReceiverConfig::Syslog(cfg) => {
                    receivers::syslog::start(
                        id,
                        cfg,
                        receiver_inputs,
                        telemetry,
                        stop_receivers.clone(),
                    )
                    .await
                }
                ReceiverConfig::Prometheus(cfg) => {
                    receivers::prometheus::start(
                        id,
                        cfg,
                        receiver_inputs,
                        telemetry,
                        stop_receivers.clone(),
                    )
                    .await
                }
                ReceiverConfig::PrometheusRemoteWrite(cfg) => {
                    receivers::prometheus_remote_write::start(
                        id,
                        cfg,
                        receiver_inputs,
                        telemetry,
                        stop_receivers.clone(),
                    )
                    .await
                }
            };
            match started {
                Ok(h) => receiver_tasks.extend(h),
                Err(e) => errors.extend(e),
            }
        }
    }
    // Inputs not handed to a receiver must not keep their pipelines alive.
    drop(inputs);

    let running = Running {
        queue,
        stop_receivers,
        drain_pipelines,
        finish_readers,
        receivers: receiver_tasks,
        pipelines: tasks.pipelines,
        downstream_pipelines: tasks.downstream_pipelines,
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
        let aborts: Vec<_> = [
            &self.receivers,
            &self.pipelines,
            &self.downstream_pipelines,
            &self.connectors,
            &self.exporters,
        ]
        .iter()
        .flat_map(|hs| hs.iter().map(JoinHandle::abort_handle))
        .collect();
        let finish = self.finish_readers.clone();
        let drain = async move {
            join_stage("receivers", self.receivers).await;
            join_stage("pipelines", self.pipelines).await;
            finish.cancel();
            join_stage("connectors", self.connectors).await;
            join_stage("pipelines fed by connectors", self.downstream_pipelines).await;
            join_stage("exporters", self.exporters).await;
        };
        let clean = match tokio::time::timeout(deadline, drain).await {
            Ok(()) => true,
            Err(_) => {
                let left = aborts.iter().filter(|a| !a.is_finished()).count();
                tracing::warn!(
                    tasks = left,
                    deadline = ?deadline,
                    "shutdown deadline passed; aborting what is still running (requests not yet queued are answered UNAVAILABLE)"
                );
                for a in aborts {
                    a.abort();
                }
                false
            }
        };
        self.queue.close().await;
        clean
    }
}

async fn join_stage(stage: &str, handles: Vec<JoinHandle<()>>) {
    for h in handles {
        if let Err(e) = h.await {
            tracing::error!(stage, error = %e, "a task ended abnormally during shutdown");
        }
    }
    tracing::debug!(stage, "stopped");
}

/// Where the queue's database lives inside the data directory: a folder of its own, beside the lock file
/// and the other state the data directory will hold.
pub fn queue_dir(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("queue")
}

/// The queue's options from `queue:` (sizes resolved against max_size).
pub fn queue_options(config: &Config) -> QueueOptions {
    let q = &config.queue;
    let max = q.max_size.bytes();
    QueueOptions {
        directory: queue_dir(&config.data_dir()),
        max_size: max,
        high_watermark: q.high_watermark.resolve(max),
        low_watermark: q.low_watermark.resolve(max),
        overflow: match q.overflow {
            OverflowPolicy::Block => Overflow::Block,
            OverflowPolicy::DropOldest => Overflow::DropOldest,
            OverflowPolicy::DropNewest => Overflow::DropNewest,
        },
        sync: match q.sync {
            outpost_config::SyncPolicy::Always => SyncPolicy::Always,
            outpost_config::SyncPolicy::Interval(d) => SyncPolicy::Interval(d),
            outpost_config::SyncPolicy::Never => SyncPolicy::Never,
        },
        max_age: q.max_age.map(|d| d.get()),
    }
}

#[derive(Default)]
struct Tasks {
    pipelines: Vec<JoinHandle<()>>,
    downstream_pipelines: Vec<JoinHandle<()>>,
    connectors: Vec<JoinHandle<()>>,
    exporters: Vec<JoinHandle<()>>,
}

struct BuildContext<'a> {
    config: &'a Config,
    telemetry: &'a Telemetry,
    budgets: &'a HashMap<ComponentId, Arc<ByteBudget>>,
    redactions: &'a HashMap<ComponentId, Redaction>,
    queue: &'a Queue,
    drain: CancellationToken,
    finish: CancellationToken,
    /// Shares what one exporter id uses across its signals (one file writer per path).
    exporters: exporters::Factory,
    /// Inputs of the metrics pipelines, for summarizing connectors of any signal (metrics are built
    /// first). Dropped once everything is wired, so these pipelines can end.
    metrics_inputs: HashMap<PipelineId, PipelineInput<Metrics>>,
}

/// Wiring of all pipelines of one signal.
struct SignalBuild<T>(std::marker::PhantomData<T>);

impl<T: OtlpSignal + InputsOf + Redact + Transformable> SignalBuild<T> {
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

        let gate = (config.queue.overflow == OverflowPolicy::Block).then(|| ctx.queue.clone());
        let mut built = Vec::new();
        let mut readers: Vec<(PipelineId, ComponentId, Stream)> = Vec::new();
        let mut inputs_by_pipeline: HashMap<PipelineId, PipelineInput<T>> = HashMap::new();
        for (pid, p) in &pipelines {
            let pname = pid.to_string();
            let stream = match ctx.queue.stream(&pname) {
                Ok(s) => s,
                Err(e) => {
                    errors.push(format!(
                        "service.pipelines.{pid}: cannot open its queue stream: {e}"
                    ));
                    continue;
                }
            };
            // Cursors of exporters no longer in this pipeline would pin its records on disk forever.
            let live: Vec<String> = p.exporters.iter().map(ToString::to_string).collect();
            let live_refs: Vec<&str> = live.iter().map(String::as_str).collect();
            if let Err(e) = ctx.queue.retain_cursors(&pname, &live_refs) {
                tracing::warn!(pipeline = %pid, error = %e, "cannot remove the cursors of removed exporters");
            }
            for eid in &p.exporters {
                readers.push(((*pid).clone(), eid.clone(), stream.clone()));
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
                    ProcessorConfig::Redaction(_) => match ctx.redactions.get(proc_id) {
                        Some(r) => Box::new(r.processor::<T>(ctx.telemetry)),
                        // Its build error is already reported.
                        None => continue,
                    },
                    ProcessorConfig::Transform(c) => {
                        let counters = ctx.telemetry.transform_errors(&pname, &proc_id.to_string());
                        match TransformProcessor::new(c, counters) {
                            Ok(p) => Box::new(p),
                            Err(e) => {
                                errors.push(format!("processors.{proc_id}: {e}"));
                                continue;
                            }
                        }
                    }
                    ProcessorConfig::CardinalityLimit(c) => {
                        match cardinality_limit::<T>(c, ctx, &pname, &proc_id.to_string()) {
                            Ok(stage) => stage,
                            Err(e) => {
                                errors.push(format!("processors.{proc_id}: {e}"));
                                continue;
                            }
                        }
                    }
                    ProcessorConfig::TailSampling(c) => {
                        match tail_sampling::<T>(c, ctx.telemetry, &pname, &proc_id.to_string()) {
                            Ok(stage) => stage,
                            Err(e) => {
                                errors.push(format!("processors.{proc_id}: {e}"));
                                continue;
                            }
                        }
                    }
                };
                chain.push(stage, ctx.telemetry.processor(&pname, &proc_id.to_string()));
            }
            let (pipeline, input) = Pipeline::new(&pname, chain, stream, budget, gate.clone());
            let fed_by_connector = p
                .receivers
                .iter()
                .any(|r| config.connectors.contains_key(r));
            built.push((pipeline, fed_by_connector));
            inputs_by_pipeline.insert((*pid).clone(), input);
        }

        if let Some(m) = (&inputs_by_pipeline as &dyn std::any::Any)
            .downcast_ref::<HashMap<PipelineId, PipelineInput<Metrics>>>()
        {
            ctx.metrics_inputs = m.clone();
        }

        // Receivers (and connectors acting as receivers) get the inputs of the pipelines that list them.
        for (pid, p) in &pipelines {
            for rid in &p.receivers {
                if let (true, Some(input)) = (
                    config.receivers.contains_key(rid),
                    inputs_by_pipeline.get(*pid),
                ) {
                    T::of_mut(receiver_inputs.entry(rid.clone()).or_default()).push(input.clone());
                }
            }
        }

        for (pid, eid, stream) in readers {
            let delivery = config.delivery(&eid);
            let sq = &delivery.sending_queue;
            let start_at = match sq.start_at {
                outpost_config::StartAt::Oldest => StartAt::Oldest,
                outpost_config::StartAt::Newest => StartAt::Newest,
            };
            let max_lag = sq.max_lag.as_ref().map(|l| MaxLag {
                bytes: l.bytes.map(|b| b.bytes()),
                age: l.age.map(|a| a.get()),
            });
            let cursor = match stream.cursor(&eid.to_string(), start_at, max_lag) {
                Ok(c) => c,
                Err(e) => {
                    errors.push(format!("service.pipelines.{pid}.exporters: cannot open the queue cursor of '{eid}': {e}"));
                    continue;
                }
            };
            if let Some(connector) = config.connectors.get(&eid) {
                let targets: Vec<PipelineInput<T>> = pipelines
                    .iter()
                    .filter(|(_, p)| p.receivers.contains(&eid))
                    .filter_map(|(pid, _)| inputs_by_pipeline.get(*pid).cloned())
                    .collect();
                match connector {
                    ConnectorConfig::Forward(_) => tasks.connectors.push(tokio::spawn(forward(
                        eid.to_string(),
                        cursor,
                        targets,
                        ctx.finish.clone(),
                    ))),
                    ConnectorConfig::SpanMetrics(_) | ConnectorConfig::Count(_) => {
                        let metric_targets: Vec<PipelineInput<Metrics>> = config
                            .service
                            .pipelines
                            .iter()
                            .filter(|(mpid, mp)| {
                                mpid.signal == Signal::Metrics && mp.receivers.contains(&eid)
                            })
                            .filter_map(|(mpid, _)| ctx.metrics_inputs.get(mpid).cloned())
                            .collect();
                        match summarizer::<T>(connector) {
                            Ok((agg, interval)) => tasks.connectors.push(tokio::spawn(summarize(
                                eid.to_string(),
                                cursor,
                                agg,
                                interval,
                                metric_targets,
                                ctx.telemetry.connector(&eid.to_string()),
                                ctx.finish.clone(),
                            ))),
                            Err(e) => errors.push(format!("connectors.{eid}: {e}")),
                        }
                    }
                }
            } else if let Some(cfg) = config.exporters.get(&eid) {
                let bandwidth = ctx.exporters.bandwidth(&eid, &delivery);
                match ctx.exporters.build::<T>(&eid, cfg, bandwidth.clone()) {
                    Ok(exporter) => {
                        let metrics = ctx.telemetry.exporter(&eid.to_string(), T::SIGNAL);
                        let mut policy = exporters::Policy::new(&delivery, bandwidth);
                        if matches!(cfg, ExporterConfig::File(_) | ExporterConfig::Debug(_)) {
                            // Local outputs keep the queue's order.
                            policy.in_flight = 1;
                        }
                        tasks.exporters.push(tokio::spawn(exporters::run(
                            eid.to_string(),
                            exporter,
                            cursor,
                            metrics,
                            policy,
                            ctx.finish.clone(),
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
        for (pipeline, fed_by_connector) in built {
            let handle = tokio::spawn(pipeline.run(ctx.drain.clone()));
            if fed_by_connector {
                tasks.downstream_pipelines.push(handle);
            } else {
                tasks.pipelines.push(handle);
            }
        }
    }
}

/// Connector `forward`: reads one pipeline's queue stream and admits each record into the pipelines that
/// list the connector as a receiver. A record is acknowledged upstream only once every downstream pipeline
/// has queued it durably; a refusal downstream (its queue full) retries the record after a pause, so
/// backpressure holds data in the upstream queue instead of losing it.
async fn forward<T: OtlpSignal>(
    id: String,
    mut cursor: Cursor,
    targets: Vec<PipelineInput<T>>,
    finish: CancellationToken,
) {
    loop {
        let next = if finish.is_cancelled() {
            match tokio::time::timeout(
                Duration::from_millis(50),
                cursor.next_batch(CONNECTOR_BATCH),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => break,
            }
        } else {
            tokio::select! {
                r = cursor.next_batch(CONNECTOR_BATCH) => r,
                _ = finish.cancelled() => continue,
            }
        };
        let records = match next {
            Ok(r) => r,
            Err(QueueError::Closed) => break,
            Err(e) => {
                tracing::error!(connector = %id, error = %e, "cannot read the queue; retrying in 1s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for record in records {
            let data = match T::decode(record.payload.clone()) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(connector = %id, seq = record.seq, error = %e, "undecodable queue record skipped");
                    let _ = cursor.ack(record.seq);
                    continue;
                }
            };
            loop {
                match forward_once(&targets, &data).await {
                    Ok(()) => break,
                    Err(refusal) => {
                        tracing::warn!(connector = %id, reason = refusal.reason(), "downstream pipeline refused; retrying in 1s");
                        if finish.is_cancelled() {
                            return; // the record stays queued upstream for the next start
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            if let Err(e) = cursor.ack(record.seq) {
                tracing::error!(connector = %id, error = %e, "cannot advance the queue cursor; the record may be forwarded again");
            }
        }
    }
}

/// The aggregator of a summarizing connector reading signal `T`, and its flush interval.
fn summarizer<T: OtlpSignal>(
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

/// A summarizing connector (`spanmetrics`, `count`): reads every record of its upstream stream into its
/// aggregator and, every `interval` (and once more when told to finish), admits the aggregate into the
/// metrics pipelines that list it. Records are acknowledged upstream only after the aggregate that
/// includes them was durably queued downstream, so a crash recounts (at-least-once) instead of losing
/// counts.
async fn summarize<T: OtlpSignal>(
    id: String,
    mut cursor: Cursor,
    mut agg: Box<dyn Summarizer<T>>,
    interval: Duration,
    targets: Vec<PipelineInput<Metrics>>,
    (emitted, overflow): (
        prometheus_client::metrics::counter::Counter,
        prometheus_client::metrics::counter::Counter,
    ),
    finish: CancellationToken,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unacked: Vec<u64> = Vec::new();
    loop {
        let finishing = finish.is_cancelled();
        let next = if finishing {
            // Drained once nothing more arrives for a moment: then the final flush.
            tokio::time::timeout(
                Duration::from_millis(50),
                cursor.next_batch(CONNECTOR_BATCH),
            )
            .await
            .ok()
        } else {
            tokio::select! {
                r = cursor.next_batch(CONNECTOR_BATCH) => Some(r),
                _ = tick.tick() => None,
                _ = finish.cancelled() => continue,
            }
        };
        match next {
            Some(Ok(records)) => {
                for record in records {
                    match T::decode(record.payload.clone()) {
                        Ok(d) => agg.consume(&d),
                        Err(e) => {
                            tracing::error!(connector = %id, seq = record.seq, error = %e, "undecodable queue record skipped")
                        }
                    }
                    unacked.push(record.seq);
                }
                continue;
            }
            Some(Err(QueueError::Closed)) => break,
            Some(Err(e)) => {
                tracing::error!(connector = %id, error = %e, "cannot read the queue; retrying in 1s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            None => {}
        }
        // Flush: on the tick, or once the upstream is drained when finishing.
        overflow.inc_by(agg.take_overflow());
        let data = agg.flush(outpost_pipelines::connectors::unix_nanos_now());
        let points = outpost_pipelines::SignalData::item_count(&data);
        if points > 0 {
            loop {
                match forward_once(&targets, &data).await {
                    Ok(()) => break,
                    Err(refusal) => {
                        tracing::warn!(connector = %id, reason = refusal.reason(), "metrics pipeline refused the summary; retrying in 1s");
                        if finish.is_cancelled() {
                            return; // not acknowledged: recounted from the queue at the next start
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            emitted.inc_by(points as u64);
        }
        for seq in unacked.drain(..) {
            if let Err(e) = cursor.ack(seq) {
                tracing::error!(connector = %id, error = %e, "cannot advance the queue cursor; records may be counted again");
            }
        }
        if finishing {
            break;
        }
    }
}

/// Admits `data` into every target and waits until all have queued it.
async fn forward_once<T: OtlpSignal>(
    targets: &[PipelineInput<T>],
    data: &T,
) -> Result<(), Refusal> {
    let mut waits = Vec::with_capacity(targets.len());
    for t in targets {
        waits.push(t.admit_waiting(data.clone()).await?);
    }
    for w in waits {
        w.wait().await?;
    }
    Ok(())
}

/// Builds `tail_sampling` for a pipeline of signal `T`, which validation has checked is traces.
fn tail_sampling<T: OtlpSignal>(
    cfg: &TailSamplingConfig,
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

/// Builds `cardinality_limit` for a pipeline of signal `T`, which validation has checked is metrics. Its
/// admitted series live in the queue's state store, under the pipeline's and the processor's names.
fn cardinality_limit<T: OtlpSignal>(
    cfg: &CardinalityLimitConfig,
    ctx: &BuildContext<'_>,
    pipeline: &str,
    id: &str,
) -> Result<Box<dyn Processor<T>>, String> {
    let metrics = ctx.telemetry.cardinality(pipeline, id);
    let stage: Box<dyn Processor<Metrics>> = Box::new(CardinalityLimit::new(
        cfg,
        metrics,
        (pipeline, id),
        Some(ctx.queue.state()),
    )?);
    let any: Box<dyn std::any::Any> = Box::new(stage);
    any.downcast::<Box<dyn Processor<T>>>()
        .map(|b| *b)
        .map_err(|_| "cardinality_limit works on metrics pipelines only".to_string())
}

/// The signals a config uses, for logging at start.
pub fn signals_in_use(config: &Config) -> Vec<Signal> {
    let mut s: Vec<Signal> = config.service.pipelines.keys().map(|p| p.signal).collect();
    s.sort();
    s.dedup();
    s
}
