//! The scrape loop of one target: fetch, parse, relabel, convert, queue, every interval. The loop owns
//! the target's [`SeriesCache`], so a series is parsed and relabeled in full only the first time it is
//! seen (see [`convert`]).
//!
//! Timing: a target is scraped at a fixed phase of its job's interval, offset by a hash of the target,
//! so the targets of a job spread over the interval instead of firing together (Prometheus does the
//! same). The phase is anchored to wall-clock multiples of the interval, so it survives a restart.
//!
//! Backpressure: the scraped data is admitted into the pipelines without waiting for room, and the loop
//! waits until it is durably queued before it sleeps again. A refusal (queue above its high watermark,
//! pipeline input full, memory limit) skips the scrape and counts it
//! (`outpost_receiver_skipped_scrapes_total{reason}` and the refused items); a scrape still being queued
//! when the next is due makes that one skip (`reason="late"`). At most one scrape per target is ever in
//! memory, so a stalled queue cannot grow the process.
//!
//! A failed scrape (connection refused, timeout, HTTP status other than 200, body over the limit, a page
//! that does not parse, a limit exceeded) yields `up` = 0 and staleness markers for the target's series,
//! and is logged with its reason: at warn level when the target goes down or the error changes, at debug
//! level while it stays the same.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::header;
use outpost_config::{BasicAuth, ScrapeConfig};
use outpost_pipelines::telemetry::{ReceiverMetrics, ScrapeMetrics};
use outpost_pipelines::{Metrics, Refusal};
use tokio_util::sync::CancellationToken;

use super::convert::{self, ScrapeReport, SeriesCache, Target};
use super::relabel::{self, Relabeler};
use crate::prom::to_otlp::{Labels, INSTANCE_LABEL, JOB_LABEL, NAME_LABEL};
use crate::receivers::{admit_encoded, Inputs, Outcome};

/// What every target of a job shares.
pub struct Job {
    pub receiver: String,
    pub name: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub honor_labels: bool,
    pub sample_limit: usize,
    pub label_limit: usize,
    pub body_limit: u64,
    pub metric_relabel: Relabeler,
    pub auth: Auth,
    pub client: reqwest::Client,
    pub inputs: Arc<Inputs>,
    pub receiver_metrics: ReceiverMetrics,
    pub scrape_metrics: ScrapeMetrics,
}

/// How a job authenticates. Secrets in files are read at every scrape, so rotation needs no restart.
#[derive(Debug, Clone, Default)]
pub enum Auth {
    #[default]
    None,
    Basic {
        username: String,
        password: Secret,
    },
    /// `Authorization: <scheme> <credentials>`.
    Header {
        scheme: String,
        credentials: Secret,
    },
}

#[derive(Debug, Clone)]
pub enum Secret {
    Inline(String),
    File(std::path::PathBuf),
}

impl Secret {
    fn read(&self) -> Result<String, String> {
        match self {
            Secret::Inline(s) => Ok(s.clone()),
            Secret::File(p) => std::fs::read_to_string(p)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|e| format!("cannot read the secret file '{}': {e}", p.display())),
        }
    }
}

impl Auth {
    pub fn of(job: &ScrapeConfig) -> Self {
        if let Some(BasicAuth {
            username,
            password,
            password_file,
        }) = &job.basic_auth
        {
            let password = match password_file {
                Some(f) => Secret::File(f.clone()),
                None => Secret::Inline(password.clone().unwrap_or_default()),
            };
            return Auth::Basic {
                username: username.clone(),
                password,
            };
        }
        if let Some(a) = &job.authorization {
            let credentials = match &a.credentials_file {
                Some(f) => Secret::File(f.clone()),
                None => Secret::Inline(a.credentials.clone().unwrap_or_default()),
            };
            return Auth::Header {
                scheme: a.kind.clone(),
                credentials,
            };
        }
        match (&job.bearer_token, &job.bearer_token_file) {
            (_, Some(f)) => Auth::Header {
                scheme: "Bearer".into(),
                credentials: Secret::File(f.clone()),
            },
            (Some(t), None) => Auth::Header {
                scheme: "Bearer".into(),
                credentials: Secret::Inline(t.clone()),
            },
            (None, None) => Auth::None,
        }
    }
}

/// One target to scrape.
pub struct ScrapeTarget {
    /// Parsed once: parsing it for every scrape was a measurable share of a scrape's cost.
    pub url: reqwest::Url,
    pub target: Target,
    /// Identity of the target within its job (hash of its labels and URL): the scrape phase.
    pub key: u64,
}

/// Why a scrape failed, said the way an operator reads it in the log.
type ScrapeError = String;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The first moment at or after now at which `offset` into an interval has elapsed, on wall-clock
/// multiples of the interval.
fn first_tick(interval: Duration, offset: Duration) -> tokio::time::Instant {
    let interval_ns = interval.as_nanos().max(1);
    let now_wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let phase = now_wall % interval_ns;
    let offset_ns = offset.as_nanos() % interval_ns;
    let wait = (offset_ns + interval_ns - phase) % interval_ns;
    tokio::time::Instant::now() + Duration::from_nanos(wait as u64)
}

/// Runs until `shutdown` (ends at once) or `removed` (ends after marking every series stale).
pub async fn run(
    job: Arc<Job>,
    st: ScrapeTarget,
    shutdown: CancellationToken,
    removed: CancellationToken,
) {
    let interval = job.interval;
    let offset = Duration::from_nanos(st.key % (interval.as_nanos().max(1) as u64));
    let mut next = first_tick(interval, offset);
    let mut cache = SeriesCache::default();
    let mut buffers = PageBuffers::default();
    let mut last_error: Option<String> = None;
    tracing::debug!(job = %job.name, url = %st.url, ?offset, "scraping target");
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = removed.cancelled() => break,
            _ = tokio::time::sleep_until(next) => {}
        }
        let scrape_start_ns = now_ns();
        let started = Instant::now();
        // A scrape in flight (up to scrape_timeout) must not hold up shutdown.
        let fetched = tokio::select! {
            r = fetch_page(&job, &st.url, &mut buffers) => r,
            _ = shutdown.cancelled() => return,
        };
        cache.begin(&st.target, scrape_start_ns);
        let result = fetched.and_then(|()| {
            let page_bytes = buffers.page.len();
            read_page(&job, &st.target, &mut cache, &mut buffers.page)
                .map(|stats| (stats, page_bytes))
        });
        let duration = started.elapsed().as_secs_f64();
        let (report, page_bytes) = match result {
            Ok(((scraped, kept), page_bytes)) => {
                if last_error.take().is_some() {
                    tracing::info!(job = %job.name, url = %st.url, "target is up again");
                }
                job.scrape_metrics.scraped(true);
                (
                    ScrapeReport {
                        up: true,
                        duration_seconds: duration,
                        samples_scraped: scraped,
                        samples_post_relabeling: kept,
                    },
                    page_bytes,
                )
            }
            Err(e) => {
                // Nothing of a failed page is kept.
                cache.begin(&st.target, scrape_start_ns);
                job.scrape_metrics.scraped(false);
                if last_error.as_deref() != Some(e.as_str()) {
                    tracing::warn!(job = %job.name, url = %st.url, error = %e, "scrape failed; the target is down (up = 0)");
                } else {
                    tracing::debug!(job = %job.name, url = %st.url, error = %e, "scrape failed");
                }
                last_error = Some(e);
                (
                    ScrapeReport {
                        up: false,
                        duration_seconds: duration,
                        samples_scraped: 0,
                        samples_post_relabeling: 0,
                    },
                    0,
                )
            }
        };
        let converted = cache.finish_encoded(&st.target, Some(report));
        deliver(&job, &mut cache, converted, page_bytes).await;

        next += interval;
        let now = tokio::time::Instant::now();
        while next <= now {
            job.scrape_metrics.skipped("late");
            next += interval;
        }
    }
    // The target was removed: its series end now.
    if !cache.is_empty() {
        cache.begin(&st.target, now_ns());
        let converted = cache.finish_encoded(&st.target, None);
        deliver(&job, &mut cache, converted, 0).await;
    }
}

/// Queues one converted scrape and, once it is queued, makes it the state the next one is compared
/// with. A refusal skips the scrape (counted) and keeps the previous state. The scrape travels as the
/// protobuf its cache wrote ([`SeriesCache::finish_encoded`]), decoded only for a processor that reads
/// items. It is charged against a memory_limiter at the larger of the page's size and its encoded size.
async fn deliver(
    job: &Job,
    cache: &mut SeriesCache,
    converted: convert::Converted<Vec<u8>>,
    page_bytes: usize,
) {
    for (reason, n) in &converted.dropped {
        job.receiver_metrics
            .refused(outpost_config::Signal::Metrics, reason, *n);
    }
    if converted.points == 0 {
        convert::commit(cache, converted.next);
        return;
    }
    let bytes = page_bytes.max(converted.request.len()) as u64;
    let outcome = admit_encoded::<Metrics>(
        &job.inputs,
        &job.receiver_metrics,
        converted.request,
        converted.points,
        bytes,
    )
    .await;
    match outcome {
        Outcome::Accepted(_) => {
            convert::commit(cache, converted.next);
        }
        Outcome::Refused(Refusal::Pressure(reason)) => {
            job.scrape_metrics.skipped(reason);
            tracing::debug!(job = %job.name, reason, "pipeline pushed back; scrape skipped");
        }
        Outcome::Refused(Refusal::Unavailable(reason)) => {
            job.scrape_metrics.skipped(reason);
        }
        Outcome::NotEnabled => {}
    }
}

/// A target's buffers for the page, kept across scrapes for their capacity (see
/// [`SeriesCache::add_owned_page`]).
#[derive(Default)]
struct PageBuffers {
    /// The page being read; after a scrape read in full, the one before it (the cache keeps the
    /// newest).
    page: String,
    /// A gzip-encoded body before it is decompressed into `page`.
    compressed: Vec<u8>,
}

/// Fetches one page into `buffers.page`, within `scrape_timeout`.
async fn fetch_page(
    job: &Job,
    url: &reqwest::Url,
    buffers: &mut PageBuffers,
) -> Result<(), ScrapeError> {
    match tokio::time::timeout(job.timeout, fetch(job, url, buffers)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no complete answer within scrape_timeout ({})",
            humantime::format_duration(job.timeout)
        )),
    }
}

/// Reads a page into the scrape `cache` has begun: every sample through [`sample_labels`] (once per
/// series: the cache remembers the outcome), then the limits. Returns the number of samples exposed
/// and the number kept after metric relabeling.
pub fn read_page(
    job: &Job,
    target: &Target,
    cache: &mut SeriesCache,
    page: &mut String,
) -> Result<(usize, usize), ScrapeError> {
    // Counted as Prometheus counts them: the series' labels with the target's merged in.
    let target_labels = 2 + target.labels.len();
    let stats = cache
        .add_owned_page(target, page, |labels| {
            if !sample_labels(labels, target, job) {
                return Ok(false);
            }
            if job.label_limit > 0 && labels.len() + target_labels > job.label_limit {
                return Err(format!(
                    "series '{}' has {} labels, more than label_limit ({})",
                    relabel::get(labels, NAME_LABEL).unwrap_or(""),
                    labels.len() + target_labels,
                    job.label_limit
                ));
            }
            Ok(true)
        })
        .map_err(|e| format!("the page does not parse: {e}"))?;
    if job.sample_limit > 0 && stats.kept > job.sample_limit {
        return Err(format!(
            "{} samples exceed sample_limit ({}); nothing from this scrape is kept",
            stats.kept, job.sample_limit
        ));
    }
    if let Some(e) = stats.limit_error {
        return Err(e);
    }
    Ok((stats.exposed, stats.kept))
}

/// Prepares one sample's labels as Prometheus does before storing it: labels that clash with the
/// target's are renamed `exported_<name>` (or kept, with `honor_labels`), then `metric_relabel_configs`
/// run on the labels with the target's merged in. Target labels still equal to the target's are then
/// removed again: they travel once, on the resource. Returns false when relabeling drops the sample.
pub fn sample_labels(labels: &mut Labels, target: &Target, job: &Job) -> bool {
    let target_labels = || {
        [
            (JOB_LABEL, target.job.as_str()),
            (INSTANCE_LABEL, target.instance.as_str()),
        ]
        .into_iter()
        .chain(target.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    };
    if !job.honor_labels {
        let mut renamed = false;
        for (name, _) in target_labels() {
            if let Ok(i) = labels.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
                labels[i].0 = format!("exported_{name}");
                renamed = true;
            }
        }
        if renamed {
            labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
    }
    if job.metric_relabel.is_empty() {
        return true;
    }
    for (name, value) in target_labels() {
        if relabel::get(labels, name).is_none() {
            relabel::set(labels, name, value.to_owned());
        }
    }
    if !job.metric_relabel.apply(labels) || relabel::get(labels, NAME_LABEL).is_none() {
        return false;
    }
    labels.retain(|(k, v)| !target_labels().any(|(tk, tv)| tk == k && tv == v));
    true
}

async fn fetch(
    job: &Job,
    url: &reqwest::Url,
    buffers: &mut PageBuffers,
) -> Result<(), ScrapeError> {
    let mut req = job
        .client
        .get(url.clone())
        .header(header::ACCEPT, "text/plain;version=0.0.4;q=1,*/*;q=0.1")
        .header(header::ACCEPT_ENCODING, "gzip")
        .header(
            "X-Prometheus-Scrape-Timeout-Seconds",
            format!("{}", job.timeout.as_secs_f64()),
        );
    match &job.auth {
        Auth::None => {}
        Auth::Basic { username, password } => {
            req = req.basic_auth(username, Some(password.read()?));
        }
        Auth::Header {
            scheme,
            credentials,
        } => {
            req = req.header(
                header::AUTHORIZATION,
                format!("{scheme} {}", credentials.read()?),
            );
        }
    }
    let mut resp = req.send().await.map_err(|e| describe_reqwest(&e))?;
    if resp.status() != http::StatusCode::OK {
        return Err(format!("the target answered HTTP {}", resp.status()));
    }
    let gzip = resp
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    let limit = job.body_limit;
    // The page is read into the target's kept buffer: its bytes are checked as UTF-8 only once it is
    // complete, so the String is taken apart for the read and put back (empty on an error).
    let mut page = std::mem::take(&mut buffers.page).into_bytes();
    page.clear();
    let body = if gzip {
        &mut buffers.compressed
    } else {
        &mut page
    };
    body.clear();
    // Reserved from Content-Length when there is one: growing a page-sized buffer chunk by chunk
    // copies it several times over.
    let expected = resp.content_length().unwrap_or(0).min(limit);
    body.reserve(usize::try_from(expected).unwrap_or(0));
    while let Some(chunk) = resp.chunk().await.map_err(|e| describe_reqwest(&e))? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    if gzip {
        page.reserve(buffers.compressed.len() * 4);
        flate2::read::GzDecoder::new(&buffers.compressed[..])
            .take(limit + 1)
            .read_to_end(&mut page)
            .map_err(|e| format!("the gzip body does not decompress: {e}"))?;
        if page.len() as u64 > limit {
            return Err(too_large(limit));
        }
    }
    match String::from_utf8(page) {
        Ok(page) => {
            buffers.page = page;
            Ok(())
        }
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let mut bytes = e.into_bytes();
            bytes.clear();
            // Empty, so valid UTF-8: the buffer's capacity is kept.
            buffers.page = String::from_utf8(bytes).unwrap_or_default();
            Err(format!(
                "the page is not UTF-8 text (invalid byte at offset {at})"
            ))
        }
    }
}

fn too_large(limit: u64) -> String {
    format!("the page is larger than body_size_limit ({limit} bytes)")
}

/// reqwest's error with its causes, which hold the useful part ("connection refused").
fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_tick_keeps_the_phase_within_one_interval() {
        let interval = Duration::from_secs(10);
        for offset_ms in [0u64, 1, 3_000, 9_999] {
            let t = first_tick(interval, Duration::from_millis(offset_ms));
            let wait = t - tokio::time::Instant::now();
            assert!(wait <= interval, "{offset_ms}: {wait:?}");
            // The tick falls at the offset's phase of the wall-clock interval.
            let at = SystemTime::now() + wait;
            let phase_ms = at.duration_since(UNIX_EPOCH).unwrap().as_millis() % 10_000;
            let diff = (phase_ms as i64 - offset_ms as i64).rem_euclid(10_000);
            assert!(
                !(50..=9_950).contains(&diff),
                "{offset_ms}: phase {phase_ms}"
            );
        }
    }
}
