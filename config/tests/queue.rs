//! The `queue:` section, `sending_queue:` on exporters and the `file_storage` extension: parsing, defaults,
//! and every rule that keeps the queue's settings consistent.

use std::path::PathBuf;
use std::time::Duration;

use outpost_config::{
    load_str_with_env, Diagnostic, Loaded, OverflowPolicy, SizeOrPercent, StartAt, SyncPolicy,
};

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(yaml: &str) -> Result<Loaded, outpost_config::Diagnostics> {
    load_str_with_env(yaml, "test.yaml", &no_env)
}

fn ok(yaml: &str) -> Loaded {
    load(yaml).unwrap_or_else(|d| panic!("{d}\nin:\n{yaml}"))
}

fn errors(yaml: &str) -> Vec<Diagnostic> {
    match load(yaml) {
        Ok(_) => panic!("expected errors from:\n{yaml}"),
        Err(d) => d.errors().cloned().collect(),
    }
}

const PIPELINE: &str = "receivers:\n  otlp:\n    protocols:\n      grpc:\nexporters:\n  debug:\nservice:\n  \
                        pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n";

#[test]
fn defaults_are_one_gib_80_60_block_always() {
    let c = ok(PIPELINE).config;
    assert_eq!(c.queue.max_size.bytes(), 1 << 30);
    assert_eq!(c.queue.high_watermark, SizeOrPercent::Percent(80.0));
    assert_eq!(c.queue.low_watermark.resolve(1000), 600);
    assert_eq!(c.queue.overflow, OverflowPolicy::Block);
    assert_eq!(c.queue.sync, SyncPolicy::Always);
    assert_eq!(c.data_dir(), PathBuf::from("./outpost-data"));
}

#[test]
fn sizes_percentages_sync_intervals_and_policies_parse() {
    let yaml = format!(
        "{PIPELINE}queue:\n  directory: /var/lib/outpost\n  max_size: 2GiB\n  high_watermark: 1536MiB\n  \
         low_watermark: 50%\n  overflow: drop_oldest\n  sync: 250ms\n  max_age: 72h\n"
    );
    let q = ok(&yaml).config.queue;
    assert_eq!(q.high_watermark.resolve(q.max_size.bytes()), 1536 << 20);
    assert_eq!(q.low_watermark.resolve(q.max_size.bytes()), 1 << 30);
    assert_eq!(q.overflow, OverflowPolicy::DropOldest);
    assert_eq!(q.sync, SyncPolicy::Interval(Duration::from_millis(250)));
    assert_eq!(q.max_age.unwrap().get(), Duration::from_secs(72 * 3600));
    let never = ok(&format!("{PIPELINE}queue:\n  sync: never\n"))
        .config
        .queue
        .sync;
    assert_eq!(never, SyncPolicy::Never);
    let interval = ok(&format!("{PIPELINE}queue:\n  sync: interval\n"))
        .config
        .queue
        .sync;
    assert_eq!(interval, SyncPolicy::Interval(SyncPolicy::DEFAULT_INTERVAL));
}

#[test]
fn bad_values_name_the_key_and_the_expected_form() {
    let errs = errors(&format!("{PIPELINE}queue:\n  sync: sometimes\n"));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].path, "queue.sync");
    assert_eq!(errs[0].line, Some(PIPELINE.lines().count() + 2));
    assert!(
        errs[0]
            .message
            .contains("expected always, never, or an interval"),
        "{}",
        errs[0].message
    );
    let e = &errors(&format!("{PIPELINE}queue:\n  high_watermark: 120%\n"))[0];
    assert_eq!(e.path, "queue.high_watermark");
    assert!(
        e.message.contains("not a percentage between 0 and 100"),
        "{}",
        e.message
    );
}

#[test]
fn watermarks_must_nest_under_max_size() {
    let e = errors(&format!(
        "{PIPELINE}queue:\n  max_size: 1GiB\n  high_watermark: 2GiB\n"
    ));
    assert!(
        e.iter()
            .any(|d| d.path == "queue.high_watermark" && d.message.contains("above max_size")),
        "{e:#?}"
    );
    let e = errors(&format!(
        "{PIPELINE}queue:\n  high_watermark: 50%\n  low_watermark: 70%\n"
    ));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(e[0].path, "queue.low_watermark");
    assert_eq!(e[0].line, Some(PIPELINE.lines().count() + 3));
    let e = errors(&format!("{PIPELINE}queue:\n  max_size: 0\n"));
    assert_eq!(e[0].path, "queue.max_size");
}

#[test]
fn file_storage_names_the_data_dir_and_must_agree_with_queue_directory() {
    let fs = "extensions:\n  file_storage:\n    directory: /data/otel\n    fsync: true\n";
    let loaded = ok(&format!("{PIPELINE}{fs}"));
    assert_eq!(loaded.config.data_dir(), PathBuf::from("/data/otel"));
    let e = errors(&format!(
        "{PIPELINE}{fs}queue:\n  directory: /data/outpost\n"
    ));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(e[0].path, "extensions.file_storage.directory");
    assert!(
        e[0].message.contains("outpost keeps one queue per node"),
        "{}",
        e[0].message
    );
    // The same directory twice is fine.
    ok(&format!("{PIPELINE}{fs}queue:\n  directory: /data/otel\n"));
}

#[test]
fn sending_queue_is_accepted_and_checked() {
    let exporter = |sq: &str| {
        format!(
            "receivers:\n  otlp:\n    protocols:\n      grpc:\nexporters:\n  otlp:\n    endpoint: 127.0.0.1:14317\n    \
             sending_queue:\n{sq}extensions:\n  file_storage:\n    directory: /tmp/q\n  health_check:\nservice:\n  \
             extensions: [health_check]\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [otlp]\n"
        )
    };
    let loaded = ok(&exporter(
        "      enabled: true\n      num_consumers: 8\n      queue_size: 5000\n      storage: file_storage\n      \
         start_at: newest\n      max_lag:\n        bytes: 512MiB\n        age: 24h\n",
    ));
    let sq = loaded.config.sending_queue(&"otlp".parse().unwrap());
    assert_eq!(sq.num_consumers, 8);
    assert_eq!(sq.start_at, StartAt::Newest);
    assert_eq!(sq.max_lag.unwrap().bytes.unwrap().bytes(), 512 << 20);

    let e = errors(&exporter("      storage: health_check\n"));
    assert_eq!(e[0].path, "exporters.otlp.sending_queue.storage");
    assert!(e[0].message.contains("not a file_storage extension"));
    let e = errors(&exporter("      storage: file_storage/other\n"));
    assert!(
        e[0].message.contains("not defined under extensions"),
        "{}",
        e[0].message
    );
    let e = errors(&exporter("      num_consumers: 0\n"));
    assert_eq!(e[0].path, "exporters.otlp.sending_queue.num_consumers");
    let e = errors(&exporter("      max_lag: {}\n"));
    assert_eq!(e[0].path, "exporters.otlp.sending_queue.max_lag");

    let w = ok(&exporter("      enabled: false\n")).warnings;
    assert!(
        w.iter()
            .any(|d| d.path == "exporters.otlp.sending_queue.enabled"
                && d.message.contains("always queues on disk")),
        "{w:#?}"
    );
}
