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
//! keyed, its key (looked up when the value is pushed). A rule whose matches hold a row of digits or
//! of capitals (seven digits of a DNI, two capitals of an IBAN) also needs that row: measured on the
//! value alone, and only for a value some such rule is still possible for. Few values get that far
//! (in telemetry mostly ISO timestamps), where a pass over the whole chunk would cost every value.
//! A value goes on to the single-value scan ([`Engine::scan`]'s stages) only if some rule has all of
//! them, and those stages then start from such rules, without searching the literals, the run and
//! the rows again or looking the key up; a rule without any such condition lets every value through.
//! The conditions are exactly the run, key, literal and row gates of the single-value scan, so a
//! batch finds exactly what scanning each value alone finds. A property test compares the two on
//! random batches.
//!
//! What the passes leave possible for a value depends only on its shape (its bytes with every digit
//! read as `0`, module `shape`) and key bits, so a batch remembers it per shape (4,096 shapes of up
//! to 256 bytes, per [`Scratch`]). A value of a known shape, as the same route, user agent or
//! SQL statement is, and as a log line, URL or timestamp with other numbers is, skips the passes:
//! if no rule was possible it never enters the chunk, else it goes straight to the per-value stages
//! with the rules remembered.

use super::digits;
use super::engine::{Engine, Finding, Scratch, TooLarge};
use super::screen::{ByteSet, Rows};
use super::shape;

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
    /// The rules that need a row of digits or of capitals longer than one, and each one's rows.
    row_rules: u64,
    rows: Vec<(u64, Rows)>,
    /// Whether what the passes decide is a function of a value's shape: no literal holds a digit.
    by_shape: bool,
}

/// One rule's conditions, as the engine knows them.
pub(crate) struct RuleConditions<'a> {
    pub literal_gate: bool,
    pub min_run: usize,
    pub key_bit: Option<u32>,
    pub keyed: bool,
    /// Byte sets every match holds a byte of.
    pub sets: &'a [ByteSet],
    /// The rows every match holds, if a row is longer than one.
    pub rows: Option<Rows>,
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
                && !digits::SEPARATORS.contains(&b)
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
        let rows: Vec<(u64, Rows)> = rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((1u64 << i, r.rows?)))
            .collect();
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
            row_rules: rows.iter().fold(0, |m, (bit, _)| m | bit),
            rows,
            // Streamed bytes are never digits (`rare`); literals may be.
            by_shape: !literals
                .iter()
                .any(|l| l.bytes().any(|b| b.is_ascii_digit())),
        })
    }

    /// The rules a value whose longest rows are `longest` (digits, capitals) may match: all but
    /// those needing a longer row.
    fn rows_held(&self, longest: (usize, usize)) -> u64 {
        let mut lacking = 0;
        for &(bit, need) in &self.rows {
            if !need.held(longest) {
                lacking |= bit;
            }
        }
        !lacking
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
    /// What else the flush needs of each pending value, one record each (one push per value).
    meta: Vec<Meta>,
    /// Per pending value, what the passes found: its literal rules, streamed sets and long run.
    literal_rules: Vec<u64>,
    sets: Vec<u8>,
    runs: Vec<u32>,
    /// Each 64-byte block's upper-case mask, noted by the run pass (bit `i`: byte `i` of the block).
    uppers: Vec<u64>,
    /// Values pushed so far.
    pushed: usize,
    /// The findings of the values that have any, in index order.
    found: Vec<Finding>,
    /// `(index, from, to)`: value `index`'s findings are `found[from..to]`; `from == u32::MAX`:
    /// too large to scan.
    results: Vec<(u32, u32, u32)>,
    /// Next entry of `results` [`Scratch::load_batch_findings`] looks at.
    cursor: usize,
    /// What the passes left possible for recent shapes, and recent values found clean despite
    /// their shape (both kept from batch to batch).
    memo: ShapeMemo,
    clean: CleanMemo,
    /// Values sent to the per-value stages so far.
    #[cfg(test)]
    pub(crate) per_value_scans: usize,
    /// Values whose possible rules the passes decided so far (not the shape memo).
    #[cfg(test)]
    pub(crate) decided_by_passes: usize,
}

/// A pending value's key and memo entry, and what the flush does with it.
#[derive(Clone, Copy)]
struct Meta {
    /// Its key bits (`None`: no key).
    key: Option<u64>,
    /// Its shape's hash (0: not memoised).
    hash: u32,
    /// [`SCAN`] it; [`KNOWN`]: its shape is known, and `possible` are the rules the passes leave
    /// possible for it; nothing for one over `max_value_size` ([`TOO_LARGE_VALUE`]), which stays
    /// in the chunk as an empty value so results stay in index order. (A value known clean,
    /// [`KNOWN_CLEAN`], is not pending at all.)
    state: u8,
    possible: u64,
    /// Its index in the batch.
    index: u32,
}

/// What the passes left possible for recently seen shapes, each with the key bits it was pushed
/// with. Telemetry repeats itself: the same route, user agent, SQL statement, status code or flag
/// set comes back in batch after batch, and so do log lines, URLs and timestamps that differ only
/// in their numbers. The passes' conditions come from a value's shape and its key bits alone, so a
/// value met again with a known shape and the same key bits skips them: it is not copied into the
/// chunk when they left no rule possible, and goes straight to the per-value stages with the rules
/// they left otherwise.
///
/// Bounded: [`MEMO_SLOTS`] slots of shapes of at most [`shape::MAX`] bytes, tagged with the engine
/// (a reload brings another). A shape may be in either of two slots, so two recurring shapes whose
/// hashes meet both stay (direct-mapped, one of them missed at every turn, and which pairs met
/// changed with the hash function: a pass cost 10.4 M or 13.2 M instructions by the choice of a
/// multiplier). Shapes seen once (hex ids) would evict recurring ones at every turn, so each slot
/// keeps a small heat: a hit warms it, a shape offered to a warm pair only cools its colder slot,
/// and only a cold slot takes the newcomer.
#[derive(Default)]
struct ShapeMemo {
    engine: u64,
    /// Each slot's shape hash (0: free), apart from the slots so a miss reads four bytes.
    tags: Vec<u32>,
    /// Empty until first used.
    slots: Vec<MemoSlot>,
}

#[derive(Clone, Default)]
struct MemoSlot {
    key: Option<u64>,
    possible: u64,
    heat: u8,
    shape: Vec<u8>,
}

/// A node's recurring shapes (its routes, log templates, user agents, timestamps) number in the
/// hundreds to thousands; 4,096 slots hold them with room to spare, in about 200 KiB of slots plus
/// the shapes.
const MEMO_SLOTS: usize = 4096;
const MEMO_MAX_HEAT: u8 = 7;

/// What the flush does with a pending value.
const SCAN: u8 = 0;
const TOO_LARGE_VALUE: u8 = 1;
const KNOWN_CLEAN: u8 = 2;
const KNOWN: u8 = 3;

impl ShapeMemo {
    /// The first of the two slots `hash` may be in.
    #[inline(always)]
    fn set(hash: u32) -> usize {
        hash as usize % (MEMO_SLOTS / 2) * 2
    }

    /// The rules the passes left possible for `value`'s shape pushed with `key`, if known; a hit
    /// warms its slot.
    #[inline(always)]
    fn get(&mut self, hash: u32, key: Option<u64>, value: &[u8]) -> Option<u64> {
        // A free slot's tag is 0, the hash of a value not memoised.
        if hash == 0 || self.tags.is_empty() {
            return None;
        }
        let set = Self::set(hash);
        for i in [set, set + 1] {
            if self.tags[i] == hash {
                let slot = &mut self.slots[i];
                if slot.key == key && shape::same(value, &slot.shape) {
                    slot.heat = (slot.heat + 1).min(MEMO_MAX_HEAT);
                    return Some(slot.possible);
                }
            }
        }
        None
    }

    /// Offers the shape of a value the passes left `possible` for: it takes a free or cold slot of
    /// its two, else cools the colder.
    fn offer(&mut self, hash: u32, key: Option<u64>, value: &[u8], possible: u64) {
        if self.slots.is_empty() {
            self.tags = vec![0; MEMO_SLOTS];
            self.slots = vec![MemoSlot::default(); MEMO_SLOTS];
        }
        let set = Self::set(hash);
        for i in [set, set + 1] {
            let slot = &mut self.slots[i];
            if self.tags[i] == hash && slot.key == key && shape::same(value, &slot.shape) {
                // Met twice in one chunk, before the memo knew it.
                slot.heat = (slot.heat + 1).min(MEMO_MAX_HEAT);
                return;
            }
        }
        let i = if self.tags[set] == 0 {
            set
        } else if self.tags[set + 1] == 0 || self.slots[set + 1].heat < self.slots[set].heat {
            set + 1
        } else {
            set
        };
        let slot = &mut self.slots[i];
        if self.tags[i] != 0 && slot.heat > 0 {
            slot.heat -= 1;
            return;
        }
        self.tags[i] = hash;
        slot.key = key;
        slot.possible = possible;
        slot.heat = 1;
        shape::write(value, &mut slot.shape);
    }

    /// Forgets everything if the memo was filled by another engine.
    fn keep_for(&mut self, engine: u64) {
        if self.engine != engine {
            self.tags.clear();
            self.slots.clear();
            self.engine = engine;
        }
    }
}

/// Values whose shape leaves some rule possible but which the per-value stages found clean, each
/// with the key bits it was pushed with: a user agent's version is a run of 11 digits
/// (`120.0.6099.144`) and it holds capitals, so its shape leaves the SSN and phone rules and others
/// possible, yet the same user agent comes back in batch after batch. What a batch finds in a value
/// is a function of its bytes and key bits alone, so such a value met again with the same key bits
/// is known clean at once. Only values of a known shape with rules left possible are looked up, so
/// most values never pay for it; an engine that cannot remember shapes (a literal with a digit)
/// remembers every clean value here instead.
///
/// Bounded like [`ShapeMemo`], with the same heat, by the value's own bytes, in fewer slots: few
/// values get this far.
#[derive(Default)]
struct CleanMemo {
    engine: u64,
    /// Empty until first used.
    slots: Vec<CleanSlot>,
}

const CLEAN_SLOTS: usize = 1024;

#[derive(Clone, Default)]
struct CleanSlot {
    /// 0: a free slot.
    hash: u32,
    key: Option<u64>,
    heat: u8,
    value: Vec<u8>,
}

impl CleanMemo {
    /// The memo hash of `value` pushed with `key` (never 0), or 0 if such a value is not memoised.
    #[inline]
    fn hash(value: &[u8], key: Option<u64>) -> u32 {
        if value.is_empty() || value.len() > shape::MAX {
            return 0;
        }
        // The hash reads a few words, not every byte: the length, the first and last eight bytes
        // and two from the middle. Values that differ elsewhere share a slot, which the full
        // comparison tells apart.
        let word = |at: usize| u64::from_le_bytes(value[at..at + 8].try_into().expect("8 bytes"));
        let n = value.len();
        let mut h = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mix = |h: u64, w: u64| (h.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
        if n >= 8 {
            for at in [0, n / 3, 2 * n / 3, n - 8] {
                h = mix(h, word(at.min(n - 8)));
            }
        } else {
            h = mix(h, value.iter().fold(0u64, |w, &b| w << 8 | u64::from(b)));
        }
        if let Some(k) = key {
            h = mix(h, k);
        }
        ((h >> 32) as u32).max(1)
    }

    /// Whether `value` pushed with `key` is known clean; a hit warms its slot.
    #[inline]
    fn hit(&mut self, hash: u32, key: Option<u64>, value: &[u8]) -> bool {
        let Some(slot) = self.slots.get_mut(hash as usize % CLEAN_SLOTS) else {
            return false;
        };
        let hit = slot.hash == hash && slot.key == key && slot.value == value;
        if hit {
            slot.heat = (slot.heat + 1).min(MEMO_MAX_HEAT);
        }
        hit
    }

    /// Offers a value the batch found clean: it takes its slot if that is free or cold, else cools
    /// the slot.
    fn offer(&mut self, hash: u32, key: Option<u64>, value: &[u8]) {
        if self.slots.is_empty() {
            self.slots = vec![CleanSlot::default(); CLEAN_SLOTS];
        }
        let slot = &mut self.slots[hash as usize % CLEAN_SLOTS];
        if slot.hash == hash && slot.key == key && slot.value == value {
            // Met twice in one chunk, before the memo knew it.
            slot.heat = (slot.heat + 1).min(MEMO_MAX_HEAT);
            return;
        }
        if slot.hash != 0 && slot.heat > 0 {
            slot.heat -= 1;
            return;
        }
        slot.hash = hash;
        slot.key = key;
        slot.heat = 1;
        slot.value.clear();
        slot.value.extend_from_slice(value);
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
        b.meta.clear();
        b.memo.keep_for(self.id());
        b.clean.keep_for(self.id());
        b.pushed = 0;
        b.found.clear();
        b.results.clear();
        b.cursor = 0;
    }

    /// Adds the value of attribute `key` (if any) to the batch and returns its index. It is scanned
    /// by this call or a later one, at the latest by [`Engine::batch_finish`].
    ///
    /// Inlined into the caller's loop: it runs for every value, and as a call its register saves and
    /// restores were a tenth of its cost.
    #[inline(always)]
    pub fn batch_push(&self, key: Option<&str>, hay: &[u8], scratch: &mut Scratch) -> usize {
        let index = scratch.batch.pushed;
        scratch.batch.pushed += 1;
        let too_large = hay.len() > self.max_value_size();
        let Some(plan) = self.plan().filter(|_| too_large || hay.len() < CHUNK) else {
            self.scan_alone(key, hay, index, scratch);
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
        let hash = if too_large || !plan.by_shape {
            0
        } else {
            shape::hash(hay, key)
        };
        let (state, possible) = if too_large {
            (TOO_LARGE_VALUE, 0)
        } else if plan.by_shape {
            match b.memo.get(hash, key, hay) {
                None => (SCAN, 0),
                Some(0) => (KNOWN_CLEAN, 0),
                Some(possible) => {
                    if b.clean.hit(CleanMemo::hash(hay, key), key, hay) {
                        (KNOWN_CLEAN, 0)
                    } else {
                        (KNOWN, possible)
                    }
                }
            }
        } else if b.clean.hit(CleanMemo::hash(hay, key), key, hay) {
            (KNOWN_CLEAN, 0)
        } else {
            (SCAN, 0)
        };
        // A value known clean has nothing to report: the chunk does not hold it. One over
        // `max_value_size` stays in it, empty, so results stay in index order.
        if state == KNOWN_CLEAN {
            return index;
        }
        if state != TOO_LARGE_VALUE {
            b.text.extend_from_slice(hay);
        }
        b.ends.push(b.text.len() as u32);
        b.text.push(plan.sep);
        b.meta.push(Meta {
            key,
            hash,
            state,
            possible,
            index: index as u32,
        });
        index
    }

    /// Value `index`, scanned alone (no batch plan, or a value longer than a chunk), after what is
    /// pending so results stay in index order.
    #[inline(never)]
    fn scan_alone(&self, key: Option<&str>, hay: &[u8], index: usize, scratch: &mut Scratch) {
        self.batch_flush(scratch);
        match self.scan(key, hay, scratch) {
            Ok(()) => scratch.keep_batch_findings(index),
            Err(TooLarge) => {
                scratch
                    .batch
                    .results
                    .push((index as u32, TOO_LARGE, TOO_LARGE));
            }
        }
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
    #[inline(never)]
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
        let mut start = 0;
        for j in 0..n {
            let end = b.ends[j] as usize;
            let run = b.runs[j] as usize;
            let meta = b.meta[j];
            if meta.state == TOO_LARGE_VALUE {
                b.results.push((meta.index, TOO_LARGE, TOO_LARGE));
                start = end + 1;
                continue;
            }
            let possible = if meta.state == KNOWN {
                meta.possible
            } else {
                #[cfg(test)]
                {
                    b.decided_by_passes += 1;
                }
                let mut possible = plan.possible(b.literal_rules[j], b.sets[j], run, meta.key);
                // Rows last, on the value alone: ISO timestamps pass the run and capitals
                // conditions of the IBAN, NINO and DNI rules (a run of eight, a `T`) but hold no
                // row they need.
                if possible & plan.row_rules != 0 {
                    possible &= plan.rows_held(digits::longest_rows(&b.text[start..end]));
                }
                if meta.hash != 0 {
                    b.memo
                        .offer(meta.hash, meta.key, &b.text[start..end], possible);
                }
                possible
            };
            let mut clean = true;
            if possible != 0 {
                #[cfg(test)]
                {
                    b.per_value_scans += 1;
                }
                let _ = self.scan_impl(None, &b.text[start..end], Some(possible), scratch);
                clean = scratch.findings().is_empty();
                if !clean {
                    keep_findings(&mut b, scratch, meta.index as usize);
                }
            }
            // The shape memo already knows a value no rule was possible for, unless the engine
            // cannot remember shapes.
            if clean && (possible != 0 || !plan.by_shape) {
                let value = &b.text[start..end];
                let hash = CleanMemo::hash(value, meta.key);
                if hash != 0 {
                    b.clean.offer(hash, meta.key, value);
                }
            }
            start = end + 1;
        }
        b.text.clear();
        b.ends.clear();
        b.meta.clear();
        scratch.batch = b;
    }
}

/// Bit `i`: byte `i` of `chunk` (at most 64 bytes) is an ASCII upper-case letter.
#[inline]
fn upper_mask(chunk: &[u8]) -> u64 {
    let mut tail = [0u8; 64];
    digits::upper(digits::whole_block(chunk, &mut tail))
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
