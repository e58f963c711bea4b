//! RFC 3164 (BSD) messages: `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG`.
//!
//! The timestamp has neither a year nor a zone: the zone is the receiver's `location` (UTC by default)
//! and the year is the one that puts the time nearest to now, so a message from 31 December read on
//! 1 January lands in the old year. An RFC 3339 timestamp in its place (as rsyslog's high-precision
//! format sends) is read as well.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;

use super::{pri, Message, ParseError};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

pub fn parse(text: &str, zone: &TimeZone, now: jiff::Timestamp) -> Result<Message, ParseError> {
    let (pri, rest) = pri(text)?;
    let mut msg = Message::from_pri(pri);
    let rest = match timestamp_3164(rest, zone, now)? {
        Some((ts, rest)) => {
            msg.timestamp = Some(ts);
            rest
        }
        None => {
            let (t, rest) = rest
                .split_once(' ')
                .ok_or_else(|| ParseError("missing TIMESTAMP".into()))?;
            let ts: jiff::Timestamp = t.parse().map_err(|_| {
                ParseError(format!(
                    "TIMESTAMP '{t}' is neither 'Mmm dd hh:mm:ss' nor RFC 3339"
                ))
            })?;
            msg.timestamp = Some(ts.as_nanosecond());
            rest
        }
    };
    let (hostname, rest) = rest
        .split_once(' ')
        .filter(|(h, _)| !h.is_empty())
        .ok_or_else(|| ParseError("missing HOSTNAME".into()))?;
    msg.hostname = Some(hostname.to_owned());
    // TAG: alphanumerics and a few punctuation marks, ended by '[', ':' or a space.
    let tag_end = rest
        .find(|c: char| c == '[' || c == ':' || c.is_whitespace())
        .unwrap_or(rest.len());
    let (tag, mut body) = rest.split_at(tag_end);
    if tag.is_empty() || tag_end == rest.len() {
        // No tag: everything after the host is the message.
        msg.message = Some(rest.to_owned()).filter(|m| !m.is_empty());
        return Ok(msg);
    }
    msg.appname = Some(tag.to_owned());
    if let Some(r) = body.strip_prefix('[') {
        let (pid, r) = r
            .split_once(']')
            .ok_or_else(|| ParseError("unterminated [PID]".into()))?;
        msg.proc_id = Some(pid.to_owned());
        body = r;
    }
    let body = body.strip_prefix(':').unwrap_or(body);
    let body = body.strip_prefix(' ').unwrap_or(body);
    msg.message = Some(body.to_owned()).filter(|m| !m.is_empty());
    Ok(msg)
}

/// `Mmm dd hh:mm:ss ` at the start of `text` as Unix nanoseconds, and the text after it; `None` when
/// the text does not start with a month name.
fn timestamp_3164<'t>(
    text: &'t str,
    zone: &TimeZone,
    now: jiff::Timestamp,
) -> Result<Option<(i128, &'t str)>, ParseError> {
    let Some(month) = MONTHS
        .iter()
        .position(|m| text.starts_with(m))
        .map(|i| i as i8 + 1)
    else {
        return Ok(None);
    };
    let bad = || {
        ParseError(format!(
            "TIMESTAMP '{}' is not 'Mmm dd hh:mm:ss'",
            text.get(..15).unwrap_or(text)
        ))
    };
    let t = text.get(..16).ok_or_else(bad)?;
    let b = t.as_bytes();
    if b[3] != b' ' || b[6] != b' ' || b[9] != b':' || b[12] != b':' || b[15] != b' ' {
        return Err(bad());
    }
    let num = |s: &str| s.trim_start().parse::<i8>().map_err(|_| bad());
    let (day, hour, minute, second) = (
        num(&t[4..6])?,
        num(&t[7..9])?,
        num(&t[10..12])?,
        num(&t[13..15])?,
    );
    let this_year = now.to_zoned(zone.clone()).year();
    // The year that puts the time nearest to now (a message from 31 December read on 1 January).
    let mut best: Option<(i128, i128)> = None;
    for year in [this_year - 1, this_year, this_year + 1] {
        let Ok(dt) = DateTime::new(year, month, day, hour, minute, second, 0) else {
            continue;
        };
        let Ok(z) = dt.to_zoned(zone.clone()) else {
            continue;
        };
        let ns = z.timestamp().as_nanosecond();
        let distance = (ns - now.as_nanosecond()).abs();
        if best.is_none_or(|(_, d)| distance < d) {
            best = Some((ns, distance));
        }
    }
    let (ns, _) = best.ok_or_else(bad)?;
    Ok(Some((ns, &text[16..])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_bsd_format_with_tag_and_pid() {
        let m = parse(
            "<34>Oct 11 22:14:15 mymachine su[123]: 'su root' failed on /dev/pts/8",
            &TimeZone::UTC,
            at("2024-10-12T00:00:00Z"),
        )
        .unwrap();
        assert_eq!((m.facility, m.severity), (4, 2));
        assert_eq!(
            m.timestamp,
            Some(at("2024-10-11T22:14:15Z").as_nanosecond())
        );
        assert_eq!(m.hostname.as_deref(), Some("mymachine"));
        assert_eq!(m.appname.as_deref(), Some("su"));
        assert_eq!(m.proc_id.as_deref(), Some("123"));
        assert_eq!(m.message.as_deref(), Some("'su root' failed on /dev/pts/8"));
        assert_eq!(m.version, None);
    }

    #[test]
    fn the_year_is_the_nearest_and_the_zone_is_the_location() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let m = parse(
            "<13>Dec 31 23:59:00 h app: x",
            &berlin,
            at("2025-01-01T00:30:00Z"),
        )
        .unwrap();
        assert_eq!(
            m.timestamp,
            Some(at("2024-12-31T22:59:00Z").as_nanosecond())
        );
        let m = parse(
            "<13>Feb  3 04:05:06 h app: x",
            &TimeZone::UTC,
            at("2025-02-03T05:00:00Z"),
        )
        .unwrap();
        assert_eq!(
            m.timestamp,
            Some(at("2025-02-03T04:05:06Z").as_nanosecond())
        );
    }

    #[test]
    fn rfc3339_timestamps_and_messages_without_a_tag() {
        let m = parse(
            "<13>2024-05-01T10:00:00Z host just words",
            &TimeZone::UTC,
            at("2024-05-01T10:00:00Z"),
        )
        .unwrap();
        assert_eq!(
            m.timestamp,
            Some(at("2024-05-01T10:00:00Z").as_nanosecond())
        );
        assert_eq!(m.appname.as_deref(), Some("just"));
        assert_eq!(m.message.as_deref(), Some("words"));
        let m = parse(
            "<13>Feb  3 04:05:06 host",
            &TimeZone::UTC,
            at("2025-02-03T05:00:00Z"),
        )
        .unwrap_err();
        assert!(m.0.contains("HOSTNAME"), "{m:?}");
        assert!(parse(
            "<13>Feb 33 04:05:06 h a: x",
            &TimeZone::UTC,
            at("2025-02-03T05:00:00Z")
        )
        .is_err());
        assert!(parse("no pri", &TimeZone::UTC, at("2025-02-03T05:00:00Z")).is_err());
    }
}
