//! Splitting a file's bytes into log entries: one per line, or several lines per entry with
//! `multiline.line_start_pattern` / `line_end_pattern`.
//!
//! The splitter is given the bytes from the reader's position on and says which entries are complete
//! and how many bytes they cover. Bytes after the last complete entry (a line still being written, or a
//! multiline entry that the next start line has not closed yet) are not consumed: the reader reads
//! them again at its next poll, so nothing half-written is ever emitted and the checkpoint always
//! falls on an entry boundary. When the caller says the file has stopped growing (`flush`, after
//! `force_flush_period`), the pending bytes are emitted as one last entry.
//!
//! No entry is longer than `max_log_size`: a longer one is emitted in pieces of that size, cut on a
//! character boundary, each piece flagged so the caller counts it.

use regex::Regex;

use super::encoding::Decoder;

/// How lines group into entries.
#[derive(Debug)]
pub enum Mode {
    Lines,
    /// An entry begins at each line matching the pattern.
    Start(Regex),
    /// An entry ends at each line matching the pattern.
    End(Regex),
}

/// One entry, as byte ranges of the buffer the splitter was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The entry's bytes are `start..end` (without the final newline).
    pub start: usize,
    pub end: usize,
    /// The buffer offset after the entry and its newline: where the next entry begins.
    pub next: usize,
    /// The entry is a piece of one longer than max_log_size.
    pub cut: bool,
}

#[derive(Debug)]
pub struct Splitter {
    pub decoder: Decoder,
    mode: Mode,
    max_log_size: usize,
}

/// A run of lines not yet emitted: `start..end` with `next` after its last newline.
#[derive(Debug, Clone, Copy)]
struct Pending {
    start: usize,
    end: usize,
    next: usize,
}

impl Splitter {
    pub fn new(decoder: Decoder, mode: Mode, max_log_size: usize) -> Splitter {
        Splitter {
            decoder,
            mode,
            max_log_size: max_log_size.max(1),
        }
    }

    pub fn max_log_size(&self) -> usize {
        self.max_log_size
    }

    /// The complete entries in `buf` (at most `max_entries`), and the bytes they cover. `skip` leading
    /// bytes are not part of any entry (a byte-order mark). With `flush`, what is pending at the end
    /// is emitted too.
    pub fn split(
        &self,
        buf: &[u8],
        skip: usize,
        flush: bool,
        max_entries: usize,
    ) -> (Vec<Entry>, usize) {
        let mut out = Vec::new();
        let nl = self.decoder.newline_len();
        let mut consumed = skip.min(buf.len());
        let mut pos = consumed;
        let mut pending: Option<Pending> = None;
        while out.len() < max_entries {
            let Some(at) = self.decoder.find_newline(buf, pos) else {
                break;
            };
            let line = Pending {
                start: pos,
                end: at,
                next: at + nl,
            };
            pos = line.next;
            match &self.mode {
                Mode::Lines => {
                    self.emit(&mut out, buf, line);
                    consumed = line.next;
                }
                Mode::Start(re) => {
                    let starts = re.is_match(&self.decoder.text(&buf[line.start..line.end]));
                    match pending {
                        Some(p) if starts => {
                            self.emit(&mut out, buf, p);
                            consumed = p.next;
                            pending = Some(line);
                        }
                        Some(ref mut p) => {
                            p.end = line.end;
                            p.next = line.next;
                        }
                        None => pending = Some(line),
                    }
                }
                Mode::End(re) => {
                    let ends = re.is_match(&self.decoder.text(&buf[line.start..line.end]));
                    let mut p = pending.take().unwrap_or(line);
                    p.end = line.end;
                    p.next = line.next;
                    if ends {
                        self.emit(&mut out, buf, p);
                        consumed = p.next;
                    } else {
                        pending = Some(p);
                    }
                }
            }
            // A pending multiline entry that outgrew the limit is emitted in pieces now, so a pattern
            // that never matches cannot hold a whole file in the buffer.
            if let Some(p) = pending {
                if p.end - p.start > self.max_log_size {
                    let rest = self.emit_pieces(&mut out, buf, p);
                    consumed = rest.start;
                    pending = Some(rest);
                }
            }
        }
        if out.len() >= max_entries {
            return (out, consumed);
        }
        // The tail: pending lines (multiline) and a line without its newline yet.
        let tail = match pending {
            Some(p) => Pending {
                start: p.start,
                end: buf.len(),
                next: buf.len(),
            },
            None => Pending {
                start: pos,
                end: buf.len(),
                next: buf.len(),
            },
        };
        if tail.end > tail.start {
            if flush {
                self.emit(&mut out, buf, tail);
                consumed = tail.next;
            } else if tail.end - tail.start > self.max_log_size {
                let rest = self.emit_pieces(&mut out, buf, tail);
                consumed = rest.start;
            }
        }
        (out, consumed)
    }

    /// Emits `p`, in pieces if it is longer than max_log_size (the last piece ends where `p` does).
    fn emit(&self, out: &mut Vec<Entry>, buf: &[u8], p: Pending) {
        let rest = self.emit_pieces(out, buf, p);
        out.push(Entry {
            start: rest.start,
            end: rest.end,
            next: rest.next,
            cut: rest.start != p.start,
        });
    }

    /// Emits `max_log_size` pieces from the front of `p` while it is longer than that, cut on
    /// character boundaries, and returns what is left.
    fn emit_pieces(&self, out: &mut Vec<Entry>, buf: &[u8], mut p: Pending) -> Pending {
        while p.end - p.start > self.max_log_size {
            let len = self.decoder.cut(&buf[p.start..p.end], self.max_log_size);
            out.push(Entry {
                start: p.start,
                end: p.start + len,
                next: p.start + len,
                cut: true,
            });
            p.start += len;
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &Splitter, buf: &[u8], flush: bool) -> (Vec<String>, usize) {
        let (entries, consumed) = s.split(buf, 0, flush, usize::MAX);
        let texts = entries
            .iter()
            .map(|e| String::from_utf8_lossy(&buf[e.start..e.end]).into_owned())
            .collect();
        (texts, consumed)
    }

    #[test]
    fn one_entry_per_line_and_the_partial_line_waits() {
        let s = Splitter::new(Decoder::Utf8, Mode::Lines, 100);
        let (out, consumed) = lines(&s, b"one\ntwo\r\nthr", false);
        assert_eq!(out, vec!["one", "two\r"]);
        assert_eq!(consumed, 9);
        let (out, consumed) = lines(&s, b"one\ntwo\r\nthr", true);
        assert_eq!(out, vec!["one", "two\r", "thr"]);
        assert_eq!(consumed, 12);
    }

    #[test]
    fn start_pattern_groups_continuation_lines() {
        let s = Splitter::new(
            Decoder::Utf8,
            Mode::Start(Regex::new(r"^\d{4}-").unwrap()),
            1000,
        );
        let buf = b"2024-01 first\n  at a\n  at b\n2024-02 second\n2024-03 third\n  more\n";
        let (out, consumed) = lines(&s, buf, false);
        assert_eq!(out, vec!["2024-01 first\n  at a\n  at b", "2024-02 second"]);
        // "third" waits for the next start line (or the flush).
        assert_eq!(&buf[consumed..], b"2024-03 third\n  more\n");
        let (out, _) = lines(&s, buf, true);
        assert_eq!(out.last().unwrap(), "2024-03 third\n  more\n");
    }

    #[test]
    fn end_pattern_closes_entries() {
        let s = Splitter::new(Decoder::Utf8, Mode::End(Regex::new(r";$").unwrap()), 1000);
        let (out, consumed) = lines(&s, b"a\nb;\nc;\nd\n", false);
        assert_eq!(out, vec!["a\nb;", "c;"]);
        assert_eq!(consumed, 8);
    }

    #[test]
    fn long_lines_are_cut_into_pieces() {
        let s = Splitter::new(Decoder::Utf8, Mode::Lines, 4);
        let (entries, consumed) = s.split(b"abcdefghij\nxy\n", 0, false, usize::MAX);
        let texts: Vec<&[u8]> = entries
            .iter()
            .map(|e| &b"abcdefghij\nxy\n"[e.start..e.end])
            .collect();
        assert_eq!(texts, vec![&b"abcd"[..], b"efgh", b"ij", b"xy"]);
        assert_eq!(
            entries.iter().map(|e| e.cut).collect::<Vec<_>>(),
            vec![true, true, true, false]
        );
        assert_eq!(consumed, 14);
        // A line with no newline yet, already too long, is cut without waiting for the rest.
        let (entries, consumed) = s.split(b"0123456789", 0, false, usize::MAX);
        assert_eq!(entries.len(), 2);
        assert_eq!(consumed, 8);
    }

    #[test]
    fn a_pattern_that_never_matches_cannot_grow_an_entry_forever() {
        let s = Splitter::new(Decoder::Utf8, Mode::End(Regex::new("NEVER").unwrap()), 10);
        let buf = b"aaaa\nbbbb\ncccc\ndddd\n";
        let (entries, consumed) = s.split(buf, 0, false, usize::MAX);
        assert!(!entries.is_empty());
        assert!(entries.iter().all(|e| e.end - e.start <= 10 && e.cut));
        assert!(consumed > 0);
    }

    #[test]
    fn the_entry_limit_stops_early_and_consumed_matches() {
        let s = Splitter::new(Decoder::Utf8, Mode::Lines, 100);
        let (entries, consumed) = s.split(b"a\nb\nc\n", 0, false, 2);
        assert_eq!(entries.len(), 2);
        assert_eq!(consumed, 4);
    }

    #[test]
    fn a_bom_is_skipped() {
        let s = Splitter::new(Decoder::Utf8, Mode::Lines, 100);
        let buf = b"\xEF\xBB\xBFfirst\n";
        let skip = Decoder::Utf8.bom_len(buf);
        let (entries, _) = s.split(buf, skip, false, 10);
        assert_eq!(&buf[entries[0].start..entries[0].end], b"first");
    }
}
