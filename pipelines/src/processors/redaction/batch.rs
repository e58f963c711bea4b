//! Batch scans: the values of a payload scanned together, so that the values holding nothing (nearly
//! all of them) cost only their share of a few streaming passes instead of a scan each.
//!
//! Pushed values are copied into one chunk (up to [`CHUNK`] bytes), each followed by a separator byte
//! that is no digit, no digit-run separator, in no prefilter literal and no streamed byte, so nothing a
//! pass looks for can span two values. Over the whole chunk, once:
//!
//! - the literal search (the same Teddy searcher as a single scan) over the chunk lower-cased: each hit
//!   marks its rules on the value it lies in;
//! - the digit runs (64-byte bit masks), reporting the runs at least as long as the shortest `min_run`;
//! - `memchr` for the few rare bytes some rules' every match holds (`@` of an email or a URL password,
//!   `+` of an E.164 phone number), read off the patterns like the byte screen's sets.
//!
//! Each rule has conditions these passes decide (a literal, a run of `min_run`, a rare byte) and, if
//! keyed, its key (looked up when the value is pushed). A value goes on to the single-value scan
//! ([`Engine::scan`]'s stages) only if some rule has all of them, and those stages then start from such
//! rules, without searching the literals and the run again or looking the key up; a rule without any
//! such condition lets every value through. The conditions are exactly the run, key and literal gates
//! of the single-value scan, so a batch finds exactly what scanning each value alone finds. A property
//! test compares the two on random batches.
//!
//! A value those stages found clean is remembered with the rules they started from (a few hundred
//! values of up to 512 bytes, per [`Scratch`]): met again with the same rules, as the same user agent
//! or SQL statement is in batch after batch, it is clean without them.

use super::digits;
use super::engine::{key_hash, Engine, Finding, Scratch, TooLarge};
use super::screen::ByteSet;

/// Bytes of values gathered before the streaming passes run: big enough that per-pass costs vanish,
/// small enough to stay in the L2 cache with its lower-cased copy.
pub(crate) const CHUNK: usize = 32 * 1024;

/// At most this many bytes are streamed with `memchr` (one `memchr3` pass).
const STREAMED_BYTES: usize = 3;

/// What the batch passes look for, derived once from the rules (engines of at most 64 rules).
pub(crate) struct Plan {
    /// Joins values in a chunk: no digit, no run separator, in no literal, not streamed.
    sep: u8,
    /// The rules that need one of their literals (bit per rule).
    literal_rules: u64,
    /// The streamed bytes, and for each the bit of every set containing it.
    bytes: Vec<(u8, u8)>,
    /// The set bit of "holds an upper-case letter" (0: not looked for).
    upper_bit: u8,
    /// `set_killed[m]`: the rules that need one of the streamed sets whose bits are in `m`.
    set_killed: Box<[u64; 256]>,
    /// The shortest `min_run` of any rule (0: no rule has one).
    min_run: usize,
    /// `run_ok[n]`: the rules whose `min_run` is at most `n`; the last entry covers every longer run.
    run_ok: Vec<u64>,
    /// The keyed rules, and the rule of each key bit.
    keyed_rules: u64,
    key_rule: Vec<u32>,
    all_rules: u64,
}

/// One rule's conditions, as the engine knows them.
pub(crate) struct RuleConditions<'a> {
    pub literal_gate: bool,
    pub min_run: usize,
    pub key_bit: Option<u32>,
    pub keyed: bool,
    /// Byte sets every match holds a byte of.
    pub sets: &'a [ByteSet],
}

impl Plan {
    /// `None` when batches cannot be used (more than 64 rules, or keyed rules without a key bit):
    /// values are then scanned one by one.
    pub(crate) fn new<'a>(
        rules: &[RuleConditions<'a>],
        literals: impl Iterator<Item = &'a str>,
    ) -> Option<Plan> {
        if rules.len() > 64 || rules.iter().any(|r| r.keyed && r.key_bit.is_none()) {
            return None;
        }
        // For each rule its rarest small set of rare bytes, if it has one.
        let mut sets: Vec<(ByteSet, u64)> = Vec::new();
        for (r, rule) in rules.iter().enumerate() {
            let best = rule
                .sets
                .iter()
                .filter(|s| {
                    let n = s.len();
                    n > 0 && n <= STREAMED_BYTES && s.bytes().all(rare)
                })
                .min_by_key(|s| s.len());
            if let Some(set) = best {
                match sets.iter_mut().find(|(s, _)| s == set) {
                    Some((_, rules)) => *rules |= 1 << r,
                    None => sets.push((*set, 1 << r)),
                }
            }
        }
        // Most rules first, as long as the bytes fit in one pass.
        sets.sort_by_key(|(_, rules)| std::cmp::Reverse(rules.count_ones()));
        let mut bytes: Vec<(u8, u8)> = Vec::new();
        let mut kept: Vec<u64> = Vec::new();
        for (set, rules) in sets {
            let new: Vec<u8> = set
                .bytes()
                .filter(|b| !bytes.iter().any(|(x, _)| x == b))
                .collect();
            if bytes.len() + new.len() > STREAMED_BYTES || kept.len() == 8 {
                continue;
            }
            let bit = 1u8 << kept.len();
            for b in set.bytes() {
                match bytes.iter_mut().find(|(x, _)| *x == b) {
                    Some((_, bits)) => *bits |= bit,
                    None => bytes.push((b, bit)),
                }
            }
            kept.push(rules);
        }
        // Rules some set of which holds only upper-case letters need an upper-case letter: one more
        // set, found with a byte mask per 64-byte block rather than memchr.
        let upper_rules = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                r.sets
                    .iter()
                    .any(|s| s.len() > 0 && s.bytes().all(|b| b.is_ascii_uppercase()))
            })
            .fold(0u64, |m, (i, _)| m | 1 << i);
        let upper_bit = if upper_rules != 0 && kept.len() < 8 {
            kept.push(upper_rules);
            1u8 << (kept.len() - 1)
        } else {
            0
        };
        let mut set_killed = Box::new([0u64; 256]);
        for (m, killed) in set_killed.iter_mut().enumerate() {
            for (s, rules) in kept.iter().enumerate() {
                if m & 1 << s != 0 {
                    *killed |= rules;
                }
            }
        }
        let literals: Vec<&str> = literals.collect();
        let sep = (0..=255u8).find(|&b| {
            !b.is_ascii_digit()
                && !b.is_ascii_uppercase()
                && !b" -./()".contains(&b)
                && !bytes.iter().any(|(x, _)| *x == b)
                && !literals.iter().any(|l| l.as_bytes().contains(&b))
        })?;
        let min_run = rules
            .iter()
            .map(|r| r.min_run)
            .filter(|&n| n > 0)
            .min()
            .unwrap_or(0);
        let longest = rules.iter().map(|r| r.min_run).max().unwrap_or(0);
        let run_ok = (0..=longest)
            .map(|n| {
                rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.min_run <= n)
                    .fold(0u64, |ok, (i, _)| ok | 1 << i)
            })
            .collect();
        let mut key_rule = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            if let Some(bit) = r.key_bit {
                let bit = bit as usize;
                if key_rule.len() <= bit {
                    key_rule.resize(bit + 1, 0);
                }
                key_rule[bit] = i as u32;
            }
        }
        let mask = |f: &dyn Fn(&RuleConditions) -> bool| {
            rules
                .iter()
                .enumerate()
                .filter(|(_, r)| f(r))
                .fold(0u64, |m, (i, _)| m | 1 << i)
        };
        Some(Plan {
            sep,
            literal_rules: mask(&|r| r.literal_gate),
            bytes,
            upper_bit,
            set_killed,
            min_run,
            run_ok,
            keyed_rules: mask(&|r| r.keyed),
            key_rule,
            all_rules: mask(&|_| true),
        })
    }

    /// The rules whose batch conditions all hold for a value.
    #[inline]
    fn possible(&self, literal_rules: u64, sets: u8, run: usize, key: Option<u64>) -> u64 {
        let mut ok = self.all_rules
            & (literal_rules | !self.literal_rules)
            & !self.set_killed[usize::from(!sets)]
            & self.run_ok[run.min(self.run_ok.len() - 1)];
        if ok & self.keyed_rules != 0 {
            let mut matching = 0u64;
            let mut bits = key.unwrap_or(0);
            while bits != 0 {
                matching |= 1 << self.key_rule[bits.trailing_zeros() as usize];
                bits &= bits - 1;
            }
            ok &= matching | !self.keyed_rules;
        }
        ok
    }
}

/// Bytes rare enough in telemetry text to be streamed with `memchr`: punctuation other than the
/// separators of paths, numbers and key=value pairs, and non-ASCII bytes.
fn rare(b: u8) -> bool {
    !(b.is_ascii_alphanumeric()
        || b.is_ascii_whitespace()
        || b.is_ascii_control()
        || b".-/_:=,".contains(&b))
}

/// A batch in progress and its results, kept in a [`Scratch`].
#[derive(Default)]
pub(crate) struct Batch {
    /// The pending values, each followed by the plan's separator.
    text: Vec<u8>,
    /// `text` lower-cased and padded for the literal search.
    lower: Vec<u8>,
    /// Where each pending value ends in `text` (its separator's index).
    ends: Vec<u32>,
    /// Each pending value's key bits (`None`: no key).
    keys: Vec<Option<u64>>,
    /// Which pending values are over `max_value_size` (kept in the chunk as empty values, so results
    /// stay in index order).
    large: Vec<bool>,
    /// Per pending value, what the passes found: its literal rules, streamed sets and long run.
    literal_rules: Vec<u64>,
    sets: Vec<u8>,
    runs: Vec<u32>,
    /// Each 64-byte block's upper-case mask, noted by the run pass (bit `i`: byte `i` of the block).
    uppers: Vec<u64>,
    /// Batch index of the first pending value; values pushed so far.
    first: usize,
    pushed: usize,
    /// The findings of the values that have any, in index order.
    found: Vec<Finding>,
    /// `(index, from, to)`: value `index`'s findings are `found[from..to]`; `from == u32::MAX`:
    /// too large to scan.
    results: Vec<(u32, u32, u32)>,
    /// Next entry of `results` [`Scratch::load_batch_findings`] looks at.
    cursor: usize,
    /// Values the per-value stages recently found clean (kept from batch to batch).
    clean: CleanMemo,
}

/// Values that went through the per-value stages and held nothing, with the rules they were scanned
/// for. Telemetry repeats itself: the same user agent, SQL statement or error message comes back in
/// every batch, and one whose digits let several digit rules through cost a pass of the digit
/// automaton each time. The stages' result is a function of the value's bytes and the rules they
/// start from, so a value met again with the same rules is known clean without them. Bounded: a
/// fixed number of direct-mapped slots, values of at most [`CLEAN_MAX`] bytes, tagged with the
/// engine (a reload brings another).
#[derive(Default)]
struct CleanMemo {
    engine: u64,
    /// `(hash, possible rules, value)`; empty until first used.
    slots: Vec<(usize, u64, Vec<u8>)>,
}

const CLEAN_SLOTS: usize = 256;
/// Longer values are not memoised: bounded memory, and their scan dwarfs the saving anyway.
const CLEAN_MAX: usize = 512;

impl CleanMemo {
    /// Whether `value`, scanned for `possible`, is known to hold nothing; `hash` is its
    /// [`key_hash`].
    #[inline]
    fn holds(&self, hash: usize, value: &[u8], possible: u64) -> bool {
        self.slots
            .get(hash % CLEAN_SLOTS)
            .is_some_and(|(h, p, v)| *h == hash && *p == possible && v == value)
    }

    fn insert(&mut self, hash: usize, value: &[u8], possible: u64) {
        if self.slots.is_empty() {
            self.slots = vec![(0, 0, Vec::new()); CLEAN_SLOTS];
        }
        let slot = &mut self.slots[hash % CLEAN_SLOTS];
        slot.0 = hash;
        slot.1 = possible;
        slot.2.clear();
        slot.2.extend_from_slice(value);
    }

    /// Forgets everything if the memo was filled by another engine.
    fn keep_for(&mut self, engine: u64) {
        if self.engine != engine {
            self.slots.clear();
            self.engine = engine;
        }
    }
}

const TOO_LARGE: u32 = u32::MAX;

impl Engine {
    /// Starts a batch in `scratch`, discarding the last one's results.
    pub fn batch_begin(&self, scratch: &mut Scratch) {
        let b = &mut scratch.batch;
        b.text.clear();
        b.ends.clear();
        b.keys.clear();
        b.large.clear();
        b.first = 0;
        b.pushed = 0;
        b.found.clear();
        b.results.clear();
        b.cursor = 0;
    }

    /// Adds the value of attribute `key` (if any) to the batch and returns its index. It is scanned
    /// by this call or a later one, at the latest by [`Engine::batch_finish`].
    pub fn batch_push(&self, key: Option<&str>, hay: &[u8], scratch: &mut Scratch) -> usize {
        let index = scratch.batch.pushed;
        scratch.batch.pushed += 1;
        let too_large = hay.len() > self.max_value_size();
        let Some(plan) = self.plan().filter(|_| too_large || hay.len() < CHUNK) else {
            // Scanned alone, after what is pending so results stay in index order.
            self.batch_flush(scratch);
            scratch.batch.first = index + 1;
            match self.scan(key, hay, scratch) {
                Ok(()) => scratch.keep_batch_findings(index),
                Err(TooLarge) => {
                    scratch
                        .batch
                        .results
                        .push((index as u32, TOO_LARGE, TOO_LARGE));
                }
            }
            return index;
        };
        if scratch.batch.text.len() + hay.len() + 1 > CHUNK {
            self.batch_flush(scratch);
        }
        let key = match key {
            Some(k) if plan.keyed_rules != 0 => Some(self.key_bits_of(k, scratch)),
            _ => None,
        };
        let b = &mut scratch.batch;
        if b.ends.is_empty() {
            b.first = index;
        }
        // A value too large to scan stays in the chunk, empty, so results stay in index order.
        let hay = if too_large { &[][..] } else { hay };
        b.text.extend_from_slice(hay);
        b.ends.push(b.text.len() as u32);
        b.text.push(plan.sep);
        b.keys.push(key);
        b.large.push(too_large);
        index
    }

    /// Scans what is still pending: after it every pushed value's findings are in `scratch`.
    pub fn batch_finish(&self, scratch: &mut Scratch) {
        self.batch_flush(scratch);
        scratch.batch.cursor = 0;
    }

    /// Scans `values` as one batch: [`Scratch::batch_results`] then gives what each holds, by its
    /// position in `values`.
    pub fn scan_many<'v>(
        &self,
        values: impl IntoIterator<Item = (Option<&'v str>, &'v [u8])>,
        scratch: &mut Scratch,
    ) {
        self.batch_begin(scratch);
        for (key, hay) in values {
            self.batch_push(key, hay, scratch);
        }
        self.batch_finish(scratch);
    }

    /// Runs the streaming passes over the pending chunk, then the single-value scan on each value
    /// some rule may still match.
    fn batch_flush(&self, scratch: &mut Scratch) {
        let Some(plan) = self.plan() else {
            return;
        };
        let mut b = std::mem::take(&mut scratch.batch);
        let n = b.ends.len();
        if n == 0 {
            scratch.batch = b;
            return;
        }
        b.literal_rules.clear();
        b.literal_rules.resize(n, 0);
        b.sets.clear();
        b.sets.resize(n, 0);
        b.runs.clear();
        b.runs.resize(n, 0);
        let ends = &b.ends;
        let value_at = |pos: usize| ends.partition_point(|&e| e as usize <= pos);
        if let Some(literals) = self.literal_search() {
            b.lower.clear();
            // One pass that copies and lower-cases (it vectorises), not a copy and then a second
            // pass over the copy.
            b.lower
                .extend(b.text.iter().map(|c| c.to_ascii_lowercase()));
            literals.pad(&mut b.lower);
            let lit = &mut b.literal_rules;
            let mut v = 0;
            literals.for_each_hit_long(&b.lower, b.text.len(), |pos, rules| {
                // Hits come in order of position from each searcher: mostly a walk.
                if ends[v] as usize <= pos || (v > 0 && ends[v - 1] as usize > pos) {
                    v = value_at(pos);
                }
                for &r in rules {
                    lit[v] |= 1 << r;
                }
            });
        }
        b.uppers.clear();
        if plan.min_run > 0 {
            let runs = &mut b.runs;
            let mut v = 0;
            let found = |end: usize, len: usize| {
                while ends[v] as usize <= end {
                    v += 1;
                }
                runs[v] = runs[v].max(len as u32);
            };
            // The upper-case masks come from the same reading of the text as the run's.
            if plan.upper_bit != 0 {
                digits::for_each_run_noting_upper(&b.text, plan.min_run, &mut b.uppers, found);
            } else {
                digits::for_each_run(&b.text, plan.min_run, found);
            }
        } else if plan.upper_bit != 0 {
            b.uppers.extend(b.text.chunks(64).map(upper_mask));
        }
        if !plan.bytes.is_empty() {
            let sets = &mut b.sets;
            let mut mark = |pos: usize, v: &mut usize| {
                while ends[*v] as usize <= pos {
                    *v += 1;
                }
                let byte = b.text[pos];
                if let Some((_, bits)) = plan.bytes.iter().find(|(x, _)| *x == byte) {
                    sets[*v] |= bits;
                }
            };
            let mut v = 0;
            match plan.bytes[..] {
                [(a, _)] => memchr::memchr_iter(a, &b.text).for_each(|p| mark(p, &mut v)),
                [(a, _), (c, _)] => {
                    memchr::memchr2_iter(a, c, &b.text).for_each(|p| mark(p, &mut v))
                }
                [(a, _), (c, _), (d, _), ..] => {
                    memchr::memchr3_iter(a, c, d, &b.text).for_each(|p| mark(p, &mut v))
                }
                [] => {}
            }
        }
        if plan.upper_bit != 0 {
            let sets = &mut b.sets;
            let mut v = 0;
            for (block, &m) in b.uppers.iter().enumerate() {
                let mut m = m;
                let at = block * 64;
                while m != 0 {
                    let pos = at + m.trailing_zeros() as usize;
                    while ends[v] as usize <= pos {
                        v += 1;
                    }
                    sets[v] |= plan.upper_bit;
                    // The rest of this value's letters in the block are not needed.
                    let past = ends[v] as usize - at;
                    m = if past >= 64 {
                        0
                    } else {
                        m & !((1u64 << past) - 1)
                    };
                }
            }
        }
        b.clean.keep_for(self.id());
        let mut start = 0;
        for j in 0..n {
            let end = b.ends[j] as usize;
            let run = b.runs[j] as usize;
            if b.large[j] {
                b.results.push(((b.first + j) as u32, TOO_LARGE, TOO_LARGE));
                start = end + 1;
                continue;
            }
            let possible = plan.possible(b.literal_rules[j], b.sets[j], run, b.keys[j]);
            if possible != 0 {
                let value = &b.text[start..end];
                let memo = (value.len() <= CLEAN_MAX).then(|| key_hash(value));
                if !memo.is_some_and(|hash| b.clean.holds(hash, value, possible)) {
                    let _ = self.scan_impl(None, value, Some(possible), scratch);
                    match memo {
                        Some(hash) if scratch.findings().is_empty() => {
                            b.clean.insert(hash, value, possible)
                        }
                        _ => {
                            let index = b.first + j;
                            keep_findings(&mut b, scratch, index)
                        }
                    }
                }
            }
            start = end + 1;
        }
        b.first += n;
        b.text.clear();
        b.ends.clear();
        b.keys.clear();
        b.large.clear();
        scratch.batch = b;
    }
}

/// Bit `i`: byte `i` of `chunk` (at most 64 bytes) is an ASCII upper-case letter.
#[inline]
fn upper_mask(chunk: &[u8]) -> u64 {
    match <&[u8; 64]>::try_from(chunk) {
        Ok(block) => digits::upper(block),
        Err(_) => {
            let mut block = [0u8; 64];
            block[..chunk.len()].copy_from_slice(chunk);
            digits::upper(&block)
        }
    }
}

/// Moves the findings of the last single-value scan into the batch's results as value `index`'s.
fn keep_findings(b: &mut Batch, scratch: &mut Scratch, index: usize) {
    let findings = scratch.findings();
    if !findings.is_empty() {
        let from = b.found.len() as u32;
        b.found.extend_from_slice(findings);
        b.results.push((index as u32, from, b.found.len() as u32));
    }
}

impl Scratch {
    fn keep_batch_findings(&mut self, index: usize) {
        let mut b = std::mem::take(&mut self.batch);
        keep_findings(&mut b, self, index);
        self.batch = b;
    }

    /// The values of the last batch that hold something, in index order: their findings, or
    /// `Err(TooLarge)` for a value over `max_value_size`, which was not scanned.
    pub fn batch_results(&self) -> impl Iterator<Item = (usize, Result<&[Finding], TooLarge>)> {
        let b = &self.batch;
        b.results.iter().map(|&(i, from, to)| {
            let found = if from == TOO_LARGE {
                Err(TooLarge)
            } else {
                Ok(&b.found[from as usize..to as usize])
            };
            (i as usize, found)
        })
    }

    /// Makes value `index`'s findings from the last batch the ones [`Engine::verdict`] reads (as
    /// [`Engine::scan`] on it would have), or says it was too large. Fastest when called with
    /// increasing indices.
    pub fn load_batch_findings(&mut self, index: usize) -> Result<(), TooLarge> {
        let b = &mut self.batch;
        let i = index as u32;
        if b.results
            .get(b.cursor.wrapping_sub(1))
            .is_some_and(|r| r.0 >= i)
        {
            b.cursor = b.results.partition_point(|r| r.0 < i);
        }
        while b.results.get(b.cursor).is_some_and(|r| r.0 < i) {
            b.cursor += 1;
        }
        let entry = b.results.get(b.cursor).filter(|r| r.0 == i).copied();
        self.findings.clear();
        match entry {
            Some((_, TOO_LARGE, _)) => Err(TooLarge),
            Some((_, from, to)) => {
                self.findings
                    .extend_from_slice(&self.batch.found[from as usize..to as usize]);
                Ok(())
            }
            None => Ok(()),
        }
    }
}
