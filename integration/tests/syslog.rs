//! The `syslog` receiver against a real client: util-linux `logger` sends RFC 5424 and RFC 3164
//! messages over UDP and TCP (newline framing and octet counting), and they must come out of outpost's
//! `file` exporter as OTLP log records with the severity, hostname, app name, process id, message id and
//! structured data they were sent with. A message that is not syslog at all is kept, raw, with a
//! parse-error attribute, and counted.

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use outpost_integration::otlp_json::{self, Attr, Item, Signal};
use outpost_integration::{free_port, wait_for, Agent};

/// A UDP port on 127.0.0.1 that was free a moment ago (the TCP helper's port, checked for UDP too).
fn free_udp_and_tcp_port() -> u16 {
    loop {
        let port = free_port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn logger(args: &[&str]) {
    let out = Command::new("logger")
        .args(args)
        .output()
        .expect("util-linux `logger` is installed (apt-get install bsdutils)");
    assert!(
        out.status.success(),
        "logger {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("the kernel's host name")
        .trim()
        .to_owned()
}

fn str_attr<'i>(item: &'i Item, key: &str) -> Option<&'i str> {
    match item.attr(key) {
        Some(Attr::Str(s)) => Some(s),
        _ => None,
    }
}

fn int_attr(item: &Item, key: &str) -> Option<i64> {
    match item.attr(key) {
        Some(Attr::Int(i)) => Some(*i),
        _ => None,
    }
}

#[test]
fn logger_messages_arrive_as_otlp_logs_with_their_fields() {
    let (p5424, p3164) = (free_udp_and_tcp_port(), free_udp_and_tcp_port());
    let agent = Agent::start(&format!(
        r#"
receivers:
  syslog/5424:
    protocol: rfc5424
    udp: {{listen_address: "127.0.0.1:{p5424}"}}
    tcp: {{listen_address: "127.0.0.1:{p5424}"}}
  syslog/3164:
    protocol: rfc3164
    location: UTC
    udp: {{listen_address: "127.0.0.1:{p3164}"}}
    tcp: {{listen_address: "127.0.0.1:{p3164}"}}
exporters:
  file:
    path: "@DIR@/logs.jsonl"
extensions:
  health_check:
    endpoint: "@ADMIN@"
queue:
  directory: "@DATA_DIR@"
service:
  extensions: [health_check]
  pipelines:
    logs:
      receivers: [syslog/5424, syslog/3164]
      exporters: [file]
"#
    ));
    let (s5424, s3164) = (p5424.to_string(), p3164.to_string());
    let server = ["--server", "127.0.0.1", "--port"];
    logger(
        &[
            &server[..],
            &[
                &s5424,
                "--udp",
                "--rfc5424",
                "-t",
                "app-udp-5424",
                "-p",
                "local3.warning",
            ],
            &[
                "--id=4242",
                "--msgid",
                "ID47",
                "--sd-id",
                "ex@32473",
                "--sd-param",
                "k=\"v\"",
            ],
            &["udp five-four-two-four"],
        ]
        .concat(),
    );
    logger(
        &[
            &server[..],
            &[
                &s5424,
                "--tcp",
                "--octet-count",
                "--rfc5424",
                "-t",
                "app-tcp-5424",
            ],
            &["-p", "user.crit", "tcp five-four-two-four"],
        ]
        .concat(),
    );
    logger(
        &[
            &server[..],
            &[
                &s3164,
                "--udp",
                "--rfc3164",
                "-t",
                "app-udp-3164",
                "-p",
                "daemon.notice",
            ],
            &["--id=77", "udp three-one-six-four"],
        ]
        .concat(),
    );
    logger(
        &[
            &server[..],
            &[
                &s3164,
                "--tcp",
                "--rfc3164",
                "-t",
                "app-tcp-3164",
                "-p",
                "user.debug",
            ],
            &["tcp three-one-six-four"],
        ]
        .concat(),
    );
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(b"this is not syslog", ("127.0.0.1", p5424))
        .unwrap();

    let path = agent.dir().join("logs.jsonl");
    let items = wait_for(
        Duration::from_secs(20),
        "five log records",
        || {
            let items = otlp_json::items(Signal::Logs, &otlp_json::read_requests(&path));
            (items.len() >= 5).then_some(items)
        },
        || agent.metrics_text(),
    );
    assert_eq!(items.len(), 5);
    let by_message = |needle: &str| -> &Item {
        items
            .iter()
            .find(|i| str_attr(i, "message") == Some(needle))
            .unwrap_or_else(|| panic!("no record with message {needle:?} in {items:#?}"))
    };
    let host = host_name();
    let short_host = host.split('.').next().unwrap_or_default().to_owned();
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;

    // (message, app, severity number, severity text, facility)
    for (message, app, number, text, facility) in [
        ("udp five-four-two-four", "app-udp-5424", 13, "warning", 19),
        ("tcp five-four-two-four", "app-tcp-5424", 18, "crit", 1),
        ("udp three-one-six-four", "app-udp-3164", 10, "notice", 3),
        ("tcp three-one-six-four", "app-tcp-3164", 5, "debug", 1),
    ] {
        let item = by_message(message);
        assert_eq!(str_attr(item, "appname"), Some(app), "{item:#?}");
        assert_eq!(item.int_field("severityNumber"), Some(number), "{item:#?}");
        assert_eq!(item.str_field("severityText"), text, "{item:#?}");
        assert_eq!(int_attr(item, "facility"), Some(facility), "{item:#?}");
        let hostname = str_attr(item, "hostname").unwrap_or_default();
        assert!(
            hostname == host || hostname == short_host,
            "hostname {hostname:?}, expected {host:?}"
        );
        // The sender's clock stamped it a moment ago (3164 has whole seconds and no year).
        let time = item.int_field("timeUnixNano").expect("a time");
        assert!(
            (now_ns - time).abs() < 120 * 1_000_000_000,
            "time {time} is not near now {now_ns}"
        );
        assert!(
            item.str_field("body").is_empty(),
            "the body is an AnyValue, not a string field"
        );
        let body = item.value["body"]["stringValue"]
            .as_str()
            .unwrap_or_default();
        assert!(
            body.ends_with(message),
            "the raw message is the body: {body:?}"
        );
    }

    let udp5424 = by_message("udp five-four-two-four");
    assert_eq!(str_attr(udp5424, "proc_id"), Some("4242"));
    assert_eq!(str_attr(udp5424, "msg_id"), Some("ID47"));
    assert_eq!(int_attr(udp5424, "version"), Some(1));
    let Some(Attr::Other(sd)) = udp5424.attr("structured_data") else {
        panic!("structured_data is a map: {udp5424:#?}");
    };
    let element = sd["kvlistValue"]["values"]
        .as_array()
        .and_then(|els| els.iter().find(|e| e["key"] == "ex@32473"))
        .unwrap_or_else(|| panic!("no ex@32473 element in {sd}"));
    let params = element["value"]["kvlistValue"]["values"]
        .as_array()
        .unwrap();
    assert_eq!(params[0]["key"], "k");
    assert_eq!(params[0]["value"]["stringValue"], "v");
    assert_eq!(
        str_attr(by_message("udp three-one-six-four"), "proc_id"),
        Some("77")
    );

    let raw = items
        .iter()
        .find(|i| i.value["body"]["stringValue"] == "this is not syslog")
        .expect("the malformed message is kept");
    let why = str_attr(raw, "log.parse_error").expect("a parse-error attribute");
    assert!(why.starts_with("rfc5424: missing <PRI>"), "{why}");
    assert_eq!(
        agent.metric(
            r#"outpost_receiver_malformed_items_total{receiver="syslog/5424",reason="rfc5424"}"#
        ),
        1.0
    );
    assert_eq!(
        agent.metric(r#"outpost_receiver_accepted_items_total{receiver="syslog/5424"}"#),
        3.0
    );
    assert_eq!(
        agent.metric(r#"outpost_receiver_accepted_items_total{receiver="syslog/3164"}"#),
        2.0
    );
}
