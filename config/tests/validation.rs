//! One test (at least) per validation rule, each failing if its rule were removed: the rule's finding is
//! asserted by path, line and message, and a nearby valid config is asserted to pass.

use outpost_config::{load_str_with_env, Diagnostic, Loaded};

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

/// Exactly one error, which is returned.
fn error(yaml: &str) -> Diagnostic {
    let errors = errors(yaml);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    errors.into_iter().next().unwrap()
}

fn ok(yaml: &str) -> Loaded {
    load(yaml).unwrap_or_else(|d| panic!("{d}\nin:\n{yaml}"))
}

fn line_of(yaml: &str, needle: &str) -> Option<usize> {
    Some(yaml.lines().position(|l| l.contains(needle)).expect(needle) + 1)
}

const OTLP_IN: &str = "receivers:\n  otlp:\n    protocols:\n      grpc:\n";

// ----- references from pipelines -------------------------------------------------------------------------

#[test]
fn a_pipeline_naming_an_undefined_exporter_lists_the_defined_ones() {
    let yaml = format!(
        "{OTLP_IN}exporters:\n  debug:\n  otlp/local:\n    endpoint: 127.0.0.1:14317\nservice:\n  pipelines:\n    \
         traces:\n      receivers: [otlp]\n      exporters: [otlp/local, otlp/cloud]\n"
    );
    let e = error(&yaml);
    assert_eq!(e.path, "service.pipelines.traces.exporters[1]");
    assert_eq!(e.line, line_of(&yaml, "otlp/cloud"));
    assert_eq!(
        e.message,
        "'otlp/cloud' is not defined under exporters (defined: debug, otlp/local)"
    );
}

#[test]
fn a_pipeline_naming_an_undefined_receiver_or_processor_is_an_error() {
    let yaml = format!(
        "{OTLP_IN}processors:\n  batch:\nexporters:\n  debug:\nservice:\n  pipelines:\n    metrics:\n      \
         receivers: [otlp, prometheus]\n      processors: [batch, filter]\n      exporters: [debug]\n"
    );
    let errors = errors(&yaml);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_eq!(errors[0].path, "service.pipelines.metrics.receivers[1]");
    assert_eq!(
        errors[0].message,
        "'prometheus' is not defined under receivers (defined: otlp)"
    );
    assert_eq!(errors[1].path, "service.pipelines.metrics.processors[1]");
    assert_eq!(
        errors[1].message,
        "'filter' is not defined under processors (defined: batch)"
    );
}

#[test]
fn connectors_count_on_both_sides_and_are_listed_when_a_name_is_missing() {
    let yaml = format!(
        "{OTLP_IN}exporters:\n  debug:\nconnectors:\n  forward:\nservice:\n  pipelines:\n    traces/in:\n      \
         receivers: [otlp]\n      exporters: [forward]\n    traces/out:\n      receivers: [forward]\n      \
         exporters: [debug]\n"
    );
    ok(&yaml);
    let broken = yaml.replace("exporters: [debug]", "exporters: [debug, forwrd]");
    let e = error(&broken);
    assert_eq!(
        e.message,
        "'forwrd' is not defined under exporters or connectors (exporters: debug; connectors: forward)"
    );
}

#[test]
fn a_component_listed_twice_in_one_list_is_an_error() {
    let yaml = format!(
        "{OTLP_IN}processors:\n  batch:\nexporters:\n  debug:\nservice:\n  pipelines:\n    logs:\n      \
         receivers: [otlp]\n      processors: [batch, batch]\n      exporters: [debug]\n"
    );
    let e = error(&yaml);
    assert_eq!(e.path, "service.pipelines.logs.processors[1]");
    assert_eq!(e.column, Some(27));
    assert_eq!(
        e.message,
        format!(
            "'batch' is listed twice (first on line {}); remove one",
            e.line.unwrap()
        )
    );
    // A third mention also points at the first.
    let yaml = format!(
        "{OTLP_IN}exporters:\n  debug:\nservice:\n  pipelines:\n    logs:\n      receivers: [otlp]\n      \
         exporters:\n        - debug\n        - debug\n        - debug\n"
    );
    let errors = errors(&yaml);
    let first = line_of(&yaml, "- debug").unwrap();
    let lines: Vec<Option<usize>> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![Some(first + 1), Some(first + 2)]);
    for e in &errors {
        assert!(
            e.message.contains(&format!("(first on line {first})")),
            "{e}"
        );
    }
    // The same component in two different pipelines is fine.
    ok(&format!(
        "{OTLP_IN}processors:\n  batch:\nexporters:\n  debug:\nservice:\n  pipelines:\n    logs:\n      \
         receivers: [otlp]\n      processors: [batch]\n      exporters: [debug]\n    traces:\n      \
         receivers: [otlp]\n      processors: [batch]\n      exporters: [debug]\n"
    ));
}

#[test]
fn a_pipeline_needs_receivers_and_exporters() {
    let yaml = format!(
        "{OTLP_IN}exporters:\n  debug:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n    \
         logs:\n      exporters: [debug]\n"
    );
    let errors = errors(&yaml);
    let found: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| (e.path.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(
        found,
        vec![
            (
                "service.pipelines.traces",
                "pipeline 'traces' has no exporters; list at least one under exporters"
            ),
            (
                "service.pipelines.logs",
                "pipeline 'logs' has no receivers; list at least one under receivers"
            ),
        ]
    );
    assert_eq!(errors[0].line, line_of(&yaml, "traces:"));
}

#[test]
fn a_config_without_pipelines_is_an_error() {
    let yaml = format!("{OTLP_IN}exporters:\n  debug:\nservice:\n  extensions: []\n");
    let e = error(&yaml);
    assert_eq!(e.path, "service.pipelines");
    assert!(e
        .message
        .starts_with("no pipelines are defined; add one under service.pipelines"));
}

#[test]
fn a_broken_component_is_not_also_reported_as_undefined_or_unused() {
    // The exporter's own mistake is the only finding: it still counts as defined and used.
    let yaml = format!(
        "{OTLP_IN}exporters:\n  otlp:\n    endpoint: c:4317\n    timeout: 5\n  debugg:\nservice:\n  pipelines:\n    \
         traces:\n      receivers: [otlp]\n      exporters: [otlp, debugg]\n"
    );
    let errors = errors(&yaml);
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        vec!["exporters.otlp.timeout", "exporters.debugg"],
        "{errors:#?}"
    );
}

// ----- signals and connectors ---------------------------------------------------------------------------
// (A receiver limited to some signals is tested in validate.rs: every receiver of this build takes all.)

#[test]
fn a_connector_used_on_one_side_only_is_an_error() {
    let fed_only = format!(
        "{OTLP_IN}exporters:\n  debug:\nconnectors:\n  forward:\nservice:\n  pipelines:\n    traces:\n      \
         receivers: [otlp]\n      exporters: [debug, forward]\n"
    );
    let e = error(&fed_only);
    assert_eq!(e.path, "service.pipelines.traces.exporters[1]");
    assert!(e.message.starts_with(
        "connector 'forward' is an exporter here but no pipeline lists it under receivers"
    ));

    let read_only = format!(
        "{OTLP_IN}exporters:\n  debug:\nconnectors:\n  forward:\nservice:\n  pipelines:\n    traces:\n      \
         receivers: [otlp, forward]\n      exporters: [debug]\n"
    );
    let e = error(&read_only);
    assert_eq!(e.path, "service.pipelines.traces.receivers[1]");
    assert!(e.message.starts_with(
        "connector 'forward' is a receiver here but no pipeline lists it under exporters"
    ));
}

#[test]
fn a_connector_between_signals_it_cannot_join_is_an_error() {
    let yaml = format!(
        "{OTLP_IN}exporters:\n  debug:\nconnectors:\n  forward:\nservice:\n  pipelines:\n    traces:\n      \
         receivers: [otlp]\n      exporters: [forward]\n    metrics:\n      receivers: [forward]\n      \
         exporters: [debug]\n"
    );
    let e = error(&yaml);
    assert_eq!(e.path, "service.pipelines.metrics.receivers[0]");
    assert_eq!(
        e.message,
        "connector 'forward' cannot turn traces (from pipeline 'traces') into metrics for pipeline 'metrics'; \
         forward connects pipelines of the same signal"
    );
}

#[test]
fn pipelines_joined_in_a_loop_are_an_error() {
    let yaml = format!(
        "{OTLP_IN}exporters:\n  debug:\nconnectors:\n  forward/ab:\n  forward/ba:\nservice:\n  pipelines:\n    \
         traces/a:\n      receivers: [otlp, forward/ba]\n      exporters: [forward/ab]\n    traces/b:\n      \
         receivers: [forward/ab]\n      exporters: [forward/ba, debug]\n"
    );
    let e = error(&yaml);
    let one_way = "pipelines form a loop through connectors: traces/a → traces/b → traces/a";
    let other_way = "pipelines form a loop through connectors: traces/b → traces/a → traces/b";
    assert!(
        e.message.starts_with(one_way) || e.message.starts_with(other_way),
        "{e}"
    );
    assert!(e.path == "service.pipelines.traces/a" || e.path == "service.pipelines.traces/b");
    // Joined one way only, the same pipelines are fine.
    ok(&yaml
        .replace("receivers: [otlp, forward/ba]", "receivers: [otlp]")
        .replace("[forward/ba, debug]", "[debug]")
        .replace("  forward/ba:\n", ""));
}

#[test]
fn a_connector_id_shared_with_a_receiver_is_ambiguous() {
    let yaml = "receivers:\n  otlp:\n    protocols:\n      grpc:\n  forward:\nexporters:\n  debug:\n\
                connectors:\n  forward:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      \
                exporters: [debug]\n";
    let found: Vec<String> = errors(yaml).into_iter().map(|e| e.message).collect();
    assert!(
        found.contains(&"'forward' is defined both as a connector and as a receiver; a pipeline could not tell \
                         which one it names: rename one (type/name)"
            .to_owned()),
        "{found:#?}"
    );
}

// ----- extensions ---------------------------------------------------------------------------------------

#[test]
fn service_extensions_must_be_defined_and_listed_once() {
    let yaml = format!(
        "{OTLP_IN}exporters:\n  debug:\nextensions:\n  health_check:\nservice:\n  extensions: [health_check, \
         zpages, health_check]\n  pipelines:\n    traces: {{receivers: [otlp], exporters: [debug]}}\n"
    );
    let errors = errors(&yaml);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_eq!(errors[0].path, "service.extensions[1]");
    assert_eq!(
        errors[0].message,
        "'zpages' is not defined under extensions (defined: health_check)"
    );
    assert_eq!(errors[1].path, "service.extensions[2]");
    assert!(errors[1]
        .message
        .starts_with("'health_check' is listed twice"));
}

// ----- processors ---------------------------------------------------------------------------------------

fn with_processor(processor: &str) -> String {
    let id = processor.trim().split(':').next().unwrap().to_owned();
    format!(
        "{OTLP_IN}processors:\n{processor}\nexporters:\n  debug:\nservice:\n  pipelines:\n    traces:\n      \
         receivers: [otlp]\n      processors: [{id}]\n      exporters: [debug]\n"
    )
}

#[test]
fn memory_limiter_needs_a_limit_and_prefers_limit_mib() {
    let e = error(&with_processor("  memory_limiter:\n    check_interval: 1s"));
    assert_eq!(e.path, "processors.memory_limiter");
    assert!(
        e.message.starts_with("no limit is set; set limit_mib"),
        "{e}"
    );

    // Both: upstream uses limit_mib, so this loads, with a warning.
    let both = ok(&with_processor(
        "  memory_limiter:\n    limit_mib: 512\n    limit_percentage: 50",
    ));
    assert_eq!(both.warnings.len(), 1, "{:#?}", both.warnings);
    assert_eq!(
        both.warnings[0].path,
        "processors.memory_limiter.limit_percentage"
    );
    assert!(both.warnings[0]
        .message
        .starts_with("both limit_mib and limit_percentage are set; limit_mib is used"));

    let e = error(&with_processor("  memory_limiter:\n    limit_mib: 0"));
    assert_eq!(e.message, "limit_mib must be greater than 0");

    let e = error(&with_processor(
        "  memory_limiter:\n    limit_percentage: 120",
    ));
    assert_eq!(
        e.message,
        "limit_percentage is 120; a percentage is at most 100"
    );

    ok(&with_processor(
        "  memory_limiter:\n    limit_percentage: 80\n    spike_limit_percentage: 20",
    ));
}

#[test]
fn memory_limiter_spike_must_stay_below_the_limit() {
    let yaml = with_processor("  memory_limiter:\n    limit_mib: 512\n    spike_limit_mib: 512");
    let e = error(&yaml);
    assert_eq!(e.path, "processors.memory_limiter.spike_limit_mib");
    assert_eq!(e.line, line_of(&yaml, "spike_limit_mib"));
    assert!(e
        .message
        .starts_with("spike_limit_mib (512) must be less than limit_mib (512)"));

    let e = error(&with_processor(
        "  memory_limiter:\n    limit_percentage: 50\n    spike_limit_percentage: 60",
    ));
    assert_eq!(e.path, "processors.memory_limiter.spike_limit_percentage");

    ok(&with_processor(
        "  memory_limiter:\n    limit_mib: 512\n    spike_limit_mib: 511",
    ));
}

#[test]
fn batch_max_size_must_be_zero_or_at_least_the_batch_size() {
    let yaml = with_processor("  batch:\n    send_batch_size: 1000\n    send_batch_max_size: 999");
    let e = error(&yaml);
    assert_eq!(e.path, "processors.batch.send_batch_max_size");
    assert!(e
        .message
        .starts_with("send_batch_max_size (999) is smaller than send_batch_size (1000)"));
    ok(&with_processor(
        "  batch:\n    send_batch_size: 1000\n    send_batch_max_size: 1000",
    ));
    ok(&with_processor(
        "  batch:\n    send_batch_size: 1000\n    send_batch_max_size: 0",
    ));
}

#[test]
fn insert_update_upsert_need_exactly_one_of_value_and_from_attribute() {
    for action in ["insert", "update", "upsert"] {
        let neither = with_processor(&format!(
            "  attributes:\n    actions:\n      - key: a\n        action: {action}"
        ));
        let e = error(&neither);
        assert_eq!(e.path, "processors.attributes.actions[0]");
        assert_eq!(
            e.message,
            format!("action '{action}' on 'a' needs a value: set value or from_attribute")
        );

        let both = with_processor(&format!(
            "  attributes:\n    actions:\n      - key: a\n        action: {action}\n        value: 1\n        \
             from_attribute: b"
        ));
        let e = error(&both);
        assert_eq!(e.path, "processors.attributes.actions[0].from_attribute");
        assert_eq!(e.line, line_of(&both, "from_attribute"));

        ok(&with_processor(&format!(
            "  attributes:\n    actions:\n      - key: a\n        action: {action}\n        value: x"
        )));
        ok(&with_processor(&format!(
            "  attributes:\n    actions:\n      - key: a\n        action: {action}\n        from_attribute: b"
        )));
    }
}

#[test]
fn delete_and_hash_take_neither_value_nor_from_attribute() {
    for (action, key) in [
        ("delete", "value"),
        ("hash", "from_attribute"),
        ("delete", "from_attribute"),
    ] {
        let yaml = with_processor(&format!(
            "  resource:\n    attributes:\n      - key: ok\n        action: {action}\n      - key: a\n        \
             action: {action}\n        {key}: x"
        ));
        let e = error(&yaml);
        assert_eq!(e.path, format!("processors.resource.attributes[1].{key}"));
        assert_eq!(
            e.message,
            format!("action '{action}' takes no {key}; remove it")
        );
    }
    ok(&with_processor(
        "  resource:\n    attributes:\n      - key: a\n        action: hash",
    ));
}

// ----- exporters ----------------------------------------------------------------------------------------

fn with_exporter(exporter: &str, signal: &str) -> String {
    let id = exporter.trim().split(':').next().unwrap().to_owned();
    format!(
        "{OTLP_IN}exporters:\n{exporter}\nservice:\n  pipelines:\n    {signal}:\n      receivers: [otlp]\n      \
         exporters: [{id}]\n"
    )
}

#[test]
fn otlp_endpoints_are_host_port_or_http_and_need_no_insecure_flag() {
    for endpoint in [
        "central:4317",
        "10.1.2.3:4317",
        "http://central:4317",
        "'[::1]:4317'",
    ] {
        // `tls.insecure` is false by default, and a plaintext endpoint is still accepted.
        ok(&with_exporter(
            &format!("  otlp:\n    endpoint: {endpoint}"),
            "traces",
        ));
        ok(&with_exporter(
            &format!("  otlp:\n    endpoint: {endpoint}\n    tls:\n      insecure: false"),
            "traces",
        ));
    }
    let yaml = with_exporter("  otlp:\n    endpoint: central", "traces");
    let e = error(&yaml);
    assert_eq!(e.path, "exporters.otlp.endpoint");
    assert_eq!(e.line, line_of(&yaml, "endpoint"));
    assert_eq!(
        e.message,
        "not an endpoint: 'central' (expected host:port, http://host:port or https://host:port)"
    );
    let e = error(&with_exporter(
        "  otlp:\n    endpoint: grpc://central:4317",
        "traces",
    ));
    assert!(e
        .message
        .starts_with("not an endpoint: 'grpc://central:4317'"));
}

#[test]
fn https_endpoints_are_accepted_and_contradictions_refused() {
    ok(&with_exporter(
        "  otlp:\n    endpoint: https://central:4317",
        "traces",
    ));
    ok(&with_exporter(
        "  otlphttp:\n    endpoint: https://central:4318",
        "traces",
    ));
    let e = error(&with_exporter(
        "  otlp:\n    endpoint: https://central:4317\n    tls:\n      insecure: true",
        "traces",
    ));
    assert_eq!(e.path, "exporters.otlp.tls.insecure");
    assert!(e.message.contains("https://"), "{e}");
}

#[test]
fn otlphttp_needs_a_url_for_every_signal_it_is_used_for() {
    let e = error(&with_exporter("  otlphttp:\n    compression: gzip", "logs"));
    assert_eq!(e.path, "exporters.otlphttp");
    assert!(e.message.starts_with("no URL is set; set endpoint"));

    let yaml = with_exporter(
        "  otlphttp:\n    traces_endpoint: http://c:4318/v1/traces",
        "logs",
    );
    let e = error(&yaml);
    assert_eq!(
        e.message,
        "pipeline 'logs' sends logs here but no URL for logs is set; set endpoint (a base URL) or logs_endpoint"
    );
    ok(&with_exporter(
        "  otlphttp:\n    logs_endpoint: http://c:4318/v1/logs",
        "logs",
    ));
    ok(&with_exporter(
        "  otlphttp:\n    endpoint: http://c:4318",
        "logs",
    ));
}

#[test]
fn otlphttp_urls_must_be_http() {
    let yaml = with_exporter(
        "  otlphttp:\n    endpoint: http://c:4318\n    metrics_endpoint: ftp://c/m",
        "metrics",
    );
    let e = error(&yaml);
    assert_eq!(e.path, "exporters.otlphttp.metrics_endpoint");
    assert_eq!(
        e.message,
        "not a URL: 'ftp://c/m' (expected http://host:port or https://host:port)"
    );
    let e = error(&with_exporter(
        "  otlphttp:\n    endpoint: c:4318",
        "metrics",
    ));
    assert_eq!(
        e.message,
        "not a URL: 'c:4318' (expected http://host:port or https://host:port)"
    );
}

// ----- listeners -----------------------------------------------------------------------------------------

#[test]
fn two_receivers_binding_the_same_endpoint_are_an_error() {
    let yaml = "receivers:\n  otlp/a:\n    protocols:\n      grpc:\n        endpoint: 0.0.0.0:4317\n  otlp/b:\n    \
                protocols:\n      grpc:\n        endpoint: 127.0.0.1:4317\nexporters: {debug: }\nservice:\n  \
                pipelines:\n    traces:\n      receivers: [otlp/a, otlp/b]\n      exporters: [debug]\n";
    let e = error(yaml);
    assert_eq!(e.path, "receivers.otlp/b.protocols.grpc.endpoint");
    assert_eq!(e.line, Some(9));
    assert_eq!(
        e.message,
        "127.0.0.1:4317 is also bound by receivers.otlp/a.protocols.grpc.endpoint (line 5); give each \
         listener its own port"
    );
    ok(&yaml.replace("127.0.0.1:4317", "127.0.0.1:14317"));
    // Only receivers a pipeline uses are started, so only they can collide.
    ok(&yaml.replace("receivers: [otlp/a, otlp/b]", "receivers: [otlp/a]"))
        .warnings
        .iter()
        .find(|w| w.path == "receivers.otlp/b")
        .expect("the unused receiver is a warning");
}

#[test]
fn a_receiver_cannot_share_the_admin_endpoint() {
    let yaml = "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:13133\n\
                exporters: {debug: }\nextensions: {health_check: }\nservice:\n  extensions: [health_check]\n  \
                pipelines: {logs: {receivers: [otlp], exporters: [debug]}}\n";
    let e = error(yaml);
    assert_eq!(e.path, "receivers.otlp.protocols.http.endpoint");
    assert_eq!(
        e.message,
        "127.0.0.1:13133 is also bound by extensions.health_check.endpoint (line 7); give each \
         listener its own port"
    );
    // With no health_check enabled, the admin endpoint is still there, on its default address.
    let e = error(
        &yaml
            .replace("extensions: {health_check: }\n", "")
            .replace("  extensions: [health_check]\n", ""),
    );
    assert_eq!(e.path, "receivers.otlp.protocols.http.endpoint");
    assert!(e
        .message
        .starts_with("127.0.0.1:13133 is also bound by the default admin endpoint"));
    ok(&yaml.replace("127.0.0.1:13133", "127.0.0.1:4318"));
}

// ----- prometheusremotewrite ------------------------------------------------------------------------------

const PRW: &str = "  prometheusremotewrite:\n    endpoint: http://prometheus:9090/api/v1/write";

#[test]
fn prometheusremotewrite_only_sends_metrics() {
    let loaded = ok(&with_exporter(PRW, "metrics"));
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    for signal in ["traces", "logs"] {
        let yaml = with_exporter(PRW, signal);
        let e = error(&yaml);
        assert_eq!(e.path, format!("service.pipelines.{signal}.exporters[0]"));
        assert_eq!(e.line, line_of(&yaml, "exporters: [prometheusremotewrite]"));
        assert_eq!(
            e.message,
            format!(
                "exporter 'prometheusremotewrite' does not send {signal} (it supports: metrics); move it \
                 to a pipeline of one of those signals"
            )
        );
    }
}

#[test]
fn prometheusremotewrite_needs_an_http_url_and_valid_labels_and_limits() {
    let yaml = with_exporter(
        "  prometheusremotewrite:\n    endpoint: prometheus:9090\n    external_labels:\n      cluster: edge\n      \
         site-id: s1\n      __reserved: x\n    max_batch_size_bytes: 0\n    max_samples_per_request: 0",
        "metrics",
    );
    let errors = errors(&yaml);
    let found: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| (e.path.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(
        found,
        vec![
            (
                "exporters.prometheusremotewrite.endpoint",
                "not a URL: 'prometheus:9090' (expected http://host:port or https://host:port)"
            ),
            (
                "exporters.prometheusremotewrite.external_labels.site-id",
                "'site-id' is not a Prometheus label name: only letters, digits and _ are allowed"
            ),
            (
                "exporters.prometheusremotewrite.external_labels.__reserved",
                "'__reserved' is not a Prometheus label name: names starting with __ are reserved for Prometheus"
            ),
            (
                "exporters.prometheusremotewrite.max_batch_size_bytes",
                "max_batch_size_bytes must be greater than 0 (the default is 3000000)"
            ),
            (
                "exporters.prometheusremotewrite.max_samples_per_request",
                "max_samples_per_request must be at least 1 (the default is 2000)"
            ),
        ]
    );
    assert_eq!(errors[1].line, line_of(&yaml, "site-id"));
}

#[test]
fn prometheusremotewrite_defaults_and_collector_keys() {
    let yaml = with_exporter(
        "  prometheusremotewrite:\n    endpoint: http://prometheus:9090/api/v1/write\n    \
         resource_to_telemetry_conversion:\n      enabled: true\n    target_info:\n      enabled: false\n    \
         add_metric_suffixes: false\n    send_metadata: true\n    namespace: edge\n    headers:\n      \
         X-Scope-OrgID: tenant1",
        "metrics",
    );
    let loaded = ok(&yaml);
    let id: outpost_config::ComponentId = "prometheusremotewrite".parse().unwrap();
    let Some(outpost_config::ExporterConfig::PrometheusRemoteWrite(c)) =
        loaded.config.exporters.get(&id)
    else {
        panic!("not decoded as prometheusremotewrite");
    };
    assert!(c.resource_to_telemetry_conversion.enabled);
    assert!(!c.target_info.enabled);
    assert!(!c.add_metric_suffixes);
    assert!(c.send_metadata);
    assert_eq!(c.namespace.as_deref(), Some("edge"));
    assert_eq!(c.max_batch_size_bytes.bytes(), 3_000_000);
    assert_eq!(c.max_samples_per_request, 2000);
    // One request in flight unless configured: Prometheus refuses out-of-order samples. Also when the
    // block is there for other keys.
    assert_eq!(loaded.config.delivery(&id).sending_queue.num_consumers, 1);
    let with_block = ok(&with_exporter(
        &format!("{PRW}\n    sending_queue:\n      max_age: 2h"),
        "metrics",
    ));
    assert!(with_block.warnings.is_empty(), "{:#?}", with_block.warnings);
    let q = with_block.config.delivery(&id).sending_queue;
    assert_eq!(q.num_consumers, 1);
    assert_eq!(q.max_age.map(|a| a.get().as_secs()), Some(7200));
    let yaml = with_exporter(
        &format!("{PRW}\n    sending_queue:\n      num_consumer: 2"),
        "metrics",
    );
    let e = error(&yaml);
    assert!(
        e.path
            .starts_with("exporters.prometheusremotewrite.sending_queue"),
        "{e:?}"
    );
    assert_eq!(e.line, line_of(&yaml, "num_consumer:"));

    let defaults = ok(&with_exporter(PRW, "metrics"));
    let Some(outpost_config::ExporterConfig::PrometheusRemoteWrite(c)) =
        defaults.config.exporters.get(&id)
    else {
        panic!("not decoded as prometheusremotewrite");
    };
    assert!(!c.resource_to_telemetry_conversion.enabled);
    assert!(c.target_info.enabled);
    assert!(c.add_metric_suffixes);
    assert!(!c.send_metadata);
}

#[test]
fn prometheusremotewrite_warns_about_its_superseded_queue_and_concurrency() {
    let yaml = with_exporter(
        &format!(
            "{PRW}\n    remote_write_queue:\n      enabled: true\n      num_consumers: 5\n    sending_queue:\n      \
             num_consumers: 3\n      drain_order: newest_first"
        ),
        "metrics",
    );
    let loaded = ok(&yaml);
    let found: Vec<&str> = loaded.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        found,
        vec![
            "exporters.prometheusremotewrite.remote_write_queue",
            "exporters.prometheusremotewrite.sending_queue.num_consumers",
            "exporters.prometheusremotewrite.sending_queue.drain_order",
        ]
    );
    assert!(loaded.warnings[1]
        .message
        .starts_with("3 requests in flight can deliver the samples of one series out of order"));
}

// ----- warnings ------------------------------------------------------------------------------------------

#[test]
fn unused_components_and_disabled_extensions_are_warnings() {
    let yaml = "receivers:\n  otlp:\n    protocols:\n      grpc:\n  otlp/spare:\n    protocols:\n      http:\n\
                processors:\n  batch:\nexporters:\n  debug:\n  file:\n    path: /tmp/out.jsonl\n\
                connectors:\n  forward:\nextensions:\n  health_check:\nservice:\n  pipelines:\n    traces:\n      \
                receivers: [otlp]\n      exporters: [debug]\n";
    let loaded = ok(yaml);
    let found: Vec<(&str, &str)> = loaded
        .warnings
        .iter()
        .map(|w| (w.path.as_str(), w.message.as_str()))
        .collect();
    assert_eq!(
        found,
        vec![
            ("receivers.otlp/spare", "receiver 'otlp/spare' is defined but no pipeline uses it, so it is not started"),
            ("processors.batch", "processor 'batch' is defined but no pipeline uses it, so it is not started"),
            ("exporters.file", "exporter 'file' is defined but no pipeline uses it, so it is not started"),
            ("connectors.forward", "connector 'forward' is defined but no pipeline uses it, so it is not started"),
            (
                "extensions.health_check",
                "extension 'health_check' is defined but not listed in service.extensions, so it is not started"
            ),
        ]
    );
    assert_eq!(loaded.warnings[0].line, Some(5));
    let shown = loaded.warnings[4].to_string();
    assert!(
        shown.starts_with("test.yaml:17:3: warning: extensions.health_check: "),
        "{shown}"
    );
}

// ----- tail_sampling, spanmetrics, count ------------------------------------------------------------------

#[test]
fn tail_sampling_policy_mistakes_are_reported_at_their_paths() {
    let yaml = format!(
        "{OTLP_IN}processors:\n  tail_sampling:\n    policies:\n      - name: p\n        type: probabilistic\n        \
         probabilistic: {{sampling_percentage: 150}}\n      - name: p\n        type: latency\n      - name: re\n        \
         type: string_attribute\n        string_attribute: {{key: k, values: ['('], enabled_regex_matching: true}}\n      \
         - name: c\n        type: composite\n        composite:\n          max_total_spans_per_second: 10\n          \
         composite_sub_policy: [{{name: a, type: always_sample}}]\n          rate_allocation: [{{policy: b, percent: 50}}]\n\
         exporters:\n  debug:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      \
         processors: [tail_sampling]\n      exporters: [debug]\n"
    );
    let errors = errors(&yaml);
    let found: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| (e.path.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(errors.len(), 5, "{found:#?}");
    let has = |path: &str, fragment: &str| {
        assert!(
            found
                .iter()
                .any(|(p, m)| *p == path && m.contains(fragment)),
            "no {path}: {fragment} in {found:#?}"
        )
    };
    has(
        "processors.tail_sampling.policies[0].probabilistic.sampling_percentage",
        "between 0 and 100",
    );
    has("processors.tail_sampling.policies[1].name", "used twice");
    has(
        "processors.tail_sampling.policies[1].type",
        "has no `latency:` block",
    );
    has(
        "processors.tail_sampling.policies[2].string_attribute.values[0]",
        "not a valid regular expression",
    );
    has(
        "processors.tail_sampling.policies[3].composite.rate_allocation[0].policy",
        "'b' is not one of this composite's sub-policies",
    );
    assert_eq!(errors[0].line, line_of(&yaml, "sampling_percentage: 150"));
}

#[test]
fn tail_sampling_outside_a_traces_pipeline_is_an_error() {
    let yaml = format!(
        "{OTLP_IN}processors:\n  tail_sampling:\n    policies: [{{name: all, type: always_sample}}]\nexporters:\n  \
         debug:\nservice:\n  pipelines:\n    logs:\n      receivers: [otlp]\n      processors: [tail_sampling]\n      \
         exporters: [debug]\n"
    );
    let e = error(&yaml);
    assert_eq!(e.path, "service.pipelines.logs.processors[0]");
    assert!(
        e.message
            .contains("does not process logs (it supports: traces)"),
        "{}",
        e.message
    );
}

#[test]
fn spanmetrics_joins_traces_to_metrics_only_and_count_conditions_must_parse() {
    let good = format!(
        "{OTLP_IN}exporters:\n  debug:\nconnectors:\n  spanmetrics:\n  count:\n    logs:\n      errors:\n        \
         conditions: ['severity_number >= SEVERITY_NUMBER_ERROR']\nservice:\n  pipelines:\n    traces:\n      \
         receivers: [otlp]\n      exporters: [spanmetrics]\n    logs:\n      receivers: [otlp]\n      \
         exporters: [count]\n    metrics:\n      receivers: [spanmetrics, count]\n      exporters: [debug]\n"
    );
    ok(&good);
    let wrong_signal = good.replace(
        "    traces:\n      receivers: [otlp]\n      exporters: [spanmetrics]\n",
        "    traces:\n      receivers: [otlp]\n      exporters: [debug]\n    logs/x:\n      receivers: [otlp]\n      exporters: [spanmetrics]\n",
    );
    let e = error(&wrong_signal);
    assert_eq!(e.path, "service.pipelines.metrics.receivers[0]");
    assert!(
        e.message.ends_with("spanmetrics turns traces into metrics"),
        "{}",
        e.message
    );
    let bad_condition = good.replace("severity_number >=", "severity_numbr >=");
    let e = error(&bad_condition);
    assert_eq!(e.path, "connectors.count.logs.errors.conditions[0]");
    assert!(
        e.message.contains("unknown field 'severity_numbr'"),
        "{}",
        e.message
    );
}

// ----- tls and auth --------------------------------------------------------------------------------------

/// A CA-less self-signed certificate and its key, written to `dir` as `{name}.pem` / `{name}.key`.
fn cert_files(dir: &std::path::Path, name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (c, k) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c.display().to_string(), k.display().to_string())
}

fn tls_receiver(tls: &str) -> String {
    format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        tls:\n{tls}exporters:\n  debug:\n\
         service:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n"
    )
}

#[test]
fn tls_files_are_read_at_load_and_problems_reported_at_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = cert_files(dir.path(), "a");
    let (_, other_key) = cert_files(dir.path(), "b");
    ok(&tls_receiver(&format!(
        "          cert_file: {cert}\n          key_file: {key}\n"
    )));

    let missing = dir.path().join("missing.pem").display().to_string();
    let yaml = tls_receiver(&format!(
        "          cert_file: {missing}\n          key_file: {key}\n"
    ));
    let e = error(&yaml);
    assert_eq!(e.path, "receivers.otlp.protocols.grpc.tls.cert_file");
    assert_eq!(e.line, line_of(&yaml, "cert_file"));
    assert!(
        e.message.starts_with(&format!("cannot read '{missing}'")),
        "{e}"
    );

    let yaml = tls_receiver(&format!(
        "          cert_file: {cert}\n          key_file: {other_key}\n"
    ));
    let e = error(&yaml);
    assert_eq!(e.path, "receivers.otlp.protocols.grpc.tls.cert_file");
    assert!(e.message.contains("does not match the certificate"), "{e}");

    // A key file holding a certificate (a common mix-up): named, content not quoted.
    let yaml = tls_receiver(&format!(
        "          cert_file: {cert}\n          key_file: {cert}\n"
    ));
    let e = error(&yaml);
    assert_eq!(e.path, "receivers.otlp.protocols.grpc.tls.key_file");
    assert!(e.message.contains("holds no private key"), "{e}");
    assert!(!e.message.contains("BEGIN CERTIFICATE-----\n"), "{e}");

    let errors = errors(&tls_receiver(
        "          client_ca_file: /nonexistent/ca.pem\n",
    ));
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_eq!(errors[0].path, "receivers.otlp.protocols.grpc.tls");
    assert!(errors[0].message.contains("needs cert_file and key_file"));
    assert_eq!(
        errors[1].path,
        "receivers.otlp.protocols.grpc.tls.client_ca_file"
    );
    assert!(errors[1]
        .message
        .starts_with("cannot read '/nonexistent/ca.pem'"));
}

#[test]
fn receiver_auth_needs_its_files_and_client_certificates_need_mtls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = cert_files(dir.path(), "a");
    let yaml = tls_receiver(&format!(
        "          cert_file: {cert}\n          key_file: {key}\n        auth:\n          \
         bearer_token_file: /nonexistent/tokens\n          client_certificate: {{}}\n"
    ));
    let errors = errors(&yaml);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_eq!(
        errors[0].path,
        "receivers.otlp.protocols.grpc.auth.bearer_token_file"
    );
    assert!(errors[0]
        .message
        .starts_with("cannot read '/nonexistent/tokens'"));
    assert_eq!(
        errors[1].path,
        "receivers.otlp.protocols.grpc.auth.client_certificate"
    );
    assert!(errors[1].message.contains("set tls.client_ca_file"));
}

/// Syslog over TCP has no headers: tokens and passwords cannot apply there and are refused by key, and
/// its rate limit is checked like any other; the remote-write receiver takes auth and rate_limit as the
/// OTLP receivers do.
#[test]
fn syslog_auth_is_the_certificate_only_and_remote_write_takes_auth_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = cert_files(dir.path(), "a");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "t1\n").unwrap();
    let tokens = tokens.display();
    let syslog = |extra: &str| {
        format!(
            "receivers:\n  syslog:\n    protocol: rfc5424\n    tcp:\n      listen_address: 127.0.0.1:5514\n      \
             tls:\n        cert_file: {cert}\n        key_file: {key}\n        client_ca_file: {cert}\n{extra}\
             exporters:\n  debug:\nservice:\n  pipelines:\n    logs:\n      receivers: [syslog]\n      \
             exporters: [debug]\n"
        )
    };
    let yaml = syslog(&format!(
        "      auth:\n        bearer_token_file: {tokens}\n        client_certificate: {{allowed_names: [edge-1]}}\n      \
         rate_limit:\n        requests_per_second: 0\n"
    ));
    let errors = errors(&yaml);
    let found: Vec<(&str, Option<usize>)> =
        errors.iter().map(|e| (e.path.as_str(), e.line)).collect();
    assert_eq!(
        found,
        vec![
            (
                "receivers.syslog.tcp.auth.bearer_token_file",
                line_of(&yaml, "bearer_token_file")
            ),
            (
                "receivers.syslog.tcp.rate_limit.requests_per_second",
                line_of(&yaml, "requests_per_second")
            ),
        ],
        "{errors:#?}"
    );
    assert!(
        errors[0].message.contains("no Authorization header"),
        "{errors:#?}"
    );
    ok(&syslog(
        "      auth:\n        client_certificate: {allowed_names: [edge-1]}\n      \
         rate_limit: {requests_per_second: 100, bytes_per_second: 64KiB}\n",
    ));

    let remote_write = |extra: &str| {
        format!(
            "receivers:\n  prometheusremotewrite:\n    endpoint: 127.0.0.1:9091\n{extra}exporters:\n  debug:\n\
             service:\n  pipelines:\n    metrics:\n      receivers: [prometheusremotewrite]\n      \
             exporters: [debug]\n"
        )
    };
    let yaml =
        remote_write("    auth:\n      htpasswd_file: /nonexistent/htpasswd\n    rate_limit: {}\n");
    let found = self::errors(&yaml);
    let paths: Vec<&str> = found.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "receivers.prometheusremotewrite.auth.htpasswd_file",
            "receivers.prometheusremotewrite.rate_limit"
        ],
        "{found:#?}"
    );
    let loaded = ok(&remote_write(&format!(
        "    tls: {{cert_file: {cert}, key_file: {key}}}\n    auth: {{bearer_token_file: {tokens}}}\n    \
         rate_limit: {{requests_per_second: 5, bytes_per_second: 1MiB}}\n"
    )));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

/// `service.telemetry.metrics.tls` needs the metrics address, on a port of its own.
#[test]
fn admin_tls_needs_its_own_metrics_address() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = cert_files(dir.path(), "a");
    let config = |metrics: &str| {
        format!(
            "{OTLP_IN}exporters:\n  debug:\nextensions:\n  health_check:\n    endpoint: 127.0.0.1:13133\n\
             service:\n  extensions: [health_check]\n  telemetry:\n    metrics:\n{metrics}      \
             tls: {{cert_file: {cert}, key_file: {key}}}\n  pipelines:\n    traces:\n      receivers: [otlp]\n      \
             exporters: [debug]\n"
        )
    };
    let e = error(&config(""));
    assert_eq!(e.path, "service.telemetry.metrics.tls");
    assert!(e.message.contains("address"), "{e}");
    let e = error(&config("      address: 127.0.0.1:13133\n"));
    assert_eq!(e.path, "service.telemetry.metrics.address");
    assert!(e.message.contains("health_check"), "{e}");
    ok(&config("      address: 127.0.0.1:9464\n"));
}

// ----- cardinality_limit ---------------------------------------------------------------------------------

fn cardinality(body: &str, signal: &str) -> String {
    format!(
        "{OTLP_IN}processors:\n  cardinality_limit:\n{body}exporters:\n  debug:\nservice:\n  pipelines:\n    \
         {signal}:\n      receivers: [otlp]\n      processors: [cardinality_limit]\n      exporters: [debug]\n"
    )
}

#[test]
fn cardinality_limit_metric_entries_name_their_metric_one_way_with_a_valid_regex() {
    let yaml = cardinality(
        "    metrics:\n      - name_regex: \"http_(\"\n      - max_series: 10\n      - name: a\n        name_regex: b\n",
        "metrics",
    );
    let errors = errors(&yaml);
    let found: Vec<(&str, Option<usize>)> =
        errors.iter().map(|e| (e.path.as_str(), e.line)).collect();
    assert_eq!(
        found,
        vec![
            (
                "processors.cardinality_limit.metrics[0].name_regex",
                line_of(&yaml, "http_(")
            ),
            (
                "processors.cardinality_limit.metrics[1]",
                line_of(&yaml, "max_series: 10")
            ),
            (
                "processors.cardinality_limit.metrics[2].name_regex",
                line_of(&yaml, "name_regex: b")
            ),
        ],
        "{errors:#?}"
    );
    assert!(errors[0]
        .message
        .starts_with("not a valid regular expression"));
    assert_eq!(
        errors[1].message,
        "a metrics entry needs name (an exact metric name) or name_regex"
    );
    ok(&cardinality(
        "    metrics:\n      - name_regex: \"http_.*\"\n        max_series: 10\n",
        "metrics",
    ));
}

#[test]
fn cardinality_limit_refuses_limits_that_admit_nothing_and_unknown_actions() {
    let yaml = cardinality(
        "    labels:\n      user_id: {value_limit: 0}\n    series_ttl: 0s\n",
        "metrics",
    );
    let errors = errors(&yaml);
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "processors.cardinality_limit.labels.user_id.value_limit",
            "processors.cardinality_limit.series_ttl",
        ],
        "{errors:#?}"
    );
    let e = error(&cardinality("    action: drop_series\n", "metrics"));
    assert_eq!(e.path, "processors.cardinality_limit.action");
    assert!(e.message.contains("drop_label"), "{}", e.message);
}

#[test]
fn cardinality_limit_is_for_metrics_pipelines_only() {
    let e = error(&cardinality("", "traces"));
    assert!(e.message.contains("cardinality_limit"), "{e:#?}");
    assert!(e.message.contains("metrics"), "{e:#?}");
}
