//! Committed logs awaiting retirement, and the rule that protects them.
//!
//! A transaction committed with a commit record (two fences, see [`crate::undo`]) leaves its
//! lane's log active: recovery would roll it *forward*, writing its new bytes again. That is
//! right until something else changes those bytes; after that, a roll-forward would bring back
//! old values over a later commit. So, before the first fence that precedes a change of pool
//! bytes by anything other than the log's own lane, the log must be *retired*:
//! - the lane's own next transaction retires it by its first entry's fence, which replaces the
//!   `state` word (its entries go to the other slot, so the replaced log stays whole until
//!   then);
//! - any other writer calls [`Retirements::retire`] before its fence, which stores the
//!   pending generation in each such lane's `retired` word (recovery then leaves that log
//!   alone). Writers: a transaction's undo entries (other lanes), a `NO_SNAPSHOT` write, every
//!   free (palloc calls the store guard set by [`crate::ObjPool`] with the object's bytes,
//!   since freed bytes may be reused without a transaction's log) and every store palloc makes
//!   into a caller-named word (an allocation's `dest`, a publish's `Set`); the guard fences
//!   when it retired anything, since palloc's first fence may be its commit point.
//!   Persistent-lock words need nothing: a roll-forward
//!   that rewrites them is harmless, since a lock word of an earlier run reads as unlocked.
//!
//! Volatile state: per lane, the pending generation (0: none) and bounds that cover every log
//! the lane committed so far (they only widen, so readers need no lock; a writer retires only
//! logs whose bounds overlap what it changes — for a free, the object's usable bytes); a sticky
//! bitmap of lanes that ever had one, so that a writer scans only those. Generation and bounds
//! live in separate cache lines: the generation changes at every commit, the bounds rarely,
//! and other threads read only the bounds unless they overlap.

use palloc::lock::CacheAligned;
use pool::persist::PersistError;
use pool::Persister;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The pending (committed, not yet retired) logs of one pool's lanes.
pub(crate) struct Retirements {
    /// Per lane: the generation of its committed log not yet retired, or 0.
    pending: Vec<CacheAligned<AtomicU64>>,
    /// Per lane: `[lo, hi)` covering every log it committed (only widened).
    bounds: Vec<CacheAligned<[AtomicU64; 2]>>,
    /// Lanes that ever had a pending log (bit per lane; never cleared).
    seen: Vec<AtomicU64>,
    /// Per lane: the heap offset of its `retired` word (None: the layout has none, so the
    /// lane never has a pending log), and the lock that keeps the word's stores monotonic.
    words: Vec<(Option<usize>, Mutex<()>)>,
}

impl Retirements {
    /// For lanes whose `retired` words are at `words` (heap offsets; None: no two-fence
    /// commits on that lane).
    pub(crate) fn new(words: Vec<Option<usize>>) -> Retirements {
        Retirements {
            pending: words
                .iter()
                .map(|_| CacheAligned(AtomicU64::new(0)))
                .collect(),
            bounds: words
                .iter()
                .map(|_| CacheAligned([AtomicU64::new(u64::MAX), AtomicU64::new(0)]))
                .collect(),
            seen: (0..words.len().div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            words: words.into_iter().map(|w| (w, Mutex::new(()))).collect(),
        }
    }

    /// `lane` committed generation `gen` with a commit record covering bytes within
    /// `[lo, hi)` (after the commit point).
    pub(crate) fn set_pending(&self, lane: usize, gen: u64, lo: u64, hi: u64) {
        let (word, bit) = (lane / 64, 1u64 << (lane % 64));
        if self.seen[word].load(Ordering::Relaxed) & bit == 0 {
            self.seen[word].fetch_or(bit, Ordering::Release);
        }
        let [blo, bhi] = &self.bounds[lane].0;
        // Only the owner (holding the lane) writes them: no read-modify-write race.
        if lo < blo.load(Ordering::Relaxed) {
            blo.store(lo, Ordering::Relaxed);
        }
        if hi > bhi.load(Ordering::Relaxed) {
            bhi.store(hi, Ordering::Relaxed);
        }
        self.pending[lane].0.store(gen, Ordering::Release);
    }

    /// The owner of `lane` replaced the pending log's `state` durably (its first entry's
    /// fence), or made it idle.
    pub(crate) fn clear_own(&self, lane: usize) {
        let gen = &self.pending[lane].0;
        if gen.load(Ordering::Relaxed) != 0 {
            gen.store(0, Ordering::Release);
        }
    }

    /// The pending generation of `lane` (0: none).
    pub(crate) fn pending(&self, lane: usize) -> u64 {
        self.pending[lane].0.load(Ordering::Acquire)
    }

    /// Whether any lane has a pending log.
    pub(crate) fn any_pending(&self) -> bool {
        self.seen.iter().enumerate().any(|(wi, word)| {
            let mut bits = word.load(Ordering::Acquire);
            while bits != 0 {
                if self.pending(wi * 64 + bits.trailing_zeros() as usize) != 0 {
                    return true;
                }
                bits &= bits - 1;
            }
            false
        })
    }

    /// The pending generation of `lane` if its bounds overlap `range` (any, when None).
    fn pending_over(&self, lane: usize, range: Option<(u64, u64)>) -> u64 {
        if let Some((s, e)) = range {
            let [lo, hi] = &self.bounds[lane].0;
            if s >= hi.load(Ordering::Acquire) || e <= lo.load(Ordering::Acquire) {
                return 0;
            }
        }
        self.pending(lane)
    }

    /// Retire every pending log except `except`'s whose bytes may overlap `range` (every one
    /// when None): store its generation in its lane's `retired` word (never lowering it) with
    /// the write-back started. Durable at the caller's next fence, which must come before the
    /// bytes the caller is about to change can reach media. Returns whether anything was
    /// stored (a caller without a fence of its own must then fence).
    pub(crate) fn retire<P: Persister + ?Sized>(
        &self,
        p: &P,
        except: Option<usize>,
        range: Option<(u64, u64)>,
    ) -> Result<bool, PersistError> {
        let mut stored = false;
        for (wi, word) in self.seen.iter().enumerate() {
            let mut bits = word.load(Ordering::Acquire);
            if let Some(x) = except.filter(|&x| x / 64 == wi) {
                bits &= !(1u64 << (x % 64));
            }
            while bits != 0 {
                let lane = wi * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let gen = self.pending_over(lane, range);
                if gen == 0 {
                    continue;
                }
                let (Some(off), lock) = &self.words[lane] else {
                    continue;
                };
                let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
                let now = p.read_u64(*off);
                // Stored again even when equal: the earlier store may not be durable yet.
                p.write_u64_flush(*off, now.max(gen))?;
                stored = true;
            }
        }
        Ok(stored)
    }
}
