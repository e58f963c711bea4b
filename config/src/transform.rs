//! The `transform` processor's VRL program, compiled at config load.
//!
//! A program that does not compile never reaches a pipeline: [`compile`] is run by validation, and each
//! of its errors is positioned at the line of the YAML file where the faulty part of the program is
//! written (the program's line N is N-1 lines below where the scalar's text starts). The pipeline compiles the same text again with the same function library, so what was checked
//! is what runs.

use vrl::compiler::{CompilationResult, Program};

use crate::report::Report;
use crate::schema::TransformProcessorConfig;
use crate::source::key_path;

/// One compile error of a VRL program, positioned inside the program (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Compiles `source` with VRL's standard library.
pub fn compile(source: &str) -> Result<Program, Vec<ProgramError>> {
    match vrl::compiler::compile(source, &vrl::stdlib::all()) {
        Ok(CompilationResult { program, .. }) => Ok(program),
        Err(diagnostics) => Err(diagnostics
            .iter()
            .filter(|d| d.is_problem())
            .map(|d| {
                let label = d
                    .labels
                    .iter()
                    .find(|l| l.primary)
                    .or_else(|| d.labels.first());
                let span = label.map_or(0..0, |l| l.span.range());
                let (line, column) = line_col(source, span.start);
                let mut message = format!("E{:03}: {}", d.code, d.message);
                if let Some(l) = label.filter(|l| !l.message.is_empty() && l.message != d.message) {
                    message.push_str(&format!(" ({})", l.message));
                }
                let snippet: String = source
                    .get(span)
                    .unwrap_or_default()
                    .chars()
                    .take(60)
                    .collect();
                if !snippet.trim().is_empty() {
                    message.push_str(&format!(" at `{}`", snippet.trim()));
                }
                ProgramError {
                    line,
                    column,
                    message,
                }
            })
            .collect()),
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The checks of one `transform` processor, reported at `path`.
pub(crate) fn check(r: &mut Report, path: &str, cfg: &TransformProcessorConfig) {
    let program = match cfg.program() {
        Ok(p) => p,
        Err(e) => {
            let at = if cfg.file.is_some() && cfg.source.is_none() {
                key_path(path, "file")
            } else {
                path.to_owned()
            };
            r.error(&at, e);
            return;
        }
    };
    let Err(errors) = compile(&program) else {
        return;
    };
    let (at, inline) = match &cfg.source {
        Some(_) => (key_path(path, "source"), true),
        None => (key_path(path, "file"), false),
    };
    for e in errors {
        let message = format!(
            "the VRL program does not compile: line {}, column {} of the program: {}",
            e.line, e.column, e.message
        );
        // The scalar's position is where its text starts (for `source: |`, the line after the `|`).
        let line = match (inline, r.map.value_pos(&at)) {
            (true, Some(pos)) => Some(pos.line + e.line - 1),
            _ => None,
        };
        r.push_at_line(&at, line, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_point_into_the_program() {
        let errors = compile(".a = 1\n.b = nosuch(.a)\n").unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, 2, "{errors:?}");
        let errors = compile(".a = nosuchfunction(1)").unwrap_err();
        assert_eq!((errors[0].line, errors[0].column), (1, 6), "{errors:?}");
        assert!(errors[0].message.contains("nosuchfunction"), "{errors:?}");
        assert!(compile(".a = upcase(string!(.b))").is_ok());
    }
}
