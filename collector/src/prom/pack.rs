//! Packing a translated payload into remote-write requests bounded in bytes and samples, keeping the
//! series of one data point together where they fit and counting the OTLP points each request carries,
//! so a refused request's points can be counted as dropped.

use prost::Message;

use super::remote_write::{TimeSeries, WriteRequest};
use super::translate::Translation;

/// One remote-write request of a payload, and the OTLP points it carries.
#[derive(Debug, Default)]
pub struct Request {
    pub body: WriteRequest,
    pub points: usize,
    pub samples: usize,
}

/// Bytes `m` adds to a message as a length-delimited field.
pub(crate) fn field_len(len: usize) -> usize {
    1 + prost::length_delimiter_len(len) + len
}

fn samples_of(s: &TimeSeries) -> usize {
    s.samples.len() + s.histograms.len()
}

/// Packs a translation into requests of at most `max_bytes` (protobuf, before snappy) and `max_samples`
/// samples (native histogram samples included). A group stays in one request when it fits in one; a
/// larger one is split, series by series and then sample by sample, and its points are counted in the
/// request that holds its last part. The metadata rides in the first request.
pub fn pack(t: Translation, max_bytes: usize, max_samples: usize) -> Vec<Request> {
    let max_samples = max_samples.max(1);
    let mut requests = Vec::new();
    let mut cur = Request::default();
    let mut cur_bytes = 0;
    for m in t.metadata {
        cur_bytes += field_len(m.encoded_len());
        cur.body.metadata.push(m);
    }
    let flush = |cur: &mut Request, cur_bytes: &mut usize, requests: &mut Vec<Request>| {
        if !cur.body.timeseries.is_empty() || !cur.body.metadata.is_empty() {
            requests.push(std::mem::take(cur));
        }
        *cur_bytes = 0;
    };
    for g in t.groups {
        let bytes: usize = g.series.iter().map(|s| field_len(s.encoded_len())).sum();
        let samples: usize = g.series.iter().map(samples_of).sum();
        if !cur.body.timeseries.is_empty()
            && (cur_bytes + bytes > max_bytes || cur.samples + samples > max_samples)
        {
            flush(&mut cur, &mut cur_bytes, &mut requests);
        }
        if cur_bytes + bytes <= max_bytes && cur.samples + samples <= max_samples {
            cur.body.timeseries.extend(g.series);
            cur.samples += samples;
            cur.points += g.points;
            cur_bytes += bytes;
            continue;
        }
        for series in g.series {
            for part in split_series(series, max_bytes, max_samples) {
                let bytes = field_len(part.encoded_len());
                let samples = samples_of(&part);
                if !cur.body.timeseries.is_empty()
                    && (cur_bytes + bytes > max_bytes || cur.samples + samples > max_samples)
                {
                    flush(&mut cur, &mut cur_bytes, &mut requests);
                }
                cur.body.timeseries.push(part);
                cur.samples += samples;
                cur_bytes += bytes;
            }
        }
        cur.points += g.points;
    }
    flush(&mut cur, &mut cur_bytes, &mut requests);
    requests
}

/// A series cut into parts that each fit the limits (a single sample that does not fit alone is a
/// part of its own). Exemplars go with the last part.
fn split_series(s: TimeSeries, max_bytes: usize, max_samples: usize) -> Vec<TimeSeries> {
    if field_len(s.encoded_len()) <= max_bytes && samples_of(&s) <= max_samples {
        return vec![s];
    }
    let TimeSeries {
        labels,
        samples,
        exemplars,
        histograms,
    } = s;
    let base = field_len(
        TimeSeries {
            labels: labels.clone(),
            ..Default::default()
        }
        .encoded_len(),
    );
    let mut parts: Vec<TimeSeries> = Vec::new();
    let new_part = || TimeSeries {
        labels: labels.clone(),
        ..Default::default()
    };
    let mut cur = new_part();
    let mut cur_bytes = base;
    for sample in samples {
        let n = field_len(sample.encoded_len());
        if samples_of(&cur) > 0 && (cur_bytes + n > max_bytes || samples_of(&cur) >= max_samples) {
            parts.push(std::mem::replace(&mut cur, new_part()));
            cur_bytes = base;
        }
        cur.samples.push(sample);
        cur_bytes += n;
    }
    for h in histograms {
        let n = field_len(h.encoded_len());
        if samples_of(&cur) > 0 && (cur_bytes + n > max_bytes || samples_of(&cur) >= max_samples) {
            parts.push(std::mem::replace(&mut cur, new_part()));
            cur_bytes = base;
        }
        cur.histograms.push(h);
        cur_bytes += n;
    }
    cur.exemplars = exemplars;
    parts.push(cur);
    parts
}
