//! From a `redaction` processor's settings to the engine's rules: the packs it names (the shipped ones
//! are embedded in the binary, see `outpost_config::redaction::SHIPPED_PACKS`), each rule's overrides,
//! the OpenTelemetry Collector's `blocked_values`, and the sensitive URL query parameters.
//!
//! The settings were checked at config load with the same functions, so an error here means the
//! environment changed since (a pack file or key file removed); it is reported, never papered over.

use outpost_config::redaction::{resolve_packs, Prefilter, RuleDef};
use outpost_config::{HashFunction, RedactionAction, RedactionProcessorConfig};

use super::engine::{Engine, Options, RuleSpec};

/// Rule id of the matches of `blocked_values`.
pub const BLOCKED_VALUES: &str = "blocked_values";
/// Rule id of sensitive URL query parameters.
pub const URL_QUERY_PARAM: &str = "url_query_param";

fn spec(def: &RuleDef) -> RuleSpec {
    RuleSpec {
        id: def.id.clone(),
        pattern: def.pattern.clone(),
        validator: def.validator,
        action: def.action,
        keep_last: def.keep_last,
        keys: def.keys.clone(),
        prefilter: def.prefilter.clone(),
    }
}

/// Every rule `cfg` enables, in pack order, then `blocked_values`, then the URL query parameter rule.
pub fn rule_specs(cfg: &RedactionProcessorConfig) -> Result<Vec<RuleSpec>, String> {
    let packs = resolve_packs(cfg).map_err(|errors| {
        errors
            .into_iter()
            .map(|(i, e)| format!("packs[{i}]: {e}"))
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let mut specs = Vec::new();
    for p in &packs {
        for def in &p.pack.rules {
            let mut s = spec(def);
            if let Some(over) = cfg.rules.get(&def.id) {
                if over.enabled == Some(false) {
                    continue;
                }
                if let Some(action) = over.action {
                    s.action = action;
                    if action != RedactionAction::Mask {
                        s.keep_last = 0;
                    }
                }
                if let Some(k) = over.keep_last {
                    s.keep_last = k;
                }
            }
            specs.push(s);
        }
    }
    for pattern in &cfg.blocked_values {
        specs.push(RuleSpec {
            id: BLOCKED_VALUES.into(),
            pattern: pattern.clone(),
            validator: None,
            action: RedactionAction::Mask,
            keep_last: 0,
            keys: None,
            prefilter: Prefilter::default(),
        });
    }
    let names: Vec<String> = cfg
        .sensitive_query_params
        .iter()
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
        .map(|n| n.to_owned())
        .collect();
    if !names.is_empty() {
        let alternation: Vec<String> = names.iter().map(|n| regex::escape(n)).collect();
        specs.push(RuleSpec {
            id: URL_QUERY_PARAM.into(),
            pattern: format!(
                r#"(?i)[?&;](?:{})=(?P<redact>[^&#\s"'<>]+)"#,
                alternation.join("|")
            ),
            validator: None,
            action: RedactionAction::Mask,
            keep_last: 0,
            keys: None,
            prefilter: Prefilter {
                any_of: names.iter().map(|n| format!("{n}=")).collect(),
                ..Prefilter::default()
            },
        });
    }
    Ok(specs)
}

/// The engine for `cfg`, with its key read now.
pub fn engine(cfg: &RedactionProcessorConfig) -> Result<Engine, String> {
    let opts = Options {
        mask: cfg.mask.clone(),
        hash_key: cfg.hash_key()?,
        hash_all: cfg.hash_function == HashFunction::HmacSha256,
        max_value_size: usize::try_from(cfg.max_value_size.bytes()).unwrap_or(usize::MAX),
    };
    Engine::new(rule_specs(cfg)?, &cfg.allowed_values, opts)
}

#[cfg(test)]
mod tests {
    use super::super::engine::{Finding, Scratch, TooLarge, Verdict};
    use super::*;
    use outpost_config::redaction::{shipped_pack, Vector, DEFAULT_PACKS, SHIPPED_PACKS};

    fn verdict(engine: &Engine, v: &Vector) -> (usize, Verdict) {
        let mut scratch = Scratch::default();
        engine
            .scan(v.key(), v.value().as_bytes(), &mut scratch)
            .unwrap();
        let n = scratch.findings().len();
        (n, engine.verdict(v.value().as_bytes(), true, &mut scratch))
    }

    /// Every `must_redact` sample is found and changed by its rule alone; every `must_keep` sample is
    /// left alone by its rule alone, and — for the packs on by default — by the whole default engine,
    /// so a look-alike is not caught by some other default rule either. Failures are listed together.
    #[test]
    fn every_vector_of_every_pack() {
        let defaults = engine(&RedactionProcessorConfig::default()).unwrap();
        let mut failures = Vec::new();
        let mut vectors = 0;
        for (name, _) in SHIPPED_PACKS {
            let pack = shipped_pack(name).unwrap();
            for def in &pack.rules {
                let mut s = spec(def);
                s.action = RedactionAction::Mask;
                let alone = Engine::new(vec![s], &[], Options::default()).unwrap();
                for v in &def.must_redact {
                    vectors += 1;
                    match verdict(&alone, v) {
                        (n, Verdict::Rewrite(out)) if n > 0 && out != v.value().as_bytes() => {}
                        other => failures
                            .push(format!("{name}/{}: must_redact {v:?}: {other:?}", def.id)),
                    }
                }
                for v in &def.must_keep {
                    vectors += 1;
                    let (n, _) = verdict(&alone, v);
                    if n > 0 {
                        failures.push(format!("{name}/{}: must_keep {v:?} matched", def.id));
                    }
                    if DEFAULT_PACKS.contains(name) {
                        if let (n, Verdict::Rewrite(out)) = verdict(&defaults, v) {
                            failures.push(format!(
                                "{name}/{}: must_keep {v:?} changed by the default packs ({n} findings): {}",
                                def.id,
                                String::from_utf8_lossy(&out)
                            ));
                        }
                    }
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
        assert!(vectors > 150, "only {vectors} vectors");
    }

    #[test]
    fn shipped_packs_have_enough_rules_each_with_a_prefilter_and_vectors() {
        let mut total = 0;
        for (name, _) in SHIPPED_PACKS {
            for def in shipped_pack(name).unwrap().rules {
                total += 1;
                assert!(
                    !def.prefilter.is_empty(),
                    "{name}/{} has no prefilter",
                    def.id
                );
                assert!(
                    !def.must_redact.is_empty() && !def.must_keep.is_empty(),
                    "{name}/{} lacks vectors",
                    def.id
                );
            }
        }
        assert!(total >= 25, "{total} rules");
    }

    #[test]
    fn overrides_disable_and_change_actions() {
        let mut cfg = RedactionProcessorConfig::default();
        cfg.rules.insert(
            "email".into(),
            outpost_config::RedactionRuleOverride {
                enabled: Some(false),
                ..Default::default()
            },
        );
        cfg.rules.insert(
            "us_ssn".into(),
            outpost_config::RedactionRuleOverride {
                action: Some(RedactionAction::DropRecord),
                ..Default::default()
            },
        );
        let e = engine(&cfg).unwrap();
        let v = |s: &str| verdict(&e, &Vector::Text(s.into())).1;
        assert_eq!(v("mail jane@example.com"), Verdict::Clean);
        assert_eq!(v("ssn 536-22-8142"), Verdict::DropRecord);
        cfg.packs = vec!["network".into()];
        cfg.rules.clear();
        let e = engine(&cfg).unwrap();
        assert!(matches!(
            verdict(&e, &Vector::Text("ip 203.0.113.9".into())).1,
            Verdict::Rewrite(_)
        ));
        assert_eq!(
            verdict(&e, &Vector::Text("jane@example.com".into())).1,
            Verdict::Clean
        );
    }

    #[test]
    fn sensitive_query_parameters_are_masked() {
        let e = engine(&RedactionProcessorConfig::default()).unwrap();
        let (_, v) = verdict(
            &e,
            &Vector::Text(
                "GET https://api.example.com/v1/orders?page=2&access_token=abc123XYZ&sort=asc"
                    .into(),
            ),
        );
        let Verdict::Rewrite(out) = v else {
            panic!("{v:?}")
        };
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET https://api.example.com/v1/orders?page=2&access_token=****&sort=asc"
        );
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        fn luhn_complete(mut digits: Vec<u8>) -> Vec<u8> {
            for check in 0..10 {
                digits.push(check);
                if crate::processors::redaction::validators::luhn(&digits) {
                    return digits;
                }
                digits.pop();
            }
            unreachable!("one check digit always completes a Luhn number")
        }

        fn card() -> impl Strategy<Value = String> {
            (
                prop::sample::select(vec![
                    vec![4u8],
                    vec![5, 1],
                    vec![5, 5],
                    vec![3, 7],
                    vec![6, 0, 1, 1],
                ]),
                prop::collection::vec(0u8..10, 16),
                0usize..3,
            )
                .prop_map(|(prefix, body, style)| {
                    let len = if prefix == [3, 7] { 15 } else { 16 };
                    let mut d = prefix;
                    d.extend(body);
                    d.truncate(len - 1);
                    let d = luhn_complete(d);
                    let s: String = d.iter().map(|x| char::from(b'0' + x)).collect();
                    let sep = [None, Some(' '), Some('-')][style];
                    match sep {
                        None => s,
                        Some(c) => s
                            .as_bytes()
                            .chunks(4)
                            .map(|g| std::str::from_utf8(g).unwrap())
                            .collect::<Vec<_>>()
                            .join(&c.to_string()),
                    }
                })
        }

        fn email() -> impl Strategy<Value = String> {
            "[a-z0-9][a-z0-9._+-]{0,12}@[a-z0-9]{1,10}\\.[a-z]{2,6}"
        }

        fn text() -> impl Strategy<Value = String> {
            "[a-zA-Z0-9 .,:;=/_-]{0,60}"
        }

        /// Values made of pieces that pass or nearly pass the engine's gates: keywords in any case,
        /// literals, separators, digit groups, look-alikes, and random bytes.
        fn gate_teaser() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                prop::sample::select(vec![
                    "Bearer ",
                    "BASIC ",
                    "api_key=",
                    "Token: ",
                    "password=\"",
                    "x_auth_token: '",
                    "AWS_SECRET_ACCESS_KEY=",
                    "AccountKey=",
                    "eyJhbGciOiJIUzI1NiJ9",
                    ".eyJhIjoiYiJ9.",
                    "AKIA",
                    "ASIA",
                    "AIza",
                    "ghp_",
                    "github_pat_",
                    "xoxb-",
                    "sk_live_",
                    "npm_",
                    "SG.",
                    "-----BEGIN RSA PRIVATE KEY-----",
                    "://",
                    "@",
                    "+",
                    "DOB: ",
                    "born on ",
                    "?access_token=",
                    "&sig=",
                    "4111",
                    "1111",
                    "536-22-8142",
                    "(415) ",
                    "555-2671",
                    "DE89 ",
                    "3704 ",
                    "NL91ABNA0417164300",
                    "12345678Z",
                    "2024-05-13T14:25:36.123Z",
                    "1234567-",
                    "T",
                    "AB 12 34 56 C",
                    "130 692 544",
                    "1984-03-12",
                    "12/03/1984",
                    "example.com",
                    "jane.doe",
                    " ",
                    "-",
                    ".",
                    "/",
                    "=",
                    ":",
                    "\"",
                    "'",
                    "_",
                    "\t",
                ])
                .prop_map(str::to_owned),
                "[a-zA-Z0-9]{1,12}",
                "[0-9 .()/-]{1,20}",
                "\\PC{1,4}",
            ];
            prop::collection::vec(piece, 0..14).prop_map(|p| p.concat())
        }

        /// A value a batch found clean under one key is not taken as clean under a key that lets
        /// another rule through: the memos of shapes and of clean values hold the key bits a value
        /// came with.
        #[test]
        fn a_value_clean_under_one_key_is_scanned_again_under_another() {
            let engine = engine(&RedactionProcessorConfig::default()).unwrap();
            let value = "ref 536228142 on file";
            let mut scratch = Scratch::default();
            let found = |scratch: &Scratch| -> Vec<(usize, Vec<String>)> {
                scratch
                    .batch_results()
                    .map(|(i, f)| {
                        let ids: Vec<String> = f
                            .unwrap()
                            .iter()
                            .map(|f| engine.rule_ids().nth(f.rule as usize).unwrap().to_owned())
                            .collect();
                        (i, ids)
                    })
                    .collect()
            };
            for _ in 0..2 {
                engine.scan_many(
                    [
                        (Some("message"), value.as_bytes()),
                        (Some("customer.ssn"), value.as_bytes()),
                        (Some("message"), value.as_bytes()),
                    ],
                    &mut scratch,
                );
                assert_eq!(found(&scratch), [(1, vec!["us_ssn_keyed".to_owned()])]);
            }
            engine.scan_many([(Some("customer.ssn"), value.as_bytes())], &mut scratch);
            assert_eq!(found(&scratch), [(0, vec!["us_ssn_keyed".to_owned()])]);
        }

        /// A value of a shape remembered from an earlier batch goes to the per-value stages with
        /// the rules the shape leaves possible, and is found there if its own digits make a match:
        /// the memo remembers what the passes decide, never what the per-value stages found.
        #[test]
        fn a_known_shape_with_other_digits_is_still_searched() {
            let engine = engine(&RedactionProcessorConfig::default()).unwrap();
            let mut scratch = Scratch::default();
            // Fails Luhn, so nothing is found; its shape is remembered with the card rule possible.
            let fails = "card 4111 1111 1111 1112 declined";
            let passes = "card 4111 1111 1111 1111 declined";
            engine.scan_many([(Some("message"), fails.as_bytes())], &mut scratch);
            assert_eq!(scratch.batch_results().count(), 0);
            assert_eq!(scratch.batch.per_value_scans, 1);
            engine.scan_many(
                [
                    (Some("message"), passes.as_bytes()),
                    (Some("message"), fails.as_bytes()),
                ],
                &mut scratch,
            );
            let found: Vec<usize> = scratch.batch_results().map(|(i, _)| i).collect();
            assert_eq!(found, [0]);
            // The failing one is now known clean by its own bytes, the passing one searched.
            assert_eq!(scratch.batch.per_value_scans, 2);
            // Timestamps with other digits: one shape, no rule possible, so the second batch's
            // stamps are known clean without the passes.
            let stamps = |minute: u32| -> Vec<String> {
                (0..20)
                    .map(|i| format!("2024-05-{:02}T14:{minute:02}:36.123Z", i + 1))
                    .collect()
            };
            let mut decided = Vec::new();
            for minute in [10, 47] {
                let values = stamps(minute);
                engine.scan_many(
                    values.iter().map(|v| (Some("event.time"), v.as_bytes())),
                    &mut scratch,
                );
                assert_eq!(scratch.batch_results().count(), 0);
                decided.push(scratch.batch.decided_by_passes);
            }
            assert_eq!(scratch.batch.per_value_scans, 2);
            // The first batch's 20 stamps were pending together, before the memo knew their
            // shape: the passes decided each. None of the second batch's needed them.
            assert_eq!(decided, [1 + 20, 1 + 20]);
        }

        /// A literal with a digit in it makes the passes' verdict depend on more than the shape:
        /// `?sig3=` and `?sig2=` have one shape, and only the second holds the literal `sig2=`.
        /// Such an engine does not remember shapes, so the second is still found.
        #[test]
        fn shapes_are_not_remembered_when_a_literal_holds_a_digit() {
            let cfg = RedactionProcessorConfig {
                sensitive_query_params: vec!["sig2".into()],
                ..RedactionProcessorConfig::default()
            };
            let engine = engine(&cfg).unwrap();
            let mut scratch = Scratch::default();
            let other = "https://cdn.example.com/a.png?sig3=abcdef";
            let secret = "https://cdn.example.com/a.png?sig2=abcdef";
            engine.scan_many([(Some("url.full"), other.as_bytes())], &mut scratch);
            assert_eq!(scratch.batch_results().count(), 0);
            engine.scan_many([(Some("url.full"), secret.as_bytes())], &mut scratch);
            let found: Vec<usize> = scratch.batch_results().map(|(i, _)| i).collect();
            assert_eq!(found, [0]);
            // Such an engine still remembers values found clean, by their own bytes.
            let decided = scratch.batch.decided_by_passes;
            engine.scan_many([(Some("url.full"), other.as_bytes())], &mut scratch);
            assert_eq!(scratch.batch_results().count(), 0);
            assert_eq!(scratch.batch.decided_by_passes, decided);
        }

        /// ISO timestamps hold a run of eight digits and capitals, as IBANs, NINOs and DNIs do, but
        /// none of the rows those need (two capitals, seven digits): a batch decides that itself and
        /// sends them to no per-value stage, while an IBAN still goes there and is found.
        #[test]
        fn a_batch_keeps_timestamps_from_the_per_value_stages() {
            let engine = engine(&RedactionProcessorConfig::default()).unwrap();
            let stamps: Vec<String> = (0..50)
                .map(|i| format!("2024-05-{:02}T14:{:02}:36.123Z", i % 28 + 1, i))
                .collect();
            let mut scratch = Scratch::default();
            engine.scan_many(
                stamps.iter().map(|v| (Some("event.time"), v.as_bytes())),
                &mut scratch,
            );
            assert_eq!(scratch.batch_results().count(), 0);
            assert_eq!(scratch.batch.per_value_scans, 0);
            let iban = "iban NL91ABNA0417164300 on file";
            engine.scan_many(
                stamps
                    .iter()
                    .map(|v| (Some("event.time"), v.as_bytes()))
                    .chain([(Some("note"), iban.as_bytes())]),
                &mut scratch,
            );
            assert_eq!(scratch.batch.per_value_scans, 1);
            let found: Vec<usize> = scratch.batch_results().map(|(i, _)| i).collect();
            assert_eq!(found, [50]);
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// The gates (byte screen, digit count and run, literal search, digit automaton) only
            /// skip rules that cannot match: with them the engine finds exactly what every rule's own
            /// search finds without them.
            #[test]
            fn gates_never_change_what_is_found(
                value in gate_teaser(),
                key in prop::sample::select(vec!["message", "customer.ssn", "user.dob", "passport"]),
            ) {
                static ENGINE: std::sync::OnceLock<Engine> = std::sync::OnceLock::new();
                let engine = ENGINE.get_or_init(|| engine(&RedactionProcessorConfig::default()).unwrap());
                let mut scratch = Scratch::default();
                engine.scan(Some(key), value.as_bytes(), &mut scratch).unwrap();
                let mut gated = scratch.findings().to_vec();
                let mut every = engine.scan_every_rule(Some(key), value.as_bytes());
                gated.sort_unstable_by_key(|f| (f.rule, f.start, f.end));
                every.sort_unstable_by_key(|f| (f.rule, f.start, f.end));
                prop_assert_eq!(gated, every, "in {:?}", value);
            }

            /// A batch scan finds, value by value, exactly what scanning each value alone finds:
            /// random batches of gate teasers under random keys, with empty values, values over
            /// `max_value_size` and values that fill several chunks; then the same values again in
            /// a second batch on the same scratch, each under another value's key and every other
            /// one with its digits changed, so values meet the shapes the first batch remembered
            /// with the same or other key bits, and other digits (a card that now passes Luhn).
            #[test]
            fn batch_scans_find_what_single_scans_find(
                values in prop::collection::vec(
                    (
                        prop::sample::select(vec!["message", "customer.ssn", "user.dob", "passport", ""]),
                        gate_teaser(),
                        0..8usize,
                    ),
                    0..40,
                ),
                keyless in any::<bool>(),
            ) {
                static ENGINE: std::sync::OnceLock<Engine> = std::sync::OnceLock::new();
                let engine = ENGINE.get_or_init(|| {
                    let cfg = RedactionProcessorConfig {
                        max_value_size: outpost_config::ByteSize(40_000),
                        ..RedactionProcessorConfig::default()
                    };
                    engine(&cfg).unwrap()
                });
                // Some values repeated into long ones: a batch spans chunks, and a value may be
                // longer than a chunk or than `max_value_size`.
                let values: Vec<(Option<&str>, String)> = values
                    .iter()
                    .map(|(k, v, rep)| {
                        let v = match rep {
                            7 => v.repeat(8_000 / v.len().max(1)),
                            6 => format!("{v} ").repeat(30_000 / (v.len() + 1)),
                            _ => v.clone(),
                        };
                        ((!keyless).then_some(*k), v)
                    })
                    .collect();
                // The same scratch for both batches: the second meets every value again, under
                // the next value's key, where the first batch's memos may answer.
                let mut scratch = Scratch::default();
                let mut keys: Vec<Option<&str>> = values.iter().map(|(k, _)| *k).collect();
                for round in 0..2 {
                    if round == 1 && !keys.is_empty() {
                        keys.rotate_left(1);
                    }
                    let shifted: Vec<String> = values
                        .iter()
                        .enumerate()
                        .map(|(i, (_, v))| {
                            if round == 0 || i % 2 == 0 {
                                return v.clone();
                            }
                            v.chars()
                                .map(|c| match c.to_digit(10) {
                                    Some(d) => char::from(b'0' + ((d + 7) % 10) as u8),
                                    None => c,
                                })
                                .collect()
                        })
                        .collect();
                    let values: Vec<(Option<&str>, &str)> =
                        keys.iter().zip(&shifted).map(|(k, v)| (*k, v.as_str())).collect();
                    engine.scan_many(values.iter().map(|(k, v)| (*k, v.as_bytes())), &mut scratch);
                    let batched: Vec<(usize, Result<Vec<Finding>, TooLarge>)> = scratch
                        .batch_results()
                        .map(|(i, f)| (i, f.map(|f| f.to_vec())))
                        .collect();
                    let mut single = Scratch::default();
                    for (i, (k, v)) in values.iter().enumerate() {
                        let want = engine.scan(*k, v.as_bytes(), &mut single).map(|()| single.findings().to_vec());
                        let got = batched
                            .iter()
                            .find(|(j, _)| *j == i)
                            .map_or(Ok(Vec::new()), |(_, f)| f.clone());
                        prop_assert_eq!(&got, &want, "round {} value {} {:?} {:?}", round, i, k, v);
                        let loaded = scratch.load_batch_findings(i).map(|()| scratch.findings().to_vec());
                        prop_assert_eq!(loaded, want);
                    }
                }
            }

            #[test]
            fn an_embedded_card_or_email_is_redacted(
                before in text(),
                after in text(),
                secret in prop_oneof![card(), email()],
            ) {
                static ENGINE: std::sync::OnceLock<Engine> = std::sync::OnceLock::new();
                let engine = ENGINE.get_or_init(|| engine(&RedactionProcessorConfig::default()).unwrap());
                let value = format!("{before} {secret} {after}");
                let mut scratch = Scratch::default();
                engine.scan(Some("message"), value.as_bytes(), &mut scratch).unwrap();
                prop_assert!(!scratch.findings().is_empty(), "nothing found in {value:?}");
                let out = match engine.verdict(value.as_bytes(), true, &mut scratch) {
                    Verdict::Rewrite(out) => String::from_utf8(out).unwrap(),
                    other => return Err(TestCaseError::fail(format!("{other:?} for {value:?}"))),
                };
                prop_assert!(!out.contains(&secret), "{secret:?} survived in {out:?}");
            }
        }
    }
}
