//! outpost's own metrics, served as Prometheus text on the admin endpoint's `/metrics`.
//!
//! Components never name metrics themselves: they get a typed handle ([`ReceiverMetrics`],
//! [`ProcessorMetrics`], [`ExporterMetrics`], [`QueueMetrics`]) with one method per event, and this
//! module alone turns events into metric names and labels, so every component of a kind reports the same
//! way. Handles resolve their label sets once at build time; the hot path is an atomic add. Reason labels
//! are resolved per event because drops are the rare path.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use outpost_config::Signal;

type Labels = Vec<(&'static str, String)>;
/// A gauge of seconds (ages), which need a fraction.
type SecondsGauge = Gauge<f64, AtomicU64>;
/// A counter of seconds spent, which need a fraction.
type SecondsCounter = Counter<f64, AtomicU64>;

/// The registry and every metric family outpost exports.
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    receiver_accepted: Family<Labels, Counter>,
    receiver_refused: Family<Labels, Counter>,
    receiver_requests_refused: Family<Labels, Counter>,
    receiver_dropped: Family<Labels, Counter>,
    receiver_malformed: Family<Labels, Counter>,
    filelog_files: Family<Labels, Gauge>,
    filelog_read_bytes: Family<Labels, Counter>,
    receiver_scrapes: Family<Labels, Counter>,
    receiver_skipped_scrapes: Family<Labels, Counter>,
    receiver_scrape_targets: Family<Labels, Gauge>,
    processor_incoming: Family<Labels, Counter>,
    processor_outgoing: Family<Labels, Counter>,
    processor_dropped: Family<Labels, Counter>,
    exporter_sent: Family<Labels, Counter>,
    exporter_failed: Family<Labels, Counter>,
    exporter_sent_bytes: Family<Labels, Counter>,
    exporter_retries: Family<Labels, Counter>,
    exporter_last_success: Family<Labels, Gauge>,
    exporter_circuit_open: Family<Labels, Gauge>,
    exporter_in_flight: Family<Labels, Gauge>,
    exporter_throttled: Family<Labels, SecondsCounter>,
    pipeline_inflight_bytes: Family<Labels, Gauge>,
    pipeline_limit_bytes: Family<Labels, Gauge>,
    queue_bytes: Family<Labels, Gauge>,
    queue_records: Family<Labels, Gauge>,
    queue_oldest_age: Family<Labels, SecondsGauge>,
    queue_pressure: Gauge,
    queue_dropped: Family<Labels, Counter>,
    queue_lag_records: Family<Labels, Gauge>,
    queue_lag_bytes: Family<Labels, Gauge>,
    queue_lag_seconds: Family<Labels, SecondsGauge>,
    redactions: Family<Labels, Counter>,
    transform_errors: Family<Labels, Counter>,
    sampling_policy: Family<Labels, Counter>,
    sampling_traces: Family<Labels, Counter>,
    sampling_early: Family<Labels, Counter>,
    sampling_late: Family<Labels, Counter>,
    sampling_held_bytes: Family<Labels, Gauge>,
    sampling_held_traces: Family<Labels, Gauge>,
    connector_emitted: Family<Labels, Counter>,
    connector_overflow: Family<Labels, Counter>,
    config: ConfigMetrics,
    receiver_auth_failures: Family<Labels, Counter>,
    receiver_rate_limited: Family<Labels, Counter>,
    tls_certificate_expiry: Family<Labels, SecondsGauge>,
    tls_reloads: Family<Labels, Counter>,
    cardinality_tracked: Family<Labels, Gauge>,
    cardinality_trimmed: Family<Labels, Counter>,
    /// What each cardinality_limit processor last published for `/debug/cardinality`.
    cardinality_reports: Mutex<Vec<Arc<Mutex<serde_json::Value>>>>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("outpost");
        macro_rules! family {
            ($name:expr, $help:expr) => {{
                let f = Family::<Labels, _>::default();
                registry.register($name, $help, f.clone());
                f
            }};
        }
        let build_info = Family::<Labels, Gauge>::default();
        registry.register(
            "build_info",
            "outpost's version; always 1",
            build_info.clone(),
        );
        build_info
            .get_or_create(&vec![("version", env!("CARGO_PKG_VERSION").to_string())])
            .set(1);
        let queue_pressure = Gauge::default();
        registry.register(
            "queue_pressure",
            "1 while the disk queue is above its high watermark and has not yet fallen below its low watermark",
            queue_pressure.clone(),
        );
        let inner = Inner {
            receiver_accepted: family!(
                "receiver_accepted_items",
                "Items (spans, data points, log records) a receiver accepted into its pipelines"
            ),
            receiver_refused: family!(
                "receiver_refused_items",
                "Items a receiver refused or rejected, by reason; the client was told"
            ),
            receiver_requests_refused: family!(
                "receiver_refused_requests",
                "Requests refused before their items could be counted (malformed, too large, ...), by reason"
            ),
            receiver_dropped: family!(
                "receiver_dropped_items",
                "Items a receiver dropped without being able to tell the sender (syslog over UDP under \
                 pressure), by reason"
            ),
            receiver_malformed: family!(
                "receiver_malformed_items",
                "Items a receiver kept although they did not parse (kept raw, with a parse-error attribute) or \
                 had to cut (longer than max_log_size), by reason"
            ),
            filelog_files: family!(
                "filelog_files_open",
                "Files a filelog receiver holds open and reads"
            ),
            filelog_read_bytes: family!(
                "filelog_read_bytes",
                "Bytes a filelog receiver read from its files and handed to its pipelines"
            ),
            receiver_scrapes: family!(
                "receiver_scrapes",
                "Scrapes a prometheus receiver made, per job, by result (ok, failed)"
            ),
            receiver_skipped_scrapes: family!(
                "receiver_skipped_scrapes",
                "Scrapes a prometheus receiver skipped or whose data it dropped, per job, by reason (queue_full, \
                 pipeline_full, memory_limit: the pipeline pushed back; late: the previous scrape was still \
                 being queued when this one was due)"
            ),
            receiver_scrape_targets: family!(
                "receiver_scrape_targets",
                "Targets a prometheus receiver scrapes, per job"
            ),
            processor_incoming: family!("processor_incoming_items", "Items entering a processor"),
            processor_outgoing: family!("processor_outgoing_items", "Items leaving a processor"),
            processor_dropped: family!(
                "processor_dropped_items",
                "Items a processor dropped, by reason"
            ),
            exporter_sent: family!(
                "exporter_sent_items",
                "Items an exporter delivered (accepted by the destination)"
            ),
            exporter_failed: family!(
                "exporter_send_failed_items",
                "Items an exporter failed to deliver, by reason"
            ),
            exporter_sent_bytes: family!(
                "exporter_sent_bytes",
                "Bytes of request bodies an exporter delivered (HTTP: as compressed on the wire; gRPC: the \
                 encoded message before gRPC compression)"
            ),
            exporter_retries: family!(
                "exporter_send_retries",
                "Requests that failed with a retryable error and were kept queued for another try, by reason"
            ),
            exporter_last_success: family!(
                "exporter_last_success_timestamp_seconds",
                "Unix time of the exporter's last successful send: the edge sync lag to alert on"
            ),
            exporter_circuit_open: family!(
                "exporter_circuit_open",
                "1 while the exporter's circuit breaker is open (the destination keeps failing and is only probed)"
            ),
            exporter_in_flight: family!(
                "exporter_in_flight_requests",
                "Records an exporter is delivering right now"
            ),
            exporter_throttled: family!(
                "exporter_throttled_seconds",
                "Time requests waited for the exporter's bandwidth cap (max_bytes_per_second)"
            ),
            pipeline_inflight_bytes: family!(
                "memory_limiter_inflight_bytes",
                "Bytes of telemetry in flight between receivers and the queue, per memory_limiter"
            ),
            pipeline_limit_bytes: family!(
                "memory_limiter_limit_bytes",
                "The bound on in-flight bytes above which receivers refuse data, per memory_limiter"
            ),
            queue_bytes: family!(
                "queue_bytes",
                "Bytes of records stored in the disk queue (header + compressed payload), per stream"
            ),
            queue_records: family!("queue_records", "Records stored in the disk queue, per stream"),
            queue_oldest_age: family!(
                "queue_oldest_age_seconds",
                "Age of the oldest record in the disk queue, per stream; 0 when empty"
            ),
            queue_pressure,
            queue_dropped: family!(
                "queue_dropped_items",
                "Items the disk queue will never deliver to some exporter, by reason (drop_newest, drop_oldest, \
                 max_age, max_lag, corrupt); counted once per exporter that loses them"
            ),
            queue_lag_records: family!(
                "exporter_queue_lag_records",
                "Records in the disk queue an exporter has not yet delivered"
            ),
            queue_lag_bytes: family!(
                "exporter_queue_lag_bytes",
                "Bytes in the disk queue an exporter has not yet delivered"
            ),
            queue_lag_seconds: family!(
                "exporter_queue_lag_seconds",
                "Age of the oldest record an exporter has not yet delivered; 0 when caught up"
            ),
            redactions: family!(
                "redactions",
                "Values or parts of values the redaction processor redacted, by rule and signal (pseudo-rules: \
                 blocked_key_patterns, allowed_keys, too_large, too_deep)"
            ),
            transform_errors: family!(
                "transform_errors",
                "Items on which a transform processor's VRL program failed at run time, by outcome (kept \
                 unchanged or dropped, per drop_on_error / drop_on_abort)"
            ),
            sampling_policy: family!(
                "tail_sampling_policy_evaluations",
                "Traces each tail_sampling policy evaluated, by its own verdict (sampled true/false)"
            ),
            sampling_traces: family!(
                "tail_sampling_traces",
                "Traces tail_sampling decided, by final decision and the policy that decided (empty: none matched)"
            ),
            sampling_early: family!(
                "tail_sampling_early_decisions",
                "Traces decided before their decision_wait, by reason (max_memory, num_traces, shutdown)"
            ),
            sampling_late: family!(
                "tail_sampling_late_spans",
                "Spans that arrived after their trace was decided and followed the decision"
            ),
            sampling_held_bytes: family!(
                "tail_sampling_held_bytes",
                "Heap bytes of the spans tail_sampling holds until their traces are decided"
            ),
            sampling_held_traces: family!(
                "tail_sampling_held_traces",
                "Traces tail_sampling holds awaiting a decision"
            ),
            connector_emitted: family!(
                "connector_emitted_items",
                "Data points a summarizing connector (spanmetrics, count) produced into its pipelines"
            ),
            connector_overflow: family!(
                "connector_overflow_items",
                "Items a connector counted in its overflow series because aggregation_cardinality_limit was reached"
            ),
            config: ConfigMetrics::register(&mut registry),
            receiver_auth_failures: family!(
                "receiver_auth_failures",
                "Connections or requests a receiver refused because the client did not authenticate (TLS \
                 handshake without or with an untrusted client certificate, missing or wrong token or \
                 password), by reason"
            ),
            receiver_rate_limited: family!(
                "receiver_rate_limited_requests",
                "Requests a receiver refused with RESOURCE_EXHAUSTED / 429 because one client exceeded its \
                 per-client limit, by limit (requests or bytes); on syslog TCP, the times a client's \
                 connection was paused (not read) until it was back within its budget (messages or bytes)"
            ),
            tls_certificate_expiry: family!(
                "tls_certificate_expiry_seconds",
                "Seconds until the certificate in a configured TLS file expires (negative: expired), per \
                 component and file"
            ),
            tls_reloads: family!(
                "tls_reloads",
                "Times a component re-read its TLS or credential files after they changed, by result \
                 (ok, or failed: the previous files stay in use)"
            ),
            cardinality_tracked: family!(
                "cardinality_tracked_series",
                "Series a cardinality_limit processor has admitted and tracks, per metric"
            ),
            cardinality_trimmed: family!(
                "cardinality_trimmed_items",
                "Data points a cardinality_limit processor trimmed, by metric, label (empty: a series \
                 budget, not a label's value_limit) and action (overflow, drop_label, drop_datapoint)"
            ),
            cardinality_reports: Mutex::new(Vec::new()),
            registry,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.inner.registry).expect("writing to a String cannot fail");
        out
    }

    pub fn receiver(&self, receiver: &str, transport: &'static str) -> ReceiverMetrics {
        ReceiverMetrics {
            telemetry: self.clone(),
            receiver: receiver.to_owned(),
            transport,
        }
    }

    pub fn processor(&self, pipeline: &str, processor: &str) -> ProcessorMetrics {
        let labels = vec![
            ("pipeline", pipeline.to_owned()),
            ("processor", processor.to_owned()),
        ];
        ProcessorMetrics {
            incoming: self.inner.processor_incoming.get_or_create_owned(&labels),
            outgoing: self.inner.processor_outgoing.get_or_create_owned(&labels),
            telemetry: self.clone(),
            labels,
        }
    }

    pub fn exporter(&self, exporter: &str, signal: Signal) -> ExporterMetrics {
        let labels = vec![
            ("exporter", exporter.to_owned()),
            ("signal", signal.as_str().to_owned()),
        ];
        ExporterMetrics {
            sent: self.inner.exporter_sent.get_or_create_owned(&labels),
            sent_bytes: self.inner.exporter_sent_bytes.get_or_create_owned(&labels),
            last_success: self
                .inner
                .exporter_last_success
                .get_or_create_owned(&labels),
            telemetry: self.clone(),
            labels,
        }
    }

    /// Counters of redactions for `signal`, one per rule id in `rules` (ids may repeat; they share a
    /// series), created now so every rule reports 0 before it first fires.
    pub fn redactions<'a>(
        &self,
        signal: Signal,
        rules: impl IntoIterator<Item = &'a str>,
    ) -> RedactionMetrics {
        RedactionMetrics {
            counters: rules
                .into_iter()
                .map(|rule| {
                    self.inner.redactions.get_or_create_owned(&vec![
                        ("rule", rule.to_owned()),
                        ("signal", signal.as_str().to_owned()),
                    ])
                })
                .collect(),
        }
    }

    /// Counters of one transform processor's runtime errors: (kept, dropped).
    pub fn transform_errors(&self, pipeline: &str, processor: &str) -> (Counter, Counter) {
        let labels = |outcome: &str| {
            vec![
                ("pipeline", pipeline.to_owned()),
                ("processor", processor.to_owned()),
                ("outcome", outcome.to_owned()),
            ]
        };
        (
            self.inner
                .transform_errors
                .get_or_create_owned(&labels("kept")),
            self.inner
                .transform_errors
                .get_or_create_owned(&labels("dropped")),
        )
    }

    /// Gauges for one memory_limiter's budget.
    pub fn memory_limiter(&self, limiter: &str) -> (Gauge, Gauge) {
        let labels = vec![("memory_limiter", limiter.to_owned())];
        (
            self.inner
                .pipeline_inflight_bytes
                .get_or_create_owned(&labels),
            self.inner.pipeline_limit_bytes.get_or_create_owned(&labels),
        )
    }
}

/// Redaction counters of one processor for one signal, indexed like the rules they count.
#[derive(Clone)]
pub struct RedactionMetrics {
    counters: Vec<Counter>,
}

impl RedactionMetrics {
    /// `n` redactions by rule number `rule`.
    pub fn add(&self, rule: usize, n: u64) {
        if let Some(c) = self.counters.get(rule) {
            c.inc_by(n);
        }
    }

    pub fn get(&self, rule: usize) -> u64 {
        self.counters.get(rule).map_or(0, Counter::get)
    }
}

/// Events of one `tail_sampling` processor, with the per-policy counters resolved at build time.
#[derive(Clone)]
pub struct TailSamplingMetrics {
    telemetry: Telemetry,
    labels: Labels,
    /// Per policy: (sampled, not sampled) verdicts.
    verdicts: Vec<(Counter, Counter)>,
    /// Per policy and one more for "no policy": (kept, dropped) final decisions.
    decided: Vec<(Counter, Counter)>,
    held_bytes: Gauge,
    held_traces: Gauge,
}

impl Telemetry {
    pub fn tail_sampling(
        &self,
        pipeline: &str,
        processor: &str,
        policies: &[&str],
    ) -> TailSamplingMetrics {
        let labels: Labels = vec![
            ("pipeline", pipeline.to_owned()),
            ("processor", processor.to_owned()),
        ];
        let with = |extra: &[(&'static str, &str)]| {
            let mut l = labels.clone();
            l.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
            l
        };
        let inner = &self.inner;
        let verdicts = policies
            .iter()
            .map(|p| {
                (
                    inner
                        .sampling_policy
                        .get_or_create_owned(&with(&[("policy", p), ("sampled", "true")])),
                    inner
                        .sampling_policy
                        .get_or_create_owned(&with(&[("policy", p), ("sampled", "false")])),
                )
            })
            .collect();
        let decided = policies
            .iter()
            .copied()
            .chain(std::iter::once(""))
            .map(|p| {
                (
                    inner
                        .sampling_traces
                        .get_or_create_owned(&with(&[("policy", p), ("decision", "sampled")])),
                    inner
                        .sampling_traces
                        .get_or_create_owned(&with(&[("policy", p), ("decision", "not_sampled")])),
                )
            })
            .collect();
        TailSamplingMetrics {
            held_bytes: inner.sampling_held_bytes.get_or_create_owned(&labels),
            held_traces: inner.sampling_held_traces.get_or_create_owned(&labels),
            telemetry: self.clone(),
            labels,
            verdicts,
            decided,
        }
    }

    /// The config's own metrics: what is applied, and how the last reload went.
    pub fn config(&self) -> &ConfigMetrics {
        &self.inner.config
    }

    /// Counters of one summarizing connector: (data points emitted, items counted in overflow).
    pub fn connector(&self, connector: &str) -> (Counter, Counter) {
        let labels = vec![("connector", connector.to_owned())];
        (
            self.inner.connector_emitted.get_or_create_owned(&labels),
            self.inner.connector_overflow.get_or_create_owned(&labels),
        )
    }
}

impl TailSamplingMetrics {
    pub fn policy_verdict(&self, policy: usize, sampled: bool) {
        if let Some((yes, no)) = self.verdicts.get(policy) {
            if sampled {
                yes.inc()
            } else {
                no.inc()
            };
        }
    }

    /// A final decision; `policy` is the deciding policy's index, `None` when none matched.
    pub fn trace_decided(&self, policy: Option<usize>, sampled: bool) {
        let i = policy.unwrap_or(self.decided.len() - 1);
        if let Some((yes, no)) = self.decided.get(i) {
            if sampled {
                yes.inc()
            } else {
                no.inc()
            };
        }
    }

    pub fn early_decision(&self, reason: &'static str) {
        let mut l = self.labels.clone();
        l.push(("reason", reason.to_owned()));
        self.telemetry.inner.sampling_early.get_or_create(&l).inc();
    }

    pub fn late_spans(&self, sampled: bool, spans: usize) {
        let mut l = self.labels.clone();
        l.push((
            "decision",
            if sampled { "sampled" } else { "not_sampled" }.to_owned(),
        ));
        self.telemetry
            .inner
            .sampling_late
            .get_or_create(&l)
            .inc_by(spans as u64);
    }

    pub fn set_held(&self, bytes: usize, traces: usize) {
        self.held_bytes.set(bytes as i64);
        self.held_traces.set(traces as i64);
    }
}

/// Events of one cardinality_limit processor in one pipeline, and the report it publishes for the admin
/// endpoint's `/debug/cardinality`.
#[derive(Clone)]
pub struct CardinalityMetrics {
    telemetry: Telemetry,
    labels: Labels,
    report: Arc<Mutex<serde_json::Value>>,
}

impl Telemetry {
    pub fn cardinality(&self, pipeline: &str, processor: &str) -> CardinalityMetrics {
        let report = Arc::new(Mutex::new(serde_json::Value::Null));
        self.inner
            .cardinality_reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(report.clone());
        CardinalityMetrics {
            telemetry: self.clone(),
            labels: vec![
                ("pipeline", pipeline.to_owned()),
                ("processor", processor.to_owned()),
            ],
            report,
        }
    }

    /// Every cardinality_limit processor's last published report (JSON objects), for `/debug/cardinality`.
    pub fn cardinality_reports(&self) -> Vec<serde_json::Value> {
        self.inner
            .cardinality_reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|r| r.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .filter(|v| !v.is_null())
            .collect()
    }
}

impl CardinalityMetrics {
    /// The gauge of series tracked for `metric` (resolved once per metric by the processor).
    pub fn tracked_series(&self, metric: &str) -> Gauge {
        let mut labels = self.labels.clone();
        labels.push(("metric", metric.to_owned()));
        self.telemetry
            .inner
            .cardinality_tracked
            .get_or_create_owned(&labels)
    }

    /// `points` of `metric` were trimmed by `action` because of `label`'s value_limit (`""`: a series
    /// budget).
    pub fn trimmed(&self, metric: &str, label: &str, action: &str, points: u64) {
        let mut labels = self.labels.clone();
        labels.push(("metric", metric.to_owned()));
        labels.push(("label", label.to_owned()));
        labels.push(("action", action.to_owned()));
        self.telemetry
            .inner
            .cardinality_trimmed
            .get_or_create(&labels)
            .inc_by(points);
    }

    /// Replaces this processor's report for `/debug/cardinality`.
    pub fn publish(&self, report: serde_json::Value) {
        *self.report.lock().unwrap_or_else(|e| e.into_inner()) = report;
    }
}

/// Handles of the disk queue: gauges refreshed by its maintenance task, drop counters per event.
#[derive(Clone)]
pub struct QueueMetrics {
    telemetry: Telemetry,
}

impl Telemetry {
    pub fn queue(&self) -> QueueMetrics {
        QueueMetrics {
            telemetry: self.clone(),
        }
    }
}

impl QueueMetrics {
    pub fn set_pressure(&self, on: bool) {
        self.telemetry.inner.queue_pressure.set(i64::from(on));
    }

    pub fn stream(&self, stream: &str) -> QueueStreamMetrics {
        let inner = &self.telemetry.inner;
        let labels = vec![("stream", stream.to_owned())];
        QueueStreamMetrics {
            bytes: inner.queue_bytes.get_or_create_owned(&labels),
            records: inner.queue_records.get_or_create_owned(&labels),
            oldest_age: inner.queue_oldest_age.get_or_create_owned(&labels),
            telemetry: self.telemetry.clone(),
            labels,
        }
    }

    pub fn cursor(&self, stream: &str, exporter: &str) -> QueueCursorMetrics {
        let inner = &self.telemetry.inner;
        let labels = vec![
            ("stream", stream.to_owned()),
            ("exporter", exporter.to_owned()),
        ];
        QueueCursorMetrics {
            records: inner.queue_lag_records.get_or_create_owned(&labels),
            bytes: inner.queue_lag_bytes.get_or_create_owned(&labels),
            seconds: inner.queue_lag_seconds.get_or_create_owned(&labels),
        }
    }

    /// Forgets a removed cursor's series so a deleted exporter does not report a frozen lag forever.
    pub fn remove_cursor(&self, stream: &str, exporter: &str) {
        let inner = &self.telemetry.inner;
        let labels = vec![
            ("stream", stream.to_owned()),
            ("exporter", exporter.to_owned()),
        ];
        inner.queue_lag_records.remove(&labels);
        inner.queue_lag_bytes.remove(&labels);
        inner.queue_lag_seconds.remove(&labels);
    }
}

/// Gauges and drop counters of one queue stream.
#[derive(Clone)]
pub struct QueueStreamMetrics {
    telemetry: Telemetry,
    labels: Labels,
    bytes: Gauge,
    records: Gauge,
    oldest_age: SecondsGauge,
}

impl QueueStreamMetrics {
    pub fn set(&self, bytes: u64, records: u64, oldest_age_seconds: f64) {
        self.bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.records.set(i64::try_from(records).unwrap_or(i64::MAX));
        self.oldest_age.set(oldest_age_seconds);
    }

    /// `items` that some exporter will never receive, for `reason`.
    pub fn dropped(&self, reason: &'static str, items: u64) {
        if items == 0 {
            return;
        }
        self.dropped_counter(reason).inc_by(items);
    }

    /// Items dropped so far for `reason` (tests and `outpost queue inspect`).
    pub fn dropped_total(&self, reason: &'static str) -> u64 {
        self.dropped_counter(reason).get()
    }

    fn dropped_counter(&self, reason: &'static str) -> Counter {
        let mut labels = self.labels.clone();
        labels.push(("reason", reason.to_owned()));
        self.telemetry
            .inner
            .queue_dropped
            .get_or_create_owned(&labels)
    }
}

/// Lag gauges of one exporter's cursor.
#[derive(Clone)]
pub struct QueueCursorMetrics {
    records: Gauge,
    bytes: Gauge,
    seconds: SecondsGauge,
}

impl QueueCursorMetrics {
    pub fn set(&self, records: u64, bytes: u64, seconds: f64) {
        self.records.set(i64::try_from(records).unwrap_or(i64::MAX));
        self.bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.seconds.set(seconds);
    }
}

/// Events of one receiver on one transport.
#[derive(Clone)]
pub struct ReceiverMetrics {
    telemetry: Telemetry,
    receiver: String,
    transport: &'static str,
}

impl ReceiverMetrics {
    fn labels(&self, signal: Signal) -> Labels {
        vec![
            ("receiver", self.receiver.clone()),
            ("transport", self.transport.to_owned()),
            ("signal", signal.as_str().to_owned()),
        ]
    }

    pub fn accepted(&self, signal: Signal, items: usize) {
        self.telemetry
            .inner
            .receiver_accepted
            .get_or_create(&self.labels(signal))
            .inc_by(items as u64);
    }

    pub fn refused(&self, signal: Signal, reason: &str, items: usize) {
        let mut labels = self.labels(signal);
        labels.push(("reason", reason.to_owned()));
        self.telemetry
            .inner
            .receiver_refused
            .get_or_create(&labels)
            .inc_by(items as u64);
    }

    /// Items dropped without telling the sender (a datagram protocol has no answer to give).
    pub fn dropped(&self, signal: Signal, reason: &str, items: usize) {
        let mut labels = self.labels(signal);
        labels.push(("reason", reason.to_owned()));
        self.telemetry
            .inner
            .receiver_dropped
            .get_or_create(&labels)
            .inc_by(items as u64);
    }

    /// Items kept although they did not parse, or cut to size; `reason` names the parser or limit.
    pub fn malformed(&self, signal: Signal, reason: &str, items: usize) {
        let mut labels = self.labels(signal);
        labels.push(("reason", reason.to_owned()));
        self.telemetry
            .inner
            .receiver_malformed
            .get_or_create(&labels)
            .inc_by(items as u64);
    }

    /// Gauge of the files a filelog receiver holds open.
    pub fn files_open(&self) -> Gauge {
        self.telemetry
            .inner
            .filelog_files
            .get_or_create_owned(&vec![("receiver", self.receiver.clone())])
    }

    /// Counter of the bytes a filelog receiver read.
    pub fn read_bytes(&self) -> Counter {
        self.telemetry
            .inner
            .filelog_read_bytes
            .get_or_create_owned(&vec![("receiver", self.receiver.clone())])
    }

    /// A request whose items could not be counted (it did not decode, or was refused before decoding).
    pub fn request_refused(&self, signal: Signal, reason: &str) {
        let mut labels = self.labels(signal);
        labels.push(("reason", reason.to_owned()));
        self.telemetry
            .inner
            .receiver_requests_refused
            .get_or_create(&labels)
            .inc();
    }
}

impl ReceiverMetrics {
    /// A connection or request refused for authentication; `reason` is a short stable label.
    pub fn auth_failed(&self, reason: &str) {
        self.telemetry
            .inner
            .receiver_auth_failures
            .get_or_create(&vec![
                ("receiver", self.receiver.clone()),
                ("transport", self.transport.to_owned()),
                ("reason", reason.to_owned()),
            ])
            .inc();
    }

    /// A request refused because its client exceeded a per-client limit (`requests` or `bytes`).
    pub fn rate_limited(&self, limit: &'static str) {
        self.telemetry
            .inner
            .receiver_rate_limited
            .get_or_create(&vec![
                ("receiver", self.receiver.clone()),
                ("transport", self.transport.to_owned()),
                ("limit", limit.to_owned()),
            ])
            .inc();
    }
}

/// Events about the TLS and credential files one component reads.
#[derive(Clone)]
pub struct TlsMetrics {
    telemetry: Telemetry,
    component: String,
}

impl Telemetry {
    /// `component` is the config path of the block, e.g. `receivers.otlp.protocols.grpc`.
    pub fn tls(&self, component: &str) -> TlsMetrics {
        TlsMetrics {
            telemetry: self.clone(),
            component: component.to_owned(),
        }
    }
}

impl TlsMetrics {
    /// Seconds from now until the certificate in `file` expires.
    pub fn set_expiry(&self, file: &str, seconds: f64) {
        self.telemetry
            .inner
            .tls_certificate_expiry
            .get_or_create(&vec![
                ("component", self.component.clone()),
                ("file", file.to_owned()),
            ])
            .set(seconds);
    }

    pub fn reloaded(&self, file: &str, ok: bool) {
        self.telemetry
            .inner
            .tls_reloads
            .get_or_create(&vec![
                ("component", self.component.clone()),
                ("file", file.to_owned()),
                ("result", if ok { "ok" } else { "failed" }.to_owned()),
            ])
            .inc();
    }
}

/// Events of one scrape job of a prometheus receiver.
#[derive(Clone)]
pub struct ScrapeMetrics {
    telemetry: Telemetry,
    labels: Labels,
    ok: Counter,
    failed: Counter,
    targets: Gauge,
}

impl Telemetry {
    pub fn scrape(&self, receiver: &str, job: &str) -> ScrapeMetrics {
        let labels = vec![("receiver", receiver.to_owned()), ("job", job.to_owned())];
        let with = |result: &str| {
            let mut l = labels.clone();
            l.push(("result", result.to_owned()));
            self.inner.receiver_scrapes.get_or_create_owned(&l)
        };
        ScrapeMetrics {
            ok: with("ok"),
            failed: with("failed"),
            targets: self
                .inner
                .receiver_scrape_targets
                .get_or_create_owned(&labels),
            telemetry: self.clone(),
            labels,
        }
    }
}

impl ScrapeMetrics {
    pub fn scraped(&self, ok: bool) {
        if ok {
            self.ok.inc();
        } else {
            self.failed.inc();
        }
    }

    /// A scrape whose data did not reach the pipeline, for `reason`.
    pub fn skipped(&self, reason: &str) {
        let mut labels = self.labels.clone();
        labels.push(("reason", reason.to_owned()));
        self.telemetry
            .inner
            .receiver_skipped_scrapes
            .get_or_create(&labels)
            .inc();
    }

    pub fn set_targets(&self, n: usize) {
        self.targets.set(n as i64);
    }
}

/// Counters of one processor in one pipeline; kept by the runner, never by the processor itself.
#[derive(Clone)]
pub struct ProcessorMetrics {
    telemetry: Telemetry,
    labels: Labels,
    incoming: Counter,
    outgoing: Counter,
}

impl ProcessorMetrics {
    pub fn incoming(&self, items: usize) {
        self.incoming.inc_by(items as u64);
    }
    pub fn outgoing(&self, items: usize) {
        self.outgoing.inc_by(items as u64);
    }
    pub fn dropped(&self, reason: &str, items: usize) {
        let mut labels = self.labels.clone();
        labels.push(("reason", reason.to_owned()));
        self.telemetry
            .inner
            .processor_dropped
            .get_or_create(&labels)
            .inc_by(items as u64);
    }
    pub fn incoming_total(&self) -> u64 {
        self.incoming.get()
    }
    pub fn outgoing_total(&self) -> u64 {
        self.outgoing.get()
    }
}

/// Counters of one exporter for one signal.
#[derive(Clone)]
pub struct ExporterMetrics {
    telemetry: Telemetry,
    labels: Labels,
    last_success: Gauge,
    sent: Counter,
    sent_bytes: Counter,
}

impl ExporterMetrics {
    pub fn sent(&self, items: usize, wire_bytes: usize) {
        self.sent.inc_by(items as u64);
        self.sent_bytes.inc_by(wire_bytes as u64);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.last_success.set(now.as_secs() as i64);
    }

    pub fn circuit_open_gauge(&self) -> Gauge {
        self.telemetry
            .inner
            .exporter_circuit_open
            .get_or_create_owned(&self.labels)
    }

    pub fn set_in_flight(&self, n: usize) {
        self.telemetry
            .inner
            .exporter_in_flight
            .get_or_create(&self.labels)
            .set(n as i64);
    }

    /// A request waited `d` for the bandwidth cap.
    pub fn throttled(&self, d: std::time::Duration) {
        if !d.is_zero() {
            self.telemetry
                .inner
                .exporter_throttled
                .get_or_create(&self.labels)
                .inc_by(d.as_secs_f64());
        }
    }

    /// A request failed with a retryable error; its data stays queued.
    pub fn retried(&self, reason: &str) {
        let mut labels = self.labels.clone();
        labels.push(("reason", reason.to_owned()));
        self.telemetry
            .inner
            .exporter_retries
            .get_or_create(&labels)
            .inc();
    }
    pub fn failed(&self, reason: &str, items: usize) {
        let mut labels = self.labels.clone();
        labels.push(("reason", reason.to_owned()));
        self.telemetry
            .inner
            .exporter_failed
            .get_or_create(&labels)
            .inc_by(items as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_become_prefixed_labelled_series() {
        let t = Telemetry::new();
        t.receiver("otlp", "grpc").accepted(Signal::Traces, 5);
        t.receiver("otlp", "http")
            .refused(Signal::Logs, "memory_limit", 3);
        t.receiver("syslog", "udp")
            .dropped(Signal::Logs, "queue_full", 4);
        t.receiver("syslog", "tcp")
            .malformed(Signal::Logs, "rfc5424", 1);
        t.receiver("filelog", "file").read_bytes().inc_by(10);
        let p = t.processor("traces", "batch");
        p.incoming(10);
        p.dropped("invalid", 2);
        t.exporter("otlp/cloud", Signal::Metrics)
            .failed("timeout", 7);
        let q = t.queue();
        q.set_pressure(true);
        let s = q.stream("traces");
        s.set(2048, 2, 1.5);
        s.dropped("max_age", 9);
        assert_eq!(s.dropped_total("max_age"), 9);
        q.cursor("traces", "otlp/cloud").set(3, 100, 0.25);
        let text = t.encode();
        for line in [
            r#"outpost_receiver_accepted_items_total{receiver="otlp",transport="grpc",signal="traces"} 5"#,
            r#"outpost_receiver_refused_items_total{receiver="otlp",transport="http",signal="logs",reason="memory_limit"} 3"#,
            r#"outpost_processor_incoming_items_total{pipeline="traces",processor="batch"} 10"#,
            r#"outpost_processor_dropped_items_total{pipeline="traces",processor="batch",reason="invalid"} 2"#,
            r#"outpost_exporter_send_failed_items_total{exporter="otlp/cloud",signal="metrics",reason="timeout"} 7"#,
            r#"outpost_build_info{version=""#,
            r#"outpost_receiver_dropped_items_total{receiver="syslog",transport="udp",signal="logs",reason="queue_full"} 4"#,
            r#"outpost_receiver_malformed_items_total{receiver="syslog",transport="tcp",signal="logs",reason="rfc5424"} 1"#,
            r#"outpost_filelog_read_bytes_total{receiver="filelog"} 10"#,
            r#"outpost_queue_pressure 1"#,
            r#"outpost_queue_bytes{stream="traces"} 2048"#,
            r#"outpost_queue_oldest_age_seconds{stream="traces"} 1.5"#,
            r#"outpost_queue_dropped_items_total{stream="traces",reason="max_age"} 9"#,
            r#"outpost_exporter_queue_lag_records{stream="traces",exporter="otlp/cloud"} 3"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}

/// What config runs and how reloads went, so a fleet rollout can be checked node by node.
#[derive(Clone)]
pub struct ConfigMetrics {
    info: Family<Labels, Gauge>,
    success: Gauge,
    last_success: Gauge,
    reloads: Family<Labels, Counter>,
}

impl ConfigMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self {
            info: Family::default(),
            success: Gauge::default(),
            last_success: Gauge::default(),
            reloads: Family::default(),
        };
        registry.register(
            "config_info",
            "The applied config: its SHA-256 and where it came from (file or last_known_good); always 1",
            m.info.clone(),
        );
        registry.register(
            "config_reload_success",
            "1 if the last config load or reload was applied, 0 if it was refused (the previous config runs)",
            m.success.clone(),
        );
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "Unix time of the last config that was applied",
            m.last_success.clone(),
        );
        registry.register(
            "config_reloads",
            "Config reloads by trigger (file, sighup, http) and result (applied, unchanged, invalid, failed)",
            m.reloads.clone(),
        );
        m
    }

    /// Records that the config with `sha256` (hex) from `source` is the one running.
    pub fn applied(&self, sha256: &str, source: &str) {
        self.info.clear();
        self.info
            .get_or_create_owned(&vec![
                ("hash", sha256.to_owned()),
                ("source", source.to_owned()),
            ])
            .set(1);
        self.success.set(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.last_success
            .set(i64::try_from(now).unwrap_or(i64::MAX));
    }

    /// Records a reload attempt.
    pub fn reload(&self, trigger: &str, result: &str) {
        self.reloads
            .get_or_create_owned(&vec![
                ("trigger", trigger.to_owned()),
                ("result", result.to_owned()),
            ])
            .inc();
        if result == "invalid" || result == "failed" {
            self.success.set(0);
        }
    }
}
