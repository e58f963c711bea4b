//! The test file format, and its compilation into checks.
//!
//! A test file is YAML read like a config (positions, `${env:…}`, core-schema typing). Its shape is
//! checked by serde (unknown keys refused); what serde cannot check (regexes, OTLP JSON, which pipeline
//! or receiver is meant) is checked while compiling, and every problem found is reported with its path
//! and line, so a broken test file fails with exit code 2 like a broken config, never as a failed test.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use outpost_config::document::Document;
use outpost_config::{ComponentId, Config, Diagnostic, PipelineId, Signal};
use outpost_pipelines::{Logs, Metrics, Traces};
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TestFile {
    pub tests: Vec<TestCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TestCase {
    pub name: String,
    pub input: Input,
    #[serde(default)]
    pub outputs: Vec<Output>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Input {
    /// The pipeline fed, e.g. `traces` or `traces/in`.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Or a receiver: every pipeline of the input's signal that lists it is fed.
    #[serde(default)]
    pub receiver: Option<String>,
    /// An OTLP/JSON export request (`resourceSpans`, `resourceMetrics` or `resourceLogs`).
    #[serde(default)]
    pub otlp: Option<Value>,
    /// Or a file holding one, relative to the test file.
    #[serde(default)]
    pub otlp_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Output {
    /// Whose output: a pipeline id; by default the pipeline fed (when exactly one was).
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Checks on the items that left the pipeline's processors.
    #[serde(default)]
    pub expect: Vec<Expect>,
}

/// One check: which items (`name`, `where`), and what must hold for them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Expect {
    /// Span name or metric name; log records have none.
    #[serde(default)]
    pub name: Option<String>,
    /// Item (or data point) attributes that select the items checked, by exact value.
    #[serde(default, rename = "where")]
    pub where_: IndexMap<String, Value>,
    #[serde(default)]
    pub present: Option<bool>,
    #[serde(default)]
    pub count: Option<usize>,
    #[serde(default)]
    pub attributes: IndexMap<String, Value>,
    #[serde(default)]
    pub resource: IndexMap<String, Value>,
    #[serde(default)]
    pub body: Option<Value>,
    #[serde(default)]
    pub sampled: Option<bool>,
    #[serde(default)]
    pub value: Option<f64>,
}

/// A decoded OTLP export request of any signal.
#[derive(Debug, Clone)]
pub(super) enum Data {
    Traces(Traces),
    Metrics(Metrics),
    Logs(Logs),
}

impl Data {
    pub fn signal(&self) -> Signal {
        match self {
            Data::Traces(_) => Signal::Traces,
            Data::Metrics(_) => Signal::Metrics,
            Data::Logs(_) => Signal::Logs,
        }
    }
}

/// A test ready to run.
pub(super) struct Compiled {
    pub name: String,
    pub feeds: Vec<PipelineId>,
    pub data: Data,
    pub outputs: Vec<(PipelineId, Vec<Check>)>,
}

/// A compiled [`Expect`].
pub(super) struct Check {
    /// How the check is written in the test file, to head its failures.
    pub label: String,
    pub name: Option<String>,
    pub where_: Vec<(String, String)>,
    pub present: Option<bool>,
    pub count: Option<usize>,
    pub attributes: Vec<(String, Cond)>,
    pub resource: Vec<(String, Cond)>,
    pub body: Option<Cond>,
    pub sampled: Option<bool>,
    pub value: Option<f64>,
}

/// A condition on one value.
pub(super) enum Cond {
    Equals(String),
    Matches(Regex),
    Absent,
    Present,
}

impl std::fmt::Display for Cond {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cond::Equals(v) => write!(f, "equals {v:?}"),
            Cond::Matches(r) => write!(f, "matches /{}/", r.as_str()),
            Cond::Absent => f.write_str("absent"),
            Cond::Present => f.write_str("present"),
        }
    }
}

/// A scalar written in a test, as the text an attribute value is compared with.
pub(super) fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Compiles every test of `file` against `config`; every problem is collected.
pub(super) fn compile(
    doc: &Document,
    file: TestFile,
    config: &Config,
    base: &Path,
) -> Result<Vec<Compiled>, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    if file.tests.is_empty() {
        errors.push(doc.error("tests", "no tests: list at least one under `tests:`"));
    }
    for (i, case) in file.tests.into_iter().enumerate() {
        let at = format!("tests[{i}]");
        if let Some(c) = compile_case(doc, &at, case, config, base, &mut errors) {
            out.push(c);
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn compile_case(
    doc: &Document,
    at: &str,
    case: TestCase,
    config: &Config,
    base: &Path,
    errors: &mut Vec<Diagnostic>,
) -> Option<Compiled> {
    let before = errors.len();
    let input_at = format!("{at}.input");
    let data = input_data(doc, &input_at, &case.input, base, errors);

    let mut feeds = Vec::new();
    match (&case.input.pipeline, &case.input.receiver) {
        (Some(p), None) => match p.parse::<PipelineId>() {
            Ok(pid) if config.service.pipelines.contains_key(&pid) => {
                if let Some(d) = &data {
                    if d.signal() != pid.signal {
                        errors.push(doc.error(
                            &format!("{input_at}.pipeline"),
                            format!(
                                "pipeline '{pid}' carries {}, but the input holds {}",
                                pid.signal,
                                d.signal()
                            ),
                        ));
                    }
                }
                feeds.push(pid);
            }
            Ok(pid) => errors.push(doc.error(
                &format!("{input_at}.pipeline"),
                format!(
                    "no pipeline '{pid}' in the config (it has: {})",
                    pipeline_list(config)
                ),
            )),
            Err(e) => errors.push(doc.error(
                &format!("{input_at}.pipeline"),
                format!("not a pipeline id: {e}"),
            )),
        },
        (None, Some(r)) => match r.parse::<ComponentId>() {
            Ok(rid) if config.receivers.contains_key(&rid) => {
                if let Some(d) = &data {
                    feeds.extend(
                        config
                            .service
                            .pipelines
                            .iter()
                            .filter(|(pid, p)| {
                                pid.signal == d.signal() && p.receivers.contains(&rid)
                            })
                            .map(|(pid, _)| pid.clone()),
                    );
                    if feeds.is_empty() {
                        errors.push(doc.error(
                            &format!("{input_at}.receiver"),
                            format!("no {} pipeline lists receiver '{rid}'", d.signal()),
                        ));
                    }
                }
            }
            Ok(rid) => errors.push(doc.error(
                &format!("{input_at}.receiver"),
                format!("no receiver '{rid}' in the config"),
            )),
            Err(e) => errors.push(doc.error(
                &format!("{input_at}.receiver"),
                format!("not a component id: {e}"),
            )),
        },
        _ => errors.push(doc.error(
            &input_at,
            "give exactly one of `pipeline` (e.g. traces/in) or `receiver` (e.g. otlp)",
        )),
    }

    let mut outputs = Vec::new();
    if case.outputs.is_empty() {
        errors.push(doc.error(
            at,
            "no `outputs`: a test needs at least one expectation on what comes out",
        ));
    }
    for (j, o) in case.outputs.into_iter().enumerate() {
        let o_at = format!("{at}.outputs[{j}]");
        let pid = match &o.pipeline {
            Some(p) => match p.parse::<PipelineId>() {
                Ok(pid) if config.service.pipelines.contains_key(&pid) => Some(pid),
                Ok(pid) => {
                    errors.push(doc.error(
                        &format!("{o_at}.pipeline"),
                        format!(
                            "no pipeline '{pid}' in the config (it has: {})",
                            pipeline_list(config)
                        ),
                    ));
                    None
                }
                Err(e) => {
                    errors.push(doc.error(
                        &format!("{o_at}.pipeline"),
                        format!("not a pipeline id: {e}"),
                    ));
                    None
                }
            },
            None if feeds.len() == 1 => Some(feeds[0].clone()),
            None if feeds.len() > 1 => {
                errors.push(doc.error(
                    &o_at,
                    "the input feeds several pipelines: name the one checked with `pipeline`",
                ));
                None
            }
            None => None,
        };
        let mut checks = Vec::new();
        if o.expect.is_empty() {
            errors.push(doc.error(&o_at, "no `expect` checks"));
        }
        for (k, e) in o.expect.into_iter().enumerate() {
            let e_at = format!("{o_at}.expect[{k}]");
            if let Some(c) = compile_check(doc, &e_at, e, pid.as_ref().map(|p| p.signal), errors) {
                checks.push(c);
            }
        }
        if let Some(pid) = pid {
            outputs.push((pid, checks));
        }
    }
    if errors.len() > before {
        return None;
    }
    Some(Compiled {
        name: case.name,
        feeds,
        data: data?,
        outputs,
    })
}

fn pipeline_list(config: &Config) -> String {
    config
        .service
        .pipelines
        .keys()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn input_data(
    doc: &Document,
    at: &str,
    input: &Input,
    base: &Path,
    errors: &mut Vec<Diagnostic>,
) -> Option<Data> {
    let (value, path) = match (&input.otlp, &input.otlp_file) {
        (Some(v), None) => (v.clone(), format!("{at}.otlp")),
        (None, Some(f)) => {
            let file = base.join(f);
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(doc.error(
                        &format!("{at}.otlp_file"),
                        format!("cannot read '{}': {e}", file.display()),
                    ));
                    return None;
                }
            };
            match serde_json::from_str::<Value>(&text) {
                Ok(v) => (v, format!("{at}.otlp_file")),
                Err(e) => {
                    errors.push(doc.error(
                        &format!("{at}.otlp_file"),
                        format!("'{}' is not JSON: {e}", file.display()),
                    ));
                    return None;
                }
            }
        }
        _ => {
            errors.push(doc.error(
                at,
                "give exactly one of `otlp` (an OTLP/JSON export request) or `otlp_file`",
            ));
            return None;
        }
    };
    let keys: Vec<&str> = ["resourceSpans", "resourceMetrics", "resourceLogs"]
        .into_iter()
        .filter(|k| value.get(k).is_some())
        .collect();
    let decoded = match keys.as_slice() {
        ["resourceSpans"] => decode::<Traces>(&value).map(Data::Traces),
        ["resourceMetrics"] => decode::<Metrics>(&value).map(Data::Metrics),
        ["resourceLogs"] => decode::<Logs>(&value).map(Data::Logs),
        _ => Err((
            String::new(),
            "expected an OTLP/JSON export request with exactly one of resourceSpans, \
             resourceMetrics or resourceLogs"
                .to_string(),
        )),
    };
    match decoded {
        Ok(d) => Some(d),
        Err((inner, message)) => {
            let full = if inner.is_empty() {
                path
            } else {
                format!("{path}.{inner}")
            };
            errors.push(doc.error(&full, format!("not valid OTLP/JSON: {message}")));
            None
        }
    }
}

/// OTLP/JSON → the prost type; the error carries the path inside the request.
fn decode<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        (path, e.into_inner().to_string())
    })
}

fn compile_check(
    doc: &Document,
    at: &str,
    e: Expect,
    signal: Option<Signal>,
    errors: &mut Vec<Diagnostic>,
) -> Option<Check> {
    let before = errors.len();
    let mut label = Vec::new();
    if let Some(n) = &e.name {
        label.push(format!("name {n:?}"));
    }
    let mut where_ = Vec::new();
    for (k, v) in &e.where_ {
        match scalar_text(v) {
            Some(t) => {
                label.push(format!("{k}={t:?}"));
                where_.push((k.clone(), t));
            }
            None => errors.push(doc.error(
                &format!("{at}.where.{k}"),
                "expected a value (string, number or bool) to select items by",
            )),
        }
    }
    let attributes = conds(doc, &format!("{at}.attributes"), &e.attributes, errors);
    let resource = conds(doc, &format!("{at}.resource"), &e.resource, errors);
    let body = e
        .body
        .as_ref()
        .and_then(|b| cond(doc, &format!("{at}.body"), b, errors));
    if e.sampled.is_some() && signal.is_some_and(|s| s != Signal::Traces) {
        errors.push(doc.error(
            &format!("{at}.sampled"),
            "`sampled` applies to spans; this output is not a traces pipeline",
        ));
    }
    if e.value.is_some() && signal.is_some_and(|s| s != Signal::Metrics) {
        errors.push(doc.error(
            &format!("{at}.value"),
            "`value` applies to metric data points; this output is not a metrics pipeline",
        ));
    }
    if e.body.is_some() && signal.is_some_and(|s| s != Signal::Logs) {
        errors.push(doc.error(
            &format!("{at}.body"),
            "`body` applies to log records; this output is not a logs pipeline",
        ));
    }
    if e.present == Some(false) && e.count.is_some_and(|c| c > 0) {
        errors.push(doc.error(
            &format!("{at}.count"),
            "`present: false` and a count above 0 contradict each other",
        ));
    }
    if errors.len() > before {
        return None;
    }
    Some(Check {
        label: if label.is_empty() {
            "all items".to_string()
        } else {
            label.join(", ")
        },
        name: e.name,
        where_,
        present: e.present,
        count: e.count,
        attributes,
        resource,
        body,
        sampled: e.sampled,
        value: e.value,
    })
}

fn conds(
    doc: &Document,
    at: &str,
    map: &IndexMap<String, Value>,
    errors: &mut Vec<Diagnostic>,
) -> Vec<(String, Cond)> {
    map.iter()
        .filter_map(|(k, v)| cond(doc, &format!("{at}.{k}"), v, errors).map(|c| (k.clone(), c)))
        .collect()
}

/// `value` (shorthand for equals), `{equals: v}`, `{matches: re}`, `{absent: true}`, `{present: true}`.
fn cond(doc: &Document, at: &str, v: &Value, errors: &mut Vec<Diagnostic>) -> Option<Cond> {
    if let Some(t) = scalar_text(v) {
        return Some(Cond::Equals(t));
    }
    let bad = |errors: &mut Vec<Diagnostic>| {
        errors.push(doc.error(
            at,
            "expected a value, or one of {equals: VALUE}, {matches: REGEX}, {absent: true}, \
             {present: true}",
        ));
        None
    };
    let Value::Object(m) = v else {
        return bad(errors);
    };
    if m.len() != 1 {
        return bad(errors);
    }
    let (op, arg) = m.iter().next().expect("one entry");
    match (op.as_str(), arg) {
        ("equals", a) => match scalar_text(a) {
            Some(t) => Some(Cond::Equals(t)),
            None => bad(errors),
        },
        ("matches", Value::String(re)) => match Regex::new(re) {
            Ok(r) => Some(Cond::Matches(r)),
            Err(e) => {
                errors.push(doc.error(&format!("{at}.matches"), format!("not a regex: {e}")));
                None
            }
        },
        ("absent", Value::Bool(true)) | ("present", Value::Bool(false)) => Some(Cond::Absent),
        ("present", Value::Bool(true)) | ("absent", Value::Bool(false)) => Some(Cond::Present),
        _ => bad(errors),
    }
}
