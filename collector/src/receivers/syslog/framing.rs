//! Message framing on a syslog TCP stream (RFC 6587): octet counting (`LEN SP MSG`) or a trailer
//! (non-transparent framing, LF by default, NUL if configured), detected per message: a syslog message
//! begins with `<`, so a frame that begins with a digit is octet-counted.
//!
//! The buffer never holds more than `max` bytes of one message: a longer message is cut at `max` (the
//! piece is returned flagged, for counting) and the rest of it is skipped — by its declared length, or
//! up to the next trailer — so one bad sender cannot grow memory or desynchronise the stream for good.

/// One message from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub bytes: Vec<u8>,
    /// The message was longer than the limit and this is its first `max` bytes.
    pub cut: bool,
}

#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    trailer: u8,
    max: usize,
    /// Bytes of an over-long octet-counted message still to skip.
    skip: usize,
    /// An over-long trailer-framed message is being skipped up to its trailer.
    skip_to_trailer: bool,
}

/// Digits of a length prefix beyond which the prefix is not believed.
const MAX_LEN_DIGITS: usize = 10;

impl Framer {
    pub fn new(trailer: u8, max: usize) -> Framer {
        Framer {
            buf: Vec::new(),
            trailer,
            max: max.max(1),
            skip: 0,
            skip_to_trailer: false,
        }
    }

    pub fn push(&mut self, mut data: &[u8]) {
        if self.skip > 0 {
            let n = self.skip.min(data.len());
            self.skip -= n;
            data = &data[n..];
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered and not yet framed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message, if the buffer holds one.
    pub fn next_frame(&mut self) -> Option<Frame> {
        if self.skip_to_trailer {
            match self.buf.iter().position(|b| *b == self.trailer) {
                Some(i) => {
                    self.buf.drain(..=i);
                    self.skip_to_trailer = false;
                }
                None => {
                    self.buf.clear();
                    return None;
                }
            }
        }
        // Blank lines and stray trailers between messages carry nothing.
        let lead = self
            .buf
            .iter()
            .take_while(|b| **b == self.trailer || **b == b'\n' || **b == b'\r')
            .count();
        self.buf.drain(..lead);
        let first = *self.buf.first()?;
        if first.is_ascii_digit() {
            if let Some(frame) = self.octet_counted() {
                return frame;
            }
        }
        self.trailer_framed()
    }

    /// `Some(Some(frame))`: a message; `Some(None)`: wait for more bytes; `None`: not a length prefix
    /// after all (frame by trailer instead).
    #[allow(clippy::option_option)]
    fn octet_counted(&mut self) -> Option<Option<Frame>> {
        let digits = self.buf.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits > MAX_LEN_DIGITS {
            return None;
        }
        match self.buf.get(digits) {
            None => return Some(None), // the length is still arriving
            Some(b' ') => {}
            Some(_) => return None,
        }
        let len: usize = std::str::from_utf8(&self.buf[..digits])
            .ok()?
            .parse()
            .ok()?;
        let start = digits + 1;
        if len > self.max {
            if self.buf.len() < start + self.max {
                return Some(None);
            }
            let bytes = self.buf[start..start + self.max].to_vec();
            let have = self.buf.len() - start;
            if have >= len {
                self.buf.drain(..start + len);
            } else {
                self.skip = len - have;
                self.buf.clear();
            }
            return Some(Some(Frame { bytes, cut: true }));
        }
        if self.buf.len() < start + len {
            return Some(None);
        }
        let bytes = self.buf[start..start + len].to_vec();
        self.buf.drain(..start + len);
        Some(Some(Frame { bytes, cut: false }))
    }

    fn trailer_framed(&mut self) -> Option<Frame> {
        match self.buf.iter().position(|b| *b == self.trailer) {
            Some(i) if i <= self.max => {
                let mut bytes: Vec<u8> = self.buf.drain(..=i).collect();
                bytes.pop();
                if bytes.last() == Some(&b'\r') {
                    bytes.pop();
                }
                Some(Frame { bytes, cut: false })
            }
            Some(_) => Some(self.cut_front(true)),
            None if self.buf.len() > self.max => Some(self.cut_front(false)),
            None => None,
        }
    }

    /// The first `max` bytes as a cut message; the rest of that message is skipped.
    fn cut_front(&mut self, trailer_in_buffer: bool) -> Frame {
        let bytes: Vec<u8> = self.buf.drain(..self.max).collect();
        if trailer_in_buffer {
            let i = self
                .buf
                .iter()
                .position(|b| *b == self.trailer)
                .unwrap_or(self.buf.len());
            self.buf.drain(..(i + 1).min(self.buf.len()));
        } else {
            self.buf.clear();
            self.skip_to_trailer = true;
        }
        Frame { bytes, cut: true }
    }

    /// At the end of the stream: what is left, as a last message without its trailer.
    pub fn finish(&mut self) -> Option<Frame> {
        if self.skip_to_trailer || self.skip > 0 {
            self.buf.clear();
            return None;
        }
        let mut bytes = std::mem::take(&mut self.buf);
        while bytes.last().is_some_and(|b| *b == b'\r' || *b == b'\n') {
            bytes.pop();
        }
        (!bytes.is_empty()).then_some(Frame { bytes, cut: false })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(f: &mut Framer) -> Vec<(String, bool)> {
        std::iter::from_fn(|| f.next_frame())
            .map(|fr| (String::from_utf8(fr.bytes).unwrap(), fr.cut))
            .collect()
    }

    #[test]
    fn newline_and_octet_counted_frames_mix_and_split_anywhere() {
        let stream = b"<13>1 - a\n11 <13>1 - b\nc<13>1 - d\r\n\n5 <1>xy";
        let mut whole = Framer::new(b'\n', 1024);
        whole.push(stream);
        let expected = vec![
            ("<13>1 - a".to_owned(), false),
            ("<13>1 - b\nc".to_owned(), false),
            ("<13>1 - d".to_owned(), false),
            ("<1>xy".to_owned(), false),
        ];
        assert_eq!(all(&mut whole), expected);
        // The same stream a byte at a time.
        let mut trickle = Framer::new(b'\n', 1024);
        let mut got = Vec::new();
        for b in stream {
            trickle.push(&[*b]);
            got.extend(all(&mut trickle));
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn over_long_messages_are_cut_and_the_stream_resynchronises() {
        let mut f = Framer::new(b'\n', 4);
        f.push(b"<1>abcdefgh\n<2>x\n");
        assert_eq!(
            all(&mut f),
            vec![("<1>a".to_owned(), true), ("<2>x".to_owned(), false)]
        );
        // Octet-counted, longer than the limit, arriving in pieces.
        let mut f = Framer::new(b'\n', 4);
        f.push(b"10 <1>abc");
        assert_eq!(all(&mut f), vec![("<1>a".to_owned(), true)]);
        f.push(b"defg3 <2>");
        assert_eq!(all(&mut f), vec![("<2>".to_owned(), false)]);
        // Trailer-framed, no trailer yet: cut now, skip to the trailer.
        let mut f = Framer::new(b'\n', 4);
        f.push(b"<1>abcdef");
        assert_eq!(all(&mut f), vec![("<1>a".to_owned(), true)]);
        f.push(b"ghi\n<3>k\n");
        assert_eq!(all(&mut f), vec![("<3>k".to_owned(), false)]);
        assert!(f.buffered() == 0);
    }

    #[test]
    fn nul_trailer_and_the_last_message_without_one() {
        let mut f = Framer::new(0, 100);
        f.push(b"<1>a\0<2>b\n\0<3>c");
        assert_eq!(
            all(&mut f),
            vec![("<1>a".to_owned(), false), ("<2>b\n".to_owned(), false)]
        );
        assert_eq!(f.finish().unwrap().bytes, b"<3>c");
        assert_eq!(f.finish(), None);
    }
}
