//! The walk over an OTLP payload: every place a string can hide, per signal, handed to the engine.
//!
//! [`Redact`] is implemented once per signal and says where the strings are; [`Walk`] holds the policy
//! for one attribute list or one value and is shared by all three. A record-level drop found anywhere
//! in an item (its attributes, name, body, an event) drops that item; found in a resource's or a scope's
//! attributes, it drops every item under it.
//!
//! A payload is walked twice. [`Collect`] first visits, read-only, every value the redaction walk may
//! scan, in the order it would, and pushes them into one batch scan ([`Engine::batch_push`]): the
//! values are scanned together, so the many that hold nothing cost a share of a few streaming passes
//! rather than a scan each. [`Walk`] then applies the findings, value by value. It may visit fewer
//! values than were collected (nothing after a record-level drop in the same record), never others
//! and never in another order, so each value it reaches is found by moving forward through the
//! collected ones; each is recognised by the address and length of its bytes, which no other live
//! value shares while the payload is not changed between the two walks. A value it does not find (a
//! number converted for `redact_all_types`, or any value the collecting walk missed) is scanned on its
//! own: findings never depend on the batch.

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, Exemplar};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use outpost_config::RedactionSummary;

use super::engine::{Engine, Scratch, TooLarge, Verdict};
use super::{pseudo, Policy, MAX_DEPTH};
use crate::signal::{Logs, Metrics, SignalData, Traces};

/// What became of one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Kept,
    Changed,
    Remove,
    DropRecord,
}

/// The audit of one attribute list, written back as `redaction.*` attributes per `summary`.
#[derive(Default)]
pub(crate) struct Summary {
    masked: Vec<String>,
    redacted: Vec<String>,
    ignored: i64,
}

impl Summary {
    fn masked(&mut self, key: &str) {
        self.masked.push(key.to_owned());
    }
    fn redacted(&mut self, key: &str) {
        self.redacted.push(key.to_owned());
    }
}

const SUMMARY_PREFIX: &str = "redaction.";

/// The values a [`Collect`] pushed into the batch scan, by batch index: the address and length of each
/// one's bytes.
#[derive(Default)]
pub(crate) struct Collected {
    ids: Vec<(usize, usize)>,
    /// The next collected value the applying walk may reach.
    cursor: usize,
    /// Values the applying walk scanned on their own since the last [`Collected::clear`]
    /// (not found among the collected ones).
    pub(crate) alone: usize,
}

impl Collected {
    pub(crate) fn clear(&mut self) {
        self.ids.clear();
        self.cursor = 0;
        self.alone = 0;
    }

    /// The batch index of `bytes`, searched forward from the last value found.
    fn find(&mut self, bytes: &[u8]) -> Option<usize> {
        let id = (bytes.as_ptr() as usize, bytes.len());
        let at = self.ids[self.cursor..].iter().position(|&c| c == id)?;
        let index = self.cursor + at;
        self.cursor = index + 1;
        Some(index)
    }
}

/// The read-only walk that gathers a payload's values into one batch scan, visiting them as
/// [`Walk`] does: same values, same keys, same order, with the same policy (ignored, not allowed and
/// blocked keys and too-deep values are not scanned).
pub struct Collect<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) policy: &'a Policy,
    pub(crate) scratch: &'a mut Scratch,
    pub(crate) collected: &'a mut Collected,
}

impl Collect<'_> {
    fn push(&mut self, key: Option<&str>, bytes: &[u8]) {
        self.engine.batch_push(key, bytes, self.scratch);
        self.collected
            .ids
            .push((bytes.as_ptr() as usize, bytes.len()));
    }

    fn value(&mut self, key: Option<&str>, v: &AnyValue, depth: usize) {
        use any_value::Value;
        let Some(inner) = v.value.as_ref() else {
            return;
        };
        if depth > MAX_DEPTH && matches!(inner, Value::ArrayValue(_) | Value::KvlistValue(_)) {
            return;
        }
        match inner {
            Value::StringValue(s) => self.push(key, s.as_bytes()),
            Value::BytesValue(b) => self.push(key, b),
            Value::ArrayValue(a) => {
                for item in &a.values {
                    self.value(key, item, depth + 1);
                }
            }
            Value::KvlistValue(kvs) => {
                for kv in &kvs.values {
                    self.key_value(kv, depth + 1);
                }
            }
            // Numbers (with `redact_all_types`) are converted and scanned by the applying walk.
            _ => {}
        }
    }

    fn key_value(&mut self, kv: &KeyValue, depth: usize) {
        if self.policy.ignored.contains(&kv.key) {
            return;
        }
        let Some(value) = kv.value.as_ref() else {
            return;
        };
        if self
            .policy
            .blocked_keys
            .as_ref()
            .is_some_and(|b| b.is_match(kv.key.as_bytes()))
        {
            return;
        }
        self.value(Some(&kv.key), value, depth);
    }

    fn attrs(&mut self, attrs: &[KeyValue]) {
        for kv in attrs {
            if self.policy.ignored.contains(&kv.key) {
                continue;
            }
            if self.policy.allowlist_only
                && !self.policy.allowed.contains(&kv.key)
                && !kv.key.starts_with(SUMMARY_PREFIX)
            {
                continue;
            }
            self.key_value(kv, 0);
        }
    }

    fn resource(&mut self, resource: &Option<Resource>) {
        if let Some(r) = resource {
            self.attrs(&r.attributes);
        }
    }

    fn scope(&mut self, scope: &Option<InstrumentationScope>) {
        if let Some(sc) = scope {
            self.attrs(&sc.attributes);
        }
    }

    fn span(&mut self, span: &Span) {
        self.attrs(&span.attributes);
        self.push(None, span.name.as_bytes());
        for ev in &span.events {
            self.attrs(&ev.attributes);
            self.push(None, ev.name.as_bytes());
        }
        for link in &span.links {
            self.attrs(&link.attributes);
        }
        if let Some(status) = &span.status {
            self.push(None, status.message.as_bytes());
        }
    }

    fn log(&mut self, rec: &LogRecord) {
        self.attrs(&rec.attributes);
        if let Some(body) = &rec.body {
            self.value(None, body, 0);
        }
        if !rec.event_name.is_empty() {
            self.push(None, rec.event_name.as_bytes());
        }
    }

    fn point(&mut self, attrs: &[KeyValue], exemplars: &[Exemplar]) {
        self.attrs(attrs);
        for ex in exemplars {
            self.attrs(&ex.filtered_attributes);
        }
    }
}

/// The state of one redaction pass over a payload.
pub struct Walk<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) policy: &'a Policy,
    pub(crate) scratch: &'a mut Scratch,
    pub(crate) counts: &'a mut [u64],
    /// The batch scan's values, when [`Collect`] ran first.
    pub(crate) collected: Option<&'a mut Collected>,
}

impl Walk<'_> {
    fn count_pseudo(&mut self, which: usize) {
        self.counts[self.engine.rule_count() + which] += 1;
    }

    /// Scans `bytes` (or takes its findings from the batch scan when `collected` and found there);
    /// `Some(new bytes)` when they change, or the outcome when the value must go.
    fn scan(
        &mut self,
        key: Option<&str>,
        bytes: &[u8],
        utf8: bool,
        collected: bool,
    ) -> Result<Option<Vec<u8>>, Outcome> {
        let index = match (&mut self.collected, collected) {
            (Some(c), true) => {
                let index = c.find(bytes);
                c.alone += usize::from(index.is_none());
                index
            }
            _ => None,
        };
        let scanned = match index {
            Some(i) => self.scratch.load_batch_findings(i),
            None => self.engine.scan(key, bytes, self.scratch),
        };
        if let Err(TooLarge) = scanned {
            self.count_pseudo(pseudo::TOO_LARGE);
            return Ok(self
                .policy
                .fail_closed
                .then(|| self.engine.replace_whole(bytes)));
        }
        for f in self.scratch.findings() {
            self.counts[f.rule as usize] += 1;
        }
        match self.engine.verdict(bytes, utf8, self.scratch) {
            Verdict::Clean => Ok(None),
            Verdict::Rewrite(out) => Ok(Some(out)),
            Verdict::DropAttribute => Err(Outcome::Remove),
            Verdict::DropRecord => Err(Outcome::DropRecord),
        }
    }

    /// A string in place.
    pub(crate) fn text(&mut self, key: Option<&str>, s: &mut String) -> Outcome {
        self.text_from(key, s, true)
    }

    /// A string in place; `collected`: it is one of the payload's own (not a converted number), so
    /// the batch scan has it.
    fn text_from(&mut self, key: Option<&str>, s: &mut String, collected: bool) -> Outcome {
        match self.scan(key, s.as_bytes(), true, collected) {
            Ok(None) => Outcome::Kept,
            Ok(Some(out)) => {
                // Replacements are whole characters, so this holds; if it ever did not, fail closed.
                *s = String::from_utf8(out).unwrap_or_else(|_| {
                    String::from_utf8_lossy(&self.engine.replace_whole(b"")).into()
                });
                Outcome::Changed
            }
            Err(o) => o,
        }
    }

    /// A string that cannot be removed (a span name): removal masks it whole instead.
    fn name(&mut self, s: &mut String, what: &str, summary: &mut Summary) -> bool {
        match self.text(None, s) {
            Outcome::Kept => {}
            Outcome::Changed => summary.masked(what),
            Outcome::Remove => {
                *s = String::from_utf8_lossy(&self.engine.replace_whole(s.as_bytes())).into_owned();
                summary.masked(what);
            }
            Outcome::DropRecord => return true,
        }
        false
    }

    /// An attribute value (or a log body, `key` None), recursively.
    pub(crate) fn value(&mut self, key: Option<&str>, v: &mut AnyValue, depth: usize) -> Outcome {
        use any_value::Value;
        let Some(inner) = v.value.as_mut() else {
            return Outcome::Kept;
        };
        if depth > MAX_DEPTH && matches!(inner, Value::ArrayValue(_) | Value::KvlistValue(_)) {
            self.count_pseudo(pseudo::TOO_DEEP);
            if !self.policy.fail_closed {
                return Outcome::Kept;
            }
            *inner =
                Value::StringValue(String::from_utf8_lossy(&self.engine.replace_whole(b"")).into());
            return Outcome::Changed;
        }
        match inner {
            Value::StringValue(s) => self.text(key, s),
            Value::BytesValue(b) => match self.scan(key, b, false, true) {
                Ok(None) => Outcome::Kept,
                Ok(Some(out)) => {
                    *b = out;
                    Outcome::Changed
                }
                Err(o) => o,
            },
            Value::IntValue(_) | Value::DoubleValue(_) if self.policy.redact_all_types => {
                let mut s = match inner {
                    Value::IntValue(i) => i.to_string(),
                    Value::DoubleValue(d) => d.to_string(),
                    _ => unreachable!("matched above"),
                };
                match self.text_from(key, &mut s, false) {
                    Outcome::Changed => {
                        *inner = Value::StringValue(s);
                        Outcome::Changed
                    }
                    other => other,
                }
            }
            Value::ArrayValue(a) => {
                let mut changed = false;
                let mut drop_record = false;
                a.values.retain_mut(|item| {
                    if drop_record {
                        return true;
                    }
                    match self.value(key, item, depth + 1) {
                        Outcome::Kept => true,
                        Outcome::Changed => {
                            changed = true;
                            true
                        }
                        Outcome::Remove => {
                            changed = true;
                            false
                        }
                        Outcome::DropRecord => {
                            drop_record = true;
                            true
                        }
                    }
                });
                match (drop_record, changed) {
                    (true, _) => Outcome::DropRecord,
                    (_, true) => Outcome::Changed,
                    _ => Outcome::Kept,
                }
            }
            Value::KvlistValue(kvs) => {
                let mut changed = false;
                let mut drop_record = false;
                kvs.values.retain_mut(|kv| {
                    if drop_record {
                        return true;
                    }
                    match self.key_value(kv, depth + 1) {
                        Outcome::Kept => true,
                        Outcome::Changed => {
                            changed = true;
                            true
                        }
                        Outcome::Remove => {
                            changed = true;
                            false
                        }
                        Outcome::DropRecord => {
                            drop_record = true;
                            true
                        }
                    }
                });
                match (drop_record, changed) {
                    (true, _) => Outcome::DropRecord,
                    (_, true) => Outcome::Changed,
                    _ => Outcome::Kept,
                }
            }
            _ => Outcome::Kept,
        }
    }

    /// One key/value pair: ignored keys pass, blocked keys are masked whole, the rest is scanned.
    fn key_value(&mut self, kv: &mut KeyValue, depth: usize) -> Outcome {
        if self.policy.ignored.contains(&kv.key) {
            return Outcome::Kept;
        }
        let Some(value) = kv.value.as_mut() else {
            return Outcome::Kept;
        };
        if self
            .policy
            .blocked_keys
            .as_ref()
            .is_some_and(|b| b.is_match(kv.key.as_bytes()))
        {
            self.count_pseudo(pseudo::BLOCKED_KEY);
            let original = any_text(value);
            value.value = Some(any_value::Value::StringValue(
                String::from_utf8_lossy(&self.engine.replace_whole(original.as_bytes()))
                    .into_owned(),
            ));
            return Outcome::Changed;
        }
        self.value(Some(&kv.key), value, depth)
    }

    /// An attribute list; `true` when the record holding it must be dropped.
    pub(crate) fn attrs(&mut self, attrs: &mut Vec<KeyValue>, summary: &mut Summary) -> bool {
        let mut drop_record = false;
        attrs.retain_mut(|kv| {
            if drop_record {
                return true;
            }
            if self.policy.ignored.contains(&kv.key) {
                summary.ignored += 1;
                return true;
            }
            if self.policy.allowlist_only
                && !self.policy.allowed.contains(&kv.key)
                && !kv.key.starts_with(SUMMARY_PREFIX)
            {
                self.count_pseudo(pseudo::NOT_ALLOWED);
                summary.redacted(&kv.key);
                return false;
            }
            match self.key_value(kv, 0) {
                Outcome::Kept => true,
                Outcome::Changed => {
                    summary.masked(&kv.key);
                    true
                }
                Outcome::Remove => {
                    summary.redacted(&kv.key);
                    false
                }
                Outcome::DropRecord => {
                    drop_record = true;
                    true
                }
            }
        });
        drop_record
    }

    /// Adds the `redaction.*` attributes for `summary` to `attrs`, as the `summary` setting asks.
    pub(crate) fn write_summary(&self, attrs: &mut Vec<KeyValue>, mut summary: Summary) {
        let level = self.policy.summary;
        if level == RedactionSummary::Silent {
            return;
        }
        let mut add = |key: &str, value: any_value::Value| {
            attrs.retain(|kv| kv.key != key);
            attrs.push(KeyValue {
                key: key.to_owned(),
                value: Some(AnyValue { value: Some(value) }),
                ..Default::default()
            });
        };
        for (list, what) in [
            (&mut summary.masked, "masked"),
            (&mut summary.redacted, "redacted"),
        ] {
            if list.is_empty() {
                continue;
            }
            add(
                &format!("{SUMMARY_PREFIX}{what}.count"),
                any_value::Value::IntValue(list.len() as i64),
            );
            if level == RedactionSummary::Debug {
                list.sort();
                list.dedup();
                add(
                    &format!("{SUMMARY_PREFIX}{what}.keys"),
                    any_value::Value::StringValue(list.join(",")),
                );
            }
        }
        if summary.ignored > 0 {
            add(
                &format!("{SUMMARY_PREFIX}ignored.count"),
                any_value::Value::IntValue(summary.ignored),
            );
        }
    }

    /// Resource attributes, with their summary; `true` drops everything under the resource.
    fn resource(&mut self, resource: &mut Option<Resource>) -> bool {
        let Some(r) = resource.as_mut() else {
            return false;
        };
        let mut s = Summary::default();
        let drop = self.attrs(&mut r.attributes, &mut s);
        self.write_summary(&mut r.attributes, s);
        drop
    }

    fn scope(&mut self, scope: &mut Option<InstrumentationScope>) -> bool {
        let Some(sc) = scope.as_mut() else {
            return false;
        };
        let mut s = Summary::default();
        let drop = self.attrs(&mut sc.attributes, &mut s);
        self.write_summary(&mut sc.attributes, s);
        drop
    }

    /// One span; `false` when it must be dropped.
    fn span(&mut self, span: &mut Span) -> bool {
        let mut s = Summary::default();
        if self.attrs(&mut span.attributes, &mut s) || self.name(&mut span.name, "name", &mut s) {
            return false;
        }
        for ev in &mut span.events {
            if self.attrs(&mut ev.attributes, &mut s)
                || self.name(&mut ev.name, "event.name", &mut s)
            {
                return false;
            }
        }
        for link in &mut span.links {
            if self.attrs(&mut link.attributes, &mut s) {
                return false;
            }
        }
        if let Some(status) = &mut span.status {
            match self.text(None, &mut status.message) {
                Outcome::Kept => {}
                Outcome::Changed => s.masked("status.message"),
                Outcome::Remove => {
                    status.message.clear();
                    s.redacted("status.message");
                }
                Outcome::DropRecord => return false,
            }
        }
        self.write_summary(&mut span.attributes, s);
        true
    }

    fn log(&mut self, rec: &mut LogRecord) -> bool {
        let mut s = Summary::default();
        if self.attrs(&mut rec.attributes, &mut s) {
            return false;
        }
        if let Some(body) = &mut rec.body {
            match self.value(None, body, 0) {
                Outcome::Kept => {}
                Outcome::Changed => s.masked("body"),
                Outcome::Remove => {
                    rec.body = None;
                    s.redacted("body");
                }
                Outcome::DropRecord => return false,
            }
        }
        if !rec.event_name.is_empty() && self.name(&mut rec.event_name, "event_name", &mut s) {
            return false;
        }
        self.write_summary(&mut rec.attributes, s);
        true
    }

    fn point(&mut self, attrs: &mut Vec<KeyValue>, exemplars: &mut [Exemplar]) -> bool {
        let mut s = Summary::default();
        if self.attrs(attrs, &mut s) {
            return false;
        }
        for ex in exemplars {
            if self.attrs(&mut ex.filtered_attributes, &mut s) {
                return false;
            }
        }
        self.write_summary(attrs, s);
        true
    }
}

/// A value as text, for masking a blocked key's value whatever its type.
fn any_text(v: &AnyValue) -> String {
    use any_value::Value;
    match &v.value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::BytesValue(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}

/// Where a signal's strings are. Returns the number of items dropped.
pub trait Redact: SignalData {
    #[doc(hidden)]
    fn redact(&mut self, w: &mut Walk<'_>) -> usize;
    /// Pushes every value [`Redact::redact`] may scan, in its order, into `c`'s batch.
    #[doc(hidden)]
    fn collect(&self, c: &mut Collect<'_>);
}

impl Redact for Traces {
    fn collect(&self, c: &mut Collect<'_>) {
        for rs in &self.resource_spans {
            c.resource(&rs.resource);
            for ss in &rs.scope_spans {
                c.scope(&ss.scope);
                for span in &ss.spans {
                    c.span(span);
                }
            }
        }
    }

    fn redact(&mut self, w: &mut Walk<'_>) -> usize {
        let mut dropped = 0;
        for rs in &mut self.resource_spans {
            let drop_resource = w.resource(&mut rs.resource);
            for ss in &mut rs.scope_spans {
                if drop_resource || w.scope(&mut ss.scope) {
                    dropped += ss.spans.len();
                    ss.spans.clear();
                    continue;
                }
                ss.spans.retain_mut(|span| {
                    let keep = w.span(span);
                    dropped += usize::from(!keep);
                    keep
                });
            }
        }
        if dropped > 0 {
            self.prune_empty();
        }
        dropped
    }
}

impl Redact for Logs {
    fn collect(&self, c: &mut Collect<'_>) {
        for rl in &self.resource_logs {
            c.resource(&rl.resource);
            for sl in &rl.scope_logs {
                c.scope(&sl.scope);
                for rec in &sl.log_records {
                    c.log(rec);
                }
            }
        }
    }

    fn redact(&mut self, w: &mut Walk<'_>) -> usize {
        let mut dropped = 0;
        for rl in &mut self.resource_logs {
            let drop_resource = w.resource(&mut rl.resource);
            for sl in &mut rl.scope_logs {
                if drop_resource || w.scope(&mut sl.scope) {
                    dropped += sl.log_records.len();
                    sl.log_records.clear();
                    continue;
                }
                sl.log_records.retain_mut(|rec| {
                    let keep = w.log(rec);
                    dropped += usize::from(!keep);
                    keep
                });
            }
        }
        if dropped > 0 {
            self.prune_empty();
        }
        dropped
    }
}

impl Redact for Metrics {
    fn collect(&self, c: &mut Collect<'_>) {
        for rm in &self.resource_metrics {
            c.resource(&rm.resource);
            for sm in &rm.scope_metrics {
                c.scope(&sm.scope);
                for m in &sm.metrics {
                    match &m.data {
                        Some(Data::Gauge(g)) => g
                            .data_points
                            .iter()
                            .for_each(|p| c.point(&p.attributes, &p.exemplars)),
                        Some(Data::Sum(s)) => s
                            .data_points
                            .iter()
                            .for_each(|p| c.point(&p.attributes, &p.exemplars)),
                        Some(Data::Histogram(h)) => h
                            .data_points
                            .iter()
                            .for_each(|p| c.point(&p.attributes, &p.exemplars)),
                        Some(Data::ExponentialHistogram(h)) => h
                            .data_points
                            .iter()
                            .for_each(|p| c.point(&p.attributes, &p.exemplars)),
                        Some(Data::Summary(s)) => s
                            .data_points
                            .iter()
                            .for_each(|p| c.point(&p.attributes, &[])),
                        None => {}
                    }
                }
            }
        }
    }

    fn redact(&mut self, w: &mut Walk<'_>) -> usize {
        let mut dropped = 0;
        for rm in &mut self.resource_metrics {
            let drop_resource = w.resource(&mut rm.resource);
            for sm in &mut rm.scope_metrics {
                let drop_scope = drop_resource || w.scope(&mut sm.scope);
                for m in &mut sm.metrics {
                    let Some(data) = m.data.as_mut() else {
                        continue;
                    };
                    macro_rules! points {
                        ($points:expr, $ex:ident) => {{
                            let before = $points.len();
                            if drop_scope {
                                $points.clear();
                            } else {
                                $points.retain_mut(|p| w.point(&mut p.attributes, &mut p.$ex));
                            }
                            dropped += before - $points.len();
                        }};
                    }
                    match data {
                        Data::Gauge(g) => points!(g.data_points, exemplars),
                        Data::Sum(s) => points!(s.data_points, exemplars),
                        Data::Histogram(h) => points!(h.data_points, exemplars),
                        Data::ExponentialHistogram(h) => points!(h.data_points, exemplars),
                        Data::Summary(s) => {
                            let before = s.data_points.len();
                            if drop_scope {
                                s.data_points.clear();
                            } else {
                                s.data_points
                                    .retain_mut(|p| w.point(&mut p.attributes, &mut []));
                            }
                            dropped += before - s.data_points.len();
                        }
                    }
                }
            }
        }
        if dropped > 0 {
            self.prune_empty();
        }
        dropped
    }
}
