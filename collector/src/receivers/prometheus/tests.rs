use super::*;
use outpost_config::{RelabelAction, RelabelConfig};

fn job(yaml_params: &[(&str, &[&str])]) -> ScrapeConfig {
    let mut v = serde_json::json!({
        "job_name": "node",
        "scrape_interval": "15s",
        "static_configs": [{"targets": ["10.0.0.1:9100", "10.0.0.2:9100"], "labels": {"env": "prod"}}],
    });
    if !yaml_params.is_empty() {
        let params: serde_json::Map<String, serde_json::Value> = yaml_params
            .iter()
            .map(|(k, vs)| (k.to_string(), serde_json::json!(vs)))
            .collect();
        v["params"] = serde_json::Value::Object(params);
    }
    serde_json::from_value(v).unwrap()
}

fn relabel(steps: Vec<RelabelConfig>) -> Relabeler {
    Relabeler::new(&steps).unwrap()
}

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

fn by_instance(targets: HashMap<u64, ScrapeTarget>) -> Vec<ScrapeTarget> {
    let mut v: Vec<ScrapeTarget> = targets.into_values().collect();
    v.sort_by(|a, b| a.target.instance.cmp(&b.target.instance));
    v
}

#[test]
fn static_targets_get_prometheus_labels_and_urls() {
    let cfg = job(&[("module", &["if_mib", "extra"])]);
    let groups = discovery::static_groups(&cfg);
    let t = by_instance(targets(
        &cfg,
        &PromGlobalConfig::default(),
        &Relabeler::default(),
        groups.iter(),
    ));
    assert_eq!(t.len(), 2);
    assert_eq!(
        t[0].url.as_str(),
        "http://10.0.0.1:9100/metrics?module=if_mib&module=extra"
    );
    assert_eq!(t[0].target.job, "node");
    assert_eq!(t[0].target.instance, "10.0.0.1:9100");
    assert_eq!(
        t[0].target.labels,
        vec![("env".to_string(), "prod".to_string())]
    );
    assert_eq!(t[0].target.endpoint.port, Some(9100));
    assert_ne!(t[0].key, t[1].key);
}

#[test]
fn relabel_configs_can_drop_rewrite_and_reroute_targets() {
    let cfg = job(&[]);
    let groups = discovery::static_groups(&cfg);
    let steps = vec![
        RelabelConfig {
            source_labels: vec!["__address__".into()],
            regex: "10\\.0\\.0\\.2:.*".into(),
            ..step(RelabelAction::Drop)
        },
        RelabelConfig {
            source_labels: vec!["__address__".into()],
            regex: "([^:]+):.*".into(),
            target_label: Some("instance".into()),
            replacement: "node-$1".into(),
            ..step(RelabelAction::Replace)
        },
        RelabelConfig {
            target_label: Some("__metrics_path__".into()),
            replacement: "/probe".into(),
            ..step(RelabelAction::Replace)
        },
        RelabelConfig {
            target_label: Some("__param_target".into()),
            replacement: "x".into(),
            ..step(RelabelAction::Replace)
        },
    ];
    let t = by_instance(targets(
        &cfg,
        &PromGlobalConfig::default(),
        &relabel(steps),
        groups.iter(),
    ));
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].target.instance, "node-10.0.0.1");
    assert_eq!(t[0].url.as_str(), "http://10.0.0.1:9100/probe?target=x");
}

fn scrape_job(honor_labels: bool, metric_relabel: Vec<RelabelConfig>) -> Job {
    let telemetry = Telemetry::new();
    Job {
        receiver: "prometheus".into(),
        name: "node".into(),
        interval: std::time::Duration::from_secs(15),
        timeout: std::time::Duration::from_secs(10),
        honor_labels,
        sample_limit: 0,
        label_limit: 0,
        body_limit: 1 << 20,
        metric_relabel: relabel(metric_relabel),
        auth: Auth::None,
        client: crate::tls::http_client_builder(None).build().unwrap(),
        inputs: Arc::new(Inputs::default()),
        receiver_metrics: telemetry.receiver("prometheus", "scrape"),
        scrape_metrics: telemetry.scrape("prometheus", "node"),
    }
}

fn sample(pairs: &[(&str, &str)]) -> Labels {
    let mut l: Labels = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.sort();
    l
}

#[test]
fn exposed_labels_clashing_with_the_target_are_renamed_or_honoured() {
    let cfg = job(&[]);
    let groups = discovery::static_groups(&cfg);
    let t = by_instance(targets(
        &cfg,
        &PromGlobalConfig::default(),
        &Relabeler::default(),
        groups.iter(),
    ))
    .remove(0);
    let exposed = sample(&[("__name__", "m"), ("job", "inner"), ("env", "dev")]);
    let mut l = exposed.clone();
    assert!(scrape::sample_labels(
        &mut l,
        &t.target,
        &scrape_job(false, vec![])
    ));
    assert_eq!(
        l,
        sample(&[
            ("__name__", "m"),
            ("exported_env", "dev"),
            ("exported_job", "inner")
        ])
    );
    let mut l = exposed.clone();
    assert!(scrape::sample_labels(
        &mut l,
        &t.target,
        &scrape_job(true, vec![])
    ));
    assert_eq!(l, exposed);
}

#[test]
fn metric_relabeling_sees_target_labels_and_can_drop_series() {
    let cfg = job(&[]);
    let groups = discovery::static_groups(&cfg);
    let t = by_instance(targets(
        &cfg,
        &PromGlobalConfig::default(),
        &Relabeler::default(),
        groups.iter(),
    ))
    .remove(0);
    let steps = vec![
        RelabelConfig {
            source_labels: vec!["__name__".into(), "instance".into()],
            regex: "node_cpu.*;10\\.0\\.0\\.1:9100".into(),
            ..step(RelabelAction::Drop)
        },
        RelabelConfig {
            source_labels: vec!["env".into()],
            target_label: Some("tier".into()),
            ..step(RelabelAction::Replace)
        },
    ];
    let j = scrape_job(false, steps);
    let mut dropped = sample(&[("__name__", "node_cpu_seconds_total")]);
    assert!(!scrape::sample_labels(&mut dropped, &t.target, &j));
    let mut kept = sample(&[("__name__", "node_load1")]);
    assert!(scrape::sample_labels(&mut kept, &t.target, &j));
    // Target labels left unchanged travel on the resource only; what relabeling made stays.
    assert_eq!(
        kept,
        sample(&[("__name__", "node_load1"), ("tier", "prod")])
    );
}
