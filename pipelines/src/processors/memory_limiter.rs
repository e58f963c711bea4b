//! Processor `memory_limiter`: a bound on the bytes of telemetry in flight between the receivers and the
//! queue, shared by every pipeline that lists the same `memory_limiter` id.
//!
//! The bound is enforced at admission, not inside the chain: a receiver reserves a request's size in the
//! [`ByteBudget`] before the request enters a pipeline and is refused (RESOURCE_EXHAUSTED / 429) when it
//! does not fit, so memory stays bounded without ever dropping data a client was told was accepted. The
//! reservation is released when the data reaches the end of the pipeline (see [`crate::batch`]). The
//! stage in the chain itself passes data through unchanged; it exists so the processor appears, and is
//! counted, where the config puts it.

use std::sync::Arc;

use outpost_config::MemoryLimiterConfig;

use crate::batch::{Batch, ByteBudget};
use crate::processor::{Emit, Processor};
use crate::signal::SignalData;
use crate::telemetry::Telemetry;

const MIB: u64 = 1024 * 1024;

/// The admission bound for `cfg`: `limit - spike` (the OTel Collector's soft limit; spike defaults to
/// 20% of the limit). `total_memory` resolves `limit_percentage`.
pub fn soft_limit_bytes(cfg: &MemoryLimiterConfig, total_memory: u64) -> u64 {
    let (limit, spike) = match (cfg.limit_mib, cfg.limit_percentage) {
        (Some(mib), _) => (mib * MIB, cfg.spike_limit_mib.map(|s| s * MIB)),
        (None, Some(pct)) => (
            total_memory / 100 * u64::from(pct),
            cfg.spike_limit_percentage
                .map(|p| total_memory / 100 * u64::from(p)),
        ),
        (None, None) => (0, None),
    };
    let spike = spike.unwrap_or(limit / 5);
    limit.saturating_sub(spike).max(1)
}

/// Total physical memory from /proc/meminfo; `None` where it cannot be read.
pub fn total_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The shared budget of one `memory_limiter` id, reported under its name in `/metrics`.
pub fn budget(name: &str, cfg: &MemoryLimiterConfig, telemetry: &Telemetry) -> Arc<ByteBudget> {
    ByteBudget::with_gauges(
        soft_limit_bytes(cfg, total_memory().unwrap_or(0)),
        telemetry.memory_limiter(name),
    )
}

/// The in-chain stage: passes data through.
pub struct MemoryLimiterStage;

impl<T: SignalData> Processor<T> for MemoryLimiterStage {
    fn process(&mut self, batch: Batch<T>, out: &mut Emit<T>) {
        out.push(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_limit_subtracts_the_spike() {
        let cfg = MemoryLimiterConfig {
            check_interval: None,
            limit_mib: Some(100),
            spike_limit_mib: Some(30),
            limit_percentage: None,
            spike_limit_percentage: None,
        };
        assert_eq!(soft_limit_bytes(&cfg, 0), 70 * MIB);
        let default_spike = MemoryLimiterConfig {
            spike_limit_mib: None,
            ..cfg.clone()
        };
        assert_eq!(soft_limit_bytes(&default_spike, 0), 80 * MIB);
        let pct = MemoryLimiterConfig {
            limit_mib: None,
            spike_limit_mib: None,
            limit_percentage: Some(50),
            spike_limit_percentage: Some(10),
            ..cfg
        };
        assert_eq!(soft_limit_bytes(&pct, 1000 * MIB), 400 * MIB);
    }
}
