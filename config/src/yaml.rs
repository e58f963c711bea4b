//! YAML text → a small tree that remembers the line and column of every node and every mapping key.
//!
//! saphyr-parser's event stream is folded into the tree with an explicit stack rather than recursion, so
//! no input can overflow the call stack; nesting is also capped at [`MAX_DEPTH`] because every later pass
//! over the tree is recursive. Aliases are resolved to copies of their anchored node (positions stay those
//! of the anchor, where the text is), with a budget on the copies so an alias "billion laughs" cannot
//! exhaust memory. Merge keys (`<<: *defaults`) are applied as YAML 1.1 and the OpenTelemetry Collector
//! (go-yaml) define them: keys written in the mapping win over merged ones.
//!
//! A syntax error stops the parse and is returned alone; problems the parser lets through (a key defined
//! twice, a non-scalar key, a second document) are returned as a list and the tree is still produced.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// Deepest nesting accepted; real configs stay under 10.
pub(crate) const MAX_DEPTH: usize = 64;
/// Most nodes alias expansion may create in one document.
const MAX_ALIAS_NODES: usize = 100_000;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    fn of(span: &Span) -> Self {
        Pos {
            line: span.start.line(),
            column: span.start.col() + 1,
        }
    }
}

/// How a scalar was written; only plain scalars have their type resolved (`4317` is a number, `"4317"`
/// a string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    Plain,
    Quoted,
    Block,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scalar {
    pub text: String,
    pub style: Style,
    /// `!!str`, `!!int`, … for the core schema's tags, `!` for the non-specific tag, otherwise as written.
    pub tag: Option<String>,
    /// The scalar's value after substitution and type resolution; set by [`crate::source`].
    pub value: serde_json::Value,
    /// Substitution failed (the error is already reported); later passes skip this scalar.
    pub poisoned: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Scalar(Scalar),
    Sequence(Vec<Node>),
    Mapping(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub kind: Kind,
    pub pos: Pos,
}

impl Node {
    /// A null scalar: `key:` with nothing after it, `~` or `null`.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar(s) if s.value.is_null() && !s.poisoned)
    }

    /// A scalar whose substitution failed; its error is already reported.
    pub fn is_poisoned(&self) -> bool {
        matches!(&self.kind, Kind::Scalar(s) if s.poisoned)
    }

    pub fn as_mapping(&self) -> Option<&[Entry]> {
        match &self.kind {
            Kind::Mapping(entries) => Some(entries),
            _ => None,
        }
    }

    fn count(&self) -> usize {
        match &self.kind {
            Kind::Scalar(_) => 1,
            Kind::Sequence(items) => 1 + items.iter().map(Node::count).sum::<usize>(),
            Kind::Mapping(entries) => 1 + entries.iter().map(|e| e.value.count()).sum::<usize>(),
        }
    }
}

/// A problem in the YAML itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct YamlError {
    pub pos: Pos,
    pub message: String,
}

/// The document's root (None for an empty file) and the problems found. When the list holds a syntax
/// error the root is None.
pub(crate) struct Parsed {
    pub root: Option<Node>,
    pub errors: Vec<YamlError>,
}

enum Frame {
    Sequence {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Mapping {
        pos: Pos,
        anchor: usize,
        entries: Vec<Entry>,
        /// The key read, waiting for its value; `None` in the key slot means a non-scalar key.
        key: Option<(Option<String>, Pos, bool)>,
    },
}

struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    errors: Vec<YamlError>,
    alias_nodes: usize,
    documents: usize,
}

pub(crate) fn parse(text: &str) -> Parsed {
    // saphyr-parser is young and has `unwrap`s on internal invariants; a config loader must answer every
    // input with a diagnostic, so a panic inside the parser is turned into one.
    let result = std::panic::catch_unwind(|| parse_events(text));
    match result {
        Ok(parsed) => parsed,
        Err(_) => Parsed {
            root: None,
            errors: vec![YamlError {
                pos: Pos { line: 1, column: 1 },
                message: "the YAML parser failed on this file; check it with a YAML linter".into(),
            }],
        },
    }
}

fn parse_events(text: &str) -> Parsed {
    let mut b = Builder {
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        errors: Vec::new(),
        alias_nodes: 0,
        documents: 0,
    };
    let mut parser = Parser::new_from_str(text);
    while let Some(event) = parser.next_event() {
        let (event, span) = match event {
            Ok(ev) => ev,
            Err(e) => {
                let m = e.marker();
                return Parsed {
                    root: None,
                    errors: vec![YamlError {
                        pos: Pos {
                            line: m.line().max(1),
                            column: m.col() + 1,
                        },
                        message: format!("invalid YAML: {}", e.info()),
                    }],
                };
            }
        };
        if let Err(fatal) = b.on_event(event, &span) {
            b.errors.push(fatal);
            return Parsed {
                root: None,
                errors: b.errors,
            };
        }
    }
    Parsed {
        root: b.root,
        errors: b.errors,
    }
}

fn tag_name(tag: Option<&saphyr_parser::Tag>) -> Option<String> {
    let tag = tag?;
    Some(if tag.is_yaml_core_schema() {
        format!("!!{}", tag.suffix)
    } else if tag.handle.is_empty() && tag.suffix == "!" {
        "!".to_owned()
    } else {
        tag.to_string()
    })
}

impl Builder {
    /// Errors returned here end the parse (a fatal shape problem); others are pushed and parsing goes on.
    fn on_event(&mut self, event: Event<'_>, span: &Span) -> Result<(), YamlError> {
        let pos = Pos::of(span);
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(YamlError {
                        pos,
                        message:
                            "the file holds more than one YAML document (`---`); put the whole \
                                  configuration in one document"
                                .into(),
                    });
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let tag = tag_name(tag.as_deref());
                let style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => Style::Quoted,
                    ScalarStyle::Literal | ScalarStyle::Folded => Style::Block,
                };
                let node = Node {
                    kind: Kind::Scalar(Scalar {
                        text: text.into_owned(),
                        style,
                        tag,
                        value: serde_json::Value::Null,
                        poisoned: false,
                    }),
                    pos,
                };
                self.complete(node, anchor)?;
            }
            Event::Alias(id) => {
                let Some(node) = self.anchors.get(&id) else {
                    return Err(YamlError {
                        pos,
                        message:
                            "this alias refers to an anchor that encloses it; recursive aliases \
                                  are not supported"
                                .into(),
                    });
                };
                self.alias_nodes += node.count();
                if self.alias_nodes > MAX_ALIAS_NODES {
                    return Err(YamlError {
                        pos,
                        message: format!("aliases expand to more than {MAX_ALIAS_NODES} nodes"),
                    });
                }
                let node = node.clone();
                self.complete(node, 0)?;
            }
            Event::SequenceStart(anchor, tag) => {
                self.check_collection_tag(tag.as_deref(), "!!seq", pos);
                self.open(Frame::Sequence {
                    pos,
                    anchor,
                    items: Vec::new(),
                })?;
            }
            Event::MappingStart(anchor, tag) => {
                self.check_collection_tag(tag.as_deref(), "!!map", pos);
                self.open(Frame::Mapping {
                    pos,
                    anchor,
                    entries: Vec::new(),
                    key: None,
                })?;
            }
            Event::SequenceEnd => {
                if let Some(Frame::Sequence { pos, anchor, items }) = self.stack.pop() {
                    let node = Node {
                        kind: Kind::Sequence(items),
                        pos,
                    };
                    self.complete(node, anchor)?;
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Mapping {
                    pos,
                    anchor,
                    entries,
                    ..
                }) = self.stack.pop()
                {
                    let entries = self.merge(entries);
                    let node = Node {
                        kind: Kind::Mapping(entries),
                        pos,
                    };
                    self.complete(node, anchor)?;
                }
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
        Ok(())
    }

    fn check_collection_tag(&mut self, tag: Option<&saphyr_parser::Tag>, expected: &str, pos: Pos) {
        if let Some(tag) = tag_name(tag) {
            if tag != expected && tag != "!" {
                self.errors.push(YamlError {
                    pos,
                    message: format!("tag '{tag}' is not supported here"),
                });
            }
        }
    }

    fn open(&mut self, frame: Frame) -> Result<(), YamlError> {
        if self.stack.len() >= MAX_DEPTH {
            let pos = match &frame {
                Frame::Sequence { pos, .. } | Frame::Mapping { pos, .. } => *pos,
            };
            return Err(YamlError {
                pos,
                message: format!("nested deeper than {MAX_DEPTH} levels"),
            });
        }
        self.stack.push(frame);
        Ok(())
    }

    /// Places a finished node into its parent (or as the root) and records it under its anchor.
    fn complete(&mut self, node: Node, anchor: usize) -> Result<(), YamlError> {
        if anchor > 0 {
            self.alias_nodes += node.count();
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Sequence { items, .. }) => items.push(node),
            Some(Frame::Mapping { entries, key, .. }) => match key.take() {
                None => {
                    *key = Some(match &node.kind {
                        Kind::Scalar(s) => {
                            (Some(s.text.clone()), node.pos, s.style == Style::Plain)
                        }
                        _ => (None, node.pos, false),
                    });
                }
                Some((None, key_pos, _)) => self.errors.push(YamlError {
                    pos: key_pos,
                    message: "a mapping key must be a scalar, not a list or mapping".into(),
                }),
                Some((Some(key), key_pos, plain)) => {
                    let key = if plain && key == "<<" {
                        // Kept under a name no YAML key can collide with, merged at MappingEnd.
                        MERGE_KEY.to_owned()
                    } else {
                        key
                    };
                    if let Some(first) = entries.iter().find(|e| e.key == key) {
                        let first_line = first.key_pos.line;
                        let shown = if key == MERGE_KEY { "<<" } else { key.as_str() };
                        self.errors.push(YamlError {
                            pos: key_pos,
                            message: format!(
                                "key '{shown}' is defined twice in this mapping (first on line {first_line}); \
                                 remove one"
                            ),
                        });
                    } else {
                        entries.push(Entry {
                            key,
                            key_pos,
                            value: node,
                        });
                    }
                }
            },
        }
        Ok(())
    }

    fn merge(&mut self, entries: Vec<Entry>) -> Vec<Entry> {
        if !entries.iter().any(|e| e.key == MERGE_KEY) {
            return entries;
        }
        let (merges, mut out): (Vec<Entry>, Vec<Entry>) =
            entries.into_iter().partition(|e| e.key == MERGE_KEY);
        for merge in merges {
            let sources = match merge.value.kind {
                Kind::Mapping(_) => vec![merge.value],
                Kind::Sequence(items) => items,
                Kind::Scalar(_) => vec![merge.value],
            };
            for source in sources {
                let Kind::Mapping(source_entries) = source.kind else {
                    self.errors.push(YamlError {
                        pos: source.pos,
                        message: "a merge key (`<<`) takes a mapping or a list of mappings, e.g. \
                                  `<<: *defaults`"
                            .into(),
                    });
                    continue;
                };
                for entry in source_entries {
                    if !out.iter().any(|e| e.key == entry.key) {
                        out.push(entry);
                    }
                }
            }
        }
        out
    }
}

const MERGE_KEY: &str = "\u{0}<<";

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar_text(node: &Node) -> &str {
        match &node.kind {
            Kind::Scalar(s) => &s.text,
            _ => panic!("not a scalar: {node:?}"),
        }
    }

    fn get<'a>(node: &'a Node, key: &str) -> &'a Entry {
        node.as_mapping()
            .and_then(|m| m.iter().find(|e| e.key == key))
            .unwrap_or_else(|| panic!("no key {key}"))
    }

    #[test]
    fn keys_and_values_carry_their_positions() {
        let parsed = parse("a:\n  b: 1\n  c: [x, \"y\"]\n");
        assert!(parsed.errors.is_empty());
        let root = parsed.root.unwrap();
        let a = get(&root, "a");
        assert_eq!(a.key_pos, Pos { line: 1, column: 1 });
        let b = get(&a.value, "b");
        assert_eq!(b.key_pos, Pos { line: 2, column: 3 });
        assert_eq!(b.value.pos, Pos { line: 2, column: 6 });
        let Kind::Sequence(items) = &get(&a.value, "c").value.kind else {
            panic!()
        };
        assert_eq!(
            items[1].pos,
            Pos {
                line: 3,
                column: 10
            }
        );
        let Kind::Scalar(y) = &items[1].kind else {
            panic!()
        };
        assert_eq!(y.style, Style::Quoted);
    }

    #[test]
    fn syntax_errors_are_one_error_with_a_position() {
        let parsed = parse("a: [1, 2\nb: 3\n");
        assert!(parsed.root.is_none());
        assert_eq!(parsed.errors.len(), 1);
        assert!(parsed.errors[0].message.starts_with("invalid YAML"));
        assert!(parsed.errors[0].pos.line >= 1);
    }

    #[test]
    fn aliases_are_copies_of_their_anchor() {
        let parsed = parse("base: &b {x: 1}\nuse: *b\n");
        assert!(parsed.errors.is_empty());
        let root = parsed.root.unwrap();
        assert_eq!(get(&root, "base").value, get(&root, "use").value);
    }

    #[test]
    fn merge_keys_fill_in_missing_keys_only() {
        let parsed = parse("base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\n");
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        let root = parsed.root.unwrap();
        let used = &get(&root, "use").value;
        assert_eq!(scalar_text(&get(used, "x").value), "1");
        assert_eq!(scalar_text(&get(used, "y").value), "3");
        assert_eq!(used.as_mapping().unwrap().len(), 2);
    }

    #[test]
    fn duplicate_keys_are_reported_and_the_first_is_kept() {
        let parsed = parse("a: 1\nb: 2\na: 3\n");
        assert_eq!(parsed.errors.len(), 1);
        assert_eq!(parsed.errors[0].pos, Pos { line: 3, column: 1 });
        assert!(parsed.errors[0].message.contains("first on line 1"));
        let root = parsed.root.unwrap();
        assert_eq!(scalar_text(&get(&root, "a").value), "1");
    }

    #[test]
    fn deep_nesting_and_alias_bombs_are_refused() {
        let deep = "[".repeat(MAX_DEPTH + 5);
        let parsed = parse(&deep);
        assert!(parsed.root.is_none());
        assert_eq!(parsed.errors.len(), 1);

        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let parsed = parse(&bomb);
        assert!(parsed.root.is_none());
        assert!(parsed.errors[0].message.contains("aliases expand"));
    }

    #[test]
    fn a_second_document_is_refused() {
        let parsed = parse("a: 1\n---\nb: 2\n");
        assert!(parsed.root.is_none());
        assert!(parsed.errors[0]
            .message
            .contains("more than one YAML document"));
        assert_eq!(parsed.errors[0].pos.line, 2);
    }

    #[test]
    fn empty_input_has_no_root() {
        let parsed = parse("");
        assert!(parsed.root.is_none());
        assert!(parsed.errors.is_empty());
        let parsed = parse("# just a comment\n");
        assert!(parsed.root.is_none());
        assert!(parsed.errors.is_empty());
    }
}
