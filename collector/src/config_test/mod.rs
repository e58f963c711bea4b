//! `outpost test`: unit tests for a config, in the spirit of `vector test`.
//!
//! A test file lists cases; each feeds one OTLP/JSON export request into a pipeline (or every pipeline
//! of a receiver) and states what must come out of the processors of that pipeline or of a pipeline
//! downstream of its connectors (see [`run`] for how it runs, [`check`] for the conditions). Tests live
//! in files of their own, given after the config, so a config repository keeps configs deployable
//! unchanged and can run the same tests against every environment's config.
//!
//! Exit codes: 0 when every test passed, 1 when one failed (each failure printed with the item's path
//! and the expected and actual values), 2 when the config or a test file cannot be used (printed as
//! `file:line:col: error: path: message`, like `outpost validate`), so CI can tell a regression in the
//! config from a broken test.

mod check;
mod run;
mod spec;

use std::io::Write;
use std::path::{Path, PathBuf};

use outpost_config::document::Document;
use outpost_config::Diagnostic;

use spec::{Compiled, Data};

pub const EXIT_PASSED: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_UNUSABLE: u8 = 2;

/// The test file used when none is named: `tests/NAME.yaml` beside the config `NAME.yaml` (a folder of
/// its own, so a directory of configs never mistakes a test file for a config).
pub fn default_tests_for(config: &Path) -> PathBuf {
    let name = config.file_name().unwrap_or_default();
    config
        .parent()
        .unwrap_or(Path::new("."))
        .join("tests")
        .join(name)
}

/// Runs the tests of `tests` (or the default test file) against the config at `config_path`, writing
/// results to `out` and problems with the inputs to `err`. Returns the exit code.
pub fn run(config_path: &Path, tests: &[PathBuf], out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let unusable = |err: &mut dyn Write, diags: &[Diagnostic], what: &str| {
        for d in diags {
            let _ = writeln!(err, "{d}");
        }
        let _ = writeln!(err, "outpost test: {what}; no test was run");
        EXIT_UNUSABLE
    };
    let loaded = match outpost_config::load_file(config_path) {
        Ok(l) => l,
        Err(diags) => {
            return unusable(
                err,
                &diags.0,
                &format!("the config has {} errors", diags.errors().count()),
            )
        }
    };
    let config = loaded.config;

    let files: Vec<PathBuf> = if tests.is_empty() {
        let default = default_tests_for(config_path);
        if !default.exists() {
            let _ = writeln!(
                err,
                "outpost test: no test files given, and no '{}' beside the config",
                default.display()
            );
            return EXIT_UNUSABLE;
        }
        vec![default]
    } else {
        tests.to_vec()
    };

    let mut problems = Vec::new();
    let mut suites: Vec<(PathBuf, Vec<Compiled>)> = Vec::new();
    for file in &files {
        let doc = match Document::read(file) {
            Ok(d) => d,
            Err(d) => {
                problems.extend(d.0);
                continue;
            }
        };
        let parsed = match doc.decode::<spec::TestFile>() {
            Ok(p) => p,
            Err(d) => {
                problems.extend(d.0);
                continue;
            }
        };
        let base = file.parent().unwrap_or(Path::new("."));
        match spec::compile(&doc, parsed, &config, base) {
            Ok(c) => suites.push((file.clone(), c)),
            Err(d) => problems.extend(d),
        }
    }
    let mut build_errors = Vec::new();
    let redactions = crate::stages::redactions(&config, &mut build_errors);
    if !problems.is_empty() {
        return unusable(err, &problems, "the test files have errors");
    }
    if !build_errors.is_empty() {
        for e in &build_errors {
            let _ = writeln!(err, "{}: error: {e}", config_path.display());
        }
        let _ = writeln!(
            err,
            "outpost test: the config cannot be built; no test was run"
        );
        return EXIT_UNUSABLE;
    }

    let (mut passed, mut failed) = (0usize, 0usize);
    for (file, cases) in &suites {
        let _ = writeln!(out, "{}", file.display());
        for case in cases {
            let mut harness = run::Harness::new(&config, &redactions);
            for pid in &case.feeds {
                if let Err(e) = harness.feed(pid, case.data.clone()) {
                    let _ = writeln!(err, "{}: error: {e}", config_path.display());
                    let _ = writeln!(
                        err,
                        "outpost test: the config cannot be built; stopped at test {:?}",
                        case.name
                    );
                    return EXIT_UNUSABLE;
                }
            }
            let mut failures = Vec::new();
            for (pid, checks) in &case.outputs {
                let empty = empty_of(pid.signal);
                let output = harness.outputs.get(pid).unwrap_or(&empty);
                let input = harness.inputs.get(pid).unwrap_or(&empty);
                let (output_items, input_items) = (check::items(output), check::items(input));
                for c in checks {
                    check::evaluate(
                        &pid.to_string(),
                        c,
                        &output_items,
                        &input_items,
                        &mut failures,
                    );
                }
            }
            if failures.is_empty() {
                passed += 1;
                let _ = writeln!(out, "  ok      {}", case.name);
            } else {
                failed += 1;
                let _ = writeln!(out, "  FAILED  {}", case.name);
                print_failures(out, &failures);
            }
        }
    }
    let total = passed + failed;
    if failed == 0 {
        let _ = writeln!(out, "outpost test: {total} tests, all passed");
        EXIT_PASSED
    } else {
        let _ = writeln!(
            out,
            "outpost test: {total} tests, {failed} failed ({passed} passed)"
        );
        EXIT_FAILED
    }
}

fn empty_of(signal: outpost_config::Signal) -> Data {
    match signal {
        outpost_config::Signal::Traces => Data::Traces(Default::default()),
        outpost_config::Signal::Metrics => Data::Metrics(Default::default()),
        outpost_config::Signal::Logs => Data::Logs(Default::default()),
    }
}

/// Failures grouped by check and item, each condition as an expected / actual pair.
fn print_failures(out: &mut dyn Write, failures: &[check::Failure]) {
    let mut last: Option<(&str, Option<&str>)> = None;
    for f in failures {
        let key = (f.check.as_str(), f.item.as_deref());
        if last != Some(key) {
            match &f.item {
                Some(item) => {
                    let _ = writeln!(out, "          {}: {item}", f.check);
                }
                None => {
                    let _ = writeln!(out, "          {}", f.check);
                }
            }
            last = Some(key);
        }
        let _ = writeln!(out, "            {}", f.what);
        let _ = writeln!(out, "              expected: {}", f.expected);
        let _ = writeln!(out, "              actual:   {}", f.actual);
    }
}

#[cfg(test)]
mod tests;
