//! The `outpost` command line: `run`, `validate`, `test`, `schema`, `queue`, `version`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use outpost::agent;
use outpost_config::{Diagnostic, LogEncoding, TelemetryLogsConfig};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "outpost",
    version,
    about = "A telemetry agent for edge nodes: OTLP in, disk-backed queue, OTLP out"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent. Without --config, runs the embedded default (OTLP on 127.0.0.1:4317 and :4318,
    /// data in ./outpost-data, a debug exporter that logs what arrives).
    Run {
        /// The config file (YAML, in the OpenTelemetry Collector's shape).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// How long a graceful shutdown may take before what is left is aborted.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        shutdown_timeout: Duration,
        /// What to do when the config file is invalid at start: run the last known good config kept in
        /// the data directory (and say so), or refuse to start.
        #[arg(long, value_enum, default_value = "last-known-good")]
        on_invalid_config: OnInvalid,
        /// How often the config file is checked for changes (0s: never; SIGHUP and POST /-/reload
        /// still reload).
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        watch_interval: Duration,
    },
    /// Check a config file and print every problem with its line and column; exit 1 if any is an error.
    Validate {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run config unit tests: feed OTLP/JSON into a pipeline in-process (no network, no queue) and check
    /// what its processors and connectors let out. Exit 0 if all pass, 1 if one fails, 2 if the config
    /// or a test file has errors.
    Test {
        #[arg(long, short)]
        config: PathBuf,
        /// Test files (YAML). Without any, tests/NAME.yaml beside the config NAME.yaml.
        tests: Vec<PathBuf>,
    },
    /// Print the JSON Schema (draft 2020-12) of the config file, for editors and CI linters.
    Schema,
    /// Look into a disk queue (records, bytes, cursors and their lag) or check every record in it.
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// Print the version.
    Version,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OnInvalid {
    LastKnownGood,
    Refuse,
}

#[derive(Subcommand)]
enum QueueCommand {
    /// Records, bytes and oldest age per stream; each exporter's cursor and its lag.
    Inspect {
        /// The data directory (queue.directory) or the queue folder inside it.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Checks every record's checksum and encoding; exit 1 if any is corrupt.
    Verify {
        #[arg(long)]
        dir: PathBuf,
    },
}

// prost decoding allocates per string and per repeated field; mimalloc's thread-local free lists cut that
// cost by a measured margin (docs/benchmarks.md) over glibc's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logging(cfg: &TelemetryLogsConfig) {
    // RUST_LOG, when set, wins over the config, so an operator can raise verbosity without an edit.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(cfg.level.as_str()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match cfg.encoding {
        LogEncoding::Json => builder.json().init(),
        LogEncoding::Console => builder.init(),
    }
}

/// The queue inside a data directory; a path to the queue's own folder is taken as it is.
fn queue_dir(dir: &std::path::Path) -> PathBuf {
    let inner = outpost::topology::queue_dir(dir);
    if inner.is_dir() {
        inner
    } else {
        dir.to_path_buf()
    }
}

fn print_diagnostics(diags: &[Diagnostic]) {
    for d in diags {
        eprintln!("{d}");
    }
}

fn main() -> ExitCode {
    outpost::tls::install_default_provider();
    let cli = Cli::parse();
    match cli.command {
        Command::Queue { command } => match command {
            QueueCommand::Inspect { dir } => {
                match outpost_pipelines::queue::inspect(&queue_dir(&dir)) {
                    Ok(report) => {
                        println!("{report}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!(
                            "outpost: cannot inspect the queue in '{}': {e}",
                            dir.display()
                        );
                        ExitCode::FAILURE
                    }
                }
            }
            QueueCommand::Verify { dir } => {
                match outpost_pipelines::queue::verify(&queue_dir(&dir)) {
                    Ok(report) => {
                        println!("{report}");
                        if report.is_clean() {
                            ExitCode::SUCCESS
                        } else {
                            ExitCode::FAILURE
                        }
                    }
                    Err(e) => {
                        eprintln!(
                            "outpost: cannot verify the queue in '{}': {e}",
                            dir.display()
                        );
                        ExitCode::FAILURE
                    }
                }
            }
        },
        Command::Test { config, tests } => {
            let code = outpost::config_test::run(
                &config,
                &tests,
                &mut std::io::stdout(),
                &mut std::io::stderr(),
            );
            ExitCode::from(code)
        }
        Command::Schema => {
            let schema = outpost_config::json_schema::schema();
            match serde_json::to_string_pretty(&schema) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("outpost: cannot print the schema: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Version => {
            println!("outpost {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Validate { config } => match outpost_config::load_file(&config) {
            Ok(loaded) => {
                print_diagnostics(&loaded.warnings);
                println!(
                    "{}: valid ({} pipelines, {} warnings)",
                    config.display(),
                    loaded.config.service.pipelines.len(),
                    loaded.warnings.len()
                );
                ExitCode::SUCCESS
            }
            Err(diags) => {
                print_diagnostics(&diags.0);
                eprintln!("{}: {} errors", config.display(), diags.errors().count());
                ExitCode::FAILURE
            }
        },
        Command::Run {
            config,
            shutdown_timeout,
            on_invalid_config,
            watch_interval,
        } => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("outpost: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let (loaded, mut source) = match &config {
                Some(path) => {
                    let text = match std::fs::read_to_string(path) {
                        Ok(t) => t,
                        Err(e) => {
                            eprintln!("{}: cannot read the config file: {e}", path.display());
                            return ExitCode::FAILURE;
                        }
                    };
                    match outpost_config::load_str(&text, &path.display().to_string()) {
                        Ok(l) => (l, agent::Source::file(Some(path.clone()), text)),
                        Err(diags) => {
                            print_diagnostics(&diags.0);
                            let errors = diags.errors().count();
                            if matches!(on_invalid_config, OnInvalid::Refuse) {
                                eprintln!("outpost: the config has {errors} errors; not starting (--on-invalid-config refuse)");
                                return ExitCode::FAILURE;
                            }
                            let data_dir = outpost_config::data_dir_hint(&text);
                            let lkg = runtime.block_on(agent::read_last_known_good(&data_dir));
                            let lkg_text = match lkg {
                                Ok(Some(t)) => t,
                                Ok(None) => {
                                    eprintln!("outpost: the config has {errors} errors and '{}' holds no last known good config; not starting", data_dir.display());
                                    return ExitCode::FAILURE;
                                }
                                Err(e) => {
                                    eprintln!("outpost: the config has {errors} errors, and the last known good config cannot be read: {e:#}; not starting");
                                    return ExitCode::FAILURE;
                                }
                            };
                            match outpost_config::load_str(&lkg_text, "<last known good>") {
                                Ok(l) => {
                                    let why = format!(
                                        "config file '{}' is invalid ({errors} errors); running the last known good config",
                                        path.display()
                                    );
                                    eprintln!("outpost: {why}");
                                    let mut src = agent::Source::file(Some(path.clone()), lkg_text);
                                    src.origin = "last_known_good";
                                    src.file_hash = Some(agent::sha256_hex(&text));
                                    src.degraded = Some(why);
                                    (l, src)
                                }
                                Err(diags) => {
                                    print_diagnostics(&diags.0);
                                    eprintln!("outpost: the config has {errors} errors and the last known good config no longer loads; not starting");
                                    return ExitCode::FAILURE;
                                }
                            }
                        }
                    }
                }
                None => match outpost_config::load_str(
                    outpost_config::DEFAULT_CONFIG,
                    "<embedded default>",
                ) {
                    Ok(l) => (
                        l,
                        agent::Source::file(None, outpost_config::DEFAULT_CONFIG.to_string()),
                    ),
                    Err(diags) => {
                        print_diagnostics(&diags.0);
                        eprintln!(
                            "outpost: the embedded default config does not load; not starting"
                        );
                        return ExitCode::FAILURE;
                    }
                },
            };
            if watch_interval.is_zero() {
                source.watch_interval = Duration::from_secs(86_400 * 365);
            } else {
                source.watch_interval = watch_interval;
            }
            init_logging(&loaded.config.service.telemetry.logs);
            for w in &loaded.warnings {
                tracing::warn!("{w}");
            }
            let result = runtime.block_on(async {
                let stop = CancellationToken::new();
                agent::cancel_on_signals(stop.clone());
                agent::run(loaded.config, source, shutdown_timeout, stop).await
            });
            match result {
                Ok(true) => ExitCode::SUCCESS,
                // Stopped, but the deadline cut the drain short: data in memory was lost (logged).
                Ok(false) => ExitCode::from(2),
                Err(e) => {
                    eprintln!("outpost: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
