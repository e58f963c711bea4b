//! The command line as an operator meets it: `validate` reports every problem with its line and column
//! and sets the exit code, `version` prints the version, and `run` refuses a broken config without
//! starting anything.

use std::path::PathBuf;
use std::time::Duration;

use outpost_integration::{free_port, outpost_command, run_with_timeout, workspace_root, Finished};

fn examples() -> PathBuf {
    workspace_root().join("config").join("examples")
}

fn outpost(args: &[&str]) -> Finished {
    run_with_timeout(outpost_command().args(args), Duration::from_secs(30))
}

#[test]
fn validate_reports_all_three_mistakes_with_their_lines_and_exits_1() {
    let path = examples().join("invalid").join("three-mistakes.yaml");
    let out = outpost(&["validate", "--config", path.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit code; stderr:\n{}",
        out.stderr
    );
    let file = path.display().to_string();
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains(": error: "))
        .collect();
    assert_eq!(
        errors.len(),
        3,
        "exactly the three mistakes:\n{}",
        out.stderr
    );
    // `file:line:col: error: path: message`, in file order.
    let expected = [
        (9, "processors.batch.timeout", "'200' has no unit"),
        (
            14,
            "exporters.otlp/local.endpiont",
            "unknown field `endpiont`",
        ),
        (
            21,
            "service.pipelines.traces.exporters[1]",
            "'otlp/cloud' is not defined under exporters",
        ),
    ];
    for (line, (want_line, want_path, want_message)) in errors.iter().zip(expected) {
        let prefix = format!("{file}:{want_line}:");
        assert!(line.starts_with(&prefix), "expected {prefix}… got: {line}");
        let rest = &line[prefix.len()..];
        let (col, rest) = rest.split_once(':').expect("a column after the line");
        assert!(
            col.parse::<usize>().is_ok_and(|c| c > 0),
            "column in: {line}"
        );
        let rest = rest
            .strip_prefix(" error: ")
            .unwrap_or_else(|| panic!("severity in: {line}"));
        let rest = rest
            .strip_prefix(&format!("{want_path}: "))
            .unwrap_or_else(|| panic!("path {want_path} in: {line}"));
        assert!(
            rest.contains(want_message),
            "message '{want_message}' in: {line}"
        );
    }
    assert!(
        out.stderr.contains("3 errors"),
        "a summary with the count:\n{}",
        out.stderr
    );
    // The `endpiont` error names the key it meant, so the fix is obvious.
    assert!(errors[1].contains("`endpoint`"), "{}", errors[1]);
}

#[test]
fn validate_accepts_the_default_example_and_exits_0() {
    let path = examples().join("default.yaml");
    let out = outpost(&["validate", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", out.stderr);
    assert!(!out.stderr.contains("error"), "no errors:\n{}", out.stderr);
    assert!(
        out.stdout.contains("valid"),
        "says it is valid:\n{}",
        out.stdout
    );
}

/// The files config/examples/tls.yaml names (through `OUTPOST_TLS_DIR`), generated here: certificates
/// are never committed.
fn tls_example_files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    let ca = rcgen::CertificateParams::new(Vec::<String>::new()).map(|mut p| {
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p
    });
    let ca = rcgen::CertifiedIssuer::self_signed(ca.unwrap(), rcgen::KeyPair::generate().unwrap())
        .unwrap();
    write("ca.pem", &ca.pem());
    for (name, host) in [("server", "localhost"), ("client", "edge-1")] {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![host.to_owned()]).unwrap();
        write(
            &format!("{name}.pem"),
            &params.signed_by(&key, &ca).unwrap().pem(),
        );
        write(&format!("{name}.key"), &key.serialize_pem());
    }
    write("tokens", "token-for-app-1\n");
    write("htpasswd", "app:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n");
    write("central-token", "short-lived\n");
    dir
}

#[test]
fn validate_accepts_every_shipped_example() {
    let tls_dir = tls_example_files();
    let mut seen = 0;
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        seen += 1;
        let out = run_with_timeout(
            outpost_command()
                .args(["validate", "--config", path.to_str().unwrap()])
                .env("OUTPOST_TLS_DIR", tls_dir.path())
                .env("OUTPOST_TENANT_KEY", "tenant-42"),
            Duration::from_secs(30),
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{} should validate:\n{}",
            path.display(),
            out.stderr
        );
    }
    assert!(seen >= 1, "no examples found in {}", examples().display());
}

#[test]
fn validate_names_a_missing_file() {
    let out = outpost(&["validate", "--config", "/nonexistent/outpost.yaml"]);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", out.stderr);
    assert!(
        out.stderr.contains("/nonexistent/outpost.yaml"),
        "the error names the file:\n{}",
        out.stderr
    );
}

#[test]
fn version_prints_the_crate_version() {
    let out = outpost(&["version"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        format!("outpost {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn run_with_an_invalid_config_exits_nonzero_without_starting() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, admin) = (free_port(), free_port());
    let data_dir = dir.path().join("data");
    // Valid except for one unknown key: the receiver and admin ports must never be opened.
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
exporters:
  debug:
    verbosty: basic
extensions:
  health_check:
    endpoint: 127.0.0.1:{admin}
queue:
  directory: {data}
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
"#,
        data = data_dir.display()
    );
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, config).unwrap();
    let out = outpost(&["run", "--config", path.to_str().unwrap()]);
    assert!(
        !out.status.success(),
        "run must fail: {}\n{}",
        out.status,
        out.stderr
    );
    assert!(
        out.status.code().is_some(),
        "exits, is not killed: {}",
        out.status
    );
    assert!(
        out.stderr.contains("exporters.debug.verbosty") && out.stderr.contains(":9:"),
        "the problem is reported with its path and line:\n{}",
        out.stderr
    );
    assert!(out.stderr.contains("not starting"), "{}", out.stderr);
    assert!(
        !data_dir.exists(),
        "nothing was started, not even the data directory"
    );
    assert!(
        !out.stderr.contains("listening"),
        "no listener was opened:\n{}",
        out.stderr
    );
}
