//! pmempool: the operator's command-line tool.
//!
//! One subcommand per job, each in its own module (`poolset` today; `create`, `info`, `check`, ...
//! join as the layers below them land). Subcommands print results on stdout and diagnostics on
//! stderr in the `FILE:LINE:COL: error: MESSAGE` form, and return the process exit code.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd_poolset;

/// Operator's tool for pools and poolsets.
#[derive(Parser, Debug)]
#[command(name = "pmempool", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Poolset(cmd_poolset::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Poolset(args) => cmd_poolset::run(&args),
    }
}
