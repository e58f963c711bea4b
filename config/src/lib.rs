//! outpost's configuration, in the OpenTelemetry Collector's shape.
//!
//! [`load_file`] / [`load_str`] read YAML, substitute `${env:VAR}` references inside scalar values (so a
//! variable can never change the document's structure or shift its line numbers), deserialize every
//! component on its own against its typed schema ([`schema`]), and validate the references between
//! pipelines and components. Every problem found is reported, each with its YAML path and line:column,
//! instead of stopping at the first: a config repository's CI shows the whole list at once.

pub mod condition;
mod decode;
pub mod diagnostics;
pub mod document;
mod env;
pub mod id;
pub mod json_schema;
pub mod load;
pub mod prometheus;
pub mod redaction;
mod report;
pub mod schema;
mod source;
pub mod tls;
pub mod transform;
pub mod units;
mod validate;
mod yaml;

use std::fmt;
use std::str::FromStr;

pub use diagnostics::{Diagnostic, Diagnostics, Severity};
pub use id::{ComponentId, PipelineId};
pub use load::{data_dir_hint, load_file, load_str, load_str_with_env, Loaded, DEFAULT_CONFIG};
pub use schema::*;
pub use units::{ByteSize, HumanDuration};

/// The three OTLP signals. Every pipeline carries exactly one.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    pub const fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Signal {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "traces" => Ok(Signal::Traces),
            "metrics" => Ok(Signal::Metrics),
            "logs" => Ok(Signal::Logs),
            _ => Err(()),
        }
    }
}

/// Reads a YAML data file (not a config: no `${env:…}` substitution, no schema) into JSON, every
/// scalar as the text written (`null`, `~` and empty values as JSON null). For files outpost reads at
/// run time in another program's format, such as Prometheus `file_sd` target lists. The error names the
/// line and column.
pub fn yaml_data_to_json(text: &str) -> Result<serde_json::Value, String> {
    fn convert(node: &yaml::Node) -> serde_json::Value {
        match &node.kind {
            yaml::Kind::Scalar(s) => {
                let null = s.style == yaml::Style::Plain
                    && matches!(s.text.as_str(), "" | "~" | "null" | "Null" | "NULL");
                if null {
                    serde_json::Value::Null
                } else {
                    serde_json::Value::String(s.text.clone())
                }
            }
            yaml::Kind::Sequence(items) => {
                serde_json::Value::Array(items.iter().map(convert).collect())
            }
            yaml::Kind::Mapping(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), convert(&e.value)))
                    .collect(),
            ),
        }
    }
    let parsed = yaml::parse(text);
    if let Some(e) = parsed.errors.first() {
        return Err(format!(
            "line {}:{}: {}",
            e.pos.line, e.pos.column, e.message
        ));
    }
    Ok(parsed
        .root
        .as_ref()
        .map_or(serde_json::Value::Null, convert))
}
