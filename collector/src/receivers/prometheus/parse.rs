//! The Prometheus text exposition format (version 0.0.4) → samples and family metadata.
//!
//! `# HELP` and `# TYPE` lines are read with `prometheus-parse`'s line classifier
//! ([`prometheus_parse::LineInfo`]). Sample lines are tokenized here, because the crate gets valid pages
//! wrong in ways that matter for an agent that must forward data intact (each gap is pinned by a test
//! below, so an upgrade that fixes one shows up):
//!
//! - metric names with `:` (recording-rule style, `job:requests:rate5m`) are not recognised and the line
//!   is dropped;
//! - label values are split on `,` and `=` and cut at the first `}`, and escapes (`\"`, `\\`, `\n`) are
//!   left in, so `path="a,b"` or `msg="x}"` come out mangled;
//! - a line it cannot read, or a value that is not a number, is skipped silently, so a broken page looks
//!   like a smaller healthy one instead of failing the scrape (`up` must say 0);
//! - `_sum` / `_count` of histograms and summaries come out as separate untyped samples and buckets in
//!   hash order (grouping is done later, in `convert`, after metric relabeling, which sees every line as
//!   Prometheus does);
//! - a sample without a timestamp is given the parse time, indistinguishable from an explicit one.
//!
//! Any line that is not a comment, blank, or a well-formed sample fails the whole page with its line
//! number, as Prometheus does.

use prometheus_parse::{LineInfo, SampleType};
use rustc_hash::FxHashMap;

use crate::prom::to_otlp::{Labels, NAME_LABEL};

/// The TYPE of a metric family, as exposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FamilyType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

/// What `# HELP` and `# TYPE` say about one family.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FamilyMeta {
    pub kind: Option<FamilyType>,
    pub help: Option<String>,
}

/// One sample line: its labels include `__name__`.
#[derive(Debug, Clone, PartialEq)]
pub struct RawSample {
    pub labels: Labels,
    pub value: f64,
    /// Milliseconds since the epoch, when the line has a timestamp.
    pub timestamp_ms: Option<i64>,
}

impl RawSample {
    pub fn name(&self) -> &str {
        crate::prom::to_otlp::label(&self.labels, NAME_LABEL).unwrap_or("")
    }
}

#[derive(Debug, Default)]
pub struct Exposition {
    pub samples: Vec<RawSample>,
    pub families: FxHashMap<String, FamilyMeta>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// Parses a whole page.
pub fn parse(text: &str) -> Result<Exposition, ParseError> {
    let mut out = Exposition::default();
    for (number, line) in lines(text) {
        if line.starts_with('#') {
            metadata(line, &mut out.families);
            continue;
        }
        let sample = sample_line(line).map_err(|message| ParseError {
            line: number,
            message,
        })?;
        out.samples.push(sample);
    }
    Ok(out)
}

/// The non-blank lines of a page with their 1-based numbers, leading blanks and a trailing `\r`
/// removed.
pub fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    // `memchr_iter` finds the line ends with SIMD a block at a time; `str::split` starts a new search
    // for every line, which for a page of short lines cost as much as reading the lines.
    let mut start = 0;
    memchr::memchr_iter(b'\n', text.as_bytes())
        .chain(std::iter::once(text.len()))
        .enumerate()
        .filter_map(move |(i, end)| {
            // `end` is a '\n' (or the end), so both bounds are character boundaries.
            let raw = &text[start..end];
            start = end + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw).trim_start();
            (!line.is_empty()).then_some((i + 1, line))
        })
}

/// A sample line split from its end into `(series, value, timestamp)` without reading the labels:
/// `series` is the text before the value (`name{labels}`), the key of the scrape cache. The split is
/// only a guess (a label value may hold blanks); a caller that finds `series` among the series texts it
/// has already read in full knows it is right, because a valid series text followed by blanks is
/// exactly where the full parser would stop. `None` when the line has no blank before its value.
pub fn split_sample(line: &str) -> Option<(&str, &str, Option<&str>)> {
    let b = line.as_bytes();
    let end = trim_blanks_end(b, b.len());
    let last_start = token_start(b, end);
    let rest_end = trim_blanks_end(b, last_start);
    if rest_end == 0 {
        return None;
    }
    let last = &line[last_start..end];
    // A value never ends with '}' and a bare metric name holds no blank: either way `last` is the
    // value and there is no timestamp.
    if b[rest_end - 1] == b'}' || !b[..rest_end].iter().any(|&c| c == b' ' || c == b'\t') {
        return Some((&line[..rest_end], last, None));
    }
    let value_start = token_start(b, rest_end);
    let series_end = trim_blanks_end(b, value_start);
    if series_end == 0 {
        return None;
    }
    Some((
        &line[..series_end],
        &line[value_start..rest_end],
        Some(last),
    ))
}

fn trim_blanks_end(b: &[u8], mut end: usize) -> usize {
    while end > 0 && (b[end - 1] == b' ' || b[end - 1] == b'\t') {
        end -= 1;
    }
    end
}

fn token_start(b: &[u8], mut end: usize) -> usize {
    while end > 0 && b[end - 1] != b' ' && b[end - 1] != b'\t' {
        end -= 1;
    }
    end
}

/// A timestamp as the full parser reads it: integer milliseconds since the epoch.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    s.parse().ok()
}

pub fn metadata(line: &str, families: &mut FxHashMap<String, FamilyMeta>) {
    match LineInfo::parse(line) {
        LineInfo::Doc { metric_name, doc } => {
            families.entry(metric_name.to_owned()).or_default().help = Some(unescape_help(doc));
        }
        LineInfo::Type {
            metric_name,
            metric_alias,
            sample_type,
        } => {
            // The crate names a histogram family after its `_bucket` series and gives the family
            // name as the alias.
            let family = metric_alias.unwrap_or(metric_name);
            families.entry(family).or_default().kind = Some(family_type(sample_type));
        }
        _ => {
            // The crate's patterns take `\w` names only: TYPE and HELP of a family with `:` in its name
            // are read here. Other comments are ignored, as the format says.
            let mut words = line[1..].split_whitespace();
            match (words.next(), words.next()) {
                (Some("TYPE"), Some(name)) => {
                    let kind = match words.next() {
                        Some("counter") => FamilyType::Counter,
                        Some("gauge") => FamilyType::Gauge,
                        Some("histogram") => FamilyType::Histogram,
                        Some("summary") => FamilyType::Summary,
                        _ => FamilyType::Untyped,
                    };
                    families.entry(name.to_owned()).or_default().kind = Some(kind);
                }
                (Some("HELP"), Some(name)) => {
                    let rest = line
                        .split_once(name)
                        .map(|(_, r)| r.trim())
                        .unwrap_or_default();
                    families.entry(name.to_owned()).or_default().help = Some(unescape_help(rest));
                }
                _ => {}
            }
        }
    }
}

fn family_type(t: SampleType) -> FamilyType {
    match t {
        SampleType::Counter => FamilyType::Counter,
        SampleType::Gauge => FamilyType::Gauge,
        SampleType::Histogram => FamilyType::Histogram,
        SampleType::Summary => FamilyType::Summary,
        SampleType::Untyped => FamilyType::Untyped,
    }
}

fn unescape_help(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':'
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

/// `name{label="value",...} value [timestamp]`
pub fn sample_line(line: &str) -> Result<RawSample, String> {
    let bytes = line.as_bytes();
    let mut i = 0;
    if !is_name_start(bytes[0]) {
        return Err(format!(
            "'{}' does not start with a metric name",
            excerpt(line)
        ));
    }
    while i < bytes.len() && is_name_char(bytes[i]) {
        i += 1;
    }
    let name = &line[..i];
    let mut labels: Labels = Vec::with_capacity(4);
    labels.push((NAME_LABEL.to_owned(), name.to_owned()));
    let after_name = i;
    i = skip_blanks(bytes, i);
    if i < bytes.len() && bytes[i] == b'{' {
        i = label_set(line, i + 1, &mut labels)?;
    } else if i == after_name && i < bytes.len() {
        return Err(format!(
            "'{}': unexpected '{}' after the metric name",
            excerpt(line),
            &line[i..].chars().next().unwrap_or(' ')
        ));
    }
    let value_start = skip_blanks(bytes, i);
    let value_end = token_end(bytes, value_start);
    let value_text = &line[value_start..value_end];
    if value_text.is_empty() {
        return Err(format!("metric '{name}' has no value"));
    }
    let value = parse_value(value_text)
        .ok_or_else(|| format!("metric '{name}': '{value_text}' is not a number"))?;
    let ts_start = skip_blanks(bytes, value_end);
    let ts_end = token_end(bytes, ts_start);
    let timestamp_ms = if ts_start < ts_end {
        let t = &line[ts_start..ts_end];
        Some(parse_timestamp(t).ok_or_else(|| {
            format!("metric '{name}': '{t}' is not a timestamp (milliseconds since the epoch)")
        })?)
    } else {
        None
    };
    if skip_blanks(bytes, ts_end) < bytes.len() {
        return Err(format!(
            "metric '{name}': unexpected text after the timestamp: '{}'",
            excerpt(&line[ts_end..])
        ));
    }
    // Sorted labels make equal label sets compare and hash equal, whatever order the target wrote.
    labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for w in labels.windows(2) {
        if w[0].0 == w[1].0 {
            return Err(format!("metric '{name}': label '{}' appears twice", w[0].0));
        }
    }
    Ok(RawSample {
        labels,
        value,
        timestamp_ms,
    })
}

/// Reads `a="x",b="y"}` from `start`, returns the position after the `}`.
fn label_set(line: &str, start: usize, labels: &mut Labels) -> Result<usize, String> {
    let bytes = line.as_bytes();
    let mut i = skip_blanks(bytes, start);
    loop {
        if i >= bytes.len() {
            return Err(format!(
                "'{}': the label set is not closed by '}}'",
                excerpt(line)
            ));
        }
        if bytes[i] == b'}' {
            return Ok(i + 1);
        }
        let name_start = i;
        if !(bytes[i].is_ascii_alphabetic() || bytes[i] == b'_') {
            return Err(format!(
                "'{}': expected a label name at column {}",
                excerpt(line),
                i + 1
            ));
        }
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        let label_name = &line[name_start..i];
        i = skip_blanks(bytes, i);
        if i >= bytes.len() || bytes[i] != b'=' {
            return Err(format!(
                "'{}': expected '=' after label '{label_name}'",
                excerpt(line)
            ));
        }
        i = skip_blanks(bytes, i + 1);
        if i >= bytes.len() || bytes[i] != b'"' {
            return Err(format!(
                "'{}': the value of label '{label_name}' must be in double quotes",
                excerpt(line)
            ));
        }
        i += 1;
        let (value, after) = quoted(line, i).ok_or_else(|| {
            format!(
                "'{}': the value of label '{label_name}' is not closed by '\"'",
                excerpt(line)
            )
        })?;
        // An empty value is the same as no label, in Prometheus's data model.
        if !value.is_empty() {
            labels.push((label_name.to_owned(), value));
        }
        i = skip_blanks(bytes, after);
        match bytes.get(i) {
            Some(b',') => i = skip_blanks(bytes, i + 1),
            Some(b'}') => {}
            _ => {
                return Err(format!(
                    "'{}': expected ',' or '}}' after label '{label_name}'",
                    excerpt(line)
                ))
            }
        }
    }
}

/// The unescaped contents of a quoted label value starting at `start` (after the opening quote), and
/// the position after the closing quote.
fn quoted(line: &str, start: usize) -> Option<(String, usize)> {
    let bytes = line.as_bytes();
    let mut i = start;
    // Fast path: no escapes.
    while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\\' {
        i += 1;
    }
    if i < bytes.len() && bytes[i] == b'"' {
        return Some((line[start..i].to_owned(), i + 1));
    }
    let mut out = String::from(&line[start..i]);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return Some((out, i + 1)),
            b'\\' => {
                match bytes.get(i + 1) {
                    Some(b'n') => out.push('\n'),
                    Some(b'\\') => out.push('\\'),
                    Some(b'"') => out.push('"'),
                    Some(_) => out.push('\\'),
                    None => return None,
                }
                i += if matches!(bytes.get(i + 1), Some(b'n' | b'\\' | b'"')) {
                    2
                } else {
                    1
                };
            }
            _ => {
                // Copy the run up to the next special byte in one go (keeps UTF-8 intact).
                let run_start = i;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\\' {
                    i += 1;
                }
                out.push_str(&line[run_start..i]);
            }
        }
    }
    None
}

fn skip_blanks(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
        i += 1;
    }
    i
}

fn token_end(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && bytes[i] != b' ' && bytes[i] != b'\t' {
        i += 1;
    }
    i
}

/// Go's float syntax as Prometheus writes it: decimals, exponents, `NaN`, `+Inf`, `-Inf`.
pub fn parse_value(s: &str) -> Option<f64> {
    if let Some(v) = small_integer(s) {
        return Some(v);
    }
    if let Ok(v) = s.parse::<f64>() {
        return Some(v);
    }
    match s.to_ascii_lowercase().as_str() {
        "+inf" => Some(f64::INFINITY),
        _ => None,
    }
}

/// A value written as an integer of at most 15 digits (with an optional `-`), as most counters and
/// bucket counts are: read digit by digit, without the float parser's general algorithm. Below 10^15
/// every integer is exactly an `f64`, so the result is the float parser's to the bit.
fn small_integer(s: &str) -> Option<f64> {
    let (negative, digits) = match s.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        b => (false, b),
    };
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    let mut v = 0u64;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(c - b'0');
    }
    let v = v as f64;
    Some(if negative { -v } else { v })
}

fn excerpt(s: &str) -> String {
    const MAX: usize = 80;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_numbered_and_trimmed_as_a_split_on_newlines_would() {
        let reference = |text: &str| -> Vec<(usize, String)> {
            text.split('\n')
                .enumerate()
                .filter_map(|(i, raw)| {
                    let line = raw.strip_suffix('\r').unwrap_or(raw).trim_start();
                    (!line.is_empty()).then(|| (i + 1, line.to_owned()))
                })
                .collect()
        };
        for text in [
            "",
            "\n",
            "a",
            "a\n",
            "\n\na 1\r\n  b 2\n\t\n# c\nd 3",
            "é 1\n\u{3000}x 2\r\n\r\n",
            "no newline at the end 1",
        ] {
            let got: Vec<(usize, String)> = lines(text).map(|(i, l)| (i, l.to_owned())).collect();
            assert_eq!(got, reference(text), "{text:?}");
        }
    }

    #[test]
    fn integers_read_without_the_float_parser_are_the_float_parsers_values() {
        let mut cases: Vec<String> = [
            "0",
            "-0",
            "7",
            "-7",
            "0012",
            "999999999999999",
            "-999999999999999",
            "1000000000000000",
            "9007199254740993",
            "12345678901234567890",
            "1e3",
            "1.5",
            "-",
            "",
            "+5",
            "--1",
            "1-",
            "12a",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = 1 + (x % 17) as u32;
            let v = x % 10u64.pow(digits.min(19));
            cases.push(if x & 1 == 0 {
                v.to_string()
            } else {
                format!("-{v}")
            });
        }
        for s in &cases {
            let fast = small_integer(s);
            let full = s.parse::<f64>().ok();
            if let Some(v) = fast {
                let full = full.unwrap_or_else(|| panic!("{s:?} is no float but read as {v}"));
                assert_eq!(v.to_bits(), full.to_bits(), "{s:?}");
            }
            assert_eq!(
                parse_value(s).map(f64::to_bits),
                full.map(f64::to_bits),
                "{s:?}"
            );
        }
        assert!(small_integer("999999999999999").is_some());
        assert!(small_integer("1000000000000000").is_none());
    }
    use std::io::BufRead;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        let mut l: Labels = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.sort();
        l
    }

    const PAGE: &str = r#"# HELP http_requests_total Requests\nserved.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{code="400",method="post",} 3
# A comment
msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9
job:requests:rate5m{path="/a,b=c}"} +Inf
# TYPE job:latency:p99 gauge
job:latency:p99 NaN
# TYPE rpc histogram
rpc_bucket{le="0.5"} 1
rpc_bucket{le="+Inf"} 2
rpc_sum 0.75
rpc_count 2
"#;

    #[test]
    fn a_page_reads_with_labels_escapes_and_timestamps() {
        let e = parse(PAGE).unwrap();
        assert_eq!(e.samples.len(), 9);
        assert_eq!(
            e.samples[0],
            RawSample {
                labels: labels(&[
                    ("__name__", "http_requests_total"),
                    ("code", "200"),
                    ("method", "post")
                ]),
                value: 1027.0,
                timestamp_ms: Some(1395066363000),
            }
        );
        assert_eq!(e.samples[1].timestamp_ms, None);
        assert_eq!(
            e.samples[2].labels,
            labels(&[
                ("__name__", "msdos_file_access_time_seconds"),
                ("error", "Cannot find file:\n\"FILE.TXT\""),
                ("path", r"C:\DIR\FILE.TXT"),
            ])
        );
        assert_eq!(
            e.samples[3].labels,
            labels(&[("__name__", "job:requests:rate5m"), ("path", "/a,b=c}")])
        );
        assert_eq!(e.samples[3].value, f64::INFINITY);
        assert!(e.samples[4].value.is_nan());
        let meta = &e.families["http_requests_total"];
        assert_eq!(meta.kind, Some(FamilyType::Counter));
        assert_eq!(meta.help.as_deref(), Some("Requests\nserved."));
        assert_eq!(e.families["rpc"].kind, Some(FamilyType::Histogram));
        assert_eq!(e.families["job:latency:p99"].kind, Some(FamilyType::Gauge));
    }

    #[test]
    fn a_malformed_line_fails_the_page_with_its_number() {
        for (page, line, words) in [
            ("ok 1\nbroken{a=\"x\" 1\n", 2, "expected ',' or '}'"),
            ("ok 1\n\nno_value\n", 3, "has no value"),
            ("x{a=\"1\"} one\n", 1, "'one' is not a number"),
            ("x 1 12.5\n", 1, "is not a timestamp"),
            ("x 1 12 extra\n", 1, "unexpected text"),
            ("x{a=1} 1\n", 1, "double quotes"),
            ("x{a=\"1\",a=\"2\"} 1\n", 1, "appears twice"),
            ("{a=\"1\"} 1\n", 1, "does not start with a metric name"),
            ("x{a=\"1} 1\n", 1, "not closed"),
            ("<html>\n", 1, "does not start with a metric name"),
        ] {
            let e = parse(page).unwrap_err();
            assert_eq!(e.line, line, "{page:?}: {e}");
            assert!(e.message.contains(words), "{page:?}: {e}");
        }
    }

    #[test]
    fn the_series_text_splits_off_from_the_end() {
        for (line, want) in [
            ("x 1", Some(("x", "1", None))),
            ("x 1 2", Some(("x", "1", Some("2")))),
            ("x{a=\"1\"} 5", Some(("x{a=\"1\"}", "5", None))),
            (
                "x{a=\"b c\"}\t5  7  ",
                Some(("x{a=\"b c\"}", "5", Some("7"))),
            ),
            ("x {a=\"} 1\"} 5", Some(("x {a=\"} 1\"}", "5", None))),
            ("x{a=\"1\"}5", None),
            ("x", None),
        ] {
            assert_eq!(split_sample(line), want, "{line:?}");
        }
        // Wherever the guess is a valid series, the full parser agrees with it.
        for line in ["x 1 2", "x{a=\"b c\"} 5 7", "x {a=\"} 1\"} 5"] {
            let (series, value, ts) = split_sample(line).unwrap();
            let full = sample_line(line).unwrap();
            let alone = sample_line(&format!("{series} 0")).unwrap();
            assert_eq!(full.labels, alone.labels, "{line:?}");
            assert_eq!(full.value, parse_value(value).unwrap());
            assert_eq!(full.timestamp_ms, ts.and_then(parse_timestamp));
        }
    }

    /// The gaps in prometheus-parse this module works around (see the module docs). If one of these
    /// starts failing, the crate has improved and the workaround may be dropped.
    #[test]
    fn prometheus_parse_gaps_are_still_there() {
        let scrape = |text: &str| {
            prometheus_parse::Scrape::parse(std::io::BufReader::new(text.as_bytes()).lines())
                .unwrap()
        };
        // Names with ':' are dropped.
        assert!(scrape("job:requests:rate5m 1\n").samples.is_empty());
        // Label values are split at ',' and escapes are kept.
        let s = scrape("x{path=\"a,b\",q=\"say \\\"hi\\\"\"} 1\n");
        assert_ne!(s.samples[0].labels.get("path"), Some("a,b"));
        // A malformed line or value is skipped, not reported.
        let s = scrape("ok 1\nbroken{ 1\nbad_value one\n");
        assert_eq!(s.samples.len(), 1);
        // _sum and _count of a histogram are separate untyped samples.
        let s = scrape("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 2\nh_count 1\n");
        assert_eq!(s.samples.len(), 3);
    }
}
