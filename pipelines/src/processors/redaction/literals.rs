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
        let (search, rules) = match packed {
            Some(search) => {
                // A literal's hit stands for every literal that is a prefix of it.
                let rules = literals
                    .iter()
                    .map(|(lit, _)| {
                        let mut rules: Vec<u32> = literals
                            .iter()
                            .filter(|(other, _)| lit.starts_with(other.as_str()))
                            .flat_map(|(_, r)| r.iter().copied())
                            .collect();
                        rules.sort_unstable();
                        rules.dedup();
                        rules
                    })
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
        Ok(Self { search, rules })
    }

    /// Calls `hit` with every rule that has a literal in `hay` (a rule may be reported more than once).
    /// `lower` is scratch memory.
    pub(crate) fn for_each_rule(&self, hay: &[u8], lower: &mut Vec<u8>, mut hit: impl FnMut(u32)) {
        lower.clear();
        lower.extend_from_slice(hay);
        lower.make_ascii_lowercase();
        match &self.search {
            Search::Packed { searcher, pad } => {
                let len = lower.len();
                lower.resize(len + searcher.minimum_len(), *pad);
                let end = lower.len();
                let mut at = 0;
                // No literal holds the padding, so every hit starts inside the value.
                while at < len {
                    let Some(m) = searcher.find_in(&lower[..], Span::from(at..end)) else {
                        break;
                    };
                    for &r in &self.rules[m.pattern().as_usize()] {
                        hit(r);
                    }
                    at = m.start() + 1;
                }
            }
            Search::Overlapping(ac) => {
                for m in ac.find_overlapping_iter(&lower[..]) {
                    for &r in &self.rules[m.pattern().as_usize()] {
                        hit(r);
                    }
                }
            }
        }
    }

    #[cfg(test)]
    fn is_packed(&self) -> bool {
        matches!(self.search, Search::Packed { .. })
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
