//! Transform: add replicas to, or remove replicas from, an existing pool, given the pool set
//! before (SRC) and after (DST). Writing DST's poolset file is the caller's job.
//!
//! # What may change
//! DST must have the same options and the same primary replica (same parts, same sizes) as
//! SRC; the other replicas of DST are those of SRC (matched by their parts, or node and
//! descriptor; their order may change) plus added ones, or minus removed ones — not both in one
//! transform (the replica count then tells which side a header belongs to; do an add, then a
//! remove). `OPTION NOHDRS` pools have no header to rewrite and are refused.
//!
//! # Steps, in order ([`TransformStep`])
//! 1. SRC is opened fail-stop ([`crate::Pool::open`]: every check, remote attributes, replica
//!    data synchronised; a replica marked stale refuses — resync first) and kept open, so the
//!    pool is locked and its data cannot change during the transform.
//! 2. `create:D` for every added replica D: a local one is created under temporary names
//!    (`PART.transform`), its data copied from the primary, its headers written with DST's
//!    identity (index, count, ring), everything fsynced, then each file is renamed to its final
//!    name and the directory fsynced; a remote one is created through the connector with DST's
//!    attributes and its data copied. Nothing in SRC refers to it yet.
//! 3. `commit`: the primary's part-0 header is rewritten with DST's replica count, index and
//!    replica ring (the crash-safe double-slot update, fsynced). From here on the pool is DST.
//! 4. `relabel-primary`: the primary's other part headers; `relabel:D` for every kept replica
//!    (local: every part header; remote: its attributes through the connector).
//! 5. `remove:S` for every removed replica S (SRC index), only once every new header is durable:
//!    local part files unlinked (directories fsynced); remote ones through
//!    [`TransformOptions::remove_remote`], or left in place and reported.
//!
//! # Interrupted transforms
//! - Before `commit`: SRC opens as before (added replicas are not part of it). Leftovers
//!   (temporary files, complete new replicas) carry this pool set's UUID; running the same
//!   transform again removes and recreates them. Files of an added replica that exist but do not
//!   belong to this pool set are never touched: the transform refuses.
//! - From `commit` until the last relabel: the primary says DST, some headers still say SRC;
//!   neither opens fail-stop. Running the same transform again sees DST's replica count in the
//!   primary and finishes the relabelling (each header is rewritten only if it differs). (A
//!   degraded open of DST would also work, marking not-yet-relabelled replicas stale, to be
//!   rebuilt by resync.)
//! - During removal: DST opens; running the transform again removes what is left.
//!
//! Replica UUIDs: kept replicas keep theirs; an added replica's part-0 UUID is derived from the
//! pool set UUID, DST's replica count, its index and its description, so a rerun after a crash
//! computes the same ring without any journal.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use poolset::{PoolSet, RemoteReplica, Replica as SetReplica};

use crate::header::{self, PartHeader, Uuid};
use crate::pool::{
    describe_replica, has_header, io_err, map_replica, sync_parent_dirs, Error, FailurePolicy,
    LocalPart, LocalReplica, OpenOptions, Pool, PrimaryMemory, RemoteSpec, Rep,
};
use crate::region::Persister;
use crate::resync::{copy_data, ResyncMode, ResyncProgress};

/// One step of a transform (see the module note), in the order they run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransformStep {
    /// Create added replica `replica` (DST index), copy the data, write its headers.
    CreateReplica {
        /// DST index.
        replica: usize,
    },
    /// Rewrite the primary's part-0 header with DST's identity: the commit point.
    Commit,
    /// Rewrite the primary's other part headers.
    RelabelPrimary,
    /// Rewrite kept replica `replica`'s (DST index) headers or remote attributes.
    RelabelReplica {
        /// DST index.
        replica: usize,
    },
    /// Remove replica `replica` (SRC index).
    RemoveReplica {
        /// SRC index.
        replica: usize,
    },
}

impl std::fmt::Display for TransformStep {
    /// The step's short name: `create:D`, `commit`, `relabel-primary`, `relabel:D`, `remove:S`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransformStep::CreateReplica { replica } => write!(f, "create:{replica}"),
            TransformStep::Commit => f.write_str("commit"),
            TransformStep::RelabelPrimary => f.write_str("relabel-primary"),
            TransformStep::RelabelReplica { replica } => write!(f, "relabel:{replica}"),
            TransformStep::RemoveReplica { replica } => write!(f, "remove:{replica}"),
        }
    }
}

/// What a transform does, computed from SRC and DST alone by [`plan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Replicas in SRC.
    pub src_count: usize,
    /// Replicas in DST.
    pub dst_count: usize,
    /// Kept replicas as (SRC index, DST index), the primary (0, 0) first.
    pub kept: Vec<(usize, usize)>,
    /// Added replicas (DST indices) with their descriptions.
    pub added: Vec<(usize, String)>,
    /// Removed replicas (SRC indices) with their descriptions.
    pub removed: Vec<(usize, String)>,
}

impl Plan {
    /// True when DST describes the same replicas as SRC.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }

    /// The steps a transform from scratch runs, in order.
    pub fn steps(&self) -> Vec<TransformStep> {
        if self.is_empty() {
            return Vec::new();
        }
        let mut v: Vec<TransformStep> = self
            .added
            .iter()
            .map(|(d, _)| TransformStep::CreateReplica { replica: *d })
            .collect();
        v.push(TransformStep::Commit);
        v.push(TransformStep::RelabelPrimary);
        for &(_, d) in self.kept.iter().skip(1) {
            v.push(TransformStep::RelabelReplica { replica: d });
        }
        for (s, _) in &self.removed {
            v.push(TransformStep::RemoveReplica { replica: *s });
        }
        v
    }
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "replicas: {} -> {}", self.src_count, self.dst_count)?;
        for (d, desc) in &self.added {
            writeln!(f, "add replica {d}: {desc}")?;
        }
        for (s, desc) in &self.removed {
            writeln!(f, "remove replica {s}: {desc}")?;
        }
        for (s, d) in &self.kept {
            if s == d {
                writeln!(f, "keep replica {s}")?;
            } else {
                writeln!(f, "keep replica {s} as replica {d}")?;
            }
        }
        Ok(())
    }
}

fn same_replica(a: &SetReplica, b: &SetReplica) -> bool {
    match (a, b) {
        (SetReplica::Local(x), SetReplica::Local(y)) => {
            x.parts.len() == y.parts.len()
                && x.parts.iter().zip(&y.parts).all(|(p, q)| {
                    p.path == q.path && p.size == q.size && p.is_directory == q.is_directory
                })
        }
        (SetReplica::Remote(x), SetReplica::Remote(y)) => {
            x.user == y.user && x.host == y.host && x.port == y.port && x.descriptor == y.descriptor
        }
        _ => false,
    }
}

fn bad(msg: String) -> Error {
    Error::Poolset(format!("transform: {msg}"))
}

/// Check that DST differs from SRC only by added or removed replicas other than the primary
/// (see the module note) and say what changes.
pub fn plan(src: &PoolSet, dst: &PoolSet) -> Result<Plan, Error> {
    if src.options != dst.options {
        return Err(bad(format!(
            "SRC and DST have different OPTION lines (SRC {:?}, DST {:?}); a transform only adds \
             or removes replicas",
            src.options, dst.options
        )));
    }
    if src.options.no_hdrs {
        return Err(bad(
            "OPTION NOHDRS: the pool has no headers to record its replicas in".into(),
        ));
    }
    match (src.replicas.first(), dst.replicas.first()) {
        (Some(a @ SetReplica::Local(_)), Some(b)) if same_replica(a, b) => {}
        _ => {
            return Err(bad(format!(
                "the primary replica must be the same in SRC and DST (SRC: {}, DST: {})",
                describe_replica(src, 0),
                describe_replica(dst, 0)
            )))
        }
    }
    let mut kept = vec![(0, 0)];
    let mut added = Vec::new();
    let mut used = vec![false; src.replicas.len()];
    used[0] = true;
    for (d, rd) in dst.replicas.iter().enumerate().skip(1) {
        match (1..src.replicas.len()).find(|&s| !used[s] && same_replica(&src.replicas[s], rd)) {
            Some(s) => {
                used[s] = true;
                kept.push((s, d));
            }
            None => added.push((d, describe_replica(dst, d))),
        }
    }
    let removed: Vec<(usize, String)> = (1..src.replicas.len())
        .filter(|&s| !used[s])
        .map(|s| (s, describe_replica(src, s)))
        .collect();
    if !added.is_empty() && !removed.is_empty() {
        return Err(bad(format!(
            "DST adds replica(s) {:?} and removes replica(s) {:?} of SRC: do it in two \
             transforms (first add, then remove), so the replica count tells which side every \
             header belongs to",
            added.iter().map(|a| a.0).collect::<Vec<_>>(),
            removed.iter().map(|r| r.0).collect::<Vec<_>>()
        )));
    }
    // A part file of an added replica must not be a part of any SRC replica.
    let src_paths: Vec<&Path> = src
        .replicas
        .iter()
        .filter_map(|r| match r {
            SetReplica::Local(l) => Some(l.parts.iter().map(|p| p.path.as_path())),
            SetReplica::Remote(_) => None,
        })
        .flatten()
        .collect();
    let mut new_paths: Vec<&Path> = Vec::new();
    for (d, _) in &added {
        if let SetReplica::Local(l) = &dst.replicas[*d] {
            for p in &l.parts {
                if p.is_directory {
                    return Err(Error::DirectoryPart {
                        path: p.path.clone(),
                    });
                }
                if src_paths.contains(&p.path.as_path()) || new_paths.contains(&p.path.as_path()) {
                    return Err(bad(format!(
                        "{}: part of added replica {d} is already a part of another replica",
                        p.path.display()
                    )));
                }
                new_paths.push(&p.path);
            }
        }
    }
    Ok(Plan {
        src_count: src.replicas.len(),
        dst_count: dst.replicas.len(),
        kept,
        added,
        removed,
    })
}

/// Removes a remote replica (see [`TransformOptions::remove_remote`]).
pub type RemoveRemote<'a> = &'a dyn Fn(&RemoteReplica) -> Result<(), String>;
/// Called before each step (see [`TransformOptions::before_step`]).
pub type StepHook<'a> = &'a dyn Fn(&TransformStep) -> Result<(), String>;

/// Options of [`transform`].
#[derive(Clone, Copy, Default)]
pub struct TransformOptions<'a> {
    /// Open options (flusher, remote connector); the failure policy is ignored (fail-stop).
    pub open: OpenOptions<'a>,
    /// Removes a removed remote replica (e.g. `rpmem::remove`); without it, removed remote
    /// replicas are left in place and reported.
    pub remove_remote: Option<RemoveRemote<'a>>,
    /// Called before every step (tests inject interruptions here); an `Err` stops the transform
    /// before the step, as a crash at that point would.
    pub before_step: Option<StepHook<'a>>,
}

/// What [`transform`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransformReport {
    /// The plan.
    pub plan: Plan,
    /// True when an interrupted transform (primary already committed to DST) was finished.
    pub resumed: bool,
    /// One line per step done.
    pub done: Vec<String>,
}

/// 128-bit FNV-1a: a stable hash (the same in every build), for derived UUIDs.
fn fnv128(data: &[u8]) -> [u8; 16] {
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for &b in data {
        h ^= b as u128;
        h = h.wrapping_mul(PRIME);
    }
    h.to_le_bytes()
}

/// The part-0 UUID of added replica `d` of a DST of `n` replicas (see the module note).
pub(crate) fn derived_uuid(poolset_uuid: [u8; 16], n: usize, d: usize, desc: &str) -> Uuid {
    let mut m = Vec::new();
    m.extend_from_slice(b"pool transform v1");
    m.extend_from_slice(&poolset_uuid);
    m.extend_from_slice(&(n as u64).to_le_bytes());
    m.extend_from_slice(&(d as u64).to_le_bytes());
    m.extend_from_slice(desc.as_bytes());
    let mut b = fnv128(&m);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Uuid(b)
}

/// The derived part-0 UUID of replica `d` of `set` (by its place and description): what a
/// replica whose UUID nobody knows gets, here and in [`crate::resync()`], so that any rerun
/// computes the same ring.
pub(crate) fn derived_part0(poolset_uuid: [u8; 16], set: &PoolSet, d: usize) -> Uuid {
    derived_uuid(
        poolset_uuid,
        set.replicas.len(),
        d,
        &describe_replica(set, d),
    )
}

/// Read the header in force of a part (read-only).
fn read_hdr(path: &Path) -> Result<PartHeader, Error> {
    let mut buf = vec![0u8; header::HEADER_REGION_BYTES];
    File::open(path)
        .and_then(|f| f.read_exact_at(&mut buf, 0))
        .map_err(io_err(path, "read header"))?;
    header::decode_region(&buf)
        .map(|r| r.header)
        .map_err(|error| Error::Header {
            path: path.to_path_buf(),
            error,
        })
}

/// Whether the file at `path` is a part of the pool set `poolset_uuid` (its header says so).
fn is_ours(path: &Path, poolset_uuid: [u8; 16]) -> bool {
    read_hdr(path).is_ok_and(|h| h.poolset_uuid == poolset_uuid)
}

fn tmp_path(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".transform");
    PathBuf::from(s)
}

/// DST's identity for one part header: `h` with the replica index, count and ring set (and,
/// for part 0, the stale bitmap `stale`).
fn relabeled(
    h: &PartHeader,
    d: usize,
    n: usize,
    ring: &[Uuid],
    stale: Option<&[u8; 32]>,
) -> PartHeader {
    let mut x = h.clone();
    x.replica_index.set(d as u32);
    x.replica_count.set(n as u32);
    x.prev_repl_uuid = ring[(d + n - 1) % n].0;
    x.next_repl_uuid = ring[(d + 1) % n].0;
    if let Some(bits) = stale {
        x.stale_replicas = *bits;
        let any = bits.iter().any(|&b| b != 0);
        let flags = x.incompat.get() & !header::INCOMPAT_STALE;
        x.incompat.set(if any {
            flags | header::INCOMPAT_STALE
        } else {
            flags
        });
    }
    x
}

/// Rewrite one part's header as `want(current)` unless it already says that (crash-safe
/// double-slot update, then fsync). Returns whether it was written.
fn rewrite_part(part: &LocalPart, want: impl Fn(&PartHeader) -> PartHeader) -> Result<bool, Error> {
    let Some(region) = part.hdr.as_ref() else {
        return Ok(false);
    };
    let read = header::read_region(region, 0).map_err(|error| Error::Header {
        path: part.path.clone(),
        error,
    })?;
    let mut w = want(&read.header);
    w.seq = read.header.seq;
    w.seal();
    if w == read.header && read.stale.is_empty() {
        return Ok(false);
    }
    // The slot in force has the highest valid seq, so seq+1 keeps write_region's precondition.
    header::write_region(region, 0, &w, read.header.seq.get() + 1)?;
    // Durable in the file system too before the next step relies on it.
    part.lock_file
        .sync_all()
        .map_err(io_err(&part.path, "fsync"))?;
    Ok(true)
}

/// Write fresh headers (DST identity) into every part of the new local replica `l` (index `d`
/// of `n`), its part-0 UUID `ring[d]`, from the primary's part-0 header `ph`.
fn write_new_headers(
    l: &LocalReplica,
    set: &PoolSet,
    d: usize,
    ring: &[Uuid],
    ph: &PartHeader,
    pool_size: u64,
) -> Result<(), Error> {
    let n = ring.len();
    let hdr_parts: Vec<usize> = (0..l.parts.len()).filter(|&i| has_header(set, i)).collect();
    let mut uuids = Vec::new();
    for &i in &hdr_parts {
        uuids.push(if i == 0 {
            ring[d].0
        } else {
            Uuid::new_v4()
                .map_err(io_err(Path::new("/dev/urandom"), "getrandom"))?
                .0
        });
    }
    let np = hdr_parts.len();
    for (k, &i) in hdr_parts.iter().enumerate() {
        let part = &l.parts[i];
        let Some(region) = part.hdr.as_ref() else {
            continue;
        };
        let mut h = PartHeader::zeroed();
        h.signature = header::SIGNATURE;
        h.major.set(header::MAJOR);
        h.incompat
            .set(ph.incompat.get() & header::INCOMPAT_SINGLEHDR);
        h.poolset_uuid = ph.poolset_uuid;
        h.uuid = uuids[k];
        h.prev_part_uuid = uuids[(k + np - 1) % np];
        h.next_part_uuid = uuids[(k + 1) % np];
        h.crtime = ph.crtime;
        h.set_arch();
        h.layout = ph.layout;
        h.part_size.set(part.size);
        h.pool_size.set(pool_size);
        h.part_index.set(i as u32);
        h.part_count.set(l.parts.len() as u32);
        let h = relabeled(&h, d, n, ring, None);
        // New files under temporary names: both slots are zero, so seq 1 is above them.
        header::write_region(region, 0, &h, 1)?;
        part.lock_file
            .sync_all()
            .map_err(io_err(&part.path, "fsync"))?;
    }
    Ok(())
}

fn step(opts: &TransformOptions<'_>, s: TransformStep, done: &[String]) -> Result<(), Error> {
    if let Some(hook) = opts.before_step {
        hook(&s).map_err(|why| {
            bad(format!(
                "interrupted before step {s} ({why}); steps done: {}; run the same transform \
                 again to finish it",
                if done.is_empty() {
                    "none".to_string()
                } else {
                    done.join("; ")
                }
            ))
        })?;
    }
    Ok(())
}

/// Transform the pool of `src` into `dst` (see the module note for the steps and what an
/// interruption leaves). When the primary already carries DST's replica count, an interrupted
/// transform is finished instead. `progress` is called while data is copied to added replicas.
pub fn transform(
    src: &PoolSet,
    dst: &PoolSet,
    layout: Option<&str>,
    opts: TransformOptions<'_>,
    progress: &mut dyn FnMut(&ResyncProgress),
) -> Result<TransformReport, Error> {
    let plan = plan(src, dst)?;
    let mut report = TransformReport {
        plan: plan.clone(),
        resumed: false,
        done: Vec::new(),
    };
    if plan.is_empty() {
        return Ok(report);
    }
    let prim_path = match &src.replicas[0] {
        SetReplica::Local(l) => l.parts[0].path.clone(),
        SetReplica::Remote(_) => unreachable!("plan checked the primary is local"),
    };
    let count = read_hdr(&prim_path)?.replica_count.get() as usize;
    if count == plan.src_count {
        fresh(src, dst, layout, opts, progress, &plan, &mut report)?;
    } else if count == plan.dst_count {
        report.resumed = true;
        resume(src, dst, opts, &plan, &mut report)?;
    } else {
        return Err(bad(format!(
            "{}: the primary's header says {count} replicas; SRC has {} and DST {}: this pool \
             is neither",
            prim_path.display(),
            plan.src_count,
            plan.dst_count
        )));
    }
    Ok(report)
}

/// A transform from SRC (nothing committed yet).
fn fresh(
    src: &PoolSet,
    dst: &PoolSet,
    layout: Option<&str>,
    opts: TransformOptions<'_>,
    progress: &mut dyn FnMut(&ResyncProgress),
    plan: &Plan,
    report: &mut TransformReport,
) -> Result<(), Error> {
    let mut o = opts.open;
    o.failure_policy = FailurePolicy::FailStop;
    let mut pool = Pool::open(src, layout, o).map_err(|e| {
        bad(format!(
            "SRC does not open cleanly, so it is not transformed (repair or resync it first): {e}"
        ))
    })?;
    let poolset_uuid = pool
        .ring
        .poolset_uuid
        .ok_or_else(|| bad("the pool has no headers".into()))?
        .0;
    let n = plan.dst_count;
    let mut ring = vec![Uuid::default(); n];
    for &(s, d) in &plan.kept {
        ring[d] = pool.ring.part0[s].unwrap_or_else(|| derived_part0(poolset_uuid, dst, d));
    }
    for (d, desc) in &plan.added {
        ring[*d] = derived_uuid(poolset_uuid, n, *d, desc);
    }
    // Remote sessions opened with SRC's attributes are closed; kept ones reconnect with DST's.
    pool.others.retain(|o| matches!(o.rep, Rep::Local(_)));
    let ph = pool
        .header()
        .cloned()
        .ok_or_else(|| bad("the primary has no header".into()))?;
    let pool_size = pool.len as u64;
    for (d, _) in &plan.added {
        step(
            &opts,
            TransformStep::CreateReplica { replica: *d },
            &report.done,
        )?;
        match &dst.replicas[*d] {
            SetReplica::Local(l) => {
                create_local(&pool, dst, *d, &l.parts, &ring, &ph, opts, progress)?
            }
            SetReplica::Remote(rr) => {
                let spec = dst_spec(&pool, *d, &ring, poolset_uuid, true);
                let rep = connect_or_reuse(&opts, rr, spec, *d)?;
                if (rep.len() as u64) < pool_size {
                    return Err(Error::ReplicaTooSmall {
                        replica: *d,
                        size: rep.len() as u64,
                        pool_size,
                    });
                }
                copy_data(&pool, *d, rep.as_ref(), ResyncMode::Full, progress)?;
            }
        }
        report.done.push(format!(
            "replica {d} ({}) created and filled from the primary",
            describe_replica(dst, *d)
        ));
    }
    let locals: Vec<(usize, &LocalReplica)> = pool
        .others
        .iter()
        .filter_map(|o| match &o.rep {
            Rep::Local(l) => Some((o.index, l)),
            Rep::Remote(_) => None,
        })
        .collect();
    let kept_locals: Vec<(usize, &LocalReplica)> = plan
        .kept
        .iter()
        .skip(1)
        .filter_map(|&(s, d)| locals.iter().find(|(i, _)| *i == s).map(|(_, l)| (d, *l)))
        .collect();
    relabel_all(
        dst,
        &pool.primary,
        &kept_locals,
        &ring,
        poolset_uuid,
        pool_size,
        opts,
        plan,
        report,
    )?;
    drop(locals);
    drop(kept_locals);
    drop(pool);
    remove_all(src, opts, plan, report)
}

/// The connector spec of DST replica `d` (create or relabel).
fn dst_spec(
    pool: &Pool,
    d: usize,
    ring: &[Uuid],
    poolset_uuid: [u8; 16],
    create: bool,
) -> RemoteSpec {
    primary_spec(
        &pool.primary,
        pool.len as u64,
        d,
        ring,
        poolset_uuid,
        create,
    )
}

fn primary_spec(
    primary: &LocalReplica,
    pool_size: u64,
    d: usize,
    ring: &[Uuid],
    poolset_uuid: [u8; 16],
    create: bool,
) -> RemoteSpec {
    let n = ring.len();
    RemoteSpec {
        replica: d,
        replica_count: n,
        pool_size,
        create,
        poolset_uuid: Some(Uuid(poolset_uuid)),
        uuid: Some(ring[d]),
        prev_repl_uuid: Some(ring[(d + n - 1) % n]),
        next_repl_uuid: Some(ring[(d + 1) % n]),
        primary: Some(PrimaryMemory {
            ptr: primary.data.as_ptr(),
            len: pool_size as usize,
        }),
        resync: !create,
    }
}

/// Connect remote replica `d` with `spec`: create it; if that fails (it exists, e.g. from an
/// interrupted run), open it for resync (the connector rewrites attributes naming this pool set,
/// refuses another pool set's).
fn connect_or_reuse(
    opts: &TransformOptions<'_>,
    rr: &RemoteReplica,
    spec: RemoteSpec,
    d: usize,
) -> Result<Box<dyn crate::Replica>, Error> {
    let Some(connect) = opts.open.remote else {
        return Err(Error::RemoteReplica {
            replica: d,
            node: crate::pool::node_name(rr),
        });
    };
    match connect(rr, &spec) {
        Ok(r) => Ok(r),
        Err(first) if spec.create => {
            let mut again = spec.clone();
            again.create = false;
            again.resync = true;
            connect(rr, &again).map_err(|second| Error::Remote {
                replica: d,
                message: format!(
                    "transform: creating the remote pool failed ({first}), and so did opening an \
                     existing one ({second})"
                ),
            })
        }
        Err(message) => Err(Error::Remote {
            replica: d,
            message,
        }),
    }
}

#[allow(clippy::too_many_arguments)]
fn create_local(
    pool: &Pool,
    dst: &PoolSet,
    d: usize,
    parts: &[poolset::Part],
    ring: &[Uuid],
    ph: &PartHeader,
    opts: TransformOptions<'_>,
    progress: &mut dyn FnMut(&ResyncProgress),
) -> Result<(), Error> {
    let poolset_uuid = ph.poolset_uuid;
    let mut tmp_parts = Vec::new();
    for p in parts {
        // Leftovers of an interrupted run: temporary files (ours by name) and complete parts
        // (ours by their header) are removed; anything else is not ours and is kept.
        let tmp = tmp_path(&p.path);
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&tmp, "remove leftover")(e)),
        }
        if std::fs::symlink_metadata(&p.path).is_ok() {
            if !is_ours(&p.path, poolset_uuid) {
                return Err(Error::Exists {
                    path: p.path.clone(),
                });
            }
            std::fs::remove_file(&p.path).map_err(io_err(&p.path, "remove leftover"))?;
        }
        tmp_parts.push(poolset::Part {
            path: tmp,
            ..p.clone()
        });
    }
    let mut created = Vec::new();
    let res = (|| {
        let mut l = map_replica(dst, &tmp_parts, Some(&mut created), opts.open)?;
        l.index = d;
        if l.data.len() < pool.len {
            return Err(Error::ReplicaTooSmall {
                replica: d,
                size: l.data.len() as u64,
                pool_size: pool.len as u64,
            });
        }
        copy_data(pool, d, &l, ResyncMode::Full, progress)?;
        write_new_headers(&l, dst, d, ring, ph, pool.len as u64)?;
        Ok(l)
    })();
    let l = match res {
        Ok(l) => l,
        Err(e) => {
            for p in &created {
                let _ = std::fs::remove_file(p);
            }
            return Err(e);
        }
    };
    // Data and headers are durable under the temporary names; now the final names.
    for (t, p) in tmp_parts.iter().zip(parts) {
        std::fs::rename(&t.path, &p.path).map_err(io_err(&p.path, "rename"))?;
    }
    sync_parent_dirs(parts.iter().map(|p| p.path.as_path()))?;
    drop(l);
    Ok(())
}

/// Steps `commit`, `relabel-primary` and `relabel:D`: every header of the primary and of the kept
/// local replicas, and the kept remote replicas' attributes, rewritten with DST's identity.
#[allow(clippy::too_many_arguments)]
fn relabel_all(
    dst: &PoolSet,
    primary: &LocalReplica,
    kept_locals: &[(usize, &LocalReplica)],
    ring: &[Uuid],
    poolset_uuid: [u8; 16],
    pool_size: u64,
    opts: TransformOptions<'_>,
    plan: &Plan,
    report: &mut TransformReport,
) -> Result<(), Error> {
    let n = plan.dst_count;
    // The stale bitmap of DST: whatever the primary holds once it is DST (a fresh transform
    // starts from a pool without stale replicas, so it is empty then).
    let cur = header::read_region(
        primary.parts[0]
            .hdr
            .as_ref()
            .ok_or_else(|| bad("the primary has no header".into()))?,
        0,
    )
    .map_err(|error| Error::Header {
        path: primary.parts[0].path.clone(),
        error,
    })?
    .header;
    let bits = if cur.replica_count.get() as usize == n {
        cur.stale_replicas
    } else {
        [0u8; 32]
    };
    step(&opts, TransformStep::Commit, &report.done)?;
    rewrite_part(&primary.parts[0], |h| relabeled(h, 0, n, ring, Some(&bits)))?;
    report
        .done
        .push("committed: the primary's part-0 header now describes DST".into());
    step(&opts, TransformStep::RelabelPrimary, &report.done)?;
    for part in primary.parts.iter().skip(1) {
        rewrite_part(part, |h| relabeled(h, 0, n, ring, None))?;
    }
    for &(s, d) in plan.kept.iter().skip(1) {
        step(
            &opts,
            TransformStep::RelabelReplica { replica: d },
            &report.done,
        )?;
        match &dst.replicas[d] {
            SetReplica::Local(_) => {
                let l = kept_locals
                    .iter()
                    .find(|(x, _)| *x == d)
                    .map(|(_, l)| *l)
                    .ok_or_else(|| bad(format!("kept replica {d} is not mapped")))?;
                for (i, part) in l.parts.iter().enumerate() {
                    let bits = (i == 0).then_some(&bits);
                    rewrite_part(part, |h| relabeled(h, d, n, ring, bits))?;
                }
            }
            SetReplica::Remote(rr) => {
                let spec = primary_spec(primary, pool_size, d, ring, poolset_uuid, false);
                let rep = connect_or_reuse(&opts, rr, spec, d)?;
                drop(rep);
            }
        }
        report.done.push(if s == d {
            format!("replica {d}: headers relabelled")
        } else {
            format!("replica {s} of SRC relabelled as replica {d}")
        });
    }
    Ok(())
}

/// Step `remove:S` for every removed replica.
fn remove_all(
    src: &PoolSet,
    opts: TransformOptions<'_>,
    plan: &Plan,
    report: &mut TransformReport,
) -> Result<(), Error> {
    for (s, desc) in &plan.removed {
        step(
            &opts,
            TransformStep::RemoveReplica { replica: *s },
            &report.done,
        )?;
        match &src.replicas[*s] {
            SetReplica::Local(l) => {
                for p in &l.parts {
                    match std::fs::remove_file(&p.path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io_err(&p.path, "remove")(e)),
                    }
                }
                sync_parent_dirs(l.parts.iter().map(|p| p.path.as_path()))?;
                report.done.push(format!("replica {s} ({desc}) removed"));
            }
            SetReplica::Remote(rr) => match opts.remove_remote {
                Some(rm) => {
                    rm(rr).map_err(|message| Error::Remote {
                        replica: *s,
                        message: format!("transform: removing it: {message}"),
                    })?;
                    report.done.push(format!("replica {s} ({desc}) removed"));
                }
                None => report.done.push(format!(
                    "replica {s} ({desc}) is no longer part of the pool; its remote pool was left \
                     in place (remove it on its node)"
                )),
            },
        }
    }
    Ok(())
}

/// Finish a transform whose primary already says DST (see the module note).
fn resume(
    src: &PoolSet,
    dst: &PoolSet,
    opts: TransformOptions<'_>,
    plan: &Plan,
    report: &mut TransformReport,
) -> Result<(), Error> {
    let n = plan.dst_count;
    let SetReplica::Local(pl) = &dst.replicas[0] else {
        unreachable!("plan checked the primary is local")
    };
    let mut primary = map_replica(dst, &pl.parts, None, opts.open)?;
    primary.index = 0;
    let h0 = header::read_region(
        primary.parts[0]
            .hdr
            .as_ref()
            .ok_or_else(|| bad("the primary has no header".into()))?,
        0,
    )
    .map_err(|error| Error::Header {
        path: primary.parts[0].path.clone(),
        error,
    })?
    .header;
    let poolset_uuid = h0.poolset_uuid;
    let pool_size = h0.pool_size.get();
    let mut kept_locals = Vec::new();
    for &(_, d) in plan.kept.iter().skip(1) {
        if let SetReplica::Local(l) = &dst.replicas[d] {
            let mut m = map_replica(dst, &l.parts, None, opts.open)?;
            m.index = d;
            kept_locals.push((d, m));
        }
    }
    // Every local part-0 header, labelled SRC or DST, with its links interpreted accordingly.
    let src_of = |d: usize| plan.kept.iter().find(|k| k.1 == d).map(|k| k.0);
    let dst_of = |s: usize| plan.kept.iter().find(|k| k.0 == s).map(|k| k.1);
    let mut known: Vec<Option<Uuid>> = vec![None; n];
    let mut headers: Vec<(usize, PartHeader)> = vec![(0, h0.clone())];
    for (d, l) in &kept_locals {
        let part = &l.parts[0];
        let region = part.hdr.as_ref().ok_or_else(|| bad("no header".into()))?;
        let h = header::read_region(region, 0)
            .map_err(|error| Error::Header {
                path: part.path.clone(),
                error,
            })?
            .header;
        if h.poolset_uuid != poolset_uuid {
            return Err(Error::Mismatch {
                path: part.path.clone(),
                field: "poolset_uuid",
                expected: Uuid(poolset_uuid).to_string(),
                found: Uuid(h.poolset_uuid).to_string(),
            });
        }
        headers.push((*d, h));
    }
    for (d, h) in &headers {
        known[*d] = Some(Uuid(h.uuid));
    }
    for (d, desc) in &plan.added {
        known[*d] = Some(derived_uuid(poolset_uuid, n, *d, desc));
    }
    for (d, h) in &headers {
        let (idx, cnt) = (
            h.replica_index.get() as usize,
            h.replica_count.get() as usize,
        );
        let links = [
            (1usize, h.next_repl_uuid),
            (cnt.max(1) - 1, h.prev_repl_uuid),
        ];
        for (step_by, link) in links {
            let nb = if cnt == n && idx == *d {
                Some((idx + step_by) % n)
            } else if cnt == plan.src_count && Some(idx) == src_of(*d) {
                dst_of((idx + step_by) % cnt)
            } else {
                return Err(bad(format!(
                    "replica {d}: its header says replica {idx} of {cnt}, neither SRC's nor DST's \
                     place for it"
                )));
            };
            if let Some(nb) = nb {
                known[nb].get_or_insert(Uuid(link));
            }
        }
    }
    let ring: Vec<Uuid> = known
        .iter()
        .enumerate()
        .map(|(d, u)| u.unwrap_or_else(|| derived_part0(poolset_uuid, dst, d)))
        .collect();
    let refs: Vec<(usize, &LocalReplica)> = kept_locals.iter().map(|(d, l)| (*d, l)).collect();
    relabel_all(
        dst,
        &primary,
        &refs,
        &ring,
        poolset_uuid,
        pool_size,
        opts,
        plan,
        report,
    )?;
    drop(refs);
    drop(kept_locals);
    drop(primary);
    remove_all(src, opts, plan, report)
}
