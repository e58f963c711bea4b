//! The three OTLP signals and the protocol facts loadgen needs about each.
//!
//! One enum rather than three copies of the load loop: what differs per signal is only the
//! request built up front, the gRPC method and HTTP path, and which field of the response's
//! `partial_success` counts rejected items. Everything else is generic over bytes.

use clap::ValueEnum;
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceResponse, metrics::v1::ExportMetricsServiceResponse,
    trace::v1::ExportTraceServiceResponse,
};
use prost::Message;
use serde::Serialize;

/// An OTLP signal. Its item is a span, a metric data point or a log record: the unit OTLP's
/// `partial_success` counts rejections in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    /// Spans, grouped in traces.
    Traces,
    /// Gauge and sum data points.
    Metrics,
    /// Log records.
    Logs,
}

impl Signal {
    /// The name used on the command line and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    /// What one item of this signal is called, for human output.
    pub const fn item_name(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Metrics => "data points",
            Signal::Logs => "log records",
        }
    }

    /// The gRPC method of the signal's OTLP collector service.
    pub const fn grpc_path(self) -> &'static str {
        match self {
            Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        }
    }

    /// The OTLP/HTTP path appended to an endpoint that has none.
    pub const fn http_path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
            Signal::Logs => "/v1/logs",
        }
    }

    /// Reads how many items a successful export response says were rejected.
    ///
    /// An empty body is a response with no `partial_success`: everything was accepted. Negative
    /// counts from a confused server are read as zero rather than inflating the accepted count.
    pub fn rejected_items(self, response: &[u8]) -> Result<u64, prost::DecodeError> {
        let rejected = match self {
            Signal::Traces => ExportTraceServiceResponse::decode(response)?
                .partial_success
                .map_or(0, |p| p.rejected_spans),
            Signal::Metrics => ExportMetricsServiceResponse::decode(response)?
                .partial_success
                .map_or(0, |p| p.rejected_data_points),
            Signal::Logs => ExportLogsServiceResponse::decode(response)?
                .partial_success
                .map_or(0, |p| p.rejected_log_records),
        };
        Ok(u64::try_from(rejected).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::{
        logs::v1::ExportLogsPartialSuccess, metrics::v1::ExportMetricsPartialSuccess,
        trace::v1::ExportTracePartialSuccess,
    };

    #[test]
    fn rejected_items_come_from_each_signals_partial_success() {
        let traces = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 3,
                error_message: "too old".into(),
            }),
        };
        let metrics = ExportMetricsServiceResponse {
            partial_success: Some(ExportMetricsPartialSuccess {
                rejected_data_points: 4,
                error_message: String::new(),
            }),
        };
        let logs = ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: 5,
                error_message: String::new(),
            }),
        };
        assert_eq!(
            Signal::Traces
                .rejected_items(&traces.encode_to_vec())
                .unwrap(),
            3
        );
        assert_eq!(
            Signal::Metrics
                .rejected_items(&metrics.encode_to_vec())
                .unwrap(),
            4
        );
        assert_eq!(
            Signal::Logs.rejected_items(&logs.encode_to_vec()).unwrap(),
            5
        );
    }

    #[test]
    fn empty_and_negative_mean_nothing_rejected() {
        for signal in [Signal::Traces, Signal::Metrics, Signal::Logs] {
            assert_eq!(signal.rejected_items(&[]).unwrap(), 0);
        }
        let negative = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: -7,
                error_message: String::new(),
            }),
        };
        assert_eq!(
            Signal::Traces
                .rejected_items(&negative.encode_to_vec())
                .unwrap(),
            0
        );
    }

    #[test]
    fn garbage_is_a_decode_error() {
        assert!(Signal::Traces.rejected_items(&[0xff, 0xff, 0xff]).is_err());
    }
}
