//! Rules for the log receivers: globs, regexes, encodings, time zones and operator fields are checked
//! here, at load time and at their own YAML paths, so a receiver never fails at start (or worse, at
//! the first odd line) for a setting that could have been refused up front.

use crate::report::Report;
use crate::schema::*;
use crate::source::{index_path, key_path};

pub(super) fn filelog(config: &Config, r: &mut Report, path: &str, c: &FilelogReceiverConfig) {
    if c.include.is_empty() {
        r.error(
            &key_path(path, "include"),
            "include lists no files; add at least one glob such as /var/log/app/*.log",
        );
    }
    for (key, globs) in [("include", &c.include), ("exclude", &c.exclude)] {
        for (i, g) in globs.iter().enumerate() {
            if let Err(e) = glob::Pattern::new(g) {
                r.error(
                    &index_path(&key_path(path, key), i),
                    format!("'{g}' is not a glob: {e}"),
                );
            }
        }
    }
    if c.poll_interval.get().is_zero() {
        r.error(
            &key_path(path, "poll_interval"),
            "poll_interval must be greater than 0 (e.g. 200ms)",
        );
    }
    if c.fingerprint_size.bytes() < 16 {
        r.error(
            &key_path(path, "fingerprint_size"),
            format!(
                "fingerprint_size is {} bytes; at least 16 are needed to tell files apart (default 1000)",
                c.fingerprint_size.bytes()
            ),
        );
    }
    if c.max_log_size.bytes() == 0 {
        r.error(
            &key_path(path, "max_log_size"),
            "max_log_size must be greater than 0 (e.g. 1MiB)",
        );
    }
    if c.max_concurrent_files == 0 {
        r.error(
            &key_path(path, "max_concurrent_files"),
            "max_concurrent_files must be at least 1",
        );
    }
    if let Err(message) = check_encoding(&c.encoding) {
        r.error(&key_path(path, "encoding"), message);
    }
    if let Some(m) = &c.multiline {
        let at = key_path(path, "multiline");
        match (&m.line_start_pattern, &m.line_end_pattern) {
            (None, None) => r.error(
                &at,
                "multiline needs line_start_pattern or line_end_pattern (a regex); remove multiline to \
                 read one entry per line",
            ),
            (Some(_), Some(_)) => r.error(
                &key_path(&at, "line_end_pattern"),
                "set one of line_start_pattern and line_end_pattern, not both",
            ),
            _ => {}
        }
        for (key, pattern) in [
            ("line_start_pattern", &m.line_start_pattern),
            ("line_end_pattern", &m.line_end_pattern),
        ] {
            if let Some(p) = pattern {
                check_regex(r, &key_path(&at, key), p);
            }
        }
    }
    if let Some(storage) = &c.storage {
        if !matches!(
            config.extensions.get(storage),
            Some(ExtensionConfig::FileStorage(_))
        ) {
            r.error(
                &key_path(path, "storage"),
                format!(
                    "'{storage}' is not a file_storage extension; define one under extensions or remove \
                     storage (checkpoints always live in the node's data directory)"
                ),
            );
        }
    }
    operators(r, &key_path(path, "operators"), &c.operators);
}

pub(super) fn syslog(r: &mut Report, path: &str, c: &SyslogReceiverConfig) {
    if c.tcp.is_none() && c.udp.is_none() {
        r.error(
            path,
            "no transport is enabled; add `udp: {listen_address: ...}` and/or `tcp: {listen_address: ...}`",
        );
    }
    if let Some(location) = &c.location {
        check_location(r, &key_path(path, "location"), location);
    }
    if let Some(tcp) = &c.tcp {
        if tcp.max_log_size.bytes() == 0 {
            r.error(
                &key_path(&key_path(path, "tcp"), "max_log_size"),
                "max_log_size must be greater than 0 (e.g. 1MiB)",
            );
        }
    }
}

/// Whether `label` names an encoding the tailer can split into lines.
fn check_encoding(label: &str) -> Result<(), String> {
    let l = label.trim().to_ascii_lowercase();
    if matches!(l.as_str(), "nop" | "ascii" | "utf-8" | "utf8") {
        return Ok(());
    }
    match encoding_rs::Encoding::for_label(l.as_bytes()) {
        Some(e) if e == encoding_rs::REPLACEMENT => Err(format!(
            "'{label}' is an encoding that cannot be decoded safely; use utf-8, utf-16le, utf-16be, \
             latin1, nop or another WHATWG label"
        )),
        Some(_) => Ok(()),
        None => Err(format!(
            "'{label}' is not a known encoding (use utf-8, utf-16le, utf-16be, ascii, latin1, nop or \
             another WHATWG label such as shift_jis or gbk)"
        )),
    }
}

fn check_regex(r: &mut Report, path: &str, pattern: &str) -> Option<regex::Regex> {
    match regex::Regex::new(pattern) {
        Ok(re) => Some(re),
        Err(e) => {
            // The regex crate's message spans several lines with a caret under the problem.
            r.error(path, format!("not a valid regex: {e}"));
            None
        }
    }
}

fn check_location(r: &mut Report, path: &str, name: &str) {
    if name.eq_ignore_ascii_case("local") {
        return;
    }
    if jiff::tz::TimeZone::get(name).is_err() {
        r.error(
            path,
            format!(
                "'{name}' is not a time zone this system knows; use an IANA name such as UTC, \
                 Europe/Berlin or America/New_York (from /usr/share/zoneinfo), or Local"
            ),
        );
    }
}

fn operators(r: &mut Report, path: &str, ops: &[OperatorConfig]) {
    for (i, op) in ops.iter().enumerate() {
        let at = index_path(path, i);
        match op {
            OperatorConfig::JsonParser(p) => {
                field(r, &key_path(&at, "parse_from"), &p.parse_from, "parse_from");
                field(r, &key_path(&at, "parse_to"), &p.parse_to, "parse_to");
                embedded(r, &at, &p.timestamp, &p.severity);
            }
            OperatorConfig::RegexParser(p) => {
                if let Some(re) = check_regex(r, &key_path(&at, "regex"), &p.regex) {
                    if re.capture_names().flatten().next().is_none() {
                        r.error(
                            &key_path(&at, "regex"),
                            "the regex has no named capture, so it would extract nothing; name the \
                             parts to keep, e.g. (?P<level>\\w+)",
                        );
                    }
                }
                field(r, &key_path(&at, "parse_from"), &p.parse_from, "parse_from");
                field(r, &key_path(&at, "parse_to"), &p.parse_to, "parse_to");
                embedded(r, &at, &p.timestamp, &p.severity);
            }
            OperatorConfig::SeverityParser(s) => severity(r, &at, s),
            OperatorConfig::TimeParser(t) => time(r, &at, t),
        }
    }
}

fn embedded(
    r: &mut Report,
    at: &str,
    timestamp: &Option<TimeParserConfig>,
    sev: &Option<SeverityParserConfig>,
) {
    if let Some(t) = timestamp {
        time(r, &key_path(at, "timestamp"), t);
    }
    if let Some(s) = sev {
        severity(r, &key_path(at, "severity"), s);
    }
}

fn field(r: &mut Report, path: &str, f: &FieldPath, key: &str) {
    if f.root == FieldRoot::Resource {
        r.error(
            path,
            format!(
                "{key} '{f}': resource fields are not supported here (the records of one receiver \
                 share one resource); use attributes, or set resource attributes with the resource \
                 processor"
            ),
        );
    }
}

fn time(r: &mut Report, at: &str, t: &TimeParserConfig) {
    field(r, &key_path(at, "parse_from"), &t.parse_from, "parse_from");
    let layout_path = key_path(at, "layout");
    match t.layout_type {
        LayoutType::Gotime => r.error(
            &key_path(at, "layout_type"),
            "gotime layouts are not supported; use layout_type: strptime with % directives (Go's \
             2006-01-02T15:04:05Z07:00 is %Y-%m-%dT%H:%M:%S%:z)",
        ),
        LayoutType::Epoch => {
            if !EPOCH_LAYOUTS.contains(&t.layout.as_str()) {
                r.error(
                    &layout_path,
                    format!(
                        "'{}' is not an epoch layout (expected one of {})",
                        t.layout,
                        EPOCH_LAYOUTS.join(", ")
                    ),
                );
            }
        }
        LayoutType::Strptime => {
            if !t.layout.contains('%') {
                r.error(
                    &layout_path,
                    format!(
                        "'{}' has no % directive; write e.g. %Y-%m-%d %H:%M:%S",
                        t.layout
                    ),
                );
            }
        }
    }
    if let Some(location) = &t.location {
        check_location(r, &key_path(at, "location"), location);
    }
}

fn severity(r: &mut Report, at: &str, s: &SeverityParserConfig) {
    field(r, &key_path(at, "parse_from"), &s.parse_from, "parse_from");
    let mapping = key_path(at, "mapping");
    for (level, matchers) in &s.mapping {
        let level_path = key_path(&mapping, level);
        if severity_number(level).is_none() {
            r.key_error(
                &level_path,
                format!(
                    "'{level}' is not a severity level (expected trace, debug, info, warn, error or fatal, \
                     optionally followed by 2, 3 or 4)"
                ),
            );
        }
        for m in matchers.as_slice() {
            if let SeverityMatcher::Range { min, max } = m {
                if min > max {
                    r.error(
                        &level_path,
                        format!("range min ({min}) is above max ({max})"),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_checked_by_label() {
        for ok in [
            "utf-8",
            "UTF-8",
            "nop",
            "ascii",
            "utf-16le",
            "utf-16be",
            "latin1",
            "shift_jis",
        ] {
            assert!(check_encoding(ok).is_ok(), "{ok}");
        }
        assert!(check_encoding("klingon")
            .unwrap_err()
            .contains("not a known"));
        assert!(check_encoding("iso-2022-kr").is_err());
    }
}
