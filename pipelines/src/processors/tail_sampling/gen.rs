//! A generator of traces with a known mix (fast, slow, error, huge), for the tail_sampling tests and
//! benches. Deterministic for a seed; spans look like an instrumented HTTP service's (routes, status
//! codes, peer names, database calls), so sizes and compressibility are realistic.

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};

use crate::signal::Traces;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceKind {
    /// 3–8 spans, under 100 ms, no error.
    Fast,
    /// 3–8 spans lasting 800–3000 ms.
    Slow,
    /// 3–8 fast spans, one with status ERROR.
    Error,
    /// `huge_spans` fast spans.
    Huge,
}

/// One generated trace.
#[derive(Debug, Clone)]
pub struct GenTrace {
    pub id: [u8; 16],
    pub kind: TraceKind,
    /// The root span first.
    pub spans: Vec<Span>,
}

pub struct TraceGen {
    state: u64,
    pub huge_spans: usize,
    /// Base time of the generated spans (Unix nanoseconds).
    pub now_ns: u64,
}

const SERVICES: [&str; 4] = ["checkout", "cart", "payments", "inventory"];
const ROUTES: [&str; 6] = [
    "/api/v1/cart/{id}",
    "/api/v1/checkout",
    "/api/v1/items/{sku}",
    "/api/v1/users/{id}/orders",
    "/healthz",
    "/api/v1/payments/{id}/capture",
];

fn s(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn i(k: &str, v: i64) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(v)),
        }),
        ..Default::default()
    }
}

impl TraceGen {
    pub fn new(seed: u64) -> Self {
        Self {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            huge_spans: 2000,
            now_ns: 1_700_000_000_000_000_000,
        }
    }

    /// xorshift64*: enough randomness for ids and mixes, with no dependency.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A kind drawn with the given percentages of errors, slow and huge traces (the rest fast).
    pub fn kind(&mut self, error_pct: u64, slow_pct: u64, huge_pct: u64) -> TraceKind {
        let r = self.below(100);
        if r < error_pct {
            TraceKind::Error
        } else if r < error_pct + slow_pct {
            TraceKind::Slow
        } else if r < error_pct + slow_pct + huge_pct {
            TraceKind::Huge
        } else {
            TraceKind::Fast
        }
    }

    pub fn trace(&mut self, kind: TraceKind) -> GenTrace {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.next_u64().to_be_bytes());
        id[8..].copy_from_slice(&self.next_u64().to_be_bytes());
        let n = match kind {
            TraceKind::Huge => self.huge_spans.max(2),
            _ => 3 + self.below(6) as usize,
        };
        let total_ms = match kind {
            TraceKind::Slow => 800 + self.below(2200),
            _ => 2 + self.below(90),
        };
        let start = self.now_ns + self.below(1_000_000_000);
        let root_id = self.next_u64().to_be_bytes().to_vec();
        let route = ROUTES[self.below(ROUTES.len() as u64) as usize];
        let error_at = (kind == TraceKind::Error).then(|| 1 + self.below(n as u64 - 1) as usize);
        let mut spans = Vec::with_capacity(n);
        for k in 0..n {
            let root = k == 0;
            let dur_ns = if root {
                total_ms * 1_000_000
            } else {
                self.below(total_ms * 1_000_000 / 2).max(1000)
            };
            let offset = if root {
                0
            } else {
                self.below(total_ms * 1_000_000 - dur_ns.min(total_ms * 1_000_000))
            };
            let errored = error_at == Some(k);
            let mut attributes = if root {
                vec![
                    s("http.request.method", "GET"),
                    s("http.route", route),
                    s("url.scheme", "https"),
                    s("server.address", "shop.example.internal"),
                    i(
                        "http.response.status_code",
                        if error_at.is_some() { 500 } else { 200 },
                    ),
                    s(
                        "user_agent.original",
                        "Mozilla/5.0 (X11; Linux x86_64) shop-client/4.2",
                    ),
                ]
            } else if k % 2 == 1 {
                vec![
                    s("db.system", "postgresql"),
                    s("db.name", "orders"),
                    s("db.operation", "SELECT"),
                    s(
                        "db.statement",
                        "SELECT id, sku, qty FROM order_items WHERE order_id = $1",
                    ),
                    s("server.address", "pg-primary.db.internal"),
                ]
            } else {
                vec![
                    s("rpc.system", "grpc"),
                    s("rpc.service", "inventory.v1.Stock"),
                    s("rpc.method", "Reserve"),
                    i("rpc.grpc.status_code", if errored { 13 } else { 0 }),
                    s("server.address", "inventory.svc.cluster.local"),
                ]
            };
            attributes.push(i("thread.id", 10 + self.below(40) as i64));
            spans.push(Span {
                trace_id: id.to_vec(),
                span_id: if root {
                    root_id.clone()
                } else {
                    self.next_u64().to_be_bytes().to_vec()
                },
                parent_span_id: if root { Vec::new() } else { root_id.clone() },
                name: if root {
                    format!("GET {route}")
                } else if k % 2 == 1 {
                    "SELECT orders.order_items".into()
                } else {
                    "inventory.v1.Stock/Reserve".into()
                },
                kind: if root {
                    span::SpanKind::Server as i32
                } else {
                    span::SpanKind::Client as i32
                },
                start_time_unix_nano: start + offset,
                end_time_unix_nano: start + offset + dur_ns,
                attributes,
                status: Some(Status {
                    code: if errored {
                        status::StatusCode::Error as i32
                    } else {
                        status::StatusCode::Unset as i32
                    },
                    message: if errored {
                        "upstream returned 503".into()
                    } else {
                        String::new()
                    },
                }),
                ..Default::default()
            });
        }
        GenTrace { id, kind, spans }
    }

    /// One export request holding `spans`, each under its service's resource (by trace id, so a trace's
    /// spans share a service) and an instrumentation scope.
    pub fn request(&self, spans: Vec<Span>) -> Traces {
        let mut by_service: Vec<Vec<Span>> = vec![Vec::new(); SERVICES.len()];
        for sp in spans {
            let svc = sp.trace_id.first().copied().unwrap_or(0) as usize % SERVICES.len();
            by_service[svc].push(sp);
        }
        Traces {
            resource_spans: by_service
                .into_iter()
                .enumerate()
                .filter(|(_, v)| !v.is_empty())
                .map(|(svc, spans)| ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![
                            s("service.name", SERVICES[svc]),
                            s("service.version", "2.14.1"),
                            s("host.name", "edge-node-17"),
                            s("telemetry.sdk.language", "python"),
                            s("telemetry.sdk.name", "opentelemetry"),
                            s("telemetry.sdk.version", "1.27.0"),
                        ],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "opentelemetry.instrumentation.flask".into(),
                            version: "0.48b0".into(),
                            ..Default::default()
                        }),
                        spans,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        }
    }
}
