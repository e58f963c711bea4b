//! What the network side needs to know about each OTLP signal, on top of [`SignalData`]: its gRPC method
//! path, its response type and partial-success shape, and which items a receiver must reject as invalid.
//! Receivers and exporters are written once against [`OtlpSignal`].

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use outpost_pipelines::signal::metric_points;
use outpost_pipelines::{Logs, Metrics, SignalData, Traces};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Items a receiver removed from a request, and why (told to the client through partial_success).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub items: usize,
    pub message: String,
}

pub trait OtlpSignal: SignalData + Serialize + DeserializeOwned {
    type Response: prost::Message + Default + Serialize + DeserializeOwned + Send + 'static;

    /// The gRPC method, e.g. `/opentelemetry.proto.collector.trace.v1.TraceService/Export`.
    const GRPC_PATH: &'static str;

    /// A response carrying `rejected` as partial_success (no partial_success when nothing was rejected).
    fn response(rejected: &Rejected) -> Self::Response;

    /// The rejected item count a destination reported, and its message.
    fn rejected_in(response: &Self::Response) -> Rejected;

    /// Removes items no destination could accept (malformed ids, nameless metrics).
    fn reject_invalid(&mut self) -> Rejected;

    /// One short line per item, for the debug exporter's `normal` verbosity.
    fn item_lines(&self) -> Vec<String>;
}

fn ok_id(id: &[u8], len: usize, optional: bool) -> bool {
    id.len() == len || (optional && id.is_empty())
}

/// Removes items failing `valid` from every scope, counting them; the reasons are joined for the message.
macro_rules! reject_where {
    ($data:expr, $res:ident, $scope:ident, $items:ident, |$item:ident| $check:expr) => {{
        let mut rejected = Rejected::default();
        for r in &mut $data.$res {
            for s in &mut r.$scope {
                s.$items.retain(|$item| match $check {
                    Ok(()) => true,
                    Err(why) => {
                        if rejected.items == 0 {
                            rejected.message = why;
                        }
                        rejected.items += 1;
                        false
                    }
                });
            }
        }
        if rejected.items > 1 {
            rejected.message = format!(
                "{} (and {} more invalid)",
                rejected.message,
                rejected.items - 1
            );
        }
        if rejected.items > 0 {
            $data.prune_empty();
        }
        rejected
    }};
}

impl OtlpSignal for Traces {
    type Response = ExportTraceServiceResponse;
    const GRPC_PATH: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

    fn response(rejected: &Rejected) -> Self::Response {
        ExportTraceServiceResponse {
            partial_success: (rejected.items > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: rejected.items as i64,
                error_message: rejected.message.clone(),
            }),
        }
    }

    fn rejected_in(response: &Self::Response) -> Rejected {
        response
            .partial_success
            .as_ref()
            .map(|p| Rejected {
                items: p.rejected_spans.max(0) as usize,
                message: p.error_message.clone(),
            })
            .unwrap_or_default()
    }

    fn reject_invalid(&mut self) -> Rejected {
        reject_where!(self, resource_spans, scope_spans, spans, |span| {
            if !ok_id(&span.trace_id, 16, false) {
                Err(format!(
                    "span '{}': trace_id must be 16 bytes, got {}",
                    span.name,
                    span.trace_id.len()
                ))
            } else if !ok_id(&span.span_id, 8, false) {
                Err(format!(
                    "span '{}': span_id must be 8 bytes, got {}",
                    span.name,
                    span.span_id.len()
                ))
            } else if !ok_id(&span.parent_span_id, 8, true) {
                Err(format!(
                    "span '{}': parent_span_id must be empty or 8 bytes, got {}",
                    span.name,
                    span.parent_span_id.len()
                ))
            } else {
                Ok(())
            }
        })
    }

    fn item_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for rs in &self.resource_spans {
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    out.push(format!(
                        "span {} trace_id={} span_id={} kind={} duration={}ns attributes={}",
                        s.name,
                        hex(&s.trace_id),
                        hex(&s.span_id),
                        s.kind,
                        s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano),
                        s.attributes.len()
                    ));
                }
            }
        }
        out
    }
}

impl OtlpSignal for Logs {
    type Response = ExportLogsServiceResponse;
    const GRPC_PATH: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

    fn response(rejected: &Rejected) -> Self::Response {
        ExportLogsServiceResponse {
            partial_success: (rejected.items > 0).then(|| ExportLogsPartialSuccess {
                rejected_log_records: rejected.items as i64,
                error_message: rejected.message.clone(),
            }),
        }
    }

    fn rejected_in(response: &Self::Response) -> Rejected {
        response
            .partial_success
            .as_ref()
            .map(|p| Rejected {
                items: p.rejected_log_records.max(0) as usize,
                message: p.error_message.clone(),
            })
            .unwrap_or_default()
    }

    fn reject_invalid(&mut self) -> Rejected {
        reject_where!(self, resource_logs, scope_logs, log_records, |rec| {
            if !ok_id(&rec.trace_id, 16, true) {
                Err(format!(
                    "log record: trace_id must be empty or 16 bytes, got {}",
                    rec.trace_id.len()
                ))
            } else if !ok_id(&rec.span_id, 8, true) {
                Err(format!(
                    "log record: span_id must be empty or 8 bytes, got {}",
                    rec.span_id.len()
                ))
            } else {
                Ok(())
            }
        })
    }

    fn item_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for rl in &self.resource_logs {
            for sl in &rl.scope_logs {
                for r in &sl.log_records {
                    let body = r
                        .body
                        .as_ref()
                        .map(|b| format!("{:?}", b.value))
                        .unwrap_or_default();
                    out.push(format!(
                        "log severity={} body={} attributes={}",
                        r.severity_text,
                        truncate(&body, 200),
                        r.attributes.len()
                    ));
                }
            }
        }
        out
    }
}

impl OtlpSignal for Metrics {
    type Response = ExportMetricsServiceResponse;
    const GRPC_PATH: &'static str =
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

    fn response(rejected: &Rejected) -> Self::Response {
        ExportMetricsServiceResponse {
            partial_success: (rejected.items > 0).then(|| ExportMetricsPartialSuccess {
                rejected_data_points: rejected.items as i64,
                error_message: rejected.message.clone(),
            }),
        }
    }

    fn rejected_in(response: &Self::Response) -> Rejected {
        response
            .partial_success
            .as_ref()
            .map(|p| Rejected {
                items: p.rejected_data_points.max(0) as usize,
                message: p.error_message.clone(),
            })
            .unwrap_or_default()
    }

    fn reject_invalid(&mut self) -> Rejected {
        // A metric without a name cannot be stored anywhere; its points are rejected.
        let mut rejected = Rejected::default();
        for rm in &mut self.resource_metrics {
            for sm in &mut rm.scope_metrics {
                sm.metrics.retain(|m| {
                    if m.name.is_empty() {
                        rejected.items += metric_points(m);
                        return false;
                    }
                    true
                });
            }
        }
        if rejected.items > 0 {
            rejected.message = format!("{} data points of metrics without a name", rejected.items);
            self.prune_empty();
        }
        rejected
    }

    fn item_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for rm in &self.resource_metrics {
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    let kind = match &m.data {
                        Some(d) => format!("{d:?}").split('(').next().unwrap_or("").to_owned(),
                        None => "Empty".into(),
                    };
                    out.push(format!("metric {} type={} unit={}", m.name, kind, m.unit));
                }
            }
        }
        out
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn span(trace_len: usize, span_len: usize) -> Span {
        Span {
            name: "s".into(),
            trace_id: vec![1; trace_len],
            span_id: vec![2; span_len],
            ..Default::default()
        }
    }

    #[test]
    fn invalid_spans_are_rejected_and_counted() {
        let mut t = Traces {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span(16, 8), span(15, 8), span(16, 0)],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let r = t.reject_invalid();
        assert_eq!(r.items, 2);
        assert!(
            r.message.contains("trace_id must be 16 bytes, got 15"),
            "{}",
            r.message
        );
        assert_eq!(t.item_count(), 1);
        let resp = Traces::response(&r);
        assert_eq!(Traces::rejected_in(&resp), r);
    }

    #[test]
    fn otlp_json_decodes_per_the_spec() {
        // The example from the OTLP specification's JSON encoding: hex ids, enum as integer, int as string.
        let json = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"my.service"}}]},
          "scopeSpans":[{"scope":{"name":"my.library","version":"1.0.0"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",
          "spanId":"eee19b7ec3c1b174","parentSpanId":"eee19b7ec3c1b173","name":"I'm a server span","startTimeUnixNano":"1544712660000000000",
          "endTimeUnixNano":"1544712661000000000","kind":2,"attributes":[{"key":"my.span.attr","value":{"intValue":"42"}}]}]}]}]}"#;
        let t: Traces = serde_json::from_str(json).unwrap();
        let s = &t.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(s.trace_id.len(), 16);
        assert_eq!(s.trace_id[0], 0x5b);
        assert_eq!(s.kind, 2);
        assert_eq!(s.start_time_unix_nano, 1_544_712_660_000_000_000);
        assert_eq!(t.clone().reject_invalid().items, 0);
    }
}
