//! Rules for `cardinality_limit`: a metric entry names its metric one way, regexes compile, limits that
//! would admit nothing are refused, and the probabilistic mode's filters are large enough to be useful.

use indexmap::IndexMap;

use crate::report::Report;
use crate::schema::*;
use crate::source::{index_path, key_path};

pub(super) fn check(r: &mut Report, path: &str, c: &CardinalityLimitConfig) {
    if c.series_ttl.get().is_zero() {
        r.error(
            &key_path(path, "series_ttl"),
            "series_ttl must be greater than 0 (e.g. 1h)",
        );
    }
    if c.persist_interval.get().is_zero() {
        r.error(
            &key_path(path, "persist_interval"),
            "persist_interval must be greater than 0 (e.g. 5s)",
        );
    }
    value_limit(r, path, c.value_limit);
    if c.mode == TrackingMode::Probabilistic {
        if c.max_memory.bytes() < 1024 {
            r.error(
                &key_path(path, "max_memory"),
                format!(
                    "max_memory is {}; the series filter needs at least 1KiB (e.g. 1MiB)",
                    c.max_memory
                ),
            );
        }
        if c.cache_size_per_key.bytes() < 64 {
            r.error(
                &key_path(path, "cache_size_per_key"),
                format!(
                    "cache_size_per_key is {}; a value filter needs at least 64B (e.g. 5KiB)",
                    c.cache_size_per_key
                ),
            );
        }
    }
    labels(r, &key_path(path, "labels"), &c.labels);
    let metrics = key_path(path, "metrics");
    for (i, m) in c.metrics.iter().enumerate() {
        let mpath = index_path(&metrics, i);
        match (&m.name, &m.name_regex) {
            (None, None) => r.error(
                &mpath,
                "a metrics entry needs name (an exact metric name) or name_regex",
            ),
            (Some(_), Some(_)) => r.error(
                &key_path(&mpath, "name_regex"),
                "set one of name and name_regex, not both",
            ),
            (Some(n), None) if n.trim().is_empty() => {
                r.error(&key_path(&mpath, "name"), "name is empty")
            }
            (None, Some(re)) => {
                if let Err(e) = regex::Regex::new(&format!("^(?:{re})$")) {
                    r.error(
                        &key_path(&mpath, "name_regex"),
                        format!("not a valid regular expression: {e}"),
                    );
                }
            }
            _ => {}
        }
        if m.max_series == Some(0) {
            r.error(
                &key_path(&mpath, "max_series"),
                "max_series is 0, which admits no series; to drop the metric use a filter, to leave it \
                 unlimited use exclude: true",
            );
        }
        value_limit(r, &mpath, m.value_limit);
        labels(r, &key_path(&mpath, "labels"), &m.labels);
    }
}

fn value_limit(r: &mut Report, path: &str, limit: Option<u64>) {
    if limit == Some(0) {
        r.error(
            &key_path(path, "value_limit"),
            "value_limit is 0, which admits no value; remove it (no limit) or set it to at least 1",
        );
    }
}

fn labels(r: &mut Report, path: &str, labels: &IndexMap<String, LabelLimitConfig>) {
    for (name, l) in labels {
        let lpath = key_path(path, name);
        if name.is_empty() {
            r.error(&lpath, "a label name is empty");
        }
        value_limit(r, &lpath, l.value_limit);
        if l.exclude && (l.value_limit.is_some() || l.action.is_some()) {
            r.warning(
                &key_path(&lpath, "exclude"),
                format!("label '{name}' is excluded, so its value_limit and action are never used"),
            );
        }
    }
}
