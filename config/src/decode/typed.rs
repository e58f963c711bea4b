//! One part of the config through serde, with the path and position of its first error.
//!
//! `serde_path_to_error` gives the path inside the part; the [`crate::source::SourceMap`] turns it into a
//! line and column (the key's, for an unknown key). serde's wording is kept where it already lists the
//! valid choices (unknown field, unknown variant) and otherwise reworded in YAML terms (a "list", not a
//! "sequence"; "a whole number", not "u64").

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::report::Report;
use crate::source::{index_path, key_path};

/// Bound on repairs per body; each repair rewrites one distinct scalar, so real configs need a handful.
const MAX_REPAIRS: usize = 256;

/// Deserializes `body` (the value at `path`) as `T`, reporting the first error inside it.
pub(crate) fn typed<T: DeserializeOwned>(r: &mut Report, path: &str, mut body: Value) -> Option<T> {
    if body.is_null() {
        // `debug:` alone: the component with its defaults.
        body = Value::Object(serde_json::Map::new());
    }
    for _ in 0..MAX_REPAIRS {
        let error = match serde_path_to_error::deserialize::<_, T>(&body) {
            Ok(value) => return Some(value),
            Err(e) => e,
        };
        let segments = segments(error.path());
        let at = segments.iter().fold(path.to_owned(), |p, s| match s {
            Seg::Key(k) => key_path(&p, k),
            Seg::Index(i) => index_path(&p, *i),
        });
        let message = error.inner().to_string();
        if let Some(slot) = value_at(&mut body, &segments) {
            if let Some(replacement) = repair(r, &at, &message, slot) {
                *slot = replacement;
                continue;
            }
        }
        if follows_substitution_error(r, &at, &message) {
            return None;
        }
        if message.starts_with("unknown field") {
            r.key_error(&at, humanize(&message));
        } else {
            r.error(&at, humanize(&message));
        }
        return None;
    }
    r.error(
        path,
        "too many problems in these settings to report them one by one",
    );
    None
}

enum Seg {
    Key(String),
    Index(usize),
}

fn segments(path: &serde_path_to_error::Path) -> Vec<Seg> {
    let mut out = Vec::new();
    for segment in path {
        match segment {
            serde_path_to_error::Segment::Map { key } => out.push(Seg::Key(key.clone())),
            serde_path_to_error::Segment::Seq { index } => out.push(Seg::Index(*index)),
            serde_path_to_error::Segment::Enum { .. } => {}
            serde_path_to_error::Segment::Unknown => break,
        }
    }
    out
}

fn value_at<'v>(mut value: &'v mut Value, segments: &[Seg]) -> Option<&'v mut Value> {
    for segment in segments {
        value = match (segment, value) {
            (Seg::Key(k), Value::Object(map)) => map.get_mut(k)?,
            (Seg::Index(i), Value::Array(items)) => items.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(value)
}

fn repair(r: &Report, at: &str, message: &str, slot: &Value) -> Option<Value> {
    let expected = message
        .strip_prefix("invalid type: ")?
        .rsplit_once(", expected ")?
        .1;
    match slot {
        Value::Number(_) | Value::Bool(_) if expected.contains("string") => r
            .map
            .typed_text(at)
            .map(|text| Value::String(text.to_owned())),
        Value::Null if expected.starts_with("struct ") || expected == "a map" => {
            Some(Value::Object(serde_json::Map::new()))
        }
        Value::Null if expected == "a sequence" => Some(Value::Array(Vec::new())),
        _ => None,
    }
}

/// Whether the error is only a consequence of a reference that could not be substituted (already
/// reported): the value itself, or a required key whose value was dropped for that reason.
fn follows_substitution_error(r: &Report, at: &str, message: &str) -> bool {
    let mut p = at;
    while !p.is_empty() {
        if r.map.is_poisoned(p) {
            return true;
        }
        p = crate::source::parent(p);
    }
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
        .is_some_and(|field| r.map.is_poisoned(&key_path(at, field)))
}

/// serde's messages, in the words of a YAML config.
fn humanize(message: &str) -> String {
    if let Some(field) = message.strip_prefix("missing field ") {
        return format!("missing required field {field}");
    }
    if let Some(field) = message.strip_suffix(", there are no fields") {
        return format!("{field} (this component takes no settings)");
    }
    if message.starts_with("data did not match any variant of untagged enum AttrValue") {
        return "expected a single value: a string, number or bool".into();
    }
    let Some((head, expected)) = message.rsplit_once(", expected ") else {
        return message.to_owned();
    };
    let expected = match expected {
        "u8" => "an integer from 0 to 255",
        "u16" => "an integer from 0 to 65535",
        "u32" | "u64" | "usize" => "a whole number of 0 or more",
        "i64" | "i32" => "an integer",
        "f64" | "f32" => "a number",
        "a boolean" => "true or false",
        "a sequence" => "a list",
        "a map" => "a mapping",
        "path string" => "a path",
        e if e.starts_with("struct ") => "a mapping",
        e => e,
    };
    format!("{head}, expected {expected}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_are_reworded_for_yaml() {
        assert_eq!(
            humanize("invalid type: string \"x\", expected u64"),
            "invalid type: string \"x\", expected a whole number of 0 or more"
        );
        assert_eq!(
            humanize("invalid value: integer `300`, expected u8"),
            "invalid value: integer `300`, expected an integer from 0 to 255"
        );
        assert_eq!(
            humanize("missing field `endpoint`"),
            "missing required field `endpoint`"
        );
        assert_eq!(
            humanize("unknown field `x`, there are no fields"),
            "unknown field `x` (this component takes no settings)"
        );
        assert_eq!(
            humanize("invalid type: null, expected struct BatchConfig"),
            "invalid type: null, expected a mapping"
        );
        // serde's own listing of the valid values is kept.
        let m = "unknown variant `loud`, expected one of `basic`, `normal`, `detailed`";
        assert_eq!(humanize(m), m);
    }
}
