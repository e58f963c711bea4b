//! Rules of the Prometheus receivers that serde cannot express: job names unique, timeouts within their
//! interval, targets that are `host:port`, label names Prometheus accepts, relabel regexes that compile
//! and actions that have what they need. Each finding names the YAML path of the key to fix.

use std::collections::HashMap;

use crate::prometheus::*;
use crate::report::Report;
use crate::source::{index_path, key_path};

pub(super) fn scrape(r: &mut Report, path: &str, cfg: &PrometheusReceiverConfig) {
    let config_path = key_path(path, "config");
    let jobs_path = key_path(&config_path, "scrape_configs");
    let global = &cfg.config.global;
    let global_path = key_path(&config_path, "global");
    if global.scrape_interval.get().is_zero() {
        r.error(
            &key_path(&global_path, "scrape_interval"),
            "scrape_interval must be greater than 0",
        );
    }
    if cfg.config.scrape_configs.is_empty() {
        r.error(
            &jobs_path,
            "no scrape_configs: add at least one job, e.g. {job_name: node, static_configs: [{targets: \
             ['127.0.0.1:9100']}]}",
        );
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, job) in cfg.config.scrape_configs.iter().enumerate() {
        let job_path = index_path(&jobs_path, i);
        let name_path = key_path(&job_path, "job_name");
        if job.job_name.trim().is_empty() {
            r.error(&name_path, "job_name is empty; name the job");
        } else if let Some(first) = names.insert(&job.job_name, i) {
            r.error(
                &name_path,
                format!(
                    "job_name '{}' is also used by scrape_configs[{first}]; job names must be unique",
                    job.job_name
                ),
            );
        }
        scrape_job(r, &job_path, job, global);
    }
}

fn scrape_job(r: &mut Report, path: &str, job: &ScrapeConfig, global: &PromGlobalConfig) {
    let interval = job.interval(global);
    if interval.is_zero() {
        r.error(
            &key_path(path, "scrape_interval"),
            "scrape_interval must be greater than 0",
        );
    }
    if let Some(timeout) = job.scrape_timeout {
        if timeout.get().is_zero() {
            r.error(
                &key_path(path, "scrape_timeout"),
                "scrape_timeout must be greater than 0",
            );
        } else if timeout.get() > interval {
            r.error(
                &key_path(path, "scrape_timeout"),
                format!(
                    "scrape_timeout ({}) is longer than scrape_interval ({}); a scrape must end before \
                     the next one starts: lower the timeout or raise the interval",
                    humantime::format_duration(timeout.get()),
                    humantime::format_duration(interval)
                ),
            );
        }
    }
    if !job.metrics_path.starts_with('/') {
        r.error(
            &key_path(path, "metrics_path"),
            format!(
                "metrics_path '{}' must start with '/' (e.g. /metrics)",
                job.metrics_path
            ),
        );
    }
    if let Some(tls) = &job.tls_config {
        super::tls::exporter(
            r,
            path,
            &tls.to_tls(),
            &crate::tls::ExporterAuthConfig::default(),
            &[],
        );
    }
    if job.body_size_limit.is_some_and(|b| b.bytes() == 0) {
        r.error(
            &key_path(path, "body_size_limit"),
            "body_size_limit must be greater than 0 (leave it unset for the default of 64MiB)",
        );
    }
    auth(r, path, job);
    if job.static_configs.is_empty() && job.file_sd_configs.is_empty() {
        r.warning(
            path,
            format!(
                "job '{}' has no static_configs and no file_sd_configs, so it scrapes nothing",
                job.job_name
            ),
        );
    }
    for (i, sc) in job.static_configs.iter().enumerate() {
        let sc_path = index_path(&key_path(path, "static_configs"), i);
        for (j, target) in sc.targets.iter().enumerate() {
            if let Err(e) = check_target(target) {
                r.error(&index_path(&key_path(&sc_path, "targets"), j), e);
            }
        }
        target_labels(r, &key_path(&sc_path, "labels"), &sc.labels);
    }
    for (i, fsd) in job.file_sd_configs.iter().enumerate() {
        let fsd_path = index_path(&key_path(path, "file_sd_configs"), i);
        if fsd.files.is_empty() {
            r.error(
                &key_path(&fsd_path, "files"),
                "files is empty; list the target files (JSON or YAML), e.g. [targets/*.json]",
            );
        }
        for (j, file) in fsd.files.iter().enumerate() {
            if let Err(e) = check_sd_file(file) {
                r.error(&index_path(&key_path(&fsd_path, "files"), j), e);
            }
        }
        if fsd.refresh_interval.get().is_zero() {
            r.error(
                &key_path(&fsd_path, "refresh_interval"),
                "refresh_interval must be greater than 0",
            );
        }
    }
    relabel_configs(r, &key_path(path, "relabel_configs"), &job.relabel_configs);
    relabel_configs(
        r,
        &key_path(path, "metric_relabel_configs"),
        &job.metric_relabel_configs,
    );
}

fn auth(r: &mut Report, path: &str, job: &ScrapeConfig) {
    let bearer_legacy = job.bearer_token.is_some() || job.bearer_token_file.is_some();
    let methods = [
        job.basic_auth.is_some(),
        job.authorization.is_some(),
        bearer_legacy,
    ]
    .iter()
    .filter(|m| **m)
    .count();
    if methods > 1 {
        r.error(
            path,
            "more than one of basic_auth, authorization and bearer_token(_file) is set; a request has \
             one Authorization header: keep one",
        );
    }
    if job.bearer_token.is_some() && job.bearer_token_file.is_some() {
        r.error(
            &key_path(path, "bearer_token_file"),
            "both bearer_token and bearer_token_file are set; keep one",
        );
    }
    if let Some(b) = &job.basic_auth {
        let b_path = key_path(path, "basic_auth");
        if b.password.is_some() && b.password_file.is_some() {
            r.error(
                &key_path(&b_path, "password_file"),
                "both password and password_file are set; keep one",
            );
        }
    }
    if let Some(a) = &job.authorization {
        let a_path = key_path(path, "authorization");
        if a.credentials.is_some() && a.credentials_file.is_some() {
            r.error(
                &key_path(&a_path, "credentials_file"),
                "both credentials and credentials_file are set; keep one",
            );
        }
        if a.kind.eq_ignore_ascii_case("basic") {
            r.error(
                &key_path(&a_path, "type"),
                "authorization type 'Basic' is set with basic_auth: {username, password} instead",
            );
        }
        if a.kind.trim().is_empty() || a.kind.contains(char::is_whitespace) {
            r.error(
                &key_path(&a_path, "type"),
                format!("'{}' is not an authorization scheme (e.g. Bearer)", a.kind),
            );
        }
    }
}

/// A file_sd path: JSON or YAML, with a glob in the last path element at most.
fn check_sd_file(file: &str) -> Result<(), String> {
    let (dir, name) = match file.rsplit_once('/') {
        Some((d, n)) => (d, n),
        None => ("", file),
    };
    if dir.contains(['*', '?', '[']) {
        return Err(format!(
            "'{file}': only the last path element may be a glob (e.g. targets/*.json)"
        ));
    }
    let lower = name.to_ascii_lowercase();
    if !(lower.ends_with(".json") || lower.ends_with(".yml") || lower.ends_with(".yaml")) {
        return Err(format!(
            "'{file}': target files must end in .json, .yml or .yaml (the extension picks the format)"
        ));
    }
    if let Err(e) = glob::Pattern::new(name) {
        return Err(format!("'{file}' is not a valid glob: {e}"));
    }
    Ok(())
}

fn target_labels(r: &mut Report, path: &str, labels: &std::collections::BTreeMap<String, String>) {
    for name in labels.keys() {
        if !is_label_name(name) {
            r.key_error(
                &key_path(path, name),
                format!(
                    "'{name}' is not a label name (letters, digits and '_', not starting with a digit)"
                ),
            );
        }
    }
}

fn relabel_configs(r: &mut Report, path: &str, steps: &[RelabelConfig]) {
    for (i, step) in steps.iter().enumerate() {
        relabel_config(r, &index_path(path, i), step);
    }
}

fn relabel_config(r: &mut Report, path: &str, c: &RelabelConfig) {
    let action = c.action.as_str();
    if let Err(e) = regex::Regex::new(&format!("^(?:{})$", c.regex)) {
        let detail = e.to_string();
        let last = detail.lines().last().unwrap_or("").trim();
        r.error(
            &key_path(path, "regex"),
            format!("'{}' is not a valid regex: {last}", c.regex),
        );
    }
    for (i, l) in c.source_labels.iter().enumerate() {
        if !is_label_name(l) {
            r.error(
                &index_path(&key_path(path, "source_labels"), i),
                format!("'{l}' is not a label name"),
            );
        }
    }
    let target_path = key_path(path, "target_label");
    let needs_target = matches!(
        c.action,
        RelabelAction::Replace
            | RelabelAction::HashMod
            | RelabelAction::KeepEqual
            | RelabelAction::DropEqual
            | RelabelAction::Lowercase
            | RelabelAction::Uppercase
    );
    match (&c.target_label, needs_target) {
        (None, true) => r.error(
            path,
            format!("action '{action}' needs target_label; add the label to write"),
        ),
        (Some(t), true) => {
            // replace may build the name from capture groups (`${1}_suffix`); the result is checked at
            // run time.
            let templated = c.action == RelabelAction::Replace && t.contains('$');
            if !templated && !is_label_name(t) {
                r.error(&target_path, format!("'{t}' is not a label name"));
            }
        }
        (Some(_), false)
            if matches!(
                c.action,
                RelabelAction::LabelDrop | RelabelAction::LabelKeep
            ) =>
        {
            r.error(
                &target_path,
                format!(
                    "action '{action}' takes no target_label; it matches label names with regex"
                ),
            );
        }
        _ => {}
    }
    if matches!(
        c.action,
        RelabelAction::LabelDrop | RelabelAction::LabelKeep
    ) && !c.source_labels.is_empty()
    {
        r.error(
            &key_path(path, "source_labels"),
            format!("action '{action}' takes no source_labels; it matches label names with regex"),
        );
    }
    if matches!(
        c.action,
        RelabelAction::Keep
            | RelabelAction::Drop
            | RelabelAction::HashMod
            | RelabelAction::KeepEqual
            | RelabelAction::DropEqual
    ) && c.source_labels.is_empty()
    {
        r.error(
            path,
            format!("action '{action}' needs source_labels; list the labels whose values it tests"),
        );
    }
    if c.action == RelabelAction::HashMod {
        match c.modulus {
            None | Some(0) => r.error(
                path,
                "action 'hashmod' needs a modulus greater than 0 (e.g. modulus: 4)",
            ),
            _ => {}
        }
    }
}

pub(super) fn remote_write(r: &mut Report, path: &str, cfg: &PrometheusRemoteWriteReceiverConfig) {
    if !cfg.path.starts_with('/') {
        r.error(
            &key_path(path, "path"),
            format!(
                "path '{}' must start with '/' (e.g. /api/v1/write)",
                cfg.path
            ),
        );
    }
    if cfg.max_request_body_size.bytes() == 0 {
        r.error(
            &key_path(path, "max_request_body_size"),
            "max_request_body_size must be greater than 0",
        );
    }
    if cfg.max_decompressed_body_size < cfg.max_request_body_size {
        r.error(
            &key_path(path, "max_decompressed_body_size"),
            format!(
                "max_decompressed_body_size ({}) is smaller than max_request_body_size ({}); raise it",
                cfg.max_decompressed_body_size, cfg.max_request_body_size
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_host_and_port() {
        assert!(check_target("127.0.0.1:9100").is_ok());
        assert!(check_target("node-1").is_ok());
        assert!(check_target("[::1]:9100").is_ok());
        assert!(check_target("http://x:1").unwrap_err().contains("scheme"));
        assert!(check_target("x:1/metrics").unwrap_err().contains("path"));
        assert!(check_target("x:port").unwrap_err().contains("port number"));
        assert!(check_target("::1:9100").unwrap_err().contains("brackets"));
        assert!(check_target("").is_err());
    }

    #[test]
    fn sd_files_glob_only_their_last_element() {
        assert!(check_sd_file("targets/*.json").is_ok());
        assert!(check_sd_file("/etc/outpost/nodes.yaml").is_ok());
        assert!(check_sd_file("*/nodes.yaml").is_err());
        assert!(check_sd_file("targets/nodes.txt").is_err());
    }

    #[test]
    fn label_names() {
        assert!(is_label_name("__address__"));
        assert!(is_label_name("env2"));
        assert!(!is_label_name("2env"));
        assert!(!is_label_name("a-b"));
        assert!(!is_label_name(""));
    }
}
