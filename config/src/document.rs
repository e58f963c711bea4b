//! YAML files that are not the config but are read the same way: `outpost test` files, and configs
//! checked against the JSON Schema.
//!
//! A [`Document`] goes through the config's own stages (the YAML parser with positions, `${env:…}`
//! substitution, YAML 1.2 core-schema typing), so a test file's problems are reported like a config's:
//! file, YAML path, line and column, every scalar typed the way the config loader types it.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::diagnostics::{Diagnostic, Diagnostics, Severity};
use crate::report::Report;
use crate::source::SourceMap;

/// A parsed YAML document: its value as JSON (scalars typed as the config loader types them) and where
/// each of its paths is written.
pub struct Document {
    origin: String,
    value: Value,
    map: SourceMap,
}

impl Document {
    /// Reads the file at `path`; environment references are substituted from the process environment.
    pub fn read(path: &std::path::Path) -> Result<Self, Diagnostics> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostics(vec![Diagnostic {
                severity: Severity::Error,
                origin: origin.clone(),
                path: String::new(),
                line: None,
                column: None,
                message: format!("cannot read the file: {e}"),
            }])
        })?;
        Self::parse(&text, &origin, &|name| std::env::var(name).ok())
    }

    /// Parses `text`; `origin` names it in diagnostics; `env` answers `${env:…}` references.
    pub fn parse(
        text: &str,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, Diagnostics> {
        let parsed = crate::yaml::parse(text);
        let mut errors: Vec<Diagnostic> = parsed
            .errors
            .iter()
            .map(|e| Diagnostic {
                severity: Severity::Error,
                origin: origin.to_owned(),
                path: String::new(),
                line: Some(e.pos.line),
                column: Some(e.pos.column),
                message: e.message.clone(),
            })
            .collect();
        if !errors.is_empty() {
            return Err(Diagnostics(errors));
        }
        let mut root = parsed.root;
        let (map, substitution) = match root.as_mut() {
            Some(root) => crate::source::prepare(root, env),
            None => Default::default(),
        };
        for e in substitution {
            errors.push(Diagnostic {
                severity: Severity::Error,
                origin: origin.to_owned(),
                path: e.path,
                line: Some(e.pos.line),
                column: Some(e.pos.column),
                message: e.message,
            });
        }
        if !errors.is_empty() {
            return Err(Diagnostics(errors));
        }
        let value = root.as_ref().map_or(Value::Null, crate::source::to_json);
        Ok(Self {
            origin: origin.to_owned(),
            value,
            map,
        })
    }

    /// The document as JSON.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The document deserialized as `T`; the first error inside it is reported with its path and
    /// position, as a config component's would be.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, Diagnostics> {
        let mut report = Report::new(&self.origin, &self.map);
        let decoded = crate::decode::typed::typed(&mut report, "", self.value.clone());
        let found = report.finish();
        match decoded {
            Some(v) if found.iter().all(|d| d.severity != Severity::Error) => Ok(v),
            _ => Err(Diagnostics(found)),
        }
    }

    /// An error about the value at `path` (dotted keys, `[i]` for list items), positioned in the file.
    pub fn error(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        let pos = self.map.value_pos(path);
        Diagnostic {
            severity: Severity::Error,
            origin: self.origin.clone(),
            path: path.to_owned(),
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
            message: message.into(),
        }
    }

    /// The file (or other origin) this document came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}
