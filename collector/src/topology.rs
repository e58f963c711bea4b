//! Topology: turns a validated [`Config`] into running tasks, changes them in place when the config is
//! reloaded, and stops them in an order that loses nothing.
//!
//! The disk queue is opened once and outlives every reload; every pipeline appends to its own stream
//! (named after the pipeline), and every exporter and connector of a pipeline reads that stream through
//! its own cursor (named after the component id). Because the stream and the cursor, not the tasks, hold
//! the data and the read position, any task can be replaced without losing or repeating more than the
//! records an exporter had in flight.
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
//! A reload ([`Running::reload`]) rebuilds only what changed. Everything that can fail (processor builds,
//! compiled rules) is built before anything running is touched, so a config that cannot be built changes
//! nothing. Then:
//! - a pipeline whose processors (and their configs) are unchanged keeps running with its held data;
//!   a changed one is replaced: the new one starts, the old one stops taking new requests, drains what it
//!   holds into the same stream and ends once the requests it admitted are answered;
//! - an exporter or connector whose config and pipelines are unchanged keeps running (a connector is
//!   pointed at the new downstream pipelines); a changed one stops reading, its in-flight requests end or
//!   are abandoned (they stay queued), and its replacement resumes from the persisted cursor;
//! - a receiver whose config is unchanged keeps its listeners and connections and is pointed at the new
//!   pipelines ([`receivers::Inputs`]); a changed one is stopped before its replacement binds, so a port
//!   it keeps can be bound again.
//!
//! Everything per signal goes through generic functions over the signal type, so traces, metrics and
//! logs are wired by the same code.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use outpost_config::{
    ComponentId, Config, ConnectorConfig, DeliveryConfig, ExporterConfig, OverflowPolicy,
    PipelineId, ProcessorConfig, ReceiverConfig, Signal,
};
use outpost_pipelines::connectors::Summarizer;
use outpost_pipelines::processors::memory_limiter;
use outpost_pipelines::processors::redaction::{Redact, Redaction};
use outpost_pipelines::processors::transform::Transformable;
use outpost_pipelines::queue::{
    Cursor, MaxLag, Overflow, Queue, QueueError, QueueOptions, StartAt, SyncPolicy,
};
use outpost_pipelines::{
    ByteBudget, Logs, Metrics, Pipeline, PipelineInput, ProcessorChain, Refusal, Telemetry, Traces,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::exporters;
use crate::otlp::OtlpSignal;
use crate::receivers::{self, Inputs, InputsOf, Routes};
use crate::stages;

/// Records a connector reads from its upstream stream at once.
const CONNECTOR_BATCH: usize = 16;

/// How long a reload waits for a replaced component to stop before aborting it. Exporters and
/// connectors only acknowledge what was delivered, so an abort repeats at most what was in flight.
const REPLACE_GRACE: Duration = Duration::from_secs(10);

/// A running topology.
pub struct Running {
    queue: Queue,
    telemetry: Telemetry,
    /// Root tokens: every component's own token is a child, so a shutdown reaches what reloads built.
    stop_receivers: CancellationToken,
    drain_pipelines: CancellationToken,
    finish_readers: CancellationToken,
    receivers: HashMap<ComponentId, ReceiverSlot>,
    pipelines: HashMap<PipelineId, PipelineSlot>,
    /// Pipelines replaced by a reload that still answer the requests they admitted before it.
    retiring: Vec<JoinHandle<()>>,
    readers: HashMap<ComponentId, ReaderSlot>,
    /// memory_limiter budgets and compiled redaction rules by processor id, with the config they were
    /// built from: shared by every pipeline that lists the processor, kept while the config is.
    budgets: HashMap<ComponentId, (ProcessorConfig, Arc<ByteBudget>)>,
    redactions: HashMap<ComponentId, (ProcessorConfig, Redaction)>,
}

struct ReceiverSlot {
    config: ReceiverConfig,
    inputs: Inputs,
    stop: CancellationToken,
    handles: Vec<JoinHandle<()>>,
}

/// What decides whether a pipeline survives a reload.
#[derive(PartialEq)]
struct PipelineSpec {
    processors: Vec<(ComponentId, Option<ProcessorConfig>)>,
    overflow: OverflowPolicy,
}

struct PipelineSlot {
    spec: PipelineSpec,
    /// The pipeline's `PipelineInput<T>`; dropping it (and every route holding a clone) ends the pipeline.
    input: Box<dyn Any + Send + Sync>,
    drain: CancellationToken,
    handle: JoinHandle<()>,
    /// Fed by a connector: it ends after the connectors, not with the receivers.
    fed_by_connector: bool,
}

/// What decides whether an exporter or connector survives a reload: its config and the pipelines it
/// reads (all its tasks are replaced together, so one exporter never has two writers or budgets).
#[derive(PartialEq)]
enum ReaderSpec {
    Exporter(Box<(ExporterConfig, DeliveryConfig)>, Vec<PipelineId>),
    Connector(Box<ConnectorConfig>, Vec<PipelineId>),
}

/// How an exporter or connector is told to stop: `finish` at shutdown (deliver what is queued while the
/// destination accepts it), `finish` and `abandon` when a reload replaces it (read nothing more).
#[derive(Clone)]
struct ReaderStop {
    finish: CancellationToken,
    abandon: CancellationToken,
}

struct ReaderSlot {
    spec: ReaderSpec,
    stop: ReaderStop,
    handles: Vec<JoinHandle<()>>,
    /// A connector's downstream pipelines, replaced on reload.
    targets: Option<Inputs>,
}

/// A pipeline built by a reload but not started yet.
struct NewPipeline {
    spec: PipelineSpec,
    input: Box<dyn Any + Send + Sync>,
    spawn: Box<dyn FnOnce(CancellationToken) -> JoinHandle<()> + Send>,
}

/// What a reload changed, for its log line.
#[derive(Debug, Default)]
pub struct Changes {
    pub pipelines_kept: usize,
    pub pipelines_replaced: usize,
    pub readers_kept: usize,
    pub readers_replaced: usize,
    pub receivers_kept: usize,
    pub receivers_replaced: usize,
}

/// Starts everything `config` describes. On any error nothing is left running and every error is
/// returned, each naming its config key.
pub async fn start(config: &Config, telemetry: &Telemetry) -> Result<Running, Vec<String>> {
    let queue = Queue::open(queue_options(config), telemetry).map_err(|e| {
        vec![format!(
            "queue.directory: cannot open the disk queue in '{}': {e}",
            queue_dir(&config.data_dir()).display()
        )]
    })?;
    let mut running = Running {
        queue,
        telemetry: telemetry.clone(),
        stop_receivers: CancellationToken::new(),
        drain_pipelines: CancellationToken::new(),
        finish_readers: CancellationToken::new(),
        receivers: HashMap::new(),
        pipelines: HashMap::new(),
        retiring: Vec::new(),
        readers: HashMap::new(),
        budgets: HashMap::new(),
        redactions: HashMap::new(),
    };
    match running.apply(config).await {
        Ok(_) => Ok(running),
        Err(errors) => {
            running.shutdown(Duration::from_secs(5)).await;
            Err(errors)
        }
    }
}

impl Running {
    /// Applies a new, validated config in place (see the module docs). On `Err`, a config that could not
    /// be built changed nothing; an error after that point (a port that cannot be bound) leaves the
    /// rest of the new config applied and names the component.
    pub async fn reload(&mut self, config: &Config) -> Result<Changes, Vec<String>> {
        self.apply(config).await
    }

    /// The durable state store (in the queue's database).
    pub fn state(&self) -> outpost_pipelines::queue::StateStore {
        self.queue.state()
    }

    async fn apply(&mut self, config: &Config) -> Result<Changes, Vec<String>> {
        let mut errors = Vec::new();
        let mut changes = Changes::default();

        // 1. Build, without touching anything running.
        let mut budgets = HashMap::new();
        let mut redactions = HashMap::new();
        for (id, p) in &config.processors {
            match p {
                ProcessorConfig::MemoryLimiter(c) => {
                    let b = match self.budgets.get(id) {
                        Some((old, b)) if old == p => b.clone(),
                        _ => memory_limiter::budget(&id.to_string(), c, &self.telemetry),
                    };
                    budgets.insert(id.clone(), (p.clone(), b));
                }
                ProcessorConfig::Redaction(c) => {
                    let r = match self.redactions.get(id) {
                        Some((old, r)) if old == p => Ok(r.clone()),
                        _ => Redaction::new(c),
                    };
                    match r {
                        Ok(r) => {
                            redactions.insert(id.clone(), (p.clone(), r));
                        }
                        Err(e) => errors.push(format!("processors.{id}: {e}")),
                    }
                }
                _ => {}
            }
        }
        let mut built: HashMap<PipelineId, NewPipeline> = HashMap::new();
        if errors.is_empty() {
            let compiled: HashMap<ComponentId, Redaction> = redactions
                .iter()
                .map(|(id, (_, r))| (id.clone(), r.clone()))
                .collect();
            let ctx = BuildContext {
                config,
                telemetry: &self.telemetry,
                budgets: &budgets,
                redactions: &compiled,
                queue: &self.queue,
            };
            for (pid, p) in &config.service.pipelines {
                let spec = PipelineSpec {
                    processors: p
                        .processors
                        .iter()
                        .map(|id| (id.clone(), config.processors.get(id).cloned()))
                        .collect(),
                    overflow: config.queue.overflow,
                };
                if self.pipelines.get(pid).is_some_and(|s| s.spec == spec) {
                    continue;
                }
                let result = match pid.signal {
                    Signal::Traces => build_pipeline::<Traces>(&ctx, pid, p),
                    Signal::Metrics => build_pipeline::<Metrics>(&ctx, pid, p),
                    Signal::Logs => build_pipeline::<Logs>(&ctx, pid, p),
                };
                match result {
                    Ok((input, spawn)) => {
                        built.insert(pid.clone(), NewPipeline { spec, input, spawn });
                    }
                    Err(e) => errors.extend(e),
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        self.budgets = budgets;
        self.redactions = redactions;

        // 2. Readers that changed or went away stop first: their replacements open the same cursors.
        let wanted = reader_specs(config);
        let mut stopping = Vec::new();
        self.readers.retain(|id, slot| {
            if wanted.get(id) == Some(&slot.spec) {
                true
            } else {
                slot.stop.abandon.cancel();
                slot.stop.finish.cancel();
                stopping.append(&mut slot.handles);
                changes.readers_replaced += 1;
                false
            }
        });
        join_or_abort("exporters and connectors", stopping).await;

        // 3. Pipelines: start the new ones; replaced and removed ones drain and end once unreferenced.
        let pipeline_ids: Vec<PipelineId> = self.pipelines.keys().cloned().collect();
        for pid in pipeline_ids {
            if built.contains_key(&pid) || !config.service.pipelines.contains_key(&pid) {
                let old = self.pipelines.remove(&pid).expect("listed above");
                old.drain.cancel();
                self.retiring.push(old.handle);
                changes.pipelines_replaced += 1;
            }
        }
        changes.pipelines_kept = self.pipelines.len();
        for (pid, new) in built {
            let drain = self.drain_pipelines.child_token();
            let handle = (new.spawn)(drain.clone());
            self.pipelines.insert(
                pid,
                PipelineSlot {
                    spec: new.spec,
                    input: new.input,
                    drain,
                    handle,
                    fed_by_connector: false,
                },
            );
        }
        for (pid, slot) in &mut self.pipelines {
            slot.fed_by_connector = config.service.pipelines[pid]
                .receivers
                .iter()
                .any(|r| config.connectors.contains_key(r));
        }
        self.retiring.retain(|h| !h.is_finished());

        // 4. Readers: kept connectors feed the new pipelines; new readers open their cursors.
        for (pid, p) in &config.service.pipelines {
            // Cursors of exporters no longer in a pipeline would pin its records on disk forever.
            let live: Vec<String> = p.exporters.iter().map(ToString::to_string).collect();
            let live_refs: Vec<&str> = live.iter().map(String::as_str).collect();
            if let Err(e) = self.queue.retain_cursors(&pid.to_string(), &live_refs) {
                tracing::warn!(pipeline = %pid, error = %e, "cannot remove the cursors of removed exporters");
            }
        }
        for (id, spec) in wanted {
            let targets = self.routes_for(config, &id);
            if let Some(slot) = self.readers.get(&id) {
                if let Some(t) = &slot.targets {
                    t.replace(targets);
                }
                changes.readers_kept += 1;
                continue;
            }
            let slot = ReaderSlot {
                spec,
                stop: ReaderStop {
                    finish: self.finish_readers.child_token(),
                    abandon: CancellationToken::new(),
                },
                handles: Vec::new(),
                targets: config
                    .connectors
                    .contains_key(&id)
                    .then(|| Inputs::new(targets)),
            };
            let slot = self.start_reader(config, &id, slot, &mut errors);
            self.readers.insert(id, slot);
        }

        // 5. Receivers: kept ones are pointed at the new pipelines; changed ones restart.
        let mut stopping = Vec::new();
        self.receivers.retain(|id, slot| {
            if config.receivers.get(id) == Some(&slot.config) && feeds_any(config, id) {
                true
            } else {
                slot.stop.cancel();
                slot.inputs.replace(Routes::default());
                stopping.append(&mut slot.handles);
                changes.receivers_replaced += 1;
                false
            }
        });
        join_or_abort("receivers", stopping).await;
        for (id, receiver) in &config.receivers {
            if !feeds_any(config, id) {
                continue; // defined but unused: validation warned about it
            }
            let routes = self.routes_for(config, id);
            if let Some(slot) = self.receivers.get(id) {
                slot.inputs.replace(routes);
                changes.receivers_kept += 1;
                continue;
            }
            let inputs = Inputs::new(routes);
            let stop = self.stop_receivers.child_token();
            match self
                .start_receiver(id, receiver, inputs.clone(), stop.clone())
                .await
            {
                Ok(handles) => {
                    self.receivers.insert(
                        id.clone(),
                        ReceiverSlot {
                            config: receiver.clone(),
                            inputs,
                            stop,
                            handles,
                        },
                    );
                }
                Err(e) => {
                    inputs.replace(Routes::default());
                    errors.extend(e);
                }
            }
        }
        if errors.is_empty() {
            Ok(changes)
        } else {
            Err(errors)
        }
    }

    /// The inputs of every pipeline of the new config that lists `id` as a receiver.
    fn routes_for(&self, config: &Config, id: &ComponentId) -> Routes {
        let mut routes = Routes::default();
        for (pid, p) in &config.service.pipelines {
            if !p.receivers.contains(id) {
                continue;
            }
            let Some(slot) = self.pipelines.get(pid) else {
                continue;
            };
            let input = &slot.input;
            if let Some(i) = input.downcast_ref::<PipelineInput<Traces>>() {
                routes.traces.push(i.clone());
            } else if let Some(i) = input.downcast_ref::<PipelineInput<Metrics>>() {
                routes.metrics.push(i.clone());
            } else if let Some(i) = input.downcast_ref::<PipelineInput<Logs>>() {
                routes.logs.push(i.clone());
            }
        }
        routes
    }

    /// Opens the cursors of exporter or connector `id` on every pipeline that lists it and starts one
    /// task per pipeline.
    fn start_reader(
        &self,
        config: &Config,
        id: &ComponentId,
        mut slot: ReaderSlot,
        errors: &mut Vec<String>,
    ) -> ReaderSlot {
        // One factory per exporter: its signals share one bandwidth budget and one file writer.
        let mut factory = exporters::Factory::new(&self.telemetry);
        for (pid, p) in &config.service.pipelines {
            if !p.exporters.contains(id) {
                continue;
            }
            let started = match pid.signal {
                Signal::Traces => {
                    self.start_reader_task::<Traces>(config, pid, id, &slot, &mut factory)
                }
                Signal::Metrics => {
                    self.start_reader_task::<Metrics>(config, pid, id, &slot, &mut factory)
                }
                Signal::Logs => {
                    self.start_reader_task::<Logs>(config, pid, id, &slot, &mut factory)
                }
            };
            match started {
                Ok(h) => slot.handles.push(h),
                Err(e) => errors.push(e),
            }
        }
        slot
    }

    fn start_reader_task<T: OtlpSignal + InputsOf>(
        &self,
        config: &Config,
        pid: &PipelineId,
        eid: &ComponentId,
        slot: &ReaderSlot,
        factory: &mut exporters::Factory,
    ) -> Result<JoinHandle<()>, String> {
        let stream = self
            .queue
            .stream(&pid.to_string())
            .map_err(|e| format!("service.pipelines.{pid}: cannot open its queue stream: {e}"))?;
        let delivery = config.delivery(eid);
        let sq = &delivery.sending_queue;
        let start_at = match sq.start_at {
            outpost_config::StartAt::Oldest => StartAt::Oldest,
            outpost_config::StartAt::Newest => StartAt::Newest,
        };
        let max_lag = sq.max_lag.as_ref().map(|l| MaxLag {
            bytes: l.bytes.map(|b| b.bytes()),
            age: l.age.map(|a| a.get()),
        });
        let cursor = stream
            .cursor(&eid.to_string(), start_at, max_lag)
            .map_err(|e| {
                format!("service.pipelines.{pid}.exporters: cannot open the queue cursor of '{eid}': {e}")
            })?;
        let stop = slot.stop.clone();
        if let Some(connector) = config.connectors.get(eid) {
            let targets = slot.targets.clone().unwrap_or_default();
            return match connector {
                ConnectorConfig::Forward(_) => Ok(tokio::spawn(forward::<T>(
                    eid.to_string(),
                    cursor,
                    targets,
                    stop,
                ))),
                ConnectorConfig::SpanMetrics(_) | ConnectorConfig::Count(_) => {
                    let (agg, interval) = stages::summarizer::<T>(connector)
                        .map_err(|e| format!("connectors.{eid}: {e}"))?;
                    Ok(tokio::spawn(summarize(
                        eid.to_string(),
                        cursor,
                        agg,
                        interval,
                        targets,
                        self.telemetry.connector(&eid.to_string()),
                        stop,
                    )))
                }
            };
        }
        let Some(cfg) = config.exporters.get(eid) else {
            return Err(format!(
                "'{eid}' is not defined under exporters or connectors"
            ));
        };
        let bandwidth = factory.bandwidth(eid, &delivery);
        let exporter = factory.build::<T>(eid, cfg, bandwidth.clone())?;
        let metrics = self.telemetry.exporter(&eid.to_string(), T::SIGNAL);
        let mut policy = exporters::Policy::new(&delivery, bandwidth);
        if matches!(cfg, ExporterConfig::File(_) | ExporterConfig::Debug(_)) {
            // Local outputs keep the queue's order.
            policy.in_flight = 1;
        }
        Ok(tokio::spawn(exporters::run(
            eid.to_string(),
            exporter,
            cursor,
            metrics,
            policy,
            stop.finish,
            stop.abandon,
        )))
    }

    async fn start_receiver(
        &self,
        id: &ComponentId,
        receiver: &ReceiverConfig,
        inputs: Inputs,
        stop: CancellationToken,
    ) -> Result<Vec<JoinHandle<()>>, Vec<String>> {
        let telemetry = &self.telemetry;
        match receiver {
            ReceiverConfig::Otlp(cfg) => {
                receivers::otlp::start(id, cfg, inputs, telemetry, stop).await
            }
            ReceiverConfig::Filelog(cfg) => {
                receivers::filelog::start(id, cfg, inputs, telemetry, &self.queue, stop)
                    .map(|h| vec![h])
            }
            ReceiverConfig::Syslog(cfg) => {
                receivers::syslog::start(id, cfg, inputs, telemetry, stop).await
            }
            ReceiverConfig::Prometheus(cfg) => {
                receivers::prometheus::start(id, cfg, inputs, telemetry, stop).await
            }
            ReceiverConfig::PrometheusRemoteWrite(cfg) => {
                receivers::prometheus_remote_write::start(id, cfg, inputs, telemetry, stop).await
            }
        }
    }

    /// Stops upstream-first (see the module docs) within `deadline`. Returns whether everything drained.
    pub async fn shutdown(self, deadline: Duration) -> bool {
        self.stop_receivers.cancel();
        self.drain_pipelines.cancel();
        let mut receiver_handles = Vec::new();
        let mut receiver_inputs = Vec::new();
        for slot in self.receivers.into_values() {
            receiver_handles.extend(slot.handles);
            receiver_inputs.push(slot.inputs);
        }
        let mut upstream = self.retiring;
        let mut downstream = Vec::new();
        for slot in self.pipelines.into_values() {
            // The slot's own input goes now; routes of receivers and connectors follow as they stop.
            drop(slot.input);
            if slot.fed_by_connector {
                downstream.push(slot.handle);
            } else {
                upstream.push(slot.handle);
            }
        }
        let mut connectors = Vec::new();
        let mut connector_targets = Vec::new();
        let mut exporter_handles = Vec::new();
        for slot in self.readers.into_values() {
            match slot.targets {
                Some(t) => {
                    connectors.extend(slot.handles);
                    connector_targets.push(t);
                }
                None => exporter_handles.extend(slot.handles),
            }
        }
        let aborts: Vec<_> = [
            &receiver_handles,
            &upstream,
            &downstream,
            &connectors,
            &exporter_handles,
        ]
        .iter()
        .flat_map(|hs| hs.iter().map(JoinHandle::abort_handle))
        .collect();
        let finish = self.finish_readers.clone();
        let drain = async move {
            join_stage("receivers", receiver_handles).await;
            for i in receiver_inputs {
                i.replace(Routes::default());
            }
            join_stage("pipelines", upstream).await;
            finish.cancel();
            join_stage("connectors", connectors).await;
            for t in connector_targets {
                t.replace(Routes::default());
            }
            join_stage("pipelines fed by connectors", downstream).await;
            join_stage("exporters", exporter_handles).await;
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

/// Whether receiver `id` feeds any pipeline of `config`.
fn feeds_any(config: &Config, id: &ComponentId) -> bool {
    config
        .service
        .pipelines
        .values()
        .any(|p| p.receivers.contains(id))
}

/// The spec of every exporter and connector the pipelines of `config` list.
fn reader_specs(config: &Config) -> HashMap<ComponentId, ReaderSpec> {
    let mut out = HashMap::new();
    for p in config.service.pipelines.values() {
        for eid in &p.exporters {
            if out.contains_key(eid) {
                continue;
            }
            let pipelines: Vec<PipelineId> = config
                .service
                .pipelines
                .iter()
                .filter(|(_, q)| q.exporters.contains(eid))
                .map(|(pid, _)| pid.clone())
                .collect();
            let spec = if let Some(c) = config.connectors.get(eid) {
                ReaderSpec::Connector(Box::new(c.clone()), pipelines)
            } else if let Some(c) = config.exporters.get(eid) {
                ReaderSpec::Exporter(Box::new((c.clone(), config.delivery(eid))), pipelines)
            } else {
                continue; // validation reports it
            };
            out.insert(eid.clone(), spec);
        }
    }
    out
}

/// Waits for `handles` up to [`REPLACE_GRACE`], then aborts what is left.
async fn join_or_abort(what: &str, handles: Vec<JoinHandle<()>>) {
    let aborts: Vec<_> = handles.iter().map(JoinHandle::abort_handle).collect();
    if tokio::time::timeout(REPLACE_GRACE, join_stage(what, handles))
        .await
        .is_err()
    {
        tracing::warn!(what, grace = ?REPLACE_GRACE, "replaced components did not stop in time; aborting them (undelivered records stay queued)");
        for a in aborts {
            a.abort();
        }
    }
}

async fn join_stage(stage: &str, handles: Vec<JoinHandle<()>>) {
    for h in handles {
        if let Err(e) = h.await {
            if !e.is_cancelled() {
                tracing::error!(stage, error = %e, "a task ended abnormally while stopping");
            }
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

struct BuildContext<'a> {
    config: &'a Config,
    telemetry: &'a Telemetry,
    budgets: &'a HashMap<ComponentId, (ProcessorConfig, Arc<ByteBudget>)>,
    redactions: &'a HashMap<ComponentId, Redaction>,
    queue: &'a Queue,
}

type BuiltPipeline = (
    Box<dyn Any + Send + Sync>,
    Box<dyn FnOnce(CancellationToken) -> JoinHandle<()> + Send>,
);

/// Builds pipeline `pid` of signal `T`: its processor chain, its queue stream and its input. Nothing
/// runs until the returned closure is called.
fn build_pipeline<T: OtlpSignal + Redact + Transformable>(
    ctx: &BuildContext<'_>,
    pid: &PipelineId,
    p: &outpost_config::PipelineConfig,
) -> Result<BuiltPipeline, Vec<String>> {
    let config = ctx.config;
    let pname = pid.to_string();
    let mut errors = Vec::new();
    let stream = ctx.queue.stream(&pname).map_err(|e| {
        vec![format!(
            "service.pipelines.{pid}: cannot open its queue stream: {e}"
        )]
    })?;
    let gate = (config.queue.overflow == OverflowPolicy::Block).then(|| ctx.queue.clone());
    let mut chain = ProcessorChain::default();
    let mut budget = None;
    for proc_id in &p.processors {
        let Some(cfg) = config.processors.get(proc_id) else {
            errors.push(format!(
                "service.pipelines.{pid}.processors: '{proc_id}' is not defined"
            ));
            continue;
        };
        if let ProcessorConfig::MemoryLimiter(_) = cfg {
            budget = ctx.budgets.get(proc_id).map(|(_, b)| b.clone());
        }
        // Admitted series persist in the state store, so a restart keeps the same ones.
        let state = matches!(cfg, ProcessorConfig::CardinalityLimit(_)).then(|| ctx.queue.state());
        let stage = match stages::processor::<T>(
            proc_id,
            cfg,
            &pname,
            ctx.telemetry,
            ctx.redactions,
            state,
        ) {
            Ok(Some(stage)) => stage,
            // Its build error is already reported.
            Ok(None) => continue,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        chain.push(stage, ctx.telemetry.processor(&pname, &proc_id.to_string()));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let (pipeline, input) = Pipeline::new(&pname, chain, stream, budget, gate);
    Ok((
        Box::new(input),
        Box::new(move |drain| tokio::spawn(pipeline.run(drain))),
    ))
}

/// Connector `forward`: reads one pipeline's queue stream and admits each record into the pipelines that
/// list the connector as a receiver. A record is acknowledged upstream only once every downstream pipeline
/// has queued it durably; a refusal downstream (its queue full) retries the record after a pause, so
/// backpressure holds data in the upstream queue instead of losing it.
async fn forward<T: OtlpSignal + InputsOf>(
    id: String,
    mut cursor: Cursor,
    targets: Inputs,
    ReaderStop { finish, abandon }: ReaderStop,
) {
    loop {
        if abandon.is_cancelled() {
            break; // replaced by a reload: what is not acknowledged stays queued for the successor
        }
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
                _ = abandon.cancelled() => continue,
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
                let routes = targets.current();
                match forward_once(T::of(&routes), &data).await {
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
    targets: Inputs,
    (emitted, overflow): (
        prometheus_client::metrics::counter::Counter,
        prometheus_client::metrics::counter::Counter,
    ),
    ReaderStop { finish, abandon }: ReaderStop,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unacked: Vec<u64> = Vec::new();
    loop {
        // Replaced by a reload: flush what was counted and stop reading; the successor resumes after it.
        let abandoning = abandon.is_cancelled();
        let finishing = abandoning || finish.is_cancelled();
        let next = if abandoning {
            None
        } else if finishing {
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
                _ = abandon.cancelled() => continue,
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
                let routes = targets.current();
                match forward_once(&routes.metrics, &data).await {
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

/// The signals a config uses, for logging at start.
pub fn signals_in_use(config: &Config) -> Vec<Signal> {
    let mut s: Vec<Signal> = config.service.pipelines.keys().map(|p| p.signal).collect();
    s.sort();
    s.dedup();
    s
}
