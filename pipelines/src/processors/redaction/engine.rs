//! The scanning engine: every rule of every pack, applied to one value in one pass.
//!
//! Most telemetry values hold no PII, so the engine is built around rejecting them cheaply, in stages
//! that each run only for the rules the cheaper ones before let through:
//!
//! 1. The byte screen and the digit count (modules `screen`, `digits`): one table fold over the value
//!    says which of the byte sets its rules need are present (every email holds `@`, a key=value secret `:`
//!    or `=`, an IBAN an upper-case letter: sets read off each pattern, so they are necessary by
//!    construction), and one vectorised count gives its ASCII digits (a card needs 13). Table lookups
//!    turn both into the set of rules still possible; for most values it is empty and the scan ends.
//! 2. The longest digit run (on 64-byte bit masks) for rules with a `min_run`, and the attribute key
//!    for keyed rules (memoised per [`Scratch`]). Then, if a rule still possible needs them, the
//!    longest rows of digits and of upper-case letters with nothing between, read off the patterns
//!    like the byte sets (an IBAN holds two capitals in a row, a DNI seven digits; an ISO timestamp
//!    has one capital and four digits).
//! 3. The literal gate (module `literals`): if a rule that needs one of its prefilter literals
//!    (`bearer`, `eyJ`, `api_key`, …) is still possible, one SIMD (Teddy) search over a lower-cased copy of the
//!    value says which rules have a literal in it.
//! 4. The digit rules' automaton: the rules gated by digits alone (most of pii-core: cards, SSNs, IBANs,
//!    phone numbers, national ids) share one multi-pattern lazy DFA (`regex-automata`); when more than
//!    one of them is still possible, a single pass over the value says which of their patterns match
//!    anywhere in it. A value full of digits that holds no PII (a UUID, a timestamp, a user agent) thus
//!    costs one automaton pass, not one regex per digit rule.
//! 5. Each remaining rule's own regular expression finds where, and its validator (Luhn, mod-97, …)
//!    confirms, and may narrow, every match.
//!
//! [`Engine::scan`] scans one value. The processor scans a payload's values as one batch
//! ([`Engine::scan_many`], module `batch`): cheap passes over all of them at once decide which values
//! some rule may match, and only those go through the stages above, with the same results.
//!
//! Recall is never traded for speed: each stage only skips a rule whose pattern cannot match (a byte
//! set or a gate is a necessary condition of the pattern; the literal search and the automaton report
//! every literal and pattern present, overlaps included), so the rules that run find exactly what
//! running every rule would. A property test checks it against every rule's own search.
//!
//! Matching is on bytes with Unicode classes off by default, so the regex engine's DFA handles any input
//! and a rule can be confirmed on a `bytes` value as on a string. Replacements are widened to whole UTF-8
//! characters, so a redacted string is always valid UTF-8.
//!
//! Guarantees: a value longer than `max_value_size` is never scanned but reported as too large (the
//! caller masks it whole when failing closed); a finding's action decides the outcome, the strongest
//! winning (drop the record > drop the attribute > hash or mask the matched parts); overlapping findings
//! are merged so no part of either survives.

use std::ops::Range;

use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use outpost_config::redaction::{build_regex, Prefilter, Validator};
use outpost_config::RedactionAction;
use regex::bytes::Regex;
use regex_automata::util::syntax;
use regex_automata::{meta, Input, PatternID, PatternSet};
use sha2::Sha256;

use super::batch::{Batch, Plan, RuleConditions};
use super::digits;
use super::literals::Literals;
use super::screen::{self, ByteSet, Screen};
use super::validators;

/// One rule, as the engine is given it (from a pack, or made from the processor's settings).
#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub id: String,
    pub pattern: String,
    pub validator: Option<Validator>,
    pub action: RedactionAction,
    pub keep_last: usize,
    pub keys: Option<String>,
    pub prefilter: Prefilter,
}

/// How the engine replaces what it finds.
#[derive(Debug, Clone)]
pub struct Options {
    pub mask: String,
    /// The HMAC key for `hash`; required when any rule hashes or `hash_all` is set.
    pub hash_key: Option<Vec<u8>>,
    /// Every mask becomes a hash (the OpenTelemetry Collector's `hash_function`).
    pub hash_all: bool,
    pub max_value_size: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            mask: "****".into(),
            hash_key: None,
            hash_all: false,
            max_value_size: 256 * 1024,
        }
    }
}

struct Rule {
    id: String,
    regex: Regex,
    /// Capture groups named `redact` / `redact_*`: only they are redacted. Empty: the whole match.
    groups: Vec<usize>,
    validator: Option<Validator>,
    action: RedactionAction,
    keep_last: usize,
    keys: Option<Regex>,
    /// This rule's bit in the keyed rules' memo of a [`Scratch`] (the first 64 keyed rules).
    key_bit: Option<u32>,
    min_run: usize,
    /// The rule runs only if one of its prefilter literals is in the value.
    literal_gate: bool,
    /// Its pattern in the digit rules' automaton.
    set_pattern: Option<u32>,
    /// The prefilter as declared, for the reference search of the tests.
    #[cfg(test)]
    prefilter: Prefilter,
}

/// What the gates check for a rule, kept apart from the rules (whose regexes make them large) so the
/// gates of all rules share a few cache lines: the screen's bits it needs, its digit count, then the
/// later stages' conditions.
#[derive(Clone, Copy)]
struct Gate {
    need: u64,
    min_digits: usize,
    min_run: usize,
    keyed: bool,
    key_bit: Option<u32>,
    literal_gate: bool,
    set_pattern: Option<u32>,
    /// Digits and upper-case letters in a row that every match holds (only when over one: a single
    /// one is a byte set of the screen).
    rows: Option<screen::Rows>,
}

/// Something a rule found: `rule` is an index into [`Engine::rule_ids`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    pub rule: u32,
    pub start: usize,
    pub end: usize,
}

/// Per-caller working memory, so a scan allocates nothing in the common case.
#[derive(Default)]
pub struct Scratch {
    pub(super) findings: Vec<Finding>,
    seen: Vec<u64>,
    candidates: Vec<u32>,
    /// The value lower-cased for the literal search.
    lower: Vec<u8>,
    /// The digit set's search cache, tagged with the engine it belongs to: a cache must never be used
    /// with another automaton, and one `Scratch` may outlive its engine (a reload).
    set_cache: Option<(u64, meta::Cache)>,
    set_matches: Option<PatternSet>,
    /// For recent attribute keys, which keyed rules' `keys` they match (bits as `Rule::key_bit`),
    /// tagged with the engine: a handful of keys recur in every batch, and each is matched once.
    key_memo: KeyMemo,
    /// A batch scan's pending values and results (module `batch`).
    pub(super) batch: Batch,
}

impl Scratch {
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }
}

/// What should happen to a scanned value.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    /// The value with the findings replaced.
    Rewrite(Vec<u8>),
    DropAttribute,
    DropRecord,
}

/// The value exceeds `max_value_size` and was not scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

/// The first gate of up to 64 rules as lookups instead of a loop over the rules: which rules a value
/// passes is the complement of those its missing screen bits rule out (one table per byte of the
/// missing bits) intersected with those its digit count allows.
struct GateTables {
    /// `killed[c][m]`: the rules that need one of the bits `m` of byte `c` of the screen's word.
    killed: Box<[[u64; 256]; 8]>,
    /// `digits_ok[n]`: the rules whose `min_digits` is at most `n`; the last entry covers every larger
    /// count.
    digits_ok: Vec<u64>,
}

impl GateTables {
    fn new(gates: &[Gate]) -> Option<Self> {
        if gates.len() > 64 {
            return None;
        }
        let mut killed = Box::new([[0u64; 256]; 8]);
        for (c, table) in killed.iter_mut().enumerate() {
            for (m, rules) in table.iter_mut().enumerate() {
                let missing = (m as u64) << (8 * c);
                for (r, gate) in gates.iter().enumerate() {
                    if gate.need & missing != 0 {
                        *rules |= 1 << r;
                    }
                }
            }
        }
        let most = gates.iter().map(|g| g.min_digits).max().unwrap_or(0);
        let digits_ok = (0..=most)
            .map(|n| {
                gates
                    .iter()
                    .enumerate()
                    .filter(|(_, g)| g.min_digits <= n)
                    .fold(0u64, |ok, (r, _)| ok | 1 << r)
            })
            .collect();
        Some(Self { killed, digits_ok })
    }

    #[inline]
    fn pass(&self, present: u64, digits: usize) -> u64 {
        let missing = !present;
        let killed = self.killed.iter().enumerate().fold(0u64, |k, (c, table)| {
            k | table[usize::from((missing >> (8 * c)) as u8)]
        });
        let ok = self.digits_ok[digits.min(self.digits_ok.len() - 1)];
        ok & !killed
    }
}

/// The compiled rules. Immutable and shared; each caller brings its own [`Scratch`].
pub struct Engine {
    rules: Vec<Rule>,
    /// For each rule, its first-stage gate (kept apart from the rules so the loop over them is tight).
    gates: Vec<Gate>,
    /// The same gates as table lookups, when there are at most 64 rules.
    gate_tables: Option<GateTables>,
    screen: Screen,
    literals: Option<Literals>,
    /// One automaton over the patterns of the rules gated by digits only (no literal): one pass tells
    /// which of them match anywhere in a value.
    digit_set: Option<meta::Regex>,
    /// Distinguishes engines for the caches kept in a [`Scratch`].
    id: u64,
    /// What batch scans stream for; `None`: batches scan value by value.
    plan: Option<Plan>,
    needs_digits: bool,
    allowed_values: Vec<Regex>,
    opts: Options,
}

impl Engine {
    pub fn new(
        specs: Vec<RuleSpec>,
        allowed_values: &[String],
        opts: Options,
    ) -> Result<Self, String> {
        let mut rules = Vec::with_capacity(specs.len());
        let mut rule_sets = Vec::with_capacity(specs.len());
        let mut min_digits = Vec::with_capacity(specs.len());
        let mut rule_rows = Vec::with_capacity(specs.len());
        let mut literal_list: Vec<(String, Vec<u32>)> = Vec::new();
        let mut digit_rules = Vec::new();
        for (i, spec) in specs.into_iter().enumerate() {
            let i = i as u32;
            let regex = build_regex(&spec.pattern)
                .map_err(|e| format!("rule '{}': pattern {e}", spec.id))?;
            let keys = spec
                .keys
                .as_deref()
                .map(build_regex)
                .transpose()
                .map_err(|e| format!("rule '{}': keys {e}", spec.id))?;
            let groups = regex
                .capture_names()
                .enumerate()
                .filter(|(_, n)| n.is_some_and(|n| n == "redact" || n.starts_with("redact_")))
                .map(|(g, _)| g)
                .collect();
            if spec.action == RedactionAction::Hash && opts.hash_key.is_none() {
                return Err(format!(
                    "rule '{}' hashes but no hash key is configured",
                    spec.id
                ));
            }
            // What every match holds, from the pattern (parsed as `build_regex` compiles it).
            let hir = syntax::parse_with(&spec.pattern, &syntax_config())
                .map_err(|e| format!("rule '{}': pattern does not parse: {e}", spec.id))?;
            let mut sets = screen::required_sets(&hir);
            let rows = screen::required_rows(&hir);
            rule_rows.push((rows.digits > 1 || rows.uppers > 1).then_some(rows));
            let any_of = &spec.prefilter.any_of;
            if !any_of.is_empty() {
                // One of the literals is in the value, so one of their first bytes is.
                sets.push(ByteSet::of_literal_first_bytes(
                    any_of.iter().map(String::as_str),
                ));
            }
            // Literals of one byte are a byte set of the screen, exactly; longer ones need a search.
            let literal_gate = any_of.iter().any(|l| l.len() > 1);
            if literal_gate {
                for lit in any_of {
                    let lower = lit.to_ascii_lowercase();
                    match literal_list.iter_mut().find(|(l, _)| *l == lower) {
                        Some((_, r)) => r.push(i),
                        None => literal_list.push((lower, vec![i])),
                    }
                }
            }
            // A digit condition implies digits: `min_run` digits are also at least `min_run` digits.
            let digits = spec.prefilter.min_digits.max(spec.prefilter.min_run);
            if any_of.is_empty() && digits > 0 {
                digit_rules.push(i);
            }
            rule_sets.push(sets);
            min_digits.push(digits);
            rules.push(Rule {
                id: spec.id,
                regex,
                groups,
                validator: spec.validator,
                action: spec.action,
                keep_last: spec.keep_last,
                key_bit: None,
                keys,
                min_run: spec.prefilter.min_run,
                literal_gate,
                set_pattern: None,
                #[cfg(test)]
                prefilter: spec.prefilter.clone(),
            });
        }
        for (bit, rule) in rules
            .iter_mut()
            .filter(|r| r.keys.is_some())
            .take(64)
            .enumerate()
        {
            rule.key_bit = Some(bit as u32);
        }
        let digit_set = if digit_rules.len() < 2 {
            None
        } else {
            for (p, &r) in digit_rules.iter().enumerate() {
                rules[r as usize].set_pattern = Some(p as u32);
            }
            let patterns: Vec<&str> = digit_rules
                .iter()
                .map(|&r| rules[r as usize].regex.as_str())
                .collect();
            Some(digit_set(&patterns)?)
        };
        let (screen, needs) = Screen::build(&rule_sets);
        let gates: Vec<Gate> = needs
            .into_iter()
            .zip(&min_digits)
            .zip(&rules)
            .zip(rule_rows)
            .map(|(((need, &min_digits), rule), rows)| Gate {
                need,
                min_digits,
                min_run: rule.min_run,
                keyed: rule.keys.is_some(),
                key_bit: rule.key_bit,
                literal_gate: rule.literal_gate,
                set_pattern: rule.set_pattern,
                rows,
            })
            .collect();
        let gate_tables = GateTables::new(&gates);
        let conditions: Vec<RuleConditions> = gates
            .iter()
            .zip(&rule_sets)
            .map(|(g, sets)| RuleConditions {
                literal_gate: g.literal_gate,
                min_run: g.min_run,
                key_bit: g.key_bit,
                keyed: g.keyed,
                sets,
                rows: g.rows,
            })
            .collect();
        let plan = Plan::new(&conditions, literal_list.iter().map(|(l, _)| l.as_str()));
        let literals = if literal_list.is_empty() {
            None
        } else {
            Some(Literals::new(literal_list)?)
        };
        let allowed_values = allowed_values
            .iter()
            .map(|p| build_regex(p).map_err(|e| format!("allowed_values '{p}' {e}")))
            .collect::<Result<_, _>>()?;
        if opts.hash_all && opts.hash_key.is_none() {
            return Err("hash_function is hmac-sha256 but no hash key is configured".into());
        }
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Ok(Self {
            needs_digits: min_digits.iter().any(|&d| d > 0),
            rules,
            gates,
            gate_tables,
            screen,
            literals,
            digit_set,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            plan,
            allowed_values,
            opts,
        })
    }

    /// Rule ids, indexed as [`Finding::rule`].
    pub fn rule_ids(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.id.as_str())
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Finds every rule's matches in `hay` (the value of attribute `key`, if any) into `scratch`.
    ///
    /// Stages, cheapest first, each only for the rules the previous ones let through: the byte screen
    /// and the digit count (one table fold and one vectorised count over the value); the longest digit
    /// run and the attribute key; the literal search; the digit rules' automaton; then each remaining
    /// rule's own regex and validator.
    pub fn scan(
        &self,
        key: Option<&str>,
        hay: &[u8],
        scratch: &mut Scratch,
    ) -> Result<(), TooLarge> {
        self.scan_impl(key, hay, None, scratch)
    }

    /// [`Engine::scan`], or, given `possible` by a batch, the rules (at most 64) whose literal, run,
    /// key and row conditions hold in `hay`: the stages then start from those rules and neither
    /// search the literals, the run and the rows again nor look the key up.
    pub(super) fn scan_impl(
        &self,
        key: Option<&str>,
        hay: &[u8],
        possible: Option<u64>,
        scratch: &mut Scratch,
    ) -> Result<(), TooLarge> {
        scratch.findings.clear();
        if hay.len() > self.opts.max_value_size {
            return Err(TooLarge);
        }
        let present = self.screen.present(hay);
        let digits = if self.needs_digits {
            digits::count(hay)
        } else {
            0
        };
        let candidates = &mut scratch.candidates;
        candidates.clear();
        // Batches are only used with at most 64 rules, which have gate tables.
        let possible = possible.filter(|_| self.gate_tables.is_some());
        if let Some(tables) = &self.gate_tables {
            let mut pass = tables.pass(present, digits) & possible.unwrap_or(u64::MAX);
            while pass != 0 {
                candidates.push(pass.trailing_zeros());
                pass &= pass - 1;
            }
        } else {
            self.gate_by_rule(present, digits, candidates);
        }
        if candidates.is_empty() {
            return Ok(());
        }
        if possible.is_none() {
            self.run_key_and_literal_gates(key, hay, scratch);
        }
        let candidates = &mut scratch.candidates;
        // Rows, once, if a rule needs one: they keep ISO timestamps (four digits and one letter in
        // a row) from the automaton, which IBANs, NINOs and DNIs would otherwise send them to. A
        // batch has checked them already.
        if possible.is_none()
            && candidates
                .iter()
                .any(|&r| self.gates[r as usize].rows.is_some())
        {
            let longest = digits::longest_rows(hay);
            candidates.retain(|&r| {
                self.gates[r as usize]
                    .rows
                    .is_none_or(|need| need.held(longest))
            });
        }
        // Rules gated by digits alone: confirmed only if the digit set says their pattern matches
        // somewhere — one pass for all of them instead of one regex per rule.
        let in_set = candidates
            .iter()
            .filter(|&&r| self.gates[r as usize].set_pattern.is_some())
            .count();
        if let (Some(set), true) = (&self.digit_set, in_set > 1) {
            if scratch
                .set_cache
                .as_ref()
                .is_some_and(|(id, _)| *id != self.id)
            {
                scratch.set_cache = None;
            }
            let (_, cache) = scratch
                .set_cache
                .get_or_insert_with(|| (self.id, set.create_cache()));
            let matches = scratch
                .set_matches
                .get_or_insert_with(|| PatternSet::new(set.pattern_len()));
            if matches.capacity() != set.pattern_len() {
                *matches = PatternSet::new(set.pattern_len());
            }
            matches.clear();
            set.which_overlapping_matches_with(cache, &Input::new(hay), matches);
            candidates.retain(|&r| {
                self.gates[r as usize]
                    .set_pattern
                    .is_none_or(|p| matches.contains(PatternID::new_unchecked(p as usize)))
            });
        }
        for &r in candidates.iter() {
            confirm(&self.rules[r as usize], r, hay, &mut scratch.findings);
        }
        if !scratch.findings.is_empty() && self.allowed_values.iter().any(|a| a.is_match(hay)) {
            scratch.findings.clear();
        }
        Ok(())
    }

    #[inline]
    pub(super) fn plan(&self) -> Option<&Plan> {
        self.plan.as_ref()
    }

    pub(super) fn literal_search(&self) -> Option<&Literals> {
        self.literals.as_ref()
    }

    /// Tells this engine's caches in a [`Scratch`] from another's.
    pub(super) fn id(&self) -> u64 {
        self.id
    }

    #[inline]
    pub(super) fn max_value_size(&self) -> usize {
        self.opts.max_value_size
    }

    /// Which keyed rules' `keys` match `key` (bits as `Rule::key_bit`), memoised in `scratch`.
    #[inline]
    pub(super) fn key_bits_of(&self, key: &str, scratch: &mut Scratch) -> u64 {
        self.key_bits(key, &mut scratch.key_memo)
    }

    /// The first gate rule by rule, for engines with more than 64 rules.
    fn gate_by_rule(&self, present: u64, digits: usize, candidates: &mut Vec<u32>) {
        for (w, gates) in self.gates.chunks(64).enumerate() {
            // Branch-free: whether a rule passes varies from value to value, and a mispredicted
            // branch per rule cost more than the whole comparison.
            let mut pass = 0u64;
            for (i, gate) in gates.iter().enumerate() {
                let ok = (gate.need & !present == 0) & (gate.min_digits <= digits);
                pass |= u64::from(ok) << i;
            }
            while pass != 0 {
                candidates.push((w * 64) as u32 + pass.trailing_zeros());
                pass &= pass - 1;
            }
        }
    }

    /// The run, key and literal gates of a single scan, on `scratch`'s candidates: a batch decides
    /// the same conditions in its streaming passes instead.
    fn run_key_and_literal_gates(&self, key: Option<&str>, hay: &[u8], scratch: &mut Scratch) {
        // Only values with enough digits for some rule get the run scan, once; the key is looked up
        // once too.
        let mut run = None;
        let mut key_bits = None;
        scratch.candidates.retain(|&r| {
            let gate = &self.gates[r as usize];
            if gate.min_run > 0
                && *run.get_or_insert_with(|| digits::longest_run(hay)) < gate.min_run
            {
                return false;
            }
            match (gate.keyed, gate.key_bit, key) {
                (false, _, _) => true,
                (true, _, None) => false,
                (true, Some(bit), Some(k)) => {
                    *key_bits.get_or_insert_with(|| self.key_bits(k, &mut scratch.key_memo))
                        & 1 << bit
                        != 0
                }
                (true, None, Some(k)) => self.rules[r as usize]
                    .keys
                    .as_ref()
                    .is_some_and(|keys| keys.is_match(k.as_bytes())),
            }
        });
        if let Some(literals) = self.literals.as_ref().filter(|_| {
            scratch
                .candidates
                .iter()
                .any(|&r| self.gates[r as usize].literal_gate)
        }) {
            let seen = &mut scratch.seen;
            seen.clear();
            seen.resize(self.rules.len().div_ceil(64), 0);
            literals.for_each_rule(hay, &mut scratch.lower, |r| {
                seen[r as usize / 64] |= 1 << (r % 64);
            });
            scratch.candidates.retain(|&r| {
                !self.gates[r as usize].literal_gate || seen[r as usize / 64] & 1 << (r % 64) != 0
            });
        }
    }

    /// Which of the first 64 keyed rules' `keys` match `key`, from the memo when it is there.
    #[inline]
    fn key_bits(&self, key: &str, memo: &mut KeyMemo) -> u64 {
        memo.keep_for(self.id);
        let k = MemoKey::of(key.as_bytes());
        match memo.get(&k, key.as_bytes()) {
            Some(bits) => bits,
            None => self.key_bits_missed(k, key, memo),
        }
    }

    /// The key regexes' answer for a key the memo does not hold, memoised.
    #[inline(never)]
    fn key_bits_missed(&self, k: MemoKey, key: &str, memo: &mut KeyMemo) -> u64 {
        let bits = self
            .rules
            .iter()
            .filter_map(|r| Some((r.keys.as_ref()?, r.key_bit?)))
            .filter(|(keys, _)| keys.is_match(key.as_bytes()))
            .fold(0u64, |bits, (_, bit)| bits | 1 << bit);
        memo.put(k, key.as_bytes(), bits);
        bits
    }

    /// Every rule's own search over `hay`, each after its declared prefilter checked the plain way
    /// (count the digits, find each literal in a lower-cased copy) and none of the engine's gates:
    /// what [`Engine::scan`] must equal.
    #[cfg(test)]
    pub(crate) fn scan_every_rule(&self, key: Option<&str>, hay: &[u8]) -> Vec<Finding> {
        let lower = hay.to_ascii_lowercase();
        let digits = hay.iter().filter(|b| b.is_ascii_digit()).count();
        let mut findings = Vec::new();
        for (r, rule) in self.rules.iter().enumerate() {
            let p = &rule.prefilter;
            let has = |lit: &String| {
                let lit = lit.to_ascii_lowercase();
                lower.windows(lit.len()).any(|w| w == lit.as_bytes())
            };
            let prefilter_ok = digits >= p.min_digits.max(p.min_run)
                && digits::longest_run(hay) >= p.min_run
                && (p.any_of.is_empty() || p.any_of.iter().any(has));
            let key_ok = match &rule.keys {
                Some(keys) => key.is_some_and(|k| keys.is_match(k.as_bytes())),
                None => true,
            };
            if prefilter_ok && key_ok {
                confirm(rule, r as u32, hay, &mut findings);
            }
        }
        if !findings.is_empty() && self.allowed_values.iter().any(|a| a.is_match(hay)) {
            findings.clear();
        }
        findings
    }

    /// What to do with `hay` given the findings of the last [`Engine::scan`] on it. `utf8`: `hay` is a
    /// string, so replacements are widened to whole characters.
    pub fn verdict(&self, hay: &[u8], utf8: bool, scratch: &mut Scratch) -> Verdict {
        let findings = &mut scratch.findings;
        if findings.is_empty() {
            return Verdict::Clean;
        }
        let action = |f: &Finding| self.rules[f.rule as usize].action;
        if findings
            .iter()
            .any(|f| action(f) == RedactionAction::DropRecord)
        {
            return Verdict::DropRecord;
        }
        if findings
            .iter()
            .any(|f| action(f) == RedactionAction::DropAttribute)
        {
            return Verdict::DropAttribute;
        }
        findings.sort_unstable_by_key(|f| (f.start, f.end));
        let mut out = Vec::with_capacity(hay.len());
        let mut copied = 0;
        let mut i = 0;
        while i < findings.len() {
            let mut span = findings[i].start..findings[i].end;
            let mut hash = self.hashes(&findings[i]);
            let mut keep_last = self.rules[findings[i].rule as usize].keep_last;
            i += 1;
            while i < findings.len() && findings[i].start < span.end {
                span.end = span.end.max(findings[i].end);
                hash &= self.hashes(&findings[i]);
                keep_last = keep_last.min(self.rules[findings[i].rule as usize].keep_last);
                i += 1;
            }
            if utf8 {
                span = widen_to_chars(hay, span);
            }
            if span.end <= copied {
                continue;
            }
            // A span widened into one already written is written from where that one ended.
            let start = span.start.max(copied);
            out.extend_from_slice(&hay[copied..start]);
            self.replace(&hay[start..span.end], hash, keep_last, utf8, &mut out);
            copied = span.end.max(copied);
        }
        out.extend_from_slice(&hay[copied..]);
        Verdict::Rewrite(out)
    }

    fn hashes(&self, f: &Finding) -> bool {
        self.opts.hash_all || self.rules[f.rule as usize].action == RedactionAction::Hash
    }

    /// The replacement of a whole value (a blocked key's, or one that could not be scanned).
    pub fn replace_whole(&self, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.replace(value, self.opts.hash_all, 0, true, &mut out);
        out
    }

    fn replace(&self, text: &[u8], hash: bool, keep_last: usize, utf8: bool, out: &mut Vec<u8>) {
        if let (true, Some(key)) = (hash, &self.opts.hash_key) {
            let mut mac =
                Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
            mac.update(text);
            out.extend_from_slice(hex::encode(mac.finalize().into_bytes()).as_bytes());
            return;
        }
        out.extend_from_slice(self.opts.mask.as_bytes());
        if keep_last == 0 {
            return;
        }
        // Never reveal most of a value: keep_last applies only when at least as much stays hidden.
        let tail = if utf8 {
            let s = String::from_utf8_lossy(text);
            let n = s.chars().count();
            if keep_last * 2 > n {
                return;
            }
            let skip = n - keep_last;
            s.char_indices().nth(skip).map_or(0, |(i, _)| s.len() - i)
        } else if keep_last * 2 > text.len() {
            return;
        } else {
            keep_last
        };
        out.extend_from_slice(&text[text.len() - tail..]);
    }
}

/// Runs `rule`'s pattern over `hay` and records every match its validator confirms. After a match the
/// validator refuses, the search resumes one byte after the match's start rather than after its end, so
/// a valid item that a longer, invalid match swallowed (a card after other digits) is still found. Each
/// retry costs one bounded match, and values are bounded by `max_value_size`.
fn confirm(rule: &Rule, index: u32, hay: &[u8], findings: &mut Vec<Finding>) {
    let check = |span: Range<usize>| match rule.validator {
        Some(v) => validators::confirm(v, hay, span),
        None => Some(span),
    };
    let mut push = |span: Range<usize>| {
        if span.start < span.end {
            findings.push(Finding {
                rule: index,
                start: span.start,
                end: span.end,
            });
        }
    };
    let mut at = 0;
    if rule.groups.is_empty() {
        while let Some(m) = rule.regex.find_at(hay, at) {
            let next = match check(m.range()) {
                Some(span) => {
                    let end = span.end;
                    push(span);
                    end.max(m.start() + 1)
                }
                None => m.start() + 1,
            };
            if next > hay.len() {
                break;
            }
            at = next;
        }
    } else {
        let mut locs = rule.regex.capture_locations();
        while let Some(m) = rule.regex.captures_read_at(&mut locs, hay, at) {
            let mut confirmed_end = None;
            for &g in &rule.groups {
                if let Some((s, e)) = locs.get(g) {
                    if let Some(span) = check(s..e) {
                        confirmed_end = Some(span.end.max(confirmed_end.unwrap_or(0)));
                        push(span);
                    }
                }
            }
            let next = match confirmed_end {
                Some(end) => end.max(m.end()).max(m.start() + 1),
                None => m.start() + 1,
            };
            if next > hay.len() {
                break;
            }
            at = next;
        }
    }
}

/// An attribute key as the key memo holds it: its length and four words read from it. Up to 32 bytes
/// (nearly every key: `http.response.status_code` is 25) the words hold every byte, so two keys are
/// the same exactly when their `MemoKey`s are, and a lookup is a few word compares, with no hash loop
/// over the bytes and no `memcmp` call; a longer key's bytes are also compared.
#[derive(Clone, Copy, PartialEq, Eq)]
struct MemoKey {
    len: usize,
    words: [u64; 4],
}

/// Keys up to this many bytes are held whole by their `MemoKey`; longer ones are also compared byte
/// by byte.
const KEY_BYTES_IN_WORDS: usize = 32;

impl MemoKey {
    #[inline]
    fn of(key: &[u8]) -> MemoKey {
        let n = key.len();
        let w = |at: usize| u64::from_le_bytes(key[at..at + 8].try_into().expect("8 bytes"));
        let half = |at: usize| u32::from_le_bytes(key[at..at + 4].try_into().expect("4 bytes"));
        let words = match n {
            // A byte at a time: a copy of a few bytes into a word was a `memcpy` call.
            0..4 => [
                key.iter().fold(0u64, |w, &b| w << 8 | u64::from(b)),
                0,
                0,
                0,
            ],
            4..8 => [u64::from(half(0)) << 32 | u64::from(half(n - 4)), 0, 0, 0],
            // Two overlapping words cover 8 to 16 bytes, four cover up to 32.
            8..=16 => [w(0), w(n - 8), 0, 0],
            _ => [w(0), w(8), w(n - 16), w(n - 8)],
        };
        MemoKey { len: n, words }
    }

    /// The key's pair of slots among `slots`.
    #[inline]
    fn set(&self, slots: usize) -> usize {
        let mix = |h: u64, w: u64| (h.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
        let h = self.words.iter().fold(self.len as u64, |h, &w| mix(h, w));
        ((h >> 32) as usize % slots) & !1
    }
}

/// The key memo: which keyed rules' `keys` recent attribute keys match, tagged with the engine. Two-way
/// set-associative: a handful of keys recur in every batch, and a key's pair of slots is found by a
/// hash, not by comparing it with every memoised key. Two ways, so two recurring keys whose hashes
/// collide do not evict each other on every value (which ran the key regexes again each time).
/// Unbounded key sets (keys with ids in them) only overwrite slots.
#[derive(Default)]
pub(crate) struct KeyMemo {
    engine: u64,
    /// Empty until first used.
    slots: Vec<KeySlot>,
}

#[derive(Clone)]
struct KeySlot {
    /// `None`: a free slot.
    key: Option<MemoKey>,
    /// A key over [`KEY_BYTES_IN_WORDS`] bytes, whole.
    long: Vec<u8>,
    bits: u64,
}

const KEY_MEMO_SLOTS: usize = 256;

impl KeyMemo {
    #[inline]
    fn keep_for(&mut self, engine: u64) {
        if self.engine != engine || self.slots.is_empty() {
            self.reset(engine);
        }
    }

    #[cold]
    fn reset(&mut self, engine: u64) {
        self.engine = engine;
        self.slots.clear();
        let free = KeySlot {
            key: None,
            long: Vec::new(),
            bits: 0,
        };
        self.slots.resize(KEY_MEMO_SLOTS, free);
    }

    #[inline]
    fn get(&mut self, k: &MemoKey, key: &[u8]) -> Option<u64> {
        let set = k.set(KEY_MEMO_SLOTS);
        for way in [set, set + 1] {
            let slot = &self.slots[way];
            if slot.key.as_ref() == Some(k) && (k.len <= KEY_BYTES_IN_WORDS || slot.long == key) {
                if way == set + 1 {
                    // The most recently used key goes first, and the other is the one replaced.
                    self.slots.swap(set, set + 1);
                }
                return Some(self.slots[set].bits);
            }
        }
        None
    }

    fn put(&mut self, k: MemoKey, key: &[u8], bits: u64) {
        let set = k.set(KEY_MEMO_SLOTS);
        self.slots.swap(set, set + 1);
        let slot = &mut self.slots[set];
        slot.key = Some(k);
        slot.long.clear();
        if k.len > KEY_BYTES_IN_WORDS {
            slot.long.extend_from_slice(key);
        }
        slot.bits = bits;
    }
}

/// One automaton over `patterns`, built as [`build_regex`] builds each (bytes, Unicode off), reporting
/// every pattern that matches anywhere (overlapping), not only the leftmost.
fn digit_set(patterns: &[&str]) -> Result<meta::Regex, String> {
    meta::Regex::builder()
        .syntax(syntax_config())
        .configure(
            meta::Config::new()
                .match_kind(regex_automata::MatchKind::All)
                .utf8_empty(false)
                .nfa_size_limit(Some(16 << 20))
                .hybrid_cache_capacity(4 << 20),
        )
        .build_many(patterns)
        .map_err(|e| format!("cannot build the digit rules' automaton: {e}"))
}

/// The syntax [`build_regex`] compiles rules with: bytes, Unicode off.
fn syntax_config() -> syntax::Config {
    syntax::Config::new().unicode(false).utf8(false)
}

fn widen_to_chars(hay: &[u8], mut span: Range<usize>) -> Range<usize> {
    let continuation = |b: u8| b & 0xC0 == 0x80;
    while span.start > 0 && continuation(hay[span.start]) {
        span.start -= 1;
    }
    while span.end < hay.len() && continuation(hay[span.end]) {
        span.end += 1;
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, pattern: &str, action: RedactionAction) -> RuleSpec {
        RuleSpec {
            id: id.into(),
            pattern: pattern.into(),
            validator: None,
            action,
            keep_last: 0,
            keys: None,
            prefilter: Prefilter::default(),
        }
    }

    fn run(engine: &Engine, text: &str) -> Verdict {
        let mut scratch = Scratch::default();
        engine.scan(None, text.as_bytes(), &mut scratch).unwrap();
        engine.verdict(text.as_bytes(), true, &mut scratch)
    }

    fn rewrite(engine: &Engine, text: &str) -> String {
        match run(engine, text) {
            Verdict::Rewrite(b) => String::from_utf8(b).unwrap(),
            Verdict::Clean => text.to_owned(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_key_memo_answers_like_the_key_regexes_when_keys_share_its_slots() {
        let keyed = |id: &str, keys: &str| RuleSpec {
            keys: Some(keys.into()),
            ..spec(id, "[0-9]{9}", RedactionAction::Mask)
        };
        let e = Engine::new(
            vec![keyed("ssn", "(?i)ssn"), keyed("passport", "(?i)passport")],
            &[],
            Options::default(),
        )
        .unwrap();
        // Six keys share one pair of slots, three times its two ways; the `k…` keys match no rule.
        let slot = |k: &str| MemoKey::of(k.as_bytes()).set(KEY_MEMO_SLOTS);
        let mut keys: Vec<String> = Vec::new();
        for i in 0.. {
            for k in [
                format!("customer.ssn.{i}"),
                format!("passport.{i}"),
                format!("k{i}"),
            ] {
                if keys.is_empty() || slot(&k) == slot(&keys[0]) {
                    keys.push(k);
                }
            }
            if keys.len() >= 6 {
                break;
            }
        }
        let want = |k: &str| {
            u64::from(k.contains("ssn")) << e.rules[0].key_bit.unwrap()
                | u64::from(k.contains("passport")) << e.rules[1].key_bit.unwrap()
        };
        let mut scratch = Scratch::default();
        for round in 0..4 {
            for (i, k) in keys.iter().enumerate() {
                // Revisits in changing orders, so hits in either way and evictions all happen.
                let k = if round % 2 == 0 {
                    k
                } else {
                    &keys[keys.len() - 1 - i]
                };
                assert_eq!(e.key_bits_of(k, &mut scratch), want(k), "{k}");
                assert_eq!(e.key_bits_of(k, &mut scratch), want(k), "{k} again");
            }
        }
    }

    #[test]
    fn the_key_memo_tells_apart_long_keys_that_differ_only_between_its_words() {
        let e = Engine::new(
            vec![RuleSpec {
                keys: Some("^.{20}x".into()),
                ..spec("x20", "[0-9]{9}", RedactionAction::Mask)
            }],
            &[],
            Options::default(),
        )
        .unwrap();
        let bit = 1 << e.rules[0].key_bit.unwrap();
        // 41 bytes: the memo's words hold bytes 0..16 and 25..41, not byte 20.
        let (x, s) = ("a".repeat(20) + "x" + &"a".repeat(20), "a".repeat(41));
        let mut scratch = Scratch::default();
        for _ in 0..2 {
            assert_eq!(e.key_bits_of(&x, &mut scratch), bit);
            assert_eq!(e.key_bits_of(&s, &mut scratch), 0);
        }
    }

    /// Lengths and positions at the edges of the memo's words, and byte 20.
    fn edge() -> impl proptest::strategy::Strategy<Value = usize> {
        proptest::sample::select(vec![
            0, 5, 7, 8, 9, 15, 16, 17, 20, 24, 31, 32, 33, 40, 47, 48,
        ])
    }

    proptest::proptest! {
        /// Keys of every length class the memo reads differently (under 8 bytes, 8 to 16, 17 to 32,
        /// longer), each a prefix of one base key with one byte changed, so that many have the
        /// same length and differ in a single byte, and recurring in any order: the memo answers as the
        /// key regexes do.
        #[test]
        fn the_key_memo_answers_like_the_key_regexes_for_keys_of_any_length(
            base in "[sn.x]{48}",
            variants in proptest::collection::vec((edge(), edge(), "[sn.x]"), 4..16),
            order in proptest::collection::vec(0usize..16, 1..200),
        ) {
            let keys: Vec<String> = variants
                .iter()
                .map(|(cut, at, b)| {
                    let mut k = base.as_bytes()[..(*cut).min(base.len())].to_vec();
                    if !k.is_empty() {
                        let at = at % k.len();
                        k[at] = b.as_bytes()[0];
                    }
                    String::from_utf8(k).unwrap()
                })
                .collect();
            let keyed = |id: &str, keys: &str| RuleSpec {
                keys: Some(keys.into()),
                ..spec(id, "[0-9]{9}", RedactionAction::Mask)
            };
            let e = Engine::new(
                // The second reads a byte that keys of 37 bytes or more hold in neither of the
                // memo's words, the third the last byte.
                vec![keyed("ssn", "ssn"), keyed("x20", "^.{20}x"), keyed("x", "x$")],
                &[],
                Options::default(),
            )
            .unwrap();
            let want = |k: &str| {
                u64::from(k.contains("ssn")) << e.rules[0].key_bit.unwrap()
                    | u64::from(k.as_bytes().get(20) == Some(&b'x')) << e.rules[1].key_bit.unwrap()
                    | u64::from(k.ends_with('x')) << e.rules[2].key_bit.unwrap()
            };
            let mut scratch = Scratch::default();
            for i in order {
                let k = &keys[i % keys.len()];
                proptest::prop_assert_eq!(e.key_bits_of(k, &mut scratch), want(k), "{}", k);
            }
        }
    }

    #[test]
    fn mask_keeps_the_last_characters_only_while_most_stays_hidden() {
        let mut s = spec("digits", "[0-9]{8,}", RedactionAction::Mask);
        s.keep_last = 4;
        let e = Engine::new(vec![s], &[], Options::default()).unwrap();
        assert_eq!(rewrite(&e, "card 41111111 ok"), "card ****1111 ok");
        let mut s = spec("digits", "[0-9]{6,}", RedactionAction::Mask);
        s.keep_last = 4;
        let e = Engine::new(vec![s], &[], Options::default()).unwrap();
        assert_eq!(
            rewrite(&e, "id 123456"),
            "id ****",
            "4 of 6 would reveal most"
        );
    }

    #[test]
    fn hash_is_keyed_and_stable() {
        let opts = |key: &[u8]| Options {
            hash_key: Some(key.to_vec()),
            ..Options::default()
        };
        let rules = || vec![spec("email", "[a-z]+@[a-z]+\\.com", RedactionAction::Hash)];
        let a = Engine::new(rules(), &[], opts(b"0123456789abcdef")).unwrap();
        let b = Engine::new(rules(), &[], opts(b"fedcba9876543210")).unwrap();
        let x = rewrite(&a, "to bob@example.com");
        assert_eq!(x, rewrite(&a, "to bob@example.com"), "joinable");
        assert_ne!(x, rewrite(&b, "to bob@example.com"), "keyed");
        assert!(!x.contains("bob@"));
        assert_eq!(x.len(), "to ".len() + 64);
        assert!(Engine::new(rules(), &[], Options::default()).is_err());
    }

    #[test]
    fn strongest_action_wins_and_overlaps_merge() {
        let e = Engine::new(
            vec![
                spec("a", "abc", RedactionAction::Mask),
                spec("b", "bcd", RedactionAction::Mask),
            ],
            &[],
            Options::default(),
        )
        .unwrap();
        assert_eq!(rewrite(&e, "xabcdx"), "x****x");
        let e = Engine::new(
            vec![
                spec("a", "abc", RedactionAction::Mask),
                spec("b", "zzz", RedactionAction::DropAttribute),
                spec("c", "yyy", RedactionAction::DropRecord),
            ],
            &[],
            Options::default(),
        )
        .unwrap();
        assert_eq!(run(&e, "abc zzz"), Verdict::DropAttribute);
        assert_eq!(run(&e, "abc zzz yyy"), Verdict::DropRecord);
        assert_eq!(run(&e, "nothing"), Verdict::Clean);
    }

    #[test]
    fn replacements_never_split_a_character() {
        // `.` matches single bytes with Unicode off; the span is widened to the whole é.
        let e = Engine::new(
            vec![spec("x", "x.", RedactionAction::Mask)],
            &[],
            Options::default(),
        )
        .unwrap();
        assert_eq!(rewrite(&e, "axéb"), "a****b");
    }

    #[test]
    fn allowed_values_and_size_limit() {
        let e = Engine::new(
            vec![spec("n", "[0-9]+", RedactionAction::Mask)],
            &["^build-[0-9]+$".to_string()],
            Options {
                max_value_size: 10,
                ..Options::default()
            },
        )
        .unwrap();
        assert_eq!(rewrite(&e, "build-42"), "build-42");
        assert_eq!(rewrite(&e, "order-42"), "order-****");
        let mut scratch = Scratch::default();
        assert_eq!(e.scan(None, b"01234567890", &mut scratch), Err(TooLarge));
    }

    #[test]
    fn keyed_rules_follow_the_key_through_one_scratch() {
        let keyed = |keys: &str| {
            let mut s = spec("id", "[0-9]{4}", RedactionAction::Mask);
            s.keys = Some(keys.into());
            Engine::new(vec![s], &[], Options::default()).unwrap()
        };
        let (ssn, order) = (keyed("(?i)ssn"), keyed("^order"));
        let mut scratch = Scratch::default();
        let mut found = |e: &Engine, key: &str| {
            e.scan(Some(key), b"n 1234", &mut scratch).unwrap();
            !scratch.findings().is_empty()
        };
        // More distinct keys than the memo holds, twice, alternating engines on one scratch.
        for round in 0..2 {
            for i in 0..100 {
                assert!(found(&ssn, &format!("customer.SSN.{i}")), "round {round}");
                assert!(!found(&ssn, &format!("order.{i}")));
                assert!(found(&order, &format!("order.{i}")));
                assert!(!found(&order, "customer.ssn"));
            }
        }
        ssn.scan(None, b"n 1234", &mut scratch).unwrap();
        assert!(scratch.findings().is_empty(), "no key, no keyed rule");
    }

    #[test]
    fn more_rules_than_the_gate_tables_hold() {
        let specs: Vec<RuleSpec> = (0..70)
            .map(|i| {
                spec(
                    &format!("r{i}"),
                    &format!("k{i}=[0-9]+"),
                    RedactionAction::Mask,
                )
            })
            .collect();
        let e = Engine::new(specs, &[], Options::default()).unwrap();
        assert!(e.gate_tables.is_none());
        let mut scratch = Scratch::default();
        let hay = b"k65=12 k3=4 k7=x";
        e.scan(None, hay, &mut scratch).unwrap();
        let mut rules: Vec<u32> = scratch.findings().iter().map(|f| f.rule).collect();
        rules.sort_unstable();
        assert_eq!(rules, [3, 65]);
        assert_eq!(scratch.findings().len(), e.scan_every_rule(None, hay).len());
    }

    #[test]
    fn prefilters_gate_rules_but_never_change_results() {
        let mut lit = spec("email", "[a-z]+@[a-z]+", RedactionAction::Mask);
        lit.prefilter.any_of = vec!["@".into()];
        let mut dig = spec("long", "[0-9]{5}", RedactionAction::Mask);
        dig.prefilter.min_digits = 5;
        let e = Engine::new(vec![lit, dig], &[], Options::default()).unwrap();
        assert_eq!(rewrite(&e, "a@b 12345"), "**** ****");
        assert_eq!(rewrite(&e, "ab 1234"), "ab 1234");
    }
}
