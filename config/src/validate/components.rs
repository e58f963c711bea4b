//! Rules about one component's own settings: limits that contradict each other, attribute actions
//! missing their value, exporter endpoints this build cannot reach.

use std::collections::HashSet;

use crate::id::ComponentId;
use crate::report::Report;
use crate::schema::*;
use crate::source::{index_path, key_path};

use super::endpoint;

pub(super) fn check_processor(r: &mut Report, path: &str, processor: &ProcessorConfig) {
    match processor {
        ProcessorConfig::MemoryLimiter(m) => memory_limiter(r, path, m),
        ProcessorConfig::TailSampling(c) => super::sampling::tail_sampling(r, path, c),
        ProcessorConfig::CardinalityLimit(c) => super::cardinality::check(r, path, c),
        ProcessorConfig::Batch(b) => {
            if b.send_batch_max_size > 0 && b.send_batch_max_size < b.send_batch_size {
                r.error(
                    &key_path(path, "send_batch_max_size"),
                    format!(
                        "send_batch_max_size ({}) is smaller than send_batch_size ({}); set it to 0 (no \
                         bound) or to at least send_batch_size",
                        b.send_batch_max_size, b.send_batch_size
                    ),
                );
            }
        }
        ProcessorConfig::Attributes(a) => {
            attribute_actions(r, &key_path(path, "actions"), &a.actions)
        }
        ProcessorConfig::Resource(a) => {
            attribute_actions(r, &key_path(path, "attributes"), &a.attributes)
        }
        ProcessorConfig::Redaction(c) => crate::redaction::check(r, path, c),
        ProcessorConfig::Transform(c) => crate::transform::check(r, path, c),
    }
}

fn memory_limiter(r: &mut Report, path: &str, m: &MemoryLimiterConfig) {
    for (value, key) in [
        (m.limit_mib, "limit_mib"),
        (m.limit_percentage.map(u64::from), "limit_percentage"),
    ] {
        if value == Some(0) {
            r.error(
                &key_path(path, key),
                format!("{key} must be greater than 0"),
            );
        }
    }
    for (value, key) in [
        (m.limit_percentage, "limit_percentage"),
        (m.spike_limit_percentage, "spike_limit_percentage"),
    ] {
        if let Some(v) = value.filter(|&v| v > 100) {
            r.error(
                &key_path(path, key),
                format!("{key} is {v}; a percentage is at most 100"),
            );
        }
    }
    match (m.limit_mib, m.limit_percentage) {
        (None, None) => r.error(
            path,
            "no limit is set; set limit_mib (a bound in MiB) or limit_percentage (a share of total memory)",
        ),
        // As upstream: limit_mib wins. A warning, so configs written for the Collector still load.
        (Some(_), Some(_)) => r.warning(
            &key_path(path, "limit_percentage"),
            "both limit_mib and limit_percentage are set; limit_mib is used and limit_percentage is \
             ignored, remove one",
        ),
        _ => {}
    }
    for (spike, limit, spike_key, limit_key) in [
        (
            m.spike_limit_mib,
            m.limit_mib,
            "spike_limit_mib",
            "limit_mib",
        ),
        (
            m.spike_limit_percentage.map(u64::from),
            m.limit_percentage.map(u64::from),
            "spike_limit_percentage",
            "limit_percentage",
        ),
    ] {
        if let (Some(spike), Some(limit)) = (spike, limit) {
            if spike >= limit && limit > 0 {
                r.error(
                    &key_path(path, spike_key),
                    format!(
                        "{spike_key} ({spike}) must be less than {limit_key} ({limit}): it is the headroom \
                         kept below the limit"
                    ),
                );
            }
        }
    }
}

fn attribute_actions(r: &mut Report, path: &str, actions: &[AttributeAction]) {
    if actions.is_empty() {
        r.error(
            path,
            "no actions are listed; add at least one {key, action}",
        );
    }
    for (i, a) in actions.iter().enumerate() {
        let at = index_path(path, i);
        let name = serde_json::to_value(a.action)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        if a.key.is_empty() {
            r.error(&key_path(&at, "key"), "the attribute key is empty");
        }
        match a.action {
            AttributeActionKind::Insert
            | AttributeActionKind::Update
            | AttributeActionKind::Upsert => {
                match (a.value.is_some(), a.from_attribute.is_some()) {
                    (false, false) => r.error(
                        &at,
                        format!(
                            "action '{name}' on '{}' needs a value: set value or from_attribute",
                            a.key
                        ),
                    ),
                    (true, true) => r.error(
                        &key_path(&at, "from_attribute"),
                        format!("action '{name}' takes one of value and from_attribute, not both"),
                    ),
                    _ => {}
                }
            }
            AttributeActionKind::Delete | AttributeActionKind::Hash => {
                for (set, key) in [
                    (a.value.is_some(), "value"),
                    (a.from_attribute.is_some(), "from_attribute"),
                ] {
                    if set {
                        r.error(
                            &key_path(&at, key),
                            format!("action '{name}' takes no {key}; remove it"),
                        );
                    }
                }
            }
        }
    }
}

pub(super) fn check_exporter(
    config: &Config,
    r: &mut Report,
    id: &ComponentId,
    path: &str,
    exporter: &ExporterConfig,
) {
    match exporter {
        ExporterConfig::Otlp(otlp) => {
            if let Err(message) = endpoint::check_grpc(&otlp.endpoint) {
                r.error(&key_path(path, "endpoint"), message);
            }
            super::tls::exporter(r, path, &otlp.tls, &otlp.auth, &[&otlp.endpoint]);
            delivery(config, r, path, &otlp.delivery());
        }
        ExporterConfig::OtlpHttp(http) => {
            delivery(config, r, path, &http.delivery());
            let all: Vec<&str> = [
                &http.endpoint,
                &http.traces_endpoint,
                &http.metrics_endpoint,
                &http.logs_endpoint,
            ]
            .into_iter()
            .filter_map(|u| u.as_deref())
            .collect();
            super::tls::exporter(r, path, &http.tls, &http.auth, &all);
            let urls = [
                (&http.endpoint, "endpoint"),
                (&http.traces_endpoint, "traces_endpoint"),
                (&http.metrics_endpoint, "metrics_endpoint"),
                (&http.logs_endpoint, "logs_endpoint"),
            ];
            for (url, key) in urls {
                if let Some(Err(message)) = url.as_deref().map(endpoint::check_http_url) {
                    r.error(&key_path(path, key), message);
                }
            }
            if urls.iter().all(|(url, _)| url.is_none()) {
                r.error(
                    path,
                    "no URL is set; set endpoint (a base URL such as http://collector:4318) or the \
                     per-signal traces_endpoint / metrics_endpoint / logs_endpoint",
                );
                return;
            }
            let mut reported = HashSet::new();
            for (pid, p) in &config.service.pipelines {
                let signal = pid.signal;
                if p.exporters.contains(id)
                    && http.signal_url(signal).is_none()
                    && reported.insert(signal)
                {
                    r.error(
                        path,
                        format!(
                            "pipeline '{pid}' sends {signal} here but no URL for {signal} is set; set \
                             endpoint (a base URL) or {signal}_endpoint"
                        ),
                    );
                }
            }
        }
        ExporterConfig::File(file) => {
            if file.path.as_os_str().is_empty() {
                r.error(
                    &key_path(path, "path"),
                    "the path is empty; name the file to write",
                );
            }
        }
        ExporterConfig::Debug(_) => {}
        ExporterConfig::PrometheusRemoteWrite(prw) => {
            super::tls::exporter(r, path, &prw.tls, &prw.auth, &[&prw.endpoint]);
            prometheus_remote_write(config, r, path, prw)
        }
    }
}

fn prometheus_remote_write(
    config: &Config,
    r: &mut Report,
    path: &str,
    prw: &PrometheusRemoteWriteExporterConfig,
) {
    if let Err(message) = endpoint::check_http_url(&prw.endpoint) {
        r.error(&key_path(path, "endpoint"), message);
    }
    delivery(config, r, path, &prw.delivery());
    for name in prw.external_labels.keys() {
        if let Err(why) = prometheus_label_name(name) {
            r.error(
                &key_path(&key_path(path, "external_labels"), name),
                format!("'{name}' is not a Prometheus label name: {why}"),
            );
        }
    }
    if let Some(ns) = &prw.namespace {
        if !ns.is_empty() && prometheus_label_name(ns).is_err() {
            r.error(
                &key_path(path, "namespace"),
                format!(
                    "'{ns}' cannot prefix a Prometheus metric name; use letters, digits and _ only, \
                     not starting with a digit"
                ),
            );
        }
    }
    if prw.max_batch_size_bytes.bytes() == 0 {
        r.error(
            &key_path(path, "max_batch_size_bytes"),
            "max_batch_size_bytes must be greater than 0 (the default is 3000000)",
        );
    }
    if prw.max_samples_per_request == 0 {
        r.error(
            &key_path(path, "max_samples_per_request"),
            "max_samples_per_request must be at least 1 (the default is 2000)",
        );
    }
    if prw.remote_write_queue.is_some() {
        r.warning(
            &key_path(path, "remote_write_queue"),
            "remote_write_queue has no effect in outpost: data waits in the disk queue, and \
             sending_queue.num_consumers sets the requests in flight; remove it",
        );
    }
    if prw.sending_queue.num_consumers > 1 {
        r.warning(
            &key_path(&key_path(path, "sending_queue"), "num_consumers"),
            format!(
                "{} requests in flight can deliver the samples of one series out of order, and Prometheus \
                 refuses out-of-order samples (HTTP 400, counted as dropped) unless its \
                 out_of_order_time_window allows them; use 1 unless the destination accepts them",
                prw.sending_queue.num_consumers
            ),
        );
    }
    if prw.sending_queue.drain_order == DrainOrder::NewestFirst {
        r.warning(
            &key_path(&key_path(path, "sending_queue"), "drain_order"),
            "newest_first sends a backlog after newer data, and Prometheus refuses samples older than the \
             newest of their series (HTTP 400, counted as dropped) unless its out_of_order_time_window \
             covers the backlog; use oldest_first unless the destination accepts them",
        );
    }
}

/// Prometheus label names match `[a-zA-Z_][a-zA-Z0-9_]*`; names starting with `__` are reserved.
fn prometheus_label_name(name: &str) -> Result<(), &'static str> {
    let mut chars = name.chars();
    match chars.next() {
        None => return Err("it is empty"),
        Some(c) if !(c.is_ascii_alphabetic() || c == '_') => {
            return Err("it must start with a letter or _")
        }
        _ => {}
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err("only letters, digits and _ are allowed");
    }
    if name.starts_with("__") {
        return Err("names starting with __ are reserved for Prometheus");
    }
    Ok(())
}

/// The delivery settings every network exporter shares: queue reading, retries, breaker, bandwidth.
pub(super) fn delivery(config: &Config, r: &mut Report, path: &str, d: &DeliveryConfig) {
    sending_queue(
        config,
        r,
        &key_path(path, "sending_queue"),
        &d.sending_queue,
    );
    let retry = &d.retry_on_failure;
    let rpath = key_path(path, "retry_on_failure");
    if retry.initial_interval.get().is_zero() {
        r.error(
            &key_path(&rpath, "initial_interval"),
            "initial_interval must be greater than 0 (e.g. 5s)",
        );
    }
    if retry.max_interval < retry.initial_interval {
        r.error(
            &key_path(&rpath, "max_interval"),
            "max_interval must not be shorter than initial_interval",
        );
    }
    if !(retry.multiplier >= 1.0 && retry.multiplier.is_finite()) {
        r.error(
            &key_path(&rpath, "multiplier"),
            "multiplier must be a number >= 1 (1.5 is the usual choice)",
        );
    }
    if !(0.0..=1.0).contains(&retry.randomization_factor) {
        r.error(
            &key_path(&rpath, "randomization_factor"),
            "randomization_factor must be between 0 and 1",
        );
    }
    let breaker = &d.circuit_breaker;
    let bpath = key_path(path, "circuit_breaker");
    if breaker.failure_threshold == 0 {
        r.error(
            &key_path(&bpath, "failure_threshold"),
            "failure_threshold must be at least 1",
        );
    }
    if breaker.initial_interval.get().is_zero() {
        r.error(
            &key_path(&bpath, "initial_interval"),
            "initial_interval must be greater than 0 (e.g. 1s)",
        );
    }
    if breaker.max_interval < breaker.initial_interval {
        r.error(
            &key_path(&bpath, "max_interval"),
            "max_interval must not be shorter than initial_interval",
        );
    }
    match (d.max_bytes_per_second, d.burst_bytes) {
        (Some(rate), _) if rate.bytes() == 0 => r.error(
            &key_path(path, "max_bytes_per_second"),
            "max_bytes_per_second must be greater than 0; remove it for no limit",
        ),
        (None, Some(_)) => r.error(
            &key_path(path, "burst_bytes"),
            "burst_bytes only applies with max_bytes_per_second; set that too or remove burst_bytes",
        ),
        _ => {}
    }
}

fn sending_queue(config: &Config, r: &mut Report, path: &str, q: &SendingQueueConfig) {
    if !q.enabled {
        r.warning(
            &key_path(path, "enabled"),
            "outpost always queues on disk, so `enabled: false` has no effect; remove it",
        );
    }
    if q.num_consumers == 0 {
        r.error(
            &key_path(path, "num_consumers"),
            "num_consumers must be at least 1 (it is the number of requests in flight)",
        );
    }
    if let Some(storage) = &q.storage {
        match config.extensions.get(storage) {
            Some(ExtensionConfig::FileStorage(_)) => {}
            Some(_) => r.error(
                &key_path(path, "storage"),
                format!("'{storage}' is not a file_storage extension"),
            ),
            None => r.error(
                &key_path(path, "storage"),
                format!(
                    "'{storage}' is not defined under extensions; define a file_storage extension"
                ),
            ),
        }
    }
    if let Some(lag) = &q.max_lag {
        if lag.bytes.is_none() && lag.age.is_none() {
            r.error(
                &key_path(path, "max_lag"),
                "max_lag needs bytes and/or age (e.g. `bytes: 512MiB` or `age: 24h`)",
            );
        }
    }
}

/// The queue's sizes must nest (low < high <= max_size), and one node has one queue directory.
pub(super) fn queue(config: &Config, origins: &crate::decode::Origins, r: &mut Report) {
    let q = &config.queue;
    let max = q.max_size.bytes();
    if max == 0 {
        r.error("queue.max_size", "max_size must be greater than 0");
        return;
    }
    let high = q.high_watermark.resolve(max);
    let low = q.low_watermark.resolve(max);
    if high > max {
        r.error(
            "queue.high_watermark",
            format!("high_watermark ({high} bytes) is above max_size ({max} bytes); lower it or raise max_size"),
        );
    }
    if low >= high {
        r.error(
            "queue.low_watermark",
            format!(
                "low_watermark ({low} bytes) must be below high_watermark ({high} bytes), or pressure could \
                 never end"
            ),
        );
    }
    let storages: Vec<(&ComponentId, &FileStorageConfig)> = config
        .extensions
        .iter()
        .filter_map(|(id, e)| match e {
            ExtensionConfig::FileStorage(fs) => Some((id, fs)),
            _ => None,
        })
        .collect();
    for (id, fs) in &storages {
        let path = key_path(
            &origins.path_of(crate::decode::Section::Extensions, id),
            "directory",
        );
        let differs = |other: &std::path::Path| other != fs.directory.as_path();
        if let Some(dir) = q.directory.as_deref().filter(|d| differs(d)) {
            r.error(
                &path,
                format!(
                    "this directory differs from queue.directory ('{}'); outpost keeps one queue per node: \
                     remove one of the two",
                    dir.display()
                ),
            );
        } else if let Some((first, other)) = storages.first().filter(|(_, o)| differs(&o.directory))
        {
            r.error(
                &path,
                format!(
                    "file_storage extensions '{first}' and '{id}' name different directories ('{}' and '{}'); \
                     outpost keeps one queue per node",
                    other.directory.display(),
                    fs.directory.display()
                ),
            );
        }
    }
}
