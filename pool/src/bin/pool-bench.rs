//! Side-by-side benchmark of `pool::persist` and Debian's libpmem (through FFI) on the same kind
//! of file in /dev/shm, with the cache-flush path forced on both.
//!
//! Run: `PMEM_IS_PMEM_FORCE=1 cargo run --release -p pool --features bench --bin pool-bench`
//! (optional argument: seconds per row, default 0.3).

use pool::persist::{Flags, Flusher};
use std::ffi::c_void;
use std::time::{Duration, Instant};

#[link(name = "pmem")]
extern "C" {
    fn pmem_persist(addr: *const c_void, len: usize);
    fn pmem_memcpy_persist(dst: *mut c_void, src: *const c_void, len: usize) -> *mut c_void;
    fn pmem_memcpy(dst: *mut c_void, src: *const c_void, len: usize, flags: u32) -> *mut c_void;
}

/// libpmem's `PMEM_F_MEM_NONTEMPORAL` (libpmem.h).
const PMEM_F_MEM_NONTEMPORAL: u32 = 1 << 1;

const REGION: usize = 64 << 20;

/// Runs `op(i)` for about `budget`, returns nanoseconds per op.
fn time(budget: Duration, mut op: impl FnMut(usize)) -> f64 {
    for i in 0..16 {
        op(i); // warm-up
    }
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed() < budget {
        for _ in 0..8 {
            op(n);
            n += 1;
        }
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn main() -> std::io::Result<()> {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.3);
    let budget = Duration::from_secs_f64(secs);
    if std::env::var("PMEM_IS_PMEM_FORCE").as_deref() != Ok("1") {
        eprintln!("note: set PMEM_IS_PMEM_FORCE=1 so both libraries take the cache-flush path");
    }
    let dir = tempfile::tempdir_in("/dev/shm")?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.path().join("bench"))?;
    file.set_len(REGION as u64)?;
    // SAFETY: private temporary file, not resized while mapped.
    let mut map = unsafe { memmap2::MmapMut::map_mut(&file)? };
    map.fill(1); // fault every page in
    let fl = Flusher::detect(true);
    let src = vec![0x5Au8; 1 << 20];
    println!(
        "pool flush path: {:?}, movnt: {}  (/dev/shm, {} MiB region, {:.1}s per cell)",
        fl.path(),
        fl.movnt(),
        REGION >> 20,
        secs
    );
    println!(
        "{:<26} {:>12} {:>12} {:>8}",
        "operation", "pool ns", "libpmem ns", "ratio"
    );
    let base = map.as_mut_ptr();
    // (name, bytes stored and persisted, distance between consecutive ranges). The 8-byte rows
    // are the floor of any durable update here: one store + flush + fence, on the same cache
    // line every time (as a heap's bitmap word or a log's state word) or on the next line.
    for (name, len, stride) in [
        ("persist 8 B (same line)", 8usize, 0usize),
        ("persist 8 B (next line)", 8, 64),
        ("persist 4 KiB (dirty)", 4096, 4096),
        ("persist 1 MiB (dirty)", 1 << 20, 1 << 20),
    ] {
        let slots = REGION / stride.max(len);
        let ours = time(budget, |i| {
            let off = (i % slots) * stride;
            // SAFETY: off+len <= REGION.
            unsafe {
                core::ptr::write_bytes(base.add(off), i as u8, len);
                fl.persist_raw(base.add(off), len).unwrap();
            }
        });
        let theirs = time(budget, |i| {
            let off = (i % slots) * stride;
            // SAFETY: off+len <= REGION; libpmem only flushes the range.
            unsafe {
                core::ptr::write_bytes(base.add(off), i as u8, len);
                pmem_persist(base.add(off).cast(), len);
            }
        });
        println!(
            "{name:<26} {ours:>12.0} {theirs:>12.0} {:>8.2}",
            theirs / ours
        );
    }
    for (name, len) in [
        ("memcpy_persist 4 KiB", 4096usize),
        ("memcpy_persist 1 MiB", 1 << 20),
    ] {
        let slots = REGION / len;
        let ours = time(budget, |i| {
            let off = (i % slots) * len;
            // SAFETY: destination in bounds, source a distinct Vec.
            unsafe {
                fl.memcpy_raw(base.add(off), src.as_ptr(), len, Flags::NONE)
                    .unwrap()
            };
        });
        let theirs = time(budget, |i| {
            let off = (i % slots) * len;
            // SAFETY: as above.
            unsafe { pmem_memcpy_persist(base.add(off).cast(), src.as_ptr().cast(), len) };
        });
        println!(
            "{name:<26} {ours:>12.0} {theirs:>12.0} {:>8.2}",
            theirs / ours
        );
    }
    // Streaming stores (`write_nt_raw`, behind `Persister::write_flush`) of what palloc and tx
    // write once per commit: an 8-byte commit word on the same line every time, and an
    // 80-byte undo entry 16 bytes into its line. libpmem's counterpart is its memcpy with the
    // non-temporal flag (which also drains).
    for (name, len, at) in [
        ("stream 8 B (same line)", 8usize, 0usize),
        ("stream 80 B (entry)", 80, 16),
    ] {
        let ours = time(budget, |i| {
            let v = [i as u8; 80];
            // SAFETY: at+len <= REGION; source on the stack.
            unsafe {
                fl.write_nt_raw(base.add(at), v.as_ptr(), len).unwrap();
            }
            fl.drain();
        });
        let theirs = time(budget, |i| {
            let v = [i as u8; 80];
            // SAFETY: as above.
            unsafe {
                pmem_memcpy(
                    base.add(at).cast(),
                    v.as_ptr().cast(),
                    len,
                    PMEM_F_MEM_NONTEMPORAL,
                )
            };
        });
        println!(
            "{name:<26} {ours:>12.0} {theirs:>12.0} {:>8.2}",
            theirs / ours
        );
    }
    println!("ratio = libpmem time / pool time (>= 1.00 means pool is at least as fast)");
    Ok(())
}
