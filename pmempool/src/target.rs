//! What a command is pointed at: a single pool file or a poolset file (`FILE|POOLSET`).
//!
//! A file whose first bytes are `PMEMPOOLSET` is a poolset (PMDK's rule) and is parsed with the
//! `poolset` crate; anything else is a single-file pool, described as a one-part poolset with the
//! file's current size, exactly as `pool::Pool::open_file` does. Also: shared `flock`s that keep
//! the pool from being opened by someone else while a read-only command looks at it.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use poolset::{Options, Part, PoolSet, Replica};

/// The resolved command-line target.
pub struct Target {
    /// The path given.
    pub path: PathBuf,
    /// Whether it is a poolset file (else a single pool file).
    pub is_poolset: bool,
    /// The pool set (one local replica of one part for a single file).
    pub set: PoolSet,
}

/// Whether the file at `path` starts with the poolset signature.
pub fn looks_like_poolset(path: &Path) -> Result<bool, String> {
    let mut f = File::open(path).map_err(|e| format!("{}: cannot open: {e}", path.display()))?;
    let mut sig = [0u8; 11];
    let mut got = 0;
    while got < sig.len() {
        match f.read(&mut sig[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
        }
    }
    Ok(&sig[..got] == b"PMEMPOOLSET")
}

/// Resolve `path` (must exist).
pub fn resolve(path: &Path) -> Result<Target, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.is_dir() {
        return Err(format!(
            "{}: is a directory, not a pool file or poolset",
            path.display()
        ));
    }
    if looks_like_poolset(path)? {
        let parsed = poolset::parse_file(path, poolset::Mode::Initiator).map_err(|e| match e {
            poolset::Error::Invalid(d) => format!("{}:{}:{}: {}", d.file, d.line, d.col, d.kind),
            other => other.to_string(),
        })?;
        return Ok(Target {
            path: path.to_path_buf(),
            is_poolset: true,
            set: parsed.set,
        });
    }
    Ok(Target {
        path: path.to_path_buf(),
        is_poolset: false,
        set: single_file_set(path, meta.len()),
    })
}

/// A one-part poolset for a single pool file.
pub fn single_file_set(path: &Path, size: u64) -> PoolSet {
    PoolSet {
        options: Options::default(),
        replicas: vec![Replica::Local(poolset::LocalReplica {
            parts: vec![Part {
                size,
                path: path.to_path_buf(),
                is_directory: false,
                line: 0,
            }],
            line: 0,
        })],
    }
}

/// Whether part `part` of a replica has a header region (docs/FORMAT.md: NOHDRS, SINGLEHDR).
pub fn has_header(set: &PoolSet, part: usize) -> bool {
    !set.options.no_hdrs && (part == 0 || !set.options.single_hdr)
}

/// `[user@]host[:port]` of a remote replica (IPv6 hosts in brackets), as rpmem's targets read.
pub fn node_name(r: &poolset::RemoteReplica) -> String {
    let host = if r.host.contains(':') {
        format!("[{}]", r.host)
    } else {
        r.host.clone()
    };
    let mut s = match &r.user {
        Some(u) => format!("{u}@{host}"),
        None => host,
    };
    if let Some(p) = r.port {
        s.push_str(&format!(":{p}"));
    }
    s
}

/// Shared locks on part files: `pool::Pool` takes exclusive ones, so while these are held no
/// process can open the pool, and a pool already open makes taking them fail.
pub struct SharedLocks {
    _files: Vec<File>,
}

/// Take a shared lock on every existing local part file of `set`. Fails naming the first part
/// that an open pool holds; missing files are skipped (they are reported elsewhere).
pub fn lock_shared(set: &PoolSet) -> Result<SharedLocks, String> {
    let mut files = Vec::new();
    for rep in &set.replicas {
        let Replica::Local(l) = rep else { continue };
        for p in &l.parts {
            let Ok(f) = File::open(&p.path) else { continue };
            // SAFETY: flock on a valid descriptor owned by `f`; no memory is passed.
            let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
            if rc != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    return Err(format!(
                        "{}: pool is in use by another process (file lock held); close it first",
                        p.path.display()
                    ));
                }
                return Err(format!("{}: flock: {e}", p.path.display()));
            }
            files.push(f);
        }
    }
    Ok(SharedLocks { _files: files })
}
