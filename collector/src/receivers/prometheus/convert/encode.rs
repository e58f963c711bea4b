//! The scrape's OTLP request written straight into its protobuf encoding, from the scrape cache.
//!
//! [`SeriesCache::finish_encoded`] writes the bytes of the `ExportMetricsServiceRequest` that
//! [`SeriesCache::finish`] builds as owned structs, and that prost would encode from them: the same
//! fields in the same order (prost's: by field number), proto3 defaults left out the same way. A test
//! holds the two to that (`convert/tests.rs`, the decoded request and the bytes). No OTLP struct is built
//! per point, so a scrape allocates nothing per series:
//!
//! - every series keeps its data point attributes encoded once, when it is first seen ([`attributes`]):
//!   the repeated `attributes` field of a point of its kind, copied into each point as it is;
//! - the resource and scope are built and encoded once per request, each metric's header (name, HELP,
//!   `prometheus.type` metadata) once per metric; a point is its timestamps, value (or count, sum,
//!   buckets, quantiles), flags and the series' attribute bytes;
//! - lengths come first: a sizing pass measures every point, metric, scope and resource (a nested
//!   message's length prefix precedes it), then one pass writes into a buffer allocated at the exact
//!   size, which the pipeline takes over as the batch's payload (`Batch::from_encoded`).
//!
//! Varints, keys, length prefixes and packed fields are prost's own encoding functions; point bodies
//! are measured and written by the same code ([`Sink`]), so a length can never disagree with the bytes.

use std::sync::LazyLock;

use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, HistogramDataPoint, NumberDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::encoding::{self, encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use prost::Message;

use super::{
    as_count, help, histogram_buckets, type_name, Converted, Emitted, Group, Kind, NextState,
    Origin, PointAcc, ScrapeReport, SeriesCache, Target,
};
use crate::prom::to_otlp::{self, resource_attributes, string_kv, NO_RECORDED_VALUE};

/// A group's metric not yet in this request.
const NONE: u32 = u32::MAX;

/// The field number of `attributes` in a data point of `kind`.
fn attributes_field(kind: Kind) -> u32 {
    match kind {
        Kind::Histogram => 9,
        Kind::Gauge | Kind::Counter | Kind::Summary => 7,
    }
}

/// A series' data point attributes, encoded as the `attributes` field of a point of `kind`.
pub(super) fn attributes(kvs: &[KeyValue], kind: Kind) -> Box<[u8]> {
    let tag = attributes_field(kind);
    let mut out = Vec::with_capacity(encoding::message::encoded_len_repeated(tag, kvs));
    encoding::message::encode_repeated(tag, kvs, &mut out);
    out.into_boxed_slice()
}

/// The attributes [`attributes`] encoded, as owned structs (the owned request, tests).
pub(super) fn decode_attributes(bytes: &[u8], kind: Kind) -> Vec<KeyValue> {
    // The bytes are a point holding only its attributes; they were encoded by this process.
    let decoded = match kind {
        Kind::Histogram => HistogramDataPoint::decode(bytes).map(|p| p.attributes),
        Kind::Gauge | Kind::Counter | Kind::Summary => {
            NumberDataPoint::decode(bytes).map(|p| p.attributes)
        }
    };
    decoded.unwrap_or_default()
}

/// The `prometheus.type` metadata of a metric, encoded (field 12 of `Metric`) once per type name.
fn metadata(ptype: &'static str) -> &'static [u8] {
    static ENCODED: LazyLock<Vec<(&'static str, Vec<u8>)>> = LazyLock::new(|| {
        ["counter", "gauge", "histogram", "summary", "unknown"]
            .into_iter()
            .map(|t| {
                let mut out = Vec::new();
                encoding::message::encode(12, &string_kv("prometheus.type", t), &mut out);
                (t, out)
            })
            .collect()
    });
    ENCODED
        .iter()
        .find(|(t, _)| *t == ptype)
        .map_or(&[], |(_, b)| b.as_slice())
}

/// Where protobuf fields go: measured ([`Measure`]) or written (`Vec<u8>`), by the same calls. Every
/// method leaves out nothing itself: callers skip default values as prost does.
trait Sink {
    fn fixed64(&mut self, tag: u32, v: u64);
    fn double(&mut self, tag: u32, v: f64);
    fn uint32(&mut self, tag: u32, v: u32);
    fn int32(&mut self, tag: u32, v: i32);
    fn boolean(&mut self, tag: u32, v: bool);
    /// `&String`, as prost's string encoding takes it.
    #[allow(clippy::ptr_arg)]
    fn string(&mut self, tag: u32, v: &String);
    fn packed_fixed64(&mut self, tag: u32, v: &[u64]);
    fn packed_double(&mut self, tag: u32, v: &[f64]);
    /// The key and length prefix of a length-delimited field of `len` bytes.
    fn delimited(&mut self, tag: u32, len: usize);
    /// Bytes already encoded.
    fn raw(&mut self, bytes: &[u8]);
}

/// A [`Sink`] that counts bytes.
#[derive(Default)]
struct Measure(usize);

impl Sink for Measure {
    fn fixed64(&mut self, tag: u32, v: u64) {
        self.0 += encoding::fixed64::encoded_len(tag, &v);
    }
    fn double(&mut self, tag: u32, v: f64) {
        self.0 += encoding::double::encoded_len(tag, &v);
    }
    fn uint32(&mut self, tag: u32, v: u32) {
        self.0 += encoding::uint32::encoded_len(tag, &v);
    }
    fn int32(&mut self, tag: u32, v: i32) {
        self.0 += encoding::int32::encoded_len(tag, &v);
    }
    fn boolean(&mut self, tag: u32, v: bool) {
        self.0 += encoding::bool::encoded_len(tag, &v);
    }
    fn string(&mut self, tag: u32, v: &String) {
        self.0 += encoding::string::encoded_len(tag, v);
    }
    fn packed_fixed64(&mut self, tag: u32, v: &[u64]) {
        self.0 += encoding::fixed64::encoded_len_packed(tag, v);
    }
    fn packed_double(&mut self, tag: u32, v: &[f64]) {
        self.0 += encoding::double::encoded_len_packed(tag, v);
    }
    fn delimited(&mut self, tag: u32, len: usize) {
        self.0 += key_len(tag) + encoded_len_varint(len as u64);
    }
    fn raw(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

impl Sink for Vec<u8> {
    fn fixed64(&mut self, tag: u32, v: u64) {
        encoding::fixed64::encode(tag, &v, self);
    }
    fn double(&mut self, tag: u32, v: f64) {
        encoding::double::encode(tag, &v, self);
    }
    fn uint32(&mut self, tag: u32, v: u32) {
        encoding::uint32::encode(tag, &v, self);
    }
    fn int32(&mut self, tag: u32, v: i32) {
        encoding::int32::encode(tag, &v, self);
    }
    fn boolean(&mut self, tag: u32, v: bool) {
        encoding::bool::encode(tag, &v, self);
    }
    fn string(&mut self, tag: u32, v: &String) {
        encoding::string::encode(tag, v, self);
    }
    fn packed_fixed64(&mut self, tag: u32, v: &[u64]) {
        encoding::fixed64::encode_packed(tag, v, self);
    }
    fn packed_double(&mut self, tag: u32, v: &[f64]) {
        encoding::double::encode_packed(tag, v, self);
    }
    fn delimited(&mut self, tag: u32, len: usize) {
        encode_key(tag, WireType::LengthDelimited, self);
        encode_varint(len as u64, self);
    }
    fn raw(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// The size of a length-delimited field with a body of `len` bytes.
fn delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// One data point's fields (the body of its message), in field-number order.
struct Point<'a> {
    kind: Kind,
    e: &'a Emitted,
    /// The point's buckets, quantiles and sum (histograms and summaries that are not stale).
    acc: Option<&'a PointAcc>,
    attrs: &'a [u8],
    /// A histogram's bounds and counts ([`histogram_buckets`]).
    bounds: &'a [f64],
    counts: &'a [u64],
}

impl Point<'_> {
    fn write(&self, s: &mut impl Sink) {
        let e = self.e;
        let stale = e.origin == Origin::Stale;
        if e.start_ns != 0 {
            s.fixed64(2, e.start_ns);
        }
        if e.time_ns != 0 {
            s.fixed64(3, e.time_ns);
        }
        match self.kind {
            Kind::Gauge | Kind::Counter => {
                if !stale {
                    s.double(4, e.value);
                }
                s.raw(self.attrs);
                if stale {
                    s.uint32(8, NO_RECORDED_VALUE);
                }
            }
            Kind::Histogram => {
                if let Some(p) = self.acc {
                    let count = as_count(e.value);
                    if count != 0 {
                        s.fixed64(4, count);
                    }
                    if let Some(sum) = p.sum {
                        s.double(5, sum);
                    }
                    s.packed_fixed64(6, self.counts);
                    s.packed_double(7, self.bounds);
                }
                s.raw(self.attrs);
                if stale {
                    s.uint32(10, NO_RECORDED_VALUE);
                }
            }
            Kind::Summary => {
                if let Some(p) = self.acc {
                    let count = as_count(e.value);
                    if count != 0 {
                        s.fixed64(4, count);
                    }
                    let sum = p.sum.unwrap_or(0.0);
                    if sum != 0.0 {
                        s.double(5, sum);
                    }
                    for &(quantile, value) in &p.buckets {
                        let mut len = Measure::default();
                        value_at_quantile(&mut len, quantile, value);
                        s.delimited(6, len.0);
                        value_at_quantile(s, quantile, value);
                    }
                }
                s.raw(self.attrs);
                if stale {
                    s.uint32(8, NO_RECORDED_VALUE);
                }
            }
        }
    }
}

fn value_at_quantile(s: &mut impl Sink, quantile: f64, value: f64) {
    if quantile != 0.0 {
        s.double(1, quantile);
    }
    if value != 0.0 {
        s.double(2, value);
    }
}

/// A metric of the request being encoded.
#[derive(Debug)]
struct OutMetric {
    group: u32,
    /// Of its first point: how the metric is described.
    origin: Origin,
    scope: u32,
    points: u32,
    /// Of its `gauge` / `sum` / `histogram` / `summary` message.
    data_len: usize,
    body_len: usize,
}

#[derive(Debug)]
struct OutScope {
    resource: u32,
    scope: InstrumentationScope,
    metrics: u32,
    body_len: usize,
}

#[derive(Debug)]
struct OutResource {
    /// A group whose resource this is (its `resource` field names it).
    group: u32,
    resource: Resource,
    scopes: u32,
    body_len: usize,
}

/// The encoder's work space, kept across scrapes for its capacity.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    /// Per group: its metric in this request, or [`NONE`].
    at: Vec<u32>,
    metrics: Vec<OutMetric>,
    scopes: Vec<OutScope>,
    resources: Vec<OutResource>,
    /// Per emitted point: its metric and the length of its message.
    point_metric: Vec<u32>,
    point_len: Vec<u32>,
    points_by_metric: Grouping,
    metrics_by_scope: Grouping,
    scopes_by_resource: Grouping,
    bounds: Vec<f64>,
    counts: Vec<u64>,
    default_scope: Option<InstrumentationScope>,
}

/// Indices `0..n` grouped by a key, keeping their order within a key (a counting sort).
#[derive(Debug, Default)]
struct Grouping {
    order: Vec<u32>,
    /// `order[starts[k]..starts[k + 1]]` are the indices of key `k`.
    starts: Vec<u32>,
}

impl Grouping {
    fn build(&mut self, keys: impl Iterator<Item = u32> + Clone, nkeys: usize) {
        self.starts.clear();
        self.starts.resize(nkeys + 1, 0);
        let mut n = 0;
        for k in keys.clone() {
            self.starts[k as usize + 1] += 1;
            n += 1;
        }
        for k in 0..nkeys {
            self.starts[k + 1] += self.starts[k];
        }
        self.order.clear();
        self.order.resize(n, 0);
        let mut next: Vec<u32> = self.starts[..nkeys].to_vec();
        for (i, k) in keys.enumerate() {
            let at = &mut next[k as usize];
            self.order[*at as usize] = i as u32;
            *at += 1;
        }
    }

    fn of(&self, key: u32) -> &[u32] {
        &self.order[self.starts[key as usize] as usize..self.starts[key as usize + 1] as usize]
    }
}

/// The `(name, version)` of a group's scope: its own, or outpost's.
fn scope_of<'a>(group: &'a Group, default: &'a InstrumentationScope) -> (&'a str, &'a str) {
    match &group.scope {
        Some((n, v)) => (n, v),
        None => (&default.name, &default.version),
    }
}

impl SeriesCache {
    /// [`finish`](Self::finish), written straight into the protobuf encoding of the request (see the
    /// module docs): the bytes decode to the request `finish` builds. A metric without a name (which
    /// no store can take) is left out and its points counted dropped (`invalid`), as admission does
    /// with the owned request.
    pub fn finish_encoded(
        &mut self,
        target: &Target,
        report: Option<ScrapeReport>,
    ) -> Converted<Vec<u8>> {
        let series_added = self.plan(report);
        let extra_resource = std::mem::take(&mut self.extra_resource);
        let mut sc = std::mem::take(&mut self.scratch);
        let default_scope = sc
            .default_scope
            .take()
            .unwrap_or_else(|| to_otlp::outpost_scope("prometheus"));

        // Metrics, scopes and resources in the order their first points come, as `Builder` has them.
        sc.at.clear();
        sc.at.resize(self.groups.len(), NONE);
        sc.metrics.clear();
        sc.scopes.clear();
        sc.resources.clear();
        sc.point_metric.clear();
        sc.point_len.clear();
        for e in &self.emitted {
            let g = self.slots[e.slot as usize].group;
            let group = &self.groups[g as usize];
            let mut m = sc.at[g as usize];
            if m == NONE {
                let r = match sc
                    .resources
                    .iter()
                    .position(|r| self.groups[r.group as usize].resource == group.resource)
                {
                    Some(r) => r as u32,
                    None => {
                        let (job, instance) = match &group.resource {
                            Some((j, i)) => (j.as_str(), i.as_str()),
                            None => (target.job.as_str(), target.instance.as_str()),
                        };
                        let attributes = if job == target.job && instance == target.instance {
                            resource_attributes(
                                Some(job),
                                Some(instance),
                                Some(&target.endpoint),
                                &extra_resource,
                            )
                        } else {
                            // A series that named its own job / instance (honor_labels) is not the
                            // target's.
                            resource_attributes(Some(job), Some(instance), None, &[])
                        };
                        sc.resources.push(OutResource {
                            group: g,
                            resource: Resource {
                                attributes,
                                ..Default::default()
                            },
                            scopes: 0,
                            body_len: 0,
                        });
                        sc.resources.len() as u32 - 1
                    }
                };
                let (name, version) = scope_of(group, &default_scope);
                let s = match sc.scopes.iter().position(|s| {
                    s.resource == r && s.scope.name == name && s.scope.version == version
                }) {
                    Some(s) => s as u32,
                    None => {
                        sc.scopes.push(OutScope {
                            resource: r,
                            scope: InstrumentationScope {
                                name: name.to_owned(),
                                version: version.to_owned(),
                                ..Default::default()
                            },
                            metrics: 0,
                            body_len: 0,
                        });
                        sc.scopes.len() as u32 - 1
                    }
                };
                m = sc.metrics.len() as u32;
                sc.metrics.push(OutMetric {
                    group: g,
                    origin: e.origin,
                    scope: s,
                    points: 0,
                    data_len: 0,
                    body_len: 0,
                });
                sc.at[g as usize] = m;
            }
            let point = self.point(e, group.kind, &mut sc.bounds, &mut sc.counts);
            let mut len = Measure::default();
            point.write(&mut len);
            let metric = &mut sc.metrics[m as usize];
            metric.points += 1;
            metric.data_len += delimited_len(1, len.0);
            sc.point_metric.push(m);
            sc.point_len.push(len.0 as u32);
        }

        // Lengths, inside out. A metric without a name is left out. Each metric's HELP and type are
        // looked up once here and kept for the writing pass (two hash lookups per metric otherwise).
        let mut points = 0;
        let mut described = Vec::with_capacity(sc.metrics.len());
        for metric in &mut sc.metrics {
            let group = &self.groups[metric.group as usize];
            let (description, ptype) = describe(&self.families, group, metric.origin);
            described.push((description, ptype));
            if group.family.is_empty() {
                self.dropped.push(("invalid", metric.points as usize));
                continue;
            }
            points += metric.points as usize;
            metric.data_len += data_trailer_len(group.kind);
            let mut len = Measure::default();
            len.string(1, &group.family);
            if let Some(d) = description {
                len.string(2, d);
            }
            len.delimited(data_field(group.kind), metric.data_len);
            len.0 += metric.data_len;
            len.raw(metadata(ptype));
            metric.body_len = len.0;
            let scope = &mut sc.scopes[metric.scope as usize];
            scope.body_len += delimited_len(2, metric.body_len);
            scope.metrics += 1;
        }
        for scope in &mut sc.scopes {
            if scope.metrics > 0 {
                scope.body_len += delimited_len(1, scope.scope.encoded_len());
                let resource = &mut sc.resources[scope.resource as usize];
                resource.body_len += delimited_len(2, scope.body_len);
                resource.scopes += 1;
            }
        }
        let mut total = 0;
        for resource in &mut sc.resources {
            if resource.scopes > 0 {
                resource.body_len += delimited_len(1, resource.resource.encoded_len());
                total += delimited_len(1, resource.body_len);
            }
        }

        // The bytes.
        sc.points_by_metric
            .build(sc.point_metric.iter().copied(), sc.metrics.len());
        sc.metrics_by_scope
            .build(sc.metrics.iter().map(|m| m.scope), sc.scopes.len());
        sc.scopes_by_resource
            .build(sc.scopes.iter().map(|s| s.resource), sc.resources.len());
        let mut buf = Vec::with_capacity(total);
        for (r, resource) in sc.resources.iter().enumerate() {
            if resource.scopes == 0 {
                continue;
            }
            buf.delimited(1, resource.body_len);
            encoding::message::encode(1, &resource.resource, &mut buf);
            for &s in sc.scopes_by_resource.of(r as u32) {
                let scope = &sc.scopes[s as usize];
                if scope.metrics == 0 {
                    continue;
                }
                buf.delimited(2, scope.body_len);
                encoding::message::encode(1, &scope.scope, &mut buf);
                for &m in sc.metrics_by_scope.of(s) {
                    let metric = &sc.metrics[m as usize];
                    let group = &self.groups[metric.group as usize];
                    if group.family.is_empty() {
                        continue;
                    }
                    let (description, ptype) = described[m as usize];
                    buf.delimited(2, metric.body_len);
                    buf.string(1, &group.family);
                    if let Some(d) = description {
                        buf.string(2, d);
                    }
                    buf.delimited(data_field(group.kind), metric.data_len);
                    for &k in sc.points_by_metric.of(m) {
                        let e = &self.emitted[k as usize];
                        buf.delimited(1, sc.point_len[k as usize] as usize);
                        let start = buf.len();
                        self.point(e, group.kind, &mut sc.bounds, &mut sc.counts)
                            .write(&mut buf);
                        debug_assert_eq!(buf.len() - start, sc.point_len[k as usize] as usize);
                    }
                    data_trailer(&mut buf, group.kind);
                    buf.raw(metadata(ptype));
                }
            }
        }
        debug_assert_eq!(buf.len(), total, "the encoded request's measured length");

        sc.default_scope = Some(default_scope);
        self.scratch = sc;
        Converted {
            request: buf,
            points,
            series_added,
            dropped: std::mem::take(&mut self.dropped),
            next: NextState(self.scrape),
        }
    }

    /// The fields of an emitted point. For a histogram, fills `bounds` and `counts` with its buckets.
    fn point<'a>(
        &'a self,
        e: &'a Emitted,
        kind: Kind,
        bounds: &'a mut Vec<f64>,
        counts: &'a mut Vec<u64>,
    ) -> Point<'a> {
        let acc = (e.origin == Origin::Scraped && matches!(kind, Kind::Histogram | Kind::Summary))
            .then(|| &self.points[e.acc as usize]);
        bounds.clear();
        counts.clear();
        if let (Kind::Histogram, Some(p)) = (kind, acc) {
            histogram_buckets(&p.buckets, e.value, bounds, counts);
        }
        Point {
            kind,
            e,
            acc,
            attrs: &self.slots[e.slot as usize].attrs,
            bounds,
            counts,
        }
    }
}

/// A metric's HELP and `prometheus.type`, decided by the point that created it (as `Builder` does).
fn describe<'f>(
    families: &'f super::Families,
    group: &Group,
    origin: Origin,
) -> (Option<&'f String>, &'static str) {
    match origin {
        Origin::Scraped => {
            let ptype = match group.kind {
                Kind::Gauge => families
                    .get(&group.family)
                    .and_then(|m| m.kind)
                    .map_or("unknown", type_name),
                Kind::Counter => "counter",
                Kind::Histogram => "histogram",
                Kind::Summary => "summary",
            };
            let description = help(families, group).filter(|h| !h.is_empty());
            (description, ptype)
        }
        Origin::Synthetic => (None, "gauge"),
        Origin::Stale => (
            None,
            match group.kind {
                Kind::Gauge => "gauge",
                Kind::Counter => "counter",
                Kind::Histogram => "histogram",
                Kind::Summary => "summary",
            },
        ),
    }
}

/// The field of `Metric`'s `data` a kind is written in.
fn data_field(kind: Kind) -> u32 {
    match kind {
        Kind::Gauge => 5,
        Kind::Counter => 7,
        Kind::Histogram => 9,
        Kind::Summary => 11,
    }
}

/// The fields of a `Sum` / `Histogram` after its points: cumulative (and monotonic).
fn data_trailer(s: &mut impl Sink, kind: Kind) {
    let cumulative = AggregationTemporality::Cumulative as i32;
    match kind {
        Kind::Counter => {
            s.int32(2, cumulative);
            s.boolean(3, true);
        }
        Kind::Histogram => s.int32(2, cumulative),
        Kind::Gauge | Kind::Summary => {}
    }
}

fn data_trailer_len(kind: Kind) -> usize {
    let mut len = Measure::default();
    data_trailer(&mut len, kind);
    len.0
}
