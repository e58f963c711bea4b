//! Counting outcomes during a run, and the report at its end.
//!
//! In-flight slots count into a few [`Tally`]s (see `driver`), merged once the run is over. The [`Report`] is the contract with scripts:
//! `--json` prints it as one object, with field names that say their unit.
//!
//! What the numbers mean:
//! - `requests` counts every request started, however it ended; `answers` splits the same
//!   count by how it ended, so the answers always add up to `requests`.
//! - `items_accepted` counts the items of successful answers minus what their `partial_success`
//!   rejected; `items_per_sec` is accepted items per second.
//! - Wire bytes are the request bodies (for gRPC with the 5-byte message prefix) of requests
//!   that got an answer; HTTP and HTTP/2 framing and headers are not counted.
//! - Latency covers requests that got an answer, from the moment the slot started the request
//!   to the end of the response, so a slow connect shows up in it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::answer::{Answer, Outcome};
use super::compression::Compression;
use super::options::{Plan, Protocol};
use super::signal::Signal;

/// The longest latency the histogram tells apart; longer ones are recorded as this.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Outcomes counted by some of the in-flight slots.
#[derive(Debug, Clone)]
pub struct Tally {
    requests: u64,
    answered: u64,
    items_accepted: u64,
    items_rejected: u64,
    latency_us: Histogram<u64>,
    answers: HashMap<Answer, u64>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            requests: 0,
            answered: 0,
            items_accepted: 0,
            items_rejected: 0,
            // Three significant digits: 0.1% resolution at any latency, for about 190 KiB.
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("constant histogram bounds are valid"),
            answers: HashMap::new(),
        }
    }
}

impl Tally {
    /// Counts one request of `items` items that ended with `outcome` after `latency`.
    pub fn record(&mut self, outcome: Outcome, latency: Duration, items: u64) {
        self.requests += 1;
        *self.answers.entry(outcome.answer).or_insert(0) += 1;
        if outcome.answer.was_answered() {
            self.answered += 1;
            let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
            self.latency_us
                .saturating_record(micros.clamp(1, MAX_LATENCY_US));
        }
        if outcome.answer.is_success() {
            let rejected = outcome.rejected.min(items);
            self.items_rejected += rejected;
            self.items_accepted += items - rejected;
        }
    }

    /// Adds another slot's counts to this one.
    pub fn merge(&mut self, other: &Tally) {
        self.requests += other.requests;
        self.answered += other.answered;
        self.items_accepted += other.items_accepted;
        self.items_rejected += other.items_rejected;
        // Both histograms share the same bounds, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        for (answer, count) in &other.answers {
            *self.answers.entry(*answer).or_insert(0) += count;
        }
    }
}

/// Latency percentiles of answered requests, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Latency {
    /// Requests the percentiles are over.
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub signal: Signal,
    pub protocol: Protocol,
    pub endpoint: String,
    pub compression: Compression,
    pub batch: u32,
    pub in_flight: u32,
    pub connections: u32,
    /// Bytes of one request on the wire (see the module doc for what is counted).
    pub request_bytes: u64,
    /// Requests started; the `answers` add up to this.
    pub requests: u64,
    /// Items in all requests started.
    pub items_sent: u64,
    /// Items the server took: successful answers minus `partial_success` rejections.
    pub items_accepted: u64,
    /// Items successful answers reported as rejected in `partial_success`.
    pub items_rejected: u64,
    pub elapsed_secs: f64,
    /// Accepted items per second.
    pub items_per_sec: f64,
    pub requests_per_sec: f64,
    /// Request bytes of requests that got an answer.
    pub wire_bytes: u64,
    /// `wire_bytes` per second, in millions of bytes.
    pub wire_mb_per_sec: f64,
    pub latency: Latency,
    /// Requests by how they ended: gRPC status names, HTTP statuses, `connect_error`,
    /// `transport_error`, `timeout`, `bad_response`.
    pub answers: BTreeMap<String, u64>,
}

impl Report {
    /// Builds the report of a run of `plan` whose requests were `request_bytes` long.
    pub fn new(plan: &Plan, request_bytes: u64, tally: &Tally, elapsed: Duration) -> Report {
        let secs = elapsed.as_secs_f64();
        let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let wire_bytes = tally.answered * request_bytes;
        let histogram = &tally.latency_us;
        let latency = Latency {
            count: histogram.len(),
            p50_us: if histogram.is_empty() {
                0
            } else {
                histogram.value_at_quantile(0.50)
            },
            p99_us: if histogram.is_empty() {
                0
            } else {
                histogram.value_at_quantile(0.99)
            },
            max_us: histogram.max(),
        };
        Report {
            signal: plan.signal,
            protocol: plan.protocol,
            endpoint: plan.endpoint.clone(),
            compression: plan.compression,
            batch: plan.batch,
            in_flight: plan.in_flight,
            connections: plan.connections,
            request_bytes,
            requests: tally.requests,
            items_sent: tally.requests * u64::from(plan.batch),
            items_accepted: tally.items_accepted,
            items_rejected: tally.items_rejected,
            elapsed_secs: secs,
            items_per_sec: per_sec(tally.items_accepted),
            requests_per_sec: per_sec(tally.requests),
            wire_bytes,
            wire_mb_per_sec: per_sec(wire_bytes) / 1e6,
            latency,
            answers: tally
                .answers
                .iter()
                .map(|(answer, count)| (answer.label().into_owned(), *count))
                .collect(),
        }
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        // A struct of numbers, strings and a string-keyed map always serializes.
        serde_json::to_string(self).expect("a report serializes to JSON")
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn row(
            f: &mut fmt::Formatter<'_>,
            label: &str,
            value: impl fmt::Display,
            rest: &str,
        ) -> fmt::Result {
            let line = format!("  {label:<22}{:<16}{rest}", value.to_string());
            writeln!(f, "{}", line.trim_end())
        }
        let items = self.signal.item_name();
        let ms = |us: u64| us as f64 / 1000.0;
        writeln!(
            f,
            "loadgen: {} over {} to {} (batch {}, in-flight {}, connections {}, compression {})",
            self.signal.name(),
            self.protocol.name(),
            self.endpoint,
            self.batch,
            self.in_flight,
            self.connections,
            self.compression.name(),
        )?;
        row(f, "elapsed", format!("{:.3} s", self.elapsed_secs), "")?;
        row(
            f,
            "requests sent",
            self.requests,
            &format!("{:.1} req/s", self.requests_per_sec),
        )?;
        row(f, &format!("{items} sent"), self.items_sent, "")?;
        row(
            f,
            &format!("{items} accepted"),
            self.items_accepted,
            &format!("{:.1} {items}/s", self.items_per_sec),
        )?;
        row(
            f,
            &format!("{items} rejected"),
            self.items_rejected,
            "(partial success)",
        )?;
        row(
            f,
            "bytes on the wire",
            self.wire_bytes,
            &format!(
                "{:.2} MB/s, {} bytes per request",
                self.wire_mb_per_sec, self.request_bytes
            ),
        )?;
        row(
            f,
            "latency",
            format!("p50 {:.3} ms", ms(self.latency.p50_us)),
            &format!(
                "p99 {:.3} ms, max {:.3} ms ({} answered)",
                ms(self.latency.p99_us),
                ms(self.latency.max_us),
                self.latency.count
            ),
        )?;
        let answers: Vec<String> = self
            .answers
            .iter()
            .map(|(label, count)| format!("{label} {count}"))
            .collect();
        let answers = if answers.is_empty() {
            "none".to_owned()
        } else {
            answers.join(", ")
        };
        write!(f, "  {:<22}{answers}", "answers")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::options::Options;
    use clap::Parser;
    use tonic::Code;

    fn plan() -> Plan {
        Options::parse_from(["loadgen", "--batch", "10"])
            .plan()
            .unwrap()
    }

    #[test]
    fn partial_success_is_subtracted_and_failures_accept_nothing() {
        let mut a = Tally::default();
        a.record(
            Outcome::of(Answer::Grpc(Code::Ok)),
            Duration::from_millis(2),
            10,
        );
        a.record(
            Outcome {
                answer: Answer::Grpc(Code::Ok),
                rejected: 3,
            },
            Duration::from_millis(4),
            10,
        );
        let mut b = Tally::default();
        b.record(
            Outcome::of(Answer::Grpc(Code::ResourceExhausted)),
            Duration::from_millis(1),
            10,
        );
        b.record(
            Outcome::of(Answer::ConnectError),
            Duration::from_micros(50),
            10,
        );
        b.record(
            Outcome::of(Answer::BadResponse),
            Duration::from_millis(1),
            10,
        );
        a.merge(&b);

        let report = Report::new(&plan(), 1000, &a, Duration::from_secs(2));
        assert_eq!(report.requests, 5);
        assert_eq!(report.items_sent, 50);
        assert_eq!(report.items_accepted, 17);
        assert_eq!(report.items_rejected, 3);
        assert_eq!(report.answers.values().sum::<u64>(), report.requests);
        assert_eq!(report.answers["OK"], 2);
        assert_eq!(report.answers["RESOURCE_EXHAUSTED"], 1);
        assert_eq!(report.answers["connect_error"], 1);
        assert_eq!(report.answers["bad_response"], 1);
        assert_eq!(report.latency.count, 4, "the connect error has no latency");
        assert_eq!(report.wire_bytes, 4000, "the connect error moved no bytes");
        assert!((report.items_per_sec - 8.5).abs() < 1e-9);
        assert!((report.requests_per_sec - 2.5).abs() < 1e-9);
        assert!((report.wire_mb_per_sec - 0.002).abs() < 1e-12);
        let max_ms = report.latency.max_us as f64 / 1000.0;
        assert!((max_ms - 4.0).abs() < 0.01, "{max_ms}");
    }

    #[test]
    fn rejections_never_exceed_the_batch() {
        let mut tally = Tally::default();
        tally.record(
            Outcome {
                answer: Answer::Http(200),
                rejected: 99,
            },
            Duration::from_millis(1),
            10,
        );
        let report = Report::new(&plan(), 1, &tally, Duration::from_secs(1));
        assert_eq!(report.items_accepted, 0);
        assert_eq!(report.items_rejected, 10);
    }

    #[test]
    fn an_empty_run_reports_zeros_not_nan() {
        let report = Report::new(&plan(), 100, &Tally::default(), Duration::ZERO);
        assert_eq!(
            report.latency,
            Latency {
                count: 0,
                p50_us: 0,
                p99_us: 0,
                max_us: 0
            }
        );
        assert_eq!(report.items_per_sec, 0.0);
        assert!(report.to_string().trim_end().ends_with("none"));
        assert!(!report.to_json().contains("NaN"));
    }

    #[test]
    fn json_is_one_line_with_every_field() {
        let mut tally = Tally::default();
        tally.record(Outcome::of(Answer::Http(429)), Duration::from_millis(1), 10);
        let json = Report::new(&plan(), 100, &tally, Duration::from_secs(1)).to_json();
        assert!(!json.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        for key in [
            "signal",
            "protocol",
            "endpoint",
            "compression",
            "batch",
            "in_flight",
            "connections",
            "request_bytes",
            "requests",
            "items_sent",
            "items_accepted",
            "items_rejected",
            "elapsed_secs",
            "items_per_sec",
            "requests_per_sec",
            "wire_bytes",
            "wire_mb_per_sec",
            "latency",
            "answers",
        ] {
            assert!(value.get(key).is_some(), "{key} missing from {json}");
        }
        assert_eq!(value["signal"], "traces");
        assert_eq!(value["protocol"], "grpc");
        assert_eq!(value["answers"]["429"], 1);
        assert_eq!(value["latency"]["count"], 1);
    }
}
