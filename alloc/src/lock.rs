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
//! The price is on the waiting side. A release store cannot be ordered before the load that
//! checks for sleepers without a locked instruction, so a wake-up can be missed: a waiter
//! that registered itself just as the holder stored the release, and checked the lock before
//! that store was visible, sleeps although the lock is free. Sleeps are therefore bounded:
//! a waiter spins briefly, then sleeps on a futex for at most [`MAX_SLEEP`] at a time and
//! looks again. In the common case the unlocking thread sees the waiter and wakes it at once;
//! the missed case needs the two threads within nanoseconds of each other and costs at most
//! one [`MAX_SLEEP`]. There is no poisoning: a panic while holding the lock releases it (the
//! heap's volatile state stays memory-safe either way). Like `std::sync::Mutex`, the lock is
//! not fair.

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Longest sleep of a waiter between two looks at the lock (the cost of a missed wake-up).
pub const MAX_SLEEP: Duration = Duration::from_millis(1);

/// How many times a waiter looks at the lock before it sleeps.
const SPINS: u32 = 200;

/// A mutual-exclusion lock released by a plain store (see the module notes).
pub struct FenceLock<T> {
    /// 0 free, 1 held.
    state: AtomicU32,
    /// Waiters asleep in [`lock`](Self::lock), or about to be.
    sleepers: AtomicU32,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through a guard, and at most one guard exists at a time
// (`state` goes 0 -> 1 only by a successful compare-exchange and back only by that guard's
// drop), so sharing the lock shares `T` exactly as a `Mutex<T>` does.
unsafe impl<T: Send> Sync for FenceLock<T> {}

impl<T> FenceLock<T> {
    /// A free lock around `value`.
    pub const fn new(value: T) -> FenceLock<T> {
        FenceLock {
            state: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// Take the lock if it is free.
    pub fn try_lock(&self) -> Option<FenceGuard<'_, T>> {
        self.state
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
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
        for _ in 0..SPINS {
            // Read-only until it looks free, so waiters do not bounce the line.
            if self.state.load(Ordering::Relaxed) == 0 {
                if let Some(g) = self.try_lock() {
                    return g;
                }
            }
            std::hint::spin_loop();
        }
        loop {
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            if self.state.load(Ordering::SeqCst) == 1 {
                futex_wait(&self.state, 1, MAX_SLEEP);
            }
            self.sleepers.fetch_sub(1, Ordering::Relaxed);
            if let Some(g) = self.try_lock() {
                return g;
            }
        }
    }

    /// The value, through exclusive access to the lock (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }

    fn unlock(&self) {
        // A plain `mov` on x86: the point of this lock. Then a plain load: a sleeper that
        // registered before it is woken; one that registers in the window where this load is
        // served before the store is visible wakes by its timeout (module notes).
        self.state.store(0, Ordering::Release);
        if self.sleepers.load(Ordering::Relaxed) != 0 {
            futex_wake_one(&self.state);
        }
    }
}

/// Sleep while `word` holds `expected`, at most `timeout` (spurious returns are fine).
fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a live, aligned u32 for the whole call; the kernel only reads it and
    // the timespec.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            &ts as *const libc::timespec,
        );
    }
}

/// Wake one thread sleeping in [`futex_wait`] on `word`.
fn futex_wake_one(word: &AtomicU32) {
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE does not access memory through it.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        );
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
        self.lock.unlock();
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
    fn sleeping_waiters_are_woken_and_exclude_each_other() {
        // Holders that sleep inside the lock push the other threads past their spins into the
        // futex; every one of them must get its turns, one at a time.
        let l = Arc::new(FenceLock::new((0u32, 0u32)));
        let hs: Vec<_> = (0..6)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let mut g = l.lock();
                        g.1 += 1;
                        assert_eq!(g.1, 1, "two holders at once");
                        std::thread::sleep(Duration::from_micros(200));
                        g.0 += 1;
                        g.1 -= 1;
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().expect("worker");
        }
        assert_eq!(l.lock().0, 6 * 20);
        assert_eq!(l.sleepers.load(Ordering::Relaxed), 0);
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
