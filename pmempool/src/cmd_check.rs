//! `pmempool check`: judge a pool's consistency and repair what is safe.
//!
//! Judging is read-only ([`crate::cmd_info::gather`]: headers and their links, replica data,
//! redo and undo logs, heap metadata, allocation headers, the root and persistent pointers).
//! Repairing uses only the layers' own opens, which are the code paths that already guarantee
//! crash consistency: `pool::Pool::open` rewrites a stale header slot from the slot in force and
//! copies replica data that differs from the primary; `tx::ObjPool::open_in` replays or discards
//! redo logs and rolls back transactions in flight. Everything else is reported as not
//! repairable, with what to do.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use poolset::Replica;

use crate::cmd_info::{gather, Report};
use crate::inspect::{Area, Fix, ReplicaSurvey};
use crate::remote::RemoteStatus;
use crate::util::{stdin_is_tty, Failure, Progress};

/// Exit: consistent.
pub const EXIT_CONSISTENT: u8 = 0;
/// Exit: repaired (or, with --dry-run, would be repaired).
pub const EXIT_REPAIRED: u8 = 1;
/// Exit: not consistent (and not, or not entirely, repaired).
pub const EXIT_INCONSISTENT: u8 = 2;
/// Exit: the check could not run.
pub const EXIT_ERROR: u8 = 3;

/// Check a pool's consistency; with --repair, repair what can be repaired safely.
///
/// Checks: every part's header (both slots), the header fields and UUID links of every part
/// and replica, replica data against the primary's, every lane's redo log and undo log, the heap
/// (zones, chunk headers, runs and bitmaps, allocation headers), the object-pool metadata, the
/// root object, and persistent pointers that lead to no live object. Without --repair nothing
/// is written (recovery is simulated in memory).
///
/// Repairs (--repair): a stale or corrupt header slot is rewritten from the good slot; replica
/// data that differs from the primary is copied from the primary; a replica (not the primary)
/// with missing or damaged parts, or marked stale, is rebuilt from the primary (as pmempool sync
/// does); pending redo logs are
/// replayed (or discarded when incomplete) and transactions in flight rolled back — exactly
/// what opening the pool does. Not repairable (reported with what to do): in the primary, both
/// header slots of a part unusable, missing or mis-sized parts, header fields or UUID links that
/// disagree; damaged heap metadata; dangling pointers. Whatever is reported repaired is checked
/// again afterwards: the exit status is the verdict of that second check.
///
/// Remote replicas are opened over rpmem (RPMEM_TRANSPORT, RPMEMD_PATH, RPMEM_CMD, RPMEM_SSH
/// as rpmem reads them): their attributes are checked against the local headers and their data
/// is read whole and compared with the primary's. One that cannot be opened, disagrees or
/// differs is rebuilt by --repair through resync.
///
/// Examples:
///
///   $ pmempool check /dev/shm/app.pool
///   $ pmempool check --repair --dry-run pool.set     # what would be repaired
///   $ pmempool check --repair --yes --backup /backup/app.pool /dev/shm/app.pool
///
/// Exit status: 0 consistent; 1 repaired (with --dry-run: would be repaired); 2 not consistent
/// (nothing repaired without --repair, or some problems cannot be repaired); 3 the check could
/// not run (missing file, bad poolset, pool in use, backup or repair failed, no --yes without a
/// terminal); 64 bad command line.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Repair what can be repaired safely.
    #[arg(long, short = 'r')]
    pub repair: bool,
    /// With --repair: say what would be repaired and change nothing.
    #[arg(long, short = 'N', requires = "repair")]
    pub dry_run: bool,
    /// Do not ask before repairing (needed when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Before repairing, copy the pool there: a single pool file to the new file BACKUP; a
    /// poolset's part files (and the poolset) into the new directory BACKUP.
    #[arg(long, short = 'b', value_name = "BACKUP", requires = "repair")]
    pub backup: Option<PathBuf>,
    /// Also list what was checked and found fine.
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// Draw progress bars even when stderr is not a terminal.
    #[arg(long)]
    pub progress: bool,
    /// The pool file or poolset file.
    pub file: PathBuf,
}

fn err(msg: impl Into<String>) -> Failure {
    Failure::new(EXIT_ERROR, msg)
}

fn print_findings(r: &Report) {
    for f in &r.findings {
        match &f.fix {
            Fix::PoolOpen => println!("  {} [repairable: pool open]", f.what),
            Fix::Recovery => println!("  {} [repairable: recovery]", f.what),
            Fix::Resync => println!("  {} [repairable: resync from the primary]", f.what),
            Fix::Cannot(todo) => println!("  {} [NOT repairable: {todo}]", f.what),
        }
    }
}

fn print_summary(r: &Report) {
    println!(
        "checked: {} replica(s), {} local part(s)",
        r.target.set.replicas.len(),
        r.survey
            .replicas
            .iter()
            .map(|x| match x {
                ReplicaSurvey::Local { parts, .. } => parts.len(),
                ReplicaSurvey::Remote { .. } => 0,
            })
            .sum::<usize>()
    );
    for (i, d) in &r.diffs {
        if let Ok(d) = d {
            if d.is_empty() {
                println!("replica {i}: data equal to the primary");
            }
        }
    }
    if let Some(h) = &r.heap {
        if let Ok(a) = &h.after {
            println!(
                "heap: {} chunks, {} objects, {} lanes checked",
                a.stats.total_chunks,
                a.stats.objects,
                h.lanes.len()
            );
        }
    }
}

/// Run `pmempool check`.
pub fn run(a: &Args) -> Result<u8, Failure> {
    let r = gather(&a.file, true, true, a.progress).map_err(|f| err(f.message))?;
    let name = a.file.display();
    for rc in &r.remotes {
        if a.verbose || !matches!(rc.status, RemoteStatus::Reachable { .. }) {
            println!(
                "replica {} (remote {}:{}): {}",
                rc.index,
                rc.node,
                rc.descriptor,
                rc.health()
            );
        }
    }
    if a.verbose {
        print_summary(&r);
    }
    if r.findings.is_empty() {
        println!("{name}: consistent");
        return Ok(EXIT_CONSISTENT);
    }
    let fixable = r
        .findings
        .iter()
        .filter(|f| !matches!(f.fix, Fix::Cannot(_)))
        .count();
    let blocked = r.findings.len() - fixable;
    println!(
        "{name}: not consistent: {} problem(s), {fixable} repairable",
        r.findings.len()
    );
    print_findings(&r);
    if !a.repair {
        if fixable > 0 {
            println!("run pmempool check --repair to repair the repairable ones (--dry-run first to see what it does)");
        }
        return Ok(EXIT_INCONSISTENT);
    }
    // Header and part problems make pool open fail: then nothing at all can be repaired.
    let open_blocked = r
        .findings
        .iter()
        .any(|f| matches!(f.fix, Fix::Cannot(_)) && f.area == Area::Parts)
        || r.heap.is_none();
    if fixable == 0 || open_blocked {
        println!(
            "nothing repaired: {}",
            if fixable == 0 {
                "no problem found is repairable"
            } else {
                "problems in the parts or headers stop the pool from opening; fix those first"
            }
        );
        return Ok(EXIT_INCONSISTENT);
    }
    if a.dry_run {
        println!(
            "dry run: {fixable} problem(s) would be repaired{}; nothing was changed",
            if blocked > 0 {
                format!(", {blocked} would remain")
            } else {
                String::new()
            }
        );
        return Ok(if blocked > 0 {
            EXIT_INCONSISTENT
        } else {
            EXIT_REPAIRED
        });
    }
    if !a.yes {
        if !stdin_is_tty() {
            return Err(err(
                "--repair changes the pool: confirm with --yes when stdin is not a terminal",
            ));
        }
        print!("repair {fixable} problem(s) in {name}? [y/N] ");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            println!("not repaired");
            return Ok(EXIT_INCONSISTENT);
        }
    }
    if let Some(b) = &a.backup {
        backup(&r, b, a.progress)?;
        println!("backup written to {}", b.display());
    }
    repair(&r, a.verbose, a.progress)?;
    let after = gather(&a.file, true, true, a.progress).map_err(|f| err(f.message))?;
    if after.findings.is_empty() {
        println!("{name}: repaired, now consistent");
        Ok(EXIT_REPAIRED)
    } else {
        println!(
            "{name}: repaired what could be; {} problem(s) remain:",
            after.findings.len()
        );
        print_findings(&after);
        Ok(EXIT_INCONSISTENT)
    }
}

/// The layers' own opens, which repair on the way.
fn repair(r: &Report, verbose: bool, progress: bool) -> Result<(), Failure> {
    if r.findings.iter().any(|f| f.fix == Fix::Resync) {
        let rep = crate::cmd_sync::resync(&r.target.set, pool::ResyncMode::Compare, progress)
            .map_err(|e| err(format!("resynchronising replicas failed: {e}")))?;
        for line in &rep.repaired {
            println!("repaired: {line}");
        }
        for x in &rep.replicas {
            println!(
                "repaired: replica {} ({}) rebuilt from the primary, {} bytes copied (was: {})",
                x.replica, x.description, x.copied_bytes, x.was
            );
        }
    }
    let connect = crate::remote::connector();
    let opts = pool::OpenOptions {
        remote: Some(&connect),
        ..pool::OpenOptions::default()
    };
    let p = pool::Pool::open(&r.target.set, None, opts)
        .map_err(|e| err(format!("opening the pool to repair it failed: {e}")))?;
    for line in p.repaired() {
        println!("repaired: {line}");
    }
    let p = Arc::new(p);
    match tx::ObjPool::open_in(p.clone(), palloc::Options::default()) {
        Ok(op) => {
            report_recovery(op.heap().recovered(), verbose);
            for (i, u) in op.recovered().iter().enumerate() {
                match u {
                    tx::UndoRecovered::RolledBack { entries, bytes } => println!("repaired: lane {i}: transaction rolled back ({entries} entries, {bytes} bytes restored)"),
                    tx::UndoRecovered::RolledForward { entries, bytes } => println!("repaired: lane {i}: committed transaction rolled forward ({entries} entries, {bytes} bytes written again)"),
                    tx::UndoRecovered::Idle => {}
                }
            }
        }
        Err(_) => {
            // Not an object pool: the heap's own recovery still runs.
            let h = palloc::Heap::open(p.clone(), palloc::Options::default())
                .map_err(|e| err(format!("heap recovery failed: {e}")))?;
            report_recovery(h.recovered(), verbose);
        }
    }
    Ok(())
}

fn report_recovery(rec: &[palloc::Recovered], verbose: bool) {
    for (i, r) in rec.iter().enumerate() {
        match r {
            palloc::Recovered::Replayed { entries } => {
                println!("repaired: lane {i}: redo log replayed ({entries} entries)")
            }
            palloc::Recovered::Discarded => {
                println!("repaired: lane {i}: incomplete redo log discarded")
            }
            palloc::Recovered::Empty if verbose => println!("lane {i}: redo log empty"),
            palloc::Recovered::Empty => {}
        }
    }
}

/// Copy `from` to the new file `to` (refusing to overwrite), with progress.
fn copy_new(from: &Path, to: &Path, bar: &mut Progress, done: &mut u64) -> Result<(), Failure> {
    let mut src = std::fs::File::open(from).map_err(|e| err(format!("{}: {e}", from.display())))?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(|e| err(format!("backup {}: {e} (it must not exist)", to.display())))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src
            .read(&mut buf)
            .map_err(|e| err(format!("{}: read: {e}", from.display())))?;
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n])
            .map_err(|e| err(format!("backup {}: write: {e}", to.display())))?;
        *done += n as u64;
        bar.set(*done);
    }
    dst.sync_all()
        .map_err(|e| err(format!("backup {}: fsync: {e}", to.display())))
}

fn backup(r: &Report, to: &Path, progress: bool) -> Result<(), Failure> {
    let parts: Vec<(usize, usize, PathBuf)> = r
        .target
        .set
        .replicas
        .iter()
        .enumerate()
        .flat_map(|(ri, rep)| match rep {
            Replica::Local(l) => l
                .parts
                .iter()
                .enumerate()
                .map(|(pi, p)| (ri, pi, p.path.clone()))
                .collect(),
            Replica::Remote(_) => Vec::new(),
        })
        .collect();
    let total: u64 = parts
        .iter()
        .filter_map(|(_, _, p)| std::fs::metadata(p).ok().map(|m| m.len()))
        .sum();
    let mut bar = Progress::new("backup", total, true, progress);
    let mut done = 0;
    if !r.target.is_poolset {
        copy_new(&r.target.path, to, &mut bar, &mut done)?;
    } else {
        std::fs::create_dir(to).map_err(|e| {
            err(format!(
                "backup {}: cannot create the directory: {e} (it must not exist)",
                to.display()
            ))
        })?;
        let set_name = r.target.path.file_name().unwrap_or_default();
        copy_new(&r.target.path, &to.join(set_name), &mut bar, &mut done)?;
        for (ri, pi, p) in &parts {
            let base = p.file_name().unwrap_or_default().to_string_lossy();
            copy_new(
                p,
                &to.join(format!("r{ri}.p{pi}.{base}")),
                &mut bar,
                &mut done,
            )?;
        }
    }
    bar.finish();
    Ok(())
}
