//! `outpost test` end to end in-process: real config and test files in a temp dir, the exit code and
//! what is printed.

use std::path::Path;

use super::{run, EXIT_FAILED, EXIT_PASSED, EXIT_UNUSABLE};

/// A trace pipeline that samples errors only, after an hour: a test must not wait for it. Logs are
/// counted by severity into a metrics pipeline.
const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:4317
processors:
  tail_sampling:
    decision_wait: 1h
    policies:
      - name: errors
        type: status_code
        status_code: {status_codes: [ERROR]}
connectors:
  count:
    logs:
      log.errors:
        conditions: ['severity_text == "ERROR"']
exporters:
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [tail_sampling]
      exporters: [debug]
    logs:
      receivers: [otlp]
      exporters: [count]
    metrics:
      receivers: [count]
      exporters: [debug]
"#;

const SPANS: &str = r#"
      otlp:
        resourceSpans:
          - scopeSpans:
              - spans:
                  - {traceId: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", spanId: "aaaaaaaaaaaaaaaa", name: failing, status: {code: 2}}
                  - {traceId: "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", spanId: "bbbbbbbbbbbbbbbb", name: fine}
"#;

fn run_in(dir: &Path, tests: &str) -> (u8, String, String) {
    let config = dir.join("config.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let file = dir.join("t.yaml");
    std::fs::write(&file, tests).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run(&config, &[file], &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn tail_sampling_decides_without_waiting_for_decision_wait() {
    let dir = tempfile::tempdir().unwrap();
    let tests = format!(
        "tests:\n  - name: errors only\n    input:\n      receiver: otlp\n{SPANS}    outputs:\n      - expect:\n          - {{name: failing, sampled: true}}\n          - {{name: fine, sampled: false}}\n          - {{count: 1}}\n"
    );
    let started = std::time::Instant::now();
    let (code, out, err) = run_in(dir.path(), &tests);
    assert_eq!(code, EXIT_PASSED, "{out}\n{err}");
    assert!(out.contains("1 tests, all passed"), "{out}");
    // Not a timing claim: only that the hour of decision_wait was not waited for.
    assert!(started.elapsed().as_secs() < 60);
}

#[test]
fn a_wrong_sampling_expectation_fails_naming_the_span() {
    let dir = tempfile::tempdir().unwrap();
    let tests = format!(
        "tests:\n  - name: expects too much\n    input:\n      pipeline: traces\n{SPANS}    outputs:\n      - expect:\n          - {{name: fine, sampled: true}}\n"
    );
    let (code, out, err) = run_in(dir.path(), &tests);
    assert_eq!(code, EXIT_FAILED, "{out}\n{err}");
    assert!(
        out.contains("span as it entered, at resourceSpans[0].scopeSpans[0].spans[1]"),
        "{out}"
    );
    assert!(
        out.contains("actual:   false (the span was dropped)"),
        "{out}"
    );
}

#[test]
fn count_connector_output_reaches_the_metrics_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let logs = r#"tests:
  - name: two error logs counted
    input:
      pipeline: logs
      otlp:
        resourceLogs:
          - scopeLogs:
              - logRecords:
                  - {severityText: ERROR, body: {stringValue: a}}
                  - {severityText: INFO, body: {stringValue: b}}
                  - {severityText: ERROR, body: {stringValue: c}}
    outputs:
      - pipeline: logs
        expect:
          - {count: 3}
          - {body: {matches: "^[abc]$"}}
      - pipeline: metrics
        expect:
          - {name: log.errors, value: VALUE}
"#;
    let (code, out, err) = run_in(dir.path(), &logs.replace("VALUE", "2"));
    assert_eq!(code, EXIT_PASSED, "{out}\n{err}");
    let (code, out, _) = run_in(dir.path(), &logs.replace("VALUE", "3"));
    assert_eq!(code, EXIT_FAILED, "{out}");
    assert!(out.contains("expected: 3"), "{out}");
    assert!(out.contains("actual:   2"), "{out}");
}

#[test]
fn bad_otlp_json_and_bad_regexes_are_reported_with_paths_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let tests = r#"tests:
  - name: broken
    input:
      pipeline: traces
      otlp:
        resourceSpans:
          - scopeSpans:
              - spans:
                  - {traceId: "not hex", spanId: "aaaaaaaaaaaaaaaa", name: x}
    outputs:
      - expect:
          - attributes: {a: {matches: "("}}
"#;
    let (code, out, err) = run_in(dir.path(), tests);
    assert_eq!(code, EXIT_UNUSABLE, "{out}\n{err}");
    assert!(
        err.contains("t.yaml:9:")
            && err.contains(
                ": error: tests[0].input.otlp.resourceSpans[0].scopeSpans[0].spans[0].traceId: not valid OTLP/JSON"
            ),
        "{err}"
    );
    assert!(
        err.contains("tests[0].outputs[0].expect[0].attributes.a.matches: not a regex"),
        "{err}"
    );
    assert!(out.is_empty(), "{out}");
}
