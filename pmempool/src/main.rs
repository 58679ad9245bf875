//! pmempool: the operator's command-line tool.
//!
//! One subcommand per job, each in its own module (`cmd_*`): `poolset` (lint), `create`,
//! `info`, `check`, `dump`, `rm`, `sync`, `transform`. Shared pieces: [`target`] (FILE|POOLSET, shared locks),
//! [`image`] (a read-only view of a replica's data with an in-memory overlay, so the layers'
//! real recovery can run without writing), [`inspect`] (what `info` shows and `check` judges),
//! [`remote`] (the rpmem connector, remote replica health), [`util`] (sizes, progress bar, exit
//! codes). Header, link, size and replica-data checks are `pool::verify`'s, not pmempool's.
//!
//! Architecture invariant: `info`, `dump` and `check` without `--repair` never open a part file
//! for writing; repairs happen only through the layers' own open paths (`pool::Pool::open`,
//! `tx::ObjPool::open_in`), never by pmempool writing pool bytes itself.
//!
//! Results go to stdout, diagnostics to stderr as `pmempool CMD: error: MESSAGE`. Exit codes are
//! per command (see each `--help`); a bad command line is 64 for every command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd_check;
mod cmd_create;
mod cmd_dump;
mod cmd_info;
mod cmd_poolset;
mod cmd_rm;
mod cmd_sync;
mod cmd_transform;
mod image;
mod inspect;
mod remote;
mod target;
mod util;

/// Operator's tool for pools and poolsets: create, inspect, check and repair, dump, remove,
/// resynchronise replicas, add or remove replicas (transform).
///
/// FILE|POOLSET: a file starting with "PMEMPOOLSET" is a poolset (poolset(5)); anything else is
/// a single pool file. Every command has --help with examples and its exit codes; a bad command
/// line exits with 64. Docs: docs/pmempool/ (one page per command).
#[derive(Parser, Debug)]
#[command(name = "pmempool", version, about, long_about, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Create(cmd_create::Args),
    Info(cmd_info::Args),
    Check(cmd_check::Args),
    Dump(cmd_dump::Args),
    Rm(cmd_rm::Args),
    Sync(cmd_sync::Args),
    Transform(cmd_transform::Args),
    Poolset(cmd_poolset::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let usage = e.use_stderr();
            let _ = e.print();
            return if usage {
                ExitCode::from(util::EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Create(a) => util::report("create", cmd_create::run(&a)),
        Command::Info(a) => util::report("info", cmd_info::run(&a)),
        Command::Check(a) => util::report("check", cmd_check::run(&a)),
        Command::Dump(a) => util::report("dump", cmd_dump::run(&a)),
        Command::Rm(a) => util::report("rm", cmd_rm::run(&a)),
        Command::Sync(a) => util::report("sync", cmd_sync::run(&a)),
        Command::Transform(a) => util::report("transform", cmd_transform::run(&a)),
        Command::Poolset(a) => cmd_poolset::run(&a),
    }
}
