//! Command-line options and their validation into a [`Plan`].
//!
//! Every flag is checked by clap as it is parsed, so a bad flag is a clap error with a usage line,
//! never a panic. What depends on more than one flag (the endpoint's default and its `/v1/<signal>`
//! path, the stop condition) is settled once in [`Options::plan`]: the request loop only ever
//! reads plain, already-valid values from the [`Plan`].

use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::Serialize;

use super::compression::Compression;
use super::signal::Signal;

/// The default gRPC endpoint, where outpost's OTLP/gRPC receiver listens.
pub const DEFAULT_GRPC_ENDPOINT: &str = "127.0.0.1:4317";
/// The default HTTP endpoint, where outpost's OTLP/HTTP receiver listens.
pub const DEFAULT_HTTP_ENDPOINT: &str = "http://127.0.0.1:4318";
/// How long a run lasts when neither `--duration` nor `--count` is given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

const ABOUT: &str = "Send OTLP export requests to outpost (or any OTLP receiver) and measure it.";

const LONG_ABOUT: &str = "\
Send OTLP export requests to outpost (or any OTLP receiver) and measure it.

loadgen builds ONE export request for the chosen signal up front (--batch items with realistic \
resource, scope and attributes), encodes it once with prost and, for HTTP, compresses it once. \
Every request then sends those same bytes, so loadgen's own CPU goes to I/O, not to encoding \
(with --fresh-trace-ids, a copy of them with new trace ids).

It keeps --in-flight requests outstanding at once, optionally capped at --rate requests per \
second, until --duration has passed or --count requests were sent (whichever comes first; 10s \
when neither is given). Errors from the server are counted, never retried: it measures, it does \
not deliver. A server that is down is counted as connect_error until the end.

At the end it prints requests and items sent, items accepted (minus the partial_success \
rejections the server reported), throughput, latency percentiles and the server's answers by \
code: gRPC status names (OK, RESOURCE_EXHAUSTED, UNAVAILABLE, ...), HTTP statuses (200, 429, \
...), or connect_error, transport_error, timeout and bad_response for failures on the way.";

/// Which transport the export requests travel on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// OTLP/gRPC: unary Export calls over HTTP/2.
    Grpc,
    /// OTLP/HTTP: POST of binary protobuf to /v1/<signal>.
    Http,
}

impl Protocol {
    /// The name used on the command line and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::Http => "http",
        }
    }
}

/// The command line of `loadgen`.
#[derive(Debug, Clone, Parser)]
#[command(name = "loadgen", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Options {
    /// Which OTLP signal to send.
    ///
    /// An item is a span, a metric data point or a log record.
    #[arg(long, value_enum, default_value_t = Signal::Traces)]
    pub signal: Signal,

    /// Transport: OTLP/gRPC or OTLP/HTTP with binary protobuf.
    #[arg(long, value_enum, default_value_t = Protocol::Grpc)]
    pub protocol: Protocol,

    /// Where to send [default: 127.0.0.1:4317 for grpc, http://127.0.0.1:4318 for http]
    ///
    /// gRPC: host:port or http://host:port. HTTP: http://host:port, to which /v1/<signal> is
    /// appended, or a full URL with a path, used as is. No TLS: https is refused.
    #[arg(long, value_name = "ADDR")]
    pub endpoint: Option<String>,

    /// Items in each export request (spans, data points or log records).
    #[arg(long, value_name = "N", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch: u32,

    /// Compression of the request body (over gRPC, tonic compresses each request)
    ///
    /// HTTP sends the bytes compressed once up front, with Content-Encoding. gRPC lets tonic
    /// compress each message, because tonic has no clean way to send pre-compressed bytes with
    /// the compressed flag set: gzip/zstd over gRPC costs loadgen CPU per request. The bytes on
    /// the wire are the same either way (same settings as tonic).
    #[arg(long, value_enum, default_value_t = Compression::None)]
    pub compression: Compression,

    /// Requests outstanding at once.
    ///
    /// Each in-flight slot sends its next request as soon as its previous one is answered.
    #[arg(long = "in-flight", value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub in_flight: u32,

    /// Connections to open (gRPC, or HTTP with --http2)
    ///
    /// gRPC multiplexes the in-flight requests over these HTTP/2 connections, and so does HTTP
    /// with --http2. HTTP/1.1 needs one connection per in-flight request whatever this says.
    #[arg(long, value_name = "K", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connections: u32,

    /// Stop sending after this long, e.g. 30s, 2m, 1m30s, 500ms [default: 10s without --count]
    ///
    /// Requests in flight at the end are waited for, up to --timeout.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Stop after this many requests. With --duration too, whichever comes first.
    #[arg(long, value_name = "M", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Cap on requests per second across all in-flight slots, e.g. 5000 or 0.5
    ///
    /// Without it, loadgen sends as fast as the server answers. A cap, not a schedule: when the
    /// server falls behind, missed starts are skipped, not sent in a burst later.
    #[arg(long, value_name = "R", value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Give up on a request after this long and count it as `timeout`
    ///
    /// Also the connect timeout.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// HTTP only: speak HTTP/2 (cleartext, prior knowledge) instead of HTTP/1.1
    #[arg(long)]
    pub http2: bool,

    /// Traces over gRPC only: give every request new trace ids
    ///
    /// Each request is a copy of the encoded one with a request counter written into its trace
    /// ids, so a tail-sampling server sees new traces rather than late spans of the same ones.
    /// Costs loadgen a copy of the request per call.
    #[arg(long = "fresh-trace-ids")]
    pub fresh_trace_ids: bool,

    /// Print the final report as one JSON object on one line of stdout, for scripts
    #[arg(long)]
    pub json: bool,

    /// No progress line on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// When a run stops sending. At least one of the two is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    /// Stop starting requests once this much time has passed since the start.
    pub duration: Option<Duration>,
    /// Stop after this many requests have been started.
    pub count: Option<u64>,
}

/// A validated run: what [`super::run`] does, with every default and cross-flag rule applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub signal: Signal,
    pub protocol: Protocol,
    /// The resolved endpoint: `http://host:port` for gRPC, the full POST URL for HTTP.
    pub endpoint: String,
    pub batch: u32,
    pub compression: Compression,
    pub in_flight: u32,
    pub connections: u32,
    pub stop: Stop,
    /// Requests per second, finite and positive.
    pub rate: Option<f64>,
    pub timeout: Duration,
    pub http2: bool,
    pub fresh_trace_ids: bool,
    /// Print a progress line on stderr every second.
    pub progress: bool,
}

/// An error a user can meet before any request is sent. Failures of the server are never
/// errors: they are counted in the report.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error("--endpoint: {reason}: '{endpoint}' ({expected})")]
    Endpoint {
        endpoint: String,
        reason: &'static str,
        expected: &'static str,
    },
    #[error("--protocol http: cannot build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    #[error("--fresh-trace-ids: only with --signal traces and --protocol grpc")]
    FreshTraceIds,
}

impl Options {
    /// Applies the defaults that depend on other flags and checks what clap could not.
    pub fn plan(&self) -> Result<Plan, LoadgenError> {
        let endpoint = resolve_endpoint(self.protocol, self.signal, self.endpoint.as_deref())?;
        if self.fresh_trace_ids
            && (self.signal != Signal::Traces || self.protocol != Protocol::Grpc)
        {
            return Err(LoadgenError::FreshTraceIds);
        }
        let stop = match (self.duration, self.count) {
            (None, None) => Stop {
                duration: Some(DEFAULT_DURATION),
                count: None,
            },
            (duration, count) => Stop { duration, count },
        };
        Ok(Plan {
            signal: self.signal,
            protocol: self.protocol,
            endpoint,
            batch: self.batch,
            compression: self.compression,
            in_flight: self.in_flight,
            connections: self.connections,
            stop,
            rate: self.rate,
            timeout: self.timeout,
            http2: self.http2,
            fresh_trace_ids: self.fresh_trace_ids,
            progress: !self.quiet,
        })
    }
}

/// Parses a human duration such as `10s`, `2m`, `1m30s` or `250ms`. A bare number is refused:
/// `--duration 10` is ambiguous, and guessing seconds would hide typos such as a missing `m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim()).map_err(|err| {
        format!("not a duration: '{text}' ({err}; expected e.g. 10s, 2m, 1m30s, 500ms)")
    })?;
    if duration.is_zero() {
        return Err(format!(
            "'{text}' is zero; expected a positive duration such as 10s"
        ));
    }
    Ok(duration)
}

/// Parses a requests-per-second cap: a finite number above zero.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text.trim().parse().map_err(|_| {
        format!("not a number: '{text}' (expected requests per second, e.g. 1000 or 0.5)")
    })?;
    // Below about one request a day a rate is a typo, above a billion it caps nothing; NaN and
    // infinity fall outside too.
    if !(1e-5..=1e9).contains(&rate) {
        return Err(format!(
            "'{text}' is out of range (expected 0.00001 to 1000000000 requests per second)"
        ));
    }
    Ok(rate)
}

/// Turns `--endpoint` (or its default) into what the transport needs.
///
/// gRPC gets an origin, `http://host:port`; a path is refused because the gRPC path is the
/// service's. HTTP gets the full POST URL: `/v1/<signal>` is appended unless the endpoint already
/// has a path, so a receiver mounted elsewhere can be reached with a full URL.
pub fn resolve_endpoint(
    protocol: Protocol,
    signal: Signal,
    endpoint: Option<&str>,
) -> Result<String, LoadgenError> {
    let raw = endpoint.map(str::trim).unwrap_or(match protocol {
        Protocol::Grpc => DEFAULT_GRPC_ENDPOINT,
        Protocol::Http => DEFAULT_HTTP_ENDPOINT,
    });
    let expected = match protocol {
        Protocol::Grpc => "expected host:port or http://host:port",
        Protocol::Http => "expected http://host:port or http://host:port/path",
    };
    let fail = |reason| LoadgenError::Endpoint {
        endpoint: raw.to_owned(),
        reason,
        expected,
    };

    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("http://{raw}")
    };
    let uri: http::Uri = with_scheme.parse().map_err(|_| fail("not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err(fail("https is not supported (loadgen has no TLS)")),
        _ => return Err(fail("unsupported scheme")),
    }
    let Some(authority) = uri.authority() else {
        return Err(fail("no host"));
    };
    if authority.host().is_empty() {
        return Err(fail("no host"));
    }
    if uri.query().is_some() {
        return Err(fail("a query string is not supported"));
    }
    let has_path = !matches!(uri.path(), "" | "/");

    match protocol {
        Protocol::Grpc if has_path => Err(fail("a gRPC endpoint has no path")),
        Protocol::Grpc => Ok(format!("http://{authority}")),
        Protocol::Http if has_path => Ok(format!("http://{authority}{}", uri.path())),
        Protocol::Http => Ok(format!("http://{authority}{}", signal.http_path())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, clap::Error> {
        Options::try_parse_from(std::iter::once("loadgen").chain(args.iter().copied()))
    }

    #[test]
    fn durations_parse_in_human_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(" 1h "), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn durations_without_unit_or_zero_are_refused() {
        for bad in ["", "10", "abc", "10 parsecs", "-5s", "0s", "0ms"] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.contains(bad), "error names the input: {err}");
        }
    }

    #[test]
    fn rates_must_be_positive_and_finite() {
        assert_eq!(parse_rate("1000"), Ok(1000.0));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        for bad in ["0", "-1", "NaN", "inf", "fast", ""] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn grpc_endpoints_become_origins() {
        let grpc = |e| resolve_endpoint(Protocol::Grpc, Signal::Traces, e);
        assert_eq!(grpc(None).unwrap(), "http://127.0.0.1:4317");
        assert_eq!(
            grpc(Some("localhost:9000")).unwrap(),
            "http://localhost:9000"
        );
        assert_eq!(
            grpc(Some("http://localhost:4317")).unwrap(),
            "http://localhost:4317"
        );
        assert_eq!(
            grpc(Some("http://localhost:4317/")).unwrap(),
            "http://localhost:4317"
        );
        assert_eq!(grpc(Some("[::1]:4317")).unwrap(), "http://[::1]:4317");
    }

    #[test]
    fn http_endpoints_get_the_signal_path_unless_they_have_one() {
        let http = |s, e| resolve_endpoint(Protocol::Http, s, e);
        assert_eq!(
            http(Signal::Traces, None).unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            http(Signal::Metrics, None).unwrap(),
            "http://127.0.0.1:4318/v1/metrics"
        );
        assert_eq!(
            http(Signal::Logs, Some("http://h:1")).unwrap(),
            "http://h:1/v1/logs"
        );
        assert_eq!(
            http(Signal::Logs, Some("http://h:1/")).unwrap(),
            "http://h:1/v1/logs"
        );
        assert_eq!(
            http(Signal::Logs, Some("h:1")).unwrap(),
            "http://h:1/v1/logs"
        );
        assert_eq!(
            http(Signal::Traces, Some("http://h:1/otlp/v1/traces")).unwrap(),
            "http://h:1/otlp/v1/traces"
        );
    }

    #[test]
    fn bad_endpoints_are_sentences_naming_the_input() {
        let cases = [
            (Protocol::Grpc, "https://h:4317", "https is not supported"),
            (Protocol::Http, "https://h:4318", "https is not supported"),
            (
                Protocol::Grpc,
                "http://h:4317/x",
                "a gRPC endpoint has no path",
            ),
            (Protocol::Http, "ftp://h:1", "unsupported scheme"),
            (Protocol::Http, "http://h:1/v1/traces?x=1", "query string"),
            (Protocol::Grpc, "not a url at all", "not a URL"),
        ];
        for (protocol, endpoint, reason) in cases {
            let err = resolve_endpoint(protocol, Signal::Traces, Some(endpoint))
                .expect_err(endpoint)
                .to_string();
            assert!(err.starts_with("--endpoint: "), "{err}");
            assert!(err.contains(reason), "{err}");
            assert!(err.contains(endpoint), "{err}");
        }
    }

    #[test]
    fn defaults_run_ten_seconds_of_traces_over_grpc() {
        let plan = parse(&[]).unwrap().plan().unwrap();
        assert_eq!(plan.signal, Signal::Traces);
        assert_eq!(plan.protocol, Protocol::Grpc);
        assert_eq!(plan.endpoint, "http://127.0.0.1:4317");
        assert_eq!(plan.batch, 512);
        assert_eq!(plan.compression, Compression::None);
        assert_eq!(plan.in_flight, 8);
        assert_eq!(plan.connections, 1);
        assert_eq!(
            plan.stop,
            Stop {
                duration: Some(DEFAULT_DURATION),
                count: None
            }
        );
        assert_eq!(plan.rate, None);
        assert!(plan.progress);
    }

    #[test]
    fn count_alone_has_no_time_limit_and_both_are_kept() {
        let plan = parse(&["--count", "20"]).unwrap().plan().unwrap();
        assert_eq!(
            plan.stop,
            Stop {
                duration: None,
                count: Some(20)
            }
        );
        let plan = parse(&["--count", "20", "--duration", "1s"])
            .unwrap()
            .plan()
            .unwrap();
        assert_eq!(
            plan.stop,
            Stop {
                duration: Some(Duration::from_secs(1)),
                count: Some(20)
            }
        );
    }

    #[test]
    fn bad_flags_are_clap_errors() {
        for args in [
            &["--batch", "0"][..],
            &["--in-flight", "0"],
            &["--connections", "0"],
            &["--count", "0"],
            &["--signal", "profiles"],
            &["--protocol", "udp"],
            &["--compression", "brotli"],
            &["--duration", "10"],
            &["--rate", "-3"],
            &["--no-such-flag"],
        ] {
            assert!(parse(args).is_err(), "{args:?} should be refused");
        }
    }

    #[test]
    fn help_mentions_every_flag() {
        let help = <Options as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        for flag in [
            "--signal",
            "--protocol",
            "--endpoint",
            "--batch",
            "--compression",
            "--in-flight",
            "--connections",
            "--duration",
            "--count",
            "--rate",
            "--timeout",
            "--http2",
            "--json",
            "--quiet",
        ] {
            assert!(help.contains(flag), "help lacks {flag}");
        }
        <Options as clap::CommandFactory>::command().debug_assert();
    }
}
