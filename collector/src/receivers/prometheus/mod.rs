//! Receiver `prometheus`: scrapes Prometheus targets, configured with Prometheus's own `scrape_configs`.
//!
//! One task per job keeps the job's target set: `static_configs` plus `file_sd_configs` files (watched,
//! see [`discovery`]), each target given the labels Prometheus gives it (`__address__`, `job`,
//! `__scheme__`, `__metrics_path__`, `__param_*`, …) and passed through `relabel_configs` ([`relabel`]).
//! Each target then has its own scrape loop ([`scrape`]): the text page is parsed ([`parse`]), run
//! through `metric_relabel_configs`, and converted to OTLP with start times and staleness ([`convert`]).
//! When the target set changes, loops of new targets start, and loops of removed targets mark their
//! series stale and end; a target that stays keeps its loop and its series state.
//!
//! On shutdown every loop ends at once; a scrape already being queued is answered by the draining
//! pipelines first.

pub mod convert;
pub mod discovery;
pub mod parse;
pub mod relabel;
pub mod scrape;

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use outpost_config::{ComponentId, PromGlobalConfig, PrometheusReceiverConfig, ScrapeConfig};
use outpost_pipelines::Telemetry;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use self::convert::Target;
use self::discovery::{FileSd, TargetGroup, FILE_CHECK_INTERVAL};
use self::relabel::Relabeler;
use self::scrape::{Auth, Job, ScrapeTarget};
use super::Inputs;
use crate::prom::to_otlp::{Endpoint, Labels, INSTANCE_LABEL, JOB_LABEL};

/// Starts one task per job. Errors (a relabel step that does not compile, an HTTP client that cannot be
/// built) are all returned, each naming its config key.
pub async fn start(
    id: &ComponentId,
    cfg: &PrometheusReceiverConfig,
    inputs: Inputs,
    telemetry: &Telemetry,
    shutdown: CancellationToken,
) -> Result<Vec<JoinHandle<()>>, Vec<String>> {
    let inputs = Arc::new(inputs);
    let receiver_metrics = telemetry.receiver(&id.to_string(), "scrape");
    let mut errors = Vec::new();
    let mut jobs = Vec::new();
    for (i, job_cfg) in cfg.config.scrape_configs.iter().enumerate() {
        let key = format!("receivers.{id}.config.scrape_configs[{i}]");
        let global = &cfg.config.global;
        let relabel = Relabeler::new(&job_cfg.relabel_configs)
            .map_err(|e| format!("{key}.relabel_configs: {e}"));
        let metric_relabel = Relabeler::new(&job_cfg.metric_relabel_configs)
            .map_err(|e| format!("{key}.metric_relabel_configs: {e}"));
        let timeout = job_cfg.timeout(global);
        // `tls_config` applies to https:// targets (scheme: https, or __scheme__ set by relabelling).
        let tls = match &job_cfg.tls_config {
            Some(t) => crate::tls::client_config(&t.to_tls(), &telemetry.tls(&key), &[b"http/1.1"])
                .map(Some)
                .map_err(|e| format!("{key}.tls_config: {e}")),
            None => Ok(None),
        };
        let client = tls.and_then(|tls| {
            crate::tls::http_client_builder(tls)
                .user_agent(concat!("outpost/", env!("CARGO_PKG_VERSION")))
                .timeout(timeout)
                .pool_idle_timeout(job_cfg.interval(global) * 2)
                .build()
                .map_err(|e| format!("{key}: cannot build the HTTP client: {e}"))
        });
        match (relabel, metric_relabel, client) {
            (Ok(relabel), Ok(metric_relabel), Ok(client)) => {
                let job = Job {
                    receiver: id.to_string(),
                    name: job_cfg.job_name.clone(),
                    interval: job_cfg.interval(global),
                    timeout,
                    honor_labels: job_cfg.honor_labels,
                    sample_limit: usize::try_from(job_cfg.sample_limit).unwrap_or(usize::MAX),
                    label_limit: usize::try_from(job_cfg.label_limit).unwrap_or(usize::MAX),
                    body_limit: job_cfg.body_size_limit(),
                    metric_relabel,
                    auth: Auth::of(job_cfg),
                    client,
                    inputs: inputs.clone(),
                    receiver_metrics: receiver_metrics.clone(),
                    scrape_metrics: telemetry.scrape(&id.to_string(), &job_cfg.job_name),
                };
                jobs.push((Arc::new(job), job_cfg.clone(), global.clone(), relabel));
            }
            (a, b, c) => errors.extend([a.err(), b.err(), c.err()].into_iter().flatten()),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(jobs
        .into_iter()
        .map(|(job, job_cfg, global, relabel)| {
            tokio::spawn(manage_job(job, job_cfg, global, relabel, shutdown.clone()))
        })
        .collect())
}

/// Keeps the scrape loops of one job in step with its discovered targets.
async fn manage_job(
    job: Arc<Job>,
    cfg: ScrapeConfig,
    global: PromGlobalConfig,
    relabel: Relabeler,
    shutdown: CancellationToken,
) {
    let static_groups = discovery::static_groups(&cfg);
    let mut file_sds: Vec<FileSd> = cfg.file_sd_configs.iter().map(FileSd::new).collect();
    let mut file_groups: Vec<Vec<TargetGroup>> = file_sds
        .iter_mut()
        .map(|sd| sd.poll(&job.name).unwrap_or_default())
        .collect();
    let mut running: HashMap<u64, CancellationToken> = HashMap::new();
    let mut loops = JoinSet::new();
    loop {
        let groups = static_groups.iter().chain(file_groups.iter().flatten());
        let desired = targets(&cfg, &global, &relabel, groups);
        running.retain(|key, removed| {
            let keep = desired.contains_key(key);
            if !keep {
                removed.cancel();
            }
            keep
        });
        for (key, st) in desired {
            if running.contains_key(&key) {
                continue;
            }
            let removed = CancellationToken::new();
            running.insert(key, removed.clone());
            loops.spawn(scrape::run(job.clone(), st, shutdown.clone(), removed));
        }
        job.scrape_metrics.set_targets(running.len());
        tracing::info!(job = %job.name, targets = running.len(), "scrape targets");

        // Wait for a file change (or only for shutdown, without files).
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    while loops.join_next().await.is_some() {}
                    return;
                }
                Some(_) = loops.join_next(), if !loops.is_empty() => continue,
                _ = tokio::time::sleep(FILE_CHECK_INTERVAL), if !file_sds.is_empty() => {}
            }
            let mut changed = false;
            for (sd, groups) in file_sds.iter_mut().zip(file_groups.iter_mut()) {
                if let Some(g) = sd.poll(&job.name) {
                    *groups = g;
                    changed = true;
                }
            }
            if changed {
                break;
            }
        }
    }
}

/// The targets of `groups` after `relabel_configs`, by identity.
pub fn targets<'g>(
    cfg: &ScrapeConfig,
    global: &PromGlobalConfig,
    relabel: &Relabeler,
    groups: impl Iterator<Item = &'g TargetGroup>,
) -> HashMap<u64, ScrapeTarget> {
    let mut out = HashMap::new();
    for group in groups {
        for address in &group.targets {
            if let Some(st) = target(cfg, global, relabel, &group.labels, address) {
                out.entry(st.key).or_insert(st);
            }
        }
    }
    out
}

/// One target's labels as Prometheus builds them, relabeled; `None` if relabeling drops it.
fn target(
    cfg: &ScrapeConfig,
    global: &PromGlobalConfig,
    relabel: &Relabeler,
    group_labels: &Labels,
    address: &str,
) -> Option<ScrapeTarget> {
    let mut labels = group_labels.clone();
    let set_default = |labels: &mut Labels, name: &str, value: String| {
        if relabel::get(labels, name).is_none() {
            relabel::set(labels, name, value);
        }
    };
    relabel::set(&mut labels, "__address__", address.to_owned());
    set_default(&mut labels, JOB_LABEL, cfg.job_name.clone());
    set_default(&mut labels, "__scheme__", cfg.scheme.as_str().to_owned());
    set_default(&mut labels, "__metrics_path__", cfg.metrics_path.clone());
    set_default(
        &mut labels,
        "__scrape_interval__",
        humantime::format_duration(cfg.interval(global)).to_string(),
    );
    set_default(
        &mut labels,
        "__scrape_timeout__",
        humantime::format_duration(cfg.timeout(global)).to_string(),
    );
    for (name, values) in &cfg.params {
        if let Some(first) = values.first() {
            set_default(&mut labels, &format!("__param_{name}"), first.clone());
        }
    }
    if !relabel.apply(&mut labels) {
        return None;
    }
    let address = relabel::get(&labels, "__address__")
        .filter(|a| !a.is_empty())?
        .to_owned();
    let scheme = relabel::get(&labels, "__scheme__")
        .unwrap_or("http")
        .to_owned();
    let path = relabel::get(&labels, "__metrics_path__")
        .unwrap_or("/metrics")
        .to_owned();
    let mut url = match reqwest::Url::parse(&format!("{scheme}://{address}{path}")) {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(job = %cfg.job_name, address, error = %e, "target dropped: its URL is invalid");
            return None;
        }
    };
    {
        let mut query = url.query_pairs_mut();
        for (name, values) in &cfg.params {
            match relabel::get(&labels, &format!("__param_{name}")) {
                Some(v) => {
                    query.append_pair(name, v);
                    for extra in values.iter().skip(1) {
                        query.append_pair(name, extra);
                    }
                }
                None => {
                    for v in values {
                        query.append_pair(name, v);
                    }
                }
            }
        }
        // Parameters set only by relabeling (`__param_x` with no `params.x`).
        for (k, v) in &labels {
            if let Some(name) = k.strip_prefix("__param_") {
                if !cfg.params.contains_key(name) {
                    query.append_pair(name, v);
                }
            }
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    let instance = relabel::get(&labels, INSTANCE_LABEL)
        .unwrap_or(&address)
        .to_owned();
    let job = relabel::get(&labels, JOB_LABEL).unwrap_or("").to_owned();
    let public: Labels = labels
        .iter()
        .filter(|(k, _)| !k.starts_with("__") && k != JOB_LABEL && k != INSTANCE_LABEL)
        .cloned()
        .collect();
    let mut h = DefaultHasher::new();
    job.hash(&mut h);
    instance.hash(&mut h);
    public.hash(&mut h);
    url.as_str().hash(&mut h);
    let key = h.finish();
    let endpoint = Endpoint {
        scheme: url.scheme().to_owned(),
        host: url.host_str().unwrap_or_default().to_owned(),
        port: url.port_or_known_default(),
    };
    Some(ScrapeTarget {
        url,
        key,
        target: Target {
            job,
            instance,
            endpoint,
            labels: public,
            honor_timestamps: cfg.honor_timestamps,
        },
    })
}

#[cfg(test)]
mod tests;
