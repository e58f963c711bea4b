//! The YAML tree → typed [`Config`], one part at a time so one mistake never hides another.
//!
//! The document's shape (top-level sections, component ids, pipelines, id lists) is read here by hand,
//! in file order, because a section's key decides which schema its body has. Each component body,
//! `service.telemetry` and `queue` is then deserialized on its own through serde with
//! `serde_path_to_error`, so the first error inside one component is reported at the deepest node of
//! its path, and the other components are still read.
//!
//! Two small repairs are made before giving up on a body, both matching what go-yaml and the
//! OpenTelemetry Collector accept: a plain scalar typed as a number or bool is given to a string-typed
//! setting as its written text (`headers: {x-tenant: 42}`), and an empty value (`key:`) of a mapping or
//! list setting means an empty one.
//!
//! What could not be read is remembered in [`Origins`] (defined but broken components, incomplete
//! pipelines), so validation does not pile a second, misleading error onto the first.

use std::collections::{HashMap, HashSet};

use indexmap::IndexMap;
use serde_json::Value;

use crate::id::{ComponentId, PipelineId};
use crate::report::Report;
use crate::schema::*;
use crate::source::{index_path, key_path, to_json};
use crate::yaml::{Kind, Node};

pub(crate) mod typed;

use typed::typed;

/// The component sections of a config, in the order they are written in docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Section {
    Receivers,
    Processors,
    Exporters,
    Connectors,
    Extensions,
}

impl Section {
    pub fn key(self) -> &'static str {
        match self {
            Section::Receivers => "receivers",
            Section::Processors => "processors",
            Section::Exporters => "exporters",
            Section::Connectors => "connectors",
            Section::Extensions => "extensions",
        }
    }

    pub fn singular(self) -> &'static str {
        match self {
            Section::Receivers => "receiver",
            Section::Processors => "processor",
            Section::Exporters => "exporter",
            Section::Connectors => "connector",
            Section::Extensions => "extension",
        }
    }

    fn types(self) -> &'static [&'static str] {
        match self {
            Section::Receivers => ReceiverConfig::TYPES,
            Section::Processors => ProcessorConfig::TYPES,
            Section::Exporters => ExporterConfig::TYPES,
            Section::Connectors => ConnectorConfig::TYPES,
            Section::Extensions => ExtensionConfig::TYPES,
        }
    }
}

pub(crate) const TOP_LEVEL_KEYS: &[&str] = &[
    "receivers",
    "processors",
    "exporters",
    "connectors",
    "extensions",
    "queue",
    "service",
];
const SERVICE_KEYS: &[&str] = &["extensions", "pipelines", "telemetry"];
const PIPELINE_KEYS: &[&str] = &["receivers", "processors", "exporters"];

/// Where the parts of the config came from, and which parts could not be read.
#[derive(Debug, Default)]
pub(crate) struct Origins {
    /// Every component id written under each section, read or not, with its YAML path.
    pub defined: HashMap<Section, IndexMap<ComponentId, String>>,
    /// Components that are defined but whose settings could not be read (the error is reported).
    pub broken: HashSet<(Section, ComponentId)>,
    /// Sections that could not be read at all: what they define is unknown, so references into them
    /// are not checked.
    pub unreadable: HashSet<Section>,
    pub pipelines: IndexMap<PipelineId, PipelineOrigin>,
    /// A pipeline could not be read at all: "no pipelines" or "unused" findings would mislead.
    pub pipelines_incomplete: bool,
    /// The path of each item kept in `service.extensions`.
    pub extensions: Vec<String>,
}

impl Origins {
    pub fn defined(&self, section: Section) -> impl Iterator<Item = (&ComponentId, &String)> {
        self.defined.get(&section).into_iter().flatten()
    }

    pub fn is_defined(&self, section: Section, id: &ComponentId) -> bool {
        self.defined
            .get(&section)
            .is_some_and(|m| m.contains_key(id))
    }

    pub fn path_of(&self, section: Section, id: &ComponentId) -> String {
        self.defined
            .get(&section)
            .and_then(|m| m.get(id))
            .cloned()
            .unwrap_or_else(|| key_path(section.key(), &id.to_string()))
    }
}

/// The YAML paths of one pipeline and of the items kept in its lists (aligned with [`PipelineConfig`]).
#[derive(Debug, Default)]
pub(crate) struct PipelineOrigin {
    pub path: String,
    /// Some key or list item could not be read.
    pub incomplete: bool,
    pub receivers: Vec<String>,
    pub processors: Vec<String>,
    pub exporters: Vec<String>,
}

pub(crate) fn decode(root: Option<&Node>, r: &mut Report) -> (Config, Origins) {
    let mut config = Config::default();
    let mut origins = Origins::default();
    let Some(root) = root else {
        return (config, origins);
    };
    if root.is_null() {
        return (config, origins);
    }
    let Some(entries) = root.as_mapping() else {
        origins.pipelines_incomplete = true;
        r.push(
            crate::Severity::Error,
            "",
            Some(root.pos),
            format!(
                "the configuration must be a mapping with the keys {}",
                TOP_LEVEL_KEYS.join(", ")
            ),
        );
        return (config, origins);
    };
    for entry in entries {
        let node = &entry.value;
        let path = entry.key.as_str();
        match path {
            "receivers" => {
                config.receivers = section(r, &mut origins, Section::Receivers, node, receiver)
            }
            "processors" => {
                config.processors = section(r, &mut origins, Section::Processors, node, processor)
            }
            "exporters" => {
                config.exporters = section(r, &mut origins, Section::Exporters, node, exporter)
            }
            "connectors" => {
                config.connectors = section(r, &mut origins, Section::Connectors, node, connector)
            }
            "extensions" => {
                config.extensions = section(r, &mut origins, Section::Extensions, node, extension)
            }
            "queue" => config.queue = typed(r, path, to_json(node)).unwrap_or_default(),
            "service" => config.service = service(r, &mut origins, node),
            other => {
                // Perhaps a misspelt `service`: findings about missing pipelines would mislead.
                origins.pipelines_incomplete = true;
                r.key_error(
                    path,
                    format!(
                        "unknown top-level key '{other}' (allowed: {})",
                        TOP_LEVEL_KEYS.join(", ")
                    ),
                );
            }
        }
    }
    (config, origins)
}

type DecodeOne<T> = fn(&mut Report, &str, &str, Value) -> Option<T>;

fn section<T>(
    r: &mut Report,
    origins: &mut Origins,
    section: Section,
    node: &Node,
    decode_one: DecodeOne<T>,
) -> IndexMap<ComponentId, T> {
    let mut out = IndexMap::new();
    if node.is_null() {
        return out;
    }
    if node.is_poisoned() {
        origins.unreadable.insert(section);
        return out;
    }
    let Some(entries) = node.as_mapping() else {
        origins.unreadable.insert(section);
        r.error(
            section.key(),
            format!(
                "expected a mapping of {} ids (type or type/name) to their settings",
                section.singular()
            ),
        );
        return out;
    };
    let defined = origins.defined.entry(section).or_default();
    for entry in entries {
        let path = key_path(section.key(), &entry.key);
        let id: ComponentId = match entry.key.parse() {
            Ok(id) => id,
            Err(e) => {
                r.key_error(&path, format!("not a {} id: {e}", section.singular()));
                continue;
            }
        };
        if let Some(first) = defined.get(&id) {
            let line = r.map.key_pos(first).map_or(0, |p| p.line);
            r.key_error(
                &path,
                format!(
                    "'{id}' is defined twice under {} (first on line {line})",
                    section.key()
                ),
            );
            continue;
        }
        defined.insert(id.clone(), path.clone());
        if !section.types().contains(&id.kind()) {
            r.key_error(
                &path,
                format!(
                    "unknown {} type '{}' (known: {})",
                    section.singular(),
                    id.kind(),
                    section.types().join(", ")
                ),
            );
            origins.broken.insert((section, id));
            continue;
        }
        match decode_one(r, id.kind(), &path, to_json(&entry.value)) {
            Some(config) => {
                out.insert(id, config);
            }
            None => {
                origins.broken.insert((section, id));
            }
        }
    }
    out
}

// One function per section maps a type name to its schema; `TYPES` lists the same names (a test checks
// that every listed type decodes).

fn receiver(r: &mut Report, kind: &str, path: &str, body: Value) -> Option<ReceiverConfig> {
    match kind {
        "otlp" => typed(r, path, body).map(|c| ReceiverConfig::Otlp(Box::new(c))),
        "filelog" => typed(r, path, body).map(ReceiverConfig::Filelog),
        "syslog" => typed(r, path, body).map(ReceiverConfig::Syslog),
        "prometheus" => typed(r, path, body).map(ReceiverConfig::Prometheus),
        "prometheusremotewrite" => typed(r, path, body).map(ReceiverConfig::PrometheusRemoteWrite),
        _ => None,
    }
}

fn processor(r: &mut Report, kind: &str, path: &str, body: Value) -> Option<ProcessorConfig> {
    match kind {
        "batch" => typed(r, path, body).map(ProcessorConfig::Batch),
        "resource" => typed(r, path, body).map(ProcessorConfig::Resource),
        "attributes" => typed(r, path, body).map(ProcessorConfig::Attributes),
        "memory_limiter" => typed(r, path, body).map(ProcessorConfig::MemoryLimiter),
        "redaction" => typed(r, path, body).map(|c| ProcessorConfig::Redaction(Box::new(c))),
        "transform" => typed(r, path, body).map(ProcessorConfig::Transform),
        "tail_sampling" => typed(r, path, body).map(ProcessorConfig::TailSampling),
        "cardinality_limit" => {
            typed(r, path, body).map(|c| ProcessorConfig::CardinalityLimit(Box::new(c)))
        }
        _ => None,
    }
}

fn exporter(r: &mut Report, kind: &str, path: &str, body: Value) -> Option<ExporterConfig> {
    match kind {
        "otlp" => typed(r, path, body).map(ExporterConfig::Otlp),
        "otlphttp" => typed(r, path, body).map(ExporterConfig::OtlpHttp),
        "debug" => typed(r, path, body).map(ExporterConfig::Debug),
        "file" => typed(r, path, body).map(ExporterConfig::File),
        "prometheusremotewrite" => typed(r, path, body).map(ExporterConfig::PrometheusRemoteWrite),
        _ => None,
    }
}

fn connector(r: &mut Report, kind: &str, path: &str, body: Value) -> Option<ConnectorConfig> {
    match kind {
        "forward" => typed(r, path, body).map(ConnectorConfig::Forward),
        "spanmetrics" => typed(r, path, body).map(ConnectorConfig::SpanMetrics),
        "count" => typed(r, path, body).map(ConnectorConfig::Count),
        _ => None,
    }
}

fn extension(r: &mut Report, kind: &str, path: &str, body: Value) -> Option<ExtensionConfig> {
    match kind {
        "health_check" => typed(r, path, body).map(ExtensionConfig::HealthCheck),
        "file_storage" => typed(r, path, body).map(ExtensionConfig::FileStorage),
        _ => None,
    }
}

/// The JSON Schema of the body of a component of `section` and type `kind`, for `outpost schema`: the
/// same type-name → schema table as the functions above, kept beside them so the two change together
/// (a test checks that every type in `TYPES` has one).
pub(crate) fn body_schema(
    section: Section,
    kind: &str,
    g: &mut schemars::SchemaGenerator,
) -> Option<schemars::Schema> {
    fn of<T: schemars::JsonSchema, E>(
        g: &mut schemars::SchemaGenerator,
        _variant: fn(T) -> E,
    ) -> Option<schemars::Schema> {
        Some(g.subschema_for::<T>())
    }
    match (section, kind) {
        (Section::Receivers, "otlp") => of(g, ReceiverConfig::Otlp),
        (Section::Receivers, "filelog") => of(g, ReceiverConfig::Filelog),
        (Section::Receivers, "syslog") => of(g, ReceiverConfig::Syslog),
        (Section::Receivers, "prometheus") => of(g, ReceiverConfig::Prometheus),
        (Section::Receivers, "prometheusremotewrite") => {
            of(g, ReceiverConfig::PrometheusRemoteWrite)
        }
        (Section::Processors, "batch") => of(g, ProcessorConfig::Batch),
        (Section::Processors, "resource") => of(g, ProcessorConfig::Resource),
        (Section::Processors, "attributes") => of(g, ProcessorConfig::Attributes),
        (Section::Processors, "memory_limiter") => of(g, ProcessorConfig::MemoryLimiter),
        (Section::Processors, "redaction") => of(g, ProcessorConfig::Redaction),
        (Section::Processors, "transform") => of(g, ProcessorConfig::Transform),
        (Section::Processors, "tail_sampling") => of(g, ProcessorConfig::TailSampling),
        (Section::Processors, "cardinality_limit") => of(g, ProcessorConfig::CardinalityLimit),
        (Section::Exporters, "otlp") => of(g, ExporterConfig::Otlp),
        (Section::Exporters, "otlphttp") => of(g, ExporterConfig::OtlpHttp),
        (Section::Exporters, "debug") => of(g, ExporterConfig::Debug),
        (Section::Exporters, "file") => of(g, ExporterConfig::File),
        (Section::Exporters, "prometheusremotewrite") => {
            of(g, ExporterConfig::PrometheusRemoteWrite)
        }
        (Section::Connectors, "forward") => of(g, ConnectorConfig::Forward),
        (Section::Connectors, "spanmetrics") => of(g, ConnectorConfig::SpanMetrics),
        (Section::Connectors, "count") => of(g, ConnectorConfig::Count),
        (Section::Extensions, "health_check") => of(g, ExtensionConfig::HealthCheck),
        (Section::Extensions, "file_storage") => of(g, ExtensionConfig::FileStorage),
        _ => None,
    }
}

/// Every section with its type names, for `outpost schema`.
pub(crate) fn sections() -> [(Section, &'static [&'static str]); 5] {
    [
        Section::Receivers,
        Section::Processors,
        Section::Exporters,
        Section::Connectors,
        Section::Extensions,
    ]
    .map(|s| (s, s.types()))
}

/// The keys of `service` and of a pipeline, for `outpost schema`.
pub(crate) const SERVICE_KEYS_SCHEMA: &[&str] = SERVICE_KEYS;
pub(crate) const PIPELINE_KEYS_SCHEMA: &[&str] = PIPELINE_KEYS;

fn service(r: &mut Report, origins: &mut Origins, node: &Node) -> ServiceConfig {
    let mut service = ServiceConfig::default();
    if node.is_poisoned() {
        origins.pipelines_incomplete = true;
        return Default::default();
    }
    if node.is_null() {
        return service;
    }
    let Some(entries) = node.as_mapping() else {
        r.error(
            "service",
            "expected a mapping with the keys extensions, pipelines and telemetry",
        );
        origins.pipelines_incomplete = true;
        return service;
    };
    for entry in entries {
        let path = key_path("service", &entry.key);
        match entry.key.as_str() {
            "extensions" => {
                let (ids, paths, _) = id_list(r, &path, &entry.value);
                service.extensions = ids;
                origins.extensions = paths;
            }
            "pipelines" => service.pipelines = pipelines(r, origins, &path, &entry.value),
            "telemetry" => {
                service.telemetry = typed(r, &path, to_json(&entry.value)).unwrap_or_default()
            }
            other => {
                // Perhaps a misspelt `pipelines`: findings about missing pipelines would mislead.
                origins.pipelines_incomplete = true;
                r.key_error(
                    &path,
                    format!(
                        "unknown key '{other}' in service (allowed: {})",
                        SERVICE_KEYS.join(", ")
                    ),
                );
            }
        }
    }
    service
}

fn pipelines(
    r: &mut Report,
    origins: &mut Origins,
    path: &str,
    node: &Node,
) -> IndexMap<PipelineId, PipelineConfig> {
    let mut out = IndexMap::new();
    if node.is_poisoned() {
        origins.pipelines_incomplete = true;
        return Default::default();
    }
    if node.is_null() {
        return out;
    }
    let Some(entries) = node.as_mapping() else {
        r.error(
            path,
            "expected a mapping of pipeline ids (traces, metrics/name, …) to pipelines",
        );
        origins.pipelines_incomplete = true;
        return out;
    };
    for entry in entries {
        let pipeline_path = key_path(path, &entry.key);
        let id: PipelineId = match entry.key.parse() {
            Ok(id) => id,
            Err(e) => {
                let message = match e {
                    crate::id::IdError::BadSignal(..) => format!(
                        "'{}' is not a pipeline id (expected traces, metrics or logs, optionally followed \
                         by /name)",
                        entry.key
                    ),
                    other => format!("not a pipeline id: {other}"),
                };
                r.key_error(&pipeline_path, message);
                origins.pipelines_incomplete = true;
                continue;
            }
        };
        if let Some(first) = origins.pipelines.get(&id) {
            let line = r.map.key_pos(&first.path).map_or(0, |p| p.line);
            r.key_error(
                &pipeline_path,
                format!("pipeline '{id}' is defined twice (first on line {line})"),
            );
            continue;
        }
        let mut pipeline = PipelineConfig::default();
        let mut origin = PipelineOrigin {
            path: pipeline_path.clone(),
            ..PipelineOrigin::default()
        };
        match (&entry.value.kind, entry.value.is_null()) {
            (_, true) => {}
            _ if entry.value.is_poisoned() => origin.incomplete = true,
            (Kind::Mapping(keys), _) => {
                for key in keys {
                    let list_path = key_path(&pipeline_path, &key.key);
                    let (list, paths) = match key.key.as_str() {
                        "receivers" => (&mut pipeline.receivers, &mut origin.receivers),
                        "processors" => (&mut pipeline.processors, &mut origin.processors),
                        "exporters" => (&mut pipeline.exporters, &mut origin.exporters),
                        other => {
                            r.key_error(
                                &list_path,
                                format!(
                                    "unknown key '{other}' in a pipeline (allowed: {})",
                                    PIPELINE_KEYS.join(", ")
                                ),
                            );
                            origin.incomplete = true;
                            continue;
                        }
                    };
                    let (ids, item_paths, complete) = id_list(r, &list_path, &key.value);
                    *list = ids;
                    *paths = item_paths;
                    origin.incomplete |= !complete;
                }
            }
            _ => {
                r.error(
                    &pipeline_path,
                    "expected a mapping with receivers, processors and exporters lists",
                );
                origin.incomplete = true;
            }
        }
        origins.pipelines.insert(id.clone(), origin);
        out.insert(id, pipeline);
    }
    out
}

/// A list of component ids: the ids read, the path of each, and whether every item could be read.
fn id_list(r: &mut Report, path: &str, node: &Node) -> (Vec<ComponentId>, Vec<String>, bool) {
    let mut ids = Vec::new();
    let mut paths = Vec::new();
    if node.is_null() {
        return (ids, paths, true);
    }
    if node.is_poisoned() {
        return (ids, paths, false);
    }
    let Kind::Sequence(items) = &node.kind else {
        r.error(path, "expected a list of component ids, e.g. [otlp, batch]");
        return (ids, paths, false);
    };
    let mut complete = true;
    for (i, item) in items.iter().enumerate() {
        let item_path = index_path(path, i);
        let text = match &item.kind {
            Kind::Scalar(s) if s.poisoned => None,
            Kind::Scalar(s) => match &s.value {
                Value::String(text) => Some(text.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => {
                    r.error(&item_path, "empty list item (expected a component id)");
                    None
                }
            },
            _ => {
                r.error(
                    &item_path,
                    "expected a component id (type or type/name), not a list or mapping",
                );
                None
            }
        };
        let Some(text) = text else {
            complete = false;
            continue;
        };
        match text.parse::<ComponentId>() {
            Ok(id) => {
                ids.push(id);
                paths.push(item_path);
            }
            Err(e) => {
                r.error(&item_path, format!("not a component id: {e}"));
                complete = false;
            }
        }
    }
    (ids, paths, complete)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every type a section's `TYPES` names (and so offers in "unknown type" messages) is decoded by
    /// that section's function: with an empty body it yields a config or reports why not, never the
    /// silent `None` of a type the function does not know.
    #[test]
    fn every_listed_type_is_decoded() {
        let sections: [(Section, DecodeOne<()>); 5] = [
            (Section::Receivers, |r, k, p, b| {
                receiver(r, k, p, b).map(drop)
            }),
            (Section::Processors, |r, k, p, b| {
                processor(r, k, p, b).map(drop)
            }),
            (Section::Exporters, |r, k, p, b| {
                exporter(r, k, p, b).map(drop)
            }),
            (Section::Connectors, |r, k, p, b| {
                connector(r, k, p, b).map(drop)
            }),
            (Section::Extensions, |r, k, p, b| {
                extension(r, k, p, b).map(drop)
            }),
        ];
        let map = crate::source::SourceMap::default();
        for (section, decode_one) in sections {
            assert!(TOP_LEVEL_KEYS.contains(&section.key()));
            assert!(!section.types().is_empty());
            for kind in section.types() {
                let mut r = Report::new("test", &map);
                let decoded = decode_one(&mut r, kind, kind, Value::Null);
                let reported = r.finish();
                assert!(
                    decoded.is_some() || reported.len() == 1,
                    "{} type '{kind}' is listed but not decoded",
                    section.singular()
                );
            }
            let mut r = Report::new("test", &map);
            assert!(decode_one(&mut r, "nonesuch", "nonesuch", Value::Null).is_none());
            assert!(r.finish().is_empty());
        }
    }
}
