//! Receiver `filelog`: tails files into the logs pipelines, with durable checkpoints.
//!
//! # Guarantees
//!
//! - **No line skipped, none repeated across a clean restart.** A file's checkpoint (its fingerprint
//!   and an offset, [`checkpoint`]) advances only when the pipeline acknowledges the chunk that covers
//!   it, which it does once the chunk's queue append is durable. On a clean stop, chunks read but not
//!   yet admitted are let go (they are read again next time) and the receiver waits for the
//!   acknowledgements of the admitted ones before it writes its last checkpoints. After a SIGKILL,
//!   entries admitted but not yet checkpointed are read again: at-least-once, as the queue promises.
//! - **Backpressure stops reading, not data.** When a pipeline refuses a chunk (queue above its high
//!   watermark, memory limit, full input), the tailer keeps the chunk, stops reading, and offers it
//!   again shortly; its files stay where they are, however long the pressure lasts. At most
//!   [`MAX_INFLIGHT`] chunks are between the files and the queue, which bounds memory.
//! - **Rotation** (rename + create, copytruncate), truncation, deletion while open, and restarts are
//!   followed by fingerprint, as [`tailer`] explains.
//!
//! Files are read on tokio's blocking pool (one poll at a time per receiver), so a slow disk never
//! stalls the runtime. Between polls, the receiver applies acknowledgements and writes checkpoints.
//! Globs are evaluated every `poll_interval`; a file with data behind what was just read is read again
//! at once, so a burst is not paced by the poll interval.

pub mod checkpoint;
pub mod encoding;
pub mod fingerprint;
pub mod multiline;
pub mod operators;
pub mod tailer;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use outpost_config::Signal;
use outpost_config::{ComponentId, FilelogReceiverConfig, FilelogStartAt};
use outpost_pipelines::queue::Queue;
use outpost_pipelines::telemetry::ReceiverMetrics;
use outpost_pipelines::{Logs, Refusal, Telemetry};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::checkpoint::Checkpoints;
use self::encoding::Decoder;
use self::multiline::{Mode, Splitter};
use self::operators::Operators;
use self::tailer::{Chunk, Tailer, TailerConfig};
use super::offer::Offer;
use super::Inputs;

/// Chunks read and not yet acknowledged, per receiver.
pub const MAX_INFLIGHT: usize = 16;
/// How long a refused chunk waits before it is offered again.
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// Builds one `filelog` receiver and starts it. Errors name the config key.
pub fn start(
    id: &ComponentId,
    cfg: &FilelogReceiverConfig,
    inputs: Inputs,
    telemetry: &Telemetry,
    queue: &Queue,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, Vec<String>> {
    let name = id.to_string();
    let key = |k: &str| format!("receivers.{id}.{k}");
    let mut errors = Vec::new();
    let decoder =
        Decoder::new(&cfg.encoding).map_err(|e| errors.push(format!("{}: {e}", key("encoding"))));
    let mode = match &cfg.multiline {
        None => Ok(Mode::Lines),
        Some(m) => match (&m.line_start_pattern, &m.line_end_pattern) {
            (Some(p), _) => regex::Regex::new(p).map(Mode::Start),
            (None, Some(p)) => regex::Regex::new(p).map(Mode::End),
            (None, None) => Ok(Mode::Lines),
        }
        .map_err(|e| errors.push(format!("{}: {e}", key("multiline")))),
    };
    let operators = Operators::new(&cfg.operators)
        .map_err(|e| errors.push(format!("{}: {e}", key("operators"))));
    let exclude: Vec<glob::Pattern> = cfg
        .exclude
        .iter()
        .filter_map(|g| {
            glob::Pattern::new(g)
                .map_err(|e| errors.push(format!("{}: '{g}': {e}", key("exclude"))))
                .ok()
        })
        .collect();
    let checkpoints = Checkpoints::new(queue.state(), &name);
    let stored = checkpoints.load().map_err(|e| {
        errors.push(format!(
            "{}: cannot read the checkpoints from the queue's state store: {e}",
            key("include")
        ))
    });
    let (Ok(decoder), Ok(mode), Ok(operators), Ok((stored, started)), true) =
        (decoder, mode, operators, stored, errors.is_empty())
    else {
        return Err(errors);
    };
    let metrics = telemetry.receiver(&name, "file");
    let splitter = Splitter::new(
        decoder,
        mode,
        usize::try_from(cfg.max_log_size.bytes()).unwrap_or(usize::MAX),
    );
    let tailer = Tailer::new(
        TailerConfig {
            include: cfg.include.clone(),
            exclude,
            fingerprint_size: usize::try_from(cfg.fingerprint_size.bytes()).unwrap_or(1000),
            force_flush_period: cfg.force_flush_period.get(),
            include_file_name: cfg.include_file_name,
            include_file_path: cfg.include_file_path,
            max_concurrent_files: cfg.max_concurrent_files,
            start_at_end: cfg.start_at == FilelogStartAt::End && !started,
        },
        splitter,
        operators,
        metrics.clone(),
        stored,
    );
    tracing::info!(receiver = %name, include = ?cfg.include, resumed = started, "filelog receiver started");
    let driver = Driver {
        name,
        inputs,
        metrics,
        checkpoints,
        poll_interval: cfg.poll_interval.get(),
        started,
    };
    Ok(tokio::spawn(driver.run(tailer, shutdown)))
}

/// A chunk's acknowledgement, from the task that awaits it.
struct Ack {
    key: u64,
    generation: u64,
    seq: u64,
    items: usize,
    result: Result<(), Refusal>,
}

/// A chunk not yet admitted into every pipeline.
struct Pending {
    chunk: Chunk,
    offer: Offer<Logs>,
}

struct Driver {
    name: String,
    inputs: Inputs,
    metrics: ReceiverMetrics,
    checkpoints: Checkpoints,
    poll_interval: Duration,
    started: bool,
}

impl Driver {
    async fn run(mut self, mut tailer: Tailer, shutdown: CancellationToken) {
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<Ack>();
        let mut pending: VecDeque<Pending> = VecDeque::new();
        let mut inflight = 0usize;
        let mut last_discovery: Option<Instant> = None;
        let mut more = false;
        let mut retry_at = Instant::now();
        loop {
            while let Some(p) = pending.front_mut() {
                match p.offer.try_admit(&self.inputs.current().logs) {
                    Ok(()) => {
                        let p = pending.pop_front().expect("front exists");
                        self.await_ack(p, ack_tx.clone());
                        inflight += 1;
                    }
                    Err(refusal) => {
                        tracing::debug!(receiver = %self.name, reason = refusal.reason(), "pipeline refused a chunk; reading pauses");
                        retry_at = Instant::now() + RETRY_AFTER;
                        break;
                    }
                }
            }
            let can_read = pending.is_empty() && inflight < MAX_INFLIGHT;
            let next_discovery =
                last_discovery.map_or_else(Instant::now, |t| t + self.poll_interval);
            let next_read = if more { Instant::now() } else { next_discovery };
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(ack) = ack_rx.recv() => {
                    inflight -= 1;
                    self.apply(&mut tailer, ack);
                    while let Ok(ack) = ack_rx.try_recv() {
                        inflight -= 1;
                        self.apply(&mut tailer, ack);
                    }
                    self.persist(&mut tailer);
                }
                _ = tokio::time::sleep_until(retry_at.into()), if !pending.is_empty() => {}
                _ = tokio::time::sleep_until(next_read.into()), if can_read => {
                    let discover = Instant::now() >= next_discovery;
                    let room = MAX_INFLIGHT - inflight;
                    let polled = tokio::task::spawn_blocking(move || {
                        let polled = tailer.poll(discover, room);
                        (tailer, polled)
                    })
                    .await;
                    let Ok((t, polled)) = polled else {
                        tracing::error!(receiver = %self.name, "the file reader panicked; the receiver stops");
                        return;
                    };
                    tailer = t;
                    if discover {
                        last_discovery = Some(Instant::now());
                    }
                    more = polled.more;
                    pending.extend(polled.chunks.into_iter().map(|mut chunk| Pending {
                        offer: Offer::new(std::mem::take(&mut chunk.logs), chunk.bytes),
                        chunk,
                    }));
                    self.persist(&mut tailer);
                    if discover && !self.started {
                        // From now on files are new to this receiver only if they are new files.
                        match self.checkpoints.mark_started() {
                            Ok(()) => self.started = true,
                            Err(e) => tracing::warn!(receiver = %self.name, error = %e, "cannot record the first start"),
                        }
                    }
                }
            }
        }
        // Chunks not admitted are let go: they are read again at the next start. Admitted ones are
        // acknowledged as the pipelines drain.
        drop(pending);
        while inflight > 0 {
            let Some(ack) = ack_rx.recv().await else {
                break;
            };
            inflight -= 1;
            self.apply(&mut tailer, ack);
        }
        self.persist(&mut tailer);
        tracing::debug!(receiver = %self.name, "filelog receiver stopped");
    }

    fn await_ack(&self, p: Pending, tx: mpsc::UnboundedSender<Ack>) {
        let Chunk {
            key,
            generation,
            seq,
            items,
            ..
        } = p.chunk;
        tokio::spawn(async move {
            let result = p.offer.wait().await;
            let _ = tx.send(Ack {
                key,
                generation,
                seq,
                items,
                result,
            });
        });
    }

    fn apply(&self, tailer: &mut Tailer, ack: Ack) {
        match ack.result {
            Ok(()) => self.metrics.accepted(Signal::Logs, ack.items),
            Err(refusal) => tracing::warn!(
                receiver = %self.name,
                reason = refusal.reason(),
                items = ack.items,
                "a chunk was not queued; its lines will be read again"
            ),
        }
        tailer.ack(ack.key, ack.generation, ack.seq, ack.result.is_ok());
    }

    fn persist(&self, tailer: &mut Tailer) {
        let (changed, removed) = tailer.take_changes();
        for cp in &changed {
            if let Err(e) = self.checkpoints.save(cp) {
                tracing::warn!(receiver = %self.name, path = %cp.path, error = %e, "cannot write a checkpoint; lines may be read twice after a restart");
            }
        }
        for key in removed {
            if let Err(e) = self.checkpoints.remove(key) {
                tracing::warn!(receiver = %self.name, error = %e, "cannot delete a checkpoint");
            }
        }
    }
}
