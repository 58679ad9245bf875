//! Persistent locks: [`PMutex`] and [`PRwLock`] are 8-byte fields of persistent objects that a
//! crash can never leave locked.
//!
//! The lock word holds the *run generation* of the open that last changed it (high 32 bits)
//! and the lock state (low 32 bits: mutex 1 = locked; rwlock bit 31 = writer, bits 0-30 =
//! readers). Every open increments the pool's run generation (user slot 3, durable before the
//! first lock), so a word from an earlier run reads as unlocked, whatever it says: no reset
//! pass over the pool is needed. Lock words are never flushed (the state need not survive).
//!
//! Waiting happens in volatile memory: the word's read-modify-write runs under one of
//! [`STRIPES`] mutexes chosen by the word's offset, whose condition variable wakes waiters.
//! All accesses go through the pool's `Persister`, serialized by that mutex as its contract
//! asks. Rule for users (as with libpmemobj): only the thread holding a lock may write the
//! object containing it (a transaction's write of a stale copy of the lock bytes would change
//! the lock); [`Tx::update`](crate::Tx::update) and [`Tx::set_field`](crate::Tx::set_field)
//! of other fields leave them as they are. An abort's roll-back writes around every lock word
//! used in this run (lock state is never undone, whichever order lock and transaction take).

use crate::obj::{ObjPool, PPtr, PType};
use crate::Error;
use pool::Persister;
use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex, MutexGuard};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// Number of volatile mutex/condvar pairs the lock words hash to.
pub const STRIPES: usize = 64;
const WRITER: u32 = 1 << 31;

/// A persistent mutex (8 bytes; zero is unlocked). Lock it with [`ObjPool::lock`].
#[derive(
    FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
#[repr(C)]
pub struct PMutex {
    word: u64,
}

/// A persistent reader-writer lock (8 bytes; zero is unlocked). See [`ObjPool::read_lock`] and
/// [`ObjPool::write_lock`].
#[derive(
    FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
#[repr(C)]
pub struct PRwLock {
    word: u64,
}

pub(crate) struct LockTable {
    stripes: Vec<(Mutex<()>, Condvar)>,
    /// Every lock word used in this run (offsets). An abort's roll-back skips them: lock state
    /// is never undone (a restored "locked" would hold a mutex nobody releases, a restored
    /// "unlocked" would let a second holder in). Words never used in this run read as unlocked
    /// whatever their bytes, so restoring those is harmless.
    words: Mutex<BTreeSet<u64>>,
}

impl LockTable {
    pub(crate) fn new() -> LockTable {
        LockTable {
            stripes: (0..STRIPES)
                .map(|_| (Mutex::new(()), Condvar::new()))
                .collect(),
            words: Mutex::new(BTreeSet::new()),
        }
    }

    /// The lock words used in this run, held while a roll-back runs: a word first used
    /// meanwhile waits until the roll-back has written around it.
    pub(crate) fn words(&self) -> MutexGuard<'_, BTreeSet<u64>> {
        self.words.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stripe(&self, off: u64) -> &(Mutex<()>, Condvar) {
        &self.stripes[(off / 8) as usize % STRIPES]
    }
}

fn guard(m: &Mutex<()>) -> MutexGuard<'_, ()> {
    // The mutex guards no data (the word lives in the pool); poisoning carries no meaning.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Offset of the field `f` selects inside `T`.
pub(crate) fn field_offset<T: FromZeros, F>(f: impl FnOnce(&T) -> &F) -> u64 {
    let probe = T::new_zeroed();
    let base = &probe as *const T as usize;
    let at = f(&probe) as *const F as usize;
    assert!(
        at >= base && at + std::mem::size_of::<F>() <= base + std::mem::size_of::<T>(),
        "the selected field is not inside {}",
        std::any::type_name::<T>()
    );
    (at - base) as u64
}

/// Which kind of hold a guard releases.
#[derive(Clone, Copy)]
enum Hold {
    Mutex,
    Read,
    Write,
}

/// A held lock; released on drop.
pub struct LockGuard<'a, P: Persister + ?Sized> {
    pool: &'a ObjPool<P>,
    off: u64,
    hold: Hold,
}

/// A held [`PMutex`].
pub type PMutexGuard<'a, P> = LockGuard<'a, P>;
/// A shared hold of a [`PRwLock`].
pub type PRwLockReadGuard<'a, P> = LockGuard<'a, P>;
/// An exclusive hold of a [`PRwLock`].
pub type PRwLockWriteGuard<'a, P> = LockGuard<'a, P>;

impl<P: Persister + ?Sized> ObjPool<P> {
    fn lock_word<T: PType, F>(
        &self,
        ptr: &PPtr<T>,
        field: impl FnOnce(&T) -> &F,
    ) -> Result<u64, Error> {
        let rel = field_offset(field);
        let obj = self.check_live(ptr)?;
        let off = obj + rel;
        if off % 8 != 0 {
            return Err(Error::Config(format!(
                "lock at {off:#x} is not 8-byte aligned (packed struct?)"
            )));
        }
        self.locks.words().insert(off);
        Ok(off)
    }

    /// (generation tag, state) of the word at `off`; state of another run reads as 0.
    fn word(&self, off: u64) -> (u64, u32) {
        let tag = (self.run_generation() as u32 as u64) << 32;
        let w = self.persister().read_u64(off as usize);
        let state = if w & !0xffff_ffff == tag { w as u32 } else { 0 };
        (tag, state)
    }

    fn acquire(&self, off: u64, hold: Hold, wait: bool) -> bool {
        let (m, cv) = self.locks.stripe(off);
        let mut g = guard(m);
        loop {
            let (tag, s) = self.word(off);
            let next = match hold {
                Hold::Mutex | Hold::Write if s == 0 => Some(if matches!(hold, Hold::Mutex) {
                    1
                } else {
                    WRITER
                }),
                Hold::Read if s & WRITER == 0 && s < WRITER - 1 => Some(s + 1),
                _ => None,
            };
            if let Some(n) = next {
                self.persister().write_u64(off as usize, tag | n as u64);
                return true;
            }
            if !wait {
                return false;
            }
            g = cv.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn release(&self, off: u64, hold: Hold) {
        let (m, cv) = self.locks.stripe(off);
        let _g = guard(m);
        let (tag, s) = self.word(off);
        let n = match hold {
            Hold::Read => s.saturating_sub(1) & !WRITER,
            Hold::Mutex | Hold::Write => 0,
        };
        self.persister().write_u64(off as usize, tag | n as u64);
        cv.notify_all();
    }

    /// Lock the [`PMutex`] that `field` selects in the object, waiting while another holder
    /// has it, e.g. `pool.lock(&node, |n| &n.lock)`.
    pub fn lock<T: PType>(
        &self,
        ptr: &PPtr<T>,
        field: impl FnOnce(&T) -> &PMutex,
    ) -> Result<PMutexGuard<'_, P>, Error> {
        let off = self.lock_word(ptr, field)?;
        self.acquire(off, Hold::Mutex, true);
        Ok(LockGuard {
            pool: self,
            off,
            hold: Hold::Mutex,
        })
    }

    /// As [`lock`](Self::lock), without waiting (`None` when held elsewhere).
    pub fn try_lock<T: PType>(
        &self,
        ptr: &PPtr<T>,
        field: impl FnOnce(&T) -> &PMutex,
    ) -> Result<Option<PMutexGuard<'_, P>>, Error> {
        let off = self.lock_word(ptr, field)?;
        Ok(self.acquire(off, Hold::Mutex, false).then_some(LockGuard {
            pool: self,
            off,
            hold: Hold::Mutex,
        }))
    }

    /// Take a shared hold of the [`PRwLock`] `field` selects.
    pub fn read_lock<T: PType>(
        &self,
        ptr: &PPtr<T>,
        field: impl FnOnce(&T) -> &PRwLock,
    ) -> Result<PRwLockReadGuard<'_, P>, Error> {
        let off = self.lock_word(ptr, field)?;
        self.acquire(off, Hold::Read, true);
        Ok(LockGuard {
            pool: self,
            off,
            hold: Hold::Read,
        })
    }

    /// Take the exclusive hold of the [`PRwLock`] `field` selects.
    pub fn write_lock<T: PType>(
        &self,
        ptr: &PPtr<T>,
        field: impl FnOnce(&T) -> &PRwLock,
    ) -> Result<PRwLockWriteGuard<'_, P>, Error> {
        let off = self.lock_word(ptr, field)?;
        self.acquire(off, Hold::Write, true);
        Ok(LockGuard {
            pool: self,
            off,
            hold: Hold::Write,
        })
    }
}

impl<P: Persister + ?Sized> Drop for LockGuard<'_, P> {
    fn drop(&mut self) {
        self.pool.release(self.off, self.hold);
    }
}
