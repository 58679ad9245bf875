//! `pmempool poolset FILE`: parse and validate a poolset file, print its structure (text or JSON).
//!
//! Exit status 0 when the file is valid, 1 when it is invalid or cannot be read. Warnings and
//! errors go to stderr as `FILE:LINE:COL: warning|error: MESSAGE`.

use std::path::PathBuf;
use std::process::ExitCode;

use poolset::{human_size, Mode, Parsed, PoolSet, Replica};
use serde_json::{json, Value};

/// Check a poolset file and print its structure.
///
/// Parses FILE with PMDK's poolset(5) grammar and the checks PMDK does without touching the
/// parts (plus stricter ones: duplicate paths, SINGLEHDR with NOHDRS, overflowing sizes).
/// Nothing is created or opened besides FILE itself.
///
/// Example:
///
///   $ cat pool.set
///   PMEMPOOLSET
///   32M /dev/shm/pool.part0
///   REPLICA alice@node2:target.poolset
///
///   $ pmempool poolset pool.set
///   $ pmempool poolset --json pool.set
///
/// Exit status: 0 valid, 1 invalid or unreadable (message on stderr as
/// FILE:LINE:COL: error: MESSAGE), 64 bad command line.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The poolset file to check.
    pub file: PathBuf,
    /// Print the structure as JSON: {"options": [...], "replicas": [{"kind":"local","parts":[{"size":BYTES,"path":"..."}]}, {"kind":"remote","user":...,"host":...,"port":...,"descriptor":"..."}]}.
    #[arg(long)]
    pub json: bool,
    /// Apply rpmemd's rules: the poolset is served on a remote node and may not have replicas.
    #[arg(long)]
    pub rpmemd: bool,
}

pub fn run(args: &Args) -> ExitCode {
    let mode = if args.rpmemd {
        Mode::Rpmemd
    } else {
        Mode::Initiator
    };
    let parsed = match poolset::parse_file(&args.file, mode) {
        Ok(p) => p,
        Err(poolset::Error::Invalid(d)) => {
            eprintln!("{}:{}:{}: error: {}", d.file, d.line, d.col, d.kind);
            return ExitCode::from(1);
        }
        Err(other) => {
            eprintln!("pmempool: error: {other}");
            return ExitCode::from(1);
        }
    };
    for w in &parsed.warnings {
        eprintln!("{}:{}:{}: warning: {}", w.file, w.line, w.col, w.kind);
    }
    if args.json {
        println!("{:#}", to_json(&parsed.set));
    } else {
        print!("{}", describe(&args.file.display().to_string(), &parsed));
    }
    ExitCode::SUCCESS
}

fn option_names(set: &PoolSet) -> Vec<&'static str> {
    let mut names = Vec::new();
    if set.options.single_hdr {
        names.push("SINGLEHDR");
    }
    if set.options.no_hdrs {
        names.push("NOHDRS");
    }
    names
}

/// The JSON form documented in `--help`; sizes are bytes, absent user/port are null.
pub fn to_json(set: &PoolSet) -> Value {
    let replicas: Vec<Value> = set
        .replicas
        .iter()
        .map(|r| match r {
            Replica::Local(l) => json!({
                "kind": "local",
                "line": l.line,
                "parts": l.parts.iter().map(|p| json!({
                    "size": p.size,
                    "path": p.path.to_string_lossy(),
                    "directory": p.is_directory,
                    "line": p.line,
                })).collect::<Vec<_>>(),
            }),
            Replica::Remote(r) => json!({
                "kind": "remote",
                "line": r.line,
                "user": r.user,
                "host": r.host,
                "port": r.port,
                "descriptor": r.descriptor.to_string_lossy(),
            }),
        })
        .collect();
    json!({ "options": option_names(set), "replicas": replicas })
}

/// The human form: one line per replica and per part, sizes in binary units.
fn describe(file: &str, parsed: &Parsed) -> String {
    use std::fmt::Write;
    let set = &parsed.set;
    let mut out = String::new();
    let n = set.replicas.len();
    let _ = writeln!(
        out,
        "{file}: valid poolset, {n} replica{}",
        if n == 1 { "" } else { "s" }
    );
    let options = option_names(set);
    let _ = writeln!(
        out,
        "options: {}",
        if options.is_empty() {
            "none".to_string()
        } else {
            options.join(" ")
        }
    );
    for (i, r) in set.replicas.iter().enumerate() {
        let role = if i == 0 { "primary" } else { "replica" };
        match r {
            Replica::Local(l) => {
                let total = l.parts.iter().fold(0u64, |a, p| a.saturating_add(p.size));
                let _ = writeln!(
                    out,
                    "replica {i} ({role}, local, line {}): {} part{}, {}",
                    l.line,
                    l.parts.len(),
                    if l.parts.len() == 1 { "" } else { "s" },
                    human_size(total)
                );
                for (j, p) in l.parts.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "  part {j}: {:>10}  {}{}",
                        human_size(p.size),
                        p.path.display(),
                        if p.is_directory { "  (directory)" } else { "" }
                    );
                }
            }
            Replica::Remote(r) => {
                let _ = writeln!(
                    out,
                    "replica {i} ({role}, remote, line {}): node {}{}{}, descriptor {}",
                    r.line,
                    r.user
                        .as_deref()
                        .map(|u| format!("{u}@"))
                        .unwrap_or_default(),
                    if r.host.contains(':') {
                        format!("[{}]", r.host)
                    } else {
                        r.host.clone()
                    },
                    r.port.map(|p| format!(":{p}")).unwrap_or_default(),
                    r.descriptor.display()
                );
            }
        }
    }
    out
}
