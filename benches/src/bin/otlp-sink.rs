//! `otlp-sink`: the destination end of outpost's end-to-end benchmarks. An OTLP/gRPC server (all three
//! signals) that decodes every request, counts its items and answers success — nothing else, so the
//! CPU it uses is the least any real backend would. Prints its bound address on the first line, and a
//! JSON line of totals every `--report-every` and on SIGTERM / SIGINT.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

#[derive(Parser)]
#[command(about = "Counts OTLP items it receives over gRPC; for end-to-end benchmarks")]
struct Opts {
    /// Address to listen on (port 0 picks a free one; the bound address is printed first).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// How often to print the running totals (0: only at exit).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    report_every: Duration,
}

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    spans: AtomicU64,
    points: AtomicU64,
    logs: AtomicU64,
}

impl Counts {
    fn json(&self) -> String {
        format!(
            r#"{{"requests":{},"spans":{},"data_points":{},"log_records":{}}}"#,
            self.requests.load(Ordering::Relaxed),
            self.spans.load(Ordering::Relaxed),
            self.points.load(Ordering::Relaxed),
            self.logs.load(Ordering::Relaxed)
        )
    }
}

#[derive(Clone)]
struct Sink(Arc<Counts>);

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        req: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let n: usize = req
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.0.requests.fetch_add(1, Ordering::Relaxed);
        self.0.spans.fetch_add(n as u64, Ordering::Relaxed);
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Sink {
    async fn export(
        &self,
        req: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        let mut n = 0usize;
        for m in req
            .get_ref()
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
        {
            n += match &m.data {
                Some(Data::Gauge(g)) => g.data_points.len(),
                Some(Data::Sum(s)) => s.data_points.len(),
                Some(Data::Histogram(h)) => h.data_points.len(),
                Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
                Some(Data::Summary(s)) => s.data_points.len(),
                None => 0,
            };
        }
        self.0.requests.fetch_add(1, Ordering::Relaxed);
        self.0.points.fetch_add(n as u64, Ordering::Relaxed);
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Sink {
    async fn export(
        &self,
        req: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let n: usize = req
            .get_ref()
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum();
        self.0.requests.fetch_add(1, Ordering::Relaxed);
        self.0.logs.fetch_add(n as u64, Ordering::Relaxed);
        Ok(Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let opts = Opts::parse();
    let counts = Arc::new(Counts::default());
    let sink = Sink(counts.clone());
    let listener = tokio::net::TcpListener::bind(opts.listen).await?;
    println!("{}", listener.local_addr()?);
    let max = 64 * 1024 * 1024;
    let server = tonic::transport::Server::builder()
        .add_service(
            TraceServiceServer::new(sink.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(max),
        )
        .add_service(
            MetricsServiceServer::new(sink.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(max),
        )
        .add_service(
            LogsServiceServer::new(sink)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(max),
        );
    if !opts.report_every.is_zero() {
        let c = counts.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(opts.report_every).await;
                println!("{}", c.json());
            }
        });
    }
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    server
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            stop,
        )
        .await?;
    println!("{}", counts.json());
    Ok(())
}
