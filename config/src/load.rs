//! Loading: YAML text → [`Config`], with every problem reported (see the crate docs).
//! STUB: being written.

use std::path::Path;

use crate::{Config, Diagnostic, Diagnostics};

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
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic {
            severity: crate::Severity::Error,
            origin: path.display().to_string(),
            path: String::new(),
            line: None,
            column: None,
            message: format!("cannot read the config file: {e}"),
        }])
    })?;
    load_str(&text, &path.display().to_string())
}

/// Reads and validates `text`; `origin` names it in diagnostics (a path, or `<embedded default>`).
pub fn load_str(text: &str, origin: &str) -> Result<Loaded, Diagnostics> {
    load_str_with_env(text, origin, &|name| std::env::var(name).ok())
}

/// As [`load_str`], with environment lookups answered by `env` (tests use a map).
pub fn load_str_with_env(
    _text: &str,
    _origin: &str,
    _env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, Diagnostics> {
    unimplemented!("config loader stub")
}
