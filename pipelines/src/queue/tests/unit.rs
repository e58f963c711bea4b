//! One test per guarantee of the queue's contract.

use std::time::Duration;

use outpost_config::Signal;

use super::{noise, open, options};
use crate::queue::format::{self, CF_RECORDS};
use crate::queue::{inspect, verify, Appended, MaxLag, Overflow, QueueError, StartAt, SyncPolicy};
use crate::telemetry::Telemetry;

fn stored(r: Result<Appended, QueueError>) -> u64 {
    match r {
        Ok(Appended::Stored { seq }) => seq,
        other => panic!("expected Stored, got {other:?}"),
    }
}

async fn read_now(cursor: &mut crate::queue::Cursor, max: usize) -> Vec<u64> {
    match tokio::time::timeout(Duration::from_millis(50), cursor.next_batch(max)).await {
        Ok(Ok(batch)) => batch.iter().map(|r| r.seq).collect(),
        Ok(Err(e)) => panic!("next_batch failed: {e}"),
        Err(_) => Vec::new(),
    }
}

#[tokio::test]
async fn appended_records_come_back_decompressed_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let t = Telemetry::new();
    let q = open(options(dir.path()), &t);
    let s = q.stream("traces").unwrap();
    let mut c = s.cursor("otlp", StartAt::Oldest, None).unwrap();
    let payloads: Vec<Vec<u8>> = (0..3)
        .map(|i| format!("request {i} ").repeat(100).into_bytes())
        .collect();
    for (i, p) in payloads.iter().enumerate() {
        assert_eq!(
            stored(s.append(Signal::Traces, i as u32 + 1, p).await),
            i as u64 + 1
        );
    }
    let batch = c.next_batch(10).await.unwrap();
    assert_eq!(batch.len(), 3);
    for (i, r) in batch.iter().enumerate() {
        assert_eq!(
            (r.seq, r.lane, r.signal, r.items),
            (i as u64 + 1, 0, Signal::Traces, i as u32 + 1)
        );
        assert_eq!(&r.payload[..], &payloads[i][..]);
    }
    let st = q.stats();
    assert_eq!(st.records, 3);
    assert!(
        st.bytes > 0 && st.bytes < 3 * 1400,
        "compressed: {}",
        st.bytes
    );
    q.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let t = Telemetry::new();
    let q = open(options(dir.path()), &t);
    let s = q.stream("logs").unwrap();
    const N: usize = 400;
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.append(Signal::Logs, 1, &noise(2048, i as u64)).await })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.push(stored(task.await.unwrap()));
    }
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), N, "every append got its own sequence");
    let st = q.stats();
    assert_eq!(st.records, N as u64);
    assert_eq!(st.write_batches, st.wal_syncs, "Always syncs every batch");
    // Without group commit every append would take its own fsync (N). How many share one depends on
    // scheduling: alone this test takes a few dozen, a loaded machine running the whole suite over 100.
    assert!(
        st.wal_syncs * 2 <= N as u64,
        "{N} concurrent appends took {} fsyncs; group commit should share them",
        st.wal_syncs
    );
    q.close().await;
}

#[tokio::test]
async fn interval_policy_syncs_on_a_timer() {
    let dir = tempfile::tempdir().unwrap();
    let t = Telemetry::new();
    let mut o = options(dir.path());
    // Long enough that the check right after the append is not raced by the first tick.
    o.sync = SyncPolicy::Interval(Duration::from_millis(300));
    let q = open(o, &t);
    let s = q.stream("m").unwrap();
    stored(s.append(Signal::Metrics, 1, b"x").await);
    assert_eq!(q.stats().wal_syncs, 0, "Interval does not sync per append");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while q.stats().wal_syncs == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no timer fsync within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Three more ticks with nothing written.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        q.stats().wal_syncs,
        1,
        "one timer fsync for the dirty WAL, none while idle"
    );

    let dir2 = tempfile::tempdir().unwrap();
    let mut o = options(dir2.path());
    o.sync = SyncPolicy::Never;
    let q2 = open(o, &t);
    stored(
        q2.stream("m")
            .unwrap()
            .append(Signal::Metrics, 1, b"x")
            .await,
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(q2.stats().wal_syncs, 0);
    q.close().await;
    q2.close().await;
}

/// Limits sized in records of ~1 KiB of noise.
fn small(dir: &std::path::Path, overflow: Overflow) -> crate::queue::QueueOptions {
    let mut o = options(dir);
    o.max_size = 10_500; // ten records
    o.high_watermark = 6_300; // six
    o.low_watermark = 3_100; // three
    o.overflow = overflow;
    o
}

#[tokio::test]
async fn block_refuses_above_high_watermark_until_below_low() {
    let dir = tempfile::tempdir().unwrap();
    let t = Telemetry::new();
    let q = open(small(dir.path(), Overflow::Block), &t);
    let s = q.stream("t").unwrap();
    let mut c = s.cursor("e", StartAt::Oldest, None).unwrap();
    let mut n = 0;
    loop {
        match s.append(Signal::Traces, 1, &noise(1000, n)).await {
            Ok(Appended::Stored { .. }) => n += 1,
            Err(QueueError::Full) => break,
            other => panic!("{other:?}"),
        }
        assert!(n < 20);
    }
    assert_eq!(
        n, 7,
        "the record that crosses the high watermark is stored, the next refused"
    );
    assert!(q.pressure());
    assert!(QueueError::Full.retryable());
    // Deliver two: still above the low watermark, so still under pressure (hysteresis).
    let batch = c.next_batch(2).await.unwrap();
    for r in &batch {
        c.ack(r.seq).unwrap();
    }
    q.run_maintenance().await.unwrap();
    assert_eq!(q.stats().records, 5);
    assert!(q.pressure(), "between the watermarks pressure holds");
    assert_eq!(
        s.append(Signal::Traces, 1, b"x").await,
        Err(QueueError::Full)
    );
    // Deliver until below low.
    let batch = c.next_batch(3).await.unwrap();
    for r in &batch {
        c.ack(r.seq).unwrap();
    }
    q.run_maintenance().await.unwrap();
    assert_eq!(q.stats().records, 2);
    assert!(!q.pressure());
    stored(s.append(Signal::Traces, 1, b"x").await);
    q.close().await;
}

#[tokio::test]
async fn drop_newest_sheds_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let t = Telemetry::new();
    let q = open(small(dir.path(), Overflow::DropNewest), &t);
    let s = q.stream("t").unwrap();
    for i in 0..7 {
        stored(s.append(Signal::Traces, 1, &noise(1000, i)).await);
    }
    assert_eq!(
        s.append(Signal::Traces, 5, &noise(1000, 99)).await,
        Ok(Appended::Dropped { items: 5 })
    );
    assert_eq!(t.queue().stream("t").dropped_total("drop_newest"), 5);
    assert_eq!(q.stats().records, 7);
    q.close().await;
}

#[tokio::test]
async fn drop_oldest_evicts_moves_cursors_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let t = Telemetry::new();
    let q = open(small(dir.path(), Overflow::DropOldest), &t);
    let s = q.stream("t").unwrap();
    let mut c = s.cursor("e", StartAt::Oldest, None).unwrap();
    for i in 0..7 {
        stored(s.append(Signal::Traces, 2, &noise(1000, i)).await);
    }
    assert!(q.pressure());
    // Under pressure each new record evicts the oldest until it fits under the high watermark.
    let seq = stored(s.append(Signal::Traces, 2, &noise(1000, 7)).await);
    assert_eq!(seq, 8);
    let st = q.stats();
    assert!(st.bytes <= 6_300, "{}", st.bytes);
    let dropped = t.queue().stream("t").dropped_total("drop_oldest");
    assert!(
        dropped >= 4,
        "two records of two items evicted at least: {dropped}"
    );
    let evicted = dropped / 2;
    let first = read_now(&mut c, 100).await;
    assert_eq!(
        first.first().copied(),
        Some(evicted + 1),
        "the cursor was moved past the evicted records"
    );
    assert_eq!(first.last().copied(), Some(8));
    q.close().await;
}

#[tokio::test]
async fn max_age_expires_records_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let t = Telemetry::new();
    let mut o = options(dir.path());
    // The new record must still be younger than max_age when maintenance runs, also on a loaded
    // machine running the whole suite: a 100 ms max_age failed there.
    o.max_age = Some(Duration::from_millis(1000));
    let q = open(o, &t);
    let s = q.stream("l").unwrap();
    let mut c = s.cursor("e", StartAt::Oldest, None).unwrap();
    for _ in 0..3 {
        stored(s.append(Signal::Logs, 4, b"old").await);
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    stored(s.append(Signal::Logs, 4, b"new").await);
    q.run_maintenance().await.unwrap();
    assert_eq!(q.stats().records, 1);
    assert_eq!(t.queue().stream("l").dropped_total("max_age"), 12);
    assert_eq!(read_now(&mut c, 10).await, vec![4]);
    q.close().await;
}

#[tokio::test]
async fn max_lag_moves_a_stuck_cursor_but_not_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let t = Telemetry::new();
    let q = open(options(dir.path()), &t);
    let s = q.stream("t").unwrap();
    let max = MaxLag {
        bytes: Some(3_200),
        age: None,
    };
    let mut dead = s.cursor("dead", StartAt::Oldest, Some(max)).unwrap();
    let mut healthy = s.cursor("healthy", StartAt::Oldest, None).unwrap();
    for i in 0..10 {
        stored(s.append(Signal::Traces, 1, &noise(1000, i)).await);
    }
    assert!(dead.lag().bytes > 10_000);
    q.run_maintenance().await.unwrap();
    let lag = dead.lag();
    assert!(lag.bytes <= 3_200 && lag.records == 3, "{lag:?}");
    assert_eq!(t.queue().stream("t").dropped_total("max_lag"), 7);
    assert_eq!(read_now(&mut dead, 100).await, vec![8, 9, 10]);
    assert_eq!(
        read_now(&mut healthy, 100).await.len(),
        10,
        "other cursors keep everything"
    );
    assert_eq!(
        q.stats().records,
        10,
        "nothing deleted while a cursor needs it"
    );
    q.close().await;
}

#[tokio::test]
async fn removed_exporters_stop_pinning_records() {
    let dir = tempfile::tempdir().unwrap();
    let t = Telemetry::new();
    let q = open(options(dir.path()), &t);
    let s = q.stream("t").unwrap();
    let mut live = s.cursor("live", StartAt::Oldest, None).unwrap();
    let _gone = s.cursor("gone", StartAt::Oldest, None).unwrap();
    for i in 0..5 {
        stored(s.append(Signal::Traces, 1, &noise(100, i)).await);
    }
    for r in live.next_batch(10).await.unwrap() {
        live.ack(r.seq).unwrap();
    }
    q.run_maintenance().await.unwrap();
    assert_eq!(q.stats().records, 5, "the idle cursor pins them");
    q.retain_cursors("t", &["live"]).unwrap();
    q.run_maintenance().await.unwrap();
    assert_eq!(q.stats().records, 0);
    assert_eq!(q.stats().bytes, 0);
    q.close().await;
    let report = inspect(dir.path()).unwrap();
    assert_eq!(
        report.streams[0].cursors.len(),
        1,
        "the removed cursor is gone from disk too"
    );
}

#[tokio::test]
async fn corrupt_records_are_skipped_counted_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let t = Telemetry::new();
    let q = open(options(dir.path()), &t);
    let s = q.stream("t").unwrap();
    for i in 0..3 {
        stored(s.append(Signal::Traces, 3, &noise(500, i)).await);
    }
    {
        let core = &q.owner.core;
        let db = core.db().unwrap();
        let id = s.shared.id;
        let cf = db.cf_handle(CF_RECORDS).unwrap();
        // A damaged payload (valid header) and a value that is not even a header.
        let mut v = db
            .get_cf(cf, format::record_key(id, 0, 2))
            .unwrap()
            .unwrap();
        let last = v.len() - 1;
        v[last] ^= 0x55;
        db.put_cf(cf, format::record_key(id, 0, 2), v).unwrap();
        db.put_cf(cf, format::record_key(id, 0, 3), b"garbage")
            .unwrap();
    }
    stored(s.append(Signal::Traces, 3, &noise(500, 9)).await);
    let mut c = s.cursor("e", StartAt::Oldest, None).unwrap();
    assert_eq!(read_now(&mut c, 10).await, vec![1, 4]);
    assert_eq!(t.queue().stream("t").dropped_total("corrupt"), 6);
    let report = verify(dir.path()).unwrap();
    assert_eq!((report.ok, report.corrupt), (2, 2), "{report}");
    assert!(!report.is_clean());
    assert!(report.to_string().contains("checksum mismatch"), "{report}");
    c.ack(1).unwrap();
    c.ack(4).unwrap();
    assert_eq!(c.watermark(), 4, "the watermark moves over skipped records");

    // A reader of headers only: empty payloads, the header's item counts, and the same corrupt
    // records skipped and counted (the checksum covers the compressed bytes it does not decompress).
    let mut h = s.cursor("headers", StartAt::Oldest, None).unwrap();
    h.set_read_payloads(false);
    let records = h.next_batch(10).await.unwrap();
    let got: Vec<(u64, u32, usize)> = records
        .iter()
        .map(|r| (r.seq, r.items, r.payload.len()))
        .collect();
    assert_eq!(got, vec![(1, 3, 0), (4, 3, 0)]);
    assert_eq!(t.queue().stream("t").dropped_total("corrupt"), 12);
    let mut full = s.cursor("full", StartAt::Oldest, None).unwrap();
    let first = full.next_batch(1).await.unwrap();
    assert_eq!(first[0].payload.as_ref(), noise(500, 0).as_slice());
    q.close().await;
}

#[tokio::test]
async fn sequences_and_cursors_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let t = Telemetry::new();
    let bytes_before;
    {
        let q = open(options(dir.path()), &t);
        let s = q.stream("t").unwrap();
        let _other = q.stream("m").unwrap();
        let mut c = s.cursor("e", StartAt::Oldest, None).unwrap();
        for i in 0..5 {
            stored(s.append(Signal::Traces, 1, &noise(300, i)).await);
        }
        let got = read_now(&mut c, 3).await;
        assert_eq!(got, vec![1, 2, 3]);
        c.ack(2).unwrap();
        assert_eq!(
            c.watermark(),
            0,
            "2 is acked but 1 is not: the prefix has not moved"
        );
        c.ack(1).unwrap();
        assert_eq!(c.watermark(), 2);
        bytes_before = q.stats().bytes;
        q.close().await;
    }
    let q = open(options(dir.path()), &t);
    assert_eq!(q.stats().bytes, bytes_before);
    assert_eq!(q.stats().records, 5);
    let s = q.stream("t").unwrap();
    assert_eq!(q.stream("m").unwrap().shared.id, 1, "stream ids are stable");
    let mut c = s.cursor("e", StartAt::Newest, None).unwrap();
    assert_eq!(
        read_now(&mut c, 10).await,
        vec![3, 4, 5],
        "the in-flight record 3 comes again"
    );
    assert_eq!(stored(s.append(Signal::Traces, 1, b"x").await), 6);
    q.close().await;
}

#[tokio::test]
async fn sequences_are_not_reused_after_everything_was_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let t = Telemetry::new();
    {
        let q = open(options(dir.path()), &t);
        let s = q.stream("t").unwrap();
        let mut c = s.cursor("e", StartAt::Oldest, None).unwrap();
        for _ in 0..3 {
            stored(s.append(Signal::Traces, 1, b"x").await);
        }
        for seq in read_now(&mut c, 10).await {
            c.ack(seq).unwrap();
        }
        q.run_maintenance().await.unwrap();
        assert_eq!(q.stats().records, 0);
        drop(c);
        drop(s);
        drop(q); // no close: the crash path
    }
    let q = open(options(dir.path()), &t);
    let s = q.stream("t").unwrap();
    assert_eq!(stored(s.append(Signal::Traces, 1, b"y").await), 4);
    let mut c = s.cursor("e", StartAt::Oldest, None).unwrap();
    assert_eq!(read_now(&mut c, 10).await, vec![4]);
    q.close().await;
}

#[tokio::test]
async fn a_second_open_of_the_same_directory_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let t = Telemetry::new();
    let q = open(options(dir.path()), &t);
    let err = crate::queue::Queue::open(options(dir.path()), &t).unwrap_err();
    match &err {
        QueueError::Locked(msg) => {
            assert!(msg.contains(&dir.path().display().to_string()), "{msg}")
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(!err.retryable());
    q.close().await;
    // Closed means the LOCK is released.
    let q = crate::queue::Queue::open(options(dir.path()), &t).unwrap();
    q.close().await;
}

#[tokio::test]
async fn closing_fails_waiting_readers_and_later_calls() {
    let dir = tempfile::tempdir().unwrap();
    let t = Telemetry::new();
    let q = open(options(dir.path()), &t);
    let s = q.stream("t").unwrap();
    let mut c = s.cursor("e", StartAt::Oldest, None).unwrap();
    let waiting = tokio::spawn(async move { c.next_batch(1).await.map(|b| b.len()) });
    tokio::time::sleep(Duration::from_millis(20)).await;
    q.clone().close().await;
    assert_eq!(waiting.await.unwrap(), Err(QueueError::Closed));
    assert_eq!(
        s.append(Signal::Traces, 1, b"x").await,
        Err(QueueError::Closed)
    );
    assert!(q.stream("new").is_err());
}

#[tokio::test]
async fn next_batch_wakes_on_append_and_is_cancel_safe() {
    let dir = tempfile::tempdir().unwrap();
    let t = Telemetry::new();
    let q = open(options(dir.path()), &t);
    let s = q.stream("t").unwrap();
    let mut c = s.cursor("e", StartAt::Newest, None).unwrap();
    // Cancelled while waiting: nothing is lost.
    tokio::select! {
        _ = c.next_batch(1) => panic!("nothing to read yet"),
        _ = tokio::time::sleep(Duration::from_millis(20)) => {}
    }
    let s2 = s.clone();
    let appender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        s2.append(Signal::Traces, 1, b"late").await
    });
    let batch = tokio::time::timeout(Duration::from_secs(5), c.next_batch(8))
        .await
        .expect("woken by the append")
        .unwrap();
    assert_eq!(&batch[0].payload[..], b"late");
    stored(appender.await.unwrap());
    q.close().await;
}

#[tokio::test]
async fn reopening_a_cursor_hands_it_over() {
    let dir = tempfile::tempdir().unwrap();
    let t = Telemetry::new();
    let q = open(options(dir.path()), &t);
    let s = q.stream("t").unwrap();
    let mut old = s.cursor("e", StartAt::Oldest, None).unwrap();
    stored(s.append(Signal::Traces, 1, b"a").await);
    assert_eq!(read_now(&mut old, 1).await, vec![1]);
    let mut new = s.cursor("e", StartAt::Newest, None).unwrap();
    assert_eq!(old.ack(1), Err(QueueError::Closed));
    assert_eq!(
        read_now(&mut new, 1).await,
        vec![1],
        "un-acked records are delivered again"
    );
    q.close().await;
}

#[tokio::test]
async fn state_store_round_trips_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let t = Telemetry::new();
    {
        let q = open(options(dir.path()), &t);
        let st = q.state();
        st.put(b"filelog/a", b"1").unwrap();
        st.put_durable(b"filelog/b", b"2").unwrap();
        st.put(b"sampling/x", b"3").unwrap();
        st.delete(b"filelog/a").unwrap();
        assert_eq!(st.get(b"filelog/a").unwrap(), None);
        q.close().await;
    }
    let q = open(options(dir.path()), &t);
    let st = q.state();
    assert_eq!(st.get(b"filelog/b").unwrap(), Some(b"2".to_vec()));
    assert_eq!(
        st.scan_prefix(b"filelog/").unwrap(),
        vec![(b"filelog/b".to_vec(), b"2".to_vec())]
    );
    q.close().await;
}

#[tokio::test]
async fn inspect_works_while_the_queue_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let t = Telemetry::new();
    let q = open(options(dir.path()), &t);
    let s = q.stream("traces").unwrap();
    let mut c = s.cursor("otlp/cloud", StartAt::Oldest, None).unwrap();
    for i in 0..4 {
        stored(s.append(Signal::Traces, 10, &noise(1000, i)).await);
    }
    let seqs = read_now(&mut c, 1).await;
    c.ack(seqs[0]).unwrap();
    let report = inspect(dir.path()).unwrap();
    assert_eq!(report.opened_as, "secondary");
    let st = &report.streams[0];
    assert_eq!(
        (st.name.as_str(), st.records, st.items, st.last_seq),
        ("traces", 4, 40, 4)
    );
    assert_eq!(st.bytes, q.stats().bytes);
    assert_eq!(st.cursors[0].watermark, 1);
    assert_eq!(st.cursors[0].lag.records, 3);
    let text = report.to_string();
    assert!(
        text.contains("stream traces") && text.contains("cursor otlp/cloud"),
        "{text}"
    );
    let v = verify(dir.path()).unwrap();
    assert_eq!(
        (v.ok, v.corrupt, v.missing_index, v.stale_index),
        (4, 0, 0, 0)
    );
    q.close().await;
    assert!(inspect(&dir.path().join("nope")).is_err());
}

#[tokio::test]
async fn metrics_report_queue_and_lag() {
    let dir = tempfile::tempdir().unwrap();
    let t = Telemetry::new();
    let q = open(options(dir.path()), &t);
    let s = q.stream("traces").unwrap();
    let _c = s.cursor("otlp", StartAt::Oldest, None).unwrap();
    stored(s.append(Signal::Traces, 10, &noise(1000, 1)).await);
    q.run_maintenance().await.unwrap();
    let text = t.encode();
    for needle in [
        r#"outpost_queue_records{stream="traces"} 1"#,
        r#"outpost_exporter_queue_lag_records{stream="traces",exporter="otlp"} 1"#,
        "outpost_queue_pressure 0",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    q.close().await;
}

#[test]
fn open_outside_a_runtime_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let err = crate::queue::Queue::open(options(dir.path()), &Telemetry::new()).unwrap_err();
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}

#[tokio::test]
async fn newest_first_hands_out_fresh_data_before_the_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let t = Telemetry::new();
    {
        let q = open(options(dir.path()), &t);
        let s = q.stream("t").unwrap();
        let mut c = s.cursor("e", StartAt::Oldest, None).unwrap();
        c.set_newest_first(true);
        for i in 0..6 {
            stored(s.append(Signal::Traces, 1, &noise(300, i)).await);
        }
        assert_eq!(read_now(&mut c, 2).await, vec![6, 5]);
        // Data arriving while the backlog drains goes first too.
        stored(s.append(Signal::Traces, 1, &noise(300, 7)).await);
        assert_eq!(read_now(&mut c, 2).await, vec![7, 4]);
        for seq in [7, 6, 5, 4] {
            c.ack(seq).unwrap();
        }
        assert_eq!(c.watermark(), 0, "1..3 are not delivered yet");
        assert_eq!(read_now(&mut c, 10).await, vec![3, 2, 1]);
        assert_eq!(read_now(&mut c, 10).await, Vec::<u64>::new());
        c.ack(1).unwrap();
        c.ack(3).unwrap();
        assert_eq!(c.watermark(), 1, "2 is still in flight");
        q.close().await;
    }
    // After a restart, everything above the watermark comes again (at-least-once), newest first.
    let q = open(options(dir.path()), &t);
    let s = q.stream("t").unwrap();
    let mut c = s.cursor("e", StartAt::Oldest, None).unwrap();
    c.set_newest_first(true);
    assert_eq!(read_now(&mut c, 10).await, vec![7, 6, 5, 4, 3, 2]);
    for seq in [2, 3, 4, 5, 6, 7] {
        c.ack(seq).unwrap();
    }
    assert_eq!(c.watermark(), 7);
    q.close().await;
}
