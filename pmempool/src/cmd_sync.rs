//! `pmempool sync`: bring stale or missing replicas back from the primary, through
//! `pool::resync` (which recreates missing part files, copies the data, writes the replica's
//! headers and only then clears the stale mark, so an interrupted sync can simply be rerun).

use std::path::PathBuf;

use crate::cmd_info::gather;
use crate::inspect::Fix;
use crate::util::{Failure, Progress};

/// Resynchronise stale or missing replicas of POOLSET from its primary.
///
/// A replica is stale when the primary's header marks it (it missed updates while the pool ran
/// degraded) or when it cannot be opened (missing or damaged part files, unusable headers):
/// such a replica is rebuilt — part files recreated where missing or mis-sized, data copied
/// from the primary, headers rewritten, mark cleared last. Healthy replicas are only compared
/// as every open does (differing ranges are copied from the primary). The primary itself is
/// never rebuilt: if it is damaged, sync fails and says so (see pmempool check).
/// Remote replicas are reached through rpmem (RPMEM_TRANSPORT, RPMEMD_PATH, RPMEM_CMD,
/// RPMEM_SSH as rpmem reads them): a stale one that cannot be opened, or whose attributes
/// disagree, has its attributes rewritten or is removed and created anew — even when another
/// pool set's pool sits at that place (the stale mark plus this command are the consent; the
/// report says so) — then its data is copied from the primary.
///
/// Examples:
///
///   $ pmempool sync --dry-run pool.set     # which replicas would be rebuilt
///   $ pmempool sync pool.set
///   $ pmempool sync --full --progress pool.set
///
/// Exit status: 0 in sync (nothing to do, or replicas rebuilt; each is printed), 1 failed
/// (message names the replica or part and why; replicas not done stay marked stale and a rerun
/// continues), 64 bad command line.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Copy the whole pool to every stale replica instead of comparing first and copying only
    /// what differs (compare saves writes, not reads).
    #[arg(long)]
    pub full: bool,
    /// Say which replicas would be rebuilt; change nothing.
    #[arg(long, short = 'N')]
    pub dry_run: bool,
    /// Print what was found before syncing.
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// Draw the progress bar even when stderr is not a terminal.
    #[arg(long)]
    pub progress: bool,
    /// The poolset file.
    pub file: PathBuf,
}

/// `pool::resync` with a progress bar per replica.
pub fn resync(
    set: &poolset::PoolSet,
    mode: pool::ResyncMode,
    progress: bool,
) -> Result<pool::ResyncReport, pool::Error> {
    let mut bar: Option<(usize, Progress)> = None;
    let mut on_progress = |p: &pool::ResyncProgress| {
        if !matches!(&bar, Some((r, _)) if *r == p.replica) {
            if let Some((_, b)) = bar.take() {
                b.finish();
            }
            bar = Some((
                p.replica,
                Progress::new(
                    &format!("sync replica {}", p.replica),
                    p.total_bytes,
                    true,
                    progress,
                ),
            ));
        }
        if let Some((_, b)) = bar.as_mut() {
            b.set(p.done_bytes);
        }
    };
    let connect = crate::remote::connector();
    let r = pool::resync(
        set,
        None,
        pool::OpenOptions {
            remote: Some(&connect),
            ..pool::OpenOptions::default()
        },
        mode,
        &mut on_progress,
    );
    if let Some((_, b)) = bar.take() {
        b.finish();
    }
    r
}

/// Run `pmempool sync`.
pub fn run(a: &Args) -> Result<u8, Failure> {
    let r = gather(&a.file, true, false, a.progress)?;
    if !r.target.is_poolset {
        return Err(Failure::new(
            1,
            format!(
                "{}: a single pool file has no replicas to synchronise",
                a.file.display()
            ),
        ));
    }
    let todo: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| matches!(f.fix, Fix::Resync | Fix::PoolOpen))
        .map(|f| f.what.as_str())
        .collect();
    if a.verbose || a.dry_run {
        for t in &todo {
            println!("found: {t}");
        }
    }
    if a.dry_run {
        println!(
            "dry run: {}; nothing was changed",
            if todo.is_empty() {
                "replicas are in sync".to_string()
            } else {
                format!("{} problem(s) would be resynchronised", todo.len())
            }
        );
        return Ok(0);
    }
    let mode = if a.full {
        pool::ResyncMode::Full
    } else {
        pool::ResyncMode::Compare
    };
    let rep =
        resync(&r.target.set, mode, a.progress).map_err(|e| Failure::new(1, e.to_string()))?;
    for line in &rep.repaired {
        println!("repaired: {line}");
    }
    for x in &rep.replicas {
        println!(
            "replica {} ({}): rebuilt from the primary, {} bytes copied (was: {})",
            x.replica, x.description, x.copied_bytes, x.was
        );
    }
    if rep.replicas.is_empty() && rep.repaired.is_empty() {
        println!("{}: replicas in sync, nothing to do", a.file.display());
    }
    Ok(0)
}
