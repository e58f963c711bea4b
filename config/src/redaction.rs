//! Redaction rule packs: their file format, the packs shipped in the binary, and the checks a
//! `redaction` processor's settings get at config load.
//!
//! A pack is YAML (see `redaction-rules/` at the repository root): a name and a list of rules, each with
//! an id, a pattern, an optional validator that confirms a match (Luhn, mod-97, …), a default action,
//! a cheap prefilter, and test vectors. Packs are read with the same YAML machinery as the config, so a
//! mistake in a pack file is reported with its own file, line and column.
//!
//! Everything that can be wrong with a redaction processor is found here, at load time: an unknown pack,
//! a pattern that does not compile, an override naming no rule, a `hash` action without a readable key.
//! The pipeline then builds its engine from the same, already checked, parts ([`resolve_packs`],
//! [`build_regex`]) and cannot meet a surprise at run time.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::diagnostics::{Diagnostic, Diagnostics, Severity};
use crate::report::Report;
use crate::schema::{HashFunction, RedactionAction, RedactionProcessorConfig};
use crate::source::{index_path, key_path};

/// The packs shipped in the binary, by name, as YAML text.
pub const SHIPPED_PACKS: &[(&str, &str)] = &[
    (
        "pii-core",
        include_str!("../../redaction-rules/pii-core.yaml"),
    ),
    (
        "secrets",
        include_str!("../../redaction-rules/secrets.yaml"),
    ),
    (
        "network",
        include_str!("../../redaction-rules/network.yaml"),
    ),
];

/// The packs a redaction processor uses when `packs` is not set.
pub const DEFAULT_PACKS: &[&str] = &["pii-core", "secrets"];

/// Shortest HMAC key accepted: a short key is guessable, and then so are the hashed values.
pub const MIN_HASH_KEY_BYTES: usize = 16;

/// One rule pack file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RulePack {
    /// The pack's name, as `packs:` names it.
    pub pack: String,
    #[serde(default)]
    pub description: String,
    pub rules: Vec<RuleDef>,
}

/// One rule of a pack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    /// Unique across every pack a processor uses; names the rule in `rules:` and in metrics.
    pub id: String,
    pub description: String,
    /// A regular expression (Rust `regex` syntax) matched on bytes with Unicode classes off unless the
    /// pattern turns them on with `(?u)`. A capture group named `redact` narrows what is redacted to
    /// that group (`api_key=` stays, the key itself goes).
    pub pattern: String,
    /// Confirms (and may narrow) a match, e.g. a checksum; a match it refuses is left alone.
    #[serde(default)]
    pub validator: Option<Validator>,
    #[serde(default = "RuleDef::default_action")]
    pub action: RedactionAction,
    /// With `mask`: keep this many trailing characters of the match visible.
    #[serde(default)]
    pub keep_last: usize,
    /// A regular expression on attribute keys: the rule only applies to values of matching keys.
    #[serde(default)]
    pub keys: Option<String>,
    /// What a value must contain before the pattern is tried at all. A rule without one is tried on
    /// every value (correct, but slow).
    #[serde(default)]
    pub prefilter: Prefilter,
    /// Samples the rule must find and redact.
    #[serde(default)]
    pub must_redact: Vec<Vector>,
    /// Look-alikes the rule must leave alone.
    #[serde(default)]
    pub must_keep: Vec<Vector>,
}

impl RuleDef {
    pub const fn default_action() -> RedactionAction {
        RedactionAction::Mask
    }
}

/// A rule's prefilter. Both conditions must hold when both are given. The prefilter must never be
/// stricter than the pattern: every text the pattern (and validator) accepts must pass it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Prefilter {
    /// At least one of these literals occurs in the value (ASCII case-insensitive).
    #[serde(default)]
    pub any_of: Vec<String>,
    /// The value holds at least this many ASCII digits.
    #[serde(default)]
    pub min_digits: usize,
    /// The value holds a run of at least this many digits, consecutive digits separated by at most two
    /// of ` -./()` (`4111 1111 1111 1111` is a run of 16, `(415) 555-2671` of 10).
    #[serde(default)]
    pub min_run: usize,
}

impl Prefilter {
    pub fn is_empty(&self) -> bool {
        self.any_of.is_empty() && self.min_digits == 0 && self.min_run == 0
    }
}

/// Validators a rule may name; the pipeline implements them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Validator {
    /// The digits pass the Luhn checksum.
    Luhn,
    /// 13–19 digits, a known card network prefix, and Luhn; narrows to the card inside a longer run.
    PaymentCard,
    /// An IBAN: country length and the ISO 7064 mod-97 checksum.
    Mod97,
    /// A US Social Security number: area not 000, 666 or 900–999; group and serial not zero.
    UsSsn,
    /// A UK National Insurance number: the prefixes never issued are refused.
    UkNino,
    /// A Spanish DNI / NIE: the check letter matches.
    EsDni,
    /// A Canadian SIN: Luhn, and a first digit that is issued.
    CaSin,
    /// A phone number with 8 to 15 digits.
    Phone,
    /// A calendar date that exists (no 31 April), year 1900–2099.
    Date,
    /// A JWT whose header decodes to a JSON object with `alg`.
    Jwt,
    /// HTTP Basic credentials: base64 of `user:password`.
    BasicCredentials,
    /// Looks like a secret rather than a word: mixes letters and digits, or is long.
    SecretLike,
    /// Not a placeholder such as `true`, `null`, `****`, `${VAR}`.
    NotPlaceholder,
    /// An IPv4 address not inside a longer dotted number (a version string).
    Ipv4,
    /// Parses as an IPv6 address, other than `::` and `::1`.
    Ipv6,
    /// A MAC address with one separator throughout.
    Mac,
}

/// A test vector: a bare value, or a value under an attribute key (for rules limited by `keys`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Vector {
    Text(String),
    Keyed { key: String, value: String },
}

impl Vector {
    pub fn key(&self) -> Option<&str> {
        match self {
            Vector::Text(_) => None,
            Vector::Keyed { key, .. } => Some(key),
        }
    }
    pub fn value(&self) -> &str {
        match self {
            Vector::Text(v) | Vector::Keyed { value: v, .. } => v,
        }
    }
}

/// Compiles a rule or config pattern the way the engine runs it: on bytes, Unicode classes off unless
/// asked for (ASCII `\b`, `\d`, `\w` keep the fast DFA on any input).
pub fn build_regex(pattern: &str) -> Result<regex::bytes::Regex, String> {
    regex::bytes::RegexBuilder::new(pattern)
        .unicode(false)
        .size_limit(4 << 20)
        .build()
        .map_err(|e| {
            // regex's own message spans lines with a caret diagram; one line reads better in a list.
            let text = e.to_string();
            let last = text.lines().last().unwrap_or("").trim();
            let last = last.strip_prefix("error: ").unwrap_or(last);
            format!("does not compile: {last}")
        })
}

/// Parses a pack from `text`; `origin` names it in diagnostics.
pub fn parse_pack(text: &str, origin: &str) -> Result<RulePack, Diagnostics> {
    let parsed = crate::yaml::parse(text);
    let mut diags: Vec<Diagnostic> = parsed
        .errors
        .iter()
        .map(|e| Diagnostic {
            severity: Severity::Error,
            origin: origin.to_owned(),
            path: String::new(),
            line: Some(e.pos.line),
            column: Some(e.pos.column),
            message: e.message.clone(),
        })
        .collect();
    let Some(mut root) = parsed.root else {
        if diags.is_empty() {
            diags.push(Diagnostic {
                severity: Severity::Error,
                origin: origin.to_owned(),
                path: String::new(),
                line: None,
                column: None,
                message: "the pack is empty; it needs `pack:` and `rules:`".into(),
            });
        }
        return Err(Diagnostics(diags));
    };
    // Packs are data, not config: `${…}` in a pattern is regex text, never an environment reference.
    let (map, _) = crate::source::prepare(&mut root, &|_| None);
    let mut r = Report::new(origin, &map);
    let pack: Option<RulePack> =
        crate::decode::typed::typed(&mut r, "", crate::source::to_json(&root));
    if let Some(pack) = &pack {
        check_pack(&mut r, pack);
    }
    diags.extend(r.finish());
    match pack {
        Some(pack) if !diags.iter().any(|d| d.severity == Severity::Error) => Ok(pack),
        _ => Err(Diagnostics(diags)),
    }
}

fn check_pack(r: &mut Report, pack: &RulePack) {
    let mut seen = HashSet::new();
    for (i, rule) in pack.rules.iter().enumerate() {
        let at = index_path("rules", i);
        if rule.id.is_empty()
            || !rule
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            r.error(
                &key_path(&at, "id"),
                format!(
                    "rule id '{}' must be letters, digits and _ (it is a metric label)",
                    rule.id
                ),
            );
        }
        if !seen.insert(rule.id.as_str()) {
            r.error(
                &key_path(&at, "id"),
                format!("rule id '{}' is used twice in this pack", rule.id),
            );
        }
        if let Err(e) = build_regex(&rule.pattern) {
            r.error(&key_path(&at, "pattern"), e);
        }
        if let Some(keys) = &rule.keys {
            if let Err(e) = build_regex(keys) {
                r.error(&key_path(&at, "keys"), e);
            }
        }
        if rule.keep_last > 0 && rule.action != RedactionAction::Mask {
            r.error(
                &key_path(&at, "keep_last"),
                "keep_last only applies to the mask action",
            );
        }
        for (j, lit) in rule.prefilter.any_of.iter().enumerate() {
            if lit.is_empty() {
                r.error(
                    &index_path(&key_path(&at, "prefilter.any_of"), j),
                    "an empty literal would match every value; remove it",
                );
            }
        }
    }
}

/// A pack a processor uses, with where it came from.
#[derive(Debug, Clone)]
pub struct ResolvedPack {
    /// The `packs:` entry (a shipped name or a path).
    pub source: String,
    pub pack: RulePack,
}

/// Reads every pack `cfg` names. Each error is the index of the `packs` entry and a message.
pub fn resolve_packs(
    cfg: &RedactionProcessorConfig,
) -> Result<Vec<ResolvedPack>, Vec<(usize, String)>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, name) in cfg.packs.iter().enumerate() {
        match load_pack(name) {
            Ok(pack) => out.push(ResolvedPack {
                source: name.clone(),
                pack,
            }),
            Err(e) => errors.push((i, e)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// A shipped pack by name.
pub fn shipped_pack(name: &str) -> Option<RulePack> {
    let (_, text) = SHIPPED_PACKS.iter().find(|(n, _)| *n == name)?;
    // A shipped pack that does not parse fails the pack tests; never at a user's load.
    parse_pack(text, &format!("<shipped pack {name}>")).ok()
}

fn load_pack(name: &str) -> Result<RulePack, String> {
    if let Some(pack) = shipped_pack(name) {
        return Ok(pack);
    }
    let looks_like_path = name.contains('/') || name.ends_with(".yaml") || name.ends_with(".yml");
    if !looks_like_path {
        let known: Vec<&str> = SHIPPED_PACKS.iter().map(|(n, _)| *n).collect();
        return Err(format!(
            "'{name}' is not a shipped pack (shipped: {}) nor a path to a pack file (*.yaml)",
            known.join(", ")
        ));
    }
    let text = std::fs::read_to_string(name)
        .map_err(|e| format!("cannot read the pack file '{name}': {e}"))?;
    parse_pack(&text, name).map_err(|d| {
        let lines: Vec<String> = d.errors().map(ToString::to_string).collect();
        format!("the pack file is invalid: {}", lines.join("; "))
    })
}

/// Reads the HMAC key; `Ok(None)` when no source is set. Errors never include the key.
pub fn read_hash_key(env: Option<&str>, file: Option<&Path>) -> Result<Option<Vec<u8>>, String> {
    let key = match (env, file) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err("set one of hash_key_env and hash_key_file, not both".into())
        }
        (Some(var), None) => match std::env::var_os(var) {
            Some(v) => v.into_encoded_bytes(),
            None => {
                return Err(format!(
                    "hash_key_env: the environment variable '{var}' is not set; export it with the HMAC \
                     key (at least {MIN_HASH_KEY_BYTES} random bytes)"
                ))
            }
        },
        (None, Some(path)) => std::fs::read(path).map_err(|e| {
            format!(
                "hash_key_file: cannot read the HMAC key file '{}': {e}",
                path.display()
            )
        })?,
    };
    let key = trim_newline(key);
    if key.len() < MIN_HASH_KEY_BYTES {
        let from = if env.is_some() {
            "hash_key_env"
        } else {
            "hash_key_file"
        };
        return Err(format!(
            "{from}: the HMAC key is {} bytes; use at least {MIN_HASH_KEY_BYTES} random bytes, or hashed \
             values can be guessed",
            key.len()
        ));
    }
    Ok(Some(key))
}

fn trim_newline(mut key: Vec<u8>) -> Vec<u8> {
    while matches!(key.last(), Some(b'\n' | b'\r')) {
        key.pop();
    }
    key
}

/// The checks of one `redaction` processor, reported at `path`.
pub(crate) fn check(r: &mut Report, path: &str, cfg: &RedactionProcessorConfig) {
    for (list, key) in [
        (&cfg.blocked_key_patterns, "blocked_key_patterns"),
        (&cfg.blocked_values, "blocked_values"),
        (&cfg.allowed_values, "allowed_values"),
    ] {
        for (i, pattern) in list.iter().enumerate() {
            if let Err(e) = build_regex(pattern) {
                r.error(&index_path(&key_path(path, key), i), e);
            }
        }
    }
    for (i, name) in cfg.sensitive_query_params.iter().enumerate() {
        if name.trim().is_empty() {
            r.error(
                &index_path(&key_path(path, "sensitive_query_params"), i),
                "an empty parameter name; remove it",
            );
        }
    }
    if cfg.max_value_size.bytes() == 0 {
        r.error(
            &key_path(path, "max_value_size"),
            "max_value_size must be greater than 0",
        );
    }
    if cfg.allow_all_keys == Some(false) && cfg.allowed_keys.is_empty() {
        r.warning(
            &key_path(path, "allow_all_keys"),
            "allow_all_keys is false and allowed_keys is empty: every attribute is removed (as in the \
             OpenTelemetry Collector); list the keys to keep under allowed_keys",
        );
    }

    let packs = match resolve_packs(cfg) {
        Ok(p) => p,
        Err(errors) => {
            for (i, e) in errors {
                r.error(&index_path(&key_path(path, "packs"), i), e);
            }
            return;
        }
    };
    let mut ids: HashMap<&str, &str> = HashMap::new();
    let mut needs_key = cfg.hash_function == HashFunction::HmacSha256;
    for (i, p) in packs.iter().enumerate() {
        for rule in &p.pack.rules {
            if let Some(first) = ids.insert(&rule.id, &p.source) {
                r.error(
                    &index_path(&key_path(path, "packs"), i),
                    format!(
                        "rule '{}' of pack '{}' is also defined by pack '{first}'; rule ids must be unique \
                         across the packs of one processor",
                        rule.id, p.source
                    ),
                );
            }
            let over = cfg.rules.get(&rule.id);
            let enabled = over.and_then(|o| o.enabled).unwrap_or(true);
            let action = over.and_then(|o| o.action).unwrap_or(rule.action);
            needs_key |= enabled && action == RedactionAction::Hash;
        }
    }
    for (id, over) in &cfg.rules {
        let at = key_path(&key_path(path, "rules"), id);
        if !ids.contains_key(id.as_str()) {
            let mut known: Vec<&str> = ids.keys().copied().collect();
            known.sort_unstable();
            r.key_error(
                &at,
                format!(
                    "no rule '{id}' in the packs used ({}); known rules: {}",
                    cfg.packs.join(", "),
                    known.join(", ")
                ),
            );
        }
        if over.keep_last.is_some() && over.action.is_some_and(|a| a != RedactionAction::Mask) {
            r.error(
                &key_path(&at, "keep_last"),
                "keep_last only applies to the mask action",
            );
        }
    }

    let key_at = if cfg.hash_key_file.is_some() {
        key_path(path, "hash_key_file")
    } else {
        key_path(path, "hash_key_env")
    };
    match cfg.hash_key() {
        Err(e) => r.error(&key_at, e),
        Ok(None) if needs_key => r.error(
            path,
            "a hash action (hash_function: hmac-sha256, or a rule whose action is hash) needs a key: set \
             hash_key_env (an environment variable) or hash_key_file (a file) holding at least 16 random \
             bytes; keys are never written inline",
        ),
        Ok(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_pack_parses_and_names_itself() {
        for (name, text) in SHIPPED_PACKS {
            let pack = parse_pack(text, name).unwrap_or_else(|d| panic!("{name}:\n{d}"));
            assert_eq!(&pack.pack, name);
            assert!(!pack.rules.is_empty());
        }
        for name in DEFAULT_PACKS {
            assert!(shipped_pack(name).is_some());
        }
    }

    #[test]
    fn a_broken_pack_is_reported_with_its_line() {
        let text = "pack: mine\nrules:\n  - id: x\n    description: d\n    pattern: '(unclosed'\n";
        let err = parse_pack(text, "mine.yaml").unwrap_err();
        let d = err.errors().next().unwrap();
        assert_eq!((d.line, d.path.as_str()), (Some(5), "rules[0].pattern"));
        assert!(d.message.contains("does not compile"), "{}", d.message);
        let text = "pack: mine\nrules:\n  - id: x\n    description: d\n    pattern: a\n    validator: lunh\n";
        let err = parse_pack(text, "mine.yaml").unwrap_err();
        let d = err.errors().next().unwrap();
        assert_eq!(d.line, Some(6));
        assert!(d.message.contains("luhn"), "{}", d.message);
    }

    #[test]
    fn a_short_or_missing_key_is_an_error_that_never_shows_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, "tooshort\n").unwrap();
        let e = read_hash_key(None, Some(&short)).unwrap_err();
        assert!(e.contains("8 bytes") && !e.contains("tooshort"), "{e}");
        let good = dir.path().join("good");
        std::fs::write(&good, "0123456789abcdef0123\n").unwrap();
        assert_eq!(
            read_hash_key(None, Some(&good)).unwrap().unwrap(),
            b"0123456789abcdef0123"
        );
        let e = read_hash_key(None, Some(&dir.path().join("missing"))).unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
        let e = read_hash_key(Some("OUTPOST_TEST_SURELY_UNSET_KEY"), None).unwrap_err();
        assert!(e.contains("is not set"), "{e}");
    }
}
