//! The Prometheus receivers' settings: Prometheus's own scrape config keys and defaults load, and each
//! mistake is reported at the YAML path and line of the key to fix.

use std::time::Duration;

use outpost_config::{load_str_with_env, Diagnostic, Loaded, ReceiverConfig, RelabelAction};

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(yaml: &str) -> Result<Loaded, outpost_config::Diagnostics> {
    load_str_with_env(yaml, "test.yaml", &no_env)
}

fn errors(yaml: &str) -> Vec<Diagnostic> {
    match load(yaml) {
        Ok(_) => panic!("expected errors from:\n{yaml}"),
        Err(d) => d.errors().cloned().collect(),
    }
}

fn line_of(yaml: &str, needle: &str) -> Option<usize> {
    Some(yaml.lines().position(|l| l.contains(needle)).expect(needle) + 1)
}

fn with_jobs(jobs: &str) -> String {
    format!(
        "receivers:\n  prometheus:\n    config:\n      scrape_configs:\n{jobs}exporters:\n  debug:\nservice:\n  \
         pipelines:\n    metrics:\n      receivers: [prometheus]\n      exporters: [debug]\n"
    )
}

#[test]
fn a_prometheus_job_loads_with_prometheus_defaults() {
    let yaml = with_jobs(
        "        - job_name: node\n          static_configs:\n            - targets: ['127.0.0.1:9100']\n              \
         labels: {env: prod}\n          metric_relabel_configs:\n            - source_labels: [__name__]\n              \
         regex: 'go_.*'\n              action: drop\n            - regex: 'tmp_(.*)'\n              action: labelmap\n              \
         replacement: 'x_$1'\n",
    );
    let loaded = load(&yaml).unwrap_or_else(|d| panic!("{d}"));
    let ReceiverConfig::Prometheus(p) = &loaded.config.receivers[0] else {
        panic!("a prometheus receiver")
    };
    let job = &p.config.scrape_configs[0];
    let global = &p.config.global;
    assert_eq!(job.interval(global), Duration::from_secs(60));
    assert_eq!(job.timeout(global), Duration::from_secs(10));
    assert_eq!(job.metrics_path, "/metrics");
    assert!(job.honor_timestamps && !job.honor_labels);
    assert_eq!(job.metric_relabel_configs[0].action, RelabelAction::Drop);
    // `$1` is not an environment reference: it reaches the relabel step as written.
    assert_eq!(job.metric_relabel_configs[1].replacement, "x_$1");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn mistakes_in_jobs_are_reported_at_their_keys() {
    let yaml = with_jobs(
        "        - job_name: node\n          scrape_interval: 5s\n          scrape_timeout: 10s\n          \
         static_configs:\n            - targets: ['http://127.0.0.1:9100']\n          relabel_configs:\n            \
         - regex: '(unclosed'\n              source_labels: [a]\n              target_label: b\n            \
         - action: hashmod\n              source_labels: [a]\n              target_label: shard\n        \
         - job_name: node\n          metrics_path: metrics\n          file_sd_configs:\n            - files: ['*/t.json']\n",
    );
    let errors = errors(&yaml);
    let find = |path: &str| {
        errors
            .iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("no error at {path}: {errors:#?}"))
    };
    let base = "receivers.prometheus.config.scrape_configs";
    let e = find(&format!("{base}[0].scrape_timeout"));
    assert_eq!(e.line, line_of(&yaml, "scrape_timeout: 10s"));
    assert!(
        e.message.contains("longer than scrape_interval (5s)"),
        "{}",
        e.message
    );
    let e = find(&format!("{base}[0].static_configs[0].targets[0]"));
    assert!(e.message.contains("has a scheme"), "{}", e.message);
    let e = find(&format!("{base}[0].relabel_configs[0].regex"));
    assert_eq!(e.line, line_of(&yaml, "(unclosed"));
    assert!(e.message.contains("not a valid regex"), "{}", e.message);
    let e = find(&format!("{base}[0].relabel_configs[1]"));
    assert!(e.message.contains("modulus"), "{}", e.message);
    let e = find(&format!("{base}[1].job_name"));
    assert!(e.message.contains("unique"), "{}", e.message);
    let e = find(&format!("{base}[1].metrics_path"));
    assert!(e.message.contains("must start with '/'"), "{}", e.message);
    let e = find(&format!("{base}[1].file_sd_configs[0].files[0]"));
    assert!(e.message.contains("last path element"), "{}", e.message);
    assert_eq!(errors.len(), 7, "{errors:#?}");
}

#[test]
fn unknown_keys_are_refused_by_name_and_tls_files_checked() {
    let yaml = with_jobs(
        "        - job_name: node\n          scrape_intervall: 5s\n          static_configs: [{targets: ['a:1']}]\n",
    );
    let e = &errors(&yaml)[0];
    assert_eq!(
        e.path,
        "receivers.prometheus.config.scrape_configs[0].scrape_intervall"
    );
    assert!(e.message.contains("unknown field"), "{}", e.message);
    let yaml = with_jobs(
        "        - job_name: node\n          scheme: https\n          tls_config: {ca_file: /nonexistent/ca.pem}\n          \
         static_configs: [{targets: ['a:1']}]\n",
    );
    let e = &errors(&yaml)[0];
    assert_eq!(
        e.path,
        "receivers.prometheus.config.scrape_configs[0].tls_config.ca_file"
    );
    assert!(
        e.message.starts_with("cannot read '/nonexistent/ca.pem'"),
        "{}",
        e.message
    );
}

#[test]
fn prometheus_receivers_only_feed_metrics_pipelines() {
    let yaml = "receivers:\n  prometheusremotewrite:\n    endpoint: 127.0.0.1:19090\nexporters:\n  debug:\n\
                service:\n  pipelines:\n    traces:\n      receivers: [prometheusremotewrite]\n      \
                exporters: [debug]\n";
    let e = &errors(yaml)[0];
    assert_eq!(e.path, "service.pipelines.traces.receivers[0]");
    assert!(e
        .message
        .contains("does not produce traces (it supports: metrics)"));
}

#[test]
fn a_remote_write_endpoint_must_not_collide_with_another_listener() {
    let yaml = "receivers:\n  prometheusremotewrite:\n    endpoint: 127.0.0.1:4318\n  otlp:\n    protocols:\n      \
                http:\n        endpoint: 127.0.0.1:4318\nexporters:\n  debug:\nservice:\n  pipelines:\n    metrics:\n      \
                receivers: [prometheusremotewrite, otlp]\n      exporters: [debug]\n";
    let errors = errors(yaml);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].message.contains("is also bound by"),
        "{}",
        errors[0].message
    );
}
