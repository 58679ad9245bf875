//! Read-only verification of a pool set: every local part and replica is checked as
//! [`Pool::open`](crate::Pool::open) would check it — both header slots, the header fields, the
//! part and replica UUID links, sizes, the stale marks in the primary's header — and every local
//! replica's data is compared with the primary's. All problems are collected (open stops at the
//! first one), each naming the file, the field and how it can be repaired.
//!
//! Architecture invariant: nothing here opens a file for writing or takes a lock; files are
//! read with `pread`. Callers that need the pool to stay still while it is verified take shared
//! `flock`s themselves (an open pool holds exclusive ones). Remote replicas are not read here
//! (`pool` never touches the network): [`remote_spec`] tells what a remote replica's
//! attributes must be, so that a caller holding a connector can check it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use poolset::{PoolSet, Replica as SetReplica};

use crate::header::{self, HeaderRead, PartHeader, RegionError, StaleSlot, Uuid};
use crate::pool::{describe_replica, has_header, Error, RemoteSpec};

/// How a problem can be repaired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Repair {
    /// Opening the pool ([`crate::Pool::open`]) repairs it: a stale header slot is rewritten
    /// from the slot in force, replica data that differs is copied from the primary.
    PoolOpen,
    /// Rebuilding the replica (not the primary) from the primary: [`crate::resync()`].
    Resync,
    /// Not repairable by the pool; the text says what to do.
    Manual(String),
}

/// What kind of problem was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// The part file cannot be stat'ed (usually: missing).
    PartMissing,
    /// The part file's size differs from the pool set's.
    PartSize,
    /// The header region cannot be read, or neither slot decodes.
    HeaderUnusable,
    /// One header slot is corrupt or older than the other.
    HeaderSlot {
        /// Slot number (0 or 1).
        slot: usize,
    },
    /// A header field disagrees with the pool set or with other headers.
    HeaderField {
        /// Field name (e.g. `replica_count`, `next_repl_uuid`).
        field: &'static str,
    },
    /// A replica holds fewer data bytes than the pool.
    ReplicaTooSmall,
    /// The primary's header marks the replica stale (it missed updates).
    MarkedStale,
    /// The replica's data differs from the primary's in these (offset, length) ranges.
    DataDiffers {
        /// Ranges in pool offsets.
        ranges: Vec<(u64, u64)>,
    },
}

/// One problem found by [`verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Replica index in the pool set (0 = primary).
    pub replica: usize,
    /// Part index within the replica, when the problem is about one part.
    pub part: Option<usize>,
    /// The part file concerned, if any.
    pub path: Option<PathBuf>,
    /// What kind of problem.
    pub kind: ProblemKind,
    /// Full description (file, field, expected and found values).
    pub message: String,
    /// How it can be repaired.
    pub repair: Repair,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Options of [`verify_with`].
pub struct VerifyOptions<'a> {
    /// Compare every local replica's data with the primary's (reads the whole pool once per
    /// replica, plus once from the primary).
    pub compare_data: bool,
    /// Called while comparing: (replica, bytes done, bytes in all).
    pub progress: Option<&'a mut dyn FnMut(usize, u64, u64)>,
}

impl Default for VerifyOptions<'_> {
    fn default() -> Self {
        VerifyOptions {
            compare_data: true,
            progress: None,
        }
    }
}

/// The data comparison of one local replica with the primary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataCheck {
    /// Replica index.
    pub replica: usize,
    /// Differing (offset, length) ranges (empty: equal), or why it was not compared.
    pub result: Result<Vec<(u64, u64)>, String>,
}

/// What [`verify_with`] found.
#[derive(Clone, Debug, Default)]
pub struct Verification {
    /// Every problem, in replica then part order (data and stale marks last).
    pub problems: Vec<Problem>,
    /// One entry per local replica other than the primary, when data was compared.
    pub data: Vec<DataCheck>,
    /// The pool size (the primary's part-0 header, or its data size without headers), when
    /// known.
    pub pool_size: Option<u64>,
}

/// One local part as found on disk.
struct PartRead {
    part: usize,
    path: PathBuf,
    size_set: u64,
    size_file: Result<u64, String>,
    has_header: bool,
    header: Option<Result<HeaderRead, RegionError>>,
    read_error: Option<String>,
}

impl PartRead {
    fn hdr(&self) -> Option<&PartHeader> {
        match &self.header {
            Some(Ok(r)) => Some(&r.header),
            _ => None,
        }
    }
    fn size_ok(&self) -> bool {
        self.size_file.as_ref().is_ok_and(|&s| s == self.size_set)
    }
}

fn read_parts(set: &PoolSet, parts: &[poolset::Part]) -> Vec<PartRead> {
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let hh = has_header(set, i);
        let size_file = std::fs::metadata(&p.path)
            .map(|m| m.len())
            .map_err(|e| e.to_string());
        let (mut hdr, mut read_error) = (None, None);
        if hh && size_file.is_ok() {
            let mut buf = vec![0u8; header::HEADER_REGION_BYTES];
            match File::open(&p.path).and_then(|f| f.read_exact_at(&mut buf, 0)) {
                Ok(()) => hdr = Some(header::decode_region(&buf)),
                Err(e) => {
                    read_error = Some(format!(
                    "cannot read the {}-byte header region (file has {} bytes; is it a pool?): {e}",
                    header::HEADER_REGION_BYTES,
                    size_file.as_ref().copied().unwrap_or(0)
                ))
                }
            }
        }
        out.push(PartRead {
            part: i,
            path: p.path.clone(),
            size_set: p.size,
            size_file,
            has_header: hh,
            header: hdr,
            read_error,
        });
    }
    out
}

const RESTORE: &str = "restore the part from a backup (a replica other than the primary is \
                       rebuilt from the primary by resync: pmempool sync or check --repair)";

fn manual(r: usize, p: &PartRead, kind: ProblemKind, message: String, todo: &str) -> Problem {
    Problem {
        replica: r,
        part: Some(p.part),
        path: Some(p.path.clone()),
        kind,
        message,
        repair: Repair::Manual(todo.to_string()),
    }
}

/// Verify `set` read-only (see the module note), comparing replica data. `layout`, when given,
/// must be the layout name in every header. `Err` only when the pool set cannot be verified at
/// all (its primary is not local).
pub fn verify(set: &PoolSet, layout: Option<&str>) -> Result<Vec<Problem>, Error> {
    Ok(verify_with(set, layout, VerifyOptions::default())?.problems)
}

/// As [`verify`], with options; also returns the per-replica data comparison.
pub fn verify_with(
    set: &PoolSet,
    layout: Option<&str>,
    mut opts: VerifyOptions<'_>,
) -> Result<Verification, Error> {
    if !matches!(set.replicas.first(), Some(SetReplica::Local(_))) {
        return Err(Error::Poolset(
            "the primary replica (the first one) must be local".into(),
        ));
    }
    let nrep = set.replicas.len();
    let reads: Vec<Option<Vec<PartRead>>> = set
        .replicas
        .iter()
        .map(|r| match r {
            SetReplica::Local(l) => Some(read_parts(set, &l.parts)),
            SetReplica::Remote(_) => None,
        })
        .collect();
    let mut out = Vec::new();
    // Reference header: the first one that decodes (normally the primary's part 0).
    let reference = reads
        .iter()
        .flatten()
        .flatten()
        .find_map(|p| p.hdr().cloned());
    let data_bytes = |parts: &[PartRead]| -> u64 {
        parts
            .iter()
            .map(|p| {
                p.size_set.saturating_sub(if p.has_header {
                    header::HEADER_REGION_BYTES as u64
                } else {
                    0
                })
            })
            .sum()
    };
    let pool_size = match &reads[0] {
        Some(parts) => match parts.first() {
            Some(p) if p.has_header => p.hdr().map(|h| h.pool_size.get()),
            _ => Some(data_bytes(parts)),
        },
        None => None,
    };
    let mut part0: Vec<Option<[u8; 16]>> = vec![None; nrep];
    for (r, parts) in reads.iter().enumerate() {
        let Some(parts) = parts else { continue };
        let first = out.len();
        for p in parts {
            let name = p.path.display();
            match &p.size_file {
                Err(e) => {
                    out.push(manual(
                        r,
                        p,
                        ProblemKind::PartMissing,
                        format!("{name}: {e}"),
                        RESTORE,
                    ));
                    continue;
                }
                Ok(sz) if *sz != p.size_set => out.push(manual(
                    r,
                    p,
                    ProblemKind::PartSize,
                    format!(
                        "{name}: file has {sz} bytes, the poolset says {}",
                        p.size_set
                    ),
                    "fix the size in the poolset file or restore the part",
                )),
                Ok(_) => {}
            }
            if let Some(e) = &p.read_error {
                out.push(manual(
                    r,
                    p,
                    ProblemKind::HeaderUnusable,
                    format!("{name}: {e}"),
                    RESTORE,
                ));
            }
            match &p.header {
                Some(Err(e)) => out.push(manual(
                    r,
                    p,
                    ProblemKind::HeaderUnusable,
                    format!("{name}: header: both slots unusable: {e}"),
                    RESTORE,
                )),
                Some(Ok(read)) => {
                    for (slot, why) in &read.stale {
                        let why = match why {
                            StaleSlot::Corrupt(e) => format!("corrupt ({e})"),
                            StaleSlot::Older { seq } => format!(
                                "older (seq {seq}, the slot in force has {}; an update was interrupted)",
                                read.header.seq.get()
                            ),
                            StaleSlot::Differs => {
                                "differs from the other slot with the same seq".into()
                            }
                        };
                        out.push(Problem {
                            replica: r,
                            part: Some(p.part),
                            path: Some(p.path.clone()),
                            kind: ProblemKind::HeaderSlot { slot: *slot },
                            message: format!("{name}: header slot {slot} is {why}"),
                            repair: Repair::PoolOpen,
                        });
                    }
                }
                None => {}
            }
        }
        let with_hdr: Vec<(&PartRead, &PartHeader)> = parts
            .iter()
            .filter_map(|p| p.hdr().map(|h| (p, h)))
            .collect();
        if let Some((p, h)) = with_hdr.first() {
            if p.part == 0 {
                part0[r] = Some(h.uuid);
            }
        }
        let Some(reference) = &reference else {
            continue;
        };
        let np = with_hdr.len();
        let all_hdrs = parts.iter().filter(|p| p.has_header).count();
        for (k, (p, h)) in with_hdr.iter().enumerate() {
            let name = p.path.display();
            let unknown_ro = h.ro_compat.get() & !header::RO_COMPAT_KNOWN;
            if unknown_ro != 0 {
                out.push(manual(
                    r,
                    p,
                    ProblemKind::HeaderField { field: "ro_compat" },
                    format!(
                        "{name}: header ro_compat: unknown read-only feature flags {unknown_ro:#x}"
                    ),
                    "use a newer build",
                ));
            }
            let mut field = |f: &'static str, exp: String, got: String| {
                if exp != got {
                    out.push(manual(
                        r,
                        p,
                        ProblemKind::HeaderField { field: f },
                        format!("{name}: header {f}: expected {exp}, found {got}"),
                        "the part belongs to another pool or its header was damaged with a \
                         valid checksum; restore the part or fix the poolset file",
                    ));
                }
            };
            let u = |x: [u8; 16]| Uuid(x).to_string();
            field("poolset_uuid", u(reference.poolset_uuid), u(h.poolset_uuid));
            field(
                "replica_index",
                r.to_string(),
                h.replica_index.get().to_string(),
            );
            field(
                "replica_count",
                nrep.to_string(),
                h.replica_count.get().to_string(),
            );
            field(
                "part_index",
                p.part.to_string(),
                h.part_index.get().to_string(),
            );
            field(
                "part_count",
                parts.len().to_string(),
                h.part_count.get().to_string(),
            );
            field(
                "pool_size",
                reference.pool_size.get().to_string(),
                h.pool_size.get().to_string(),
            );
            let want_layout = layout.unwrap_or(reference.layout_name());
            field(
                "layout",
                format!("{want_layout:?}"),
                format!("{:?}", h.layout_name()),
            );
            field(
                "incompat SINGLEHDR",
                u32::from(set.options.single_hdr).to_string(),
                u32::from(h.incompat.get() & header::INCOMPAT_SINGLEHDR != 0).to_string(),
            );
            if p.size_ok() {
                field(
                    "part_size",
                    p.size_set.to_string(),
                    h.part_size.get().to_string(),
                );
            }
            // Part links, only when every header of the replica decoded (otherwise the damaged
            // part is already reported and its neighbours' links cannot be judged).
            if np == all_hdrs && np > 0 {
                field(
                    "next_part_uuid",
                    u(with_hdr[(k + 1) % np].1.uuid),
                    u(h.next_part_uuid),
                );
                field(
                    "prev_part_uuid",
                    u(with_hdr[(k + np - 1) % np].1.uuid),
                    u(h.prev_part_uuid),
                );
            }
        }
        let db = data_bytes(parts);
        if reference.pool_size.get() > db {
            out.push(Problem {
                replica: r,
                part: None,
                path: None,
                kind: ProblemKind::ReplicaTooSmall,
                message: format!(
                    "replica {r}: {db} bytes of data, smaller than the pool's {}",
                    reference.pool_size.get()
                ),
                repair: Repair::Manual("give the replica more or larger parts".into()),
            });
        }
        resync_if_replica(&mut out[first..], r);
    }
    // The replica ring, between local replicas whose part 0 decoded.
    for (r, parts) in reads.iter().enumerate() {
        let Some(parts) = parts else { continue };
        let Some(p) = parts.first() else { continue };
        let Some(h) = p.hdr() else { continue };
        let first = out.len();
        let (next, prev) = ((r + 1) % nrep, (r + nrep - 1) % nrep);
        for (f, at, got) in [
            ("next_repl_uuid", next, h.next_repl_uuid),
            ("prev_repl_uuid", prev, h.prev_repl_uuid),
        ] {
            if let Some(exp) = part0[at] {
                if exp != got {
                    out.push(manual(
                        r,
                        p,
                        ProblemKind::HeaderField { field: f },
                        format!(
                            "{}: header {f}: expected {} (part 0 of replica {at}), found {}",
                            p.path.display(),
                            Uuid(exp),
                            Uuid(got)
                        ),
                        "the replicas belong to different pools; fix the poolset file",
                    ));
                }
            }
        }
        resync_if_replica(&mut out[first..], r);
    }
    // Replicas the primary's header marks stale (they missed updates while the pool ran
    // degraded): a fail-stop open refuses the pool until they are resynchronised.
    let marked: Vec<usize> = reads[0]
        .as_ref()
        .and_then(|parts| parts.first())
        .and_then(|p| p.hdr())
        .map(|h| h.stale_replicas())
        .unwrap_or_default();
    for &r in &marked {
        out.push(Problem {
            replica: r,
            part: None,
            path: None,
            kind: ProblemKind::MarkedStale,
            message: format!(
                "replica {r} ({}): marked stale in the primary's header (it missed updates)",
                describe_replica(set, r)
            ),
            repair: Repair::Resync,
        });
    }
    let mut data = Vec::new();
    if opts.compare_data {
        if let (Some(ps), Some(prim)) = (pool_size, reads[0].as_ref()) {
            let prim_reader = DataReader::new(prim, ps);
            for (r, parts) in reads.iter().enumerate().skip(1) {
                let Some(parts) = parts else { continue };
                let result = match (&prim_reader, DataReader::new(parts, ps)) {
                    (Err(e), _) => Err(format!("the primary's data cannot be read: {e}")),
                    (_, Err(e)) => Err(e),
                    (Ok(a), Ok(b)) => {
                        let mut cb = |done: u64, total: u64| {
                            if let Some(p) = opts.progress.as_deref_mut() {
                                p(r, done, total)
                            }
                        };
                        diff(a, &b, ps, &mut cb)
                    }
                };
                if let Ok(ranges) = &result {
                    if !ranges.is_empty() && !marked.contains(&r) {
                        let bytes: u64 = ranges.iter().map(|x| x.1).sum();
                        out.push(Problem {
                            replica: r,
                            part: None,
                            path: None,
                            kind: ProblemKind::DataDiffers {
                                ranges: ranges.clone(),
                            },
                            message: format!(
                                "replica {r}: data differs from the primary in {} range(s) ({bytes} bytes, first at offset {:#x})",
                                ranges.len(),
                                ranges[0].0
                            ),
                            repair: Repair::PoolOpen,
                        });
                    }
                }
                data.push(DataCheck { replica: r, result });
            }
        }
    }
    Ok(Verification {
        problems: out,
        data,
        pool_size,
    })
}

/// Problems of a replica other than the primary are repaired by rebuilding it from the primary.
fn resync_if_replica(found: &mut [Problem], replica: usize) {
    if replica == 0 {
        return;
    }
    for f in found {
        if matches!(f.repair, Repair::Manual(_)) {
            f.repair = Repair::Resync;
        }
    }
}

/// Reads a local replica's data area (parts concatenated, header regions skipped) with
/// `pread`, never writing.
struct DataReader {
    /// (file, offset of its data in the file, data bytes).
    parts: Vec<(File, u64, u64)>,
    path0: PathBuf,
}

impl DataReader {
    fn new(parts: &[PartRead], pool_size: u64) -> Result<DataReader, String> {
        let mut v = Vec::new();
        let mut total = 0u64;
        for p in parts {
            if !p.size_ok() {
                return Err(format!("{}: missing or mis-sized part", p.path.display()));
            }
            let off = if p.has_header {
                header::HEADER_REGION_BYTES as u64
            } else {
                0
            };
            if p.size_set < off {
                return Err(format!(
                    "{}: smaller than a header region",
                    p.path.display()
                ));
            }
            let f = File::open(&p.path).map_err(|e| format!("{}: {e}", p.path.display()))?;
            v.push((f, off, p.size_set - off));
            total += p.size_set - off;
        }
        if total < pool_size {
            return Err(format!(
                "{total} bytes of data, smaller than the pool's {pool_size}"
            ));
        }
        Ok(DataReader {
            parts: v,
            path0: parts.first().map(|p| p.path.clone()).unwrap_or_default(),
        })
    }

    fn read(&self, mut off: u64, buf: &mut [u8]) -> Result<(), String> {
        let mut done = 0usize;
        let mut base = 0u64;
        for (f, file_off, len) in &self.parts {
            if done == buf.len() {
                break;
            }
            if off >= base + len {
                base += len;
                continue;
            }
            let within = off - base;
            let n = ((len - within) as usize).min(buf.len() - done);
            f.read_exact_at(&mut buf[done..done + n], file_off + within)
                .map_err(|e| format!("{}: read: {e}", self.path0.display()))?;
            done += n;
            off += n as u64;
            base += len;
        }
        if done != buf.len() {
            return Err(format!("{}: read past the data", self.path0.display()));
        }
        Ok(())
    }
}

fn diff(
    a: &DataReader,
    b: &DataReader,
    len: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<(u64, u64)>, String> {
    const CHUNK: u64 = 1 << 20;
    let mut x = vec![0u8; CHUNK.min(len) as usize];
    let mut y = vec![0u8; CHUNK.min(len) as usize];
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut off = 0u64;
    progress(0, len);
    while off < len {
        let n = (len - off).min(CHUNK) as usize;
        a.read(off, &mut x[..n])?;
        b.read(off, &mut y[..n])?;
        if x[..n] != y[..n] {
            let first = x[..n]
                .iter()
                .zip(&y[..n])
                .position(|(p, q)| p != q)
                .unwrap_or(0);
            let last = x[..n]
                .iter()
                .zip(&y[..n])
                .rposition(|(p, q)| p != q)
                .unwrap_or(n - 1);
            let (s, e) = (off + first as u64, off + last as u64 + 1);
            match out.last_mut() {
                Some(d) if d.0 + d.1 == s => d.1 = e - d.0,
                _ => out.push((s, e - s)),
            }
        }
        off += n as u64;
        progress(off, len);
    }
    Ok(out)
}

/// What remote replica `r`'s attributes must say, derived read-only from the local headers (as
/// open derives it): pool set UUID, its place in the replica ring (from the links of its local
/// neighbours; `None` where no local header names it), pool size, index and count. `create`
/// and `resync` are false and `primary` is `None`: a connector given this spec opens the
/// replica with memory of its own, for reading.
pub fn remote_spec(set: &PoolSet, r: usize) -> Result<RemoteSpec, Error> {
    let nrep = set.replicas.len();
    if !matches!(set.replicas.get(r), Some(SetReplica::Remote(_))) {
        return Err(Error::Poolset(format!(
            "replica {r} is not a remote replica of the pool set"
        )));
    }
    let Some(SetReplica::Local(prim)) = set.replicas.first() else {
        return Err(Error::Poolset(
            "the primary replica (the first one) must be local".into(),
        ));
    };
    let hdr0 = |parts: &[poolset::Part]| -> Option<PartHeader> {
        let p = parts.first()?;
        let mut buf = vec![0u8; header::HEADER_REGION_BYTES];
        File::open(&p.path).ok()?.read_exact_at(&mut buf, 0).ok()?;
        header::decode_region(&buf).ok().map(|r| r.header)
    };
    let read_hdr = |path: &Path| -> Result<PartHeader, Error> {
        let mut buf = vec![0u8; header::HEADER_REGION_BYTES];
        File::open(path)
            .and_then(|f| f.read_exact_at(&mut buf, 0))
            .map_err(crate::pool::io_err(path, "read header"))?;
        header::decode_region(&buf)
            .map(|r| r.header)
            .map_err(|error| Error::Header {
                path: path.to_path_buf(),
                error,
            })
    };
    let (pool_size, poolset_uuid) = if set.options.no_hdrs {
        let data: u64 = prim.parts.iter().map(|p| p.size).sum();
        (data, None)
    } else {
        let h = read_hdr(&prim.parts[0].path)?;
        (h.pool_size.get(), Some(Uuid(h.poolset_uuid)))
    };
    let mut part0: Vec<Option<Uuid>> = vec![None; nrep];
    if !set.options.no_hdrs {
        let hdrs: Vec<Option<PartHeader>> = set
            .replicas
            .iter()
            .map(|rep| match rep {
                SetReplica::Local(l) => hdr0(&l.parts),
                SetReplica::Remote(_) => None,
            })
            .collect();
        for (i, h) in hdrs.iter().enumerate() {
            if let Some(h) = h {
                part0[i] = Some(Uuid(h.uuid));
            }
        }
        for (i, h) in hdrs.iter().enumerate() {
            let Some(h) = h else { continue };
            for (nb, link) in [
                ((i + 1) % nrep, h.next_repl_uuid),
                ((i + nrep - 1) % nrep, h.prev_repl_uuid),
            ] {
                if part0[nb].is_none() {
                    part0[nb] = Some(Uuid(link));
                }
            }
        }
    }
    Ok(RemoteSpec {
        replica: r,
        replica_count: nrep,
        pool_size,
        create: false,
        poolset_uuid,
        uuid: part0[r],
        prev_repl_uuid: part0[(r + nrep - 1) % nrep],
        next_repl_uuid: part0[(r + 1) % nrep],
        primary: None,
        resync: false,
    })
}
