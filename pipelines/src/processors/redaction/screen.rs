//! The byte screen: which rules cannot match a value, decided from the bytes it contains.
//!
//! Every match of a pattern contains at least one byte of certain sets, read off the pattern itself:
//! the email rule's matches all hold `@`, a Bearer value holds an ASCII space or tab (`\s`), a key=value
//! secret holds `:` or `=`, an IBAN an upper-case letter. [`required_sets`] derives such sets from the
//! parsed pattern (the same parse the rule's regex is compiled from), so they are necessary conditions
//! by construction, never guesses: a value that lacks a byte of one of them holds no match.
//!
//! The engine gives each of the most selective sets (at most 64) one bit; a 256-entry table maps a byte to
//! the bits of the sets that contain it, and one OR-fold of the table over a value ([`Screen::present`])
//! says which sets occur in it. A rule whose sets are not all present is skipped before anything else
//! runs for it. On the ~98% of telemetry values that hold no PII this one table pass rejects most rules
//! (a lower-case UUID holds no upper-case letter an IBAN or a DNI needs, a route holds no `:` or `=`).

use regex_syntax::hir::{Class, Hir, HirKind};

/// A set of byte values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ByteSet([u64; 4]);

impl ByteSet {
    const EMPTY: ByteSet = ByteSet([0; 4]);

    fn add(&mut self, b: u8) {
        self.0[usize::from(b / 64)] |= 1 << (b % 64);
    }

    fn add_range(&mut self, lo: u8, hi: u8) {
        for b in lo..=hi {
            self.add(b);
        }
    }

    fn union(mut self, other: ByteSet) -> ByteSet {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a |= b;
        }
        self
    }

    pub(crate) fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b / 64)] & (1 << (b % 64)) != 0
    }

    pub(crate) fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub(crate) fn bytes(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=255u8).filter(|&b| self.contains(b))
    }

    pub(crate) fn of_literal_first_bytes<'a>(literals: impl Iterator<Item = &'a str>) -> ByteSet {
        let mut set = ByteSet::EMPTY;
        for lit in literals {
            if let Some(&b) = lit.as_bytes().first() {
                set.add(b.to_ascii_lowercase());
                set.add(b.to_ascii_uppercase());
            }
        }
        set
    }

    /// How often values are expected to contain a byte of the set: lower is more selective. A rough
    /// frequency of each byte in telemetry text (identifiers, URLs, messages), only used to rank sets.
    fn commonness(&self) -> u32 {
        self.bytes()
            .map(|b| match b {
                b'a'..=b'z' => 8,
                b' ' => 8,
                b'0'..=b'9' => 6,
                b'A'..=b'Z' => 2,
                b'.' | b'-' | b'/' | b'_' => 4,
                b':' | b'=' | b',' => 2,
                0x21..=0x7e => 1,
                _ => 0,
            })
            .sum()
    }
}

/// Byte sets each of which every match of `hir` contains a byte of (possibly none). Parts the
/// derivation does not understand (classes with non-ASCII characters) contribute nothing, which only
/// makes the screen weaker, never wrong.
pub(crate) fn required_sets(hir: &Hir) -> Vec<ByteSet> {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Vec::new(),
        HirKind::Literal(lit) => {
            let mut sets: Vec<ByteSet> = Vec::new();
            for &b in lit.0.iter() {
                let mut s = ByteSet::EMPTY;
                s.add(b);
                if !sets.contains(&s) {
                    sets.push(s);
                }
            }
            sets
        }
        HirKind::Class(class) => class_set(class).into_iter().collect(),
        HirKind::Repetition(rep) if rep.min > 0 => required_sets(&rep.sub),
        HirKind::Repetition(_) => Vec::new(),
        HirKind::Capture(cap) => required_sets(&cap.sub),
        HirKind::Concat(parts) => {
            let mut sets: Vec<ByteSet> = Vec::new();
            for s in parts.iter().flat_map(required_sets) {
                if !sets.contains(&s) {
                    sets.push(s);
                }
            }
            sets
        }
        HirKind::Alternation(branches) => {
            // Every match goes through one branch, so the union of one required set per branch is
            // required; the most selective set of each branch gives the most selective union.
            let mut union = ByteSet::EMPTY;
            for branch in branches {
                match required_sets(branch)
                    .into_iter()
                    .min_by_key(ByteSet::commonness)
                {
                    Some(s) => union = union.union(s),
                    None => return Vec::new(),
                }
            }
            vec![union]
        }
    }
}

fn class_set(class: &Class) -> Option<ByteSet> {
    let mut set = ByteSet::EMPTY;
    match class {
        Class::Bytes(c) => {
            for r in c.iter() {
                set.add_range(r.start(), r.end());
            }
        }
        Class::Unicode(c) => {
            for r in c.iter() {
                let (lo, hi) = (u32::from(r.start()), u32::from(r.end()));
                // A non-ASCII character is several bytes: not a single-byte condition.
                if hi > 0x7f {
                    return None;
                }
                set.add_range(lo as u8, hi as u8);
            }
        }
    }
    Some(set)
}

/// The table and the bits: built once per engine from every rule's sets.
pub(crate) struct Screen {
    /// For each byte, the bits of the selected sets that contain it.
    table: Box<[u64; 256]>,
}

impl Screen {
    /// Selects the (at most 64) most selective distinct sets among `rules`' and returns the screen with,
    /// for each rule, the bits it needs present. Sets that contain every byte are useless and skipped.
    pub(crate) fn build(rules: &[Vec<ByteSet>]) -> (Screen, Vec<u64>) {
        let mut distinct: Vec<ByteSet> = Vec::new();
        for s in rules.iter().flatten() {
            if s.0 != [u64::MAX; 4] && !distinct.contains(s) {
                distinct.push(*s);
            }
        }
        distinct.sort_by_key(ByteSet::commonness);
        distinct.truncate(64);
        let mut table = Box::new([0u64; 256]);
        for (bit, set) in distinct.iter().enumerate() {
            for b in set.bytes() {
                table[usize::from(b)] |= 1 << bit;
            }
        }
        let needs = rules
            .iter()
            .map(|sets| {
                sets.iter()
                    .filter_map(|s| distinct.iter().position(|d| d == s))
                    .fold(0u64, |need, bit| need | 1 << bit)
            })
            .collect();
        (Screen { table }, needs)
    }

    /// The bits of the sets that have a byte in `hay`.
    #[inline]
    pub(crate) fn present(&self, hay: &[u8]) -> u64 {
        let t = &*self.table;
        // Four accumulators: the ORs of one chain would wait on each other.
        let mut acc = [0u64; 4];
        let mut chunks = hay.chunks_exact(4);
        for c in &mut chunks {
            acc[0] |= t[usize::from(c[0])];
            acc[1] |= t[usize::from(c[1])];
            acc[2] |= t[usize::from(c[2])];
            acc[3] |= t[usize::from(c[3])];
        }
        for &b in chunks.remainder() {
            acc[0] |= t[usize::from(b)];
        }
        acc[0] | acc[1] | acc[2] | acc[3]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex_automata::util::syntax;

    fn sets(pattern: &str) -> Vec<String> {
        let hir =
            syntax::parse_with(pattern, &syntax::Config::new().unicode(false).utf8(false)).unwrap();
        required_sets(&hir)
            .iter()
            .map(|s| s.bytes().map(char::from).collect())
            .collect()
    }

    #[test]
    fn sets_come_from_what_every_match_holds() {
        assert_eq!(sets("a@b"), ["a", "@", "b"]);
        assert_eq!(sets("x?[:=]y*"), [":="]);
        // One branch without a requirement makes the alternation require nothing.
        assert_eq!(sets("a|b?"), Vec::<String>::new());
        // Per branch its most selective set: `-` rather than `a`, `b` and ` ` tie.
        assert_eq!(sets("(?:-a|b )"), ["-b"]);
        assert_eq!(sets("(?i)k"), ["Kk"]);
        assert_eq!(sets(r"\bz{2,}$"), ["z"]);
        // Unicode classes reaching beyond ASCII give nothing.
        assert_eq!(sets("(?u:é)+x"), ["\u{c3}", "\u{a9}", "x"]);
        assert_eq!(sets(r"(?u:\w)x"), ["x"]);
    }

    #[test]
    fn a_value_passes_only_with_every_needed_set() {
        let parse = |p: &str| {
            let hir =
                syntax::parse_with(p, &syntax::Config::new().unicode(false).utf8(false)).unwrap();
            required_sets(&hir)
        };
        let (screen, needs) = Screen::build(&[parse("[a-z]+@[a-z]+"), parse("k[:=]v")]);
        let passes = |rule: usize, hay: &str| needs[rule] & !screen.present(hay.as_bytes()) == 0;
        assert!(passes(0, "me@x"));
        assert!(!passes(0, "me at x"));
        assert!(passes(1, "xk=vx"));
        assert!(
            passes(1, "v k :"),
            "a necessary condition, not a sufficient one"
        );
        assert!(!passes(1, "k v"));
        assert!(passes(0, "a@") && !passes(0, "@") && !passes(0, ""));
    }
}
