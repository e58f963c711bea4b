//! `outpost test` as a config repository's CI runs it: every example test file passes against its
//! example config; a config with its email rule removed fails with exit 1 and a diff naming the attribute
//! and showing the unredacted value; a broken test file or config exits 2 with positioned errors.
//! Also `outpost schema` prints a JSON Schema.

use std::path::{Path, PathBuf};
use std::time::Duration;

use outpost_integration::{outpost_command, run_with_timeout, workspace_root, Finished};

fn examples() -> PathBuf {
    workspace_root().join("config").join("examples")
}

fn outpost(args: &[&str]) -> Finished {
    run_with_timeout(outpost_command().args(args), Duration::from_secs(60))
}

fn test_config(config: &Path, tests: &[&Path]) -> Finished {
    let mut args = vec!["test", "--config", config.to_str().unwrap()];
    args.extend(tests.iter().map(|t| t.to_str().unwrap()));
    outpost(&args)
}

#[test]
fn every_example_test_file_passes_against_its_config() {
    let mut ran = 0;
    for entry in std::fs::read_dir(examples().join("tests")).unwrap() {
        let tests = entry.unwrap().path();
        if tests.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let config = examples().join(tests.file_name().unwrap());
        assert!(
            config.exists(),
            "{} has no config {} to test",
            tests.display(),
            config.display()
        );
        // Named explicitly, and found by default (tests/NAME.yaml beside NAME.yaml).
        for out in [test_config(&config, &[&tests]), test_config(&config, &[])] {
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                tests.display(),
                out.stdout,
                out.stderr
            );
            assert!(
                out.stdout.contains("tests, all passed"),
                "summary line:\n{}",
                out.stdout
            );
            assert!(!out.stdout.contains("FAILED"), "{}", out.stdout);
        }
        ran += 1;
    }
    assert!(ran >= 2, "only {ran} example test files found");
}

/// The redaction example with the email rule switched off, as a careless edit might do.
fn without_email_rule(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(examples().join("redaction.yaml")).unwrap();
    let edited = text.replace(
        "      ipv4: {enabled: false}\n",
        "      ipv4: {enabled: false}\n      email: {enabled: false}\n",
    );
    assert_ne!(
        edited, text,
        "the example's rules block moved; update this test"
    );
    let path = dir.join("redaction.yaml");
    std::fs::write(&path, edited).unwrap();
    path
}

#[test]
fn removing_the_email_rule_fails_the_test_with_a_diff() {
    let dir = tempfile::tempdir().unwrap();
    let config = without_email_rule(dir.path());
    // The config itself is still valid: only the test catches the regression.
    let valid = outpost(&["validate", "--config", config.to_str().unwrap()]);
    assert_eq!(valid.status.code(), Some(0), "{}", valid.stderr);

    let tests = examples().join("tests").join("redaction.yaml");
    let out = test_config(&config, &[&tests]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit code\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.stdout,
        out.stderr
    );
    let s = &out.stdout;
    assert!(
        s.contains("FAILED  an email address in a span attribute is masked"),
        "{s}"
    );
    // The diff names the item and the attribute, and shows expected against actual.
    let at = s
        .find("span at resourceSpans[0].scopeSpans[0].spans[0]")
        .unwrap_or_else(|| panic!("no item path in:\n{s}"));
    let rest = &s[at..];
    let attr = rest
        .find("attribute \"user.email\"")
        .unwrap_or_else(|| panic!("attribute not named:\n{s}"));
    let diff = &rest[attr..];
    let expected = diff
        .find("expected: equals \"****\"")
        .expect("expected line");
    let actual = diff
        .find("actual:   \"alice@example.com\"")
        .unwrap_or_else(|| panic!("unredacted value not shown:\n{s}"));
    assert!(expected < actual, "{s}");
    // The log test also expects an email masked, so it fails too; the card test still passes.
    assert!(
        s.contains("ok      a card number keeps its last four digits"),
        "{s}"
    );
    assert!(s.contains("3 tests, 2 failed (1 passed)"), "{s}");
}

#[test]
fn a_broken_test_file_exits_2_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let tests = dir.path().join("broken.yaml");
    std::fs::write(
        &tests,
        "tests:\n  - name: typo\n    input:\n      pipeline: traces/nope\n      otlp: {resourceSpans: []}\n    outputs:\n      - expect:\n          - count: 0\n            atributes: {a: b}\n",
    )
    .unwrap();
    let out = test_config(&examples().join("redaction.yaml"), &[&tests]);
    assert_eq!(out.status.code(), Some(2), "{}\n{}", out.stdout, out.stderr);
    let file = tests.display().to_string();
    assert!(
        out.stderr
            .contains(&format!("{file}:9:13: error: tests[0].outputs[0].expect[0].atributes: unknown field `atributes`")),
        "{}",
        out.stderr
    );

    // Shape right, references wrong: the pipeline is named with its line.
    std::fs::write(
        &tests,
        "tests:\n  - name: wrong pipeline\n    input:\n      pipeline: traces/nope\n      otlp: {resourceSpans: []}\n    outputs:\n      - expect:\n          - count: 0\n",
    )
    .unwrap();
    let out = test_config(&examples().join("redaction.yaml"), &[&tests]);
    assert_eq!(out.status.code(), Some(2), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "{file}:4:17: error: tests[0].input.pipeline: no pipeline 'traces/nope'"
        )),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("no test was run"), "{}", out.stderr);
}

#[test]
fn an_invalid_config_exits_2_with_its_errors() {
    let config = examples().join("invalid").join("three-mistakes.yaml");
    let tests = examples().join("tests").join("redaction.yaml");
    let out = test_config(&config, &[&tests]);
    assert_eq!(out.status.code(), Some(2), "{}\n{}", out.stdout, out.stderr);
    let errors = out
        .stderr
        .lines()
        .filter(|l| l.contains(": error: "))
        .count();
    assert_eq!(errors, 3, "{}", out.stderr);
}

#[test]
fn schema_prints_a_draft_2020_12_json_schema() {
    let out = outpost(&["schema"]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let schema: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON on stdout");
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    for key in [
        "receivers",
        "processors",
        "exporters",
        "connectors",
        "service",
        "queue",
    ] {
        assert!(schema["properties"][key].is_object(), "no {key}");
    }
}
