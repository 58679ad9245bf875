//! The served pool: descriptor → poolset (rpmemd mode) → `pool::Pool`, the attribute area, and
//! durability of persisted ranges.
//!
//! Layout of the pool crate's data area as rpmemd uses it (docs/PROTOCOL.md, "Target side"):
//!
//! ```text
//! data offset 0        2048        4096                                   pool crate's len()
//!             | attr slot 0 | attr slot 1 | remote pool (registered, RMA-reachable)     |
//! ```
//!
//! Protocol pool offset 0 is data offset [`ATTR_AREA_BYTES`]; the attribute area is never
//! registered, so no RMA can reach it. Each attribute slot is written by rpmemd alone with a
//! sequence number and a CRC; an update writes the slot not in force and persists it, so a crash
//! leaves either the old or the new attributes readable.
//!
//! Every failure is a [`Failure`]: a protocol status plus a message saying what to check.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use pool::{OpenOptions, Persister, Pool};
use rpmem_proto::{PoolAttr, Status};
use rpmemd::paths::{open_regular_file, resolve_descriptor, PathError};

/// Bytes at the start of the data area reserved for the pool attributes.
pub const ATTR_AREA_BYTES: usize = 4096;
const ATTR_SLOT_BYTES: usize = 2048;
const ATTR_MAGIC: [u8; 8] = *b"RPMDATTR";
const ATTR_VERSION: u32 = 1;
/// Bytes of a slot covered by the CRC: magic, version, reserved, seq, attributes.
const ATTR_BODY_BYTES: usize = 8 + 4 + 4 + 8 + ATTR_BYTES;
const ATTR_BYTES: usize = 104;
/// Layout name rpmemd's pools carry in the pool crate's header.
pub const LAYOUT: &str = "rpmemd";

/// A failed request: what to send in the ERROR frame, and what to log.
#[derive(Debug)]
pub struct Failure {
    pub status: Status,
    /// Sent to the initiator.
    pub message: String,
    /// For rpmemd's log only, when it says more than `message` (paths the peer must not learn).
    pub log_detail: Option<String>,
}

impl Failure {
    pub fn new(status: Status, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
            log_detail: None,
        }
    }

    /// The text for rpmemd's log.
    pub fn log_text(&self) -> &str {
        self.log_detail.as_deref().unwrap_or(&self.message)
    }
}

/// An open (or freshly created) pool served to one initiator.
pub struct Served {
    pool: Pool,
    descriptor: String,
    parts: Vec<PathBuf>,
    /// Sequence number of the attribute slot in force; the lock also serialises updates.
    seq: Mutex<u64>,
}

/// Resolves and parses the poolset named by `descriptor`: confined to poolset-dir
/// (`resolve_descriptor`), opened without ever blocking on a non-regular file
/// (`open_regular_file`: a FIFO swapped in after the check is refused, not waited on), read up to
/// the poolset size limit, then parsed.
fn load_set(poolset_dir: &Path, descriptor: &str) -> Result<(PathBuf, poolset::PoolSet), Failure> {
    let path = resolve_descriptor(poolset_dir, descriptor).map_err(|e| {
        let (status, message) = match e {
            PathError::NotFound { .. } => (
                Status::PoolsetNotFound,
                format!("{e} (poolset-dir is {})", poolset_dir.display()),
            ),
            PathError::PoolsetDir { .. } | PathError::Io { .. } => (Status::Io, e.to_string()),
            _ => (Status::PathRefused, e.to_string()),
        };
        Failure {
            status,
            message,
            log_detail: Some(e.log_detail()),
        }
    })?;
    let file = open_regular_file(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Failure::new(
            Status::PoolsetNotFound,
            format!(
                "poolset {descriptor:?} not found in poolset-dir {}",
                poolset_dir.display()
            ),
        ),
        io::ErrorKind::IsADirectory | io::ErrorKind::InvalidInput => {
            Failure::new(Status::PathRefused, format!("poolset {descriptor:?}: {e}"))
        }
        _ => Failure::new(io_status(&e), format!("poolset {descriptor:?}: {e}")),
    })?;
    let mut bytes = Vec::new();
    file.take(poolset::MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            Failure::new(
                io_status(&e),
                format!("reading poolset {descriptor:?}: {e}"),
            )
        })?;
    if bytes.len() as u64 > poolset::MAX_FILE_BYTES {
        return Err(Failure::new(
            Status::BadPoolset,
            format!(
                "poolset {descriptor:?} is larger than {} bytes: not a poolset file",
                poolset::MAX_FILE_BYTES
            ),
        ));
    }
    let parsed = poolset::parse_bytes(&path.display().to_string(), &bytes, poolset::Mode::Rpmemd)
        .map_err(|e| {
        Failure::new(Status::BadPoolset, format!("poolset {descriptor:?}: {e}"))
    })?;
    Ok((path, parsed.set))
}

fn part_paths(set: &poolset::PoolSet) -> Vec<PathBuf> {
    set.replicas
        .iter()
        .filter_map(|r| match r {
            poolset::Replica::Local(l) => Some(l.parts.iter().map(|p| p.path.clone())),
            poolset::Replica::Remote(_) => None,
        })
        .flatten()
        .collect()
}

fn pool_failure(descriptor: &str, e: pool::Error) -> Failure {
    let status = match &e {
        pool::Error::Exists { .. } => Status::PoolExists,
        pool::Error::Locked { .. } => Status::PoolBusy,
        pool::Error::Io { source, .. } => match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => Status::NoSpace,
            Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => Status::PermissionDenied,
            _ => Status::Io,
        },
        pool::Error::Persist(_) => Status::Io,
        _ => Status::BadPoolset,
    };
    Failure::new(status, format!("pool {descriptor:?}: {e}"))
}

/// OPEN's failure: as [`pool_failure`], except that a part file missing while another part of
/// the pool exists is a damaged pool (`BadPoolset`, which resync's rebuild acts on: the pool
/// is removed and created anew), not an I/O error. With no part at all there is no pool, and
/// the I/O error says which file was looked for.
fn open_failure(descriptor: &str, set: &poolset::PoolSet, e: pool::Error) -> Failure {
    let missing = match &e {
        pool::Error::Io { path, source, .. } if source.kind() == io::ErrorKind::NotFound => {
            Some(path.clone())
        }
        _ => None,
    };
    let parts = part_paths(set);
    match missing {
        Some(path) if parts.contains(&path) && parts.iter().any(|p| p.exists()) => Failure::new(
            Status::BadPoolset,
            format!(
                "pool {descriptor:?} is incomplete: part {} is missing while other parts exist \
                 (a resync from a healthy replica rebuilds it)",
                path.display()
            ),
        ),
        _ => pool_failure(descriptor, e),
    }
}

impl Served {
    /// CREATE: creates every part of the poolset, checks the size, stores `attr`.
    pub fn create(
        poolset_dir: &Path,
        descriptor: &str,
        min_size: u64,
        attr: &PoolAttr,
    ) -> Result<Served, Failure> {
        let (_, set) = load_set(poolset_dir, descriptor)?;
        let pool = Pool::create(&set, LAYOUT, OpenOptions::default())
            .map_err(|e| pool_failure(descriptor, e))?;
        let served = Served {
            pool,
            descriptor: descriptor.to_string(),
            parts: part_paths(&set),
            seq: Mutex::new(0),
        };
        let res = served
            .check_size(min_size)
            .and_then(|()| served.store_attr(attr));
        match res {
            Ok(()) => Ok(served),
            Err(f) => {
                // The parts were created by this request: do not leave a half-made pool.
                let parts = served.parts.clone();
                drop(served);
                for p in parts {
                    let _ = std::fs::remove_file(p);
                }
                Err(f)
            }
        }
    }

    /// OPEN: opens the pool with every check of the pool crate and reads its attributes.
    pub fn open(
        poolset_dir: &Path,
        descriptor: &str,
        min_size: u64,
    ) -> Result<(Served, PoolAttr), Failure> {
        let (_, set) = load_set(poolset_dir, descriptor)?;
        let pool = Pool::open(&set, Some(LAYOUT), OpenOptions::default())
            .map_err(|e| open_failure(descriptor, &set, e))?;
        let served = Served {
            pool,
            descriptor: descriptor.to_string(),
            parts: part_paths(&set),
            seq: Mutex::new(0),
        };
        served.check_size(min_size)?;
        let (seq, attr) = served.read_attr()?;
        *served.seq.lock().unwrap_or_else(|p| p.into_inner()) = seq;
        Ok((served, attr))
    }

    fn check_size(&self, min_size: u64) -> Result<(), Failure> {
        let have = self.size();
        if self.pool.len() <= ATTR_AREA_BYTES || have < min_size {
            return Err(Failure::new(
                Status::PoolTooSmall,
                format!(
                    "pool {:?} offers {have} bytes (its data area minus {ATTR_AREA_BYTES} bytes of \
                     attributes), the initiator needs {min_size}: enlarge the parts in the poolset",
                    self.descriptor
                ),
            ));
        }
        Ok(())
    }

    /// Size of the remote pool as the protocol sees it (the registered area).
    pub fn size(&self) -> u64 {
        self.pool.len().saturating_sub(ATTR_AREA_BYTES) as u64
    }

    /// Start of the registered area (protocol offset 0).
    pub fn base_ptr(&self) -> *mut u8 {
        self.pool
            .primary()
            .region()
            .as_ptr()
            .wrapping_add(ATTR_AREA_BYTES)
    }

    /// Whether the pool is on persistent memory (cache flushes) or not (`msync`).
    pub fn is_pmem(&self) -> bool {
        self.pool.is_pmem()
    }

    /// Makes `[offset, offset+length)` of the remote pool durable. The caller has checked the
    /// range against [`size`](Self::size) (`rpmem_proto::check_range`).
    pub fn persist(&self, offset: u64, length: u64, deep: bool) -> Result<(), String> {
        let (Ok(off), Ok(len)) = (usize::try_from(offset), usize::try_from(length)) else {
            return Err(format!("range {offset}+{length} does not fit this machine"));
        };
        let data_off = ATTR_AREA_BYTES + off;
        if len > 0 {
            // Flush (cache lines on pmem, msync of the pages otherwise) ...
            self.pool.flush(data_off, len).map_err(|e| e.to_string())?;
        }
        // ... and fence: the range is durable before PERSIST_RESP leaves.
        self.pool.drain().map_err(|e| e.to_string())?;
        if deep && len > 0 && self.pool.is_pmem() {
            // Deep persist on pmem also syncs the mapping (flushes any write-pending queues the
            // platform does not cover by ADR); on non-pmem the flush above was msync already.
            msync(self.base_ptr().wrapping_add(off), len).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Stores the records of a PERSIST_INLINE (§8.6) and makes them durable: each record's
    /// range flushed (cache lines on pmem, msync otherwise), then one fence. The caller has
    /// checked every range against [`size`](Self::size) (`rpmem_proto::session::check_inline`).
    pub fn store_inline(&self, records: &rpmem_proto::InlineRecords<'_>) -> Result<(), String> {
        for (offset, data) in records.iter() {
            let Some(off) = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(ATTR_AREA_BYTES))
            else {
                return Err(format!("offset {offset} does not fit this machine"));
            };
            self.pool.write(off, data);
            self.pool
                .flush(off, data.len())
                .map_err(|e| e.to_string())?;
        }
        self.pool.drain().map_err(|e| e.to_string())
    }

    /// Makes the whole remote pool durable (CLOSE, end of session).
    pub fn persist_all(&self) -> Result<(), String> {
        self.persist(0, self.size(), false)
    }

    /// SET_ATTR (and CREATE): writes `attr` to the slot not in force and persists it.
    pub fn store_attr(&self, attr: &PoolAttr) -> Result<(), Failure> {
        let mut in_force = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        let seq = *in_force + 1;
        let slot = encode_slot(seq, attr);
        let off = (seq % 2) as usize * ATTR_SLOT_BYTES;
        // The slot must be durable before the reply says the attributes are stored.
        self.pool
            .memcpy_persist(off, &slot, pool::persist::Flags::NONE)
            .map_err(|e| {
                Failure::new(
                    Status::Io,
                    format!("pool {:?}: storing attributes: {e}", self.descriptor),
                )
            })?;
        *in_force = seq;
        Ok(())
    }

    fn read_attr(&self) -> Result<(u64, PoolAttr), Failure> {
        let mut best: Option<(u64, PoolAttr)> = None;
        for i in 0..2 {
            let mut buf = [0u8; ATTR_BODY_BYTES + 4];
            self.pool.read(i * ATTR_SLOT_BYTES, &mut buf);
            if let Some((seq, attr)) = decode_slot(&buf) {
                if !matches!(best, Some((s, _)) if s >= seq) {
                    best = Some((seq, attr));
                }
            }
        }
        best.ok_or_else(|| {
            Failure::new(
                Status::BadPoolset,
                format!(
                    "pool {:?} has no valid rpmemd attribute block: it was not created by rpmemd \
                     or its first {ATTR_AREA_BYTES} bytes are damaged",
                    self.descriptor
                ),
            )
        })
    }

    /// Closes the pool (making it durable) and, if asked, deletes its parts.
    pub fn close(self, remove: bool) -> Result<(), Failure> {
        let durable = self.persist_all();
        let parts = self.parts.clone();
        let descriptor = self.descriptor.clone();
        // Unmaps and releases the part locks.
        drop(self);
        durable.map_err(|e| {
            Failure::new(Status::Io, format!("pool {descriptor:?}: final flush: {e}"))
        })?;
        if remove {
            remove_parts(&descriptor, &parts, false)?;
        }
        Ok(())
    }
}

fn encode_slot(seq: u64, a: &PoolAttr) -> Vec<u8> {
    let mut b = Vec::with_capacity(ATTR_BODY_BYTES + 4);
    b.extend_from_slice(&ATTR_MAGIC);
    b.extend_from_slice(&ATTR_VERSION.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&seq.to_le_bytes());
    b.extend_from_slice(&a.signature);
    for v in [
        a.major,
        a.compat_features,
        a.incompat_features,
        a.ro_compat_features,
    ] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for u in [
        &a.poolset_uuid,
        &a.uuid,
        &a.next_uuid,
        &a.prev_uuid,
        &a.user_flags,
    ] {
        b.extend_from_slice(u);
    }
    debug_assert_eq!(b.len(), ATTR_BODY_BYTES);
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

fn decode_slot(b: &[u8; ATTR_BODY_BYTES + 4]) -> Option<(u64, PoolAttr)> {
    let (body, crc) = b.split_at(ATTR_BODY_BYTES);
    if body[..8] != ATTR_MAGIC || crc32fast::hash(body).to_le_bytes() != crc {
        return None;
    }
    let u32_at = |o: usize| u32::from_le_bytes(body[o..o + 4].try_into().unwrap_or([0; 4]));
    if u32_at(8) != ATTR_VERSION || u32_at(12) != 0 {
        return None;
    }
    let seq = u64::from_le_bytes(body[16..24].try_into().ok()?);
    let a = &body[24..];
    let arr16 = |o: usize| -> [u8; 16] { a[o..o + 16].try_into().unwrap_or([0; 16]) };
    let u32a = |o: usize| u32::from_le_bytes(a[o..o + 4].try_into().unwrap_or([0; 4]));
    Some((
        seq,
        PoolAttr {
            signature: a[0..8].try_into().ok()?,
            major: u32a(8),
            compat_features: u32a(12),
            incompat_features: u32a(16),
            ro_compat_features: u32a(20),
            poolset_uuid: arr16(24),
            uuid: arr16(40),
            next_uuid: arr16(56),
            prev_uuid: arr16(72),
            user_flags: arr16(88),
        },
    ))
}

fn msync(ptr: *mut u8, len: usize) -> io::Result<()> {
    let page = 4096usize;
    let start = (ptr as usize) & !(page - 1);
    let end = (ptr as usize).saturating_add(len);
    // SAFETY: [start, end) lies within the live shared mapping of the pool (the caller's range
    // is inside it; rounding down to the page start stays inside the mapping, which is page
    // aligned). msync does not access the memory from Rust.
    let rc = unsafe { libc::msync(start as *mut libc::c_void, end - start, libc::MS_SYNC) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Deletes the part files; refuses (PoolBusy) if any part is locked by another process, and
/// (BadPoolset, even with `force`) if any part is not a regular file: REMOVE only ever deletes
/// regular files, never a device node, directory, FIFO or socket a poolset names. Resync's
/// rebuild of a remote replica (`rpmem::replica`) relies on this when a pool could not be opened.
fn remove_parts(descriptor: &str, parts: &[PathBuf], force: bool) -> Result<(), Failure> {
    // Take every lock first so that a pool in use is never half removed.
    let mut held = Vec::new();
    let not_regular = |p: &Path, t: std::fs::FileType| {
        Failure::new(
            Status::BadPoolset,
            format!(
                "pool {descriptor:?}: part {} is {}, not a regular file: refusing to remove it",
                p.display(),
                file_kind(t)
            ),
        )
    };
    for p in parts {
        // Checked by path first (a socket does not open at all), then on the open descriptor.
        if let Ok(m) = std::fs::metadata(p) {
            if !m.is_file() {
                return Err(not_regular(p, m.file_type()));
            }
        }
        match open_part(p) {
            Ok(f) => {
                if let Ok(m) = f.metadata() {
                    if !m.is_file() {
                        return Err(not_regular(p, m.file_type()));
                    }
                }
                // SAFETY: flock on a descriptor owned by `f`.
                let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
                if rc != 0 {
                    let e = io::Error::last_os_error();
                    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                        return Err(Failure::new(
                            Status::PoolBusy,
                            format!(
                                "pool {descriptor:?}: part {} is in use by another session",
                                p.display()
                            ),
                        ));
                    }
                }
                held.push(f);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if force => {
                let _ = e;
            }
            Err(e) => {
                return Err(Failure::new(
                    io_status(&e),
                    format!("pool {descriptor:?}: part {}: {e}", p.display()),
                ))
            }
        }
    }
    for p in parts {
        match std::fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound && force => {}
            Err(_) if force => {}
            Err(e) => {
                return Err(Failure::new(
                    io_status(&e),
                    format!("pool {descriptor:?}: removing part {}: {e}", p.display()),
                ))
            }
        }
    }
    drop(held);
    Ok(())
}

/// Opens a part for [`remove_parts`] without blocking (`O_NONBLOCK`: a FIFO opens at once) and
/// following symbolic links as the pool crate does.
fn open_part(p: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(p)
}

/// What a non-regular file is, for messages.
fn file_kind(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

fn io_status(e: &io::Error) -> Status {
    match e.raw_os_error() {
        Some(libc::ENOSPC) => Status::NoSpace,
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => Status::PermissionDenied,
        _ => Status::Io,
    }
}

/// REMOVE (and `rpmemd --remove`): deletes the parts of the pool `descriptor` names and, with
/// `pool_set`, the poolset file itself.
pub fn remove(
    poolset_dir: &Path,
    descriptor: &str,
    force: bool,
    pool_set: bool,
) -> Result<(), Failure> {
    let (path, set) = load_set(poolset_dir, descriptor)?;
    remove_parts(descriptor, &part_paths(&set), force)?;
    if pool_set {
        std::fs::remove_file(&path).map_err(|e| {
            Failure::new(
                io_status(&e),
                format!("removing poolset {}: {e}", path.display()),
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `load_set` on another thread, failing the test (not hanging it) if it blocks.
    fn load_bounded(dir: &Path, descriptor: &str) -> Result<(PathBuf, poolset::PoolSet), Failure> {
        let (done, result) = std::sync::mpsc::channel();
        let (dir, d) = (dir.to_path_buf(), descriptor.to_string());
        std::thread::spawn(move || {
            let _ = done.send(load_set(&dir, &d));
        });
        result
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("load_set must not block")
    }

    fn site() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let sets = t.path().join("sets");
        std::fs::create_dir(&sets).unwrap();
        (t, sets)
    }

    #[test]
    fn load_set_parses_a_poolset_and_names_a_missing_one() {
        let (t, sets) = site();
        let part = t.path().join("part0");
        std::fs::write(
            sets.join("a.set"),
            format!("PMEMPOOLSET\n8M {}\n", part.display()),
        )
        .unwrap();
        let (path, set) = load_bounded(&sets, "a.set").unwrap();
        assert_eq!(path, sets.canonicalize().unwrap().join("a.set"));
        assert_eq!(part_paths(&set), vec![part]);
        let f = load_bounded(&sets, "missing.set").unwrap_err();
        assert_eq!(f.status, Status::PoolsetNotFound, "{f:?}");
        assert!(f.message.contains("missing.set"), "{}", f.message);
    }

    #[test]
    fn a_fifo_descriptor_is_refused_without_blocking() {
        let (_t, sets) = site();
        let fifo = sets.join("fifo.set");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let f = load_bounded(&sets, "fifo.set").unwrap_err();
        assert_eq!(f.status, Status::PathRefused, "{f:?}");
        assert!(f.message.contains("FIFO"), "{}", f.message);
    }

    #[test]
    fn an_escaping_descriptor_tells_the_peer_less_than_the_log() {
        let (t, sets) = site();
        let outside = t.path().join("secret-place");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("x.set"), "PMEMPOOLSET\n").unwrap();
        std::os::unix::fs::symlink(&outside, sets.join("link")).unwrap();
        let f = load_bounded(&sets, "link/x.set").unwrap_err();
        assert_eq!(f.status, Status::PathRefused, "{f:?}");
        assert!(
            !f.message.contains("secret-place"),
            "peer text: {}",
            f.message
        );
        assert!(
            f.log_text().contains("secret-place"),
            "log: {}",
            f.log_text()
        );
    }

    #[test]
    fn an_oversized_poolset_is_refused_after_a_bounded_read() {
        let (_t, sets) = site();
        let big = File::create(sets.join("big.set")).unwrap();
        big.set_len(poolset::MAX_FILE_BYTES + 4096).unwrap();
        let f = load_bounded(&sets, "big.set").unwrap_err();
        assert_eq!(f.status, Status::BadPoolset, "{f:?}");
        assert!(f.message.contains("larger than"), "{}", f.message);
    }

    #[test]
    fn remove_never_deletes_a_part_that_is_not_a_regular_file_even_with_force() {
        let (t, sets) = site();
        let part0 = t.path().join("part0");
        let fifo = t.path().join("part1");
        std::fs::write(&part0, b"data").unwrap();
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        std::fs::write(
            sets.join("a.set"),
            format!(
                "PMEMPOOLSET\n8M {}\n8M {}\n",
                part0.display(),
                fifo.display()
            ),
        )
        .unwrap();
        for force in [false, true] {
            let f = remove(&sets, "a.set", force, false).unwrap_err();
            assert_eq!(f.status, Status::BadPoolset, "{f:?}");
            assert!(f.message.contains("a FIFO"), "{}", f.message);
            // Refused before anything was removed: the pool is never half removed.
            assert!(part0.exists() && fifo.exists(), "force {force}");
        }
        std::fs::remove_file(&fifo).unwrap();
        // The FIFO gone (a missing part is tolerated with force), the regular part is removed.
        remove(&sets, "a.set", true, false).unwrap();
        assert!(!part0.exists());
    }

    #[test]
    fn attribute_slot_round_trips_and_detects_damage() {
        let a = PoolAttr {
            signature: *b"SIGNATUR",
            major: 7,
            user_flags: [9; 16],
            ..PoolAttr::default()
        };
        let s = encode_slot(3, &a);
        let arr: [u8; ATTR_BODY_BYTES + 4] = s.clone().try_into().unwrap();
        assert_eq!(decode_slot(&arr), Some((3, a)));
        for i in 0..arr.len() {
            let mut bad = arr;
            bad[i] ^= 0x40;
            assert_eq!(decode_slot(&bad), None, "flip at byte {i} went unnoticed");
        }
    }
}
