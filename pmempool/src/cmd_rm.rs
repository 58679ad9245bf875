//! `pmempool rm`: remove a pool — the part files of every local replica, remote replicas
//! through rpmemd (`rpmem::remove`), and the poolset file unless `--only-pools`.

use std::path::PathBuf;

use poolset::Replica;

use crate::target::{looks_like_poolset, node_name};
use crate::util::Failure;

/// Remove a pool file, or every part of a poolset (and the poolset file).
///
/// Local parts are unlinked; a remote replica is removed by the rpmemd on its node (REMOVE
/// over rpmem's control channel: RPMEM_TRANSPORT, RPMEM_CMD, RPMEM_SSH... as rpmem reads them).
/// A pool that another process has open (its part files are locked) is refused unless --force.
/// With neither --local nor --remote, both kinds are removed, and then the poolset file too
/// (unless --only-pools); with only one of them the poolset file is kept, since it still
/// describes the replicas left. A remote replica's own poolset file on its node is removed with
/// it unless --only-pools.
///
/// Examples:
///
///   $ pmempool rm /dev/shm/app.pool
///   $ pmempool rm -v pool.set                 # every part, remote replicas, pool.set itself
///   $ pmempool rm --only-pools --local pool.set
///
/// Exit status: 0 removed, 1 something could not be removed (each failure is printed; with
/// --force missing files and failures are ignored), 64 bad command line.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Ignore missing files and errors; remove even a pool that is in use.
    #[arg(long, short = 'f')]
    pub force: bool,
    /// Keep the poolset file (remove only the pools it describes).
    #[arg(long, short = 's')]
    pub only_pools: bool,
    /// Remove local replicas (with --remote: both; neither flag: both).
    #[arg(long, short = 'l')]
    pub local: bool,
    /// Remove remote replicas (with --local: both; neither flag: both).
    #[arg(long, short = 'r')]
    pub remote: bool,
    /// Print every file removed.
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// Pool files or poolset files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

fn in_use(path: &std::path::Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    // SAFETY: flock on a valid descriptor owned by `f`; no memory is passed.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EWOULDBLOCK)
}

/// Run `pmempool rm`.
pub fn run(a: &Args) -> Result<u8, Failure> {
    let (want_local, want_remote) = match (a.local, a.remote) {
        (false, false) => (true, true),
        x => x,
    };
    let mut failures = 0usize;
    let mut fail = |m: String| {
        if !a.force {
            eprintln!("pmempool rm: error: {m}");
            failures += 1;
        } else if a.verbose {
            eprintln!("pmempool rm: ignored: {m}");
        }
    };
    for file in &a.files {
        let is_set = match looks_like_poolset(file) {
            Ok(b) => b,
            Err(e) => {
                fail(e);
                continue;
            }
        };
        if !is_set {
            if want_local {
                if in_use(file) && !a.force {
                    fail(format!(
                        "{}: pool is in use by another process (file lock held); close it or use --force",
                        file.display()
                    ));
                    continue;
                }
                match std::fs::remove_file(file) {
                    Ok(()) if a.verbose => eprintln!("removed {}", file.display()),
                    Ok(()) => {}
                    Err(e) => fail(format!("{}: {e}", file.display())),
                }
            }
            continue;
        }
        let set = match poolset::parse_file(file, poolset::Mode::Initiator) {
            Ok(p) => p.set,
            Err(poolset::Error::Invalid(d)) => {
                fail(format!("{}:{}:{}: {}", d.file, d.line, d.col, d.kind));
                continue;
            }
            Err(e) => {
                fail(e.to_string());
                continue;
            }
        };
        if want_local && !a.force {
            let busy: Vec<String> = set
                .replicas
                .iter()
                .filter_map(|r| match r {
                    Replica::Local(l) => Some(l.parts.iter()),
                    Replica::Remote(_) => None,
                })
                .flatten()
                .filter(|p| in_use(&p.path))
                .map(|p| p.path.display().to_string())
                .collect();
            if let Some(p) = busy.first() {
                fail(format!(
                    "{p}: pool is in use by another process (file lock held); close it or use --force"
                ));
                continue;
            }
        }
        for (i, rep) in set.replicas.iter().enumerate() {
            match rep {
                Replica::Local(l) if want_local => {
                    for p in &l.parts {
                        match std::fs::remove_file(&p.path) {
                            Ok(()) if a.verbose => eprintln!("removed {}", p.path.display()),
                            Ok(()) => {}
                            Err(e) => fail(format!(
                                "{}: replica {i}: {}: {e}",
                                file.display(),
                                p.path.display()
                            )),
                        }
                    }
                }
                Replica::Remote(rr) if want_remote => {
                    let node = node_name(rr);
                    let desc = rr.descriptor.to_string_lossy();
                    let flags = rpmem::RemoveFlags {
                        force: a.force,
                        pool_set: !a.only_pools,
                    };
                    match rpmem::remove(&node, &desc, flags, &rpmem::Options::from_env()) {
                        Ok(()) if a.verbose => {
                            eprintln!("removed replica {i} on {node} ({desc})")
                        }
                        Ok(()) => {}
                        Err(e) => fail(format!(
                            "{}: replica {i} (remote {node}, {desc}): {e}",
                            file.display()
                        )),
                    }
                }
                _ => {}
            }
        }
        if !a.only_pools && want_local && want_remote {
            match std::fs::remove_file(file) {
                Ok(()) if a.verbose => eprintln!("removed {}", file.display()),
                Ok(()) => {}
                Err(e) => fail(format!("{}: {e}", file.display())),
            }
        }
    }
    Ok(if failures > 0 { 1 } else { 0 })
}
