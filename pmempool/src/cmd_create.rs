//! `pmempool create`: a new object pool (pool + palloc heap + tx object-pool metadata) in a
//! single file or from a poolset, ready for `tx::PoolTyped::open`/`open_poolset`.
//!
//! The pool is made by `pool::Pool::create`, the heap and the object-pool metadata by
//! `tx::ObjPool::create_in` (layout-agnostic: any layout name works; the default is tx's own,
//! which `PoolTyped` expects).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use poolset::{PoolSet, Replica};

use crate::target::{looks_like_poolset, node_name, single_file_set};
use crate::util::{parse_size, Failure, Progress};

/// Create an object pool in FILE (with --size) or from the poolset POOLSET.
///
/// Creates every part file (none may exist: pmempool never overwrites), allocates its blocks
/// (a full file system fails here, not later), writes the part headers, then the heap and the
/// object-pool metadata, so `tx::PoolTyped::open` (file) or `open_poolset` opens it. Local
/// replicas of a poolset are created too, and remote ones through rpmemd on their node (rpmem's
/// environment: RPMEM_TRANSPORT, RPMEMD_PATH, RPMEM_CMD, RPMEM_SSH); the remote pool set must
/// exist there and is given the pool's attributes.
///
/// Examples:
///
///   $ pmempool create --size 64M /dev/shm/app.pool
///   $ pmempool create --layout myapp --mode 0600 pool.set
///   $ pmempool create -v --size 1G --progress /mnt/pmem/big.pool
///
/// Exit status: 0 created, 1 not created (the message names the file and why; anything this
/// command created is removed again), 64 bad command line.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Layout name stored in every header (at most 63 bytes); open checks it.
    #[arg(long, short = 'l', default_value = tx::obj::LAYOUT)]
    pub layout: String,
    /// Pool size for a single FILE, e.g. 64M, 1G (powers of 1024; at least 2M, a part's minimum).
    /// Not allowed with a poolset, whose parts carry their sizes.
    #[arg(long, short = 's')]
    pub size: Option<String>,
    /// File mode of every created part, octal (default 0664, as PMDK).
    #[arg(long, short = 'm', default_value = "0664")]
    pub mode: String,
    /// Print each step (parts created, heap geometry).
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// Draw the progress bar even when stderr is not a terminal.
    #[arg(long)]
    pub progress: bool,
    /// The pool file to create, or an existing poolset file whose parts are created.
    pub file: PathBuf,
}

fn parse_mode(s: &str) -> Result<u32, Failure> {
    let t = s.trim_start_matches("0o");
    u32::from_str_radix(t, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| Failure::new(1, format!("--mode {s:?}: expected an octal mode like 0664")))
}

/// Run `pmempool create`.
pub fn run(a: &Args) -> Result<u8, Failure> {
    let mode = parse_mode(&a.mode)?;
    let is_set = a.file.exists() && looks_like_poolset(&a.file).map_err(|e| Failure::new(1, e))?;
    let set: PoolSet = if is_set {
        if a.size.is_some() {
            return Err(Failure::new(
                1,
                format!(
                    "{}: --size is for a single pool file; a poolset's parts carry their own sizes",
                    a.file.display()
                ),
            ));
        }
        poolset::parse_file(&a.file, poolset::Mode::Initiator)
            .map_err(|e| match e {
                poolset::Error::Invalid(d) => {
                    Failure::new(1, format!("{}:{}:{}: {}", d.file, d.line, d.col, d.kind))
                }
                other => Failure::new(1, other.to_string()),
            })?
            .set
    } else if a.file.exists() {
        return Err(Failure::new(
            1,
            format!(
                "{}: file already exists and is not a poolset (refusing to overwrite it; \
                 remove it with pmempool rm first)",
                a.file.display()
            ),
        ));
    } else {
        let Some(size) = &a.size else {
            return Err(Failure::new(
                1,
                format!(
                    "{}: --size is needed to create a single-file pool (e.g. --size 64M)",
                    a.file.display()
                ),
            ));
        };
        let size = parse_size(size).map_err(|e| Failure::new(1, format!("--size: {e}")))?;
        single_file_set(&a.file, size)
    };
    let total: u64 = set
        .replicas
        .iter()
        .filter_map(|r| match r {
            Replica::Local(l) => Some(l.parts.iter().map(|p| p.size).sum::<u64>()),
            Replica::Remote(_) => None,
        })
        .sum();
    let parts: Vec<PathBuf> = set
        .replicas
        .iter()
        .flat_map(|r| match r {
            Replica::Local(l) => l.parts.iter().map(|p| p.path.clone()).collect(),
            Replica::Remote(_) => Vec::new(),
        })
        .collect();
    // Two steps whose length grows with the pool: allocating the parts (inside pool) and laying
    // out the heap; the bar shows which one runs.
    let mut bar = Progress::new("create", 2, false, a.progress);
    bar.set(0);
    let connect = crate::remote::connector();
    let opts = pool::OpenOptions {
        remote: Some(&connect),
        ..pool::OpenOptions::default()
    };
    let p =
        pool::Pool::create(&set, &a.layout, opts).map_err(|e| Failure::new(1, e.to_string()))?;
    bar.set(1);
    let undo_parts = |msg: String| {
        for f in &parts {
            let _ = std::fs::remove_file(f);
        }
        for rep in &set.replicas {
            if let Replica::Remote(rr) = rep {
                let flags = rpmem::RemoveFlags {
                    force: true,
                    pool_set: false,
                };
                let desc = rr.descriptor.to_string_lossy();
                let _ = rpmem::remove(&node_name(rr), &desc, flags, &rpmem::Options::from_env());
            }
        }
        Failure::new(1, msg)
    };
    let obj = tx::ObjPool::create_in(Arc::new(p), &tx::TxOptions::default()).map_err(|e| {
        undo_parts(format!(
            "{}: creating the heap failed: {e}{}",
            a.file.display(),
            if total < (8 << 20) {
                " (the pool may be too small; try --size 8M or more)"
            } else {
                ""
            }
        ))
    })?;
    bar.finish();
    let h = *obj.heap().header();
    let id = obj.id();
    drop(obj);
    for f in &parts {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(mode))
            .map_err(|e| undo_parts(format!("{}: chmod {mode:o}: {e}", f.display())))?;
    }
    if a.verbose {
        for f in &parts {
            eprintln!("created {}", f.display());
        }
        eprintln!(
            "heap: {} chunks of {}, {} lanes; pool id {id:#018x}; layout {:?}",
            h.zones().iter().map(|z| z.chunks).sum::<usize>(),
            poolset::human_size(h.chunk_size),
            h.lane_count,
            a.layout
        );
    }
    Ok(0)
}
