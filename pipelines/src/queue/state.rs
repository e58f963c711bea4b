//! The generic durable key-value store in the `state` column family, for features that need to remember
//! small things across restarts: file-tail checkpoints, cardinality allowlists, sampling decisions, the
//! last known good configuration.
//!
//! Keys and values are bytes; callers own their key space and should prefix keys with their component's
//! name (`filelog/<path>`). Writes go to the WAL before they return (a process kill loses nothing) but
//! are not fsynced unless asked with [`StateStore::put_durable`]; they share the queue's database, so they
//! cost one small RocksDB write and no file of their own.

use std::sync::Arc;

use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions};

use super::format::CF_STATE;
use super::shared::{cf, map_db_error, Core};
use super::QueueError;

/// One key and its value.
pub type StateEntry = (Vec<u8>, Vec<u8>);

/// Handle on the `state` column family; cheap to clone.
#[derive(Clone)]
pub struct StateStore {
    core: Arc<Core>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore").finish_non_exhaustive()
    }
}

impl StateStore {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        StateStore { core }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, QueueError> {
        let db = self.core.db()?;
        db.get_cf(cf(&db, CF_STATE)?, key).map_err(map_db_error)
    }

    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), QueueError> {
        let db = self.core.db()?;
        db.put_cf(cf(&db, CF_STATE)?, key, value)
            .map_err(map_db_error)
    }

    /// Like [`StateStore::put`], and fsynced before it returns (for state whose loss on power failure
    /// would be wrong rather than merely redone, such as a last known good configuration).
    pub fn put_durable(&self, key: &[u8], value: &[u8]) -> Result<(), QueueError> {
        let db = self.core.db()?;
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        db.put_cf_opt(cf(&db, CF_STATE)?, key, value, &wo)
            .map_err(map_db_error)
    }

    pub fn delete(&self, key: &[u8]) -> Result<(), QueueError> {
        let db = self.core.db()?;
        db.delete_cf(cf(&db, CF_STATE)?, key).map_err(map_db_error)
    }

    /// Applies `puts` and `deletes` as one atomic RocksDB write: one WAL append however many keys, for
    /// components that remember many small things (cardinality allowlists) and flush them periodically.
    pub fn write_batch(&self, puts: &[StateEntry], deletes: &[Vec<u8>]) -> Result<(), QueueError> {
        if puts.is_empty() && deletes.is_empty() {
            return Ok(());
        }
        let db = self.core.db()?;
        let cf = cf(&db, CF_STATE)?;
        let mut batch = WriteBatch::default();
        for (k, v) in puts {
            batch.put_cf(cf, k, v);
        }
        for k in deletes {
            batch.delete_cf(cf, k);
        }
        db.write(batch).map_err(map_db_error)
    }

    /// Every entry whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<StateEntry>, QueueError> {
        let db = self.core.db()?;
        let mut out = Vec::new();
        for item in db.iterator_cf(
            cf(&db, CF_STATE)?,
            IteratorMode::From(prefix, Direction::Forward),
        ) {
            let (k, v) = item.map_err(map_db_error)?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }
}
