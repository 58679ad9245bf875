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
/// object-pool metadata, so `tx::PoolTyped::open` (file) or `open_poolset` opens it. A new
/// single FILE is made under a temporary name (.FILE.creating-PID-N) and renamed into place
/// only when complete: an interrupted create leaves no FILE (a leftover temporary file is
/// removed by the next create of FILE). An existing FILE without --size is used as it is, as
/// PMDK's pmempool: the pool takes its size, and its first 4 KiB must be zero. Local
/// replicas of a poolset are created too, and remote ones through rpmemd on their node (rpmem's
/// environment: RPMEM_TRANSPORT, RPMEMD_PATH, RPMEM_CMD, RPMEM_SSH); the remote pool set must
/// exist there and is given the pool's attributes.
///
/// Examples:
///
///   $ pmempool create --size 64M /dev/shm/app.pool
///   $ pmempool create --layout myapp --mode 0600 pool.set
///   $ pmempool create -v --size 1G --progress /mnt/pmem/big.pool
///   $ fallocate -l 1G /mnt/pmem/pre.pool && pmempool create /mnt/pmem/pre.pool
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
    /// Not allowed with a poolset, whose parts carry their sizes. Omitted with an existing FILE:
    /// the pool is made inside it, with its size.
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

/// How the pool is made.
enum How {
    /// From a poolset: every part created in place (none may exist).
    Set,
    /// A new single file: made under a temporary name, renamed into place once the heap is
    /// laid out too, so a crash leaves no file or a complete object pool.
    NewFile,
    /// Inside an existing single file, as it is (no --size, as PMDK's pmempool): its header
    /// region must be zero.
    InPlace,
}

/// Why an existing non-poolset FILE cannot be created with --size, and what to do.
fn existing_file_message(file: &std::path::Path) -> String {
    use std::io::Read;
    let mut head = vec![0u8; pool::header::HEADER_REGION_BYTES];
    let mut got = 0;
    if let Ok(mut f) = std::fs::File::open(file) {
        while got < head.len() {
            match f.read(&mut head[got..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
    }
    let what = if got == head.len() {
        match pool::header::decode_region(&head) {
            Ok(r) => format!(
                "it holds a pool (layout {:?}); open it, or remove it with pmempool rm first",
                r.header.layout_name()
            ),
            Err(_) if head.iter().all(|&b| b == 0) => "it holds no pool (its header region is \
                 all zero: an empty or pre-allocated file, or a create interrupted by an older \
                 version); remove it and create again, or omit --size to create the pool inside \
                 it as it is"
                .into(),
            Err(_) => "it is not a pool (its first 4 KiB are neither zero nor a pool header); \
                 remove it first if it is not needed"
                .into(),
        }
    } else {
        format!(
            "it holds no pool ({got} bytes); remove it and create again, or give it its size \
             first (e.g. fallocate -l 64M FILE) and omit --size to create the pool inside it"
        )
    };
    format!(
        "{}: file already exists and is not a poolset (refusing to overwrite it): {what}",
        file.display()
    )
}

/// Run `pmempool create`.
pub fn run(a: &Args) -> Result<u8, Failure> {
    let mode = parse_mode(&a.mode)?;
    let is_set = a.file.exists() && looks_like_poolset(&a.file).map_err(|e| Failure::new(1, e))?;
    let (set, how): (PoolSet, How) = if is_set {
        if a.size.is_some() {
            return Err(Failure::new(
                1,
                format!(
                    "{}: --size is for a single pool file; a poolset's parts carry their own sizes",
                    a.file.display()
                ),
            ));
        }
        let set = poolset::parse_file(&a.file, poolset::Mode::Initiator)
            .map_err(|e| match e {
                poolset::Error::Invalid(d) => {
                    Failure::new(1, format!("{}:{}:{}: {}", d.file, d.line, d.col, d.kind))
                }
                other => Failure::new(1, other.to_string()),
            })?
            .set;
        (set, How::Set)
    } else if a.file.exists() {
        if a.size.is_some() {
            return Err(Failure::new(1, existing_file_message(&a.file)));
        }
        // As PMDK's pmempool: no --size and an existing file: the pool is made inside it
        // (pool size 0 = the file's size; its header region must be zero).
        (single_file_set(&a.file, 0), How::InPlace)
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
        (single_file_set(&a.file, size), How::NewFile)
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
    let fail = |e: pool::Error| Failure::new(1, e.to_string());
    let (p, staged) = match how {
        How::NewFile => {
            let (p, staged) = pool::Pool::create_staged(&set, &a.layout, opts).map_err(fail)?;
            (p, Some(staged))
        }
        How::Set | How::InPlace => (
            pool::Pool::create(&set, &a.layout, opts).map_err(fail)?,
            None,
        ),
    };
    bar.set(1);
    // Undo what this command made. A staged file needs nothing here: dropping its `Staged`
    // unpublished removes it, and the final path never existed. A file used in place is the
    // user's: only its header region, zero before, is zeroed again.
    let undo = |msg: String| {
        match how {
            How::NewFile => {}
            How::InPlace => zero_header_region(&a.file),
            How::Set => {
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
                        let _ = rpmem::remove(
                            &node_name(rr),
                            &desc,
                            flags,
                            &rpmem::Options::from_env(),
                        );
                    }
                }
            }
        }
        Failure::new(1, msg)
    };
    let obj = tx::ObjPool::create_in(Arc::new(p), &tx::TxOptions::default()).map_err(|e| {
        undo(format!(
            "{}: creating the heap failed: {e}{}",
            a.file.display(),
            if total < (8 << 20) && !matches!(how, How::InPlace) {
                " (the pool may be too small; try --size 8M or more)"
            } else {
                ""
            }
        ))
    })?;
    bar.finish();
    let h = *obj.heap().header();
    let id = obj.id();
    // Closed before the file is published: every store of the heap layout is persisted by now.
    drop(obj);
    match staged {
        Some(staged) => {
            // The mode is set before the rename, so the pool appears with it.
            let t = staged.temp_path().to_path_buf();
            std::fs::set_permissions(&t, std::fs::Permissions::from_mode(mode))
                .map_err(|e| undo(format!("{}: chmod {mode:o}: {e}", a.file.display())))?;
            staged.publish().map_err(|e| undo(e.to_string()))?;
        }
        None if matches!(how, How::Set) => {
            for f in &parts {
                std::fs::set_permissions(f, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| undo(format!("{}: chmod {mode:o}: {e}", f.display())))?;
            }
        }
        // In place: the user's file keeps its mode.
        None => {}
    }
    if a.verbose {
        for f in &parts {
            match how {
                How::InPlace => eprintln!("created the pool inside {}", f.display()),
                _ => eprintln!("created {}", f.display()),
            }
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

/// Zero the header region of `file` again (best effort): after a failed in-place create, the
/// file is what it was before (its header region was zero, or the create was refused).
fn zero_header_region(file: &std::path::Path) {
    use std::os::unix::fs::FileExt;
    if let Ok(f) = std::fs::OpenOptions::new().write(true).open(file) {
        let _ = f.write_all_at(&[0u8; pool::header::HEADER_REGION_BYTES], 0);
        let _ = f.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    fn args(file: &Path, size: Option<&str>) -> Args {
        Args {
            layout: tx::obj::LAYOUT.into(),
            size: size.map(str::to_string),
            mode: "0640".into(),
            verbose: false,
            progress: false,
            file: file.to_path_buf(),
        }
    }

    /// The file opens as an object pool (pool headers, heap, object-pool metadata).
    fn open_obj(f: &Path) {
        let p = pool::Pool::open_file(f, Some(tx::obj::LAYOUT)).unwrap();
        drop(tx::ObjPool::open_in(Arc::new(p), Default::default()).unwrap());
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".creating-"))
            .collect()
    }

    #[test]
    fn a_new_file_appears_complete_with_its_mode_and_no_temporary_file() {
        let d = testkit::shm_tempdir();
        let f = d.path().join("new.pool");
        assert_eq!(run(&args(&f, Some("8M"))).unwrap(), 0);
        assert!(leftovers(d.path()).is_empty());
        assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o7777, 0o640);
        open_obj(&f);
        // Again with --size: refused, saying it holds a pool; nothing changed.
        let before = std::fs::read(&f).unwrap();
        let e = run(&args(&f, Some("8M"))).unwrap_err();
        assert!(e.message.contains("already exists"), "{}", e.message);
        assert!(e.message.contains("holds a pool"), "{}", e.message);
        assert_eq!(std::fs::read(&f).unwrap(), before);
        // Without --size: made in place is refused too (it holds a pool).
        let e = run(&args(&f, None)).unwrap_err();
        assert!(e.message.contains("already holds a pool"), "{}", e.message);
        assert_eq!(std::fs::read(&f).unwrap(), before);
    }

    #[test]
    fn an_existing_zero_file_without_size_becomes_the_pool_in_place() {
        let d = testkit::shm_tempdir();
        let f = d.path().join("pre.pool");
        std::fs::File::create(&f).unwrap().set_len(8 << 20).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let ino = std::fs::metadata(&f).unwrap().ino();
        // With --size: refused, naming the way to use it.
        let e = run(&args(&f, Some("8M"))).unwrap_err();
        assert!(e.message.contains("omit --size"), "{}", e.message);
        assert_eq!(run(&args(&f, None)).unwrap(), 0);
        let m = std::fs::metadata(&f).unwrap();
        assert_eq!(m.ino(), ino, "the user's file is used, not replaced");
        assert_eq!(m.mode() & 0o7777, 0o600, "the user's file keeps its mode");
        open_obj(&f);
        assert!(leftovers(d.path()).is_empty());
    }

    #[test]
    fn a_leftover_temporary_file_of_a_dead_create_is_removed() {
        let d = testkit::shm_tempdir();
        let f = d.path().join("x.pool");
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let dead = c.id();
        c.wait().unwrap();
        let temp = d.path().join(format!(".x.pool.creating-{dead}-0"));
        std::fs::write(&temp, b"half a pool").unwrap();
        assert_eq!(run(&args(&f, Some("8M"))).unwrap(), 0);
        assert!(!temp.exists());
        assert!(leftovers(d.path()).is_empty());
    }
}
