//! Checkpoints: for each file a receiver has read, its fingerprint and the offset up to which every
//! entry is durably in the queue, kept in the queue's state store (RocksDB, the `state` column family).
//!
//! A checkpoint is written only after the acknowledgement for the entries it covers, which the pipeline
//! sends once their queue append is durable; so after any stop — clean, SIGKILL, power loss — the
//! receiver resumes at or before the first entry not yet queued, never after it. (A checkpoint write is
//! not itself fsynced; losing one in a power cut only moves the resumption point back, which repeats
//! entries but never skips one.)
//!
//! Keys are `filelog\0<receiver id>\0c<8-byte identity>`, values JSON (`fingerprint` in hex, `offset`,
//! `path`), so `outpost queue inspect`-style tooling and a human can read them. A marker key
//! `filelog\0<receiver id>\0started` remembers that the receiver has run before, so `start_at: end`
//! applies to its very first start only, not to files created while the agent was stopped.

use outpost_pipelines::queue::{QueueError, StateStore};

use super::fingerprint::Fingerprint;

/// One file's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The identity's key, stable for the file's life (names and inodes change, this does not).
    pub key: u64,
    pub fingerprint: Fingerprint,
    /// Everything before this offset is durably queued.
    pub offset: u64,
    /// The path the file was last seen at (for people; matching is by fingerprint).
    pub path: String,
}

/// The checkpoints of one receiver.
#[derive(Clone, Debug)]
pub struct Checkpoints {
    state: StateStore,
    prefix: Vec<u8>,
}

impl Checkpoints {
    pub fn new(state: StateStore, receiver: &str) -> Checkpoints {
        let mut prefix = b"filelog\0".to_vec();
        prefix.extend_from_slice(receiver.as_bytes());
        prefix.push(0);
        Checkpoints { state, prefix }
    }

    fn key(&self, key: u64) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.push(b'c');
        k.extend_from_slice(&key.to_be_bytes());
        k
    }

    fn started_key(&self) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(b"started");
        k
    }

    /// Every stored checkpoint, and whether the receiver ran before. Entries that do not decode (written
    /// by a future version, or damaged) are skipped with a warning: their files are read again.
    pub fn load(&self) -> Result<(Vec<Checkpoint>, bool), QueueError> {
        let started = self.state.get(&self.started_key())?.is_some();
        let mut prefix = self.prefix.clone();
        prefix.push(b'c');
        let mut out = Vec::new();
        for (k, v) in self.state.scan_prefix(&prefix)? {
            let Some(key) = k
                .get(prefix.len()..)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
            else {
                continue;
            };
            match decode(&v) {
                Some((fingerprint, offset, path)) => out.push(Checkpoint {
                    key,
                    fingerprint,
                    offset,
                    path,
                }),
                None => tracing::warn!(key, "an unreadable filelog checkpoint is ignored"),
            }
        }
        Ok((out, started))
    }

    pub fn mark_started(&self) -> Result<(), QueueError> {
        self.state.put(&self.started_key(), b"1")
    }

    pub fn save(&self, cp: &Checkpoint) -> Result<(), QueueError> {
        let value = serde_json::json!({
            "fingerprint": cp.fingerprint.to_hex(),
            "offset": cp.offset,
            "path": cp.path,
        });
        self.state
            .put(&self.key(cp.key), value.to_string().as_bytes())
    }

    pub fn remove(&self, key: u64) -> Result<(), QueueError> {
        self.state.delete(&self.key(key))
    }
}

fn decode(v: &[u8]) -> Option<(Fingerprint, u64, String)> {
    let json: serde_json::Value = serde_json::from_slice(v).ok()?;
    let fingerprint = Fingerprint::from_hex(json.get("fingerprint")?.as_str()?)?;
    let offset = json.get("offset")?.as_u64()?;
    let path = json
        .get("path")
        .and_then(|p| p.as_str())
        .unwrap_or_default()
        .to_owned();
    Some((fingerprint, offset, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_pipelines::queue::{Overflow, Queue, QueueOptions, SyncPolicy};
    use outpost_pipelines::Telemetry;

    pub(crate) fn queue(dir: &std::path::Path) -> Queue {
        Queue::open(
            QueueOptions {
                directory: dir.to_path_buf(),
                max_size: 64 << 20,
                high_watermark: 32 << 20,
                low_watermark: 16 << 20,
                overflow: Overflow::Block,
                sync: SyncPolicy::Never,
                max_age: None,
            },
            &Telemetry::new(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn checkpoints_round_trip_per_receiver() {
        let dir = tempfile::tempdir().unwrap();
        let q = queue(dir.path());
        let a = Checkpoints::new(q.state(), "filelog");
        // A receiver whose id extends the other's must not see its checkpoints.
        let b = Checkpoints::new(q.state(), "filelog/x");
        let cp = Checkpoint {
            key: 7,
            fingerprint: Fingerprint(b"hello\n".to_vec()),
            offset: 6,
            path: "/var/log/a.log".into(),
        };
        assert_eq!(a.load().unwrap(), (vec![], false));
        a.save(&cp).unwrap();
        a.mark_started().unwrap();
        assert_eq!(a.load().unwrap(), (vec![cp.clone()], true));
        assert_eq!(b.load().unwrap(), (vec![], false));
        a.remove(7).unwrap();
        assert_eq!(a.load().unwrap(), (vec![], true));
        q.close().await;
    }
}
