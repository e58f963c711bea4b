//! `loadgen`: OTLP export requests against outpost at a controlled load; `loadgen --help` says
//! how. All the work is in [`outpost_benches::loadgen`], so benchmarks can run the same thing
//! in-process.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use outpost_benches::loadgen::{run, Options};

#[tokio::main]
async fn main() -> ExitCode {
    let options = Options::parse();
    let report = match options.plan() {
        Ok(plan) => run(&plan).await,
        Err(err) => Err(err),
    };
    match report {
        // A closed stdout (`loadgen ... | head`) is not an error worth a panic.
        Ok(report) if options.json => {
            let _ = writeln!(std::io::stdout(), "{}", report.to_json());
        }
        Ok(report) => {
            let _ = writeln!(std::io::stdout(), "{report}");
        }
        Err(err) => {
            eprintln!("loadgen: {err}");
            // The exit status clap uses for usage errors: the run never started.
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
