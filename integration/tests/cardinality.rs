//! `cardinality_limit` end to end: an OTLP/gRPC client sends a counter whose `user_id` label explodes
//! through outpost (cardinality_limit → disk queue → prometheusremotewrite) to a real Prometheus.
//!
//! - Prometheus ends up with no more series of the metric than its budget (the overflow series included),
//!   and the series' values add up to the client's total: the overflow series carries the rest.
//! - `/debug/cardinality` names `user_id` as the label that grows.
//! - After a restart on the same data directory, the same series are admitted although the client now
//!   sends the users in the opposite order.

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point::Value, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use outpost_integration::gen::{self, kv_str, METRICS_PATH};
use outpost_integration::prometheus::Prometheus;
use outpost_integration::{free_port, http_get, wait_for, Agent};
use prost::Message;

const USERS: u64 = 60;
const BUDGET: usize = 10;

fn config(grpc: u16, write_url: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
processors:
  cardinality_limit:
    persist_interval: 1s
    metrics:
      - name: shop_logins
        max_series: {BUDGET}
exporters:
  prometheusremotewrite:
    endpoint: {write_url}
    timeout: 10s
extensions:
  health_check:
    endpoint: "@ADMIN@"
queue:
  directory: "@DATA_DIR@"
service:
  extensions: [health_check]
  pipelines:
    metrics:
      receivers: [otlp]
      processors: [cardinality_limit]
      exporters: [prometheusremotewrite]
"#
    )
}

/// One request of the counter `shop_logins` with one point per user, in `users` order, each user's
/// cumulative value given by `value`.
fn request(users: &[u64], value: impl Fn(u64) -> i64, time: u64) -> ExportMetricsServiceRequest {
    let points = users
        .iter()
        .map(|&u| NumberDataPoint {
            attributes: vec![kv_str("user_id", &format!("user-{u}"))],
            start_time_unix_nano: time - 60_000_000_000,
            time_unix_nano: time,
            value: Some(Value::AsInt(value(u))),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", "shop")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "shop_logins".into(),
                    data: Some(Data::Sum(Sum {
                        data_points: points,
                        aggregation_temporality: 2,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn send(grpc: u16, req: &ExportMetricsServiceRequest) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let channel = gen::grpc_channel(grpc).await;
        gen::grpc_raw(channel, METRICS_PATH, req.encode_to_vec(), None)
            .await
            .expect("outpost accepted the request");
    });
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// The `shop_logins_total` series Prometheus holds: user_id (or "overflow") → latest value.
fn series_in(prom: &Prometheus) -> BTreeMap<String, f64> {
    prom.query("shop_logins_total")
        .iter()
        .map(|s| {
            let m = &s["metric"];
            let key = match (m["user_id"].as_str(), m["otel_metric_overflow"].as_str()) {
                (Some(u), _) => u.to_owned(),
                (None, Some("true")) => "overflow".to_owned(),
                _ => format!("unexpected {m}"),
            };
            let v = s["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN);
            (key, v)
        })
        .collect()
}

/// Waits until Prometheus's latest values add up to `total`, and returns them.
fn wait_for_total(prom: &Prometheus, agent: &Agent, total: f64) -> BTreeMap<String, f64> {
    wait_for(
        Duration::from_secs(60),
        "Prometheus to hold the whole total",
        || {
            let s = series_in(prom);
            (s.values().sum::<f64>() == total).then_some(s)
        },
        || {
            format!(
                "{:?}\n{}\n--- outpost log ---\n{}",
                series_in(prom),
                agent.metrics_text(),
                agent.log()
            )
        },
    )
}

#[test]
fn an_exploding_label_is_trimmed_to_budget_and_the_same_series_survive_a_restart() {
    let prom = Prometheus::start();
    let data = tempfile::tempdir().unwrap();
    let grpc = free_port();
    let cfg = config(grpc, &prom.write_url());

    let mut agent = Agent::spawn(&cfg, Some(data.path()), &[]);
    agent.wait_ready();
    let users: Vec<u64> = (0..USERS).collect();
    send(grpc, &request(&users, |u| (u + 1) as i64, now_nanos()));
    let total: f64 = (1..=USERS).sum::<u64>() as f64;
    let first = wait_for_total(&prom, &agent, total);
    assert!(
        first.len() <= BUDGET,
        "{} series for a budget of {BUDGET}: {first:?}",
        first.len()
    );
    let admitted: Vec<String> = first.keys().filter(|k| *k != "overflow").cloned().collect();
    assert_eq!(admitted.len(), BUDGET - 1, "{first:?}");
    let admitted_total: f64 = admitted.iter().map(|k| first[k]).sum();
    assert_eq!(first["overflow"], total - admitted_total);
    assert!(first["overflow"] > 0.0);

    let trimmed = outpost_integration::sum_metric(
        &agent.metrics_text(),
        r#"outpost_cardinality_trimmed_items_total{metric="shop_logins",action="overflow"}"#,
    );
    assert_eq!(trimmed, (USERS as usize - (BUDGET - 1)) as f64);
    // The report is refreshed every second.
    let report = wait_for(
        Duration::from_secs(10),
        "/debug/cardinality to show the metric",
        || {
            let debug = http_get(agent.admin_addr(), "/debug/cardinality").ok()?;
            assert_eq!(debug.status, 200);
            let report: serde_json::Value = serde_json::from_str(&debug.body).unwrap();
            (report["processors"][0]["worst_metrics"][0]["metric"] == "shop_logins")
                .then_some(report)
        },
        || agent.log(),
    );
    let p = &report["processors"][0];
    assert_eq!(p["worst_labels"][0]["metric"], "shop_logins", "{report:#}");
    assert_eq!(p["worst_labels"][0]["label"], "user_id", "{report:#}");
    assert_eq!(p["worst_labels"][0]["distinct_values"], USERS, "{report:#}");
    assert_eq!(p["worst_metrics"][0]["tracked_series"], BUDGET as u64 - 1);

    // Restart on the same data directory; the users now come in the opposite order, so without the
    // persisted allowlist other users would be admitted first.
    agent.sigterm();
    agent.wait_exit(Duration::from_secs(30));
    drop(agent);
    let mut agent = Agent::spawn(&cfg, Some(data.path()), &[]);
    agent.wait_ready();
    let reversed: Vec<u64> = (0..USERS).rev().collect();
    send(grpc, &request(&reversed, |u| (u + 101) as i64, now_nanos()));
    let total: f64 = (101..=USERS + 100).sum::<u64>() as f64;
    let second = wait_for_total(&prom, &agent, total);
    let admitted_again: Vec<String> = second
        .keys()
        .filter(|k| *k != "overflow")
        .cloned()
        .collect();
    assert_eq!(admitted_again, admitted, "{second:?}");
    assert!(second.len() <= BUDGET);
}
