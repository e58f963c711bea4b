//! The policies that decide *when* an exporter sends: retry backoff, the circuit breaker and the
//! bandwidth cap. They hold no data; the data stays in the disk queue until it is delivered or dropped by
//! a counted rule, so every policy here can afford to wait.
//!
//! - [`Backoff`]: exponential with jitter, the OpenTelemetry Collector's `retry_on_failure` semantics,
//!   except that a server's Retry-After / RetryInfo is a floor for the next wait.
//! - [`Breaker`]: shared by all requests of one exporter and signal. Closed, it lets every request
//!   through and counts consecutive failures; open, it lets exactly one probe through per (growing,
//!   jittered) interval, so a dead link costs one request per interval instead of a busy loop; the first
//!   success closes it.
//! - [`Bandwidth`]: a token bucket over the bytes put on the wire, shared by every signal of one exporter.
//!   Bytes are debited when they are written (or, for HTTP bodies, when the request is made), and a
//!   request may start only while the bucket is not in debt, so over any drain the rate is the configured
//!   one plus at most one burst and the requests already in flight.

use std::sync::Mutex;
use std::time::Duration;

use outpost_config::{CircuitBreakerConfig, RetryConfig};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;
// tokio's clock, so tests can run with paused time.
use tokio::time::Instant;

/// Scales `d` by a random factor in `[1 - f, 1 + f]`.
fn jitter(d: Duration, factor: f64) -> Duration {
    if factor <= 0.0 {
        return d;
    }
    let scale = 1.0 + factor * (2.0 * fastrand::f64() - 1.0);
    d.mul_f64(scale.max(0.0))
}

/// Retry intervals for one record.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    multiplier: f64,
    randomization: f64,
}

impl Backoff {
    pub fn new(cfg: &RetryConfig) -> Self {
        Self {
            next: cfg.initial_interval.get(),
            max: cfg.max_interval.get(),
            multiplier: cfg.multiplier,
            randomization: cfg.randomization_factor,
        }
    }

    /// The wait before the next attempt; never shorter than what the server asked for.
    pub fn next_delay(&mut self, server_asked: Option<Duration>) -> Duration {
        let d = jitter(self.next, self.randomization);
        self.next = self.next.mul_f64(self.multiplier).min(self.max);
        match server_asked {
            Some(asked) => d.max(asked),
            None => d,
        }
    }
}

#[derive(Debug)]
enum Mode {
    Closed {
        failures: u32,
    },
    Open {
        next_probe: Instant,
        interval: Duration,
        probing: bool,
    },
}

/// What a request was allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// The breaker is closed.
    Normal,
    /// The breaker is open and this request is its one probe.
    Probe,
}

/// One exporter's circuit breaker. See the module docs.
pub struct Breaker {
    cfg: CircuitBreakerConfig,
    mode: Mutex<Mode>,
    changed: Notify,
    /// 1 while open.
    gauge: Gauge,
}

impl Breaker {
    pub fn new(cfg: &CircuitBreakerConfig, gauge: Gauge) -> Self {
        Self {
            cfg: cfg.clone(),
            mode: Mutex::new(Mode::Closed { failures: 0 }),
            changed: Notify::new(),
            gauge,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Mode> {
        self.mode.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_open(&self) -> bool {
        matches!(*self.lock(), Mode::Open { .. })
    }

    /// Waits until a request may be sent. Cancel-safe: a probe permit is only taken in the poll that
    /// returns it.
    pub async fn permit(&self) -> Permit {
        loop {
            let notified = self.changed.notified();
            let wait_until = {
                let mut mode = self.lock();
                match &mut *mode {
                    Mode::Closed { .. } => return Permit::Normal,
                    Mode::Open {
                        next_probe,
                        probing,
                        ..
                    } => {
                        if !*probing && Instant::now() >= *next_probe {
                            *probing = true;
                            return Permit::Probe;
                        }
                        (!*probing).then_some(*next_probe)
                    }
                }
            };
            match wait_until {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = notified => {}
                    }
                }
                // A probe is out: its outcome decides.
                None => notified.await,
            }
        }
    }

    /// A request reached the destination and was answered (accepted, or refused for a reason that is
    /// not the link's fault).
    pub fn success(&self) {
        let mut mode = self.lock();
        let was_open = matches!(*mode, Mode::Open { .. });
        *mode = Mode::Closed { failures: 0 };
        drop(mode);
        if was_open {
            self.gauge.set(0);
            tracing::info!("circuit breaker closed: the destination answers again");
            self.changed.notify_waiters();
        }
    }

    /// A request failed in a way that says the link or the destination is in trouble. `server_asked` (a
    /// Retry-After) postpones the next probe at least that long.
    pub fn failure(&self, permit: Permit, server_asked: Option<Duration>) {
        if !self.cfg.enabled {
            return;
        }
        let now = Instant::now();
        let mut mode = self.lock();
        match &mut *mode {
            Mode::Closed { failures } => {
                *failures += 1;
                if *failures >= self.cfg.failure_threshold {
                    let interval = self.cfg.initial_interval.get();
                    let wait = jitter(interval, 0.2).max(server_asked.unwrap_or_default());
                    *mode = Mode::Open {
                        next_probe: now + wait,
                        interval,
                        probing: false,
                    };
                    drop(mode);
                    self.gauge.set(1);
                    tracing::warn!(
                        probe_in = ?wait,
                        "circuit breaker open: the destination keeps failing; probing it with one request at a time"
                    );
                }
            }
            Mode::Open {
                next_probe,
                interval,
                probing,
            } => {
                // Only the probe's failure grows the interval; late failures of requests that were
                // already in flight when the breaker opened say nothing new.
                if permit == Permit::Probe {
                    *interval = interval.mul_f64(2.0).min(self.cfg.max_interval.get());
                    *next_probe =
                        now + jitter(*interval, 0.2).max(server_asked.unwrap_or_default());
                    *probing = false;
                    drop(mode);
                    self.changed.notify_waiters();
                }
            }
        }
    }

    /// A probe ended without an answer either way (e.g. shutdown): let another request probe.
    pub fn release(&self, permit: Permit) {
        if permit != Permit::Probe {
            return;
        }
        if let Mode::Open { probing, .. } = &mut *self.lock() {
            *probing = false;
        }
        self.changed.notify_waiters();
    }
}

/// A token bucket over wire bytes. See the module docs.
pub struct Bandwidth {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bandwidth {
    pub fn new(bytes_per_second: u64, burst: Option<u64>) -> Self {
        let rate = bytes_per_second.max(1) as f64;
        let burst = burst.map(|b| b as f64).unwrap_or(rate).max(1.0);
        Self {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    fn refill(&self, now: Instant) -> std::sync::MutexGuard<'_, (f64, Instant)> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_duration_since(s.1).as_secs_f64();
        s.0 = (s.0 + elapsed * self.rate).min(self.burst);
        s.1 = now;
        s
    }

    /// Records `bytes` put on the wire. The bucket may go into debt; [`Bandwidth::ready`] waits it out.
    pub fn debit(&self, bytes: usize) {
        self.refill(Instant::now()).0 -= bytes as f64;
    }

    /// Waits until the bucket is out of debt. Returns how long it waited.
    pub async fn ready(&self) -> Duration {
        let start = Instant::now();
        loop {
            let tokens = self.refill(Instant::now()).0;
            if tokens >= 0.0 {
                return start.elapsed();
            }
            tokio::time::sleep(Duration::from_secs_f64(-tokens / self.rate)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_config::HumanDuration;

    fn retry(initial_ms: u64, max_ms: u64, mult: f64, rf: f64) -> RetryConfig {
        RetryConfig {
            initial_interval: HumanDuration(Duration::from_millis(initial_ms)),
            max_interval: HumanDuration(Duration::from_millis(max_ms)),
            multiplier: mult,
            randomization_factor: rf,
            ..RetryConfig::default()
        }
    }

    #[test]
    fn backoff_grows_to_its_cap_and_honours_the_server() {
        let mut b = Backoff::new(&retry(100, 1000, 2.0, 0.0));
        let got: Vec<u64> = (0..6)
            .map(|_| b.next_delay(None).as_millis() as u64)
            .collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
    }

    #[test]
    fn backoff_jitter_stays_within_the_randomization_factor() {
        for _ in 0..1000 {
            let d = Backoff::new(&retry(1000, 1000, 1.5, 0.5)).next_delay(None);
            assert!(
                d >= Duration::from_millis(500) && d <= Duration::from_millis(1500),
                "{d:?}"
            );
        }
    }

    fn breaker(threshold: u32, initial_ms: u64, max_ms: u64) -> Breaker {
        Breaker::new(
            &CircuitBreakerConfig {
                enabled: true,
                failure_threshold: threshold,
                initial_interval: HumanDuration(Duration::from_millis(initial_ms)),
                max_interval: HumanDuration(Duration::from_millis(max_ms)),
            },
            Gauge::default(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_after_the_threshold_and_lets_one_probe_through() {
        let b = breaker(3, 1000, 8000);
        for _ in 0..2 {
            assert_eq!(b.permit().await, Permit::Normal);
            b.failure(Permit::Normal, None);
        }
        assert!(!b.is_open());
        b.failure(Permit::Normal, None);
        assert!(b.is_open());
        // No request before the probe time (1 s ± 20%).
        let early = tokio::time::timeout(Duration::from_millis(790), b.permit()).await;
        assert!(early.is_err(), "a permit was granted while open");
        let p = tokio::time::timeout(Duration::from_millis(500), b.permit())
            .await
            .expect("the probe is due after about 1 s");
        assert_eq!(p, Permit::Probe);
        // Only one probe at a time.
        assert!(tokio::time::timeout(Duration::from_secs(60), b.permit())
            .await
            .is_err());
        // A failed probe doubles the interval: 2 s ± 20%.
        b.failure(Permit::Probe, None);
        assert!(
            tokio::time::timeout(Duration::from_millis(1590), b.permit())
                .await
                .is_err()
        );
        let p = tokio::time::timeout(Duration::from_millis(900), b.permit())
            .await
            .unwrap();
        assert_eq!(p, Permit::Probe);
        b.success();
        assert!(!b.is_open());
        assert_eq!(b.permit().await, Permit::Normal);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_request_goes_as_soon_as_the_probe_succeeds() {
        let b = std::sync::Arc::new(breaker(1, 1000, 8000));
        b.failure(Permit::Normal, None);
        let probe = b.permit().await;
        assert_eq!(probe, Permit::Probe);
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.permit().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        b.success();
        assert_eq!(waiter.await.unwrap(), Permit::Normal);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_postpones_the_probe() {
        let b = breaker(1, 100, 8000);
        b.failure(Permit::Normal, Some(Duration::from_secs(30)));
        assert!(tokio::time::timeout(Duration::from_secs(29), b.permit())
            .await
            .is_err());
        assert_eq!(b.permit().await, Permit::Probe);
    }

    #[tokio::test(start_paused = true)]
    async fn bandwidth_holds_the_rate_over_a_drain() {
        let bw = Bandwidth::new(1000, Some(500));
        let start = tokio::time::Instant::now();
        let mut sent = 0;
        while sent < 20_000 {
            bw.ready().await;
            bw.debit(300);
            sent += 300;
        }
        let secs = start.elapsed().as_secs_f64();
        // 20,100 bytes at 1000 B/s with a 500 B burst: the last request may start once the debt is paid.
        let expected = (sent as f64 - 500.0 - 300.0) / 1000.0;
        assert!(
            (secs - expected).abs() < 0.05 * expected,
            "took {secs:.2}s, expected about {expected:.2}s"
        );
    }
}
