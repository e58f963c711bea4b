//! `outpost schema` against the loader: every example config validates against the JSON Schema (so the
//! schema refuses nothing the loader accepts), and the mistakes the loader refuses by shape (an unknown
//! key, a wrong type, an unknown component type) are refused by the schema too.

use std::path::{Path, PathBuf};

use outpost_config::document::Document;
use outpost_config::json_schema::schema;
use serde_json::Value;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn validator() -> jsonschema::Validator {
    jsonschema::draft202012::new(&schema()).expect("the schema is a valid draft 2020-12 schema")
}

/// The config as a schema validator in an editor sees it: YAML typed by the core schema. Environment
/// references (tls.yaml reads its directory and a header from the environment) stand for some text.
fn as_json(text: &str) -> Value {
    Document::parse(text, "<test>", &|name| Some(format!("/run/{name}")))
        .map_err(|d| d.to_string())
        .expect("YAML parses")
        .value()
        .clone()
}

fn errors(v: &jsonschema::Validator, text: &str) -> Vec<String> {
    v.iter_errors(&as_json(text))
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn every_example_config_validates_against_the_schema() {
    let v = validator();
    let mut seen = 0;
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        seen += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        let found = errors(&v, &text);
        assert!(
            found.is_empty(),
            "{}:\n{}",
            path.display(),
            found.join("\n")
        );
    }
    assert!(seen >= 3, "only {seen} examples found");
}

const GOOD: &str = "
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:4317
processors:
  batch/small:
    send_batch_size: 100
    timeout: 1s
exporters:
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch/small]
      exporters: [debug]
";

#[test]
fn a_minimal_config_validates_and_loads() {
    assert!(errors(&validator(), GOOD).is_empty());
    outpost_config::load_str_with_env(GOOD, "<test>", &|_| None).expect("loads");
}

/// Each edit of GOOD is refused by the loader; the schema must refuse it too, at the same place.
#[test]
fn mistakes_the_loader_refuses_are_refused_by_the_schema() {
    let v = validator();
    let cases = [
        // An unknown key inside a component.
        (
            "send_batch_size: 100",
            "send_batch_sise: 100",
            "/processors/batch~1small",
        ),
        // A wrong type.
        (
            "send_batch_size: 100",
            "send_batch_size: [100]",
            "/processors/batch~1small/send_batch_size",
        ),
        // An unknown component type.
        ("  batch/small:", "  bacth/small:", "/processors"),
        // An unknown top-level section.
        ("service:", "servcie:", ""),
        // An unknown key in a pipeline.
        (
            "      exporters: [debug]",
            "      exporter: [debug]",
            "/service/pipelines/traces",
        ),
        // A pipeline of no signal.
        ("    traces:", "    spans:", "/service/pipelines"),
    ];
    for (from, to, at) in cases {
        let text = GOOD.replacen(from, to, 1);
        assert_ne!(text, GOOD);
        assert!(
            outpost_config::load_str_with_env(&text, "<test>", &|_| None).is_err(),
            "the loader accepts {to:?}"
        );
        let found = errors(&v, &text);
        assert!(
            found.iter().any(|e| e.starts_with(&format!("{at}: "))),
            "{to:?}: no schema error at {at:?}; found: {found:#?}"
        );
    }
}

/// The loader's leniencies hold in the schema too: `key:` for an empty mapping, a number given to a
/// string setting.
#[test]
fn what_the_loader_accepts_leniently_the_schema_accepts() {
    let text = GOOD.replace(
        "  debug:\n",
        "  debug:\n  otlphttp:\n    endpoint: http://127.0.0.1:4318\n    headers: {x-tenant: 42}\n",
    );
    outpost_config::load_str_with_env(&text, "<test>", &|_| None).expect("loads");
    let found = errors(&validator(), &text);
    assert!(found.is_empty(), "{found:#?}");
}
