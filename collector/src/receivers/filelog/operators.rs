//! Parsing operators (the OpenTelemetry Collector's stanza operators, by the same names and keys):
//! `json_parser`, `regex_parser`, `severity_parser`, `time_parser`, and the `timestamp:` / `severity:`
//! blocks embedded in the two parsers.
//!
//! Operators run in config order on each record. A record an operator cannot read is never lost
//! silently: with `on_error: send` (the default) it goes on unchanged apart from a `log.parse_error`
//! attribute naming the operator and the reason, with `drop` it is dropped; both are counted per
//! operator type in `outpost_receiver_malformed_items_total`. Regexes and layouts are compiled once,
//! when the receiver starts (validation has already refused the ones that do not compile).

use std::collections::HashMap;

use jiff::tz::TimeZone;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use outpost_config::{
    severity_number, FieldPath, FieldRoot, LayoutType, OnError, OperatorConfig, SeverityMatcher,
    SeverityParserConfig, SeverityPreset, TimeParserConfig,
};
use regex::Regex;

use crate::receivers::logrecord::{self, PARSE_ERROR_ATTRIBUTE};

/// What became of a record after the operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Keep,
    Drop,
}

/// A failure of one operator on one record: the operator type (the metric's reason) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct OpError {
    pub operator: &'static str,
    pub message: String,
    pub quiet: bool,
}

/// The compiled operator list of one receiver.
#[derive(Debug, Default)]
pub struct Operators {
    ops: Vec<Op>,
}

#[derive(Debug)]
struct Op {
    kind: Kind,
    on_error: OnError,
    /// The embedded `timestamp:` and `severity:` steps of a parser, run after it succeeds.
    then: Vec<Op>,
}

#[derive(Debug)]
enum Kind {
    Json {
        from: FieldPath,
        to: FieldPath,
    },
    Regex {
        re: Regex,
        from: FieldPath,
        to: FieldPath,
    },
    Severity(SeverityMap),
    Time(TimeLayout),
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::Json { .. } => "json_parser",
            Kind::Regex { .. } => "regex_parser",
            Kind::Severity(_) => "severity_parser",
            Kind::Time(_) => "time_parser",
        }
    }
}

impl Operators {
    /// Compiles `configs`. Errors name the operator's index, for the start-up message.
    pub fn new(configs: &[OperatorConfig]) -> Result<Operators, String> {
        let mut ops = Vec::with_capacity(configs.len());
        for (i, c) in configs.iter().enumerate() {
            ops.push(compile(c).map_err(|e| format!("operators[{i}] ({}): {e}", c.type_name()))?);
        }
        Ok(Operators { ops })
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Runs every operator on `record`; `failed` is called with each failure.
    pub fn apply(&self, record: &mut LogRecord, failed: &mut dyn FnMut(&OpError)) -> Outcome {
        for op in &self.ops {
            if op.apply(record, failed) == Outcome::Drop {
                return Outcome::Drop;
            }
        }
        Outcome::Keep
    }
}

fn compile(c: &OperatorConfig) -> Result<Op, String> {
    let embedded = |timestamp: &Option<TimeParserConfig>,
                    severity: &Option<SeverityParserConfig>|
     -> Result<Vec<Op>, String> {
        let mut then = Vec::new();
        if let Some(t) = timestamp {
            then.push(time_op(t)?);
        }
        if let Some(s) = severity {
            then.push(severity_op(s));
        }
        Ok(then)
    };
    Ok(match c {
        OperatorConfig::JsonParser(p) => Op {
            kind: Kind::Json {
                from: p.parse_from.clone(),
                to: p.parse_to.clone(),
            },
            on_error: p.on_error,
            then: embedded(&p.timestamp, &p.severity)?,
        },
        OperatorConfig::RegexParser(p) => Op {
            kind: Kind::Regex {
                re: Regex::new(&p.regex).map_err(|e| format!("regex: {e}"))?,
                from: p.parse_from.clone(),
                to: p.parse_to.clone(),
            },
            on_error: p.on_error,
            then: embedded(&p.timestamp, &p.severity)?,
        },
        OperatorConfig::SeverityParser(s) => severity_op(s),
        OperatorConfig::TimeParser(t) => time_op(t)?,
    })
}

fn severity_op(s: &SeverityParserConfig) -> Op {
    Op {
        kind: Kind::Severity(SeverityMap::new(s)),
        on_error: s.on_error,
        then: Vec::new(),
    }
}

fn time_op(t: &TimeParserConfig) -> Result<Op, String> {
    Ok(Op {
        kind: Kind::Time(TimeLayout::new(t)?),
        on_error: t.on_error,
        then: Vec::new(),
    })
}

impl Op {
    fn apply(&self, record: &mut LogRecord, failed: &mut dyn FnMut(&OpError)) -> Outcome {
        match self.run(record) {
            Ok(()) => {
                for step in &self.then {
                    if step.apply(record, failed) == Outcome::Drop {
                        return Outcome::Drop;
                    }
                }
                Outcome::Keep
            }
            Err(message) => {
                let error = OpError {
                    operator: self.kind.name(),
                    message,
                    quiet: matches!(self.on_error, OnError::SendQuiet | OnError::DropQuiet),
                };
                failed(&error);
                match self.on_error {
                    OnError::Send | OnError::SendQuiet => {
                        logrecord::set(
                            &mut record.attributes,
                            PARSE_ERROR_ATTRIBUTE,
                            logrecord::string(format!("{}: {}", error.operator, error.message)),
                        );
                        Outcome::Keep
                    }
                    OnError::Drop | OnError::DropQuiet => Outcome::Drop,
                }
            }
        }
    }

    fn run(&self, record: &mut LogRecord) -> Result<(), String> {
        match &self.kind {
            Kind::Json { from, to } => {
                let text = text_of(record, from)?;
                let parsed: serde_json::Value = serde_json::from_str(text.trim())
                    .map_err(|e| format!("{from} is not JSON: {e}"))?;
                let serde_json::Value::Object(map) = parsed else {
                    return Err(format!("{from} is JSON but not an object"));
                };
                let values = map
                    .into_iter()
                    .map(|(k, v)| logrecord::kv(k, json_to_any(v)));
                write(record, to, values.collect());
                Ok(())
            }
            Kind::Regex { re, from, to } => {
                let text = text_of(record, from)?;
                let caps = re
                    .captures(&text)
                    .ok_or_else(|| format!("{from} does not match the regex"))?;
                let values = re
                    .capture_names()
                    .flatten()
                    .filter_map(|name| {
                        caps.name(name)
                            .map(|m| logrecord::kv(name, logrecord::string(m.as_str())))
                    })
                    .collect();
                write(record, to, values);
                Ok(())
            }
            Kind::Severity(map) => {
                let value = read(record, &map.from)
                    .ok_or_else(|| format!("{} is not set", map.from))?
                    .clone();
                let (number, text) = map
                    .lookup(&value)
                    .ok_or_else(|| format!("{} has no severity mapping", map.from))?;
                record.severity_number = number;
                record.severity_text = text;
                Ok(())
            }
            Kind::Time(layout) => {
                let value = read(record, &layout.from)
                    .ok_or_else(|| format!("{} is not set", layout.from))?
                    .clone();
                record.time_unix_nano = layout.parse(&value)?;
                Ok(())
            }
        }
    }
}

/// The text at `field`: a string value, or the number/bool written out.
fn text_of(record: &LogRecord, field: &FieldPath) -> Result<String, String> {
    let value = read(record, field).ok_or_else(|| format!("{field} is not set"))?;
    match &value.value {
        Some(any_value::Value::StringValue(s)) => Ok(s.clone()),
        Some(any_value::Value::IntValue(i)) => Ok(i.to_string()),
        Some(any_value::Value::DoubleValue(d)) => Ok(d.to_string()),
        Some(any_value::Value::BoolValue(b)) => Ok(b.to_string()),
        Some(any_value::Value::BytesValue(b)) => Ok(String::from_utf8_lossy(b).into_owned()),
        _ => Err(format!("{field} is not text")),
    }
}

/// The value at `field`, following nested maps.
fn read<'r>(record: &'r LogRecord, field: &FieldPath) -> Option<&'r AnyValue> {
    let (first, rest) = match field.root {
        FieldRoot::Body => {
            let body = record.body.as_ref()?;
            match field.keys.split_first() {
                None => return Some(body),
                Some((k, rest)) => (lookup(map_of(body)?, k)?, rest),
            }
        }
        FieldRoot::Attributes => {
            let (k, rest) = field.keys.split_first()?;
            (lookup(&record.attributes, k)?, rest)
        }
        FieldRoot::Resource => return None,
    };
    rest.iter()
        .try_fold(first, |value, k| lookup(map_of(value)?, k))
}

fn map_of(v: &AnyValue) -> Option<&Vec<KeyValue>> {
    match &v.value {
        Some(any_value::Value::KvlistValue(list)) => Some(&list.values),
        _ => None,
    }
}

fn lookup<'a>(list: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    list.iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

/// Stores parsed `values` at `to`: merged into the attributes (or body map) at its root, or as one map
/// under its keys.
fn write(record: &mut LogRecord, to: &FieldPath, values: Vec<KeyValue>) {
    match (to.root, to.keys.as_slice()) {
        (FieldRoot::Attributes, []) => {
            for kv in values {
                if let Some(v) = kv.value {
                    logrecord::set(&mut record.attributes, &kv.key, v);
                }
            }
        }
        (FieldRoot::Body, []) => record.body = Some(logrecord::kvlist(values)),
        (FieldRoot::Attributes, keys) => {
            set_nested(&mut record.attributes, keys, logrecord::kvlist(values))
        }
        (FieldRoot::Body, keys) => {
            let body = record
                .body
                .get_or_insert_with(|| logrecord::kvlist(Vec::new()));
            if map_of(body).is_none() {
                *body = logrecord::kvlist(Vec::new());
            }
            if let Some(any_value::Value::KvlistValue(list)) = &mut body.value {
                set_nested(&mut list.values, keys, logrecord::kvlist(values));
            }
        }
        // Refused by validation: the records of a receiver share one resource.
        (FieldRoot::Resource, _) => {}
    }
}

fn set_nested(list: &mut Vec<KeyValue>, keys: &[String], value: AnyValue) {
    let Some((first, rest)) = keys.split_first() else {
        return;
    };
    if rest.is_empty() {
        logrecord::set(list, first, value);
        return;
    }
    if !list
        .iter()
        .any(|kv| kv.key == *first && kv.value.as_ref().is_some_and(|v| map_of(v).is_some()))
    {
        logrecord::set(list, first, logrecord::kvlist(Vec::new()));
    }
    let slot = list
        .iter_mut()
        .find(|kv| kv.key == *first)
        .and_then(|kv| kv.value.as_mut());
    if let Some(AnyValue {
        value: Some(any_value::Value::KvlistValue(inner)),
    }) = slot
    {
        set_nested(&mut inner.values, rest, value);
    }
}

pub fn json_to_any(v: serde_json::Value) -> AnyValue {
    use serde_json::Value;
    let value = match v {
        Value::Null => None,
        Value::Bool(b) => Some(any_value::Value::BoolValue(b)),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        }),
        Value::String(s) => Some(any_value::Value::StringValue(s)),
        Value::Array(items) => Some(any_value::Value::ArrayValue(ArrayValue {
            values: items.into_iter().map(json_to_any).collect(),
        })),
        Value::Object(map) => {
            return logrecord::kvlist(
                map.into_iter()
                    .map(|(k, v)| logrecord::kv(k, json_to_any(v)))
                    .collect(),
            )
        }
    };
    AnyValue { value }
}

// ---------------------------------------------------------------------------------------------------------
// Severity

#[derive(Debug)]
struct SeverityMap {
    from: FieldPath,
    /// Lower-cased text → severity number.
    text: HashMap<String, i32>,
    /// Inclusive integer ranges → severity number; the first match wins.
    ranges: Vec<(i64, i64, i32)>,
}

impl SeverityMap {
    fn new(c: &SeverityParserConfig) -> SeverityMap {
        let mut map = SeverityMap {
            from: c.parse_from.clone(),
            text: HashMap::new(),
            ranges: Vec::new(),
        };
        // The user's mapping first: it wins over the preset.
        for (level, matchers) in &c.mapping {
            let Some(number) = severity_number(level) else {
                continue; // refused by validation
            };
            for m in matchers.as_slice() {
                match m {
                    SeverityMatcher::Int(i) => map.ranges.push((*i, *i, number)),
                    SeverityMatcher::Range { min, max } => map.ranges.push((*min, *max, number)),
                    SeverityMatcher::Str(s) => {
                        let s = s.trim().to_ascii_lowercase();
                        match s.as_bytes() {
                            [d @ b'1'..=b'5', b'x', b'x'] => {
                                let base = i64::from(d - b'0') * 100;
                                map.ranges.push((base, base + 99, number));
                            }
                            _ => {
                                map.text.entry(s).or_insert(number);
                            }
                        }
                    }
                }
            }
        }
        if c.preset == SeverityPreset::Default {
            for (name, number) in PRESET {
                map.text.entry((*name).to_owned()).or_insert(*number);
            }
        }
        map
    }

    /// The severity number and text for `value`, or `None` when nothing maps it.
    fn lookup(&self, value: &AnyValue) -> Option<(i32, String)> {
        let (text, int) = match &value.value {
            Some(any_value::Value::StringValue(s)) => (s.clone(), s.trim().parse::<i64>().ok()),
            Some(any_value::Value::IntValue(i)) => (i.to_string(), Some(*i)),
            Some(any_value::Value::DoubleValue(d)) if d.fract() == 0.0 => {
                (d.to_string(), Some(*d as i64))
            }
            _ => return None,
        };
        if let Some(i) = int {
            if let Some((_, _, n)) = self
                .ranges
                .iter()
                .find(|(lo, hi, _)| (*lo..=*hi).contains(&i))
            {
                return Some((*n, text));
            }
        }
        let number = *self.text.get(&text.trim().to_ascii_lowercase())?;
        Some((number, text))
    }
}

/// The `default` preset: OpenTelemetry's level names and the spellings common in application logs.
const PRESET: &[(&str, i32)] = &[
    ("trace", 1),
    ("trace2", 2),
    ("trace3", 3),
    ("trace4", 4),
    ("debug", 5),
    ("debug2", 6),
    ("debug3", 7),
    ("debug4", 8),
    ("info", 9),
    ("information", 9),
    ("informational", 9),
    ("info2", 10),
    ("info3", 11),
    ("info4", 12),
    ("notice", 10),
    ("warn", 13),
    ("warning", 13),
    ("warn2", 14),
    ("warn3", 15),
    ("warn4", 16),
    ("error", 17),
    ("err", 17),
    ("error2", 18),
    ("error3", 19),
    ("error4", 20),
    ("crit", 21),
    ("critical", 21),
    ("fatal", 21),
    ("alert", 22),
    ("fatal2", 22),
    ("emerg", 23),
    ("emergency", 23),
    ("fatal3", 23),
    ("fatal4", 24),
    ("panic", 24),
];

// ---------------------------------------------------------------------------------------------------------
// Time

#[derive(Debug)]
struct TimeLayout {
    from: FieldPath,
    kind: LayoutKind,
}

#[derive(Debug)]
enum LayoutKind {
    Strptime {
        format: String,
        zone: TimeZone,
    },
    /// Nanoseconds per unit of the integer part, and whether a fraction may follow.
    Epoch {
        unit_nanos: i128,
    },
}

impl TimeLayout {
    fn new(c: &TimeParserConfig) -> Result<TimeLayout, String> {
        let kind = match c.layout_type {
            LayoutType::Strptime => LayoutKind::Strptime {
                // OpenTelemetry's strptime spells milliseconds %L; jiff reads any fraction with %f.
                format: c.layout.replace("%L", "%f"),
                zone: zone(c.location.as_deref())?,
            },
            LayoutType::Epoch => LayoutKind::Epoch {
                unit_nanos: match c.layout.split('.').next().unwrap_or("") {
                    "s" => 1_000_000_000,
                    "ms" => 1_000_000,
                    "us" => 1_000,
                    "ns" => 1,
                    other => return Err(format!("'{other}' is not an epoch layout")),
                },
            },
            LayoutType::Gotime => return Err("gotime layouts are not supported".into()),
        };
        Ok(TimeLayout {
            from: c.parse_from.clone(),
            kind,
        })
    }

    /// Unix nanoseconds of `value`.
    fn parse(&self, value: &AnyValue) -> Result<u64, String> {
        let nanos: i128 = match &self.kind {
            LayoutKind::Strptime { format, zone } => {
                let text = match &value.value {
                    Some(any_value::Value::StringValue(s)) => s.trim(),
                    _ => return Err(format!("{} is not text", self.from)),
                };
                parse_strptime(format, zone, text)
                    .map_err(|e| format!("'{text}' does not match '{format}': {e}"))?
            }
            LayoutKind::Epoch { unit_nanos } => {
                let number: f64 = match &value.value {
                    Some(any_value::Value::IntValue(i)) => *i as f64,
                    Some(any_value::Value::DoubleValue(d)) => *d,
                    Some(any_value::Value::StringValue(s)) => s
                        .trim()
                        .parse()
                        .map_err(|_| format!("'{s}' is not a number"))?,
                    _ => return Err(format!("{} is not a number", self.from)),
                };
                // Integers are exact; a fraction is only as precise as f64 allows (sub-µs for "now").
                match &value.value {
                    Some(any_value::Value::IntValue(i)) => i128::from(*i) * unit_nanos,
                    _ => (number * *unit_nanos as f64) as i128,
                }
            }
        };
        u64::try_from(nanos).map_err(|_| format!("the time is before 1970 ({nanos} ns)"))
    }
}

/// A time zone by IANA name; `None` or `Local`: the system's zone.
pub fn zone(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        None => Ok(TimeZone::system()),
        Some(n) if n.eq_ignore_ascii_case("local") => Ok(TimeZone::system()),
        Some(n) => TimeZone::get(n).map_err(|e| format!("time zone '{n}': {e}")),
    }
}

fn parse_strptime(format: &str, zone: &TimeZone, text: &str) -> Result<i128, jiff::Error> {
    let mut parsed = jiff::fmt::strtime::parse(format, text)?;
    if let Some(ts) = parsed.timestamp() {
        return Ok(ts.as_nanosecond());
    }
    if parsed.year().is_none() {
        // Layouts such as syslog's "%b %d %H:%M:%S" carry no year: take this one.
        parsed.set_year(Some(jiff::Zoned::now().year()))?;
    }
    if parsed.offset().is_some() || parsed.iana_time_zone().is_some() {
        return Ok(parsed.to_zoned()?.timestamp().as_nanosecond());
    }
    Ok(parsed
        .to_datetime()?
        .to_zoned(zone.clone())?
        .timestamp()
        .as_nanosecond())
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_config::{JsonParserConfig, RegexParserConfig, SeverityMatchers};

    fn record(body: &str) -> LogRecord {
        LogRecord {
            body: Some(logrecord::string(body)),
            ..Default::default()
        }
    }

    fn attr<'r>(r: &'r LogRecord, key: &str) -> Option<&'r AnyValue> {
        lookup(&r.attributes, key)
    }

    fn time_cfg(from: &str, layout_type: LayoutType, layout: &str) -> TimeParserConfig {
        TimeParserConfig {
            id: None,
            parse_from: from.parse().unwrap(),
            layout_type,
            layout: layout.into(),
            location: Some("UTC".into()),
            on_error: OnError::Send,
        }
    }

    fn severity_cfg(from: &str) -> SeverityParserConfig {
        SeverityParserConfig {
            id: None,
            parse_from: from.parse().unwrap(),
            preset: SeverityPreset::Default,
            mapping: Default::default(),
            on_error: OnError::Send,
        }
    }

    #[test]
    fn regex_then_time_then_severity() {
        let ops = Operators::new(&[OperatorConfig::RegexParser(RegexParserConfig {
            id: None,
            regex: r"^(?P<ts>\S+ \S+) (?P<level>\w+) (?P<msg>.*)$".into(),
            parse_from: FieldPath::body(),
            parse_to: FieldPath::attributes(),
            on_error: OnError::Send,
            timestamp: Some(time_cfg(
                "attributes.ts",
                LayoutType::Strptime,
                "%Y-%m-%d %H:%M:%S.%L",
            )),
            severity: Some(severity_cfg("attributes.level")),
        })])
        .unwrap();
        let mut r = record("2024-03-01 12:00:01.250 WARNING disk almost full");
        let mut errors = Vec::new();
        assert_eq!(
            ops.apply(&mut r, &mut |e| errors.push(e.clone())),
            Outcome::Keep
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            attr(&r, "msg").and_then(logrecord::as_str),
            Some("disk almost full")
        );
        assert_eq!(r.time_unix_nano, 1_709_294_401_250_000_000);
        assert_eq!(
            (r.severity_number, r.severity_text.as_str()),
            (13, "WARNING")
        );
        // The body is kept: parsers add, they do not consume.
        assert!(r.body.is_some());
    }

    #[test]
    fn json_parser_makes_typed_nested_attributes() {
        let ops = Operators::new(&[OperatorConfig::JsonParser(JsonParserConfig {
            id: None,
            parse_from: FieldPath::body(),
            parse_to: "attributes.parsed".parse().unwrap(),
            on_error: OnError::Send,
            timestamp: Some(time_cfg("attributes.parsed.t", LayoutType::Epoch, "ms")),
            severity: None,
        })])
        .unwrap();
        let mut r =
            record(r#"{"t": 1700000000123, "n": 3, "ok": true, "tags": ["a"], "m": {"k": "v"}}"#);
        assert_eq!(ops.apply(&mut r, &mut |e| panic!("{e:?}")), Outcome::Keep);
        let parsed = map_of(attr(&r, "parsed").unwrap()).unwrap();
        assert_eq!(
            lookup(parsed, "n").unwrap().value,
            Some(any_value::Value::IntValue(3))
        );
        assert_eq!(
            lookup(parsed, "ok").unwrap().value,
            Some(any_value::Value::BoolValue(true))
        );
        let m = map_of(lookup(parsed, "m").unwrap()).unwrap();
        assert_eq!(lookup(m, "k").and_then(logrecord::as_str), Some("v"));
        assert_eq!(r.time_unix_nano, 1_700_000_000_123_000_000);
    }

    #[test]
    fn failures_keep_the_record_with_a_reason_or_drop_it() {
        let json = |on_error| {
            Operators::new(&[OperatorConfig::JsonParser(JsonParserConfig {
                id: None,
                parse_from: FieldPath::body(),
                parse_to: FieldPath::attributes(),
                on_error,
                timestamp: None,
                severity: None,
            })])
            .unwrap()
        };
        let mut r = record("not json at all");
        let mut seen = Vec::new();
        assert_eq!(
            json(OnError::Send).apply(&mut r, &mut |e| seen.push(e.operator)),
            Outcome::Keep
        );
        assert_eq!(seen, vec!["json_parser"]);
        let why = attr(&r, PARSE_ERROR_ATTRIBUTE)
            .and_then(logrecord::as_str)
            .unwrap();
        assert!(why.starts_with("json_parser: body is not JSON"), "{why}");
        assert_eq!(r.body, Some(logrecord::string("not json at all")));
        let mut r = record("[1, 2]");
        assert_eq!(
            json(OnError::DropQuiet).apply(&mut r, &mut |e| assert!(e.quiet)),
            Outcome::Drop
        );
    }

    #[test]
    fn severity_mapping_wins_over_the_preset_and_reads_status_codes() {
        let mut cfg = severity_cfg("attributes.s");
        cfg.mapping.insert(
            "error".into(),
            SeverityMatchers::Many(vec![
                SeverityMatcher::Str("5xx".into()),
                SeverityMatcher::Str("oops".into()),
            ]),
        );
        cfg.mapping.insert(
            "info".into(),
            SeverityMatchers::One(SeverityMatcher::Range { min: 200, max: 399 }),
        );
        let map = SeverityMap::new(&cfg);
        assert_eq!(map.lookup(&logrecord::int(503)), Some((17, "503".into())));
        assert_eq!(
            map.lookup(&logrecord::string("204")),
            Some((9, "204".into()))
        );
        assert_eq!(
            map.lookup(&logrecord::string("OOPS")),
            Some((17, "OOPS".into()))
        );
        assert_eq!(
            map.lookup(&logrecord::string("Warn")),
            Some((13, "Warn".into()))
        );
        assert_eq!(map.lookup(&logrecord::int(404)), None);
        assert_eq!(map.lookup(&logrecord::string("chatty")), None);
    }

    #[test]
    fn strptime_uses_the_location_when_the_text_has_no_offset() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let utc = TimeZone::UTC;
        let f = "%Y-%m-%d %H:%M:%S";
        let in_berlin = parse_strptime(f, &berlin, "2024-07-01 12:00:00").unwrap();
        let in_utc = parse_strptime(f, &utc, "2024-07-01 12:00:00").unwrap();
        assert_eq!(in_utc - in_berlin, 2 * 3600 * 1_000_000_000);
        // An offset in the text wins over the location.
        let with_offset =
            parse_strptime("%Y-%m-%dT%H:%M:%S%z", &berlin, "2024-07-01T12:00:00+0000").unwrap();
        assert_eq!(with_offset, in_utc);
        assert!(parse_strptime(f, &utc, "yesterday").is_err());
    }
}
