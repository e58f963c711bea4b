//! The maintenance task: reclaims delivered records, enforces `max_age` and cursors' `max_lag`, and
//! refreshes the queue's gauges.
//!
//! It runs every [`super::MAINTENANCE_INTERVAL`] (and early when an exporter acknowledges while the queue
//! is under pressure). Per stream it asks the writer to delete, as one range, everything every cursor has
//! passed; a stream without cursors keeps its records (an exporter may be added), unless `max_age` or the
//! overflow policy removes them. Deletions are requests to the writer thread, never writes of its own,
//! so the writer stays the only mutator of accounting.
//!
//! `max_lag` only moves a cursor (other cursors may still need the records); the deletion follows on a
//! later pass once every cursor is past. Gauges (bytes, records, ages, lags) are recomputed here from the
//! in-memory index, so `/metrics` shows values at most one interval old without any work at scrape time.

use std::sync::Arc;
use std::time::Duration;

use super::shared::{now_ms, Core, StreamShared};
use super::writer::{Command, TrimReason, TrimRequest};

pub(crate) fn spawn(core: Arc<Core>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = core.tuning.maintenance_interval;
        loop {
            tokio::select! {
                _ = core.closed.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
                _ = core.maintenance_wake.notified() => {}
            }
            run_once(&core);
        }
    })
}

/// One pass over every stream. Never blocks on the writer: deletions are queued to it.
pub(crate) fn run_once(core: &Core) {
    let now = now_ms();
    for stream in core.all_streams() {
        enforce_max_lag(core, &stream, now);
        request_trims(core, &stream, now);
        refresh_gauges(&stream, now);
    }
    core.metrics
        .set_pressure(core.pressure.load(std::sync::atomic::Ordering::Acquire));
}

/// Sets every gauge from the recovered state, so `/metrics` is right from the first scrape.
pub(crate) fn refresh_all_gauges(core: &Core) {
    let now = now_ms();
    for stream in core.all_streams() {
        refresh_gauges(&stream, now);
    }
}

fn request_trims(core: &Core, stream: &Arc<StreamShared>, now: u64) {
    let (front, expired_upto) = {
        let idx = stream.index();
        let front = idx.entries.front().map(|e| e.seq);
        let expired = core.opts.max_age.and_then(|age| {
            let cutoff = now.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
            idx.entries
                .iter()
                .take_while(|e| e.created_ms < cutoff)
                .last()
                .map(|e| e.seq)
        });
        (front, expired)
    };
    let Some(front) = front else { return };
    if let Some(upto) = expired_upto {
        send_trim(core, stream, upto, TrimReason::MaxAge);
    }
    if let Some(min) = stream.min_watermark() {
        if min >= front {
            send_trim(core, stream, min, TrimReason::Delivered);
        }
    }
}

fn send_trim(core: &Core, stream: &Arc<StreamShared>, upto: u64, reason: TrimReason) {
    // A closed queue simply stops maintaining itself.
    let _ = core.send(Command::Trim(TrimRequest {
        stream: stream.clone(),
        upto,
        reason,
    }));
}

/// Moves every cursor whose lag exceeds its `max_lag` forward just far enough, counting what it skips.
fn enforce_max_lag(core: &Core, stream: &StreamShared, now: u64) {
    for c in stream.cursors() {
        let Some(max) = c.max_lag() else { continue };
        let w = c.watermark();
        let (to, skipped) = {
            let idx = stream.index();
            let start = idx.after(w);
            let len = idx.entries.len();
            let mut cut = start;
            if let Some(limit) = max.bytes {
                while cut < len && idx.span(cut, len).bytes > limit {
                    cut += 1;
                }
            }
            if let Some(age) = max.age {
                let cutoff = now.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
                while idx.entries.get(cut).is_some_and(|e| e.created_ms < cutoff) {
                    cut += 1;
                }
            }
            if cut == start {
                continue;
            }
            let to = idx.entries.get(cut - 1).map_or(w, |e| e.seq);
            (to, idx.span(start, cut).items)
        };
        let moved = core.db().and_then(|db| c.advance(&db, to));
        match moved {
            Ok(Some(_)) => {
                stream.metrics.dropped("max_lag", skipped);
                tracing::warn!(stream = %stream.name, exporter = %c.name, items = skipped, upto = to,
                    "disk queue: exporter fell further behind than its max_lag; skipped records");
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, exporter = %c.name, "disk queue: cannot move a lagging cursor")
            }
        }
    }
}

fn refresh_gauges(stream: &StreamShared, now: u64) {
    let cursors = stream.cursors();
    let idx = stream.index();
    let total = idx.total();
    let age = |created: Option<u64>| {
        created.map_or(0.0, |c| {
            Duration::from_millis(now.saturating_sub(c)).as_secs_f64()
        })
    };
    stream.metrics.set(
        total.bytes,
        total.records,
        age(idx.entries.front().map(|e| e.created_ms)),
    );
    for c in cursors {
        let lag = idx.lag_after(c.watermark(), now);
        c.metrics.set(
            lag.records,
            lag.bytes,
            lag.oldest_age.map_or(0.0, |d| d.as_secs_f64()),
        );
    }
}
