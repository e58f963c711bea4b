//! Validation of what the schema alone cannot express: references between pipelines and components,
//! signals, connectors, settings that contradict each other, and listeners that would collide.
//!
//! Every rule runs and reports every finding, positioned at the reference in the YAML that is wrong (a
//! pipeline's list item, an exporter's `endpoint`), so one run lists everything to fix. Components or
//! pipelines that could not be read (see [`Origins`]) still count as defined and used, so a typo inside a
//! component never also shows up as "not defined" elsewhere. Unused components and extensions are
//! warnings: they do no harm, but usually mean a pipeline forgot them.

mod cardinality;
mod components;
mod endpoint;
mod listeners;
mod logs;
mod prometheus;
mod sampling;
mod tls;

use std::collections::{HashMap, HashSet};

use crate::decode::{Origins, Section};
use crate::id::{ComponentId, PipelineId};
use crate::report::Report;
use crate::schema::*;
use crate::source::key_path;
use crate::Signal;

pub(crate) fn validate(config: &Config, origins: &Origins, r: &mut Report) {
    connectors_are_unambiguous(origins, r);
    pipeline_references(config, origins, r);
    connector_usage(config, origins, r);
    connector_loops(config, origins, r);
    service_extensions(config, origins, r);
    for (id, processor) in &config.processors {
        components::check_processor(r, &origins.path_of(Section::Processors, id), processor);
    }
    for (id, connector) in &config.connectors {
        let path = origins.path_of(Section::Connectors, id);
        match connector {
            ConnectorConfig::Forward(_) => {}
            ConnectorConfig::SpanMetrics(c) => sampling::spanmetrics(r, &path, c),
            ConnectorConfig::Count(c) => sampling::count(r, &path, c),
        }
    }
    for (id, exporter) in &config.exporters {
        components::check_exporter(
            config,
            r,
            id,
            &origins.path_of(Section::Exporters, id),
            exporter,
        );
    }
    for (id, receiver) in &config.receivers {
        let path = origins.path_of(Section::Receivers, id);
        match receiver {
            ReceiverConfig::Otlp(otlp) => {
                if otlp.protocols.grpc.is_none() && otlp.protocols.http.is_none() {
                    r.error(
                        &key_path(&path, "protocols"),
                        "no protocol is enabled; add `grpc:` and/or `http:` under protocols",
                    );
                }
                if let Some(g) = &otlp.protocols.grpc {
                    tls::receiver(
                        r,
                        &key_path(&path, "protocols.grpc"),
                        g.tls.as_ref(),
                        g.auth.as_ref(),
                        g.rate_limit.as_ref(),
                    );
                }
                if let Some(h) = &otlp.protocols.http {
                    tls::receiver(
                        r,
                        &key_path(&path, "protocols.http"),
                        h.tls.as_ref(),
                        h.auth.as_ref(),
                        h.rate_limit.as_ref(),
                    );
                }
            }
            ReceiverConfig::Filelog(c) => logs::filelog(config, r, &path, c),
            ReceiverConfig::Syslog(c) => {
                logs::syslog(r, &path, c);
                if let Some(tcp) = &c.tcp {
                    let tcp_path = key_path(&path, "tcp");
                    tls::receiver(
                        r,
                        &tcp_path,
                        tcp.tls.as_ref(),
                        tcp.auth.as_ref(),
                        tcp.rate_limit.as_ref(),
                    );
                    if let Some(auth) = &tcp.auth {
                        tls::headerless(r, &key_path(&tcp_path, "auth"), auth);
                    }
                }
            }
            ReceiverConfig::Prometheus(p) => prometheus::scrape(r, &path, p),
            ReceiverConfig::PrometheusRemoteWrite(p) => {
                prometheus::remote_write(r, &path, p);
                tls::receiver(
                    r,
                    &path,
                    p.tls.as_ref(),
                    p.auth.as_ref(),
                    p.rate_limit.as_ref(),
                );
            }
        }
    }
    let metrics = &config.service.telemetry.metrics;
    if let Some(t) = &metrics.tls {
        let path = "service.telemetry.metrics";
        tls::receiver(r, path, Some(t), None, None);
        if metrics.address.is_none() {
            r.error(
                &key_path(path, "tls"),
                "tls applies to service.telemetry.metrics.address, which is not set; set the address \
                 to serve the admin endpoint over TLS there",
            );
        } else if config.service.extensions.iter().any(|id| {
            matches!(config.extensions.get(id), Some(ExtensionConfig::HealthCheck(h))
                if Some(h.endpoint) == metrics.address)
        }) {
            r.error(
                &key_path(path, "address"),
                "this address is also a health_check endpoint, which is plaintext; give the TLS \
                 metrics address a port of its own",
            );
        }
    }
    listeners::listeners(config, origins, r);
    components::queue(config, origins, r);
    unused(config, origins, r);
}

/// Which lists of a pipeline name which components.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Receivers,
    Processors,
    Exporters,
}

/// Each id in the given role of every pipeline, with the pipeline and the YAML path of the item.
fn uses<'c>(
    config: &'c Config,
    origins: &'c Origins,
    role: Role,
) -> impl Iterator<Item = (&'c PipelineId, &'c ComponentId, &'c str)> {
    config.service.pipelines.iter().flat_map(move |(pid, p)| {
        let o = &origins.pipelines[pid];
        let (ids, paths) = match role {
            Role::Receivers => (&p.receivers, &o.receivers),
            Role::Processors => (&p.processors, &o.processors),
            Role::Exporters => (&p.exporters, &o.exporters),
        };
        ids.iter()
            .zip(paths)
            .map(move |(id, path)| (pid, id, path.as_str()))
    })
}

fn listing(origins: &Origins, section: Section) -> String {
    let mut ids: Vec<String> = origins
        .defined(section)
        .map(|(id, _)| id.to_string())
        .collect();
    ids.sort();
    if ids.is_empty() {
        "none".into()
    } else {
        ids.join(", ")
    }
}

fn line_of(r: &Report, path: &str) -> usize {
    r.map.value_pos(path).map_or(0, |p| p.line)
}

fn connectors_are_unambiguous(origins: &Origins, r: &mut Report) {
    for (id, path) in origins.defined(Section::Connectors) {
        for other in [Section::Receivers, Section::Exporters] {
            if origins.is_defined(other, id) {
                r.key_error(
                    path,
                    format!(
                        "'{id}' is defined both as a connector and as {} {}; a pipeline could not tell \
                         which one it names: rename one (type/name)",
                        if other == Section::Exporters { "an" } else { "a" },
                        other.singular()
                    ),
                );
            }
        }
    }
}

fn pipeline_references(config: &Config, origins: &Origins, r: &mut Report) {
    for (pid, pipeline) in &config.service.pipelines {
        let o = &origins.pipelines[pid];
        for (role, ids, paths) in [
            (Role::Receivers, &pipeline.receivers, &o.receivers),
            (Role::Processors, &pipeline.processors, &o.processors),
            (Role::Exporters, &pipeline.exporters, &o.exporters),
        ] {
            let mut seen: HashMap<&ComponentId, &str> = HashMap::new();
            for (id, path) in ids.iter().zip(paths) {
                if let Some(&first) = seen.get(id) {
                    let line = line_of(r, first);
                    r.error(
                        path,
                        format!("'{id}' is listed twice (first on line {line}); remove one"),
                    );
                    continue;
                }
                seen.insert(id, path);
                check_reference(config, origins, r, pid, role, id, path);
            }
        }
        if !o.incomplete {
            for (ids, list) in [
                (&pipeline.receivers, "receivers"),
                (&pipeline.exporters, "exporters"),
            ] {
                if ids.is_empty() {
                    r.error(
                        &o.path,
                        format!("pipeline '{pid}' has no {list}; list at least one under {list}"),
                    );
                }
            }
        }
    }
    if config.service.pipelines.is_empty() && !origins.pipelines_incomplete {
        r.error(
            "service.pipelines",
            "no pipelines are defined; add one under service.pipelines, e.g. \
             traces: {receivers: [otlp], exporters: [debug]}",
        );
    }
}

fn check_reference(
    config: &Config,
    origins: &Origins,
    r: &mut Report,
    pid: &PipelineId,
    role: Role,
    id: &ComponentId,
    path: &str,
) {
    let (section, connectors_count) = match role {
        Role::Receivers => (Section::Receivers, true),
        Role::Processors => (Section::Processors, false),
        Role::Exporters => (Section::Exporters, true),
    };
    let is_connector = connectors_count && origins.is_defined(Section::Connectors, id);
    let unknowable = origins.unreadable.contains(&section)
        || (connectors_count && origins.unreadable.contains(&Section::Connectors));
    if !origins.is_defined(section, id) && !is_connector && !unknowable {
        let key = section.key();
        let any_connectors = origins.defined(Section::Connectors).next().is_some();
        let message = if connectors_count && any_connectors {
            format!(
                "'{id}' is not defined under {key} or connectors ({key}: {}; connectors: {})",
                listing(origins, section),
                listing(origins, Section::Connectors)
            )
        } else {
            format!(
                "'{id}' is not defined under {key} (defined: {})",
                listing(origins, section)
            )
        };
        r.error(path, message);
        return;
    }
    if role == Role::Processors {
        if let Some(processor) = config.processors.get(id) {
            if let Some(message) =
                unsupported_signal("processor", id, processor.signals(), pid.signal)
            {
                r.error(path, message);
            }
        }
    }
    if role == Role::Receivers {
        if let Some(receiver) = config.receivers.get(id) {
            if let Some(message) =
                unsupported_signal("receiver", id, receiver.signals(), pid.signal)
            {
                r.error(path, message);
            }
        }
    }
    if role == Role::Exporters {
        if let Some(exporter) = config.exporters.get(id) {
            if let Some(message) =
                unsupported_signal("exporter", id, exporter.signals(), pid.signal)
            {
                r.error(path, message);
            }
        }
    }
}

/// The finding for a component of kind `what` that cannot carry `signal`, if it cannot.
fn unsupported_signal(
    what: &str,
    id: &ComponentId,
    supported: &[Signal],
    signal: Signal,
) -> Option<String> {
    if supported.contains(&signal) {
        return None;
    }
    let supported: Vec<&str> = supported.iter().map(|s| s.as_str()).collect();
    let verb = match what {
        "processor" => "process",
        "exporter" => "send",
        _ => "produce",
    };
    Some(format!(
        "{what} '{id}' does not {verb} {signal} (it supports: {}); move it to a pipeline of one of those \
         signals",
        supported.join(", ")
    ))
}

fn connector_usage(config: &Config, origins: &Origins, r: &mut Report) {
    for (id, _) in origins.defined(Section::Connectors) {
        let fed_by: Vec<_> = uses(config, origins, Role::Exporters)
            .filter(|(_, c, _)| *c == id)
            .collect();
        let feeds: Vec<_> = uses(config, origins, Role::Receivers)
            .filter(|(_, c, _)| *c == id)
            .collect();
        match (fed_by.first(), feeds.first()) {
            (None, None) => {} // unused: a warning, below
            (Some((_, _, path)), None) => r.error(
                path,
                format!(
                    "connector '{id}' is an exporter here but no pipeline lists it under receivers; a \
                     connector joins two pipelines: add it to the receivers of the pipeline it feeds"
                ),
            ),
            (None, Some((_, _, path))) => r.error(
                path,
                format!(
                    "connector '{id}' is a receiver here but no pipeline lists it under exporters; a \
                     connector joins two pipelines: add it to the exporters of the pipeline that feeds it"
                ),
            ),
            (Some(_), Some(_)) => {
                let Some(connector) = config.connectors.get(id) else {
                    continue;
                };
                let mut from_signals: Vec<(Signal, &PipelineId)> = Vec::new();
                for (pid, _, _) in &fed_by {
                    if !from_signals.iter().any(|(s, _)| *s == pid.signal) {
                        from_signals.push((pid.signal, pid));
                    }
                }
                for (to, _, path) in &feeds {
                    for (from, from_pipeline) in &from_signals {
                        if !connector.supports(*from, to.signal) {
                            r.error(
                                path,
                                format!(
                                    "connector '{id}' cannot turn {from} (from pipeline '{from_pipeline}') \
                                     into {} for pipeline '{to}'; {}",
                                    to.signal,
                                    match connector {
                                        ConnectorConfig::Forward(_) =>
                                            "forward connects pipelines of the same signal",
                                        ConnectorConfig::SpanMetrics(_) =>
                                            "spanmetrics turns traces into metrics",
                                        ConnectorConfig::Count(_) =>
                                            "count turns traces, metrics or logs into metrics",
                                    }
                                ),
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Pipelines joined by connectors in a loop would pass data around forever.
fn connector_loops(config: &Config, origins: &Origins, r: &mut Report) {
    let pipelines: Vec<&PipelineId> = config.service.pipelines.keys().collect();
    let index: HashMap<&PipelineId, usize> =
        pipelines.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    let mut predecessors: Vec<HashSet<usize>> = vec![HashSet::new(); pipelines.len()];
    for (from, id, _) in uses(config, origins, Role::Exporters) {
        if !origins.is_defined(Section::Connectors, id) {
            continue;
        }
        for (to, _, _) in uses(config, origins, Role::Receivers).filter(|(_, c, _)| *c == id) {
            predecessors[index[to]].insert(index[from]);
        }
    }
    // Peel off pipelines with no remaining predecessor; what is left lies on or behind a loop, and
    // walking predecessors from any of them must come back to a node already seen.
    let mut alive: Vec<bool> = vec![true; pipelines.len()];
    loop {
        let peel: Vec<usize> = (0..pipelines.len())
            .filter(|&i| alive[i] && !predecessors[i].iter().any(|&p| alive[p]))
            .collect();
        if peel.is_empty() {
            break;
        }
        for i in peel {
            alive[i] = false;
        }
    }
    let Some(start) = (0..pipelines.len()).find(|&i| alive[i]) else {
        return;
    };
    let mut walk = vec![start];
    let mut node = start;
    let cycle_start = loop {
        // A pipeline left alive always has a live predecessor; the `else` is unreachable.
        let Some(previous) = predecessors[node]
            .iter()
            .copied()
            .filter(|&p| alive[p])
            .min()
        else {
            return;
        };
        node = previous;
        if let Some(at) = walk.iter().position(|&n| n == node) {
            break at;
        }
        walk.push(node);
    };
    // The walk went against the data's direction: reverse it to read upstream → downstream.
    let mut cycle: Vec<usize> = walk[cycle_start..].iter().rev().copied().collect();
    cycle.push(cycle[0]);
    let names: Vec<String> = cycle.iter().map(|&i| pipelines[i].to_string()).collect();
    r.error(
        &origins.pipelines[pipelines[cycle[0]]].path,
        format!(
            "pipelines form a loop through connectors: {}; data would circulate forever, remove one link",
            names.join(" → ")
        ),
    );
}

fn service_extensions(config: &Config, origins: &Origins, r: &mut Report) {
    let mut seen: HashMap<&ComponentId, &str> = HashMap::new();
    for (id, path) in config.service.extensions.iter().zip(&origins.extensions) {
        if let Some(&first) = seen.get(id) {
            let line = line_of(r, first);
            r.error(
                path,
                format!("'{id}' is listed twice (first on line {line}); remove one"),
            );
            continue;
        }
        seen.insert(id, path);
        if !origins.is_defined(Section::Extensions, id)
            && !origins.unreadable.contains(&Section::Extensions)
        {
            r.error(
                path,
                format!(
                    "'{id}' is not defined under extensions (defined: {})",
                    listing(origins, Section::Extensions)
                ),
            );
        }
    }
}

fn unused(config: &Config, origins: &Origins, r: &mut Report) {
    for (id, path) in origins.defined(Section::Extensions) {
        if !config.service.extensions.contains(id) {
            r.warning(
                path,
                format!("extension '{id}' is defined but not listed in service.extensions, so it is not started"),
            );
        }
    }
    let incomplete =
        origins.pipelines_incomplete || origins.pipelines.values().any(|p| p.incomplete);
    if incomplete || config.service.pipelines.is_empty() {
        return;
    }
    let used = |role: Role| -> HashSet<&ComponentId> {
        uses(config, origins, role).map(|(_, id, _)| id).collect()
    };
    let (receivers, processors, exporters) = (
        used(Role::Receivers),
        used(Role::Processors),
        used(Role::Exporters),
    );
    for (section, used_in) in [
        (Section::Receivers, vec![&receivers]),
        (Section::Processors, vec![&processors]),
        (Section::Exporters, vec![&exporters]),
        (Section::Connectors, vec![&receivers, &exporters]),
    ] {
        for (id, path) in origins.defined(section) {
            if !used_in.iter().any(|set| set.contains(id)) {
                r.warning(
                    path,
                    format!(
                        "{} '{id}' is defined but no pipeline uses it, so it is not started",
                        section.singular()
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The rule on its own; config/tests/prometheus.rs meets it through a real config.
    #[test]
    fn a_receiver_is_refused_in_a_pipeline_of_a_signal_it_does_not_produce() {
        let id: ComponentId = "prometheus".parse().unwrap();
        let message =
            unsupported_signal("receiver", &id, &[Signal::Metrics], Signal::Traces).unwrap();
        assert_eq!(
            message,
            "receiver 'prometheus' does not produce traces (it supports: metrics); move it to a pipeline \
             of one of those signals"
        );
        assert_eq!(
            unsupported_signal("receiver", &id, &[Signal::Metrics], Signal::Metrics),
            None
        );
        assert_eq!(
            unsupported_signal("receiver", &id, &Signal::ALL, Signal::Logs),
            None
        );
    }
}
