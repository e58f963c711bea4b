//! The example configs under config/examples/ are documentation users copy: every one must load with
//! no error and no warning, and the deliberately broken one must report exactly its mistakes.

use std::path::{Path, PathBuf};

use outpost_config::{load_file, load_str_with_env, Severity, DEFAULT_CONFIG};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Examples must not depend on the environment of the machine running the tests.
fn no_env(_: &str) -> Option<String> {
    None
}

/// What tls.yaml reads: `OUTPOST_TLS_DIR` names a directory this test fills with certificates, keys and
/// credential files generated here (never committed), and `OUTPOST_TENANT_KEY` a header value.
fn example_env(name: &str) -> Option<String> {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    match name {
        "OUTPOST_TLS_DIR" => {
            let dir = DIR.get_or_init(|| {
                let dir = tempfile::tempdir().unwrap();
                let write =
                    |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
                let ca_key = rcgen::KeyPair::generate().unwrap();
                let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
                ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
                let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
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
            });
            Some(dir.path().display().to_string())
        }
        "OUTPOST_TENANT_KEY" => Some("tenant-42".into()),
        _ => None,
    }
}

#[test]
fn every_example_loads_without_errors_or_warnings() {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        seen += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        let origin = path.display().to_string();
        match load_str_with_env(&text, &origin, &example_env) {
            Ok(loaded) => assert!(
                loaded.warnings.is_empty(),
                "{origin}:\n{:#?}",
                loaded.warnings
            ),
            Err(diagnostics) => panic!("{origin} does not load:\n{diagnostics}"),
        }
    }
    // default, gateway, forward-to-central: a renamed directory must not pass by testing nothing.
    assert!(seen >= 3, "only {seen} examples found");
}

#[test]
fn the_embedded_default_is_default_yaml_and_loads() {
    let loaded = load_str_with_env(DEFAULT_CONFIG, "<embedded default>", &no_env).unwrap();
    assert_eq!(loaded.config.service.pipelines.len(), 3);
    assert_eq!(
        loaded.config.admin_endpoints(),
        vec!["127.0.0.1:13133".parse().unwrap()]
    );
}

#[test]
fn gateway_defaults_the_node_id_and_honours_it_when_set() {
    use outpost_config::{AttrValue, ProcessorConfig};
    let text = std::fs::read_to_string(examples_dir().join("gateway.yaml")).unwrap();
    let host_name = |env: &dyn Fn(&str) -> Option<String>| {
        let loaded = load_str_with_env(&text, "gateway.yaml", env).unwrap();
        let Some(ProcessorConfig::Resource(resource)) = loaded
            .config
            .processors
            .get(&"resource".parse::<outpost_config::ComponentId>().unwrap())
        else {
            panic!("no resource processor");
        };
        resource.attributes[0].value.clone()
    };
    assert_eq!(host_name(&no_env), Some(AttrValue::String("edge-1".into())));
    let set = |name: &str| (name == "NODE_ID").then(|| "store-042".to_owned());
    assert_eq!(host_name(&set), Some(AttrValue::String("store-042".into())));
}

#[test]
fn three_mistakes_reports_exactly_its_three_errors() {
    let path = examples_dir().join("invalid/three-mistakes.yaml");
    let diagnostics = load_file(&path).unwrap_err();
    let errors: Vec<_> = diagnostics.errors().collect();
    let found: Vec<(Option<usize>, &str)> =
        errors.iter().map(|d| (d.line, d.path.as_str())).collect();
    assert_eq!(
        found,
        vec![
            (Some(9), "processors.batch.timeout"),
            (Some(14), "exporters.otlp/local.endpiont"),
            (Some(21), "service.pipelines.traces.exporters[1]"),
        ],
        "{diagnostics}"
    );
    assert!(
        errors[0].message.contains("'200' has no unit"),
        "{}",
        errors[0]
    );
    assert!(errors[1]
        .message
        .starts_with("unknown field `endpiont`, expected one of `endpoint`"));
    assert_eq!(
        errors[2].message,
        "'otlp/cloud' is not defined under exporters (defined: debug, otlp/local)"
    );
    assert_eq!(
        errors[1].column,
        Some(5),
        "an unknown key is reported at the key"
    );
    assert!(
        diagnostics.0.iter().all(|d| d.severity == Severity::Error),
        "{diagnostics}"
    );
    let shown = errors[2].to_string();
    assert_eq!(
        shown,
        format!(
            "{}:21:26: error: service.pipelines.traces.exporters[1]: 'otlp/cloud' is not defined under \
             exporters (defined: debug, otlp/local)",
            path.display()
        )
    );
}
