//! [`FenceLock`]: a mutex whose unlock is a plain release store, for locks left right after a
//! persistence fence.
//!
//! On x86 a locked instruction (the `xchg` that releases a `std::sync::Mutex`, a `lock xadd`)
//! waits, like a fence, until earlier cache-line write-backs are done. The heap's fast paths
//! fence and then leave their locks, so with a std `Mutex` the thread stalls at the unlock for
//! the whole write-back (~170 ns on the benchmark machine) and only then runs the rest of the
//! call and the caller's next steps. A plain store does not wait: the write-back completes
//! while the thread goes on, and the thread waits only at its next locked instruction or fence
//! (measured in BENCHMARKS.md, issue 5).
//!
//! The price is on the waiting side. An unlocking thread cannot see sleepers without a locked
//! instruction, so waiters never sleep on a futex: they spin briefly, then yield, then sleep
//! in growing steps of at most [`MAX_SLEEP_US`] µs and look again. The heap holds these locks
//! for a fence (well under a microsecond locally, a network round trip with remote replicas)
//! and contends on them rarely: every thread works in its own lane, and a chunk is shared only
//! when one thread frees what another allocated. There is no poisoning: a panic while holding
//! the lock releases it (the heap's volatile state stays memory-safe either way).

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Longest sleep of a waiter between two looks at the lock.
pub const MAX_SLEEP_US: u64 = 50;

/// A mutual-exclusion lock released by a plain store (see the module notes).
pub struct FenceLock<T> {
    held: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through a guard, and at most one guard exists at a time
// (`held` is set by a successful compare-exchange and cleared only by that guard's drop), so
// sharing the lock shares `T` exactly as a `Mutex<T>` does.
unsafe impl<T: Send> Sync for FenceLock<T> {}

impl<T> FenceLock<T> {
    /// A free lock around `value`.
    pub const fn new(value: T) -> FenceLock<T> {
        FenceLock {
            held: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Take the lock if it is free.
    pub fn try_lock(&self) -> Option<FenceGuard<'_, T>> {
        self.held
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| FenceGuard {
                lock: self,
                not_send: PhantomData,
            })
    }

    /// Take the lock, waiting for it (see the module notes for how waiters wait).
    pub fn lock(&self) -> FenceGuard<'_, T> {
        match self.try_lock() {
            Some(g) => g,
            None => self.lock_contended(),
        }
    }

    #[cold]
    fn lock_contended(&self) -> FenceGuard<'_, T> {
        let mut round = 0u32;
        loop {
            // Read-only until it looks free, so waiters do not bounce the line.
            while self.held.load(Ordering::Relaxed) {
                pause(round);
                round = round.saturating_add(1);
            }
            if let Some(g) = self.try_lock() {
                return g;
            }
        }
    }

    /// The value, through exclusive access to the lock (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }
}

/// A value alone in its cache line(s): locks (and the state beside them) that different
/// threads take at once, side by side in one line, would evict that line from each other's
/// core on every lock and unlock (2-thread alloc+free ran slower than 1 thread that way).
#[repr(align(64))]
pub struct CacheAligned<T>(pub T);

impl<T> Deref for CacheAligned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Round `round` of waiting: spin, then yield, then sleep 1, 2, 4 … `MAX_SLEEP_US` µs.
fn pause(round: u32) {
    const SPINS: u32 = 100;
    const YIELDS: u32 = 10;
    if round < SPINS {
        std::hint::spin_loop();
    } else if round < SPINS + YIELDS {
        std::thread::yield_now();
    } else {
        let us = 1u64 << (round - SPINS - YIELDS).min(6);
        std::thread::sleep(Duration::from_micros(us.min(MAX_SLEEP_US)));
    }
}

/// Access to a [`FenceLock`]'s value; dropping it releases the lock with a plain store. Not
/// `Send`: like a `MutexGuard`, it is released by the thread that took it (the heap's lane
/// records rely on that).
pub struct FenceGuard<'a, T> {
    lock: &'a FenceLock<T>,
    not_send: PhantomData<*const ()>,
}

impl<T> Deref for FenceGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard is the only one (see the `Sync` impl), so no `&mut T` exists.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for FenceGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: this guard is the only one and is borrowed mutably: the only reference.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for FenceGuard<'_, T> {
    fn drop(&mut self) {
        // A plain `mov` on x86: the point of this lock.
        self.lock.held.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn try_lock_fails_while_held_and_succeeds_after() {
        let l = FenceLock::new(5u32);
        let g = l.lock();
        assert!(l.try_lock().is_none());
        drop(g);
        assert_eq!(*l.try_lock().expect("free again"), 5);
    }

    #[test]
    fn threads_exclude_each_other() {
        // A non-atomic read-modify-write under the lock: lost updates if two threads were in.
        let l = Arc::new(FenceLock::new((0u64, false)));
        let per_thread = 20_000u64;
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    for _ in 0..per_thread {
                        let mut g = l.lock();
                        assert!(!g.1, "two holders at once");
                        g.1 = true;
                        let v = g.0;
                        std::hint::black_box(&mut *g);
                        g.0 = v + 1;
                        g.1 = false;
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().expect("worker");
        }
        assert_eq!(l.lock().0, 4 * per_thread);
    }

    #[test]
    fn a_waiter_gets_the_lock_after_a_long_hold() {
        let l = Arc::new(FenceLock::new(0u32));
        let g = l.lock();
        let l2 = l.clone();
        let h = std::thread::spawn(move || {
            *l2.lock() += 1;
        });
        // Long enough for the waiter to reach its sleeping rounds.
        std::thread::sleep(Duration::from_millis(20));
        drop(g);
        h.join().expect("waiter");
        assert_eq!(*l.lock(), 1);
    }

    #[test]
    fn a_panic_while_holding_releases_the_lock() {
        let l = Arc::new(FenceLock::new(0u32));
        let l2 = l.clone();
        let r = std::thread::spawn(move || {
            let _g = l2.lock();
            panic!("holder panics");
        })
        .join();
        assert!(r.is_err());
        assert!(l.try_lock().is_some());
    }
}
