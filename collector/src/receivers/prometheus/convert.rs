//! One scrape of one target → an OTLP metrics request, with start times and staleness.
//!
//! Samples (after metric relabeling) are grouped into metric families by their TYPE: `_bucket`, `_sum`,
//! `_count` and `_created` lines join their histogram, summary or counter, after relabeling as in
//! Prometheus. Then, per the OpenTelemetry specification's compatibility rules:
//!
//! - counter → monotonic cumulative Sum; gauge and untyped → Gauge (`prometheus.type` metadata says
//!   which); histogram → Histogram (`le` buckets, de-cumulated); summary → Summary. A histogram or
//!   summary without `_count` is dropped (counted, reason `incomplete_histogram` / `incomplete_summary`).
//! - Start time of a cumulative point: its `_created` value; else the first time outpost saw the series;
//!   after a reset (the value, or a histogram's count, went down) the time of the previous observation,
//!   the last moment the old run is known to have been alive.
//! - The target is the resource (`service.name` = job, `service.instance.id` = instance, `server.*`,
//!   `url.scheme`, the target's other labels, and the labels of an exposed `target_info`, which is not
//!   forwarded as a metric). A series still carrying a `job` / `instance` of its own (kept by
//!   `honor_labels`, or set by metric relabeling; see [`super::scrape::sample_labels`]) gets a resource of
//!   its own (federation, Pushgateway).
//! - Staleness: a series seen in the previous scrape and absent from this one (every series, when the
//!   scrape failed; every series and the synthetic ones, when the target goes away) gets a point with the
//!   `NoRecordedValue` flag.
//!
//! # The scrape cache
//!
//! A target exposes the same series scrape after scrape, so [`SeriesCache`] prepares each series once
//! (Prometheus's scrape cache, kept per target the same way):
//!
//! - a *slot* per series holds everything about it that does not change between scrapes: its metric
//!   (resource, scope, family, kind: a *group*), its OTLP attributes, and its cumulative state;
//! - a *line* entry maps the raw series text of a sample line (`name{labels}`, the bytes before the
//!   value, hashed once with xxh3 and compared in full) to what the line contributes: its slot, its role
//!   in the family (value, bucket, sum, count, created) and its bucket bound or quantile; or to "dropped
//!   by `metric_relabel_configs`".
//!
//! A known line then costs a hash, a lookup, and parsing its value (and timestamp): no label parsing, no
//! relabeling, no allocation. Since a target lists its series in the same order every time, a line is
//! first compared with the line at its position on the last page read in full (kept with where each of
//! its lines' series text is and what it resolved to): two buffers read in order instead of a hash and
//! a probe into cold memory; only a line that moved is looked up.
//!
//! The request is written straight into its protobuf encoding ([`SeriesCache::finish_encoded`], see
//! [`encode`]): each slot keeps its attributes encoded once. [`SeriesCache::finish`] builds the same
//! request as owned structs, the reference the encoder is tested against. A line the cache does not know is parsed in full, relabeled and resolved
//! (and remembered). Line entries are only right for the families' TYPEs they were resolved under: when
//! the page's comment lines change, the families are re-read, and if a TYPE changed every line entry is
//! forgotten. The relabel rules, `honor_labels` and the target's labels are fixed for the life of a
//! scrape loop, which owns its cache, so they never invalidate it. Slots and lines not seen for
//! [`EVICT_AFTER`] scrapes (and no longer waiting for a staleness marker) are dropped, which bounds the
//! cache by the series of the last few scrapes.
//!
//! The cumulative state of a slot is read while converting and replaced only by [`commit`], so a scrape
//! the pipeline refused leaves the state as of the last scrape that was queued: the next scrape still
//! marks what disappeared in between.

use std::hash::BuildHasher;

use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, summary_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use outpost_pipelines::Metrics;
use rustc_hash::{FxBuildHasher, FxHashMap};
use xxhash_rust::xxh3::xxh3_64;

use super::parse::{self, FamilyMeta, FamilyType, ParseError, RawSample};
use crate::prom::to_otlp::{
    self, double_point, resource_attributes, stale_point, string_kv, Endpoint, Labels,
    INSTANCE_LABEL, JOB_LABEL, NAME_LABEL, NO_RECORDED_VALUE,
};

/// Scrapes after which a series (or a series text) that has not been seen is forgotten, once its
/// staleness marker has been queued.
pub const EVICT_AFTER: u64 = 10;

/// The OTLP shape a series takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Gauge,
    Counter,
    Histogram,
    Summary,
}

/// Who was scraped: the resource of everything the scrape yields.
#[derive(Debug, Clone)]
pub struct Target {
    pub job: String,
    pub instance: String,
    pub endpoint: Endpoint,
    /// Target labels other than `job`, `instance` and `__*`, sorted.
    pub labels: Labels,
    pub honor_timestamps: bool,
}

/// The metric a series belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Group {
    /// `(job, instance)` when the series names its own (honor_labels), else the target's.
    resource: Option<(String, String)>,
    scope: Option<(String, String)>,
    family: String,
    kind: Kind,
}

/// What identifies one OTLP series.
#[derive(Hash)]
struct SeriesId<'a> {
    group: &'a Group,
    attrs: &'a Labels,
}

/// The cumulative state of a series after one scrape.
#[derive(Debug, Clone, Copy)]
struct Cumulative {
    start_ns: u64,
    /// The value (counter) or count (histogram, summary), for reset detection.
    last: f64,
    last_ns: u64,
}

/// One series, prepared once.
#[derive(Debug)]
struct Slot {
    key: u64,
    group: u32,
    /// The data point attributes as they are encoded in a point of the series' kind: the repeated
    /// `attributes` field, every `KeyValue` with its field key and length (see [`encode`]).
    attrs: Box<[u8]>,
    /// As of the last queued scrape; `Some` means the series is live and will be marked stale when it
    /// goes missing.
    committed: Option<Cumulative>,
    /// As of the scrape `pending_scrape`, for [`commit`].
    pending: Cumulative,
    pending_scrape: u64,
    /// The scrape in which `point` indexes this series' point; also when it was last seen.
    point_scrape: u64,
    point: u32,
}

/// What one sample line contributes to its series.
#[derive(Debug, Clone, Copy)]
struct LineRef {
    slot: u32,
    role: Role,
    /// The bucket bound or quantile.
    part: f64,
}

#[derive(Debug)]
struct LineEntry {
    text: Box<str>,
    /// `None`: dropped by `metric_relabel_configs`.
    line: Option<LineRef>,
    seen: u64,
}

/// A sample line of the last page (see [`SeriesCache::last_lines`]).
#[derive(Debug, Clone, Copy)]
struct PageLine {
    start: u32,
    end: u32,
    key: u64,
    line: Option<LineRef>,
}

impl PageLine {
    const NONE: PageLine = PageLine {
        start: 0,
        end: 0,
        key: 0,
        line: None,
    };
}

/// A point being assembled from one or more sample lines. Kept across scrapes so the bucket vectors
/// keep their capacity.
#[derive(Debug)]
struct PointAcc {
    slot: u32,
    time_ns: u64,
    created_ns: Option<u64>,
    value: f64,
    buckets: Vec<(f64, f64)>,
    sum: Option<f64>,
    count: Option<f64>,
}

/// The series of one target: see the module docs.
#[derive(Debug, Default)]
pub struct SeriesCache {
    slots: Vec<Slot>,
    by_key: FxHashMap<u64, u32>,
    groups: Vec<Group>,
    group_index: FxHashMap<Group, u32>,
    lines: FxHashMap<u64, LineEntry>,
    /// The families of the last page, and a hash of its comment lines they were read from.
    families: FxHashMap<String, FamilyMeta>,
    comments_hash: Option<u64>,
    /// Live series as of the last commit.
    committed: usize,

    // The scrape being converted.
    scrape: u64,
    now_ns: u64,
    points: Vec<PointAcc>,
    npoints: usize,
    extra_resource: Labels,
    dropped: Vec<(&'static str, usize)>,
    sample_lines: Vec<(u32, u32, u32)>,
    comment_lines: Vec<(u32, u32)>,
    /// The last page read in full, and its sample lines in page order: where each one's series text is
    /// in `last_page`, its key in `lines` and what it contributes (`None`: dropped by relabeling). A
    /// target lists its series in the same order scrape after scrape, so a line is first compared with
    /// the line at the same position of the last page: no hash, no lookup, and both texts are read in
    /// order. A span of `(0, 0)` is a line with no entry.
    last_page: String,
    last_lines: Vec<PageLine>,
    next_lines: Vec<PageLine>,
    /// The scrape `last_page` was read in.
    scrape_of_last_page: u64,
    /// What the scrape being finished emits, in request order ([`SeriesCache::plan`]).
    emitted: Vec<Emitted>,
    /// The encoder's work space, kept for its capacity.
    scratch: encode::Scratch,
}

/// Where an emitted point comes from, which decides how its metric is described when the point is
/// the first of its metric in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A sample of the page (its family's HELP and TYPE describe the metric).
    Scraped,
    /// `up` and the `scrape_*` series.
    Synthetic,
    /// A staleness marker (the family may be gone from the page).
    Stale,
}

/// [`Emitted::acc`] of a point that has no accumulator.
const NO_ACC: u32 = u32::MAX;

/// One point of the request being finished.
#[derive(Debug, Clone, Copy)]
struct Emitted {
    slot: u32,
    origin: Origin,
    /// The point's [`PointAcc`] in `points` (buckets, quantiles and sum), or [`NO_ACC`].
    acc: u32,
    start_ns: u64,
    time_ns: u64,
    /// The value of a number point, the count of a histogram or summary.
    value: f64,
}

impl SeriesCache {
    /// Live series: those a removal of the target marks stale.
    pub fn len(&self) -> usize {
        self.committed
    }

    pub fn is_empty(&self) -> bool {
        self.committed == 0
    }

    /// Series texts the cache knows.
    pub fn known_lines(&self) -> usize {
        self.lines.len()
    }

    /// Starts converting a scrape taken at `now_ns`; what a previous unfinished one added is discarded.
    pub fn begin(&mut self, target: &Target, now_ns: u64) {
        self.scrape += 1;
        self.now_ns = now_ns;
        self.npoints = 0;
        self.extra_resource.clone_from(&target.labels);
        self.dropped.clear();
    }

    /// Reads one page into the scrape begun with [`begin`](Self::begin). `prepare` turns the labels
    /// of a line the cache does not know into the series' labels (`Ok(false)`: dropped by relabeling;
    /// `Err`: the series breaks a limit, which fails the scrape after the page is read, without being
    /// remembered). A page that does not parse fails at its first bad line; then begin again.
    pub fn add_page(
        &mut self,
        target: &Target,
        page: &str,
        prepare: impl FnMut(&mut Labels) -> Result<bool, String>,
    ) -> Result<PageStats, ParseError> {
        let stats = self.read_page(target, page, prepare)?;
        // Only a page read to its end is the order the next one is compared with.
        self.last_page.clear();
        self.last_page.push_str(page);
        Ok(stats)
    }

    /// [`add_page`](Self::add_page) for a page the caller owns: a page read to its end is kept by
    /// swapping buffers instead of copying it, and `page` is handed back holding the previous one,
    /// whose capacity the caller reuses for the next fetch. A scrape thus allocates no page-sized
    /// buffer once the target's page size is reached: a fresh one each scrape costs the kernel its
    /// page faults and zeroing, as the allocator returns large freed blocks to the system between
    /// scrapes. On an error `page` is left as it was.
    pub fn add_owned_page(
        &mut self,
        target: &Target,
        page: &mut String,
        prepare: impl FnMut(&mut Labels) -> Result<bool, String>,
    ) -> Result<PageStats, ParseError> {
        let stats = self.read_page(target, page, prepare)?;
        std::mem::swap(&mut self.last_page, page);
        Ok(stats)
    }

    /// Reads `page`; on success `last_lines` describe it and the caller must make it `last_page`.
    fn read_page(
        &mut self,
        target: &Target,
        page: &str,
        mut prepare: impl FnMut(&mut Labels) -> Result<bool, String>,
    ) -> Result<PageStats, ParseError> {
        let mut stats = PageStats::default();
        let base = page.as_ptr() as usize;
        let offset = |s: &str| (s.as_ptr() as usize - base) as u32;
        self.sample_lines.clear();
        self.comment_lines.clear();
        let mut comments_hash = 0u64;
        for (number, line) in parse::lines(page) {
            if line.starts_with('#') {
                comments_hash = (comments_hash ^ xxh3_64(line.as_bytes()))
                    .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    .rotate_left(23);
                self.comment_lines
                    .push((offset(line), offset(line) + line.len() as u32));
            } else {
                self.sample_lines.push((
                    number as u32,
                    offset(line),
                    offset(line) + line.len() as u32,
                ));
            }
        }
        if self.comments_hash != Some(comments_hash) {
            let mut families = FxHashMap::default();
            for &(s, e) in &self.comment_lines {
                parse::metadata(&page[s as usize..e as usize], &mut families);
            }
            self.set_families(families);
            self.comments_hash = Some(comments_hash);
        }

        let sample_lines = std::mem::take(&mut self.sample_lines);
        self.next_lines.clear();
        let result = self.add_lines(target, page, &sample_lines, &mut prepare, &mut stats);
        self.sample_lines = sample_lines;
        if result.is_ok() {
            std::mem::swap(&mut self.last_lines, &mut self.next_lines);
            self.scrape_of_last_page = self.scrape;
        }
        result.map(|()| stats)
    }

    fn add_lines(
        &mut self,
        target: &Target,
        page: &str,
        sample_lines: &[(u32, u32, u32)],
        prepare: &mut impl FnMut(&mut Labels) -> Result<bool, String>,
        stats: &mut PageStats,
    ) -> Result<(), ParseError> {
        let scrape = self.scrape;
        let base = page.as_ptr() as usize;
        for (j, &(number, s, e)) in sample_lines.iter().enumerate() {
            let line = &page[s as usize..e as usize];
            stats.exposed += 1;
            let split = parse::split_sample(line);
            if let Some((series, value, ts)) = split {
                let value_ts = || {
                    let value = parse::parse_value(value)?;
                    let ts = match ts {
                        Some(t) => Some(parse::parse_timestamp(t)?),
                        None => None,
                    };
                    Some((value, ts))
                };
                let start = (series.as_ptr() as usize - base) as u32;
                let span = (start, start + series.len() as u32);
                // The line at the same position of the last page.
                let same = self.last_lines.get(j).copied().filter(|l| {
                    self.last_page.get(l.start as usize..l.end as usize) == Some(series)
                });
                let known = match same {
                    Some(l) => Some((l.key, l.line)),
                    None => {
                        let key = xxh3_64(series.as_bytes());
                        match self.lines.get_mut(&key) {
                            Some(entry) if *entry.text == *series => {
                                entry.seen = scrape;
                                Some((key, entry.line))
                            }
                            _ => None,
                        }
                    }
                };
                if let (Some((key, known)), Some((value, ts))) = (known, value_ts()) {
                    self.next_lines.push(PageLine {
                        start: span.0,
                        end: span.1,
                        key,
                        line: known,
                    });
                    if let Some(line) = known {
                        stats.kept += 1;
                        let time_ns = self.time_of(target, ts);
                        self.accumulate(line, value, time_ns);
                    }
                    continue;
                }
                // Unknown, or a bad value: the full parser reads it (and says what is wrong).
            }
            let sample = parse::sample_line(line).map_err(|message| ParseError {
                line: number as usize,
                message,
            })?;
            let RawSample {
                mut labels,
                value,
                timestamp_ms,
            } = sample;
            // Until it is remembered below, the line has no entry to compare the next page's with.
            self.next_lines.push(PageLine::NONE);
            let keep = match prepare(&mut labels) {
                Ok(keep) => keep,
                Err(e) => {
                    stats.kept += 1;
                    stats.limit_error.get_or_insert(e);
                    continue;
                }
            };
            // The split from the end is only a guess: it is the series text when it found the value and
            // timestamp the full parser found (with a timestamp, both took the last two tokens; a guess
            // without one where the parser found one differs in the timestamp). Otherwise the line is
            // read in full every time.
            let split = split.filter(|(_, _, ts)| match (ts, timestamp_ms) {
                (None, None) => true,
                (Some(t), Some(ms)) => parse::parse_timestamp(t) == Some(ms),
                _ => false,
            });
            let remember = |cache: &mut Self, line: Option<LineRef>| {
                if let Some((series, _, _)) = split {
                    let key = xxh3_64(series.as_bytes());
                    cache.lines.insert(
                        key,
                        LineEntry {
                            text: series.into(),
                            line,
                            seen: scrape,
                        },
                    );
                    let start = (series.as_ptr() as usize - base) as u32;
                    if let Some(last) = cache.next_lines.last_mut() {
                        *last = PageLine {
                            start,
                            end: start + series.len() as u32,
                            key,
                            line,
                        };
                    }
                }
            };
            if !keep {
                remember(self, None);
                continue;
            }
            stats.kept += 1;
            let time_ns = self.time_of(target, timestamp_ms);
            if let Some(line) = self.resolve(target, labels) {
                remember(self, Some(line));
                self.accumulate(line, value, time_ns);
            }
        }
        Ok(())
    }

    /// Adds samples already read and prepared (no line cache), under `families`.
    pub fn add_samples(
        &mut self,
        target: &Target,
        samples: Vec<RawSample>,
        families: &FxHashMap<String, FamilyMeta>,
    ) {
        if *families != self.families {
            self.set_families(families.clone());
            self.comments_hash = None;
        }
        for RawSample {
            labels,
            value,
            timestamp_ms,
        } in samples
        {
            let time_ns = self.time_of(target, timestamp_ms);
            if let Some(line) = self.resolve(target, labels) {
                self.accumulate(line, value, time_ns);
            }
        }
    }

    fn set_families(&mut self, families: FxHashMap<String, FamilyMeta>) {
        let kinds = |f: &FxHashMap<String, FamilyMeta>| {
            f.iter()
                .filter_map(|(name, m)| m.kind.map(|k| (name.clone(), k)))
                .collect::<FxHashMap<String, FamilyType>>()
        };
        if kinds(&families) != kinds(&self.families) {
            // Lines were resolved under the old TYPEs.
            self.lines.clear();
            self.last_lines.clear();
        }
        self.families = families;
    }

    fn time_of(&self, target: &Target, timestamp_ms: Option<i64>) -> u64 {
        match (target.honor_timestamps, timestamp_ms) {
            (true, Some(ms)) => to_otlp::ms_to_ns(ms),
            _ => self.now_ns,
        }
    }

    /// What a sample with these (prepared) labels contributes; `None` when it contributes no point
    /// (`target_info`, counted drops).
    fn resolve(&mut self, target: &Target, mut labels: Labels) -> Option<LineRef> {
        let name = to_otlp::take_label(&mut labels, NAME_LABEL)?;
        let (family, ftype, role) = classify(&name, &self.families);
        if family == "target_info" && matches!(ftype, FamilyType::Gauge | FamilyType::Untyped) {
            for (k, v) in labels {
                if k != JOB_LABEL && k != INSTANCE_LABEL {
                    self.extra_resource.retain(|(ek, _)| *ek != k);
                    self.extra_resource.push((k, v));
                }
            }
            return None;
        }
        let scope = to_otlp::take_scope(&mut labels);
        // `job` / `instance` left on a series (honor_labels, or metric relabeling) give it a resource
        // of its own when they differ from the target's.
        let job = to_otlp::take_label(&mut labels, JOB_LABEL);
        let instance = to_otlp::take_label(&mut labels, INSTANCE_LABEL);
        let resource = if job.is_some() || instance.is_some() {
            let pair = (
                job.unwrap_or_else(|| target.job.clone()),
                instance.unwrap_or_else(|| target.instance.clone()),
            );
            (pair.0 != target.job || pair.1 != target.instance).then_some(pair)
        } else {
            None
        };
        let kind = match ftype {
            FamilyType::Counter => Kind::Counter,
            FamilyType::Gauge | FamilyType::Untyped => Kind::Gauge,
            FamilyType::Histogram => Kind::Histogram,
            FamilyType::Summary => Kind::Summary,
        };
        // The bucket bound or quantile is part of the point, not of its identity.
        let mut part = f64::NAN;
        if (kind == Kind::Histogram && role == Role::Bucket)
            || (kind == Kind::Summary && role == Role::Value)
        {
            let key = if kind == Kind::Histogram {
                "le"
            } else {
                "quantile"
            };
            match to_otlp::take_label(&mut labels, key)
                .as_deref()
                .and_then(parse_bound)
            {
                Some(b) => part = b,
                None => {
                    self.dropped.push(("invalid_bucket", 1));
                    return None;
                }
            }
        }
        let group = Group {
            resource,
            scope,
            family,
            kind,
        };
        let slot = self.slot(group, labels);
        Some(LineRef { slot, role, part })
    }

    /// The slot of a series, created if new.
    fn slot(&mut self, group: Group, attrs: Labels) -> u32 {
        // Fx hashing, as the series state always had: the keys come from the operator's own targets,
        // and only a series text the line cache does not know gets here.
        let key = FxBuildHasher.hash_one(SeriesId {
            group: &group,
            attrs: &attrs,
        });
        if let Some(&i) = self.by_key.get(&key) {
            return i;
        }
        let kind = group.kind;
        let g = match self.group_index.get(&group) {
            Some(&g) => g,
            None => {
                let g = self.groups.len() as u32;
                self.groups.push(group.clone());
                self.group_index.insert(group, g);
                g
            }
        };
        let i = self.slots.len() as u32;
        self.slots.push(Slot {
            key,
            group: g,
            attrs: encode::attributes(&to_otlp::attributes_owned(attrs), kind),
            committed: None,
            pending: Cumulative {
                start_ns: 0,
                last: f64::NAN,
                last_ns: 0,
            },
            pending_scrape: 0,
            point_scrape: 0,
            point: 0,
        });
        self.by_key.insert(key, i);
        i
    }

    fn accumulate(&mut self, line: LineRef, value: f64, time_ns: u64) {
        let slot = &mut self.slots[line.slot as usize];
        if slot.point_scrape != self.scrape {
            slot.point_scrape = self.scrape;
            slot.point = self.npoints as u32;
            if self.npoints == self.points.len() {
                self.points.push(PointAcc {
                    slot: 0,
                    time_ns: 0,
                    created_ns: None,
                    value: f64::NAN,
                    buckets: Vec::new(),
                    sum: None,
                    count: None,
                });
            }
            let p = &mut self.points[self.npoints];
            p.slot = line.slot;
            p.time_ns = time_ns;
            p.created_ns = None;
            p.value = f64::NAN;
            p.buckets.clear();
            p.sum = None;
            p.count = None;
            self.npoints += 1;
        }
        let kind = self.groups[slot.group as usize].kind;
        let p = &mut self.points[slot.point as usize];
        match (kind, line.role) {
            (_, Role::Created) => {
                if value.is_finite() && value > 0.0 {
                    p.created_ns = Some((value * 1e9) as u64);
                }
            }
            (Kind::Gauge | Kind::Counter, _) => p.value = value,
            (Kind::Histogram, Role::Bucket) | (Kind::Summary, Role::Value) => {
                p.buckets.push((line.part, value))
            }
            (Kind::Histogram | Kind::Summary, Role::Sum) => p.sum = Some(value),
            (Kind::Histogram | Kind::Summary, Role::Count) => p.count = Some(value),
            _ => self.dropped.push(("invalid_sample", 1)),
        }
    }

    /// Decides what the scrape begun with [`begin`](Self::begin) emits, into `emitted` in request order:
    /// its points with their start times, the synthetic series of `report` (none when the target is
    /// going away), and staleness markers. Sets every emitted series' pending state for [`commit`].
    /// Returns the number of series not in the previous scrape.
    fn plan(&mut self, report: Option<ScrapeReport>) -> usize {
        let scrape = self.scrape;
        let now_ns = self.now_ns;
        self.emitted.clear();
        let mut series_added = 0;
        for (i, p) in self.points[..self.npoints].iter_mut().enumerate() {
            let slot = &mut self.slots[p.slot as usize];
            let previous = slot.committed;
            let start = |current: f64, time_ns: u64| -> u64 {
                if let Some(c) = p.created_ns {
                    return c;
                }
                match previous {
                    Some(s) if current >= s.last || s.last.is_nan() => s.start_ns,
                    Some(s) => s.last_ns,
                    None => time_ns,
                }
            };
            let (start_ns, last) = match self.groups[slot.group as usize].kind {
                Kind::Counter => (start(p.value, p.time_ns), p.value),
                Kind::Gauge => (0, p.value),
                Kind::Histogram | Kind::Summary => {
                    let Some(count) = p.count else {
                        let reason = if self.groups[slot.group as usize].kind == Kind::Histogram {
                            "incomplete_histogram"
                        } else {
                            "incomplete_summary"
                        };
                        self.dropped.push((reason, 1));
                        continue;
                    };
                    (start(count, p.time_ns), count)
                }
            };
            // Bounds and quantiles in order (stable: equal ones keep the page's order).
            p.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            self.emitted.push(Emitted {
                slot: p.slot,
                origin: Origin::Scraped,
                acc: i as u32,
                start_ns,
                time_ns: p.time_ns,
                value: last,
            });
            if previous.is_none() {
                series_added += 1;
            }
            slot.pending = Cumulative {
                start_ns,
                last,
                last_ns: p.time_ns,
            };
            slot.pending_scrape = scrape;
        }

        if let Some(r) = report {
            // The synthetic series themselves are not "added" series of the target.
            for (name, value) in [
                ("up", if r.up { 1.0 } else { 0.0 }),
                ("scrape_duration_seconds", r.duration_seconds),
                ("scrape_samples_scraped", r.samples_scraped as f64),
                (
                    "scrape_samples_post_metric_relabeling",
                    r.samples_post_relabeling as f64,
                ),
                ("scrape_series_added", series_added as f64),
            ] {
                let group = Group {
                    resource: None,
                    scope: None,
                    family: name.to_owned(),
                    kind: Kind::Gauge,
                };
                let i = self.slot(group, Vec::new());
                let slot = &mut self.slots[i as usize];
                slot.point_scrape = scrape;
                slot.pending = Cumulative {
                    start_ns: 0,
                    last: value,
                    last_ns: now_ns,
                };
                slot.pending_scrape = scrape;
                self.emitted.push(Emitted {
                    slot: i,
                    origin: Origin::Synthetic,
                    acc: NO_ACC,
                    start_ns: 0,
                    time_ns: now_ns,
                    value,
                });
            }
        }

        // Staleness: what the last queued scrape had and this one has not.
        for (i, slot) in self.slots.iter().enumerate() {
            if let (Some(c), true) = (slot.committed, slot.pending_scrape != scrape) {
                let start_ns = match self.groups[slot.group as usize].kind {
                    Kind::Gauge => 0,
                    _ => c.start_ns,
                };
                self.emitted.push(Emitted {
                    slot: i as u32,
                    origin: Origin::Stale,
                    acc: NO_ACC,
                    start_ns,
                    time_ns: now_ns,
                    value: f64::NAN,
                });
            }
        }
        series_added
    }

    /// Builds the request of the scrape begun with [`begin`](Self::begin) as owned OTLP structs: its
    /// points, the synthetic series of `report` (none when the target is going away), and staleness
    /// markers. The scrape loop writes the same request encoded instead
    /// ([`finish_encoded`](Self::finish_encoded)); this form is the reference the encoder is tested
    /// against, and what tests and benchmarks read.
    pub fn finish(&mut self, target: &Target, report: Option<ScrapeReport>) -> Converted {
        let series_added = self.plan(report);
        let mut out = Builder::new(
            target,
            std::mem::take(&mut self.extra_resource),
            self.groups.len(),
        );
        let families = &self.families;
        for e in &self.emitted {
            let slot = &self.slots[e.slot as usize];
            let g = slot.group as usize;
            let group = &self.groups[g];
            let attrs = encode::decode_attributes(&slot.attrs, group.kind);
            match (e.origin, group.kind) {
                (Origin::Stale, _) => out.stale(g, group, &attrs, e.start_ns, e.time_ns),
                (Origin::Synthetic, _) => out.gauge(g, group, None, &attrs, e.time_ns, e.value),
                (Origin::Scraped, Kind::Counter) => {
                    out.sum(g, group, families, &attrs, e.start_ns, e.time_ns, e.value)
                }
                (Origin::Scraped, Kind::Gauge) => {
                    out.gauge(g, group, Some(families), &attrs, e.time_ns, e.value)
                }
                (Origin::Scraped, Kind::Histogram) => {
                    let p = &self.points[e.acc as usize];
                    let mut bounds = Vec::with_capacity(p.buckets.len());
                    let mut counts = Vec::with_capacity(p.buckets.len() + 1);
                    histogram_buckets(&p.buckets, e.value, &mut bounds, &mut counts);
                    out.histogram(
                        g,
                        group,
                        families,
                        HistogramDataPoint {
                            attributes: attrs,
                            start_time_unix_nano: e.start_ns,
                            time_unix_nano: e.time_ns,
                            count: as_count(e.value),
                            sum: p.sum,
                            bucket_counts: counts,
                            explicit_bounds: bounds,
                            ..Default::default()
                        },
                    );
                }
                (Origin::Scraped, Kind::Summary) => {
                    let p = &self.points[e.acc as usize];
                    let quantiles = p
                        .buckets
                        .iter()
                        .map(|&(quantile, value)| summary_data_point::ValueAtQuantile {
                            quantile,
                            value,
                        })
                        .collect();
                    out.summary(
                        g,
                        group,
                        families,
                        SummaryDataPoint {
                            attributes: attrs,
                            start_time_unix_nano: e.start_ns,
                            time_unix_nano: e.time_ns,
                            count: as_count(e.value),
                            sum: p.sum.unwrap_or(0.0),
                            quantile_values: quantiles,
                            ..Default::default()
                        },
                    );
                }
            }
        }
        let (request, points) = out.finish();
        Converted {
            request,
            points,
            series_added,
            dropped: std::mem::take(&mut self.dropped),
            next: NextState(self.scrape),
        }
    }

    /// Forgets slots and lines not seen for [`EVICT_AFTER`] scrapes.
    fn evict(&mut self) {
        if !self.scrape.is_multiple_of(EVICT_AFTER) {
            return;
        }
        let cutoff = self.scrape.saturating_sub(EVICT_AFTER);
        // Lines found at their place on the last page were not looked up, but were seen.
        let last_seen = self.scrape_of_last_page;
        for l in &self.last_lines {
            if let Some(entry) = self.lines.get_mut(&l.key) {
                entry.seen = entry.seen.max(last_seen);
            }
        }
        self.lines.retain(|_, l| l.seen >= cutoff);
        let old = |s: &Slot| s.committed.is_none() && s.point_scrape < cutoff;
        if !self.slots.iter().any(old) {
            return;
        }
        // Slot numbers change: every line entry pointing at one is rebuilt from the page.
        self.lines.clear();
        self.last_lines.clear();
        self.slots.retain(|s| !old(s));
        let mut groups = Vec::new();
        let mut group_index = FxHashMap::default();
        self.by_key.clear();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let group = &self.groups[slot.group as usize];
            slot.group = *group_index.entry(group.clone()).or_insert_with(|| {
                groups.push(group.clone());
                groups.len() as u32 - 1
            });
            self.by_key.insert(slot.key, i as u32);
        }
        self.groups = groups;
        self.group_index = group_index;
    }
}

/// What a page held.
#[derive(Debug, Default)]
pub struct PageStats {
    /// Sample lines on the page.
    pub exposed: usize,
    /// Samples left after relabeling.
    pub kept: usize,
    /// The first series that broke a limit (`prepare`'s error).
    pub limit_error: Option<String>,
}

/// Counts of one scrape, reported as the synthetic series.
#[derive(Debug, Clone, Copy)]
pub struct ScrapeReport {
    pub up: bool,
    pub duration_seconds: f64,
    pub samples_scraped: usize,
    pub samples_post_relabeling: usize,
}

/// The result of converting one scrape; apply it with [`commit`] once it is queued. `request` is
/// owned OTLP structs ([`SeriesCache::finish`]) or their protobuf encoding
/// ([`SeriesCache::finish_encoded`]).
pub struct Converted<P = Metrics> {
    pub request: P,
    /// Data points in `request`.
    pub points: usize,
    /// Series that were not in the previous scrape.
    pub series_added: usize,
    /// Items left out, by reason.
    pub dropped: Vec<(&'static str, usize)>,
    /// The scrape this is, for [`commit`].
    pub next: NextState,
}

/// Names the converted scrape whose series state [`commit`] keeps.
pub struct NextState(u64);

/// Makes the state of a converted scrape the one the next scrape is compared with: its series are
/// live, every other one (marked stale by it) is not.
pub fn commit(cache: &mut SeriesCache, next: NextState) {
    let mut live = 0;
    for slot in &mut cache.slots {
        if slot.pending_scrape == next.0 {
            slot.committed = Some(slot.pending);
            live += 1;
        } else {
            slot.committed = None;
        }
    }
    cache.committed = live;
    cache.evict();
}

/// Converts one scrape of samples already read and prepared. `report` is `None` when the target is
/// going away: then nothing is emitted but staleness markers for every series it had, the synthetic
/// ones included.
pub fn convert(
    target: &Target,
    cache: &mut SeriesCache,
    samples: Vec<RawSample>,
    families: &FxHashMap<String, FamilyMeta>,
    report: Option<ScrapeReport>,
    now_ns: u64,
) -> Converted {
    cache.begin(target, now_ns);
    cache.add_samples(target, samples, families);
    cache.finish(target, report)
}

/// Which part of a family a sample line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Value,
    Bucket,
    Sum,
    Count,
    Created,
}

/// The family, its type and the role of a sample named `name`. A counter keeps the name its samples
/// have (`requests_total`, also when the TYPE line says `requests`, as OpenMetrics writes it), so the
/// series reads back under the same name.
fn classify(name: &str, families: &FxHashMap<String, FamilyMeta>) -> (String, FamilyType, Role) {
    let kind_of = |n: &str| families.get(n).and_then(|m| m.kind);
    if let Some(kind) = kind_of(name) {
        return (name.to_owned(), kind, Role::Value);
    }
    for (suffix, role) in [
        ("_bucket", Role::Bucket),
        ("_sum", Role::Sum),
        ("_count", Role::Count),
        ("_created", Role::Created),
        ("_total", Role::Value),
    ] {
        let Some(base) = name.strip_suffix(suffix) else {
            continue;
        };
        match (kind_of(base), role) {
            (Some(kind @ FamilyType::Histogram), Role::Bucket | Role::Sum | Role::Count)
            | (Some(kind @ FamilyType::Summary), Role::Sum | Role::Count)
            | (Some(kind @ (FamilyType::Histogram | FamilyType::Summary)), Role::Created) => {
                return (base.to_owned(), kind, role)
            }
            (Some(FamilyType::Counter), Role::Value) => {
                return (name.to_owned(), FamilyType::Counter, role)
            }
            (Some(FamilyType::Counter), Role::Created) => {
                let family = if base.ends_with("_total") {
                    base.to_owned()
                } else {
                    format!("{base}_total")
                };
                return (family, FamilyType::Counter, role);
            }
            _ => {}
        }
        // `x_created` of a counter exposed as `x_total`.
        if role == Role::Created {
            let total = format!("{base}_total");
            if kind_of(&total) == Some(FamilyType::Counter) {
                return (total, FamilyType::Counter, Role::Created);
            }
        }
    }
    (name.to_owned(), FamilyType::Untyped, Role::Value)
}

fn parse_bound(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        _ => s.parse().ok(),
    }
}

/// A histogram's explicit bounds and per-bucket counts from its cumulative `(le, count)` buckets,
/// sorted by bound, and its total count: the `+Inf` bucket is implied by the count.
fn histogram_buckets(
    buckets: &[(f64, f64)],
    count: f64,
    bounds: &mut Vec<f64>,
    counts: &mut Vec<u64>,
) {
    bounds.clear();
    counts.clear();
    let mut below = 0.0;
    for (le, cumulative) in buckets {
        if le.is_infinite() {
            continue;
        }
        bounds.push(*le);
        counts.push(as_count(cumulative - below));
        below = cumulative.max(below);
    }
    counts.push(as_count(count - below));
}

fn as_count(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        v.round() as u64
    } else {
        0
    }
}

type Families = FxHashMap<String, FamilyMeta>;

/// The HELP of a group's family (for a counter named `x_total`, also that of `x`).
fn help<'f>(families: &'f Families, group: &Group) -> Option<&'f String> {
    families
        .get(&group.family)
        .or_else(|| {
            group
                .family
                .strip_suffix("_total")
                .and_then(|base| families.get(base))
        })
        .and_then(|m| m.help.as_ref())
}

fn type_name(t: FamilyType) -> &'static str {
    match t {
        FamilyType::Counter => "counter",
        FamilyType::Gauge => "gauge",
        FamilyType::Histogram => "histogram",
        FamilyType::Summary => "summary",
        FamilyType::Untyped => "unknown",
    }
}

/// Assembles resource → scope → metric, one metric per group, in the order groups first appear.
struct Builder<'t> {
    target: &'t Target,
    extra_resource: Labels,
    resources: Vec<((String, String), Vec<ScopeMetrics>)>,
    /// Where the metric of each group is in this request: (resource, scope, metric).
    at: Vec<Option<(u32, u32, u32)>>,
    scope: InstrumentationScope,
    points: usize,
}

impl<'t> Builder<'t> {
    fn new(target: &'t Target, extra_resource: Labels, groups: usize) -> Self {
        Self {
            target,
            extra_resource,
            resources: Vec::new(),
            at: vec![None; groups],
            scope: to_otlp::outpost_scope("prometheus"),
            points: 0,
        }
    }

    /// The metric of group `g`, created with `make` if this request has none yet.
    fn metric(&mut self, g: usize, group: &Group, make: impl FnOnce() -> Metric) -> &mut Metric {
        if g >= self.at.len() {
            self.at.resize(g + 1, None);
        }
        if let Some((ri, si, mi)) = self.at[g] {
            return &mut self.resources[ri as usize].1[si as usize].metrics[mi as usize];
        }
        let (job, instance) = match &group.resource {
            Some((j, i)) => (j.as_str(), i.as_str()),
            None => (self.target.job.as_str(), self.target.instance.as_str()),
        };
        let ri = match self
            .resources
            .iter()
            .position(|((j, i), _)| j == job && i == instance)
        {
            Some(i) => i,
            None => {
                self.resources
                    .push(((job.to_owned(), instance.to_owned()), Vec::new()));
                self.resources.len() - 1
            }
        };
        let (name, version) = match &group.scope {
            Some((n, v)) => (n.as_str(), v.as_str()),
            None => (self.scope.name.as_str(), self.scope.version.as_str()),
        };
        let scopes = &mut self.resources[ri].1;
        let si = match scopes.iter().position(|s| {
            s.scope
                .as_ref()
                .is_some_and(|sc| sc.name == name && sc.version == version)
        }) {
            Some(i) => i,
            None => {
                scopes.push(ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: name.to_owned(),
                        version: version.to_owned(),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                scopes.len() - 1
            }
        };
        let metrics = &mut scopes[si].metrics;
        metrics.push(make());
        let mi = metrics.len() - 1;
        self.at[g] = Some((ri as u32, si as u32, mi as u32));
        &mut metrics[mi]
    }

    /// `families` is `None` for the synthetic series.
    fn gauge(
        &mut self,
        g: usize,
        group: &Group,
        families: Option<&Families>,
        attrs: &[KeyValue],
        time_ns: u64,
        value: f64,
    ) {
        self.points += 1;
        let m = self.metric(g, group, || match families {
            Some(f) => {
                let ptype = f
                    .get(&group.family)
                    .and_then(|m| m.kind)
                    .map_or("unknown", type_name);
                new_metric(group, help(f, group), ptype, empty_data(Kind::Gauge))
            }
            None => new_metric(group, None, "gauge", empty_data(Kind::Gauge)),
        });
        if let Some(metric::Data::Gauge(g)) = &mut m.data {
            g.data_points
                .push(double_point(attrs.to_vec(), 0, time_ns, value));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn sum(
        &mut self,
        g: usize,
        group: &Group,
        families: &Families,
        attrs: &[KeyValue],
        start_ns: u64,
        time_ns: u64,
        value: f64,
    ) {
        self.points += 1;
        let m = self.metric(g, group, || {
            new_metric(
                group,
                help(families, group),
                "counter",
                empty_data(Kind::Counter),
            )
        });
        if let Some(metric::Data::Sum(s)) = &mut m.data {
            s.data_points
                .push(double_point(attrs.to_vec(), start_ns, time_ns, value));
        }
    }

    fn histogram(
        &mut self,
        g: usize,
        group: &Group,
        families: &Families,
        point: HistogramDataPoint,
    ) {
        self.points += 1;
        let m = self.metric(g, group, || {
            new_metric(
                group,
                help(families, group),
                "histogram",
                empty_data(Kind::Histogram),
            )
        });
        if let Some(metric::Data::Histogram(h)) = &mut m.data {
            h.data_points.push(point);
        }
    }

    fn summary(&mut self, g: usize, group: &Group, families: &Families, point: SummaryDataPoint) {
        self.points += 1;
        let m = self.metric(g, group, || {
            new_metric(
                group,
                help(families, group),
                "summary",
                empty_data(Kind::Summary),
            )
        });
        if let Some(metric::Data::Summary(s)) = &mut m.data {
            s.data_points.push(point);
        }
    }

    /// A point with `NoRecordedValue` for a series of group `g`.
    fn stale(&mut self, g: usize, group: &Group, attrs: &[KeyValue], start_ns: u64, time_ns: u64) {
        self.points += 1;
        let ptype = match group.kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        };
        let m = self.metric(g, group, || {
            new_metric(group, None, ptype, empty_data(group.kind))
        });
        let attrs = attrs.to_vec();
        match &mut m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.push(stale_point(attrs, 0, time_ns)),
            Some(metric::Data::Sum(s)) => s.data_points.push(stale_point(attrs, start_ns, time_ns)),
            Some(metric::Data::Histogram(h)) => h.data_points.push(HistogramDataPoint {
                attributes: attrs,
                start_time_unix_nano: start_ns,
                time_unix_nano: time_ns,
                flags: NO_RECORDED_VALUE,
                ..Default::default()
            }),
            Some(metric::Data::Summary(s)) => s.data_points.push(SummaryDataPoint {
                attributes: attrs,
                start_time_unix_nano: start_ns,
                time_unix_nano: time_ns,
                flags: NO_RECORDED_VALUE,
                ..Default::default()
            }),
            _ => self.points -= 1,
        }
    }

    fn finish(self) -> (Metrics, usize) {
        let target = self.target;
        let resource_metrics = self
            .resources
            .into_iter()
            .map(|((job, instance), scope_metrics)| {
                let own = job == target.job && instance == target.instance;
                let attributes = if own {
                    resource_attributes(
                        Some(&job),
                        Some(&instance),
                        Some(&target.endpoint),
                        &self.extra_resource,
                    )
                } else {
                    // A series that named its own job / instance (honor_labels) is not the target's.
                    resource_attributes(Some(&job), Some(&instance), None, &[])
                };
                ResourceMetrics {
                    resource: Some(Resource {
                        attributes,
                        ..Default::default()
                    }),
                    scope_metrics,
                    ..Default::default()
                }
            })
            .collect();
        (Metrics { resource_metrics }, self.points)
    }
}

fn new_metric(group: &Group, help: Option<&String>, ptype: &str, data: metric::Data) -> Metric {
    Metric {
        name: group.family.clone(),
        description: help.cloned().unwrap_or_default(),
        metadata: vec![string_kv("prometheus.type", ptype)],
        data: Some(data),
        ..Default::default()
    }
}

fn empty_data(kind: Kind) -> metric::Data {
    let cumulative = AggregationTemporality::Cumulative as i32;
    match kind {
        Kind::Gauge => metric::Data::Gauge(Gauge::default()),
        Kind::Counter => metric::Data::Sum(Sum {
            data_points: Vec::new(),
            aggregation_temporality: cumulative,
            is_monotonic: true,
        }),
        Kind::Histogram => metric::Data::Histogram(Histogram {
            data_points: Vec::new(),
            aggregation_temporality: cumulative,
        }),
        Kind::Summary => metric::Data::Summary(Summary::default()),
    }
}

mod encode;

#[cfg(test)]
mod tests;
