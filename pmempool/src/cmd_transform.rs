//! `pmempool transform SRC DST`: add or remove replicas (local or remote) of an existing pool,
//! through `pool::transform` (which validates the change, creates and fills added replicas,
//! commits in the primary's header, relabels the kept replicas, and only then removes the
//! removed ones; an interrupted transform is finished by running it again).

use std::io::Write;
use std::path::{Path, PathBuf};

use poolset::PoolSet;

use crate::target::{looks_like_poolset, node_name};
use crate::util::{Failure, Progress};

/// Add replicas to, or remove replicas from, the pool of poolset SRC so that it becomes the
/// pool of poolset DST (you write DST: a copy of SRC with REPLICA sections added or removed).
///
/// DST must have SRC's options and primary replica; its other replicas are SRC's plus added
/// ones, or minus removed ones (not both at once: add, then remove). The pool must not be in use
/// and must open cleanly (no stale replica: run pmempool sync first).
///
/// Steps (--dry-run prints them and changes nothing):
///   create:D         added replica D is created (local parts under PART.transform, renamed
///                    when complete; remote ones through rpmemd), filled from the primary, and
///                    given DST's headers or attributes
///   commit           the primary's part-0 header is rewritten for DST (crash-safe double slot)
///   relabel-primary  the primary's other part headers
///   relabel:D        every kept replica's headers (remote: its attributes)
///   remove:S         removed replica S's part files (remote: its pool, through rpmemd)
/// Interrupted before commit, the pool is still SRC (leftovers of added replicas are reused by
/// the next run); after it, run the same command again: it finishes the transform.
///
/// Remote replicas are reached as every command reaches them (RPMEM_TRANSPORT, RPMEMD_PATH,
/// RPMEM_CMD, RPMEM_SSH). PMEMPOOL_TRANSFORM_CRASH_BEFORE=STEP (tests only) ends the process
/// abruptly before that step.
///
/// Examples:
///
///   $ pmempool transform --dry-run pool.set pool-with-replica.set
///   $ pmempool transform pool.set pool-with-replica.set && mv pool-with-replica.set pool.set
///   $ pmempool transform -v pool.set without-remote.set
///
/// Exit status: 0 transformed (or nothing to do; with --dry-run: the plan is valid), 1 not
/// transformed or interrupted (the message names the step, the replica and what to do),
/// 64 bad command line.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Print the plan and the steps; change nothing.
    #[arg(long, short = 'N')]
    pub dry_run: bool,
    /// Print every step done.
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// Draw the progress bar even when stderr is not a terminal.
    #[arg(long)]
    pub progress: bool,
    /// The poolset the pool has now.
    pub src: PathBuf,
    /// The poolset it must have.
    pub dst: PathBuf,
}

fn parse(path: &Path) -> Result<PoolSet, Failure> {
    if !looks_like_poolset(path).map_err(|e| Failure::new(1, e))? {
        return Err(Failure::new(
            1,
            format!(
                "{}: not a poolset file (transform works on poolsets: a single pool file has no \
                 replicas; describe it in a poolset first)",
                path.display()
            ),
        ));
    }
    poolset::parse_file(path, poolset::Mode::Initiator)
        .map(|p| p.set)
        .map_err(|e| match e {
            poolset::Error::Invalid(d) => {
                Failure::new(1, format!("{}:{}:{}: {}", d.file, d.line, d.col, d.kind))
            }
            other => Failure::new(1, other.to_string()),
        })
}

/// Which side the primary's header is on: its replica count.
fn primary_count(set: &PoolSet) -> Option<usize> {
    let poolset::Replica::Local(l) = set.replicas.first()? else {
        return None;
    };
    let mut buf = vec![0u8; pool::header::HEADER_REGION_BYTES];
    let f = std::fs::File::open(&l.parts.first()?.path).ok()?;
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, 0).ok()?;
    pool::header::decode_region(&buf)
        .ok()
        .map(|r| r.header.replica_count.get() as usize)
}

/// Run `pmempool transform`.
pub fn run(a: &Args) -> Result<u8, Failure> {
    let src = parse(&a.src)?;
    let dst = parse(&a.dst)?;
    let plan = pool::transform::plan(&src, &dst).map_err(|e| Failure::new(1, e.to_string()))?;
    if plan.is_empty() {
        println!(
            "{} and {} describe the same replicas: nothing to do",
            a.src.display(),
            a.dst.display()
        );
        return Ok(0);
    }
    let state = match primary_count(&src) {
        Some(n) if n == plan.src_count => "the pool is SRC".to_string(),
        Some(n) if n == plan.dst_count => {
            "the primary already says DST: an interrupted transform; running it finishes it"
                .to_string()
        }
        Some(n) => format!("the primary's header says {n} replicas: neither SRC nor DST"),
        None => "the primary's header cannot be read".to_string(),
    };
    if a.dry_run || a.verbose {
        print!("{plan}");
        println!("state: {state}");
        let steps: Vec<String> = plan.steps().iter().map(|s| s.to_string()).collect();
        println!("steps: {}", steps.join(", "));
    }
    if a.dry_run {
        println!("dry run: nothing was changed");
        return Ok(0);
    }
    let connect = crate::remote::connector();
    let remove = |rr: &poolset::RemoteReplica| -> Result<(), String> {
        let flags = rpmem::RemoveFlags {
            force: false,
            pool_set: false,
        };
        rpmem::remove(
            &node_name(rr),
            &rr.descriptor.to_string_lossy(),
            flags,
            &rpmem::Options::from_env(),
        )
        .map_err(|e| e.to_string())
    };
    let crash_before = std::env::var("PMEMPOOL_TRANSFORM_CRASH_BEFORE").ok();
    let hook = |s: &pool::TransformStep| -> Result<(), String> {
        if crash_before.as_deref() == Some(s.to_string().as_str()) {
            let _ = std::io::stdout().flush();
            eprintln!("pmempool transform: PMEMPOOL_TRANSFORM_CRASH_BEFORE={s}: exiting abruptly");
            // SAFETY: _exit ends the process at once (no destructors, no flushing of Rust
            // buffers): the state on media is what a crash at this point leaves.
            unsafe { libc::_exit(86) };
        }
        Ok(())
    };
    let opts = pool::TransformOptions {
        open: pool::OpenOptions {
            remote: Some(&connect),
            ..pool::OpenOptions::default()
        },
        remove_remote: Some(&remove),
        before_step: Some(&hook),
    };
    let mut bar: Option<(usize, Progress)> = None;
    let mut on_progress = |p: &pool::ResyncProgress| {
        if !matches!(&bar, Some((r, _)) if *r == p.replica) {
            if let Some((_, b)) = bar.take() {
                b.finish();
            }
            bar = Some((
                p.replica,
                Progress::new(
                    &format!("fill replica {}", p.replica),
                    p.total_bytes,
                    true,
                    a.progress,
                ),
            ));
        }
        if let Some((_, b)) = bar.as_mut() {
            b.set(p.done_bytes);
        }
    };
    let res = pool::transform(&src, &dst, None, opts, &mut on_progress);
    if let Some((_, b)) = bar.take() {
        b.finish();
    }
    let rep = res.map_err(|e| Failure::new(1, e.to_string()))?;
    if a.verbose {
        for line in &rep.done {
            println!("done: {line}");
        }
    }
    println!(
        "{}: transformed into {} ({} replica(s){})",
        a.src.display(),
        a.dst.display(),
        plan.dst_count,
        if rep.resumed {
            "; an interrupted transform was finished"
        } else {
            ""
        }
    );
    Ok(0)
}
