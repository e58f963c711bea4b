//! The queue's tests: unit tests per guarantee ([`unit`]), a model test with proptest ([`model`]), and a
//! real full-disk test on a small tmpfs ([`disk_full`]).

mod disk_full;
mod model;
mod unit;

use std::path::Path;
use std::time::Duration;

use super::{Overflow, Queue, QueueOptions, SyncPolicy, Tuning};
use crate::telemetry::Telemetry;

const MIB: u64 = 1 << 20;

/// Generous limits, `Always`, `Block`.
pub(super) fn options(dir: &Path) -> QueueOptions {
    QueueOptions {
        directory: dir.to_owned(),
        max_size: 1024 * MIB,
        high_watermark: 800 * MIB,
        low_watermark: 600 * MIB,
        overflow: Overflow::Block,
        sync: SyncPolicy::Always,
        max_age: None,
    }
}

/// Maintenance only when a test asks (`run_maintenance`), small memtables.
pub(super) fn tuning() -> Tuning {
    Tuning {
        maintenance_interval: Duration::from_secs(3600),
        records_write_buffer: 4 << 20,
    }
}

pub(super) fn open(opts: QueueOptions, telemetry: &Telemetry) -> Queue {
    match Queue::open_tuned(opts, telemetry, tuning()) {
        Ok(q) => q,
        Err(e) => panic!("opening the queue failed: {e}"),
    }
}

/// `len` bytes that zstd cannot shrink (xorshift from `seed`), so stored sizes track `len`.
pub(super) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
