//! The signal model: one trait, [`SignalData`], implemented by the three OTLP export requests, so every
//! pipeline stage is written once and monomorphised per signal.
//!
//! Data stays in `opentelemetry-proto`'s prost types from receiver to exporter. The resource → scope →
//! item grouping is never flattened: splitting a batch keeps each item under a copy of its resource and
//! scope, and merging appends resource groups. An "item" is a span, a metric data point, or a log record,
//! the unit every counter in outpost counts.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, ExponentialHistogram, Gauge, Histogram, Metric, ResourceMetrics, ScopeMetrics,
    Sum, Summary,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use outpost_config::Signal;

pub type Traces = ExportTraceServiceRequest;
pub type Metrics = ExportMetricsServiceRequest;
pub type Logs = ExportLogsServiceRequest;

/// What every stage needs to know about a signal's payload.
pub trait SignalData: prost::Message + Default + Clone + Send + Sync + 'static {
    const SIGNAL: Signal;

    /// Spans, data points or log records in this payload.
    fn item_count(&self) -> usize;

    /// Calls `f` with each resource's attribute list, creating an empty resource where none is set.
    fn for_each_resource_attrs(&mut self, f: &mut dyn FnMut(&mut Vec<KeyValue>));

    /// Calls `f` with each item's attribute list (span, data point, log record).
    fn for_each_item_attrs(&mut self, f: &mut dyn FnMut(&mut Vec<KeyValue>));

    /// Moves `other`'s resource groups to the end of this payload.
    fn append(&mut self, other: Self);

    /// Removes the first `n` items and returns them as a payload of their own, with their resources and
    /// scopes copied. With `n >= item_count()` it takes everything.
    fn split_front(&mut self, n: usize) -> Self;

    /// Removes resource and scope groups left without items (after filtering or splitting).
    fn prune_empty(&mut self);
}

/// A level of the OTLP tree: something with a weight in items that can give up its first `n`.
trait Node: Sized {
    fn weight(&self) -> usize;
    /// Only called with `0 < n < self.weight()`.
    fn split_front(&mut self, n: usize) -> Self;
}

/// Takes the first `n` items' worth of nodes off `v`, splitting the node that straddles the boundary.
fn take_front<N: Node>(v: &mut Vec<N>, n: usize) -> Vec<N> {
    let mut left = n;
    let mut whole = 0;
    for node in v.iter() {
        let w = node.weight();
        if w > left {
            break;
        }
        left -= w;
        whole += 1;
    }
    let mut out: Vec<N> = v.drain(..whole).collect();
    if left > 0 {
        if let Some(first) = v.first_mut() {
            out.push(first.split_front(left));
        }
    }
    out
}

/// A group node (resource or scope level): its metadata is cloned into the split-off head while the
/// children are moved, so the clone never copies the items themselves.
macro_rules! group_node {
    ($ty:ty, $children:ident) => {
        impl Node for $ty {
            fn weight(&self) -> usize {
                self.$children.iter().map(Node::weight).sum()
            }
            fn split_front(&mut self, n: usize) -> Self {
                let head_children = take_front(&mut self.$children, n);
                let rest = std::mem::take(&mut self.$children);
                let mut head = self.clone();
                head.$children = head_children;
                self.$children = rest;
                head
            }
        }
    };
}

macro_rules! leaf_node {
    ($ty:ty) => {
        impl Node for $ty {
            fn weight(&self) -> usize {
                1
            }
            fn split_front(&mut self, _n: usize) -> Self {
                unreachable!("a single item is never split: 0 < n < 1 is impossible")
            }
        }
    };
}

group_node!(ResourceSpans, scope_spans);
group_node!(ScopeSpans, spans);
leaf_node!(Span);
group_node!(ResourceLogs, scope_logs);
group_node!(ScopeLogs, log_records);
leaf_node!(LogRecord);
group_node!(ResourceMetrics, scope_metrics);
group_node!(ScopeMetrics, metrics);

/// Applies `$body` to the data point vector of a metric, whatever its type.
macro_rules! with_points {
    ($data:expr, $dp:ident => $body:expr) => {
        match $data {
            Data::Gauge(g) => {
                let $dp = &mut g.data_points;
                $body
            }
            Data::Sum(s) => {
                let $dp = &mut s.data_points;
                $body
            }
            Data::Histogram(h) => {
                let $dp = &mut h.data_points;
                $body
            }
            Data::ExponentialHistogram(h) => {
                let $dp = &mut h.data_points;
                $body
            }
            Data::Summary(s) => {
                let $dp = &mut s.data_points;
                $body
            }
        }
    };
}

/// Data points in one metric, whatever its type.
pub fn metric_points(m: &Metric) -> usize {
    match &m.data {
        None => 0,
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
    }
}

impl Node for Metric {
    fn weight(&self) -> usize {
        metric_points(self)
    }
    fn split_front(&mut self, n: usize) -> Self {
        fn take<P>(points: &mut Vec<P>, n: usize) -> Vec<P> {
            points.drain(..n.min(points.len())).collect()
        }
        let head_data = self.data.as_mut().map(|data| match data {
            Data::Gauge(g) => Data::Gauge(Gauge {
                data_points: take(&mut g.data_points, n),
            }),
            Data::Sum(s) => Data::Sum(Sum {
                data_points: take(&mut s.data_points, n),
                aggregation_temporality: s.aggregation_temporality,
                is_monotonic: s.is_monotonic,
            }),
            Data::Histogram(h) => Data::Histogram(Histogram {
                data_points: take(&mut h.data_points, n),
                aggregation_temporality: h.aggregation_temporality,
            }),
            Data::ExponentialHistogram(h) => Data::ExponentialHistogram(ExponentialHistogram {
                data_points: take(&mut h.data_points, n),
                aggregation_temporality: h.aggregation_temporality,
            }),
            Data::Summary(s) => Data::Summary(Summary {
                data_points: take(&mut s.data_points, n),
            }),
        });
        // Clone the metric's metadata without its points, then give each side its own points.
        let rest = self.data.take();
        let mut head = self.clone();
        head.data = head_data;
        self.data = rest;
        head
    }
}

impl SignalData for Traces {
    const SIGNAL: Signal = Signal::Traces;

    fn item_count(&self) -> usize {
        self.resource_spans.iter().map(Node::weight).sum()
    }
    fn for_each_resource_attrs(&mut self, f: &mut dyn FnMut(&mut Vec<KeyValue>)) {
        for rs in &mut self.resource_spans {
            f(&mut rs.resource.get_or_insert_with(Default::default).attributes);
        }
    }
    fn for_each_item_attrs(&mut self, f: &mut dyn FnMut(&mut Vec<KeyValue>)) {
        for rs in &mut self.resource_spans {
            for ss in &mut rs.scope_spans {
                for span in &mut ss.spans {
                    f(&mut span.attributes);
                }
            }
        }
    }
    fn append(&mut self, other: Self) {
        self.resource_spans.extend(other.resource_spans);
    }
    fn split_front(&mut self, n: usize) -> Self {
        Self {
            resource_spans: take_front(&mut self.resource_spans, n),
        }
    }
    fn prune_empty(&mut self) {
        for rs in &mut self.resource_spans {
            rs.scope_spans.retain(|ss| !ss.spans.is_empty());
        }
        self.resource_spans.retain(|rs| !rs.scope_spans.is_empty());
    }
}

impl SignalData for Logs {
    const SIGNAL: Signal = Signal::Logs;

    fn item_count(&self) -> usize {
        self.resource_logs.iter().map(Node::weight).sum()
    }
    fn for_each_resource_attrs(&mut self, f: &mut dyn FnMut(&mut Vec<KeyValue>)) {
        for rl in &mut self.resource_logs {
            f(&mut rl.resource.get_or_insert_with(Default::default).attributes);
        }
    }
    fn for_each_item_attrs(&mut self, f: &mut dyn FnMut(&mut Vec<KeyValue>)) {
        for rl in &mut self.resource_logs {
            for sl in &mut rl.scope_logs {
                for rec in &mut sl.log_records {
                    f(&mut rec.attributes);
                }
            }
        }
    }
    fn append(&mut self, other: Self) {
        self.resource_logs.extend(other.resource_logs);
    }
    fn split_front(&mut self, n: usize) -> Self {
        Self {
            resource_logs: take_front(&mut self.resource_logs, n),
        }
    }
    fn prune_empty(&mut self) {
        for rl in &mut self.resource_logs {
            rl.scope_logs.retain(|sl| !sl.log_records.is_empty());
        }
        self.resource_logs.retain(|rl| !rl.scope_logs.is_empty());
    }
}

impl SignalData for Metrics {
    const SIGNAL: Signal = Signal::Metrics;

    fn item_count(&self) -> usize {
        self.resource_metrics.iter().map(Node::weight).sum()
    }
    fn for_each_resource_attrs(&mut self, f: &mut dyn FnMut(&mut Vec<KeyValue>)) {
        for rm in &mut self.resource_metrics {
            f(&mut rm.resource.get_or_insert_with(Default::default).attributes);
        }
    }
    fn for_each_item_attrs(&mut self, f: &mut dyn FnMut(&mut Vec<KeyValue>)) {
        for rm in &mut self.resource_metrics {
            for sm in &mut rm.scope_metrics {
                for m in &mut sm.metrics {
                    let Some(data) = m.data.as_mut() else {
                        continue;
                    };
                    with_points!(data, dp => for p in dp.iter_mut() { f(&mut p.attributes) });
                }
            }
        }
    }
    fn append(&mut self, other: Self) {
        self.resource_metrics.extend(other.resource_metrics);
    }
    fn split_front(&mut self, n: usize) -> Self {
        Self {
            resource_metrics: take_front(&mut self.resource_metrics, n),
        }
    }
    fn prune_empty(&mut self) {
        for rm in &mut self.resource_metrics {
            for sm in &mut rm.scope_metrics {
                sm.metrics.retain(|m| metric_points(m) > 0);
            }
            rm.scope_metrics.retain(|sm| !sm.metrics.is_empty());
        }
        self.resource_metrics
            .retain(|rm| !rm.scope_metrics.is_empty());
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope};
    use opentelemetry_proto::tonic::metrics::v1::NumberDataPoint;
    use opentelemetry_proto::tonic::resource::v1::Resource;

    pub fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    /// `resources` resources × 2 scopes × `per_scope` spans, span names numbered in order.
    pub fn traces(resources: usize, per_scope: usize) -> Traces {
        let mut n = 0;
        Traces {
            resource_spans: (0..resources)
                .map(|r| ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![kv("service.name", &format!("svc{r}"))],
                        ..Default::default()
                    }),
                    scope_spans: (0..2)
                        .map(|s| ScopeSpans {
                            scope: Some(InstrumentationScope {
                                name: format!("scope{s}"),
                                ..Default::default()
                            }),
                            spans: (0..per_scope)
                                .map(|_| {
                                    n += 1;
                                    Span {
                                        name: format!("span{n}"),
                                        ..Default::default()
                                    }
                                })
                                .collect(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
        }
    }

    fn span_names(t: &Traces) -> Vec<String> {
        t.resource_spans
            .iter()
            .flat_map(|rs| rs.scope_spans.iter())
            .flat_map(|ss| ss.spans.iter().map(|s| s.name.clone()))
            .collect()
    }

    #[test]
    fn splitting_keeps_order_count_and_grouping() {
        let mut t = traces(3, 4); // 24 spans
        let all = span_names(&t);
        let head = t.split_front(7);
        assert_eq!(head.item_count(), 7);
        assert_eq!(t.item_count(), 17);
        let mut rejoined = span_names(&head);
        rejoined.extend(span_names(&t));
        assert_eq!(rejoined, all);
        // The straddled scope was copied: both halves still carry its resource and scope.
        let head_last = head.resource_spans.last().unwrap();
        let tail_first = &t.resource_spans[0];
        assert_eq!(head_last.resource, tail_first.resource);
        assert_eq!(
            head_last.scope_spans.last().unwrap().scope,
            tail_first.scope_spans[0].scope
        );
    }

    #[test]
    fn split_at_every_point_conserves_items() {
        for n in 0..=25 {
            let mut t = traces(3, 4);
            let head = t.split_front(n);
            assert_eq!(head.item_count(), n.min(24), "n={n}");
            assert_eq!(head.item_count() + t.item_count(), 24, "n={n}");
        }
    }

    fn gauge(name: &str, points: usize) -> Metric {
        Metric {
            name: name.into(),
            data: Some(Data::Gauge(Gauge {
                data_points: (0..points)
                    .map(|i| NumberDataPoint {
                        time_unix_nano: i as u64,
                        ..Default::default()
                    })
                    .collect(),
            })),
            ..Default::default()
        }
    }

    #[test]
    fn metrics_split_inside_a_metric() {
        let sum = Metric {
            name: "requests".into(),
            data: Some(Data::Sum(Sum {
                data_points: vec![NumberDataPoint::default(); 5],
                aggregation_temporality: 2,
                is_monotonic: true,
            })),
            ..Default::default()
        };
        let mut m = Metrics {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![gauge("a", 3), sum],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        assert_eq!(m.item_count(), 8);
        let head = m.split_front(5);
        assert_eq!(head.item_count(), 5);
        assert_eq!(m.item_count(), 3);
        let head_metrics = &head.resource_metrics[0].scope_metrics[0].metrics;
        assert_eq!(head_metrics.len(), 2);
        assert_eq!(head_metrics[1].name, "requests");
        // The split sum keeps its temporality and monotonicity on both sides.
        for metric in [
            &head_metrics[1],
            &m.resource_metrics[0].scope_metrics[0].metrics[0],
        ] {
            match &metric.data {
                Some(Data::Sum(s)) => assert!(s.is_monotonic && s.aggregation_temporality == 2),
                other => panic!("expected a sum, got {other:?}"),
            }
        }
    }

    #[test]
    fn prune_removes_empty_groups() {
        let mut t = traces(2, 1);
        t.resource_spans[0].scope_spans[0].spans.clear();
        t.resource_spans[1].scope_spans[0].spans.clear();
        t.resource_spans[1].scope_spans[1].spans.clear();
        t.prune_empty();
        assert_eq!(t.resource_spans.len(), 1);
        assert_eq!(t.resource_spans[0].scope_spans.len(), 1);
        assert_eq!(t.item_count(), 1);
    }

    #[test]
    fn item_attrs_reach_metric_points() {
        let mut m = Metrics {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![gauge("a", 3)],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        m.for_each_item_attrs(&mut |attrs| attrs.push(kv("k", "v")));
        let mut seen = 0;
        m.for_each_item_attrs(&mut |attrs| seen += attrs.len());
        assert_eq!(seen, 3);
    }
}
