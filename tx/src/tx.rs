//! One transaction on one lane: snapshots into the undo log, allocations reserved now and
//! published at commit, frees deferred to commit, flat nesting, on-commit/on-abort hooks.
//!
//! # Commit protocol (which fence makes a transaction committed)
//! **Two fences** — without allocations or frees, when the undo entries all lie in the
//! generation's slot and the commit record fits after them: every changed range is flushed and
//! the commit record (redo entries of the saved ranges' new bytes, the last flagged `LAST`) is
//! stored; **one fence, the commit point** (a drain: replicas answer). The log then stays
//! committed but active until retired (`crate::retire`); recovery rolls it forward.
//!
//! **Three fences** — every other transaction:
//! 1. Every changed range (saved or inside a fresh allocation) is flushed, then one fence: all
//!    new bytes are durable while the undo log is still active. It only orders
//!    (`Persister::barrier`: remote replicas answer by the commit point's persist), like the
//!    fence after each undo entry.
//! 2. Without allocations or frees: the lane's undo `state` word is stored as idle, flushed and
//!    fenced — **that fence is the commit point**. With allocations or frees: one palloc redo
//!    batch holds the allocations, the frees and the idle `state` word; **the fence that makes
//!    that redo log complete is the commit point** (recovery replays it, which also ends the
//!    undo log). A batch of one entry is a single atomic store, its fence the commit point.
//!
//! A crash before the commit point leaves an active undo log without a complete commit record
//! (recovery restores every saved range; reservations were never persistent) or nothing at
//! all; a crash after it leaves the transaction complete. Abort restores the saved ranges, fences, then stores the idle state.
//!
//! # Errors
//! A commit point counts only when its persist returns `Ok` — on the primary *and* every
//! replica of a `pool::Pool`. When it fails (a replica failing under the fail-stop policy: the
//! primary's part is already done), the commit is undone on the primary before the error is
//! returned — palloc invalidates the redo log, or the idle store puts the active `state` back
//! — and the transaction aborts. So:
//! - **any error from [`ObjPool::tx`] means the transaction is absent**, now and after a
//!   reopen (a crash is an unknown outcome, as always), except:
//! - [`Error::CommittedReplicationFailed`]: a persist *after* the commit point failed (applying
//!   the committed redo batch); the transaction is committed and its on-commit hooks ran;
//! - [`Error::OutcomeUnknown`]: undoing the commit failed on the primary itself; the lane is
//!   unusable and the next open decides, as after a crash.
//!
//! Once any lane's log (redo or undo) is left undecided by a failure of the primary itself —
//! `OutcomeUnknown`, or `CommittedReplicationFailed` whose persist error is the primary's —
//! the whole heap is poisoned: every later transaction (any lane) fails at begin or commit with
//! `Error::Heap(palloc::Error::Ulog(UlogError::Poisoned { .. }))` until the pool is reopened,
//! since the next open replays (or rolls back) that log over anything committed meanwhile.
//!
//! Byte-level rules: `docs/FORMAT.md`, "Errors of a commit".

use crate::obj::ObjPool;
use crate::undo::UndoLog;
use crate::Error;
use palloc::lock::FenceGuard;
use palloc::ulog::primary_done;
use palloc::{Action, Lane, Reservation};
use pool::Persister;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::mem::take;

/// Flags of a snapshot (as libpmemobj's `POBJ_XADD_*`).
///
/// libpmemobj's `ASSUME_INITIALIZED` only silences Valgrind; there is nothing to silence here,
/// so it has no counterpart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapFlags(u8);

impl SnapFlags {
    /// Save the old bytes and flush the range at commit.
    pub const NONE: SnapFlags = SnapFlags(0);
    /// Do not flush the range at commit (the caller makes it durable otherwise, or does not
    /// need it durable). The old bytes are still saved.
    pub const NO_FLUSH: SnapFlags = SnapFlags(1);
    /// Do not save the old bytes: abort and recovery leave whatever the transaction wrote
    /// (for ranges whose old value nobody needs, e.g. scratch space). Flushed at commit.
    pub const NO_SNAPSHOT: SnapFlags = SnapFlags(2);

    /// Both flags set in `self`.
    pub fn contains(self, other: SnapFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for SnapFlags {
    type Output = SnapFlags;
    fn bitor(self, o: SnapFlags) -> SnapFlags {
        SnapFlags(self.0 | o.0)
    }
}

thread_local! {
    /// Instances of `ObjPool` this thread runs a transaction on (to refuse a second, independent
    /// `tx` inside one: nesting is flat, through [`Tx::nested`]).
    static IN_TX: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

type Hook<'a> = Box<dyn FnOnce() + 'a>;

/// A transaction, handed to the closure of [`ObjPool::tx`]. Holds a lane (the first free one
/// from the thread's home lane, see `palloc::Heap::lane`) until it ends; heap calls the closure
/// makes directly take another lane.
pub struct Tx<'a, P: Persister + ?Sized> {
    pub(crate) pool: &'a ObjPool<P>,
    lane: Lane<'a, P>,
    undo: FenceGuard<'a, UndoLog>,
    /// Ranges whose old bytes are saved (or need none), sorted, disjoint, not adjacent.
    saved: Vec<(u64, u64)>,
    /// Ranges to flush at commit.
    flush: Vec<(u64, u64)>,
    /// Allocations of this transaction, by offset.
    fresh: BTreeMap<u64, Reservation>,
    /// Objects freed at commit.
    frees: BTreeSet<u64>,
    on_commit: Vec<Hook<'a>>,
    on_abort: Vec<Hook<'a>>,
    failed: bool,
    finished: bool,
    /// An allocation's header or zeroed bytes were flushed without a fence
    /// (`Lane::reserve_unfenced`): commit fences before publishing.
    fence_owed: bool,
    /// Bytes were written with `Persister::write_flush` (streaming stores, write-back
    /// started, nothing left to flush): commit fences before the commit point all the same,
    /// and an abort orders them before it stores the old bytes back.
    streamed: bool,
}

/// Where a checked write lands.
pub(crate) enum Target {
    /// In an object allocated by this transaction: nothing to save.
    Fresh,
    /// In a live object.
    Live,
}

impl<'a, P: Persister + ?Sized> Tx<'a, P> {
    pub(crate) fn begin(pool: &'a ObjPool<P>) -> Result<Tx<'a, P>, Error> {
        let me = pool.instance();
        let nested = IN_TX.with(|v| v.borrow().contains(&me));
        if nested {
            return Err(Error::AlreadyInTx);
        }
        let lane = pool.heap().lane()?;
        let mut undo = pool.undo_log(lane.index());
        if let Some(why) = undo.poisoned() {
            return Err(Error::Corrupt(format!(
                "lane {} unusable until the pool is reopened: {why}",
                lane.index()
            )));
        }
        // A log of any lane left undecided: the next open may replay or roll back its values
        // over anything this transaction would commit.
        pool.heap().check_usable()?;
        IN_TX.with(|v| v.borrow_mut().push(me));
        // Reuse the lane's buffers (no allocation per transaction in the common case).
        let (mut saved, mut flush) = undo.take_buffers();
        saved.clear();
        flush.clear();
        Ok(Tx {
            pool,
            lane,
            undo,
            saved,
            flush,
            fresh: BTreeMap::new(),
            frees: BTreeSet::new(),
            on_commit: Vec::new(),
            on_abort: Vec::new(),
            failed: false,
            finished: false,
            fence_owed: false,
            streamed: false,
        })
    }

    /// The pool this transaction runs on.
    pub fn pool(&self) -> &'a ObjPool<P> {
        self.pool
    }

    /// Index of the lane this transaction holds.
    pub fn lane_index(&self) -> usize {
        self.lane.index()
    }

    /// Run `f` as a nested transaction. Nesting is flat: the changes belong to the enclosing
    /// transaction, and when `f` returns an error the *whole* transaction aborts (the error is
    /// returned here; the outermost [`ObjPool::tx`] then rolls back and returns
    /// [`Error::NestedAborted`] if the caller swallowed it). Every later operation on this
    /// transaction fails with [`Error::NestedAborted`].
    pub fn nested<R, E>(&mut self, f: impl FnOnce(&mut Self) -> Result<R, E>) -> Result<R, E>
    where
        E: From<Error>,
    {
        self.live()?;
        let r = f(self);
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    /// Run `hook` after this transaction commits (after the lane is released).
    pub fn on_commit(&mut self, hook: impl FnOnce() + 'a) {
        self.on_commit.push(Box::new(hook));
    }

    /// Run `hook` after this transaction aborts (after the rollback is durable).
    pub fn on_abort(&mut self, hook: impl FnOnce() + 'a) {
        self.on_abort.push(Box::new(hook));
    }

    fn live(&self) -> Result<(), Error> {
        if self.failed {
            return Err(Error::NestedAborted);
        }
        Ok(())
    }

    /// Check that `[obj+rel, obj+rel+len)` lies in a live object (or one allocated by this
    /// transaction) of type `type_num` (if given).
    pub(crate) fn check_target(
        &self,
        obj: u64,
        type_num: Option<(u64, &'static str)>,
        rel: u64,
        len: u64,
    ) -> Result<Target, Error> {
        self.live()?;
        if self.frees.contains(&obj) {
            return Err(Error::FreedInTx { off: obj });
        }
        let (stored, usable, target) = match self.fresh.get(&obj) {
            Some(r) => (r.type_num(), r.usable_size(), Target::Fresh),
            None => {
                let o = self.pool.heap().object(obj)?;
                (o.type_num, o.usable_size, Target::Live)
            }
        };
        if let Some((expected, type_name)) = type_num {
            if stored != expected {
                return Err(Error::TypeMismatch {
                    off: obj,
                    stored,
                    expected,
                    type_name,
                });
            }
        }
        let needed = rel.saturating_add(len);
        if needed > usable {
            return Err(Error::TooSmall {
                off: obj,
                usable,
                needed,
            });
        }
        Ok(target)
    }

    /// Save the old bytes of `[off, off+len)` (a checked range) unless already saved.
    pub(crate) fn snapshot_checked(
        &mut self,
        target: Target,
        off: u64,
        len: u64,
        flags: SnapFlags,
    ) -> Result<(), Error> {
        if len == 0 {
            return Ok(());
        }
        let end = off + len;
        if !flags.contains(SnapFlags::NO_FLUSH) {
            self.flush.push((off, end));
        }
        if matches!(target, Target::Fresh) {
            return Ok(());
        }
        // Saved ranges that overlap or touch [off, end): indices lo..hi. The gaps between
        // them are appended in order (no list is built: usually there is one gap).
        let lo = self.saved.partition_point(|&(_, e)| e < off);
        let hi = self.saved.partition_point(|&(s, _)| s <= end);
        let p = &**self.pool.heap().persister();
        if flags.contains(SnapFlags::NO_SNAPSHOT) {
            // No entry, so no fence of this transaction precedes the change: committed logs
            // that a roll-forward would replay over it are retired (durably) first.
            if self.pool.retire.retire(p, None, Some((off, end)))? {
                p.barrier()?;
            }
        } else {
            let lane = self.lane.index();
            let was_active = self.undo.is_active();
            // Other lanes' committed logs retired by the entry's fence (this lane's own is
            // replaced by the entry's `state`).
            self.pool.retire.retire(p, Some(lane), Some((off, end)))?;
            let mut cur = off;
            for k in lo..=hi {
                let (s, e) = match self.saved.get(k) {
                    Some(&r) if k < hi => r,
                    _ => (end, end),
                };
                if s > cur {
                    let gap_end = s.min(end);
                    self.undo
                        .append(p, &mut self.lane, cur, (gap_end - cur) as usize)?;
                }
                cur = cur.max(e);
            }
            if !was_active && self.undo.is_active() {
                self.pool.retire.clear_own(lane);
            }
        }
        // The saved ranges lo..hi and [off, end) now form one range.
        if lo < hi {
            self.saved[lo] = (self.saved[lo].0.min(off), self.saved[hi - 1].1.max(end));
            self.saved.drain(lo + 1..hi);
        } else {
            self.saved.insert(lo, (off, end));
        }
        Ok(())
    }

    /// Save (per `flags`) then write `data` at byte `rel` of object `obj`.
    pub(crate) fn write_checked(
        &mut self,
        target: Target,
        obj: u64,
        rel: u64,
        data: &[u8],
        flags: SnapFlags,
    ) -> Result<(), Error> {
        let off = obj + rel;
        let p = self.pool.heap().persister();
        if flags.contains(SnapFlags::NO_FLUSH) || !p.streams() {
            // Stored now, flushed at commit (one flush per line for everything written).
            self.snapshot_checked(target, off, data.len() as u64, flags)?;
            p.write(off as usize, data);
            return Ok(());
        }
        // Written and its write-back started at once (streaming stores: a shorter fence at
        // commit than a line write-back, and nothing for commit to flush).
        self.snapshot_checked(target, off, data.len() as u64, flags | SnapFlags::NO_FLUSH)?;
        self.streamed = true;
        if let Err(e) = p.write_flush(off as usize, data) {
            // Commit flushes the range again, so a caller who ignores this error cannot
            // commit bytes whose write-back failed.
            self.flush.push((off, off + data.len() as u64));
            return Err(e.into());
        }
        Ok(())
    }

    /// Save the old bytes of `len` bytes at byte `rel` of the object at `obj` (any type), so
    /// that later writes to them in this transaction are undone by an abort or a crash.
    pub fn snapshot_raw(
        &mut self,
        obj: u64,
        rel: u64,
        len: u64,
        flags: SnapFlags,
    ) -> Result<(), Error> {
        let t = self.check_target(obj, None, rel, len)?;
        self.snapshot_checked(t, obj + rel, len, flags)
    }

    /// Write `data` at byte `rel` of the object at `obj` (any type), saving the old bytes first.
    pub fn write_raw(&mut self, obj: u64, rel: u64, data: &[u8]) -> Result<(), Error> {
        let t = self.check_target(obj, None, rel, data.len() as u64)?;
        self.write_checked(t, obj, rel, data, SnapFlags::NONE)
    }

    /// Allocate `size` bytes of type `type_num` (zeroed when `zero`); the object becomes
    /// persistent at commit and is released on abort. Returns its offset.
    pub fn alloc_raw(&mut self, size: u64, type_num: u64, zero: bool) -> Result<u64, Error> {
        self.live()?;
        crate::obj::refuse_internal_type(type_num, "alloc_raw")?;
        // Header (and zeroes) flushed now, fenced by commit step 1 together with everything
        // else the transaction wrote, before the publish makes the object reachable.
        let (r, owed) = self.lane.reserve_unfenced(size, type_num, zero)?;
        self.fence_owed |= owed;
        let off = r.off();
        self.fresh.insert(off, r);
        Ok(off)
    }

    /// Free the object at `obj` at commit (at once, if this transaction allocated it).
    pub fn free_raw(&mut self, obj: u64) -> Result<(), Error> {
        self.live()?;
        if let Some(r) = self.fresh.remove(&obj) {
            let end = obj + r.usable_size();
            self.flush.retain(|&(s, _)| !(s >= obj && s < end));
            if self.streamed {
                // The block may be reused by another thread at once: this thread's streaming
                // stores into it (weakly ordered) must not land after that thread's stores.
                pool::persist::sfence();
            }
            // Fences first when the header was flushed unfenced (this thread holds the lane
            // that reserved it): the block may be reserved again at once, trusting its header.
            // A failed fence fails the operation (and so the transaction): a replica fell
            // behind.
            self.pool.heap().try_cancel(vec![Action::Alloc(r)])?;
            return Ok(());
        }
        if self.frees.contains(&obj) {
            return Err(Error::FreedInTx { off: obj });
        }
        self.pool.heap().object(obj)?;
        self.frees.insert(obj);
        Ok(())
    }

    /// Commit; returns the on-commit hooks to run once the lane is released.
    pub(crate) fn commit(&mut self) -> Result<Vec<Hook<'a>>, Error> {
        debug_assert!(!self.failed, "commit of a failed transaction");
        let p = &**self.pool.heap().persister();
        // Sort and merge in place, by cache line: two ranges in one line flushed separately
        // would write the line back twice, and the second write-back costs a whole fence's wait.
        let fl = &mut self.flush;
        fl.sort_unstable();
        let mut n = 0;
        for i in 0..fl.len() {
            if n > 0 && fl[i].0 / 64 <= fl[n - 1].1.saturating_sub(1) / 64 {
                fl[n - 1].1 = fl[n - 1].1.max(fl[i].1);
            } else {
                fl[n] = fl[i];
                n += 1;
            }
        }
        fl.truncate(n);
        let merged = &*fl;
        if self.fresh.is_empty() && self.frees.is_empty() && self.undo.is_active() {
            // Refused (the caller aborts) once another lane left a log undecided.
            self.pool.heap().check_usable()?;
            for &(s, e) in merged {
                p.flush(s as usize, (e - s) as usize)?;
            }
            if let Some(first) = self.undo.write_commit_record(p, &self.saved)? {
                // The data and the commit record in one fence: the commit point.
                if let Err(e) = p.drain() {
                    let e = self.undo.undo_commit_record(p, first, e);
                    if matches!(e, Error::OutcomeUnknown(_)) {
                        self.undecided(&e);
                    }
                    return Err(e);
                }
                let (lo, hi) = (self.saved[0].0, self.saved[self.saved.len() - 1].1);
                self.pool
                    .retire
                    .set_pending(self.lane.index(), self.undo.generation(), lo, hi);
                self.undo.reset();
                self.flush.clear();
                self.streamed = false;
                self.saved.clear();
                self.finished = true;
                self.on_abort.clear();
                return Ok(take(&mut self.on_commit));
            }
            // No room for a commit record: the three-fence commit below (flushing again is
            // only a repeated write-back request).
        }
        let flushed = (|| -> Result<(), Error> {
            for &(s, e) in merged {
                p.flush(s as usize, (e - s) as usize)?;
            }
            if !merged.is_empty() || self.fence_owed || self.streamed {
                // Step 1: every new byte (and every new allocation header) durable while the
                // undo log still covers the old ones, before the publish. Only ordering: the
                // commit point's own persist below is the one that waits for every replica.
                p.barrier()?;
            }
            Ok(())
        })();
        flushed?;
        self.flush.clear();
        self.streamed = false;
        let mut acts: Vec<Action> = take(&mut self.fresh)
            .into_values()
            .map(Action::Alloc)
            .collect();
        acts.extend(take(&mut self.frees).into_iter().map(Action::Free));
        if acts.is_empty() {
            // Step 2: the idle state word; its persist is the commit point. On an error the
            // active state is back (durable on the primary) and the caller aborts. Refused
            // (the caller aborts) once another lane left a log undecided, like every publish.
            self.pool.heap().check_usable()?;
            if let Err(e) = self.undo.commit_end(p) {
                if matches!(e, Error::OutcomeUnknown(_)) {
                    self.undecided(&e);
                }
                return Err(e);
            }
        } else {
            if self.undo.is_active() {
                let (off, value) = self.undo.idle_state();
                acts.push(Action::Set { off, value });
            }
            // Step 2: one redo batch; the persist that completes its log is the commit point.
            // On an error before it, palloc invalidates the log on the primary and nothing is
            // published (reservations stay reserved until the next open: a volatile leak);
            // the caller aborts, which rolls the saved ranges back.
            match self.lane.publish(acts) {
                Ok(()) => self.undo.reset(),
                Err(e) if e.is_committed() => {
                    // Committed (the batch also ended the undo log); a persist after the
                    // commit point failed.
                    self.undo.reset();
                    self.saved.clear();
                    self.finished = true;
                    self.on_abort.clear();
                    return Err(Error::CommittedReplicationFailed(e));
                }
                Err(e) if e.is_unknown() => {
                    let e = Error::OutcomeUnknown(e.to_string());
                    self.undecided(&e);
                    return Err(e);
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.saved.clear();
        self.finished = true;
        self.on_abort.clear();
        Ok(take(&mut self.on_commit))
    }

    /// The commit's outcome is left to the next open: neither roll back nor run hooks, and
    /// keep the lane out of use until then.
    fn undecided(&mut self, e: &Error) {
        self.poison(format!("{e}"));
        self.finished = true;
        self.on_commit.clear();
        self.on_abort.clear();
    }

    /// The on-commit hooks of a transaction whose commit returned
    /// [`Error::CommittedReplicationFailed`] (empty after any other error).
    pub(crate) fn hooks_after_commit_error(&mut self) -> Vec<Hook<'a>> {
        take(&mut self.on_commit)
    }

    /// Whether the transaction has ended (committed, aborted, or left to the next open).
    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    /// Roll back; returns the on-abort hooks to run once the lane is released.
    ///
    /// Persist errors of replicas do not stop the roll-back: every step is still done on the
    /// primary (which is then rolled back and idle, as the error promises), the first error is
    /// returned, and the lane stays usable. A failure of the primary itself poisons the lane
    /// (recovery at the next open rolls back).
    pub(crate) fn abort(&mut self) -> Result<Vec<Hook<'a>>, Error> {
        self.finished = true;
        if take(&mut self.streamed) {
            // Streaming stores are weakly ordered: the roll-back's plain stores of the old
            // bytes must not pass them.
            pool::persist::sfence();
        }
        self.flush.clear();
        self.saved.clear();
        self.frees.clear();
        let fresh: Vec<Action> = take(&mut self.fresh)
            .into_values()
            .map(Action::Alloc)
            .collect();
        // One fence first if any allocation header was flushed unfenced (`fence_owed`): the
        // blocks are free for other lanes from here on (see `palloc::Lane::reserve_unfenced`).
        self.pool.heap().cancel(fresh);
        let p = &**self.pool.heap().persister();
        fn primary_ok<T>(r: &Result<T, Error>) -> bool {
            match r {
                Ok(_) => true,
                Err(Error::Persist(e)) => primary_done(e),
                Err(_) => false,
            }
        }
        // Lock words are written around (their state is never undone); the set stays locked
        // for the roll-back so that a word first used meanwhile is not overwritten.
        let rolled = self.undo.roll_back(p, &self.pool.locks.words());
        // The idle state only once the restored bytes are durable on the primary.
        let res = if primary_ok(&rolled) {
            let ended = self.undo.end(p);
            rolled.and(ended)
        } else {
            rolled.map(|_| ())
        };
        if !primary_ok(&res) {
            if let Err(e) = &res {
                self.poison(format!("abort failed: {e}"));
            }
        }
        self.on_commit.clear();
        res.map(|_| take(&mut self.on_abort))
    }

    pub(crate) fn failed(&self) -> bool {
        self.failed
    }

    /// This lane's undo log is left undecided (the next open rolls it back, or not): keep the
    /// lane, and every other commit of the heap, out of use until reopen — another lane's
    /// commit of the same bytes would be undone by that roll-back.
    fn poison(&mut self, why: String) {
        let (state_word, _) = self.undo.idle_state();
        self.pool
            .heap()
            .poison_until_reopen(state_word as usize, format!("undo log: {why}"));
        self.undo.poison(why);
    }
}

impl<P: Persister + ?Sized> Drop for Tx<'_, P> {
    fn drop(&mut self) {
        if !self.finished {
            // A panic in the closure (or a commit error) left the transaction open: roll back.
            let _ = self.abort();
        }
        let (saved, flush) = (take(&mut self.saved), take(&mut self.flush));
        self.undo.give_buffers(saved, flush);
        let me = self.pool.instance();
        IN_TX.with(|v| {
            let mut v = v.borrow_mut();
            if let Some(i) = v.iter().rposition(|&x| x == me) {
                v.remove(i);
            }
        });
    }
}
