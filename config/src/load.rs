//! Loading: YAML text → validated [`Config`], with every problem reported.
//!
//! The stages, each in its own module: `yaml` parses into a tree with positions,
//! `source` substitutes `${env:…}` references inside scalar values and types them,
//! `decode` reads each part against its schema, and `validate` checks what spans parts.
//! A YAML syntax error ends the load (nothing after it can be trusted); every later stage reports all it
//! finds, so a load fails with the complete list. Warnings never fail a load.

use std::path::Path;

use crate::diagnostics::{Diagnostic, Diagnostics, Severity};
use crate::report::Report;
use crate::Config;

/// The configuration `outpost run` uses when no `--config` is given.
pub const DEFAULT_CONFIG: &str = include_str!("../examples/default.yaml");

/// A loaded, validated config and the warnings found on the way (unused components, …).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

/// Reads and validates the file at `path`, substituting environment variables from the process env.
pub fn load_file(path: &Path) -> Result<Loaded, Diagnostics> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic {
            severity: Severity::Error,
            origin: origin.clone(),
            path: String::new(),
            line: None,
            column: None,
            message: format!("cannot read the config file: {e}"),
        }])
    })?;
    load_str(&text, &origin)
}

/// Reads and validates `text`; `origin` names it in diagnostics (a path, or `<embedded default>`).
pub fn load_str(text: &str, origin: &str) -> Result<Loaded, Diagnostics> {
    load_str_with_env(text, origin, &|name| std::env::var(name).ok())
}

/// As [`load_str`], with environment lookups answered by `env` (tests use a map).
///
/// On success, `Loaded::warnings` holds the warnings. On failure, the `Err` holds every error and every
/// warning, in file order.
pub fn load_str_with_env(
    text: &str,
    origin: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, Diagnostics> {
    let parsed = crate::yaml::parse(text);
    let syntax: Vec<Diagnostic> = parsed
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
    if parsed.root.is_none() && !syntax.is_empty() {
        return Err(Diagnostics(syntax));
    }
    // An empty file has no root: nothing is defined, which validation reports as "no pipelines".
    let mut root = parsed.root;
    let (map, substitution) = match root.as_mut() {
        Some(root) => crate::source::prepare(root, env),
        None => Default::default(),
    };
    let mut report = Report::new(origin, &map);
    for e in substitution {
        report.push(Severity::Error, &e.path, Some(e.pos), e.message);
    }
    let (config, origins) = crate::decode::decode(root.as_ref(), &mut report);
    crate::validate::validate(&config, &origins, &mut report);
    let mut all = syntax;
    all.extend(report.finish());
    split(all, config)
}

fn split(all: Vec<Diagnostic>, config: Config) -> Result<Loaded, Diagnostics> {
    if all.iter().any(|d| d.severity == Severity::Error) {
        return Err(Diagnostics(all));
    }
    Ok(Loaded {
        config,
        warnings: all,
    })
}

/// The data directory an invalid config names, as far as it can be read: `queue.directory` when that
/// key parses as a plain path, else the default. Used to find the last known good config, which lives
/// in the data directory's state store, when the file itself cannot be loaded.
pub fn data_dir_hint(text: &str) -> std::path::PathBuf {
    let parsed = crate::yaml::parse(text);
    let dir = parsed
        .root
        .as_ref()
        .and_then(|root| root.as_mapping())
        .and_then(|m| m.iter().find(|e| e.key == "queue"))
        .and_then(|e| e.value.as_mapping())
        .and_then(|m| m.iter().find(|e| e.key == "directory"))
        .and_then(|e| match &e.value.kind {
            crate::yaml::Kind::Scalar(s) if !s.text.contains("${") => Some(s.text.clone()),
            _ => None,
        });
    dir.map_or_else(crate::schema::QueueConfig::default_directory, Into::into)
}

#[cfg(test)]
mod hint_tests {
    use super::data_dir_hint;

    #[test]
    fn data_dir_hint_reads_queue_directory_from_an_invalid_config() {
        let text = "queue:\n  directory: /var/lib/edge\nreceivers:\n  nope: {}\n";
        assert_eq!(
            data_dir_hint(text),
            std::path::PathBuf::from("/var/lib/edge")
        );
        assert_eq!(
            data_dir_hint("receivers: [unclosed"),
            crate::schema::QueueConfig::default_directory()
        );
    }
}
