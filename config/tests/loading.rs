//! Loading end to end: YAML with positions, environment substitution, typed decoding that reports every
//! error at its line and column, defaults, anchors, and garbage that must never panic.

use std::collections::HashMap;

use outpost_config::{
    load_str_with_env, Diagnostic, Diagnostics, ExporterConfig, Loaded, ProcessorConfig,
    ReceiverConfig, Severity,
};

const ORIGIN: &str = "test.yaml";

fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| vars.get(name).cloned()
}

fn load_env(yaml: &str, vars: &[(&str, &str)]) -> Result<Loaded, Diagnostics> {
    load_str_with_env(yaml, ORIGIN, &env_of(vars))
}

fn load(yaml: &str) -> Result<Loaded, Diagnostics> {
    load_env(yaml, &[])
}

fn errors_env(yaml: &str, vars: &[(&str, &str)]) -> Vec<Diagnostic> {
    match load_env(yaml, vars) {
        Ok(_) => panic!("expected errors from:\n{yaml}"),
        Err(d) => d.errors().cloned().collect(),
    }
}

fn errors(yaml: &str) -> Vec<Diagnostic> {
    errors_env(yaml, &[])
}

/// The 1-based line of the first line containing `needle`.
fn line_of(yaml: &str, needle: &str) -> usize {
    yaml.lines().position(|l| l.contains(needle)).expect(needle) + 1
}

/// The 1-based column where `needle` starts on its line.
fn column_of(yaml: &str, needle: &str) -> usize {
    let line = yaml.lines().find(|l| l.contains(needle)).expect(needle);
    line.find(needle).unwrap() + 1
}

/// A valid config with room for one more exporter/processor setting, for tests about one value.
fn with_exporter(exporter: &str) -> String {
    format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\nexporters:\n{exporter}\nservice:\n  pipelines:\n    \
         traces:\n      receivers: [otlp]\n      exporters: [{}]\n",
        exporter.trim().split(':').next().unwrap()
    )
}

fn with_batch(settings: &str) -> String {
    format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\nprocessors:\n  batch:\n{settings}\nexporters:\n  \
         debug:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      processors: [batch]\n      \
         exporters: [debug]\n"
    )
}

fn batch(loaded: &Loaded) -> outpost_config::BatchConfig {
    match loaded
        .config
        .processors
        .get(&"batch".parse::<outpost_config::ComponentId>().unwrap())
    {
        Some(ProcessorConfig::Batch(b)) => b.clone(),
        other => panic!("{other:?}"),
    }
}

fn exporter<'a>(loaded: &'a Loaded, id: &str) -> &'a ExporterConfig {
    loaded
        .config
        .exporters
        .get(&id.parse::<outpost_config::ComponentId>().unwrap())
        .unwrap()
}

// ----- environment substitution ---------------------------------------------------------------------

#[test]
fn every_reference_form_is_substituted() {
    let yaml = with_exporter(
        "  otlp:\n    endpoint: ${env:HOST}:${PORT}\n    headers:\n      a: ${env:UNSET:-fallback}\n      \
         b: ${UNSET:-x}\n      c: price $$5 and $${env:HOST}\n      d: ${env:HOST:-ignored}",
    );
    let loaded = load_env(&yaml, &[("HOST", "central"), ("PORT", "4317")]).unwrap();
    let ExporterConfig::Otlp(otlp) = exporter(&loaded, "otlp") else {
        panic!()
    };
    assert_eq!(otlp.endpoint, "central:4317");
    assert_eq!(otlp.headers["a"].expose(), "fallback");
    assert_eq!(otlp.headers["b"].expose(), "x");
    assert_eq!(otlp.headers["c"].expose(), "price $5 and ${env:HOST}");
    assert_eq!(otlp.headers["d"].expose(), "central");
}

#[test]
fn a_plain_whole_reference_takes_the_type_of_its_value() {
    let yaml = with_batch("    send_batch_size: ${env:SIZE}\n    send_batch_max_size: ${MAX}");
    let loaded = load_env(&yaml, &[("SIZE", "100"), ("MAX", "200")]).unwrap();
    assert_eq!(batch(&loaded).send_batch_size, 100);
    assert_eq!(batch(&loaded).send_batch_max_size, 200);

    let yaml =
        with_exporter("  otlp:\n    endpoint: c:4317\n    tls:\n      insecure: ${env:FLAG}");
    let loaded = load_env(&yaml, &[("FLAG", "true")]).unwrap();
    let ExporterConfig::Otlp(otlp) = exporter(&loaded, "otlp") else {
        panic!()
    };
    assert!(otlp.tls.insecure);
}

#[test]
fn a_quoted_reference_stays_a_string() {
    let yaml = with_batch("    send_batch_size: \"${env:SIZE}\"");
    let errors = errors_env(&yaml, &[("SIZE", "100")]);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].path, "processors.batch.send_batch_size");
    assert_eq!(
        errors[0].message,
        "invalid type: string \"100\", expected a whole number of 0 or more"
    );
    assert_eq!(errors[0].line, Some(line_of(&yaml, "send_batch_size")));
}

#[test]
fn a_numeric_value_still_fits_a_string_setting_as_written() {
    let yaml = with_exporter(
        "  otlp:\n    endpoint: c:4317\n    headers:\n      tenant: ${env:TENANT}\n      literal: 42\n      \
         padded: 007",
    );
    let loaded = load_env(&yaml, &[("TENANT", "0042")]).unwrap();
    let ExporterConfig::Otlp(otlp) = exporter(&loaded, "otlp") else {
        panic!()
    };
    assert_eq!(otlp.headers["tenant"].expose(), "0042");
    assert_eq!(otlp.headers["literal"].expose(), "42");
    assert_eq!(otlp.headers["padded"].expose(), "007");
}

#[test]
fn an_undefined_variable_is_one_error_with_its_path_line_and_fix() {
    let yaml = with_exporter("  otlp:\n    endpoint: ${env:CENTRAL}");
    let errors = errors(&yaml);
    // Exactly one: the required endpoint dropped with the failed reference is not reported again.
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let e = &errors[0];
    assert_eq!(e.path, "exporters.otlp.endpoint");
    assert_eq!(e.line, Some(line_of(&yaml, "${env:CENTRAL}")));
    assert_eq!(e.column, Some(column_of(&yaml, "${env:CENTRAL}")));
    assert_eq!(
        e.message,
        "environment variable 'CENTRAL' is not set; set it, or give a default with ${env:CENTRAL:-default}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "test.yaml:{}:15: error: exporters.otlp.endpoint: environment variable 'CENTRAL' is not set; \
             set it, or give a default with ${{env:CENTRAL:-default}}",
            e.line.unwrap()
        )
    );
}

#[test]
fn malformed_references_and_other_providers_are_errors() {
    for (value, expected) in [
        ("${env:}", "names no variable"),
        ("x${env:HOST", "is not closed"),
        ("${file:/nonexistent/outpost/token}", "cannot read the file"),
        (
            "${yaml:a}",
            "provider 'yaml' is not supported (supported: env, file)",
        ),
        (
            "\"${http://config.local/x}\"",
            "provider 'http' is not supported (supported: env, file)",
        ),
    ] {
        let yaml = with_exporter(&format!(
            "  otlp:\n    endpoint: c:4317\n    headers:\n      h: {value}"
        ));
        let errors = errors_env(&yaml, &[("HOST", "h")]);
        assert_eq!(errors.len(), 1, "{value}: {errors:#?}");
        assert!(
            errors[0].message.contains(expected),
            "{value}: {}",
            errors[0]
        );
        assert_eq!(errors[0].path, "exporters.otlp.headers.h");
    }
}

#[test]
fn a_value_cannot_inject_structure() {
    let yaml = "queue:\n  directory: ${env:DIR}\n".to_owned()
        + "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: }\n"
        + "service: {pipelines: {traces: {receivers: [otlp], exporters: [debug]}}}\n";
    let injected = "/data\nextensions: {health_check: }";
    let loaded = load_env(&yaml, &[("DIR", injected)]).unwrap();
    assert_eq!(
        loaded
            .config
            .queue
            .directory
            .as_deref()
            .and_then(|d| d.to_str()),
        Some(injected)
    );
    assert!(loaded.config.extensions.is_empty());
}

// ----- decoding and positions ------------------------------------------------------------------------

#[test]
fn an_unknown_key_is_reported_at_the_key() {
    let yaml = with_exporter("  otlp:\n    endpoint: c:4317\n    compresion: zstd");
    let errors = errors(&yaml);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].path, "exporters.otlp.compresion");
    assert_eq!(errors[0].line, Some(line_of(&yaml, "compresion")));
    assert_eq!(errors[0].column, Some(5));
    assert!(errors[0]
        .message
        .starts_with("unknown field `compresion`, expected one of `endpoint`, `compression`"));
}

#[test]
fn every_error_in_a_file_is_reported() {
    let yaml = "\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:99999
processors:
  batch:
    send_batch_size: lots
  memory_limiter:
    limit_mib: 100
    check_interval: soon
exporters:
  debug:
    verbosity: loud
  otlpgrpc:
    endpoint: c:4317
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch, memory_limiter]
      exporters: [debug, otlpgrpc, nowhere]
  telemetry:
    logs:
      level: verbose
";
    let errors = errors(yaml);
    let found: Vec<(&str, usize)> = errors
        .iter()
        .map(|e| (e.path.as_str(), e.line.unwrap()))
        .collect();
    assert_eq!(
        found,
        vec![
            ("receivers.otlp.protocols.grpc.endpoint", 5),
            ("processors.batch.send_batch_size", 8),
            ("processors.memory_limiter.check_interval", 11),
            ("exporters.debug.verbosity", 14),
            ("exporters.otlpgrpc", 15),
            ("service.pipelines.traces.exporters[2]", 22),
            ("service.telemetry.logs.level", 25),
        ],
        "{errors:#?}"
    );
    assert_eq!(
        errors[4].message,
        "unknown exporter type 'otlpgrpc' (known: otlp, otlphttp, debug, file, prometheusremotewrite)"
    );
    assert_eq!(
        errors[3].message,
        "unknown variant `loud`, expected one of `basic`, `normal`, `detailed`"
    );
    assert_eq!(
        errors[1].message,
        "invalid type: string \"lots\", expected a whole number of 0 or more"
    );
}

#[test]
fn unknown_top_level_and_service_keys_list_the_allowed_ones() {
    let yaml = "recievers: {}\nservice:\n  pipeline: {}\n";
    let errors = errors(yaml);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_eq!(
        errors[0].message,
        "unknown top-level key 'recievers' (allowed: receivers, processors, exporters, connectors, \
         extensions, queue, service)"
    );
    assert_eq!((errors[0].line, errors[0].column), (Some(1), Some(1)));
    assert_eq!(
        errors[1].message,
        "unknown key 'pipeline' in service (allowed: extensions, pipelines, telemetry)"
    );
}

#[test]
fn pipeline_keys_and_ids_are_checked() {
    let yaml = "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: }\nservice:\n  pipelines:\n    \
                traces:\n      receivers: [otlp]\n      exporters: [debug]\n      processor: [batch]\n    \
                spans:\n      receivers: [otlp]\n    logs:\n      receivers: [otlp, \"ot lp\"]\n      \
                exporters: [debug]\n";
    let errors = errors(yaml);
    let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages,
        vec![
            "unknown key 'processor' in a pipeline (allowed: receivers, processors, exporters)",
            "'spans' is not a pipeline id (expected traces, metrics or logs, optionally followed by /name)",
            "not a component id: 'ot lp': the type may contain only letters, digits and '_'",
        ],
        "{errors:#?}"
    );
    assert_eq!(errors[2].path, "service.pipelines.logs.receivers[1]");
}

#[test]
fn yaml_syntax_errors_are_one_positioned_error() {
    let yaml = "receivers:\n  otlp:\n    protocols: [grpc\nexporters:\n";
    let diagnostics = load(yaml).unwrap_err();
    assert_eq!(diagnostics.0.len(), 1, "{diagnostics}");
    let e = &diagnostics.0[0];
    assert!(e.message.starts_with("invalid YAML: "), "{e}");
    assert!(e.line.is_some() && e.column.is_some());
}

#[test]
fn a_key_written_twice_is_an_error_at_the_second() {
    let yaml = "exporters:\n  debug:\n  debug:\n    verbosity: detailed\n";
    let errors = errors(yaml);
    assert_eq!(errors[0].line, Some(3));
    assert_eq!(
        errors[0].message,
        "key 'debug' is defined twice in this mapping (first on line 2); remove one"
    );
}

#[test]
fn an_empty_file_has_no_pipelines_and_a_list_is_not_a_config() {
    let errors = errors("");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].message.starts_with("no pipelines are defined"));
    let errors = self::errors("- a\n- b\n");
    assert_eq!(errors.len(), 1);
    assert!(errors[0]
        .message
        .starts_with("the configuration must be a mapping"));
}

// ----- defaults -----------------------------------------------------------------------------------------

#[test]
fn naming_a_protocol_enables_it_with_its_defaults() {
    let yaml = with_exporter("  debug:");
    let loaded = load(&yaml).unwrap();
    let ReceiverConfig::Otlp(otlp) = &loaded.config.receivers[0] else {
        panic!("an otlp receiver");
    };
    let grpc = otlp.protocols.grpc.as_ref().expect("grpc: enables gRPC");
    assert_eq!(grpc.endpoint, "127.0.0.1:4317".parse().unwrap());
    assert_eq!(grpc.max_recv_msg_size_mib, 4);
    assert!(
        otlp.protocols.http.is_none(),
        "http is not named, so it stays off"
    );
}

#[test]
fn a_component_with_no_body_has_its_defaults() {
    let loaded = load(&with_exporter("  debug:")).unwrap();
    assert_eq!(
        exporter(&loaded, "debug"),
        &ExporterConfig::Debug(Default::default())
    );
    let loaded = load(&with_batch("")).unwrap();
    assert_eq!(batch(&loaded), outpost_config::BatchConfig::default());
}

#[test]
fn an_empty_mapping_setting_means_an_empty_one() {
    // `protocols:` with nothing after it: no protocol named (and validation then asks for one).
    let yaml = "receivers:\n  otlp:\n    protocols:\nexporters: {debug: }\n\
                service: {pipelines: {traces: {receivers: [otlp], exporters: [debug]}}}\n";
    let errors = errors(yaml);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].path, "receivers.otlp.protocols");
    assert!(errors[0].message.starts_with("no protocol is enabled"));
}

#[test]
fn listen_addresses_accept_localhost() {
    let yaml = "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: localhost:4318\n\
                exporters: {debug: }\nservice: {pipelines: {logs: {receivers: [otlp], exporters: [debug]}}}\n";
    let loaded = load(yaml).unwrap();
    let ReceiverConfig::Otlp(otlp) = &loaded.config.receivers[0] else {
        panic!("an otlp receiver");
    };
    assert_eq!(
        otlp.protocols.http.as_ref().unwrap().endpoint,
        "127.0.0.1:4318".parse().unwrap()
    );
}

// ----- anchors ------------------------------------------------------------------------------------------

#[test]
fn anchors_aliases_and_merge_keys_share_settings() {
    let yaml = "\
exporters:
  otlp/a: &central
    endpoint: central:4317
    compression: zstd
    timeout: 30s
  otlp/b:
    <<: *central
    endpoint: backup:4317
receivers:
  otlp:
    protocols:
      grpc:
service:
  pipelines:
    traces: &pipeline
      receivers: [otlp]
      exporters: [otlp/a, otlp/b]
    logs: *pipeline
";
    let loaded = load(yaml).unwrap();
    let ExporterConfig::Otlp(a) = exporter(&loaded, "otlp/a") else {
        panic!()
    };
    let ExporterConfig::Otlp(b) = exporter(&loaded, "otlp/b") else {
        panic!()
    };
    assert_eq!(b.endpoint, "backup:4317");
    assert_eq!(b.compression, a.compression);
    assert_eq!(b.timeout, a.timeout);
    assert_eq!(b.timeout.get(), std::time::Duration::from_secs(30));
    assert_eq!(loaded.config.service.pipelines.len(), 2);
    assert_eq!(
        loaded.config.service.pipelines[0],
        loaded.config.service.pipelines[1]
    );
}

// ----- warnings and robustness ----------------------------------------------------------------------------

#[test]
fn warnings_do_not_fail_a_load() {
    let yaml = with_exporter("  debug:\n  file:\n    path: /tmp/x.jsonl");
    let loaded = load(&yaml).unwrap();
    assert_eq!(loaded.warnings.len(), 1, "{:#?}", loaded.warnings);
    assert_eq!(loaded.warnings[0].severity, Severity::Warning);
    assert_eq!(loaded.warnings[0].path, "exporters.file");
}

#[test]
fn garbage_never_panics_and_always_explains_itself() {
    let mut inputs: Vec<String> = [
        "",
        ":",
        "{",
        "}",
        "[",
        "- - -",
        "&a [*a]",
        "*nope",
        "a: &x b\nc: *x\n",
        "!!int x",
        "!!binary YQ==",
        "? [a, b]\n: c\n",
        "? {a: 1}\n: 2\n",
        "receivers: [1, 2]",
        "receivers: {otlp: [1]}",
        "service: {pipelines: [traces]}",
        "service: {pipelines: {traces: [otlp]}}",
        "service: {pipelines: {traces: {receivers: otlp}}}",
        "service: {extensions: {a: 1}}",
        "exporters: {otlp: {endpoint: {a: 1}}}",
        "processors: {attributes: {actions: [{key: a, action: insert, value: [1]}]}}",
        "queue: [1]",
        "%YAML 1.2\n---\na: 1\n...\n",
        "---\n---\n",
        "\u{feff}receivers: {}",
        "\t\t:\n",
        "a: \"\\u{d800}\"",
        "a: '",
        "a: |\n  x\n b",
        "<<: 1",
        "a: {<<: [1, 2]}",
        "service:\n  pipelines:\n    traces:\n      receivers: [${env:}]\n",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    inputs.push("[".repeat(10_000));
    inputs.push("a:\n".to_owned() + &" b:\n".repeat(500));
    inputs.push("k: ".to_owned() + &"${".repeat(1000));
    // Deterministic corruptions of a real config: truncations and byte swaps.
    let base = outpost_config::DEFAULT_CONFIG.as_bytes();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..200 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let mut bytes = base.to_vec();
        let at = (seed >> 33) as usize % bytes.len();
        let what = (seed >> 13) as u8;
        match seed % 3 {
            0 => bytes.truncate(at),
            1 => {
                let specials = b"{}[]:-&*!|>'\"#%@`, \n\t$";
                bytes[at] = specials[what as usize % specials.len()];
            }
            _ => {
                bytes.remove(at);
            }
        }
        inputs.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    for input in &inputs {
        if let Err(diagnostics) = load(input) {
            assert!(
                diagnostics.has_errors(),
                "an Err without an error for {input:?}"
            );
            for d in &diagnostics.0 {
                assert!(!d.message.is_empty(), "{input:?}");
            }
        }
    }
}

#[test]
fn a_failed_reference_in_place_of_a_section_is_reported_once() {
    for yaml in [
        "receivers: ${env:R}\nservice: {pipelines: {traces: {receivers: [otlp], exporters: [debug]}}}\n\
         exporters: {debug: }\n",
        "service: ${env:S}\n",
        "service:\n  pipelines: ${env:P}\n",
        "service:\n  extensions: ${env:E}\n  pipelines:\n    traces: ${env:T}\n",
        "service:\n  pipelines:\n    traces:\n      receivers: ${env:L}\n",
    ] {
        let errors = errors(yaml);
        assert!(
            !errors.is_empty() && errors.iter().all(|e| e.message.contains("is not set")),
            "{yaml}\n{errors:#?}"
        );
    }
}
