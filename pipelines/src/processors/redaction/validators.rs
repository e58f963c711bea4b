//! Validators: the second opinion on a pattern match. A pattern finds text shaped like a card number;
//! the validator says whether it is one (Luhn, a known network prefix, 13–19 digits), and may narrow
//! the match to the part that is (the card inside a longer run of digits), so a valid number next to
//! other numbers is still found.
//!
//! Every validator sees the whole value and the span the pattern matched, so it can also look at what
//! surrounds the match (an IPv4 address inside a longer dotted version string is not one).

use std::ops::Range;

use base64::Engine as _;
use outpost_config::redaction::Validator;

/// Whether `hay[span]` is what the rule is after; `Some` with the (possibly narrowed) span if so.
pub fn confirm(v: Validator, hay: &[u8], span: Range<usize>) -> Option<Range<usize>> {
    let text = &hay[span.clone()];
    let whole = |ok: bool| ok.then(|| span.clone());
    match v {
        Validator::Luhn => whole(luhn(&digits(text))),
        Validator::PaymentCard => {
            payment_card(text).map(|r| span.start + r.start..span.start + r.end)
        }
        Validator::Mod97 => iban(text).map(|len| span.start..span.start + len),
        Validator::UsSsn => whole(us_ssn(&digits(text))),
        Validator::UkNino => whole(uk_nino(text)),
        Validator::EsDni => whole(es_dni(text)),
        Validator::CaSin => {
            let d = digits(text);
            whole(d.len() == 9 && !matches!(d[0], 0 | 8) && luhn(&d))
        }
        Validator::Phone => whole((8..=15).contains(&digits(text).len())),
        Validator::Date => whole(date(text)),
        Validator::Jwt => whole(jwt(text)),
        Validator::BasicCredentials => whole(basic_credentials(text)),
        Validator::SecretLike => whole(secret_like(text)),
        Validator::NotPlaceholder => whole(!placeholder(text)),
        Validator::Ipv4 => whole(ipv4_stands_alone(hay, &span)),
        Validator::Ipv6 => ipv6(hay, span),
        Validator::Mac => whole(mac(text)),
    }
}

fn digits(text: &[u8]) -> Vec<u8> {
    text.iter()
        .filter(|b| b.is_ascii_digit())
        .map(|b| b - b'0')
        .collect()
}

/// The Luhn checksum over decimal digits (most significant first).
pub fn luhn(d: &[u8]) -> bool {
    if d.len() < 2 {
        return false;
    }
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x);
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 {
                    y - 9
                } else {
                    y
                }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether the digits have the prefix and length of a card network's numbers (Visa, Mastercard, Amex,
/// Discover, Diners, JCB, UnionPay, Maestro, Mir). Lengths matter: a Luhn-valid 18-digit run starting
/// with 37 is not an Amex number (always 15).
fn is_card(d: &[u8]) -> bool {
    let n = |k: usize| d.iter().take(k).fold(0u32, |a, &x| a * 10 + u32::from(x));
    let len = d.len();
    let network = match d.first() {
        Some(4) => matches!(len, 13 | 16 | 19),
        Some(2) if (2221..=2720).contains(&n(4)) => len == 16,
        Some(2) if (2200..=2204).contains(&n(4)) => (16..=19).contains(&len),
        Some(3) if matches!(n(2), 34 | 37) => len == 15,
        Some(3) if matches!(n(2), 36 | 38 | 39) || (300..=305).contains(&n(3)) => {
            (14..=19).contains(&len)
        }
        Some(3) if (3528..=3589).contains(&n(4)) => (16..=19).contains(&len),
        Some(5) if (51..=55).contains(&n(2)) => len == 16,
        Some(5) if matches!(n(2), 50 | 56..=59) => (13..=19).contains(&len),
        Some(6) => (13..=19).contains(&len),
        _ => false,
    };
    network && luhn(d)
}

/// The card inside `text` (digits with single space/dash separators): the whole run, else the longest
/// run of whole groups that is one. Returns a range relative to `text`.
fn payment_card(text: &[u8]) -> Option<Range<usize>> {
    let d = digits(text);
    if is_card(&d) {
        return Some(0..text.len());
    }
    // Group boundaries: where a digit follows a separator (or the start) and precedes one (or the end).
    let starts: Vec<usize> = (0..text.len())
        .filter(|&i| text[i].is_ascii_digit() && (i == 0 || !text[i - 1].is_ascii_digit()))
        .collect();
    let ends: Vec<usize> = (1..=text.len())
        .filter(|&i| text[i - 1].is_ascii_digit() && (i == text.len() || !text[i].is_ascii_digit()))
        .collect();
    let mut best: Option<Range<usize>> = None;
    for &s in &starts {
        for &e in ends.iter().filter(|&&e| e > s) {
            let d = digits(&text[s..e]);
            if is_card(&d) && best.as_ref().is_none_or(|b| e - s > b.len()) {
                best = Some(s..e);
            }
        }
    }
    best
}

/// IBAN lengths by country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

/// An IBAN at the start of `text` (spaces allowed between characters): its country's length of
/// characters with a mod-97 remainder of 1. Returns the matched length in bytes of `text`.
fn iban(text: &[u8]) -> Option<usize> {
    let country: &[u8] = text.get(..2)?;
    let len = IBAN_LENGTHS
        .iter()
        .find(|(c, _)| c.as_slice() == country)?
        .1;
    let mut chars = Vec::with_capacity(len);
    let mut end = 0;
    for (i, &b) in text.iter().enumerate() {
        if b == b' ' {
            continue;
        }
        chars.push(b);
        if chars.len() == len {
            end = i + 1;
            break;
        }
    }
    if chars.len() < len {
        return None;
    }
    // The IBAN must end where an alphanumeric run ends, not in the middle of a longer code.
    if text.get(end).is_some_and(u8::is_ascii_alphanumeric) {
        return None;
    }
    let mut rem: u32 = 0;
    for &b in chars[4..].iter().chain(&chars[..4]) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return None,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    (rem == 1).then_some(end)
}

/// US SSN issuance rules, plus the two numbers famously published and since voided.
fn us_ssn(d: &[u8]) -> bool {
    if d.len() != 9 {
        return false;
    }
    let n = |r: Range<usize>| d[r].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    let (area, group, serial) = (n(0..3), n(3..5), n(5..9));
    area != 0
        && area != 666
        && area < 900
        && group != 0
        && serial != 0
        && !matches!((area, group, serial), (78, 5, 1120) | (219, 9, 9999))
}

fn uk_nino(text: &[u8]) -> bool {
    let letters: Vec<u8> = text
        .iter()
        .filter(|b| b.is_ascii_alphabetic())
        .copied()
        .collect();
    let prefix = letters.get(..2).unwrap_or_default();
    !matches!(
        prefix,
        b"BG" | b"GB" | b"NK" | b"KN" | b"TN" | b"NT" | b"ZZ"
    )
}

fn es_dni(text: &[u8]) -> bool {
    const LETTERS: &[u8; 23] = b"TRWAGMYFPDXBNJZSQVHLCKE";
    let body: Vec<u8> = text.iter().filter(|&&b| b != b'-').copied().collect();
    let (Some(&letter), Some(number)) = (body.last(), body.get(..body.len().saturating_sub(1)))
    else {
        return false;
    };
    let mut n: u32 = 0;
    for (i, &b) in number.iter().enumerate() {
        let v = match (i, b) {
            (0, b'X') => 0,
            (0, b'Y') => 1,
            (0, b'Z') => 2,
            (_, b'0'..=b'9') => u32::from(b - b'0'),
            _ => return false,
        };
        n = n * 10 + v;
    }
    LETTERS[(n % 23) as usize] == letter
}

/// A calendar date that exists, in any of Y-M-D, D-M-Y or M-D-Y (with - / . separators).
fn date(text: &[u8]) -> bool {
    let parts: Vec<u32> = text
        .split(|b| matches!(b, b'-' | b'/' | b'.'))
        .map(|p| {
            std::str::from_utf8(p)
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
                .unwrap_or(0)
        })
        .collect();
    let [a, b, c] = parts[..] else {
        return false;
    };
    let valid = |y: u32, m: u32, d: u32| {
        let leap = (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
        let days = match m {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return false,
        };
        (1900..=2099).contains(&y) && (1..=days).contains(&d)
    };
    if a >= 1000 {
        valid(a, b, c)
    } else {
        valid(c, b, a) || valid(c, a, b)
    }
}

fn b64url(part: &[u8]) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.strip_suffix(b"=").unwrap_or(part))
        .ok()
}

fn jwt(text: &[u8]) -> bool {
    let header = text.split(|&b| b == b'.').next().unwrap_or_default();
    b64url(header)
        .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
        .is_some_and(|v| v.get("alg").is_some())
}

fn basic_credentials(text: &[u8]) -> bool {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .is_some_and(|s| s.contains(':') && !s.chars().any(char::is_control))
}

/// Letters and digits mixed, or long: a token rather than a word of prose.
fn secret_like(text: &[u8]) -> bool {
    let has_digit = text.iter().any(u8::is_ascii_digit);
    let has_alpha = text.iter().any(u8::is_ascii_alphabetic);
    let has_other = text.iter().any(|b| !b.is_ascii_alphanumeric());
    text.len() >= 8 && ((has_alpha && (has_digit || has_other)) || text.len() >= 32)
}

/// Values that say "no secret here": booleans, nulls, already-masked values, unexpanded variables.
fn placeholder(text: &[u8]) -> bool {
    let lower = text.to_ascii_lowercase();
    let t = lower.as_slice();
    matches!(
        t,
        b"true"
            | b"false"
            | b"null"
            | b"none"
            | b"nil"
            | b"undefined"
            | b"redacted"
            | b"masked"
            | b"[redacted]"
            | b"<redacted>"
            | b"changeme"
            | b"required"
            | b"optional"
    ) || t.iter().all(|&b| b == b'*' || b == b'x' || b == b'#')
        || t.starts_with(b"${")
        || t.starts_with(b"{{")
        || t.starts_with(b"<")
}

fn ipv4_stands_alone(hay: &[u8], span: &Range<usize>) -> bool {
    let before = span.start.checked_sub(1).map(|i| hay[i]);
    let after = hay.get(span.end).copied();
    let after2 = hay.get(span.end + 1).copied();
    let dotted_before = before == Some(b'.');
    let dotted_after = after == Some(b'.') && after2.is_some_and(|b| b.is_ascii_digit());
    !dotted_before && !dotted_after
}

/// The candidate must stand alone (no letter, digit, `:` or `.` glued to either side) and parse; the
/// unspecified and loopback addresses say nothing about anyone. Narrows a candidate that swallowed a
/// trailing `:port`-like group by trying shorter prefixes ending at a group boundary.
fn ipv6(hay: &[u8], span: Range<usize>) -> Option<Range<usize>> {
    let glued =
        |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || b == b':' || b == b'.');
    if glued(span.start.checked_sub(1).map(|i| hay[i])) {
        return None;
    }
    let mut end = span.end;
    while end > span.start + 1 {
        let text = std::str::from_utf8(&hay[span.start..end]).ok()?;
        if let Ok(addr) = text.parse::<std::net::Ipv6Addr>() {
            let trivial = addr.is_unspecified() || addr.is_loopback();
            let glued_after = hay
                .get(end)
                .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'.');
            return (!trivial && !glued_after).then_some(span.start..end);
        }
        match hay[span.start..end - 1].iter().rposition(|&b| b == b':') {
            Some(p) => end = span.start + p,
            None => return None,
        }
    }
    None
}

fn mac(text: &[u8]) -> bool {
    let seps: Vec<u8> = text
        .iter()
        .filter(|b| matches!(b, b':' | b'-'))
        .copied()
        .collect();
    seps.windows(2).all(|w| w[0] == w[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_and_cards() {
        assert!(luhn(&digits(b"4111111111111111")));
        assert!(!luhn(&digits(b"4111111111111112")));
        assert_eq!(payment_card(b"4111 1111 1111 1111"), Some(0..19));
        // A card after another number: narrowed to the card.
        let t = b"2 4012888888881881";
        assert_eq!(payment_card(t), Some(2..t.len()));
        assert_eq!(
            payment_card(b"1234567890123452"),
            None,
            "no network starts with 1"
        );
    }

    #[test]
    fn iban_checksum_and_length() {
        assert_eq!(iban(b"DE89 3704 0044 0532 0130 00"), Some(27));
        assert_eq!(iban(b"DE89 3704 0044 0532 0130 01"), None);
        assert_eq!(iban(b"FR14 2004 1010 0505 0001 3M02 606 EUR"), Some(33));
        assert_eq!(iban(b"XX89370400440532013000"), None, "unknown country");
    }

    #[test]
    fn dates_exist() {
        assert!(date(b"1984-03-12"));
        assert!(date(b"29/02/2000"));
        assert!(!date(b"29/02/1900"));
        assert!(!date(b"1984-02-30"));
        assert!(!date(b"31.04.1990"));
    }

    #[test]
    fn ipv6_stands_alone() {
        let hay = b"peer 2001:db8::1 closed";
        assert_eq!(ipv6(hay, 5..16), Some(5..16));
        assert_eq!(ipv6(b"std::vector", 2..5), None);
        assert_eq!(ipv6(b"::1", 0..3), None);
    }
}
