//! `envoy-lb`: which replica Envoy's RING_HASH or MAGLEV picks for a key, how many keys move
//! when the host set changes, and how table entries are spread.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("envoy-lb: error: {err}");
            ExitCode::from(1)
        }
    }
}
