//! From the YAML tree to values: environment substitution, scalar typing, and the map from every YAML
//! path to where it was written.
//!
//! Scalars are typed by the YAML 1.2 core schema, as go-yaml does for the OpenTelemetry Collector: a
//! plain `4317` is a number, `true` a bool, `~`/`null`/empty a null, and anything quoted or written as a
//! block (`|`, `>`) a string. A plain scalar that is exactly one `${…}` reference is typed from its
//! substituted text (numbers and bools only: a variable never turns a setting into null), one that mixes
//! references with text stays a string. The core tags `!!str`, `!!int`, `!!float`, `!!bool`, `!!null`
//! force a type.
//!
//! [`SourceMap`] answers "where is `exporters.otlp.endpoint`?" for any path into the document, falling
//! back to the nearest enclosing node that exists (a missing key is reported at its parent), and keeps the
//! written text of plain scalars that were typed as numbers or bools so a string-typed setting can still
//! take them (`headers: {x-tenant: 42}`).

use std::collections::HashMap;

use serde_json::Value;

use crate::env::{self, Expanded};
use crate::yaml::{Kind, Node, Pos, Scalar, Style};

/// Where every node of the document sits. Paths are dotted keys with `[i]` for list items.
#[derive(Debug, Default)]
pub(crate) struct SourceMap {
    nodes: HashMap<String, NodeInfo>,
}

#[derive(Debug)]
struct NodeInfo {
    pos: Pos,
    /// The position of the key naming this node, for nodes that are mapping values.
    key_pos: Option<Pos>,
    /// A scalar with something written (not `key:` alone); errors about it point at the value.
    written_scalar: bool,
    /// The text of a plain scalar that the core schema typed as a number or bool.
    typed_text: Option<String>,
    poisoned: bool,
}

impl SourceMap {
    fn nearest(&self, path: &str) -> Option<&NodeInfo> {
        let mut p = path;
        loop {
            if p.is_empty() {
                // The document root has no useful position for "something is missing".
                return None;
            }
            if let Some(info) = self.nodes.get(p) {
                return Some(info);
            }
            p = parent(p);
        }
    }

    /// Where to point for a problem with the value at `path`: the value itself for a written scalar,
    /// otherwise the key that introduces it (the line a reader looks for), falling back to ancestors.
    pub fn value_pos(&self, path: &str) -> Option<Pos> {
        self.nearest(path).map(|n| {
            if n.written_scalar {
                n.pos
            } else {
                n.key_pos.unwrap_or(n.pos)
            }
        })
    }

    /// Where the key introducing `path` is written (for "unknown key" problems).
    pub fn key_pos(&self, path: &str) -> Option<Pos> {
        match self.nodes.get(path) {
            Some(n) => n.key_pos.or(Some(n.pos)),
            None => self.value_pos(path),
        }
    }

    /// The written text of a plain scalar at `path` that was typed as a number or bool.
    pub fn typed_text(&self, path: &str) -> Option<&str> {
        self.nodes.get(path).and_then(|n| n.typed_text.as_deref())
    }

    /// Whether substitution failed at `path` (its error is already reported).
    pub fn is_poisoned(&self, path: &str) -> bool {
        self.nodes.get(path).is_some_and(|n| n.poisoned)
    }
}

/// The path of the value under `key` in the mapping at `parent`.
pub(crate) fn key_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// The path of item `index` in the list at `parent`.
pub(crate) fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// The path one level up: `a.b[2]` → `a.b`, `a.b` → `a`, `a` → ``.
pub(crate) fn parent(path: &str) -> &str {
    if path.ends_with(']') {
        if let Some(open) = path.rfind('[') {
            return &path[..open];
        }
    }
    match path.rfind('.') {
        Some(dot) => &path[..dot],
        None => "",
    }
}

/// A problem found while preparing values: where, and what.
pub(crate) struct SourceError {
    pub path: String,
    pub pos: Pos,
    pub message: String,
}

/// Substitutes references and types every scalar value of `root` in place (keys are left as written),
/// and maps every path to its position. Problems are returned; their scalars are marked poisoned.
pub(crate) fn prepare(
    root: &mut Node,
    env: &dyn Fn(&str) -> Option<String>,
) -> (SourceMap, Vec<SourceError>) {
    let mut map = SourceMap::default();
    let mut errors = Vec::new();
    walk(root, String::new(), None, env, &mut map, &mut errors);
    (map, errors)
}

fn walk(
    node: &mut Node,
    path: String,
    key_pos: Option<Pos>,
    env: &dyn Fn(&str) -> Option<String>,
    map: &mut SourceMap,
    errors: &mut Vec<SourceError>,
) {
    let mut info = NodeInfo {
        pos: node.pos,
        key_pos,
        written_scalar: false,
        typed_text: None,
        poisoned: false,
    };
    match &mut node.kind {
        Kind::Scalar(scalar) => match type_scalar(scalar, env) {
            Ok((value, text)) => {
                info.written_scalar = !value.is_null() || !scalar.text.is_empty();
                if scalar.style == Style::Plain
                    && matches!(value, Value::Number(_) | Value::Bool(_))
                {
                    info.typed_text = Some(text);
                }
                scalar.value = value;
            }
            Err(messages) => {
                info.written_scalar = true;
                info.poisoned = true;
                scalar.poisoned = true;
                scalar.value = Value::String(scalar.text.clone());
                for message in messages {
                    errors.push(SourceError {
                        path: path.clone(),
                        pos: node.pos,
                        message,
                    });
                }
            }
        },
        Kind::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, index_path(&path, i), None, env, map, errors);
            }
        }
        Kind::Mapping(entries) => {
            for entry in entries.iter_mut() {
                let child = key_path(&path, &entry.key);
                walk(
                    &mut entry.value,
                    child,
                    Some(entry.key_pos),
                    env,
                    map,
                    errors,
                );
            }
        }
    }
    map.nodes.insert(path, info);
}

/// The scalar's value and its text after substitution.
fn type_scalar(
    scalar: &Scalar,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Value, String), Vec<String>> {
    let Expanded {
        text,
        whole_reference,
        changed,
    } = env::expand(&scalar.text, env)
        .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let value = typed_value(scalar, &text, whole_reference, changed)?;
    Ok((value, text))
}

fn typed_value(
    scalar: &Scalar,
    text: &str,
    whole_reference: bool,
    changed: bool,
) -> Result<Value, Vec<String>> {
    let tag = scalar.tag.as_deref().unwrap_or("");
    let forced = |v: Option<Value>, what: &str| {
        v.ok_or_else(|| vec![format!("'{text}' is not {what} (it is tagged {tag})")])
    };
    match scalar.tag.as_deref() {
        Some("!!str" | "!") => Ok(Value::String(text.to_owned())),
        Some("!!int") => forced(int(text), "an integer"),
        Some("!!float") => forced(
            float(text).or_else(|| {
                let v = int(text)?.as_f64()?;
                serde_json::Number::from_f64(v).map(Value::Number)
            }),
            "a number",
        ),
        Some("!!bool") => forced(boolean(text), "true or false"),
        Some("!!null") => forced(null(text), "null"),
        Some(other) => Err(vec![format!(
            "tag '{other}' is not supported (supported: !!str, !!int, !!float, !!bool, !!null)"
        )]),
        None => Ok(match scalar.style {
            Style::Plain if !changed => core_schema(text, true),
            Style::Plain if whole_reference => core_schema(text, false),
            _ => Value::String(text.to_owned()),
        }),
    }
}

/// Types a plain scalar by the YAML 1.2 core schema.
fn core_schema(text: &str, allow_null: bool) -> Value {
    if allow_null {
        if let Some(v) = null(text) {
            return v;
        }
    }
    boolean(text)
        .or_else(|| int(text))
        .or_else(|| float(text))
        .unwrap_or_else(|| Value::String(text.to_owned()))
}

fn null(text: &str) -> Option<Value> {
    matches!(text, "" | "~" | "null" | "Null" | "NULL").then_some(Value::Null)
}

fn boolean(text: &str) -> Option<Value> {
    match text {
        "true" | "True" | "TRUE" => Some(Value::Bool(true)),
        "false" | "False" | "FALSE" => Some(Value::Bool(false)),
        _ => None,
    }
}

fn int(text: &str) -> Option<Value> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, digits) = if let Some(hex) = text.strip_prefix("0x") {
        (16, hex)
    } else if let Some(oct) = text.strip_prefix("0o") {
        (8, oct)
    } else {
        (10, digits)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    // Integers beyond 64 bits stay strings; the typed field then says what it expected.
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if negative && radix == 10 {
        let v = 0i64.checked_sub_unsigned(magnitude)?;
        Some(Value::from(v))
    } else {
        Some(Value::from(magnitude))
    }
}

fn float(text: &str) -> Option<Value> {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (mantissa, None),
    };
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if fraction.is_none() && exponent.is_none() {
        // Digits alone are an integer; one too large for 64 bits stays a string rather than turn into
        // an approximate float.
        return None;
    }
    let mantissa_ok = match fraction {
        // `.5`, `1.`, `1.5`
        Some(f) => digits(whole) && digits(f) && !(whole.is_empty() && f.is_empty()),
        None => !whole.is_empty() && digits(whole),
    };
    let exponent_ok = match exponent {
        Some(e) => {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && digits(e)
        }
        None => true,
    };
    if !(mantissa_ok && exponent_ok) {
        return None;
    }
    // `.inf` / `.nan` have no JSON form; they stay strings and the typed field rejects them.
    let v: f64 = text.parse().ok()?;
    serde_json::Number::from_f64(v).map(Value::Number)
}

/// The value of `node` for serde. Mapping entries whose substitution failed are left out, so the typed
/// decoder reports nothing further about them (their error is already reported).
pub(crate) fn to_json(node: &Node) -> Value {
    match &node.kind {
        Kind::Scalar(s) => s.value.clone(),
        Kind::Sequence(items) => Value::Array(items.iter().map(to_json).collect()),
        Kind::Mapping(entries) => Value::Object(
            entries
                .iter()
                .filter(|e| !matches!(&e.value.kind, Kind::Scalar(s) if s.poisoned))
                .map(|e| (e.key.clone(), to_json(&e.value)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;
    use serde_json::json;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("4317".into()),
            "FLAG" => Some("true".into()),
            "RATIO" => Some("0.5".into()),
            "NULLISH" => Some("null".into()),
            "HOST" => Some("example.com".into()),
            _ => None,
        }
    }

    fn load(text: &str) -> (Value, SourceMap, Vec<SourceError>) {
        let mut root = yaml::parse(text).root.expect("parses");
        let (map, errors) = prepare(&mut root, &env);
        (to_json(&root), map, errors)
    }

    #[test]
    fn plain_scalars_follow_the_core_schema() {
        let (v, _, errors) = load(
            "a: 1\nb: -7\nc: 0x1f\nd: 1.5\ne: true\nf: ~\ng:\nh: '1'\ni: \"true\"\nj: 1.2.3\nk: |\n  7\nl: 1e3\nm: .inf\nn: 99999999999999999999\n",
        );
        assert!(errors.is_empty());
        assert_eq!(
            v,
            json!({"a": 1, "b": -7, "c": 31, "d": 1.5, "e": true, "f": null, "g": null, "h": "1", "i": "true",
                   "j": "1.2.3", "k": "7\n", "l": 1000.0, "m": ".inf", "n": "99999999999999999999"})
        );
    }

    #[test]
    fn a_plain_whole_reference_is_typed_from_its_value() {
        let (v, map, errors) = load(
            "port: ${env:PORT}\nflag: ${env:FLAG}\nratio: ${RATIO}\nquoted: \"${env:PORT}\"\nmixed: ${env:PORT}0\nnullish: ${NULLISH}\n",
        );
        assert!(errors.is_empty());
        assert_eq!(
            v,
            json!({"port": 4317, "flag": true, "ratio": 0.5, "quoted": "4317", "mixed": "43170", "nullish": "null"})
        );
        // The substituted text is kept for string-typed settings.
        assert_eq!(map.typed_text("port"), Some("4317"));
        assert_eq!(map.typed_text("quoted"), None);
    }

    #[test]
    fn tags_force_a_type() {
        let (v, _, errors) = load("a: !!str 42\nb: !!int '42'\nc: !!float 1\nd: ! 12\n");
        assert!(errors.is_empty());
        assert_eq!(v, json!({"a": "42", "b": 42, "c": 1.0, "d": "12"}));
        let (_, _, errors) = load("a: !!int abc\nb: !custom x\n");
        assert_eq!(errors.len(), 2);
        assert!(errors[1].message.contains("tag '!custom' is not supported"));
    }

    #[test]
    fn substitution_errors_carry_path_and_line_and_drop_the_key() {
        let (v, map, errors) = load(
            "exporters:\n  otlp:\n    endpoint: ${env:MISSING}\n    x:\n      - ${env:GONE}\n",
        );
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].path, "exporters.otlp.endpoint");
        assert_eq!(
            errors[0].pos,
            Pos {
                line: 3,
                column: 15
            }
        );
        assert!(errors[0].message.contains("'MISSING' is not set"));
        assert_eq!(errors[1].path, "exporters.otlp.x[0]");
        assert!(map.is_poisoned("exporters.otlp.endpoint"));
        assert_eq!(v, json!({"exporters": {"otlp": {"x": ["${env:GONE}"]}}}));
    }

    #[test]
    fn keys_are_never_substituted() {
        let (v, _, errors) = load("${env:HOST}: 1\n");
        assert!(errors.is_empty());
        assert_eq!(v, json!({"${env:HOST}": 1}));
    }

    #[test]
    fn positions_fall_back_to_the_nearest_written_node() {
        let (_, map, _) = load("exporters:\n  debug:\n  otlp:\n    endpoint: x:1\n");
        assert_eq!(
            map.value_pos("exporters.otlp.endpoint"),
            Some(Pos {
                line: 4,
                column: 15
            })
        );
        assert_eq!(
            map.key_pos("exporters.otlp.endpoint"),
            Some(Pos { line: 4, column: 5 })
        );
        // `debug:` has no value: point at its key.
        assert_eq!(
            map.value_pos("exporters.debug"),
            Some(Pos { line: 2, column: 3 })
        );
        assert_eq!(
            map.value_pos("exporters.otlp.tls.insecure"),
            Some(Pos { line: 3, column: 3 })
        );
        assert_eq!(map.value_pos("service.pipelines"), None);
    }

    #[test]
    fn paths_go_up_one_level() {
        assert_eq!(parent("a.b[2]"), "a.b");
        assert_eq!(parent("a.b"), "a");
        assert_eq!(parent("a"), "");
        assert_eq!(index_path(&key_path("a", "b"), 3), "a.b[3]");
    }
}
