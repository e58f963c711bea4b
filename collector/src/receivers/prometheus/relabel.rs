//! Relabeling, as Prometheus does it: `relabel_configs` on each target's labels before it is scraped,
//! `metric_relabel_configs` on each scraped sample's labels (`__name__` included) before conversion.
//!
//! Steps run in order on a sorted label set; a `keep` / `drop` (or `keepequal` / `dropequal`) that
//! rejects the set ends the run with "dropped". Regexes are anchored at both ends; `replacement` and a
//! templated `target_label` expand `$1`, `${1}` and `$name` as Go's `Regexp.Expand` does (the `regex`
//! crate's `Captures::expand` has the same syntax). Setting a label to the empty string removes it.
//! `hashmod` takes the MD5 of the joined source values, reads its last 8 bytes as a big-endian integer
//! and keeps the remainder, so a target lands in the same shard as in Prometheus.

use md5::{Digest, Md5};
use outpost_config::{RelabelAction, RelabelConfig};
use regex::Regex;

use crate::prom::to_otlp::Labels;

/// One compiled step.
#[derive(Debug, Clone)]
struct Step {
    source_labels: Vec<String>,
    separator: String,
    target_label: String,
    regex: Regex,
    modulus: u64,
    replacement: String,
    action: RelabelAction,
}

/// A compiled list of relabel steps.
#[derive(Debug, Clone, Default)]
pub struct Relabeler {
    steps: Vec<Step>,
}

impl Relabeler {
    /// Compiles `configs`; they were validated at load, so an error here names the step for the log.
    pub fn new(configs: &[RelabelConfig]) -> Result<Self, String> {
        let mut steps = Vec::with_capacity(configs.len());
        for (i, c) in configs.iter().enumerate() {
            let regex = Regex::new(&format!("^(?:{})$", c.regex))
                .map_err(|e| format!("relabel step {i}: regex '{}': {e}", c.regex))?;
            steps.push(Step {
                source_labels: c.source_labels.clone(),
                separator: c.separator.clone(),
                target_label: c.target_label.clone().unwrap_or_default(),
                regex,
                modulus: c.modulus.unwrap_or(0),
                replacement: c.replacement.clone(),
                action: c.action,
            });
        }
        Ok(Self { steps })
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Runs every step on `labels` (sorted by name). Returns false when the set is dropped.
    pub fn apply(&self, labels: &mut Labels) -> bool {
        for step in &self.steps {
            if !step.apply(labels) {
                return false;
            }
        }
        true
    }
}

impl Step {
    fn source_value(&self, labels: &Labels) -> String {
        let mut out = String::new();
        for (i, name) in self.source_labels.iter().enumerate() {
            if i > 0 {
                out.push_str(&self.separator);
            }
            out.push_str(get(labels, name).unwrap_or(""));
        }
        out
    }

    fn apply(&self, labels: &mut Labels) -> bool {
        match self.action {
            RelabelAction::Keep => self.regex.is_match(&self.source_value(labels)),
            RelabelAction::Drop => !self.regex.is_match(&self.source_value(labels)),
            RelabelAction::KeepEqual => {
                get(labels, &self.target_label).unwrap_or("") == self.source_value(labels)
            }
            RelabelAction::DropEqual => {
                get(labels, &self.target_label).unwrap_or("") != self.source_value(labels)
            }
            RelabelAction::Replace => {
                let value = self.source_value(labels);
                let Some(caps) = self.regex.captures(&value) else {
                    return true;
                };
                let mut target = String::new();
                caps.expand(&self.target_label, &mut target);
                if !valid_label_name(&target) {
                    return true;
                }
                let mut result = String::new();
                caps.expand(&self.replacement, &mut result);
                set(labels, &target, result);
                true
            }
            RelabelAction::Lowercase => {
                let v = self.source_value(labels).to_lowercase();
                set(labels, &self.target_label.clone(), v);
                true
            }
            RelabelAction::Uppercase => {
                let v = self.source_value(labels).to_uppercase();
                set(labels, &self.target_label.clone(), v);
                true
            }
            RelabelAction::HashMod => {
                let digest = Md5::digest(self.source_value(labels).as_bytes());
                let mut tail = [0u8; 8];
                tail.copy_from_slice(&digest[8..16]);
                let m = u64::from_be_bytes(tail) % self.modulus.max(1);
                set(labels, &self.target_label.clone(), m.to_string());
                true
            }
            RelabelAction::LabelMap => {
                let mut added: Vec<(String, String)> = Vec::new();
                for (name, value) in labels.iter() {
                    if self.regex.is_match(name) {
                        let new_name = self
                            .regex
                            .replace(name, self.replacement.as_str())
                            .into_owned();
                        added.push((new_name, value.clone()));
                    }
                }
                for (name, value) in added {
                    set(labels, &name, value);
                }
                true
            }
            RelabelAction::LabelDrop => {
                labels.retain(|(name, _)| !self.regex.is_match(name));
                true
            }
            RelabelAction::LabelKeep => {
                labels.retain(|(name, _)| self.regex.is_match(name));
                true
            }
        }
    }
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The value of `name` in the sorted `labels`.
pub fn get<'a>(labels: &'a Labels, name: &str) -> Option<&'a str> {
    labels
        .binary_search_by(|(k, _)| k.as_str().cmp(name))
        .ok()
        .map(|i| labels[i].1.as_str())
}

/// Sets `name` to `value` in the sorted `labels`; an empty value removes the label.
pub fn set(labels: &mut Labels, name: &str, value: String) {
    match labels.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
        Ok(i) if value.is_empty() => {
            labels.remove(i);
        }
        Ok(i) => labels[i].1 = value,
        Err(_) if value.is_empty() => {}
        Err(i) => labels.insert(i, (name.to_owned(), value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(action: RelabelAction) -> RelabelConfig {
        RelabelConfig {
            source_labels: vec![],
            separator: ";".into(),
            target_label: None,
            regex: "(.*)".into(),
            modulus: None,
            replacement: "$1".into(),
            action,
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        let mut l: Labels = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.sort();
        l
    }

    fn run(configs: Vec<RelabelConfig>, input: &[(&str, &str)]) -> Option<Labels> {
        let mut l = labels(input);
        Relabeler::new(&configs).unwrap().apply(&mut l).then_some(l)
    }

    #[test]
    fn replace_joins_sources_and_expands_groups() {
        let c = RelabelConfig {
            source_labels: vec!["__address__".into(), "zone".into()],
            target_label: Some("instance".into()),
            regex: "([^:]+):\\d+;(.*)".into(),
            replacement: "${1}-$2".into(),
            ..step(RelabelAction::Replace)
        };
        assert_eq!(
            run(
                vec![c.clone()],
                &[("__address__", "10.0.0.1:9100"), ("zone", "eu")]
            ),
            Some(labels(&[
                ("__address__", "10.0.0.1:9100"),
                ("instance", "10.0.0.1-eu"),
                ("zone", "eu")
            ]))
        );
        // No match: unchanged. The regex is anchored: a partial match is no match.
        assert_eq!(
            run(vec![c], &[("__address__", "x10.0.0.1"), ("zone", "eu")]),
            Some(labels(&[("__address__", "x10.0.0.1"), ("zone", "eu")]))
        );
        // An empty result removes the target label.
        let clear = RelabelConfig {
            source_labels: vec!["nothing".into()],
            target_label: Some("env".into()),
            ..step(RelabelAction::Replace)
        };
        assert_eq!(run(vec![clear], &[("env", "prod")]), Some(labels(&[])));
    }

    #[test]
    fn keep_and_drop_end_the_run() {
        let keep = RelabelConfig {
            source_labels: vec!["__name__".into()],
            regex: "node_(cpu|memory)_.*".into(),
            ..step(RelabelAction::Keep)
        };
        assert!(run(
            vec![keep.clone()],
            &[("__name__", "node_cpu_seconds_total")]
        )
        .is_some());
        assert!(run(vec![keep], &[("__name__", "node_disk_io")]).is_none());
        let drop = RelabelConfig {
            source_labels: vec!["mode".into()],
            regex: "idle".into(),
            ..step(RelabelAction::Drop)
        };
        assert!(run(vec![drop.clone()], &[("mode", "idle")]).is_none());
        assert!(run(vec![drop], &[("mode", "user")]).is_some());
        let equal = RelabelConfig {
            source_labels: vec!["a".into()],
            target_label: Some("b".into()),
            ..step(RelabelAction::KeepEqual)
        };
        assert!(run(vec![equal.clone()], &[("a", "1"), ("b", "1")]).is_some());
        assert!(run(vec![equal], &[("a", "1"), ("b", "2")]).is_none());
    }

    #[test]
    fn label_name_actions() {
        let map = RelabelConfig {
            regex: "__meta_(.+)".into(),
            ..step(RelabelAction::LabelMap)
        };
        assert_eq!(
            run(vec![map], &[("__meta_rack", "r1"), ("x", "1")]),
            Some(labels(&[("__meta_rack", "r1"), ("rack", "r1"), ("x", "1")]))
        );
        let drop = RelabelConfig {
            regex: "tmp_.*".into(),
            ..step(RelabelAction::LabelDrop)
        };
        assert_eq!(
            run(vec![drop], &[("tmp_a", "1"), ("keep", "2")]),
            Some(labels(&[("keep", "2")]))
        );
        let keep = RelabelConfig {
            regex: "__name__|job".into(),
            ..step(RelabelAction::LabelKeep)
        };
        assert_eq!(
            run(vec![keep], &[("__name__", "m"), ("job", "j"), ("pod", "p")]),
            Some(labels(&[("__name__", "m"), ("job", "j")]))
        );
        let lower = RelabelConfig {
            source_labels: vec!["Zone".into()],
            target_label: Some("zone".into()),
            ..step(RelabelAction::Lowercase)
        };
        assert_eq!(
            run(vec![lower], &[("Zone", "EU-West")]),
            Some(labels(&[("Zone", "EU-West"), ("zone", "eu-west")]))
        );
    }

    #[test]
    fn hashmod_matches_prometheus() {
        // Prometheus's own relabel test: "baz" with modulus 1000 lands in shard 976.
        let c = RelabelConfig {
            source_labels: vec!["c".into()],
            target_label: Some("d".into()),
            modulus: Some(1000),
            ..step(RelabelAction::HashMod)
        };
        let out = run(vec![c], &[("a", "foo"), ("c", "baz")]).unwrap();
        assert_eq!(get(&out, "d"), Some("976"));
    }
}
