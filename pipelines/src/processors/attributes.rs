//! Processors `resource` and `attributes`: the OpenTelemetry Collector's attribute actions (insert,
//! update, upsert, delete, hash) on resource attributes, or on item attributes (span, data point, log
//! record). One compiled action list serves both; only the attribute lists they visit differ.

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use outpost_config::{AttrValue, AttributeAction, AttributeActionKind};
use sha2::{Digest, Sha256};

use crate::batch::Batch;
use crate::processor::{Emit, Processor};
use crate::signal::SignalData;

/// Which attribute lists the actions apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Resource,
    Items,
}

enum Source {
    Value(AnyValue),
    FromAttribute(String),
    None,
}

struct Action {
    key: String,
    kind: AttributeActionKind,
    source: Source,
}

pub struct AttributesProcessor {
    target: Target,
    actions: Vec<Action>,
}

fn any_value(v: &AttrValue) -> AnyValue {
    use any_value::Value;
    let value = match v {
        AttrValue::Bool(b) => Value::BoolValue(*b),
        AttrValue::Int(i) => Value::IntValue(*i),
        AttrValue::Double(d) => Value::DoubleValue(*d),
        AttrValue::String(s) => Value::StringValue(s.clone()),
    };
    AnyValue { value: Some(value) }
}

impl AttributesProcessor {
    pub fn new(target: Target, actions: &[AttributeAction]) -> Self {
        let actions = actions
            .iter()
            .map(|a| Action {
                key: a.key.clone(),
                kind: a.action,
                source: match (&a.value, &a.from_attribute) {
                    (Some(v), _) => Source::Value(any_value(v)),
                    (None, Some(from)) => Source::FromAttribute(from.clone()),
                    (None, None) => Source::None,
                },
            })
            .collect();
        Self { target, actions }
    }

    /// Applies every action, in order, to one attribute list.
    pub fn apply(&self, attrs: &mut Vec<KeyValue>) {
        for action in &self.actions {
            let pos = attrs.iter().position(|kv| kv.key == action.key);
            match action.kind {
                AttributeActionKind::Delete => attrs.retain(|kv| kv.key != action.key),
                AttributeActionKind::Hash => {
                    if let Some(i) = pos {
                        let hashed = hash_value(attrs[i].value.as_ref());
                        attrs[i].value = Some(hashed);
                    }
                }
                kind => {
                    let value = match &action.source {
                        Source::Value(v) => Some(v.clone()),
                        Source::FromAttribute(from) => attrs
                            .iter()
                            .find(|kv| &kv.key == from)
                            .and_then(|kv| kv.value.clone()),
                        Source::None => None,
                    };
                    // A missing from_attribute leaves the target untouched, as upstream does.
                    let Some(value) = value else { continue };
                    match (kind, pos) {
                        (AttributeActionKind::Insert | AttributeActionKind::Upsert, None) => attrs
                            .push(KeyValue {
                                key: action.key.clone(),
                                value: Some(value),
                                ..Default::default()
                            }),
                        (AttributeActionKind::Update | AttributeActionKind::Upsert, Some(i)) => {
                            attrs[i].value = Some(value)
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

/// SHA-256 of the value's canonical bytes, as lowercase hex. Strings hash their UTF-8 bytes; other
/// scalars their decimal or `true`/`false` spelling, so equal values hash equally on every node.
fn hash_value(v: Option<&AnyValue>) -> AnyValue {
    use any_value::Value;
    let bytes: Vec<u8> = match v.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.as_bytes().to_vec(),
        Some(Value::BoolValue(b)) => b.to_string().into_bytes(),
        Some(Value::IntValue(i)) => i.to_string().into_bytes(),
        Some(Value::DoubleValue(d)) => d.to_string().into_bytes(),
        Some(Value::BytesValue(b)) => b.clone(),
        Some(other) => format!("{other:?}").into_bytes(),
        None => Vec::new(),
    };
    AnyValue {
        value: Some(Value::StringValue(hex::encode(Sha256::digest(&bytes)))),
    }
}

impl<T: SignalData> Processor<T> for AttributesProcessor {
    fn process(&mut self, mut batch: Batch<T>, out: &mut Emit<T>) {
        match self.target {
            Target::Resource => batch.data.for_each_resource_attrs(&mut |a| self.apply(a)),
            Target::Items => batch.data.for_each_item_attrs(&mut |a| self.apply(a)),
        }
        out.push(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::tests::{kv, traces};
    use crate::signal::Traces;

    fn action(
        key: &str,
        kind: AttributeActionKind,
        value: Option<&str>,
        from: Option<&str>,
    ) -> AttributeAction {
        AttributeAction {
            key: key.into(),
            action: kind,
            value: value.map(|v| AttrValue::String(v.into())),
            from_attribute: from.map(Into::into),
        }
    }

    fn get<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
        attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
            match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.as_str()),
                _ => None,
            }
        })
    }

    #[test]
    fn insert_update_upsert_respect_presence() {
        use AttributeActionKind::*;
        let p = AttributesProcessor::new(
            Target::Items,
            &[
                action("a", Insert, Some("new"), None),
                action("b", Insert, Some("new"), None),
                action("c", Update, Some("new"), None),
                action("d", Update, Some("new"), None),
                action("e", Upsert, Some("new"), None),
            ],
        );
        let mut attrs = vec![kv("a", "old"), kv("c", "old")];
        p.apply(&mut attrs);
        assert_eq!(get(&attrs, "a"), Some("old"), "insert never overwrites");
        assert_eq!(get(&attrs, "b"), Some("new"));
        assert_eq!(get(&attrs, "c"), Some("new"));
        assert_eq!(get(&attrs, "d"), None, "update never creates");
        assert_eq!(get(&attrs, "e"), Some("new"));
    }

    #[test]
    fn from_attribute_delete_and_hash() {
        use AttributeActionKind::*;
        let p = AttributesProcessor::new(
            Target::Items,
            &[
                action("copy", Upsert, None, Some("user")),
                action("user", Hash, None, None),
                action("secret", Delete, None, None),
            ],
        );
        let mut attrs = vec![kv("user", "alice"), kv("secret", "x"), kv("secret", "y")];
        p.apply(&mut attrs);
        assert_eq!(get(&attrs, "copy"), Some("alice"));
        assert_eq!(
            get(&attrs, "user"),
            Some("2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90")
        );
        assert!(attrs.iter().all(|kv| kv.key != "secret"));
    }

    #[test]
    fn resource_target_touches_only_resources() {
        let mut p = AttributesProcessor::new(
            Target::Resource,
            &[action(
                "node",
                AttributeActionKind::Upsert,
                Some("edge-1"),
                None,
            )],
        );
        let mut out = Emit::default();
        Processor::<Traces>::process(&mut p, Batch::new(traces(2, 1)), &mut out);
        let b = &out.batches()[0].data;
        for rs in &b.resource_spans {
            assert_eq!(
                get(&rs.resource.as_ref().unwrap().attributes, "node"),
                Some("edge-1")
            );
            for ss in &rs.scope_spans {
                assert!(ss.spans.iter().all(|s| s.attributes.is_empty()));
            }
        }
    }
}
