//! The `outpost` command line: `run`, `validate`, `version`.

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
    },
    /// Check a config file and print every problem with its line and column; exit 1 if any is an error.
    Validate {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Look into a disk queue (records, bytes, cursors and their lag) or check every record in it.
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// Print the version.
    Version,
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
        } => {
            let loaded = match &config {
                Some(path) => outpost_config::load_file(path),
                None => {
                    outpost_config::load_str(outpost_config::DEFAULT_CONFIG, "<embedded default>")
                }
            };
            let loaded = match loaded {
                Ok(l) => l,
                Err(diags) => {
                    print_diagnostics(&diags.0);
                    eprintln!(
                        "outpost: the config has {} errors; not starting",
                        diags.errors().count()
                    );
                    return ExitCode::FAILURE;
                }
            };
            init_logging(&loaded.config.service.telemetry.logs);
            for w in &loaded.warnings {
                tracing::warn!("{w}");
            }
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
            let result = runtime.block_on(async {
                let stop = CancellationToken::new();
                agent::cancel_on_signals(stop.clone());
                agent::run(loaded.config, shutdown_timeout, stop).await
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
