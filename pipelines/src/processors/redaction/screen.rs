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

/// Bytes in a row that every match holds: at least `digits` ASCII digits one after another somewhere,
/// and `uppers` ASCII upper-case letters. `[A-Z]{2}[0-9]{2}` (an IBAN) gives two of each, `[0-9]{7}-?[A-Z]`
/// (a DNI) seven digits; an ISO timestamp (`2024-05-13T14:25:36.123Z`) holds four digits in a row and
/// one letter, so neither can match it. Like the byte sets, rows are read off the parsed pattern and are
/// necessary by construction: every part the derivation does not follow counts as a row of none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Rows {
    pub digits: usize,
    pub uppers: usize,
}

impl Rows {
    /// Whether a value whose longest rows are `digits` and `uppers` long holds these rows.
    pub(crate) fn held(&self, (digits, uppers): (usize, usize)) -> bool {
        self.digits <= digits && self.uppers <= uppers
    }
}

pub(crate) fn required_rows(hir: &Hir) -> Rows {
    let digits = row_of(hir, &|b| b.is_ascii_digit()).inner;
    let uppers = row_of(hir, &|b| b.is_ascii_uppercase()).inner;
    Rows { digits, uppers }
}

/// What every match of a part holds of bytes in a class `C`, as lower bounds: whether the part is all
/// `C` (then `len` is its shortest length), the row it starts and ends with, and its longest row.
#[derive(Clone, Copy)]
struct Row {
    all: bool,
    len: usize,
    prefix: usize,
    suffix: usize,
    inner: usize,
}

impl Row {
    /// A part of `n` bytes all in the class (zero: a look-around or an empty match, which does not
    /// break a row).
    fn all(n: usize) -> Row {
        Row {
            all: true,
            len: n,
            prefix: n,
            suffix: n,
            inner: n,
        }
    }

    const NONE: Row = Row {
        all: false,
        len: 0,
        prefix: 0,
        suffix: 0,
        inner: 0,
    };

    fn then(self, next: Row) -> Row {
        Row {
            all: self.all && next.all,
            len: self.len + next.len,
            prefix: if self.all {
                self.len + next.prefix
            } else {
                self.prefix
            },
            suffix: if next.all {
                self.suffix + next.len
            } else {
                next.suffix
            },
            inner: self.inner.max(next.inner).max(self.suffix + next.prefix),
        }
    }

    fn or(self, other: Row) -> Row {
        Row {
            all: self.all && other.all,
            len: self.len.min(other.len),
            prefix: self.prefix.min(other.prefix),
            suffix: self.suffix.min(other.suffix),
            inner: self.inner.min(other.inner),
        }
    }
}

fn row_of(hir: &Hir, in_class: &dyn Fn(u8) -> bool) -> Row {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Row::all(0),
        HirKind::Literal(lit) => lit
            .0
            .iter()
            .map(|&b| if in_class(b) { Row::all(1) } else { Row::NONE })
            .fold(Row::all(0), Row::then),
        HirKind::Class(class) => match class_set(class) {
            Some(set) if set.len() > 0 && set.bytes().all(in_class) => Row::all(1),
            _ => Row::NONE,
        },
        HirKind::Repetition(rep) => {
            let sub = row_of(&rep.sub, in_class);
            match (rep.min, sub.all) {
                // Absent or all in the class: a row goes on through it.
                (0, true) => Row::all(0),
                (0, false) => Row::NONE,
                (min, true) => Row::all(sub.len.saturating_mul(min as usize)),
                // Repeats of a part that is not all in the class: at least one copy's rows (a row
                // across two copies is not counted, which only makes the bound lower).
                (_, false) => sub,
            }
        }
        HirKind::Capture(cap) => row_of(&cap.sub, in_class),
        HirKind::Concat(parts) => parts
            .iter()
            .map(|p| row_of(p, in_class))
            .fold(Row::all(0), Row::then),
        HirKind::Alternation(branches) => branches
            .iter()
            .map(|b| row_of(b, in_class))
            .reduce(Row::or)
            .unwrap_or(Row::NONE),
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

    fn rows(pattern: &str) -> (usize, usize) {
        let hir =
            syntax::parse_with(pattern, &syntax::Config::new().unicode(false).utf8(false)).unwrap();
        let r = required_rows(&hir);
        (r.digits, r.uppers)
    }

    #[test]
    fn rows_come_from_what_every_match_holds_in_a_row() {
        // The shipped IBAN, NINO, DNI and SSN patterns.
        assert_eq!(rows(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b"), (2, 2));
        assert_eq!(
            rows(r"\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]\b"),
            (2, 2)
        );
        assert_eq!(rows(r"\b[XYZ0-9][0-9]{7}-?[A-Z]\b"), (7, 1));
        assert_eq!(
            rows(r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b|\b[0-9]{3} [0-9]{2} [0-9]{4}\b"),
            (4, 0)
        );
        // Rows go on through looks, captures, optional parts of the class and literals.
        assert_eq!(rows(r"1\b(2)[0-9]?3"), (3, 0));
        assert_eq!(rows("AB[0-9]{2,}CD"), (2, 2));
        // An optional part of another class breaks a row, a mandatory one too.
        assert_eq!(rows("[0-9]{3}-?[0-9]{3}"), (3, 0));
        assert_eq!(rows("(?:[0-9][ -]?){12,18}[0-9]"), (1, 0));
        // Case-insensitive letters are no upper-case row; a branch without a row gives none.
        assert_eq!(rows("(?i)ABC"), (0, 0));
        assert_eq!(rows("[0-9]{5}|x"), (0, 0));
        assert_eq!(rows("[0-9]{5}|[0-9]{3}x"), (3, 0));
        // Repeats of a part with a row inside keep it; rows across copies are not counted.
        assert_eq!(rows("(?:x[0-9]{2})+"), (2, 0));
        assert_eq!(rows("(?:[A-Z][0-9]){3}"), (1, 1));
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
