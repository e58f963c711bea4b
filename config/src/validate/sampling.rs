//! Rules for `tail_sampling` policies and the `spanmetrics` / `count` connectors: the block a policy
//! type reads, values in range, regexes that compile, rate allocations naming real sub-policies, and
//! count conditions that parse. Each finding is reported at its own YAML path.

use std::collections::HashSet;

use crate::condition::Condition;
use crate::report::Report;
use crate::schema::*;
use crate::source::{index_path, key_path};

pub(super) fn tail_sampling(r: &mut Report, path: &str, c: &TailSamplingConfig) {
    if c.decision_wait.get().is_zero() {
        r.error(
            &key_path(path, "decision_wait"),
            "decision_wait must be greater than 0 (e.g. 10s)",
        );
    }
    if c.num_traces == 0 {
        r.error(
            &key_path(path, "num_traces"),
            "num_traces must be greater than 0",
        );
    }
    if c.max_memory.bytes() < 64 << 10 {
        r.error(
            &key_path(path, "max_memory"),
            format!(
                "max_memory is {}; hold at least 64KiB of spans (e.g. 64MiB)",
                c.max_memory
            ),
        );
    }
    let policies = key_path(path, "policies");
    if c.policies.is_empty() {
        r.error(
            &policies,
            "no policies: add at least one, e.g. {name: keep-all, type: always_sample}",
        );
    }
    policy_list(r, &policies, &c.policies);
}

fn policy_list(r: &mut Report, path: &str, list: &[PolicyConfig]) {
    let mut names = HashSet::new();
    for (i, p) in list.iter().enumerate() {
        let ppath = index_path(path, i);
        if p.name.trim().is_empty() {
            r.error(&key_path(&ppath, "name"), "a policy needs a name");
        } else if !names.insert(p.name.as_str()) {
            r.error(
                &key_path(&ppath, "name"),
                format!(
                    "policy name '{}' is used twice in this list; names must be unique",
                    p.name
                ),
            );
        }
        policy(r, &ppath, p);
    }
}

fn policy(r: &mut Report, path: &str, p: &PolicyConfig) {
    let present: Vec<&str> = [
        ("latency", p.latency.is_some()),
        ("numeric_attribute", p.numeric_attribute.is_some()),
        ("probabilistic", p.probabilistic.is_some()),
        ("status_code", p.status_code.is_some()),
        ("string_attribute", p.string_attribute.is_some()),
        ("boolean_attribute", p.boolean_attribute.is_some()),
        ("rate_limiting", p.rate_limiting.is_some()),
        ("bytes_limiting", p.bytes_limiting.is_some()),
        ("span_count", p.span_count.is_some()),
        ("trace_state", p.trace_state.is_some()),
        ("and", p.and.is_some()),
        ("composite", p.composite.is_some()),
        ("drop", p.drop.is_some()),
        ("not", p.not.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, on)| on.then_some(k))
    .collect();
    let wanted = p.kind.block();
    for k in &present {
        if Some(*k) != wanted {
            r.warning(
                &key_path(path, k),
                format!(
                    "policy '{}' is of type {}; its `{k}:` block is ignored",
                    p.name,
                    wanted.unwrap_or("always_sample")
                ),
            );
        }
    }
    if let Some(block) = wanted {
        if !present.contains(&block) {
            r.error(
                &key_path(path, "type"),
                format!(
                    "policy '{}' is of type {block} but has no `{block}:` block; add its settings",
                    p.name
                ),
            );
            return;
        }
    }
    let bpath = key_path(path, wanted.unwrap_or(""));
    match p.kind {
        PolicyType::AlwaysSample => {}
        PolicyType::Latency => {
            let l = p.latency.as_ref().expect("checked");
            if l.threshold_ms == 0 && l.upper_threshold_ms == 0 {
                r.error(&bpath, "set threshold_ms and/or upper_threshold_ms");
            }
            if l.upper_threshold_ms > 0 && l.upper_threshold_ms < l.threshold_ms {
                r.error(
                    &key_path(&bpath, "upper_threshold_ms"),
                    "upper_threshold_ms is below threshold_ms; no trace could match",
                );
            }
        }
        PolicyType::NumericAttribute => {
            let n = p.numeric_attribute.as_ref().expect("checked");
            if let (Some(lo), Some(hi)) = (n.min_value, n.max_value) {
                if hi < lo {
                    r.error(
                        &key_path(&bpath, "max_value"),
                        format!("max_value ({hi}) is below min_value ({lo})"),
                    );
                }
            }
            if n.min_value.is_none() && n.max_value.is_none() {
                r.error(&bpath, "set min_value and/or max_value");
            }
        }
        PolicyType::Probabilistic => {
            let pr = p.probabilistic.as_ref().expect("checked");
            if !(0.0..=100.0).contains(&pr.sampling_percentage) {
                r.error(
                    &key_path(&bpath, "sampling_percentage"),
                    format!(
                        "sampling_percentage is {}; it must be between 0 and 100",
                        pr.sampling_percentage
                    ),
                );
            }
        }
        PolicyType::StatusCode => {
            let s = p.status_code.as_ref().expect("checked");
            let list = key_path(&bpath, "status_codes");
            if s.status_codes.is_empty() {
                r.error(&list, "list at least one of OK, ERROR, UNSET");
            }
            for (i, code) in s.status_codes.iter().enumerate() {
                if !matches!(code.as_str(), "OK" | "ERROR" | "UNSET") {
                    r.error(
                        &index_path(&list, i),
                        format!("'{code}' is not a status code (expected OK, ERROR or UNSET)"),
                    );
                }
            }
        }
        PolicyType::StringAttribute => {
            let s = p.string_attribute.as_ref().expect("checked");
            let list = key_path(&bpath, "values");
            if s.values.is_empty() {
                r.error(&list, "list at least one value");
            }
            if s.enabled_regex_matching {
                for (i, v) in s.values.iter().enumerate() {
                    if let Err(e) = regex::Regex::new(v) {
                        r.error(
                            &index_path(&list, i),
                            format!("'{v}' is not a valid regular expression: {e}"),
                        );
                    }
                }
            }
        }
        PolicyType::RateLimiting => {
            if p.rate_limiting.as_ref().expect("checked").spans_per_second == 0 {
                r.error(
                    &key_path(&bpath, "spans_per_second"),
                    "spans_per_second must be greater than 0",
                );
            }
        }
        PolicyType::BytesLimiting => {
            if p.bytes_limiting.as_ref().expect("checked").bytes_per_second == 0 {
                r.error(
                    &key_path(&bpath, "bytes_per_second"),
                    "bytes_per_second must be greater than 0",
                );
            }
        }
        PolicyType::SpanCount => {
            let s = p.span_count.as_ref().expect("checked");
            if s.max_spans > 0 && s.max_spans < s.min_spans {
                r.error(
                    &key_path(&bpath, "max_spans"),
                    "max_spans is below min_spans; no trace could match (0 means no upper bound)",
                );
            }
        }
        PolicyType::BooleanAttribute | PolicyType::TraceState => {}
        PolicyType::And => sub_policies(
            r,
            &key_path(&bpath, "and_sub_policy"),
            &p.and.as_ref().expect("checked").and_sub_policy,
        ),
        PolicyType::Drop => sub_policies(
            r,
            &key_path(&bpath, "drop_sub_policy"),
            &p.drop.as_ref().expect("checked").drop_sub_policy,
        ),
        PolicyType::Not => policy(
            r,
            &key_path(&bpath, "not_sub_policy"),
            &p.not.as_ref().expect("checked").not_sub_policy,
        ),
        PolicyType::Composite => {
            let c = p.composite.as_ref().expect("checked");
            if c.max_total_spans_per_second == 0 {
                r.error(
                    &key_path(&bpath, "max_total_spans_per_second"),
                    "max_total_spans_per_second must be greater than 0",
                );
            }
            let subs = key_path(&bpath, "composite_sub_policy");
            sub_policies(r, &subs, &c.composite_sub_policy);
            let names: HashSet<&str> = c
                .composite_sub_policy
                .iter()
                .map(|s| s.name.as_str())
                .collect();
            for (list, entries) in [
                (
                    key_path(&bpath, "policy_order"),
                    c.policy_order
                        .iter()
                        .map(String::as_str)
                        .collect::<Vec<_>>(),
                ),
                (
                    key_path(&bpath, "rate_allocation"),
                    c.rate_allocation
                        .iter()
                        .map(|a| a.policy.as_str())
                        .collect(),
                ),
            ] {
                for (i, name) in entries.iter().enumerate() {
                    if !names.contains(name) {
                        let at = if list.ends_with("rate_allocation") {
                            key_path(&index_path(&list, i), "policy")
                        } else {
                            index_path(&list, i)
                        };
                        r.error(
                            &at,
                            format!("'{name}' is not one of this composite's sub-policies"),
                        );
                    }
                }
            }
            let total: f64 = c.rate_allocation.iter().map(|a| a.percent).sum();
            if total > 100.0 {
                r.error(
                    &key_path(&bpath, "rate_allocation"),
                    format!("the percents add up to {total}; they may add up to at most 100"),
                );
            }
        }
    }
}

fn sub_policies(r: &mut Report, path: &str, list: &[PolicyConfig]) {
    if list.is_empty() {
        r.error(path, "list at least one sub-policy");
    }
    policy_list(r, path, list);
}

pub(super) fn spanmetrics(r: &mut Report, path: &str, c: &SpanMetricsConfig) {
    let h = key_path(path, "histogram");
    if c.histogram.explicit.is_some() && c.histogram.exponential.is_some() {
        r.error(
            &h,
            "both explicit and exponential are set; choose one histogram kind",
        );
    }
    if !matches!(c.histogram.unit.as_str(), "ms" | "s") {
        r.error(
            &key_path(&h, "unit"),
            format!("'{}' is not a unit (expected ms or s)", c.histogram.unit),
        );
    }
    if let Some(e) = &c.histogram.explicit {
        let b = &e.buckets;
        if b.windows(2).any(|w| w[1].get() <= w[0].get()) {
            r.error(
                &key_path(&key_path(&h, "explicit"), "buckets"),
                "bucket bounds must be strictly increasing",
            );
        }
    }
    if let Some(e) = &c.histogram.exponential {
        if !(2..=16384).contains(&e.max_size) {
            r.error(
                &key_path(&key_path(&h, "exponential"), "max_size"),
                "max_size must be between 2 and 16384",
            );
        }
    }
    if c.metrics_flush_interval.get().is_zero() {
        r.error(
            &key_path(path, "metrics_flush_interval"),
            "metrics_flush_interval must be greater than 0",
        );
    }
    dimensions(r, &key_path(path, "dimensions"), &c.dimensions);
    if let Some(s) = &c.summary {
        for (i, q) in s.quantiles.iter().enumerate() {
            if !(0.0..=1.0).contains(q) {
                r.error(
                    &index_path(&key_path(&key_path(path, "summary"), "quantiles"), i),
                    format!("quantile {q} is not between 0 and 1"),
                );
            }
        }
    }
}

fn dimensions(r: &mut Report, path: &str, dims: &[Dimension]) {
    let mut seen = HashSet::new();
    for (i, d) in dims.iter().enumerate() {
        if !seen.insert(d.name.as_str()) {
            r.error(
                &key_path(&index_path(path, i), "name"),
                format!("dimension '{}' is listed twice", d.name),
            );
        }
    }
}

pub(super) fn count(r: &mut Report, path: &str, c: &CountConfig) {
    if c.flush_interval.get().is_zero() {
        r.error(
            &key_path(path, "flush_interval"),
            "flush_interval must be greater than 0",
        );
    }
    for (section, metrics) in [
        ("spans", &c.spans),
        ("logs", &c.logs),
        ("datapoints", &c.datapoints),
    ] {
        let spath = key_path(path, section);
        for (name, m) in metrics {
            let mpath = key_path(&spath, name);
            let cpath = key_path(&mpath, "conditions");
            for (i, cond) in m.conditions.iter().enumerate() {
                if let Err(e) = Condition::parse(cond) {
                    r.error(&index_path(&cpath, i), format!("condition '{cond}': {e}"));
                }
            }
            dimensions(r, &key_path(&mpath, "attributes"), &m.attributes);
        }
    }
}
