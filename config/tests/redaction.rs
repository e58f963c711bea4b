//! Load-time checks of the `redaction` and `transform` processors: each mistake is reported at its YAML
//! path and line, and a nearby valid config loads.

use outpost_config::{load_str_with_env, Diagnostic, Loaded, ProcessorConfig};

fn load_env(
    yaml: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, outpost_config::Diagnostics> {
    load_str_with_env(yaml, "test.yaml", env)
}

fn load(yaml: &str) -> Result<Loaded, outpost_config::Diagnostics> {
    load_env(yaml, &|_| None)
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

/// A logs pipeline `otlp → <processor> → debug` with `body` as the processor's settings.
fn with(kind: &str, body: &str) -> String {
    format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\nprocessors:\n  {kind}:\n{body}exporters:\n  debug:\n\
         service:\n  pipelines:\n    logs:\n      receivers: [otlp]\n      processors: [{kind}]\n      \
         exporters: [debug]\n"
    )
}

#[test]
fn defaults_load_with_the_default_packs() {
    let loaded = load(&with("redaction", "")).unwrap();
    let Some(ProcessorConfig::Redaction(r)) = loaded.config.processors.values().next() else {
        panic!("not a redaction processor")
    };
    assert_eq!(r.packs, ["pii-core", "secrets"]);
    assert!(!r.allowlist_only());
}

#[test]
fn bad_patterns_unknown_packs_and_rules_are_reported_where_written() {
    let yaml = with(
        "redaction",
        "    packs: [pii-core, pii-extra]\n    blocked_values: ['ok', '(unclosed']\n    rules:\n      \
         emial: {action: hash}\n",
    );
    let errs = errors(&yaml);
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "processors.redaction.packs[1]",
            "processors.redaction.blocked_values[1]",
        ],
        "{errs:#?}"
    );
    assert!(
        errs[0]
            .message
            .contains("'pii-extra' is not a shipped pack"),
        "{}",
        errs[0].message
    );
    assert_eq!(errs[1].line, line_of(&yaml, "(unclosed"));
    assert!(
        errs[1].message.contains("does not compile"),
        "{}",
        errs[1].message
    );

    // With the packs readable, an override naming no rule is found too.
    let yaml = with("redaction", "    rules:\n      emial: {action: mask}\n");
    let errs = errors(&yaml);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].path, "processors.redaction.rules.emial");
    assert_eq!(errs[0].line, line_of(&yaml, "emial"));
    assert!(errs[0].message.contains("no rule 'emial'") && errs[0].message.contains("email"));
}

#[test]
fn hashing_needs_a_readable_key_from_env_or_file_never_inline() {
    let yaml = with("redaction", "    hash_function: hmac-sha256\n");
    let e = &errors(&yaml)[0];
    assert_eq!(e.path, "processors.redaction");
    assert!(e.message.contains("hash_key_env"), "{}", e.message);

    let yaml = with(
        "redaction",
        "    hash_function: hmac-sha256\n    hash_key_env: EDGE_KEY\n",
    );
    let e = &errors(&yaml)[0];
    assert_eq!(e.path, "processors.redaction.hash_key_env");
    assert!(e.message.contains("'EDGE_KEY' is not set"), "{}", e.message);
    // The key is looked up in the process environment (it must never sit in the file).
    std::env::set_var("OUTPOST_TEST_REDACTION_KEY", "0123456789abcdef0123");
    let yaml = with(
        "redaction",
        "    hash_function: hmac-sha256\n    hash_key_env: OUTPOST_TEST_REDACTION_KEY\n",
    );
    load(&yaml).unwrap();

    let yaml = with(
        "redaction",
        "    hash_key_file: /nonexistent/outpost.key\n    rules:\n      email: {action: hash}\n",
    );
    let e = &errors(&yaml)[0];
    assert_eq!(e.path, "processors.redaction.hash_key_file");
    assert!(e.message.contains("cannot read"), "{}", e.message);

    let yaml = with("redaction", "    hash_key: s3cr3t\n");
    let e = &errors(&yaml)[0];
    assert_eq!(e.path, "processors.redaction.hash_key");
    assert!(e.message.contains("unknown field"), "{}", e.message);

    let yaml = with("redaction", "    hash_function: md5\n");
    let e = &errors(&yaml)[0];
    assert!(e.message.contains("unkeyed"), "{}", e.message);
}

#[test]
fn a_pack_file_is_read_and_its_mistakes_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("shop.yaml");
    std::fs::write(
        &good,
        "pack: shop\nrules:\n  - id: loyalty_card\n    description: a loyalty card\n    pattern: 'LC-[0-9]{10}'\n    prefilter: {any_of: ['LC-']}\n",
    )
    .unwrap();
    let yaml = with("redaction", &format!("    packs: [pii-core, '{}']\n    rules:\n      loyalty_card: {{action: drop_attribute}}\n", good.display()));
    load(&yaml).unwrap();

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "pack: bad\nrules:\n  - id: x\n    description: d\n    pattern: '[a-'\n",
    )
    .unwrap();
    let yaml = with("redaction", &format!("    packs: ['{}']\n", bad.display()));
    let e = &errors(&yaml)[0];
    assert_eq!(e.path, "processors.redaction.packs[0]");
    assert!(
        e.message.contains(&format!("{}:5:", bad.display())),
        "{}",
        e.message
    );
}

#[test]
fn a_vrl_error_points_at_the_program_line() {
    let yaml = with(
        "transform",
        "    source: |\n      .a = 1\n      .b = upcase(.a, 2, 3)\n",
    );
    let errs = errors(&yaml);
    assert!(!errs.is_empty());
    let e = &errs[0];
    assert_eq!(e.path, "processors.transform.source");
    assert_eq!(e.line, line_of(&yaml, "upcase"), "{e}");
    assert!(e.message.contains("line 2"), "{}", e.message);

    load(&with("transform", "    source: '.attributes.n = 1'\n")).unwrap();
    let e = &errors(&with("transform", "    drop_on_error: true\n"))[0];
    assert!(e.message.contains("no program"), "{}", e.message);
}

#[test]
fn transform_is_refused_in_a_metrics_pipeline() {
    let yaml = "receivers:\n  otlp:\n    protocols:\n      grpc:\nprocessors:\n  transform:\n    source: '.a = 1'\n\
                exporters:\n  debug:\nservice:\n  pipelines:\n    metrics:\n      receivers: [otlp]\n      \
                processors: [transform]\n      exporters: [debug]\n";
    let e = &errors(yaml)[0];
    assert_eq!(e.path, "service.pipelines.metrics.processors[0]");
    assert!(
        e.message.contains("does not process metrics"),
        "{}",
        e.message
    );
}
