use std::process::ExitCode;

use clap::Parser;
use podium_analyst::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _telemetry = podium_runtime::init_telemetry("podium-analyst");
    match podium_analyst::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // `podium-analyst tail | head`: the reader has what it wanted.
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podium-analyst: {e}");
            ExitCode::FAILURE
        }
    }
}
