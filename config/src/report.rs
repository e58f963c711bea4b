//! The collector of diagnostics shared by decoding and validation: callers name a YAML path, and the
//! position comes from the [`SourceMap`], so every finding is positioned the same way.

use crate::diagnostics::{Diagnostic, Severity};
use crate::source::SourceMap;
use crate::yaml::Pos;

pub(crate) struct Report<'a> {
    origin: &'a str,
    pub map: &'a SourceMap,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Report<'a> {
    pub fn new(origin: &'a str, map: &'a SourceMap) -> Self {
        Self {
            origin,
            map,
            diagnostics: Vec::new(),
        }
    }

    /// A problem with the value at `path`.
    pub fn error(&mut self, path: &str, message: impl Into<String>) {
        let pos = self.map.value_pos(path);
        self.push(Severity::Error, path, pos, message.into());
    }

    /// A problem with the key that introduces `path` (an unknown or misspelt key).
    pub fn key_error(&mut self, path: &str, message: impl Into<String>) {
        let pos = self.map.key_pos(path);
        self.push(Severity::Error, path, pos, message.into());
    }

    /// A problem with the value at `path` whose line is known more precisely than the value's own
    /// position (a line inside a multi-line string); no column is given.
    pub fn push_at_line(&mut self, path: &str, line: Option<usize>, message: String) {
        let Some(line) = line else {
            return self.error(path, message);
        };
        self.diagnostics.push(Diagnostic {
            severity: Severity::Error,
            origin: self.origin.to_owned(),
            path: path.to_owned(),
            line: Some(line),
            column: None,
            message,
        });
    }

    pub fn warning(&mut self, path: &str, message: impl Into<String>) {
        let pos = self.map.value_pos(path);
        self.push(Severity::Warning, path, pos, message.into());
    }

    pub fn push(&mut self, severity: Severity, path: &str, pos: Option<Pos>, message: String) {
        self.diagnostics.push(Diagnostic {
            severity,
            origin: self.origin.to_owned(),
            path: path.to_owned(),
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
            message,
        });
    }

    /// Every diagnostic, in the order of the file (those without a position last, in the order found).
    pub fn finish(mut self) -> Vec<Diagnostic> {
        self.diagnostics
            .sort_by_key(|d| (d.line.unwrap_or(usize::MAX), d.column.unwrap_or(0)));
        self.diagnostics
    }
}
