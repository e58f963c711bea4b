//! The literal gate: which rules have one of their prefilter literals (`bearer`, `eyJ`, `api_key`, …) in
//! a value, ASCII case-insensitively, and nothing else.
//!
//! Case-insensitive literals keep aho-corasick off its SIMD searcher (it walks a byte-at-a-time DFA),
//! and an overlapping walk over keywords that start with common letters seldom returns to the start
//! state where a prefilter could skip ahead. So the value is lower-cased into scratch memory (a
//! vectorised copy) and searched for the lower-cased literals with a packed (Teddy) searcher, which
//! scans 16 or 32 bytes per step and reports the leftmost-longest literal. The search resumes one byte
//! after each hit's start, so every position where some literal starts is reported once, with the
//! longest literal there; every other literal starting there is a prefix of that one, so each literal
//! carries the rules of its literal prefixes too. The result is exactly the set of rules with a
//! literal in the value, as an overlapping search would give.
//!
//! The buffer is padded with a byte no literal contains so even a short value is searched by Teddy
//! itself (it needs a minimum haystack length) rather than its slower fallback. When Teddy cannot be
//! built (more than 64 literals, or one-byte literals among many) an overlapping Aho-Corasick search
//! over the same lower-cased copy is used instead.

use aho_corasick::packed::{self, MatchKind as PackedKind};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind, Span};

enum Search {
    Packed { searcher: packed::Searcher, pad: u8 },
    Overlapping(AhoCorasick),
}

pub(crate) struct Literals {
    search: Search,
    /// For each literal, the rules it lets through.
    rules: Vec<Vec<u32>>,
    /// For long texts (batches), the same literals split by length, one searcher for those of three
    /// bytes or less and one for the longer, each with the rules of its literals: Teddy compares as
    /// many leading bytes as its shortest literal has (at most four), so the long literals searched
    /// apart get a four-byte fingerprint and far fewer false candidates to verify. Empty: `search`.
    split: Vec<(packed::Searcher, Vec<Vec<u32>>)>,
    /// What [`Literals::pad`] appends.
    padding: Option<(u8, usize)>,
}

impl Literals {
    /// `literals`: each distinct lower-case literal with the rules that name it.
    pub(crate) fn new(literals: Vec<(String, Vec<u32>)>) -> Result<Self, String> {
        let pad = (0..=255u8).find(|b| !literals.iter().any(|(l, _)| l.as_bytes().contains(b)));
        let packed = pad.and_then(|pad| {
            let mut builder = packed::Config::new()
                .match_kind(PackedKind::LeftmostLongest)
                .builder();
            for (lit, _) in &literals {
                builder.add(lit);
            }
            Some(Search::Packed {
                searcher: builder.build()?,
                pad,
            })
        });
        let mut split = Vec::new();
        if packed.is_some() {
            let (short, long): (Vec<usize>, Vec<usize>) =
                (0..literals.len()).partition(|&i| literals[i].0.len() <= 3);
            for group in [short, long] {
                if group.is_empty() {
                    continue;
                }
                let mut builder = packed::Config::new()
                    .match_kind(PackedKind::LeftmostLongest)
                    .builder();
                for &i in &group {
                    builder.add(&literals[i].0);
                }
                let Some(searcher) = builder.build() else {
                    split.clear();
                    break;
                };
                let rules = group
                    .iter()
                    .map(|&i| prefix_rules(&literals, &literals[i].0))
                    .collect();
                split.push((searcher, rules));
            }
            // One group alone is what `search` already is.
            if split.len() < 2 {
                split.clear();
            }
        }
        let (search, rules) = match packed {
            Some(search) => {
                // A literal's hit stands for every literal that is a prefix of it.
                let rules = literals
                    .iter()
                    .map(|(lit, _)| prefix_rules(&literals, lit))
                    .collect();
                (search, rules)
            }
            None => {
                let ac = AhoCorasickBuilder::new()
                    .match_kind(MatchKind::Standard)
                    .kind(Some(AhoCorasickKind::DFA))
                    .build(literals.iter().map(|(l, _)| l))
                    .map_err(|e| format!("cannot build the literal prefilter: {e}"))?;
                let rules = literals.into_iter().map(|(_, r)| r).collect();
                (Search::Overlapping(ac), rules)
            }
        };
        let padding = match &search {
            Search::Packed { searcher, pad } => Some((
                *pad,
                split
                    .iter()
                    .map(|(s, _)| s.minimum_len())
                    .chain([searcher.minimum_len()])
                    .max()
                    .unwrap_or(0),
            )),
            Search::Overlapping(_) => None,
        };
        Ok(Self {
            search,
            rules,
            split,
            padding,
        })
    }

    /// Calls `hit` with every rule that has a literal in `hay` (a rule may be reported more than once).
    /// `lower` is scratch memory.
    pub(crate) fn for_each_rule(&self, hay: &[u8], lower: &mut Vec<u8>, mut hit: impl FnMut(u32)) {
        lower.clear();
        lower.extend_from_slice(hay);
        lower.make_ascii_lowercase();
        self.pad(lower);
        self.for_each_hit(lower, hay.len(), |_, rules| {
            for &r in rules {
                hit(r);
            }
        });
    }

    /// Appends what [`Literals::for_each_hit`] needs after the text it searches.
    pub(crate) fn pad(&self, lower: &mut Vec<u8>) {
        if let Some((pad, len)) = self.padding {
            lower.resize(lower.len() + len, pad);
        }
    }

    /// Calls `hit(start, rules)` for every literal found in `lower[..len]` (ASCII lower-cased, then
    /// padded by [`Literals::pad`]), in order of `start`: `rules` are the rules that literal lets
    /// through. Every position where some literal starts is reported once (with the longest literal
    /// there, whose rules include those of its literal prefixes), so over text made of several values
    /// each value's reported rules are exactly the rules with a literal in it, provided the values are
    /// joined by a byte no literal holds.
    pub(crate) fn for_each_hit(
        &self,
        lower: &[u8],
        len: usize,
        mut hit: impl FnMut(usize, &[u32]),
    ) {
        match &self.search {
            Search::Packed { searcher, .. } => {
                search_packed(searcher, &self.rules, lower, len, &mut hit);
            }
            Search::Overlapping(ac) => {
                for m in ac.find_overlapping_iter(&lower[..len]) {
                    hit(m.start(), &self.rules[m.pattern().as_usize()]);
                }
            }
        }
    }

    /// [`Literals::for_each_hit`] for long texts: the literals split by length (see `split`), so
    /// hits come in order of position from each searcher in turn.
    pub(crate) fn for_each_hit_long(
        &self,
        lower: &[u8],
        len: usize,
        mut hit: impl FnMut(usize, &[u32]),
    ) {
        if self.split.is_empty() {
            return self.for_each_hit(lower, len, hit);
        }
        for (searcher, rules) in &self.split {
            search_packed(searcher, rules, lower, len, &mut hit);
        }
    }

    #[cfg(test)]
    fn is_packed(&self) -> bool {
        matches!(self.search, Search::Packed { .. })
    }
}

/// The rules of every literal that is a prefix of `lit` (itself included): a leftmost-longest hit on
/// `lit` stands for them all.
fn prefix_rules(literals: &[(String, Vec<u32>)], lit: &str) -> Vec<u32> {
    let mut rules: Vec<u32> = literals
        .iter()
        .filter(|(other, _)| lit.starts_with(other.as_str()))
        .flat_map(|(_, r)| r.iter().copied())
        .collect();
    rules.sort_unstable();
    rules.dedup();
    rules
}

/// Every start of a literal of `searcher` in `lower[..len]` (padded), leftmost-longest, resuming one
/// byte after each hit's start.
fn search_packed(
    searcher: &packed::Searcher,
    rules: &[Vec<u32>],
    lower: &[u8],
    len: usize,
    hit: &mut impl FnMut(usize, &[u32]),
) {
    let end = lower.len();
    let mut at = 0;
    // No literal holds the padding, so every hit starts inside the text.
    while at < len {
        let Some(m) = searcher.find_in(lower, Span::from(at..end)) else {
            break;
        };
        hit(m.start(), &rules[m.pattern().as_usize()]);
        at = m.start() + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules_in(lits: &Literals, hay: &str) -> Vec<u32> {
        let mut out = Vec::new();
        lits.for_each_rule(hay.as_bytes(), &mut Vec::new(), |r| out.push(r));
        out.sort_unstable();
        out.dedup();
        out
    }

    fn build(list: &[(&str, u32)]) -> Literals {
        Literals::new(
            list.iter()
                .map(|(l, r)| (l.to_string(), vec![*r]))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn every_rule_with_a_literal_is_reported_whatever_the_case_and_overlaps() {
        let lits = build(&[
            ("access", 0),
            ("access_token=", 1),
            ("token", 2),
            ("bearer", 3),
            ("eyj", 4),
        ]);
        assert!(lits.is_packed());
        assert_eq!(rules_in(&lits, "ACCESS_TOKEN=x"), [0, 1, 2]);
        assert_eq!(rules_in(&lits, "Authorization: Bearer eyJx"), [3, 4]);
        assert_eq!(rules_in(&lits, "tok en"), Vec::<u32>::new());
        assert_eq!(rules_in(&lits, ""), Vec::<u32>::new());
        assert_eq!(
            rules_in(&lits, "x_access"),
            [0],
            "a literal at the very end"
        );
    }

    #[test]
    fn many_literals_fall_back_to_an_overlapping_search() {
        let many: Vec<(String, u32)> = (0..100).map(|i| (format!("lit{i:03}"), i)).collect();
        let lits =
            Literals::new(many.iter().map(|(l, r)| (l.clone(), vec![*r])).collect()).unwrap();
        assert!(!lits.is_packed());
        assert_eq!(rules_in(&lits, "xLIT007lit099"), [7, 99]);
    }
}
