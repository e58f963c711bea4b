//! Prometheus names for OpenTelemetry names, per the OpenTelemetry specification's Prometheus
//! compatibility rules: metric and label names reduced to the characters Prometheus allows, and UCUM
//! units spelt out as Prometheus suffixes.

/// A metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*` with runs of `_` collapsed.
pub fn sanitize_metric_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            c
        } else {
            '_'
        };
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    if out.chars().all(|c| c == '_') {
        out.clear();
    }
    out
}

/// A label name: `[a-zA-Z_][a-zA-Z0-9_]*` with runs of `_` collapsed; a leading digit or `_` gets a
/// `key` prefix, so no attribute can produce a name Prometheus reserves (`__…`).
pub fn sanitize_label_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        };
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    } else if out.starts_with('_') {
        out.insert_str(0, "key");
    }
    out
}

/// Whether `name`'s `_`-separated words contain `unit`'s words in a row.
pub fn holds_unit(name: &str, unit: &str) -> bool {
    let words: Vec<&str> = name.split('_').collect();
    let unit_words: Vec<&str> = unit.split('_').collect();
    words.windows(unit_words.len()).any(|w| w == unit_words)
}

/// An OTLP (UCUM) unit in Prometheus's words: `ms` → `milliseconds`, `By/s` → `bytes_per_second`,
/// annotations in braces dropped, `1` → `ratio` for gauges. `None` when nothing is left.
pub fn prometheus_unit(unit: &str, gauge: bool) -> Option<String> {
    let mut plain = String::with_capacity(unit.len());
    let mut depth = 0usize;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            _ if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let plain = plain.trim();
    if plain.is_empty() {
        return None;
    }
    if plain == "1" {
        return gauge.then(|| "ratio".to_owned());
    }
    let (main, per) = match plain.split_once('/') {
        Some((m, p)) => (m.trim(), Some(p.trim())),
        None => (plain, None),
    };
    let main = match main {
        "" | "1" => String::new(),
        m => unit_word(m)
            .map(str::to_owned)
            .unwrap_or_else(|| unit_token(m)),
    };
    let per = per
        .filter(|p| !p.is_empty())
        .map(|p| {
            per_unit_word(p)
                .map(str::to_owned)
                .unwrap_or_else(|| unit_token(p))
        })
        .filter(|p| !p.is_empty());
    let out = match (main.is_empty(), per) {
        (false, Some(per)) => format!("{main}_per_{per}"),
        (true, Some(per)) => format!("per_{per}"),
        (false, None) => main,
        (true, None) => return None,
    };
    Some(out)
}

fn unit_token(u: &str) -> String {
    let s: String = u
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    s.split('_')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

fn unit_word(u: &str) -> Option<&'static str> {
    Some(match u {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tebibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        _ => return None,
    })
}

fn per_unit_word(u: &str) -> Option<&'static str> {
    Some(match u {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}
