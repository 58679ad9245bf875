//! Command line of rpmemd (clap). Every configuration-file key has a `--key` option; the three
//! booleans are presence flags that turn the option on, as in PMDK.

use std::path::PathBuf;

use clap::Parser;

use super::LogLevel;

#[derive(Parser, Debug)]
#[command(
    name = "rpmemd",
    version,
    about = "Target daemon of remote persistent-memory replication",
    long_about = "Target daemon of remote persistent-memory replication. Normally started by the \
                  initiator over SSH (or as a local child process), speaking the protocol of \
                  docs/PROTOCOL.md on stdin/stdout. Command-line options override the \
                  configuration files (-c FILE, else /etc/rpmemd/rpmemd.conf then \
                  $HOME/.rpmemd.conf)."
)]
pub struct Cli {
    /// Read only this configuration file (the system and user files are then skipped).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory the pool descriptors are relative to.
    #[arg(long, value_name = "DIR")]
    pub poolset_dir: Option<String>,
    /// Enable the appliance persistency method.
    #[arg(long)]
    pub persist_apm: bool,
    /// Enable the general-purpose server persistency method.
    #[arg(long)]
    pub persist_general: bool,
    /// Log to syslog instead of the log file.
    #[arg(long)]
    pub use_syslog: bool,
    /// Log file location.
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<String>,
    /// Log level: err, warn, notice, info or debug.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<LogLevel>,
    /// Remove the pool described by this poolset (relative to poolset-dir) and exit.
    #[arg(short = 'r', long, value_name = "POOLSET")]
    pub remove: Option<String>,
    /// With --remove: ignore errors while removing.
    #[arg(short = 'f', long, requires = "remove")]
    pub force: bool,
    /// With --remove: remove the poolset file too.
    #[arg(short = 's', long = "pool-set", requires = "remove")]
    pub pool_set: bool,
}
