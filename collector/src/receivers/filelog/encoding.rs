//! Character encodings of tailed files: where a line ends, and how its bytes become a body.
//!
//! Lines are found in the raw bytes, before decoding, so a line is never split inside a character:
//! in UTF-8 and every ASCII-compatible encoding encoding_rs offers (latin1, shift_jis, gbk, big5, ...)
//! the byte 0x0A only ever stands for a newline, and in UTF-16 the newline is the aligned code unit
//! 0x000A. Invalid sequences become U+FFFD (counted by the caller), never an error: one bad byte must
//! not stop a file.

use std::borrow::Cow;

use encoding_rs::Encoding;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};

#[derive(Debug, Clone, Copy)]
pub enum Decoder {
    Utf8,
    /// Bytes kept as they are: a bytes body.
    Nop,
    /// UTF-16, little-endian or big-endian.
    Utf16 {
        little_endian: bool,
    },
    /// An ASCII-compatible encoding other than UTF-8.
    Other(&'static Encoding),
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

impl Decoder {
    /// The decoder for an `encoding` label (validation has refused unknown ones).
    pub fn new(label: &str) -> Result<Decoder, String> {
        let l = label.trim().to_ascii_lowercase();
        Ok(match l.as_str() {
            "utf-8" | "utf8" | "ascii" => Decoder::Utf8,
            "nop" => Decoder::Nop,
            _ => match Encoding::for_label(l.as_bytes()) {
                Some(e) if e == encoding_rs::UTF_8 => Decoder::Utf8,
                Some(e) if e == encoding_rs::UTF_16LE => Decoder::Utf16 {
                    little_endian: true,
                },
                Some(e) if e == encoding_rs::UTF_16BE => Decoder::Utf16 {
                    little_endian: false,
                },
                Some(e) if e != encoding_rs::REPLACEMENT => Decoder::Other(e),
                _ => return Err(format!("'{label}' is not a supported encoding")),
            },
        })
    }

    /// Bytes of the newline terminator.
    pub fn newline_len(&self) -> usize {
        match self {
            Decoder::Utf16 { .. } => 2,
            _ => 1,
        }
    }

    /// The index of the first newline at or after `from` (`from` is aligned to a code unit).
    pub fn find_newline(&self, buf: &[u8], from: usize) -> Option<usize> {
        match self {
            Decoder::Utf16 { little_endian } => {
                let unit: [u8; 2] = if *little_endian { [0x0A, 0] } else { [0, 0x0A] };
                let mut i = from;
                while i + 1 < buf.len() {
                    if buf[i..i + 2] == unit {
                        return Some(i);
                    }
                    i += 2;
                }
                None
            }
            _ => memchr::memchr(b'\n', &buf[from.min(buf.len())..]).map(|i| i + from),
        }
    }

    /// `line` without a trailing carriage return (CRLF files).
    pub fn trim_cr<'b>(&self, line: &'b [u8]) -> &'b [u8] {
        match self {
            Decoder::Utf16 { little_endian } => {
                let cr: [u8; 2] = if *little_endian { [0x0D, 0] } else { [0, 0x0D] };
                line.strip_suffix(&cr[..]).unwrap_or(line)
            }
            _ => line.strip_suffix(b"\r").unwrap_or(line),
        }
    }

    /// How many leading bytes of a line belong to a byte-order mark at the start of a file.
    pub fn bom_len(&self, file_start: &[u8]) -> usize {
        match self {
            Decoder::Utf8 if file_start.starts_with(UTF8_BOM) => UTF8_BOM.len(),
            Decoder::Utf16 { little_endian } => {
                let bom: [u8; 2] = if *little_endian {
                    [0xFF, 0xFE]
                } else {
                    [0xFE, 0xFF]
                };
                if file_start.starts_with(&bom) {
                    2
                } else {
                    0
                }
            }
            _ => 0,
        }
    }

    /// The longest prefix of `bytes` of at most `max` bytes that ends on a character boundary (for
    /// cutting an entry longer than max_log_size without splitting a character).
    pub fn cut(&self, bytes: &[u8], max: usize) -> usize {
        if bytes.len() <= max {
            return bytes.len();
        }
        let cut = match self {
            Decoder::Utf8 => {
                let mut c = max;
                // Back off over at most three continuation bytes (10xxxxxx) to a character start.
                while c > 0 && max - c < 3 && (bytes[c] & 0xC0) == 0x80 {
                    c -= 1;
                }
                if (bytes[c] & 0xC0) == 0x80 {
                    max
                } else {
                    c
                }
            }
            Decoder::Utf16 { .. } => max & !1,
            _ => max,
        };
        // Always make progress, whatever the bytes.
        cut.max(self.newline_len().min(bytes.len()))
    }

    /// The text of `bytes` for matching patterns against (lossy).
    pub fn text<'b>(&self, bytes: &'b [u8]) -> Cow<'b, str> {
        match self {
            Decoder::Utf8 | Decoder::Nop => String::from_utf8_lossy(bytes),
            Decoder::Utf16 { little_endian } => {
                let e = if *little_endian {
                    encoding_rs::UTF_16LE
                } else {
                    encoding_rs::UTF_16BE
                };
                e.decode_without_bom_handling(bytes).0
            }
            Decoder::Other(e) => e.decode_without_bom_handling(bytes).0,
        }
    }

    /// The body for `bytes`, and whether invalid sequences had to be replaced.
    pub fn body(&self, bytes: &[u8]) -> (AnyValue, bool) {
        let (value, replaced) = match self {
            Decoder::Nop => (any_value::Value::BytesValue(bytes.to_vec()), false),
            Decoder::Utf8 => match std::str::from_utf8(bytes) {
                Ok(s) => (any_value::Value::StringValue(s.to_owned()), false),
                Err(_) => (
                    any_value::Value::StringValue(String::from_utf8_lossy(bytes).into_owned()),
                    true,
                ),
            },
            Decoder::Utf16 { little_endian } => {
                let e = if *little_endian {
                    encoding_rs::UTF_16LE
                } else {
                    encoding_rs::UTF_16BE
                };
                let (text, had_errors) = e.decode_without_bom_handling(bytes);
                (any_value::Value::StringValue(text.into_owned()), had_errors)
            }
            Decoder::Other(e) => {
                let (text, had_errors) = e.decode_without_bom_handling(bytes);
                (any_value::Value::StringValue(text.into_owned()), had_errors)
            }
        };
        (AnyValue { value: Some(value) }, replaced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(v: &AnyValue) -> &str {
        match &v.value {
            Some(any_value::Value::StringValue(s)) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_and_reported() {
        let d = Decoder::new("utf-8").unwrap();
        let (body, replaced) = d.body(b"caf\xC3\xA9 \xFF ok");
        assert_eq!(text_of(&body), "café \u{FFFD} ok");
        assert!(replaced);
        assert!(!d.body(b"fine").1);
    }

    #[test]
    fn utf16_newlines_are_aligned_code_units() {
        let d = Decoder::new("utf-16le").unwrap();
        // U+0A00 U+0100 is 00 0A 00 01 in LE: the bytes 0A 00 straddle two units and are no newline.
        let mut bytes: Vec<u8> = "a\u{0A00}\u{0100}b"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let first_line_end = bytes.len();
        bytes.extend("\nnext".encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(d.find_newline(&bytes, 0), Some(first_line_end));
        assert_eq!(
            text_of(&d.body(&bytes[..first_line_end]).0),
            "a\u{0A00}\u{0100}b"
        );
    }

    #[test]
    fn cuts_fall_on_character_boundaries() {
        let d = Decoder::Utf8;
        let s = "ab€cd".as_bytes(); // € is 3 bytes at 2..5
        assert_eq!(d.cut(s, 3), 2);
        assert_eq!(d.cut(s, 5), 5);
        assert_eq!(d.cut(s, 100), s.len());
        assert_eq!(
            Decoder::Utf16 {
                little_endian: true
            }
            .cut(&[0; 10], 5),
            4
        );
    }

    #[test]
    fn latin1_and_shift_jis_decode() {
        let d = Decoder::new("latin1").unwrap();
        assert_eq!(text_of(&d.body(b"caf\xE9").0), "café");
        let d = Decoder::new("shift_jis").unwrap();
        assert_eq!(text_of(&d.body(b"\x93\xfa\x96\x7b").0), "日本");
        assert!(Decoder::new("klingon").is_err());
    }
}
