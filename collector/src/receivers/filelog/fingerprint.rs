//! File identity by content: a file is known by its first `fingerprint_size` bytes, not by its name or
//! inode, because rotation changes the name (rename), the inode (copytruncate copies the content to a
//! new file), or both, and a restart knows neither.
//!
//! A fingerprint grows with its file until it is `fingerprint_size` long. A stored fingerprint matches a
//! file when the file's first bytes are exactly the stored ones: the file is the same one, perhaps
//! grown since. An empty file has no fingerprint and is not read until it has content.

use std::fs::File;
use std::os::unix::fs::FileExt;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fingerprint(pub Vec<u8>);

impl Fingerprint {
    /// The first `size` bytes of `file` (fewer if the file is shorter).
    pub fn read(file: &File, size: usize) -> std::io::Result<Fingerprint> {
        let mut buf = vec![0u8; size];
        let mut filled = 0;
        while filled < size {
            match file.read_at(&mut buf[filled..], filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(filled);
        Ok(Fingerprint(buf))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether a file whose first bytes are `current` is the file this fingerprint was taken of.
    pub fn matches(&self, current: &Fingerprint) -> bool {
        !self.is_empty() && current.0.starts_with(&self.0)
    }

    /// Hex, for checkpoints and logs.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(s: &str) -> Option<Fingerprint> {
        if !s.len().is_multiple_of(2) {
            return None;
        }
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()
            .map(Fingerprint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_grown_file_still_matches_and_a_rewritten_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut f = File::create(&path).unwrap();
        f.write_all(b"first line\n").unwrap();
        let early = Fingerprint::read(&File::open(&path).unwrap(), 64).unwrap();
        assert_eq!(early.0, b"first line\n");
        f.write_all(b"second line\n").unwrap();
        let later = Fingerprint::read(&File::open(&path).unwrap(), 16).unwrap();
        assert_eq!(later.len(), 16);
        assert!(early.matches(&Fingerprint::read(&File::open(&path).unwrap(), 64).unwrap()));
        assert!(
            !later.matches(&early),
            "a shorter file cannot be the same grown file"
        );
        std::fs::write(&path, b"other content\n").unwrap();
        assert!(!early.matches(&Fingerprint::read(&File::open(&path).unwrap(), 64).unwrap()));
        assert!(
            !Fingerprint::default().matches(&early),
            "an empty fingerprint matches nothing"
        );
        assert_eq!(Fingerprint::from_hex(&later.to_hex()), Some(later));
        assert_eq!(Fingerprint::from_hex("zz"), None);
    }
}
