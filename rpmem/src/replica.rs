//! Remote replicas of a `pool`: [`RpmemReplica`] implements [`pool::Replica`] over an
//! [`RpmemPool`], and [`Connector`] creates or opens it for `pool::OpenOptions::remote`.
//!
//! Data path: the connector registers the **primary's mapping** (`RemoteSpec::primary`) as the
//! rpmem pool memory, so a flush of the pool is an RMA write straight from the pool's own pages
//! (no copy), and a drain is one PERSIST per lane, sent by
//! [`drain_begin`](pool::Replica::drain_begin) and awaited by the pool after every replica's
//! drain was started — remote replicas answer in parallel. Each thread uses one lane (chosen
//! once per thread), so its flushes and drain meet on the same lane.
//!
//! Attributes: the pool's identity is pushed at create and checked at open through rpmem's
//! `PoolAttr` (docs/PROTOCOL.md, "Pool attributes of a remote replica"): a remote pool whose
//! attributes disagree with the pool set (another pool set, another place in the replica ring,
//! another size) is refused, naming the replica and the field.
//!
//! Resync (`RemoteSpec::resync`): an open rewrites attributes that name this pool set (or none)
//! but disagree otherwise, and never removes anything — resync also reconnects *healthy*
//! replicas this way, whose data it does not copy. Only resync's rebuild of a replica marked
//! stale (`create` **and** `resync`: `pool::resync` asks for it after the open of that replica
//! failed, and then copies the whole pool) may destroy what the target holds: when CREATE says
//! a pool exists there, it is opened to see what it is, and a pool rpmemd cannot open
//! ([`UNUSABLE_OPEN_STATUSES`]: truncated part, damaged header or attribute block) or one of
//! another pool set is removed (REMOVE, force) and created anew. Taking a pool of another pool
//! set is deliberate: the replica is stale in this pool set's metadata and the operator asked
//! to resync it, which is the consent to overwrite its place (the same place would receive a
//! full copy of the data anyway); resync reports that it rebuilt the replica and why. A normal
//! create or open never removes anything, and a busy pool, a refused path or a transport
//! failure never leads to a removal.
//!
//! Failures: the first failing operation makes the replica failed for good (a lane's state is
//! unknown after a timeout); every later operation returns the same typed error at once, and
//! the pool's failure policy decides (fail-stop error or stale mark).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use pool::header::{Uuid, MAJOR, SIGNATURE};
use pool::persist::PersistError;
use pool::{PendingDrain as PoolPendingDrain, RemoteSpec, Replica};
use poolset::RemoteReplica;

use rpmem_proto::Status;

use crate::{Error, Options, PoolAttr, PoolMemory, RemoveFlags, RpmemPool, Target};

/// Lanes a connector asks for by default.
pub const DEFAULT_LANES: u32 = 4;

/// Creates or opens remote replicas through rpmem; use [`Connector::as_fn`]'s closure (or
/// [`connector`]) as `pool::OpenOptions::remote`.
#[derive(Clone, Debug)]
pub struct Connector {
    /// How to reach rpmemd (transport, deadlines, provider).
    pub opts: Options,
    /// Lanes to ask for (rpmemd may grant fewer).
    pub nlanes: u32,
}

/// A connector closure owning `opts`, for `pool::OpenOptions::remote`:
/// `let c = rpmem::replica::connector(opts); OpenOptions { remote: Some(&c), .. }`.
pub fn connector(
    opts: Options,
) -> impl Fn(&RemoteReplica, &RemoteSpec) -> Result<Box<dyn Replica>, String> {
    let c = Connector::new(opts);
    move |rr, spec| c.connect(rr, spec)
}

impl Connector {
    /// A connector with [`DEFAULT_LANES`] lanes.
    pub fn new(opts: Options) -> Connector {
        Connector {
            opts,
            nlanes: DEFAULT_LANES,
        }
    }

    /// The connector as the closure `OpenOptions::remote` takes.
    pub fn as_fn(
        &self,
    ) -> impl Fn(&RemoteReplica, &RemoteSpec) -> Result<Box<dyn Replica>, String> + '_ {
        move |rr, spec| self.connect(rr, spec)
    }

    /// Create (`spec.create`) or open the remote replica `rr` and check its attributes; the
    /// error names the replica, the target and what is wrong. With `spec.create && spec.resync`
    /// (resync rebuilding a stale replica) a pool already there that cannot be used is removed
    /// and created anew (see the module note).
    pub fn connect(
        &self,
        rr: &RemoteReplica,
        spec: &RemoteSpec,
    ) -> Result<Box<dyn Replica>, String> {
        self.connect_replica(rr, spec)
            .map(|r| Box::new(r) as Box<dyn Replica>)
    }

    /// As [`connect`](Self::connect), returning the concrete type.
    pub fn connect_replica(
        &self,
        rr: &RemoteReplica,
        spec: &RemoteSpec,
    ) -> Result<RpmemReplica, String> {
        let target = Target {
            user: rr.user.clone(),
            host: rr.host.clone(),
            port: rr.port,
        }
        .to_string();
        let desc = rr.descriptor.to_str().ok_or_else(|| {
            format!(
                "descriptor {:?} is not UTF-8 (rpmem sends it as text)",
                rr.descriptor
            )
        })?;
        let describe = format!("remote {target}:{desc}");
        let r = spec.replica;
        let here = |what: String| format!("{describe}: {what}");
        let direct = matches!(spec.primary, Some(p) if p.len() as u64 >= spec.pool_size);
        // The rpmem memory, made anew for each attempt (a failed create or open consumes it).
        let memory = || -> Result<PoolMemory, String> {
            match spec.primary {
                Some(p) if direct => {
                    // SAFETY: `RemoteSpec::primary` guarantees the range stays mapped and
                    // writable for as long as the replica returned here exists (the pool drops
                    // its replicas before the primary), and the pool only ever touches it
                    // through raw copies. At most one `PoolMemory` over it is alive at a time:
                    // the one of an attempt that failed was dropped with that attempt.
                    Ok(unsafe { PoolMemory::from_raw(p.as_ptr(), spec.pool_size as usize) })
                }
                _ => {
                    let len = usize::try_from(spec.pool_size)
                        .map_err(|_| here(format!("pool size {} too large", spec.pool_size)))?;
                    PoolMemory::new(len).map_err(|e| here(e.to_string()))
                }
            }
        };
        let want = expected_attr(spec);
        let mut nlanes = self.nlanes.max(1);
        let pool = if spec.create {
            match RpmemPool::create(&target, desc, memory()?, &mut nlanes, &want, &self.opts) {
                Ok(pool) => pool,
                Err(e) if spec.resync && refused_with(&e, &[Status::PoolExists]) => {
                    nlanes = self.nlanes.max(1);
                    self.rebuild(&target, desc, &memory, &mut nlanes, spec, &want, &e)
                        .map_err(|why| here(format!("resync rebuilding the remote pool: {why}")))?
                }
                Err(e) => return Err(here(format!("creating the remote pool: {e}"))),
            }
        } else {
            let (pool, got) = RpmemPool::open(&target, desc, memory()?, &mut nlanes, &self.opts)
                .map_err(|e| here(format!("opening the remote pool: {e}")))?;
            if let Err(why) = check_attr(spec, &want, &got) {
                if !spec.resync || is_foreign(&want, &got) || spec.poolset_uuid.is_none() {
                    let _ = pool.close(false);
                    return Err(here(format!(
                        "its attributes disagree with the pool set: {why}"
                    )));
                }
                // Resync overwrites the replica's data; its attributes name this pool set (or
                // none), so they are rewritten to the expected ones.
                if let Err(e) = pool.set_attr(&want) {
                    let _ = pool.close(false);
                    return Err(here(format!("rewriting the attributes: {e}")));
                }
            }
            pool
        };
        Ok(RpmemReplica {
            pool: Some(pool),
            index: r,
            describe,
            direct,
            nlanes,
            failed: Mutex::new(None),
        })
    }
}

impl Connector {
    /// Resync's rebuild of the stale replica `spec.replica` (`spec.create && spec.resync`):
    /// CREATE failed with `create_err` (PoolExists), so something is there. It is opened to see
    /// what: a usable pool of this pool set is taken as it is (attributes rewritten where they
    /// disagree, as an open with `resync` does); a pool the target cannot open
    /// ([`UNUSABLE_OPEN_STATUSES`]), or one whose attributes belong to another pool set (or
    /// cannot be told apart from one), is removed (REMOVE with force) and created anew. Any
    /// other failure (busy, refused path, transport, timeout) is returned and nothing is
    /// removed. The caller copies the whole pool into the result.
    #[allow(clippy::too_many_arguments)]
    fn rebuild(
        &self,
        target: &str,
        desc: &str,
        memory: &dyn Fn() -> Result<PoolMemory, String>,
        nlanes: &mut u32,
        spec: &RemoteSpec,
        want: &PoolAttr,
        create_err: &Error,
    ) -> Result<RpmemPool, String> {
        let why_removed = match RpmemPool::open(target, desc, memory()?, nlanes, &self.opts) {
            Ok((pool, got)) => match check_attr(spec, want, &got) {
                Ok(()) => return Ok(pool),
                Err(why) if !is_foreign(want, &got) && spec.poolset_uuid.is_some() => {
                    return match pool.set_attr(want) {
                        Ok(()) => Ok(pool),
                        Err(e) => {
                            let _ = pool.close(false);
                            Err(format!(
                                "its attributes disagree ({why}), and rewriting them failed: {e}"
                            ))
                        }
                    };
                }
                Err(why) => {
                    // The operator's resync of a replica marked stale in this pool set is the
                    // consent to overwrite what its place on the target holds.
                    pool.close(false).map_err(|e| {
                        format!(
                            "it holds a pool of another pool set ({why}); closing it before \
                             removing it failed: {e}"
                        )
                    })?;
                    format!("it held a pool of another pool set ({why})")
                }
            },
            Err(e) if refused_with(&e, UNUSABLE_OPEN_STATUSES) => {
                format!("it could not be opened ({e})")
            }
            Err(e) => {
                return Err(format!(
                    "{create_err}; opening it to see whether it is usable failed too, so it was \
                     left alone: {e}"
                ))
            }
        };
        let force = RemoveFlags {
            force: true,
            pool_set: false,
        };
        crate::remove(target, desc, force, &self.opts)
            .map_err(|e| format!("{why_removed}; removing it failed: {e}"))?;
        *nlanes = self.nlanes.max(1);
        RpmemPool::create(target, desc, memory()?, nlanes, want, &self.opts)
            .map_err(|e| format!("{why_removed}; it was removed, and creating it anew failed: {e}"))
    }
}

/// Statuses of a refused OPEN that mean "a pool is there, but it cannot be used as it is", on
/// which resync's rebuild removes and recreates it: `BadPoolset`, which rpmemd gives for a part
/// file of the wrong size (truncated), a part file missing while other parts exist, a damaged or
/// foreign pool header, a missing or damaged attribute block (docs/PROTOCOL.md §14), and for a
/// poolset file that does not parse (then
/// REMOVE fails the same way and nothing is removed). Not `PoolTooSmall`: the size rpmemd
/// compares comes from the poolset file itself (a truncated part is `BadPoolset`), so a new pool
/// would be just as small — removing would destroy a pool for nothing. Never `PoolBusy`,
/// `PathRefused`, `PoolsetNotFound`, `NoSpace`, `PermissionDenied`, `Io` or any transport or
/// timeout error: those say nothing about the pool's contents.
pub const UNUSABLE_OPEN_STATUSES: &[Status] = &[Status::BadPoolset];

/// Whether `e` is rpmemd refusing a request with one of `statuses`.
fn refused_with(e: &Error, statuses: &[Status]) -> bool {
    matches!(e, Error::Refused { status, .. } if statuses.contains(status))
}

/// Whether attributes `got` name another pool set than `want` (zero: none).
fn is_foreign(want: &PoolAttr, got: &PoolAttr) -> bool {
    got.poolset_uuid != [0; 16] && got.poolset_uuid != want.poolset_uuid
}

/// `user_flags` of a replica's attributes: pool size (u64), replica index (u32), replica
/// count (u32), little-endian.
fn user_flags(spec: &RemoteSpec) -> [u8; 16] {
    let mut f = [0u8; 16];
    f[..8].copy_from_slice(&spec.pool_size.to_le_bytes());
    f[8..12].copy_from_slice(&(spec.replica as u32).to_le_bytes());
    f[12..].copy_from_slice(&(spec.replica_count as u32).to_le_bytes());
    f
}

/// The attributes replica `spec.replica` must carry (docs/PROTOCOL.md).
pub fn expected_attr(spec: &RemoteSpec) -> PoolAttr {
    let u = |x: Option<Uuid>| x.map(|u| u.0).unwrap_or_default();
    PoolAttr {
        signature: SIGNATURE,
        major: MAJOR,
        compat_features: 0,
        incompat_features: 0,
        ro_compat_features: 0,
        poolset_uuid: u(spec.poolset_uuid),
        uuid: u(spec.uuid),
        next_uuid: u(spec.next_repl_uuid),
        prev_uuid: u(spec.prev_repl_uuid),
        user_flags: user_flags(spec),
    }
}

/// Compare the attributes found with the ones expected; fields the pool does not know (a
/// `None` UUID in the spec) are not compared.
fn check_attr(spec: &RemoteSpec, want: &PoolAttr, got: &PoolAttr) -> Result<(), String> {
    if got.signature != want.signature {
        return Err(format!(
            "signature {:?} is not {:?} (not a replica of a pool, or never initialised)",
            String::from_utf8_lossy(&got.signature),
            String::from_utf8_lossy(&want.signature)
        ));
    }
    if got.major != want.major {
        return Err(format!(
            "major: format version {} (this build: {})",
            got.major, want.major
        ));
    }
    if got.incompat_features != 0 {
        return Err(format!(
            "incompat_features: unknown flags {:#x}",
            got.incompat_features
        ));
    }
    let uuids = [
        ("poolset_uuid", spec.poolset_uuid, got.poolset_uuid),
        (
            "uuid (this replica's place in the ring)",
            spec.uuid,
            got.uuid,
        ),
        ("prev_uuid", spec.prev_repl_uuid, got.prev_uuid),
        ("next_uuid", spec.next_repl_uuid, got.next_uuid),
    ];
    for (field, want_u, got_u) in uuids {
        if let Some(w) = want_u {
            if w.0 != got_u {
                return Err(format!("{field}: expected {w}, found {}", Uuid(got_u)));
            }
        }
    }
    let f = &got.user_flags;
    let size = u64::from_le_bytes(f[..8].try_into().unwrap_or_default());
    let index = u32::from_le_bytes(f[8..12].try_into().unwrap_or_default());
    let count = u32::from_le_bytes(f[12..].try_into().unwrap_or_default());
    if size != spec.pool_size {
        return Err(format!(
            "pool size: the replica was made for {size} bytes, the pool has {}",
            spec.pool_size
        ));
    }
    if index as usize != spec.replica || count as usize != spec.replica_count {
        return Err(format!(
            "replica index/count: the replica says {index} of {count}, the pool set {} of {}",
            spec.replica, spec.replica_count
        ));
    }
    Ok(())
}

/// Lane of the calling thread: threads are numbered once, in order of first use.
fn thread_lane(nlanes: u32) -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    thread_local! {
        static SLOT: u32 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SLOT.with(|s| *s) % nlanes.max(1)
}

/// A remote replica of a pool: an [`RpmemPool`] whose memory is (normally) the primary's
/// mapping. Dropping it closes the session (CLOSE), unless it failed.
pub struct RpmemReplica {
    /// `None` only while dropping.
    pool: Option<RpmemPool>,
    index: usize,
    describe: String,
    /// The rpmem memory is the primary's mapping.
    direct: bool,
    nlanes: u32,
    /// The first failure; every later operation fails with it.
    failed: Mutex<Option<String>>,
}

impl RpmemReplica {
    fn pool(&self) -> &RpmemPool {
        // Some until drop.
        self.pool.as_ref().expect("pool present until drop")
    }

    /// The rpmem session (lanes granted, persist method, ...).
    pub fn rpmem(&self) -> &RpmemPool {
        self.pool()
    }

    /// Whether persists RMA-write straight from the primary's mapping.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    fn failed_lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The error for the caller, after recording the first failure.
    fn fail(&self, e: Error) -> PersistError {
        let message = e.to_string();
        let mut f = self.failed_lock();
        if f.is_none() {
            *f = Some(message.clone());
        }
        PersistError::Replica {
            replica: self.index,
            message,
        }
    }

    fn check_ok(&self) -> Result<(), PersistError> {
        match &*self.failed_lock() {
            None => Ok(()),
            Some(why) => Err(PersistError::Replica {
                replica: self.index,
                message: format!("failed earlier: {why}"),
            }),
        }
    }
}

impl Drop for RpmemReplica {
    fn drop(&mut self) {
        if let Some(p) = self.pool.take() {
            if self.failed_lock().is_none() {
                // Bounded by the control deadline; an error here changes nothing for the pool
                // (every acknowledged persist is durable already).
                let _ = p.close(false);
            }
        }
    }
}

/// A started drain of an [`RpmemReplica`].
struct Pending<'a> {
    rep: &'a RpmemReplica,
    drain: crate::pool::PendingDrain<'a>,
}

impl PoolPendingDrain for Pending<'_> {
    fn wait(self: Box<Self>) -> Result<(), PersistError> {
        let Pending { rep, drain } = *self;
        drain.wait().map_err(|e| rep.fail(e))
    }
}

impl Replica for RpmemReplica {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn len(&self) -> usize {
        self.pool().size() as usize
    }

    fn read(&self, off: usize, buf: &mut [u8]) -> Result<(), PersistError> {
        self.check_ok()?;
        self.pool()
            .read(buf, off as u64, thread_lane(self.nlanes))
            .map_err(|e| self.fail(e))
    }

    fn write_flush(&self, off: usize, data: &[u8]) -> Result<(), PersistError> {
        self.check_ok()?;
        let mem = self.pool().memory();
        if self.direct {
            // The memory is the primary's: it can only send what the primary holds.
            let mut cur = vec![0u8; data.len()];
            mem.read(off, &mut cur).map_err(|e| self.fail(e))?;
            if cur != data {
                return Err(PersistError::Replica {
                    replica: self.index,
                    message: format!(
                        "write_flush of {} bytes at {off}: data differs from the primary's, \
                         and this replica sends the primary's memory",
                        data.len()
                    ),
                });
            }
        } else {
            mem.write(off, data).map_err(|e| self.fail(e))?;
        }
        self.flush_from_primary(off, data.len())
    }

    fn drain(&self) -> Result<(), PersistError> {
        self.check_ok()?;
        self.pool()
            .drain(thread_lane(self.nlanes))
            .map_err(|e| self.fail(e))
    }

    fn barrier(&self) -> Result<(), PersistError> {
        self.check_ok()?;
        self.pool()
            .barrier(thread_lane(self.nlanes))
            .map_err(|e| self.fail(e))
    }

    fn reads_primary(&self) -> bool {
        self.direct
    }

    fn flush_from_primary(&self, off: usize, len: usize) -> Result<(), PersistError> {
        self.check_ok()?;
        self.pool()
            .flush(off as u64, len as u64, thread_lane(self.nlanes))
            .map_err(|e| self.fail(e))
    }

    fn drain_begin(&self) -> Result<Box<dyn PoolPendingDrain + '_>, PersistError> {
        self.check_ok()?;
        let drain = self
            .pool()
            .drain_begin(thread_lane(self.nlanes))
            .map_err(|e| self.fail(e))?;
        Ok(Box::new(Pending { rep: self, drain }))
    }
}
