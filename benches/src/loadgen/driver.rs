//! The load loop: in-flight slots, the stop condition, the rate cap and the progress line.
//!
//! `--in-flight` slots each run a closed loop (send, wait for the answer, send again), so at
//! most that many requests are outstanding and the server's speed sets the pace unless `--rate`
//! caps it. Guarantees:
//! - With `--count M`, exactly M requests are started (a shared countdown hands them out).
//! - With `--duration`, no request starts after the deadline; those in flight finish or time out.
//! - Every request ends in exactly one counted [`Outcome`]: an answer, `timeout` after
//!   `--timeout`, or a transport failure. Nothing is retried.
//! - A slot that meets `connect_error` pauses [`CONNECT_ERROR_PAUSE`] before its next request,
//!   so a server that is down is counted, not hammered by a busy loop that would starve the
//!   machine (the server under test included) of CPU.
//!
//! Slots count into [`TALLY_SHARDS`] tallies at most rather than one each: a latency histogram
//! is a couple of hundred KiB, too much to keep per slot when `--in-flight` is in the
//! thousands, and a shared one would be a lock every slot contends on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::answer::{Answer, Outcome};
use super::grpc::GrpcSender;
use super::http::HttpSender;
use super::options::{Plan, Stop};
use super::report::Tally;

/// How long a slot waits after a refused connection before its next request.
pub const CONNECT_ERROR_PAUSE: Duration = Duration::from_millis(10);

/// The most tallies the slots count into; slot `i` uses tally `i % TALLY_SHARDS`.
pub const TALLY_SHARDS: usize = 16;

/// Sends the run's request over one transport.
#[derive(Debug, Clone)]
pub enum Sender {
    Grpc(GrpcSender),
    Http(HttpSender),
}

impl Sender {
    async fn send(&mut self) -> Outcome {
        match self {
            Sender::Grpc(sender) => sender.send().await,
            Sender::Http(sender) => sender.send().await,
        }
    }
}

/// Runs the plan's load through `senders` (one per connection; slots are spread over them
/// round-robin) and returns the merged tally and the time from first start to last answer.
pub async fn drive(
    plan: &Plan,
    items: u64,
    request_bytes: u64,
    senders: Vec<Sender>,
) -> (Tally, Duration) {
    let start = Instant::now();
    // A plan built by hand rather than by `Options::plan` may say 0; one slot is the least load.
    let in_flight = plan.in_flight.max(1) as usize;
    let shared = Arc::new(Shared {
        tallies: (0..in_flight.min(TALLY_SHARDS))
            .map(|_| Mutex::default())
            .collect(),
        budget: Budget::new(start, plan.stop),
        pacer: plan.rate.map(|rate| Pacer::new(rate, start)),
        progress: Progress::default(),
        timeout: plan.timeout,
        items,
    });
    let progress = plan.progress.then(|| {
        tokio::spawn(report_progress(
            shared.clone(),
            start,
            request_bytes,
            plan.signal.item_name(),
        ))
    });

    let slots: Vec<_> = (0..in_flight)
        .map(|slot| {
            let sender = senders[slot % senders.len()].clone();
            tokio::spawn(run_slot(
                sender,
                shared.clone(),
                slot % shared.tallies.len(),
            ))
        })
        .collect();
    for slot in slots {
        if let Err(err) = slot.await {
            if err.is_panic() {
                std::panic::resume_unwind(err.into_panic());
            }
            // Otherwise the runtime is shutting down under us: what was counted is counted.
        }
    }
    let elapsed = start.elapsed();
    if let Some(progress) = progress {
        progress.abort();
    }
    let mut tally = Tally::default();
    for shard in &shared.tallies {
        tally.merge(&shard.lock().unwrap_or_else(PoisonError::into_inner));
    }
    (tally, elapsed)
}

struct Shared {
    // std mutexes: each is held for one record, never across an await, and slots rarely meet
    // on one since a slot records once per round trip.
    tallies: Vec<Mutex<Tally>>,
    budget: Budget,
    pacer: Option<Pacer>,
    progress: Progress,
    timeout: Duration,
    items: u64,
}

async fn run_slot(mut sender: Sender, shared: Arc<Shared>, tally: usize) {
    loop {
        if let Some(pacer) = &shared.pacer {
            let slot = pacer.next_slot();
            if shared.budget.is_past_deadline(slot) {
                break;
            }
            tokio::time::sleep_until(slot).await;
        }
        if !shared.budget.take() {
            break;
        }
        let started = Instant::now();
        let outcome = tokio::time::timeout(shared.timeout, sender.send())
            .await
            .unwrap_or(Outcome::of(Answer::Timeout));
        let latency = started.elapsed();
        shared.tallies[tally]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(outcome, latency, shared.items);
        shared.progress.record(outcome, shared.items);
        if outcome.answer == Answer::ConnectError {
            let resume = Instant::now() + CONNECT_ERROR_PAUSE;
            if shared.budget.is_past_deadline(resume) {
                break;
            }
            tokio::time::sleep_until(resume).await;
        }
    }
}

/// Hands out the requests a run may start.
#[derive(Debug)]
pub struct Budget {
    deadline: Option<Instant>,
    remaining: Option<AtomicU64>,
}

impl Budget {
    pub fn new(start: Instant, stop: Stop) -> Budget {
        Budget {
            deadline: stop.duration.map(|d| start + d),
            remaining: stop.count.map(AtomicU64::new),
        }
    }

    /// Takes one request from the budget; false once the run must stop starting requests.
    pub fn take(&self) -> bool {
        if self.is_past_deadline(Instant::now()) {
            return false;
        }
        match &self.remaining {
            None => true,
            Some(remaining) => remaining
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok(),
        }
    }

    /// Whether `at` is at or past the end of a timed run.
    pub fn is_past_deadline(&self, at: Instant) -> bool {
        self.deadline.is_some_and(|deadline| at >= deadline)
    }
}

/// Spaces request starts `1/rate` apart across all slots.
///
/// A cap, not a schedule: when the server falls behind, the missed slots are dropped rather
/// than sent in a burst to catch up, so `--rate` never makes the load spikier than it asked.
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    // A std mutex: it guards one Instant for a few nanoseconds and is never held across an
    // await, which is cheaper than an async mutex and cannot deadlock the runtime.
    next: Mutex<Instant>,
}

impl Pacer {
    pub fn new(rate: f64, start: Instant) -> Pacer {
        Pacer {
            // `Options` keeps the rate within 1e-5..=1e9; a hand-built plan outside that gets
            // one request a day rather than a panic.
            interval: Duration::try_from_secs_f64(1.0 / rate)
                .unwrap_or(Duration::from_secs(86_400))
                .min(Duration::from_secs(86_400)),
            next: Mutex::new(start),
        }
    }

    /// Reserves the next start time: the scheduled one, or now if that has passed.
    pub fn next_slot(&self) -> Instant {
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = (*next).max(Instant::now());
        *next = slot + self.interval;
        slot
    }
}

/// Running totals for the progress line; exact totals come from the tallies.
#[derive(Debug, Default)]
struct Progress {
    requests: AtomicU64,
    answered: AtomicU64,
    items_accepted: AtomicU64,
    not_success: AtomicU64,
}

impl Progress {
    fn record(&self, outcome: Outcome, items: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if outcome.answer.was_answered() {
            self.answered.fetch_add(1, Ordering::Relaxed);
        }
        if outcome.answer.is_success() {
            let accepted = items - outcome.rejected.min(items);
            self.items_accepted.fetch_add(accepted, Ordering::Relaxed);
        } else {
            self.not_success.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Prints one line a second on stderr with the last second's rates.
async fn report_progress(
    shared: Arc<Shared>,
    start: Instant,
    request_bytes: u64,
    item_name: &'static str,
) {
    let mut ticks =
        tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let (mut last_requests, mut last_answered, mut last_items) = (0, 0, 0);
    loop {
        ticks.tick().await;
        let p = &shared.progress;
        let requests = p.requests.load(Ordering::Relaxed);
        let answered = p.answered.load(Ordering::Relaxed);
        let items = p.items_accepted.load(Ordering::Relaxed);
        let not_success = p.not_success.load(Ordering::Relaxed);
        eprintln!(
            "[{:>4}s] {:>8} req/s {:>11} {item_name}/s {:>8.2} MB/s   not OK so far: {not_success}",
            start.elapsed().as_secs(),
            requests - last_requests,
            items - last_items,
            ((answered - last_answered) * request_bytes) as f64 / 1e6,
        );
        (last_requests, last_answered, last_items) = (requests, answered, items);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_budget_hands_out_exactly_that_many() {
        let budget = Budget::new(
            Instant::now(),
            Stop {
                duration: None,
                count: Some(3),
            },
        );
        assert!(budget.take() && budget.take() && budget.take());
        assert!(!budget.take());
        assert!(!budget.take());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_count_budget_is_exact_under_contention() {
        let budget = Arc::new(Budget::new(
            Instant::now(),
            Stop {
                duration: None,
                count: Some(10_000),
            },
        ));
        let takers: Vec<_> = (0..8)
            .map(|_| {
                let budget = budget.clone();
                tokio::spawn(async move {
                    let mut taken = 0u64;
                    while budget.take() {
                        taken += 1;
                        tokio::task::yield_now().await;
                    }
                    taken
                })
            })
            .collect();
        let mut total = 0;
        for taker in takers {
            total += taker.await.unwrap();
        }
        assert_eq!(total, 10_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_timed_budget_stops_at_the_deadline() {
        let budget = Budget::new(
            Instant::now(),
            Stop {
                duration: Some(Duration::from_secs(2)),
                count: None,
            },
        );
        assert!(budget.take());
        tokio::time::advance(Duration::from_millis(1999)).await;
        assert!(budget.take());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!budget.take());
    }

    #[tokio::test(start_paused = true)]
    async fn the_pacer_spaces_starts_and_skips_missed_slots() {
        let start = Instant::now();
        let pacer = Pacer::new(100.0, start);
        let slots: Vec<Duration> = (0..5).map(|_| pacer.next_slot() - start).collect();
        let expected: Vec<Duration> = (0..5).map(|i| Duration::from_millis(10 * i)).collect();
        assert_eq!(slots, expected);

        // Fall a second behind: the next slot is now, not a burst of a hundred overdue ones.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(pacer.next_slot() - start, Duration::from_secs(1));
        assert_eq!(pacer.next_slot() - start, Duration::from_millis(1010));
    }
}
