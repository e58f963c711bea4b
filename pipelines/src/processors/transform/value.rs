//! OTLP items ↔ VRL objects.
//!
//! A span is offered as `{name, kind, trace_id, span_id, parent_span_id, trace_state, flags, start_time,
//! end_time, attributes, events: [{name, time, attributes}], links: [{trace_id, span_id, trace_state,
//! attributes}], status: {code, message}, resource: {attributes}, scope: {name, version, attributes}}`;
//! a log record as `{body, attributes, severity_text, severity_number, timestamp, observed_timestamp,
//! trace_id, span_id, flags, event_name, resource, scope}`. Ids are lowercase hex strings, times are VRL
//! timestamps (absent when zero), attribute lists are objects.
//!
//! Writing back: a field the program deleted becomes empty (deleting `.attributes.user` removes that
//! attribute, deleting `.body` removes the body), except ids and times, which keep their value when
//! absent. A field of the wrong type (`.name = [1]`), an id that is not hex of the right length, or a
//! result that is not an object fails the item, which is then left exactly as it was. Strings that are
//! not UTF-8 become byte values; objects become key/value lists (sorted by key).

use bytes::Bytes;
use chrono::{DateTime, Utc};
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, Span, Status};
use vrl::prelude::NotNan;
use vrl::value::{ObjectMap, Value};

use super::ItemOutcome;
use crate::signal::{Logs, Traces};

/// A signal whose items a VRL program can transform.
pub trait Transformable {
    /// Offers every item to `run` and writes back what it returns; an item that fails is kept unchanged
    /// or removed as `keep` says.
    fn transform(
        &mut self,
        run: &mut dyn FnMut(Value) -> Result<Value, ItemOutcome>,
        keep: &mut dyn FnMut(ItemOutcome) -> bool,
    );
}

type Obj = ObjectMap;

fn key(k: &str) -> vrl::value::KeyString {
    k.into()
}

pub fn any_to_vrl(v: &AnyValue) -> Value {
    use any_value::Value as V;
    match &v.value {
        Some(V::StringValue(s)) => Value::Bytes(Bytes::copy_from_slice(s.as_bytes())),
        Some(V::BoolValue(b)) => Value::Boolean(*b),
        Some(V::IntValue(i)) => Value::Integer(*i),
        Some(V::DoubleValue(d)) => NotNan::new(*d).map_or(Value::Null, Value::Float),
        Some(V::BytesValue(b)) => Value::Bytes(Bytes::copy_from_slice(b)),
        Some(V::ArrayValue(a)) => Value::Array(a.values.iter().map(any_to_vrl).collect()),
        Some(V::KvlistValue(kvs)) => attrs_to_vrl(&kvs.values),
        Some(V::StringValueStrindex(_)) | None => Value::Null,
    }
}

pub fn attrs_to_vrl(attrs: &[KeyValue]) -> Value {
    let mut map = Obj::new();
    for kv in attrs {
        map.insert(
            key(&kv.key),
            kv.value.as_ref().map_or(Value::Null, any_to_vrl),
        );
    }
    Value::Object(map)
}

/// `None` for null (an absent value).
pub fn vrl_to_any(v: Value) -> Option<AnyValue> {
    use any_value::Value as V;
    let value = match v {
        Value::Null => return None,
        Value::Bytes(b) => match String::from_utf8(b.to_vec()) {
            Ok(s) => V::StringValue(s),
            Err(e) => V::BytesValue(e.into_bytes()),
        },
        Value::Regex(r) => V::StringValue(r.as_str().to_owned()),
        Value::Integer(i) => V::IntValue(i),
        Value::Float(f) => V::DoubleValue(f.into_inner()),
        Value::Boolean(b) => V::BoolValue(b),
        Value::Timestamp(t) => {
            V::StringValue(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        }
        Value::Array(items) => V::ArrayValue(ArrayValue {
            values: items
                .into_iter()
                .map(|i| vrl_to_any(i).unwrap_or_default())
                .collect(),
        }),
        Value::Object(map) => V::KvlistValue(KeyValueList {
            values: object_to_attrs(map),
        }),
    };
    Some(AnyValue { value: Some(value) })
}

fn object_to_attrs(map: Obj) -> Vec<KeyValue> {
    map.into_iter()
        .filter_map(|(k, v)| {
            vrl_to_any(v).map(|value| KeyValue {
                key: k.as_str().to_owned(),
                value: Some(value),
                ..Default::default()
            })
        })
        .collect()
}

fn time(nanos: u64) -> Value {
    if nanos == 0 {
        return Value::Null;
    }
    Value::Timestamp(DateTime::<Utc>::from_timestamp_nanos(
        i64::try_from(nanos).unwrap_or(i64::MAX),
    ))
}

fn hex_id(id: &[u8]) -> Value {
    if id.is_empty() {
        Value::Null
    } else {
        Value::Bytes(Bytes::from(hex::encode(id)))
    }
}

fn string(s: &str) -> Value {
    Value::Bytes(Bytes::copy_from_slice(s.as_bytes()))
}

fn resource_value(r: &Option<Resource>) -> Value {
    let mut m = Obj::new();
    m.insert(
        key("attributes"),
        attrs_to_vrl(r.as_ref().map_or(&[][..], |r| &r.attributes)),
    );
    Value::Object(m)
}

fn scope_value(s: &Option<InstrumentationScope>) -> Value {
    let mut m = Obj::new();
    if let Some(s) = s {
        m.insert(key("name"), string(&s.name));
        m.insert(key("version"), string(&s.version));
        m.insert(key("attributes"), attrs_to_vrl(&s.attributes));
    }
    Value::Object(m)
}

/// Reads fields out of the program's result; any wrong type fails the whole item.
struct Fields(Obj);

type Bad = ();

impl Fields {
    fn new(v: Value) -> Result<Self, Bad> {
        match v {
            Value::Object(m) => Ok(Self(m)),
            _ => Err(()),
        }
    }

    fn take(&mut self, k: &str) -> Value {
        self.0.remove(k).unwrap_or(Value::Null)
    }

    /// A string field; scalars are written as text, absent is empty.
    fn string(&mut self, k: &str) -> Result<String, Bad> {
        match self.take(k) {
            Value::Null => Ok(String::new()),
            Value::Bytes(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
            Value::Integer(i) => Ok(i.to_string()),
            Value::Float(f) => Ok(f.to_string()),
            Value::Boolean(b) => Ok(b.to_string()),
            _ => Err(()),
        }
    }

    fn int(&mut self, k: &str, original: i64) -> Result<i64, Bad> {
        match self.take(k) {
            Value::Null => Ok(original),
            Value::Integer(i) => Ok(i),
            _ => Err(()),
        }
    }

    fn time(&mut self, k: &str, original: u64) -> Result<u64, Bad> {
        match self.take(k) {
            Value::Null => Ok(original),
            Value::Timestamp(t) => t
                .timestamp_nanos_opt()
                .and_then(|n| u64::try_from(n).ok())
                .ok_or(()),
            Value::Integer(n) => u64::try_from(n).map_err(|_| ()),
            _ => Err(()),
        }
    }

    fn id(&mut self, k: &str, original: &[u8], len: usize) -> Result<Vec<u8>, Bad> {
        match self.take(k) {
            Value::Null => Ok(original.to_vec()),
            Value::Bytes(b) => {
                let id = hex::decode(&b).map_err(|_| ())?;
                if id.len() == len || id.is_empty() {
                    Ok(id)
                } else {
                    Err(())
                }
            }
            _ => Err(()),
        }
    }

    fn attrs(&mut self, k: &str) -> Result<Vec<KeyValue>, Bad> {
        match self.take(k) {
            Value::Null => Ok(Vec::new()),
            Value::Object(m) => Ok(object_to_attrs(m)),
            _ => Err(()),
        }
    }

    fn list(&mut self, k: &str) -> Result<Vec<Fields>, Bad> {
        match self.take(k) {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) => items.into_iter().map(Fields::new).collect(),
            _ => Err(()),
        }
    }
}

pub fn span_to_vrl(span: &Span, resource: &Value, scope: &Value) -> Value {
    let mut m = Obj::new();
    m.insert(key("name"), string(&span.name));
    m.insert(key("kind"), Value::Integer(i64::from(span.kind)));
    m.insert(key("trace_id"), hex_id(&span.trace_id));
    m.insert(key("span_id"), hex_id(&span.span_id));
    m.insert(key("parent_span_id"), hex_id(&span.parent_span_id));
    m.insert(key("trace_state"), string(&span.trace_state));
    m.insert(key("flags"), Value::Integer(i64::from(span.flags)));
    m.insert(key("start_time"), time(span.start_time_unix_nano));
    m.insert(key("end_time"), time(span.end_time_unix_nano));
    m.insert(key("attributes"), attrs_to_vrl(&span.attributes));
    let events = span
        .events
        .iter()
        .map(|e| {
            let mut o = Obj::new();
            o.insert(key("name"), string(&e.name));
            o.insert(key("time"), time(e.time_unix_nano));
            o.insert(key("attributes"), attrs_to_vrl(&e.attributes));
            Value::Object(o)
        })
        .collect();
    m.insert(key("events"), Value::Array(events));
    let links = span
        .links
        .iter()
        .map(|l| {
            let mut o = Obj::new();
            o.insert(key("trace_id"), hex_id(&l.trace_id));
            o.insert(key("span_id"), hex_id(&l.span_id));
            o.insert(key("trace_state"), string(&l.trace_state));
            o.insert(key("attributes"), attrs_to_vrl(&l.attributes));
            Value::Object(o)
        })
        .collect();
    m.insert(key("links"), Value::Array(links));
    let mut status = Obj::new();
    let (code, message) = span
        .status
        .as_ref()
        .map_or((0, ""), |s| (s.code, s.message.as_str()));
    status.insert(key("code"), Value::Integer(i64::from(code)));
    status.insert(key("message"), string(message));
    m.insert(key("status"), Value::Object(status));
    m.insert(key("resource"), resource.clone());
    m.insert(key("scope"), scope.clone());
    Value::Object(m)
}

/// The span the program's result describes, or an error leaving `original` as it was.
fn span_from_vrl(original: &Span, v: Value) -> Result<Span, Bad> {
    let mut f = Fields::new(v)?;
    let int32 = |i: i64| i32::try_from(i).map_err(|_| ());
    let uint32 = |i: i64| u32::try_from(i).map_err(|_| ());
    let mut out = Span {
        name: f.string("name")?,
        kind: int32(f.int("kind", i64::from(original.kind))?)?,
        trace_id: f.id("trace_id", &original.trace_id, 16)?,
        span_id: f.id("span_id", &original.span_id, 8)?,
        parent_span_id: f.id("parent_span_id", &original.parent_span_id, 8)?,
        trace_state: f.string("trace_state")?,
        flags: uint32(f.int("flags", i64::from(original.flags))?)?,
        start_time_unix_nano: f.time("start_time", original.start_time_unix_nano)?,
        end_time_unix_nano: f.time("end_time", original.end_time_unix_nano)?,
        attributes: f.attrs("attributes")?,
        dropped_attributes_count: original.dropped_attributes_count,
        dropped_events_count: original.dropped_events_count,
        dropped_links_count: original.dropped_links_count,
        ..Default::default()
    };
    for mut e in f.list("events")? {
        out.events.push(span::Event {
            name: e.string("name")?,
            time_unix_nano: e.time("time", 0)?,
            attributes: e.attrs("attributes")?,
            ..Default::default()
        });
    }
    for mut l in f.list("links")? {
        out.links.push(span::Link {
            trace_id: l.id("trace_id", &[], 16)?,
            span_id: l.id("span_id", &[], 8)?,
            trace_state: l.string("trace_state")?,
            attributes: l.attrs("attributes")?,
            ..Default::default()
        });
    }
    match f.take("status") {
        Value::Null => {}
        Value::Object(m) => {
            let mut s = Fields(m);
            let code = int32(s.int("code", 0)?)?;
            let message = s.string("message")?;
            if code != 0 || !message.is_empty() || original.status.is_some() {
                out.status = Some(Status { message, code });
            }
        }
        _ => return Err(()),
    }
    Ok(out)
}

pub fn log_to_vrl(rec: &LogRecord, resource: &Value, scope: &Value) -> Value {
    let mut m = Obj::new();
    m.insert(
        key("body"),
        rec.body.as_ref().map_or(Value::Null, any_to_vrl),
    );
    m.insert(key("attributes"), attrs_to_vrl(&rec.attributes));
    m.insert(key("severity_text"), string(&rec.severity_text));
    m.insert(
        key("severity_number"),
        Value::Integer(i64::from(rec.severity_number)),
    );
    m.insert(key("timestamp"), time(rec.time_unix_nano));
    m.insert(key("observed_timestamp"), time(rec.observed_time_unix_nano));
    m.insert(key("trace_id"), hex_id(&rec.trace_id));
    m.insert(key("span_id"), hex_id(&rec.span_id));
    m.insert(key("flags"), Value::Integer(i64::from(rec.flags)));
    m.insert(key("event_name"), string(&rec.event_name));
    m.insert(key("resource"), resource.clone());
    m.insert(key("scope"), scope.clone());
    Value::Object(m)
}

fn log_from_vrl(original: &LogRecord, v: Value) -> Result<LogRecord, Bad> {
    let mut f = Fields::new(v)?;
    Ok(LogRecord {
        body: vrl_to_any(f.take("body")),
        attributes: f.attrs("attributes")?,
        severity_text: f.string("severity_text")?,
        severity_number: i32::try_from(
            f.int("severity_number", i64::from(original.severity_number))?,
        )
        .map_err(|_| ())?,
        time_unix_nano: f.time("timestamp", original.time_unix_nano)?,
        observed_time_unix_nano: f.time("observed_timestamp", original.observed_time_unix_nano)?,
        trace_id: f.id("trace_id", &original.trace_id, 16)?,
        span_id: f.id("span_id", &original.span_id, 8)?,
        flags: u32::try_from(f.int("flags", i64::from(original.flags))?).map_err(|_| ())?,
        event_name: f.string("event_name")?,
        dropped_attributes_count: original.dropped_attributes_count,
    })
}

/// Runs one item through `run` and writes it back: whether to keep it.
fn one<I>(
    item: &mut I,
    value: Value,
    run: &mut dyn FnMut(Value) -> Result<Value, ItemOutcome>,
    keep: &mut dyn FnMut(ItemOutcome) -> bool,
    back: fn(&I, Value) -> Result<I, Bad>,
) -> bool {
    match run(value).and_then(|v| back(item, v).map_err(|()| ItemOutcome::Failed)) {
        Ok(new) => {
            *item = new;
            true
        }
        Err(outcome) => keep(outcome),
    }
}

impl Transformable for Traces {
    fn transform(
        &mut self,
        run: &mut dyn FnMut(Value) -> Result<Value, ItemOutcome>,
        keep: &mut dyn FnMut(ItemOutcome) -> bool,
    ) {
        for rs in &mut self.resource_spans {
            let resource = resource_value(&rs.resource);
            for ss in &mut rs.scope_spans {
                let scope = scope_value(&ss.scope);
                ss.spans.retain_mut(|span| {
                    let value = span_to_vrl(span, &resource, &scope);
                    one(span, value, run, keep, span_from_vrl)
                });
            }
        }
        crate::signal::SignalData::prune_empty(self);
    }
}

impl Transformable for Logs {
    fn transform(
        &mut self,
        run: &mut dyn FnMut(Value) -> Result<Value, ItemOutcome>,
        keep: &mut dyn FnMut(ItemOutcome) -> bool,
    ) {
        for rl in &mut self.resource_logs {
            let resource = resource_value(&rl.resource);
            for sl in &mut rl.scope_logs {
                let scope = scope_value(&sl.scope);
                sl.log_records.retain_mut(|rec| {
                    let value = log_to_vrl(rec, &resource, &scope);
                    one(rec, value, run, keep, log_from_vrl)
                });
            }
        }
        crate::signal::SignalData::prune_empty(self);
    }
}

// Validation refuses `transform` in metrics pipelines; should one get here, its data passes unchanged.
impl Transformable for crate::signal::Metrics {
    fn transform(
        &mut self,
        _run: &mut dyn FnMut(Value) -> Result<Value, ItemOutcome>,
        _keep: &mut dyn FnMut(ItemOutcome) -> bool,
    ) {
    }
}
