//! Resync: bring replicas marked stale (or missing) back from the primary.
//!
//! [`resync`] opens the pool in degraded mode (a replica that cannot be opened is marked stale
//! first), then for every stale replica: recreates what is missing (local part files, the
//! remote pool through the connector), copies the data from the primary — everything
//! ([`ResyncMode::Full`]) or only the 1 MiB chunks that differ ([`ResyncMode::Compare`]) —,
//! makes it durable, writes the replica's headers, and only then clears the stale mark in the
//! primary's (and the healthy local replicas') part-0 header. An interrupted resync therefore
//! leaves the mark set, and running it again starts over: it is safe to interrupt and restart.
//!
//! # Remote replicas: open, else rebuild
//! A stale remote replica is first connected with a [`RemoteSpec`](crate::RemoteSpec) of
//! `create: false, resync: true` (open; attributes of this pool set rewritten, nothing
//! removed). Only when that fails is it connected with `create: true, resync: true`, the
//! **rebuild** request: the connector creates the remote pool, and where a pool exists that
//! the target cannot open (truncated part, damaged header) or that belongs to another pool
//! set, removes it and creates it anew (rpmem's connector; a mock may do less). Resyncing a
//! replica that is marked stale is the operator's consent to overwrite its place, since the
//! whole pool is copied into it next; the report says so in `repaired` (why the open failed,
//! and that the pool was created anew). Healthy remote replicas are only ever reconnected with
//! `create: false`, so nothing of theirs is removed.
//!
//! # The replica ring
//! Before anything is written, the ring (the part-0 UUID of every replica, which the
//! `prev_repl_uuid`/`next_repl_uuid` links of every header and remote attribute block name) is
//! completed. Open knows a replica's UUID from its header, or from the link of a healthy local
//! neighbour; a replica whose own header and both neighbours' are out of reach (several
//! adjacent stale replicas, a local replica between two remote ones) gets the derived UUID of
//! [`crate::transform()`] (pool set UUID, replica count, index, description): deterministic, so
//! a rerun after an interruption computes the same ring, and a replica restored in an earlier
//! run (whose header now holds it) agrees with it. Every restored replica's links (and a
//! restored remote replica's attributes) come from that complete ring. Healthy replicas never
//! need a local header link changed (open checked each against the ring the links filled),
//! except a nil link, which only an earlier build wrote: it is rewritten (double-slot) before
//! any mark is cleared. A healthy **remote** replica next to a derived place was not checked
//! there at open (its connector got `None`), so it is reconnected with the complete ring and
//! its attributes rewritten (rpmemd: double-slot) — also before any mark is cleared. Until the
//! marks are cleared the derived places stay stale, so an interruption leaves them unchecked
//! and the next run derives them again. (One window remains, only for a pool an earlier build
//! left with a nil link next to a remote replica: an interruption between rewriting that link
//! and the remote's attributes makes the next degraded open mark the remote stale, and the
//! next resync restores it.)
//!
//! There is no dirty map: the pool does not record which ranges a stale replica missed, so
//! "incremental" means comparing (reading the whole replica, writing only what differs), which
//! saves writes, not reads. The primary is the source; it is never stale (its failure fails the
//! pool).

use crate::header::{self, PartHeader, Uuid};
use crate::persist::PersistError;
use crate::pool::{
    allocate, describe_replica, has_header, io_err, map_replica, node_name, now_secs,
    sync_parent_dirs, Error, FailurePolicy, LocalReplica, OpenOptions, Other, Pool, Rep, Replica,
};
use crate::region::Persister;
use poolset::PoolSet;
use std::fs::OpenOptions as FsOpenOptions;
use std::io;
use std::path::PathBuf;

/// How a stale replica's data is brought back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResyncMode {
    /// Copy the whole pool from the primary.
    #[default]
    Full,
    /// Read the replica, compare it with the primary chunk by chunk (1 MiB), copy only the
    /// chunks' differing ranges. Fewer writes, as many reads (there is no dirty map).
    Compare,
}

/// Progress of one replica's resync, reported after each chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResyncProgress {
    /// Replica index.
    pub replica: usize,
    /// Pool bytes handled so far (copied or compared).
    pub done_bytes: u64,
    /// Pool bytes in all.
    pub total_bytes: u64,
}

/// What [`resync`] did for one replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResyncedReplica {
    /// Replica index.
    pub replica: usize,
    /// Where it is.
    pub description: String,
    /// Bytes written to it.
    pub copied_bytes: u64,
    /// Why it was stale.
    pub was: String,
}

/// The result of [`resync`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResyncReport {
    /// Replicas brought back, in index order.
    pub replicas: Vec<ResyncedReplica>,
    /// Repairs done by the open (header slots, differing ranges of healthy replicas).
    pub repaired: Vec<String>,
}

/// Bytes per copy/progress step.
const STEP_BYTES: usize = 4 << 20;

/// Bring every stale or missing replica of `set` back from the primary (see the module note).
/// `opts.remote` must be given when a remote replica is stale; `opts.failure_policy` is
/// ignored (the pool is opened degraded). Returns what was done; on error, replicas not yet
/// done stay marked stale.
pub fn resync(
    set: &PoolSet,
    layout: Option<&str>,
    opts: OpenOptions<'_>,
    mode: ResyncMode,
    progress: &mut dyn FnMut(&ResyncProgress),
) -> Result<ResyncReport, Error> {
    let mut o = opts;
    o.failure_policy = FailurePolicy::Degraded;
    let mut pool = Pool::open(set, layout, o)?;
    let mut report = ResyncReport {
        replicas: Vec::new(),
        repaired: pool.repaired().to_vec(),
    };
    let stale: Vec<(usize, String)> = pool
        .replica_health()
        .into_iter()
        .filter_map(|h| h.stale.map(|why| (h.replica, why)))
        .collect();
    // The ring is complete before any header or attribute is written (see the module note).
    // With nothing stale nothing is written, so nothing is derived either.
    let derived = if stale.is_empty() {
        Vec::new()
    } else {
        pool.ring.complete(set)
    };
    if !derived.is_empty() {
        let relinked = pool.relink_local_headers(set)?;
        report.repaired.extend(relinked);
        relink_healthy_remotes(&mut pool, set, opts, &derived, &mut report.repaired)?;
    }
    for (r, was) in stale {
        let copied_bytes = match &set.replicas[r] {
            poolset::Replica::Local(l) => {
                resync_local(&mut pool, set, r, &l.parts, o, mode, progress)?
            }
            poolset::Replica::Remote(rr) => {
                let Some(connect) = opts.remote else {
                    return Err(Error::RemoteReplica {
                        replica: r,
                        node: node_name(rr),
                    });
                };
                let n = set.replicas.len();
                let spec = pool.remote_spec(r, n, false, true);
                let rep = match connect(rr, &spec) {
                    Ok(rep) => rep,
                    Err(open_err) => {
                        // The rebuild request (see the module note): may remove an unusable
                        // pool, or another pool set's, at this replica's place.
                        let spec = pool.remote_spec(r, n, true, true);
                        let rep = connect(rr, &spec).map_err(|create_err| Error::Remote {
                            replica: r,
                            message: format!(
                                "resync: opening the remote pool failed ({open_err}), and so did \
                                 creating it ({create_err})"
                            ),
                        })?;
                        report.repaired.push(format!(
                            "replica {r} ({}): the remote pool could not be opened \
                             ({open_err}); created anew (a pool left there that could not be \
                             used, or that belonged to another pool set, was removed first)",
                            describe_replica(set, r)
                        ));
                        rep
                    }
                };
                if (rep.len() as u64) < pool.len as u64 {
                    return Err(Error::ReplicaTooSmall {
                        replica: r,
                        size: rep.len() as u64,
                        pool_size: pool.len as u64,
                    });
                }
                let copied = copy_data(&pool, r, rep.as_ref(), mode, progress)?;
                pool.clear_mark_and_attach(Other::new(r, Rep::Remote(rep)))?;
                copied
            }
        };
        report.replicas.push(ResyncedReplica {
            replica: r,
            description: describe_replica(set, r),
            copied_bytes,
            was,
        });
    }
    Ok(report)
}

/// Reconnect every healthy remote replica next to (or at) a ring place whose part-0 UUID was
/// just derived: open gave its connector `None` there, so its attributes were not checked
/// against it and may name another UUID (the lost replica's old one, which no header read by
/// this crate holds). The connector is given the complete ring as a resync spec, which makes
/// it rewrite attributes that name this pool set but disagree (rpmemd keeps them in a
/// double-slot area, so a torn update leaves the old ones). Its data is current (it was
/// healthy throughout) and is not copied. Called before any stale mark is cleared: an
/// interruption in between leaves the derived places stale, so the next open still gives
/// `None` there, and the next resync derives the same UUIDs.
fn relink_healthy_remotes(
    pool: &mut Pool,
    set: &PoolSet,
    opts: OpenOptions<'_>,
    derived: &[usize],
    repaired: &mut Vec<String>,
) -> Result<(), Error> {
    let n = set.replicas.len();
    let health = pool.replica_health();
    for (h, rep) in set.replicas.iter().enumerate() {
        let poolset::Replica::Remote(rr) = rep else {
            continue;
        };
        let places = [(h + n - 1) % n, h, (h + 1) % n];
        if health[h].stale.is_some() || !places.iter().any(|p| derived.contains(p)) {
            continue;
        }
        let Some(connect) = opts.remote else {
            // A healthy remote replica was connected at open, through this connector.
            return Err(Error::RemoteReplica {
                replica: h,
                node: node_name(rr),
            });
        };
        // The open session goes first: the target may refuse a second one to the same pool.
        pool.others.retain(|o| o.index != h);
        let spec = pool.remote_spec(h, n, false, true);
        let rep = connect(rr, &spec).map_err(|message| Error::Remote {
            replica: h,
            message: format!(
                "resync: reconnecting to store the completed replica ring in its attributes: \
                 {message}"
            ),
        })?;
        if (rep.len() as u64) < pool.len as u64 {
            return Err(Error::ReplicaTooSmall {
                replica: h,
                size: rep.len() as u64,
                pool_size: pool.len as u64,
            });
        }
        pool.attach(Other::new(h, Rep::Remote(rep)));
        repaired.push(format!(
            "replica {h} ({}): ring links checked and stored for derived place(s) {:?}",
            describe_replica(set, h),
            places
                .iter()
                .filter(|p| derived.contains(p))
                .collect::<Vec<_>>()
        ));
    }
    Ok(())
}

/// Copy the pool's data from the primary to `rep` (durable on return).
pub(crate) fn copy_data(
    pool: &Pool,
    r: usize,
    rep: &dyn Replica,
    mode: ResyncMode,
    progress: &mut dyn FnMut(&ResyncProgress),
) -> Result<u64, Error> {
    let total = pool.len;
    let wrap = |e: PersistError| Error::Persist(crate::pool::name_replica(r, e));
    let mut buf = vec![0u8; 64 << 10];
    let mut copied = 0u64;
    let mut off = 0usize;
    progress(&ResyncProgress {
        replica: r,
        done_bytes: 0,
        total_bytes: total as u64,
    });
    while off < total {
        let n = (total - off).min(STEP_BYTES);
        match mode {
            ResyncMode::Full => {
                pool.copy_from_primary(rep, off, n, &mut buf)
                    .map_err(wrap)?;
                copied += n as u64;
            }
            ResyncMode::Compare => {
                let mut diffs = Vec::new();
                pool.diff_range(r, rep, off, off + n, &mut diffs)
                    .map_err(wrap)?;
                for d in diffs {
                    pool.copy_from_primary(rep, d.offset as usize, d.len as usize, &mut buf)
                        .map_err(wrap)?;
                    copied += d.len;
                }
            }
        }
        // Each step is durable before it is reported.
        rep.drain().map_err(wrap)?;
        off += n;
        progress(&ResyncProgress {
            replica: r,
            done_bytes: off as u64,
            total_bytes: total as u64,
        });
    }
    Ok(copied)
}

/// Recreate a stale local replica's part files where missing or of the wrong size, copy the
/// data, write its headers, then clear its mark. Returns the bytes copied.
fn resync_local(
    pool: &mut Pool,
    set: &PoolSet,
    r: usize,
    parts: &[poolset::Part],
    opts: OpenOptions<'_>,
    mode: ResyncMode,
    progress: &mut dyn FnMut(&ResyncProgress),
) -> Result<u64, Error> {
    let mut created: Vec<PathBuf> = Vec::new();
    for p in parts {
        if p.is_directory {
            return Err(Error::DirectoryPart {
                path: p.path.clone(),
            });
        }
        match std::fs::symlink_metadata(&p.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let f = FsOpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&p.path)
                    .map_err(io_err(&p.path, "create"))?;
                created.push(p.path.clone());
                allocate(&f, &p.path, p.size)?;
            }
            Err(e) => return Err(io_err(&p.path, "stat")(e)),
            Ok(m) if !m.is_file() => {
                return Err(Error::Io {
                    path: p.path.clone(),
                    op: "resync",
                    source: io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "not a regular file; remove it or fix the pool set",
                    ),
                })
            }
            Ok(m) if m.len() != p.size => {
                // The part belongs to this (stale) replica: give it the size the pool set says.
                let f = FsOpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&p.path)
                    .map_err(io_err(&p.path, "open"))?;
                f.set_len(p.size).map_err(io_err(&p.path, "truncate"))?;
                allocate(&f, &p.path, p.size)?;
            }
            Ok(_) => {}
        }
    }
    sync_parent_dirs(created.iter().map(|p| p.as_path()))?;
    let mut l = map_replica(set, parts, None, opts)?;
    l.index = r;
    if l.len() < pool.len {
        return Err(Error::ReplicaTooSmall {
            replica: r,
            size: l.len() as u64,
            pool_size: pool.len as u64,
        });
    }
    let copied = copy_data(pool, r, &l, mode, progress)?;
    if !set.options.no_hdrs {
        write_replica_headers(pool, set, &l)?;
    }
    pool.clear_mark_and_attach(Other::new(r, Rep::Local(l)))?;
    Ok(copied)
}

/// Write fresh headers into every part of the restored replica `l` (its data is already
/// durable): the pool set's UUIDs and ring, new UUIDs for parts other than part 0, and the
/// stale bitmap the primary will have once `l` is cleared. Each region is written with a
/// sequence number above any valid slot in it, then fsynced.
fn write_replica_headers(pool: &Pool, set: &PoolSet, l: &LocalReplica) -> Result<(), Error> {
    let r = l.index;
    let nrep = set.replicas.len();
    let primary_hdr = pool.primary.parts[0]
        .hdr
        .as_ref()
        .map(|h| header::read_region(h, 0))
        .transpose()
        .map_err(|error| Error::Header {
            path: pool.primary.parts[0].path.clone(),
            error,
        })?
        .map(|read| read.header);
    let Some(ph) = primary_hdr else {
        return Ok(());
    };
    let new_uuid = || {
        Uuid::new_v4()
            .map(|u| u.0)
            .map_err(io_err(std::path::Path::new("/dev/urandom"), "getrandom"))
    };
    // The pool has headers (the primary's was read above), so `resync` completed the ring
    // before any header was written: every replica's place is known or derived.
    let ring: Vec<[u8; 16]> = pool
        .ring
        .part0
        .iter()
        .enumerate()
        .map(|(i, u)| match u {
            Some(u) if !u.is_nil() => u.0,
            _ => panic!("resync: replica {i}'s ring UUID unknown or nil after completing the ring"),
        })
        .collect();
    assert_eq!(ring.len(), nrep, "ring of another pool set");
    let hdr_parts: Vec<usize> = (0..l.parts.len()).filter(|&i| has_header(set, i)).collect();
    let mut uuids = Vec::new();
    for &i in &hdr_parts {
        uuids.push(if i == 0 { ring[r] } else { new_uuid()? });
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
        h.prev_repl_uuid = ring[(r + nrep - 1) % nrep];
        h.next_repl_uuid = ring[(r + 1) % nrep];
        h.crtime.set(if ph.crtime.get() != 0 {
            ph.crtime.get()
        } else {
            now_secs()
        });
        h.set_arch();
        h.layout = ph.layout;
        h.part_size.set(part.size);
        h.pool_size.set(pool.len as u64);
        h.part_index.set(i as u32);
        h.part_count.set(l.parts.len() as u32);
        h.replica_index.set(r as u32);
        h.replica_count.set(nrep as u32);
        if i == 0 {
            h.stale_replicas = ph.stale_replicas;
            h.incompat
                .set(h.incompat.get() | (ph.incompat.get() & header::INCOMPAT_STALE));
            h.set_replica_stale(r, false);
        }
        // Above every valid slot, so write_region's precondition holds and a torn write falls
        // back to a valid slot.
        let mut buf = vec![0u8; header::HEADER_REGION_BYTES];
        region.read(0, &mut buf);
        let seq = [0, header::HEADER_SLOT_BYTES]
            .iter()
            .filter_map(|&o| PartHeader::decode(&buf[o..]).ok())
            .map(|s| s.seq.get())
            .max()
            .unwrap_or(0)
            + 1;
        header::write_region(region, 0, &h, seq)?;
        // Data and header durable in the file system too (msync does not cover its metadata).
        part.lock_file
            .sync_all()
            .map_err(io_err(&part.path, "fsync"))?;
    }
    Ok(())
}
