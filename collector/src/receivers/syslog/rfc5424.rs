//! RFC 5424 messages: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]`.
//!
//! The parser is strict about the header's shape (a malformed message is kept raw by the caller, with
//! the reason) and lenient about lengths: RFC 5424's limits on field lengths are a sender's duty, and
//! refusing an over-long app name would lose a message for no gain.

use super::{pri, Message, ParseError};

pub fn parse(text: &str) -> Result<Message, ParseError> {
    let (pri, rest) = pri(text)?;
    let mut msg = Message::from_pri(pri);
    let (version, rest) = token(rest, "VERSION")?;
    msg.version = Some(
        version
            .parse::<u16>()
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| ParseError(format!("VERSION '{version}' is not a number from 1")))?,
    );
    let (timestamp, rest) = token(rest, "TIMESTAMP")?;
    if timestamp != "-" {
        let ts: jiff::Timestamp = timestamp
            .parse()
            .map_err(|e| ParseError(format!("TIMESTAMP '{timestamp}' is not RFC 3339: {e}")))?;
        msg.timestamp = Some(ts.as_nanosecond());
    }
    let (hostname, rest) = token(rest, "HOSTNAME")?;
    msg.hostname = nil(hostname);
    let (appname, rest) = token(rest, "APP-NAME")?;
    msg.appname = nil(appname);
    let (proc_id, rest) = token(rest, "PROCID")?;
    msg.proc_id = nil(proc_id);
    let (msg_id, rest) = token(rest, "MSGID")?;
    msg.msg_id = nil(msg_id);
    let rest = if let Some(r) = rest.strip_prefix('-') {
        r
    } else if rest.starts_with('[') {
        let (sd, r) = structured_data(rest)?;
        msg.structured_data = sd;
        r
    } else {
        return Err(ParseError(
            "STRUCTURED-DATA must be - or start with [".into(),
        ));
    };
    match rest.strip_prefix(' ') {
        Some(m) => {
            let m = m.strip_prefix('\u{FEFF}').unwrap_or(m);
            if !m.is_empty() {
                msg.message = Some(m.to_owned());
            }
        }
        None if rest.is_empty() => {}
        None => return Err(ParseError("expected a space after STRUCTURED-DATA".into())),
    }
    Ok(msg)
}

/// The next space-terminated header field, and the text after the space.
fn token<'t>(text: &'t str, what: &str) -> Result<(&'t str, &'t str), ParseError> {
    match text.split_once(' ') {
        Some((t, rest)) if !t.is_empty() => Ok((t, rest)),
        _ => Err(ParseError(format!("missing {what}"))),
    }
}

fn nil(field: &str) -> Option<String> {
    (field != "-").then(|| field.to_owned())
}

type Elements = Vec<(String, Vec<(String, String)>)>;

/// `[id name="value" ...][...]`, and the text after the last `]`.
fn structured_data(mut text: &str) -> Result<(Elements, &str), ParseError> {
    let mut out = Vec::new();
    while let Some(body) = text.strip_prefix('[') {
        let id_end = body
            .find([' ', ']'])
            .ok_or_else(|| ParseError("unterminated SD-ELEMENT".into()))?;
        let id = &body[..id_end];
        if id.is_empty() {
            return Err(ParseError("empty SD-ID".into()));
        }
        let mut rest = &body[id_end..];
        let mut params = Vec::new();
        loop {
            if let Some(r) = rest.strip_prefix(']') {
                rest = r;
                break;
            }
            if rest.is_empty() {
                return Err(ParseError(format!("unterminated SD-ELEMENT [{id}")));
            }
            let r = rest
                .strip_prefix(' ')
                .ok_or_else(|| ParseError(format!("expected a space or ] in [{id}")))?;
            let (name, r) = r
                .split_once("=\"")
                .ok_or_else(|| ParseError(format!("expected name=\"value\" in [{id}]")))?;
            let (value, r) = quoted(r)
                .ok_or_else(|| ParseError(format!("unterminated value of {name} in [{id}]")))?;
            params.push((name.to_owned(), value));
            rest = r;
        }
        out.push((id.to_owned(), params));
        text = rest;
    }
    Ok((out, text))
}

/// A PARAM-VALUE up to its closing quote, with `\"`, `\\` and `\]` unescaped.
fn quoted(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[i + 1..])),
            '\\' => match chars.next() {
                Some((_, e @ ('"' | '\\' | ']'))) => value.push(e),
                // Any other backslash is kept as written (RFC 5424 6.3.3).
                Some((_, other)) => {
                    value.push('\\');
                    value.push(other);
                }
                None => return None,
            },
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_message_with_structured_data() {
        let m = parse(
            r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Appl\"ication" eventID="1011"][examplePriority@32473 class="high"] An application event"#,
        )
        .unwrap();
        assert_eq!((m.facility, m.severity, m.priority), (20, 5, 165));
        assert_eq!(m.version, Some(1));
        assert_eq!(m.timestamp, Some(1_065_910_455_003_000_000));
        assert_eq!(m.hostname.as_deref(), Some("mymachine.example.com"));
        assert_eq!(m.appname.as_deref(), Some("evntslog"));
        assert_eq!(m.proc_id, None);
        assert_eq!(m.msg_id.as_deref(), Some("ID47"));
        assert_eq!(m.structured_data.len(), 2);
        assert_eq!(m.structured_data[0].0, "exampleSDID@32473");
        assert_eq!(
            m.structured_data[0].1[1],
            ("eventSource".to_owned(), "Appl\"ication".to_owned())
        );
        assert_eq!(m.message.as_deref(), Some("An application event"));
    }

    #[test]
    fn nil_fields_offsets_and_a_bom() {
        let m = parse("<13>1 2024-05-01T10:00:00.5+02:00 - - - - - \u{FEFF}héllo").unwrap();
        assert_eq!(m.timestamp, Some(1_714_550_400_500_000_000));
        assert_eq!(m.hostname, None);
        assert!(m.structured_data.is_empty());
        assert_eq!(m.message.as_deref(), Some("héllo"));
        let m = parse("<13>1 - host app 12 - -").unwrap();
        assert_eq!((m.timestamp, m.message), (None, None));
        assert_eq!(m.proc_id.as_deref(), Some("12"));
    }

    #[test]
    fn malformed_messages_say_why() {
        for (text, why) in [
            ("hello", "PRI"),
            ("<999>1 - - - - - -", "PRI"),
            ("<13>x - - - - - -", "VERSION"),
            ("<13>1 yesterday h a p m -", "TIMESTAMP"),
            ("<13>1 - h a p m", "MSGID"),
            ("<13>1 - h a p m [id k=\"v\"", "unterminated"),
            ("<13>1 - h a p m [id k=v]", "name=\"value\""),
            ("<13>1 - h a p m x", "STRUCTURED-DATA"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.0.contains(why), "{text}: {e:?}");
        }
    }
}
