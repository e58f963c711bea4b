//! The `filelog` and `syslog` receivers' settings: defaults, and each validation rule reported at its
//! own path and line, with a valid neighbour that passes.

use outpost_config::{
    load_str_with_env, Diagnostic, FieldRoot, FilelogStartAt, Loaded, OperatorConfig,
    ReceiverConfig, SyslogProtocol,
};

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(yaml: &str) -> Result<Loaded, outpost_config::Diagnostics> {
    load_str_with_env(yaml, "test.yaml", &no_env)
}

fn errors(yaml: &str) -> Vec<Diagnostic> {
    match load(yaml) {
        Ok(_) => panic!("expected errors from:\n{yaml}"),
        Err(d) => d.errors().cloned().collect(),
    }
}

fn line_of(yaml: &str, needle: &str) -> Option<usize> {
    Some(yaml.lines().position(|l| l.contains(needle)).expect(needle) + 1)
}

fn with_receiver(body: &str) -> String {
    format!(
        "receivers:\n{body}exporters:\n  debug:\nservice:\n  pipelines:\n    logs:\n      receivers: [{}]\n      exporters: [debug]\n",
        body.lines()
            .next()
            .unwrap()
            .trim()
            .trim_end_matches(':')
    )
}

#[test]
fn filelog_defaults_follow_the_collector() {
    let yaml = with_receiver("  filelog:\n    include: [/var/log/app/*.log]\n");
    let loaded = load(&yaml).unwrap();
    let Some(ReceiverConfig::Filelog(f)) = loaded.config.receivers.values().next() else {
        panic!("a filelog receiver");
    };
    assert_eq!(f.start_at, FilelogStartAt::End);
    assert_eq!(f.poll_interval.get().as_millis(), 200);
    assert_eq!(f.fingerprint_size.bytes(), 1000);
    assert_eq!(f.max_log_size.bytes(), 1 << 20);
    assert_eq!(f.encoding, "utf-8");
    assert!(f.include_file_name && !f.include_file_path);
}

#[test]
fn filelog_mistakes_are_reported_where_they_are() {
    let yaml = with_receiver(
        r#"  filelog:
    include: ["/var/log/[a.log"]
    encoding: klingon
    fingerprint_size: 4
    multiline:
      line_start_pattern: "(unclosed"
      line_end_pattern: "x"
    operators:
      - type: regex_parser
        regex: '^\w+ \w+$'
      - type: time_parser
        parse_from: attributes.t
        layout_type: gotime
        layout: "2006-01-02"
      - type: severity_parser
        parse_from: resource.level
        mapping:
          loud: [x]
"#,
    );
    let found: Vec<(String, Option<usize>)> = errors(&yaml)
        .into_iter()
        .map(|d| (d.path, d.line))
        .collect();
    let want = [
        ("receivers.filelog.include[0]", "[a.log"),
        ("receivers.filelog.encoding", "klingon"),
        ("receivers.filelog.fingerprint_size", "fingerprint_size"),
        (
            "receivers.filelog.multiline.line_end_pattern",
            "line_end_pattern",
        ),
        (
            "receivers.filelog.multiline.line_start_pattern",
            "(unclosed",
        ),
        ("receivers.filelog.operators[0].regex", "regex:"),
        ("receivers.filelog.operators[1].layout_type", "gotime"),
        (
            "receivers.filelog.operators[2].parse_from",
            "resource.level",
        ),
        ("receivers.filelog.operators[2].mapping.loud", "loud"),
    ];
    for (path, needle) in want {
        assert!(
            found
                .iter()
                .any(|(p, l)| p == path && *l == line_of(&yaml, needle)),
            "{path} (line {:?}) not in {found:#?}",
            line_of(&yaml, needle)
        );
    }
    assert_eq!(found.len(), want.len(), "{found:#?}");
}

#[test]
fn operators_decode_with_collector_keys() {
    let yaml = with_receiver(
        r#"  filelog:
    include: [/tmp/*.log]
    start_at: beginning
    operators:
      - type: json_parser
        parse_to: attributes["parsed.json"]
        timestamp: {parse_from: attributes.ts, layout_type: epoch, layout: ms}
        severity: {parse_from: attributes.lvl, mapping: {warn: [w, 300], error: {min: 500, max: 599}}}
"#,
    );
    let loaded = load(&yaml).unwrap_or_else(|d| panic!("{d}"));
    let Some(ReceiverConfig::Filelog(f)) = loaded.config.receivers.values().next() else {
        panic!("a filelog receiver");
    };
    let OperatorConfig::JsonParser(p) = &f.operators[0] else {
        panic!("json_parser");
    };
    assert_eq!(p.parse_to.root, FieldRoot::Attributes);
    assert_eq!(p.parse_to.keys, vec!["parsed.json".to_owned()]);
    assert_eq!(p.severity.as_ref().unwrap().mapping.len(), 2);
}

#[test]
fn syslog_needs_a_transport_a_known_zone_and_its_own_ports() {
    let e = errors(&with_receiver("  syslog:\n    protocol: rfc3164\n"));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].message.contains("no transport"), "{e:#?}");
    let yaml = with_receiver(
        "  syslog:\n    protocol: rfc3164\n    location: Mars/Olympus\n    udp: {listen_address: 127.0.0.1:5514}\n    tcp: {listen_address: 127.0.0.1:13133}\n",
    );
    let e = errors(&yaml);
    let paths: Vec<&str> = e.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "receivers.syslog.location",
            "receivers.syslog.tcp.listen_address"
        ],
        "{e:#?}"
    );
    assert!(e[1].message.contains("default admin endpoint"), "{e:#?}");
    // UDP and TCP on one port do not clash.
    let yaml = with_receiver(
        "  syslog:\n    protocol: rfc5424\n    udp: {listen_address: 127.0.0.1:5514}\n    tcp: {listen_address: 127.0.0.1:5514}\n",
    );
    let loaded = load(&yaml).unwrap_or_else(|d| panic!("{d}"));
    let Some(ReceiverConfig::Syslog(s)) = loaded.config.receivers.values().next() else {
        panic!("a syslog receiver");
    };
    assert_eq!(s.protocol, SyslogProtocol::Rfc5424);
}

#[test]
fn log_receivers_produce_logs_only() {
    let yaml = "receivers:\n  filelog:\n    include: [/tmp/x.log]\nexporters:\n  debug:\nservice:\n  pipelines:\n    traces:\n      receivers: [filelog]\n      exporters: [debug]\n";
    let e = errors(yaml);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].message
            .contains("does not produce traces (it supports: logs)"),
        "{e:#?}"
    );
}
