//! Side-by-side benchmark of tx and Debian's libpmemobj (through FFI): TX{alloc 64 B},
//! TX{snapshot 64 B + write}, TX{alloc 4 KiB}, with 1 and 2 threads. Both pools are files in
//! /dev/shm of the same size; run with `PMEM_IS_PMEM_FORCE=1` so both take the cache-flush path.
//! Allocation rows time only the allocating transactions; the objects are freed between timed
//! batches (untimed), so the heap stays small. The snapshot row writes 64 bytes of a 128-byte
//! object; `TX_BENCH_LINE_OFFSET` (0, 16, 32 or 48) fixes their offset in the cache line.
//!
//! Run: `PMEM_IS_PMEM_FORCE=1 cargo run --release -p tx --features bench --bin tx-bench`
//! (optional argument: seconds per cell, default 0.5).

use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::bench::throughput;
use testkit::pmemobj::{self, *};
use tx::{ObjPool, TxOptions};

const POOL_BYTES: u64 = 512 << 20;
const BATCH: usize = 256;

fn main() -> Result<(), String> {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.5);
    let budget = Duration::from_secs_f64(secs);
    if std::env::var("PMEM_IS_PMEM_FORCE").as_deref() != Ok("1") {
        eprintln!("note: set PMEM_IS_PMEM_FORCE=1 so both libraries take the cache-flush path");
    }
    let dir = tempfile::tempdir_in("/dev/shm").map_err(|e| e.to_string())?;
    let file = pool::Pool::create_file(&dir.path().join("ours"), POOL_BYTES, "bench")
        .map_err(|e| e.to_string())?;
    let is_pmem = file.is_pmem();
    let ours =
        ObjPool::create_in(Arc::new(file), &TxOptions::default()).map_err(|e| e.to_string())?;
    let pop = pmemobj::create(&dir.path().join("pmdk"), POOL_BYTES)?;
    println!(
        "pool: {} MiB files in /dev/shm, is_pmem {is_pmem}, {secs:.1}s per cell, {} cores",
        POOL_BYTES >> 20,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "{:<34} {:>12} {:>12} {:>7}",
        "transactions/s", "tx", "libpmemobj", "ratio"
    );
    // `TX_BENCH_ONLY=snapshot` (or `alloc`) runs only the rows whose name contains it.
    let only = std::env::var("TX_BENCH_ONLY").unwrap_or_default();
    // `TX_BENCH_LINE_OFFSET=0|16|32|48` places the snapshot row's 64 bytes at that offset in
    // their cache line on both sides (default: where a 128-byte object's first byte lands).
    let line_offset: Option<u64> = std::env::var("TX_BENCH_LINE_OFFSET")
        .ok()
        .map(|v| v.parse().expect("TX_BENCH_LINE_OFFSET: a number below 64"));
    for threads in [1usize, 2] {
        for (name, size) in [("TX{alloc 64 B}", 64u64), ("TX{alloc 4 KiB}", 4096)] {
            if !name.contains(only.as_str()) {
                continue;
            }
            let a = throughput(
                threads,
                budget,
                || (),
                |_| {
                    let mut offs = Vec::with_capacity(BATCH);
                    let t = Instant::now();
                    for _ in 0..BATCH {
                        offs.push(
                            ours.tx(|tx| tx.alloc_raw(size, 1, false))
                                .expect("tx alloc"),
                        );
                    }
                    let d = t.elapsed();
                    for o in offs {
                        ours.heap().free(o, None).expect("free");
                    }
                    (BATCH as u64, d)
                },
            );
            let b = throughput(
                threads,
                budget,
                || (),
                |_| {
                    let mut oids = Vec::with_capacity(BATCH);
                    let t = Instant::now();
                    for _ in 0..BATCH {
                        // SAFETY: inside a transaction of this thread.
                        pmemobj::tx(pop, || {
                            oids.push(unsafe { pmemobj_tx_alloc(size as usize, 1) })
                        });
                    }
                    let d = t.elapsed();
                    for mut o in oids {
                        assert!(o.off != 0, "pmemobj_tx_alloc failed");
                        // SAFETY: a live object of this pool, freed once.
                        unsafe { pmemobj_free(&mut o) };
                    }
                    (BATCH as u64, d)
                },
            );
            row(&format!("{name}, {threads} thread(s)"), a, b);
        }
        if !"TX{snapshot 64 B + write}".contains(only.as_str()) {
            continue;
        }
        let a = throughput(
            threads,
            budget,
            || {
                let obj = ours.heap().zalloc(64 + 64, 2, None).expect("object");
                (obj, rel_for(obj, line_offset))
            },
            |&mut (obj, rel)| {
                let t = Instant::now();
                for i in 0..BATCH {
                    ours.tx(|tx| tx.write_raw(obj, rel, &[i as u8; 64]))
                        .expect("tx write");
                }
                (BATCH as u64, t.elapsed())
            },
        );
        let b = throughput(
            threads,
            budget,
            || {
                let pp = pop;
                let mut oid = PmemOid {
                    pool_uuid_lo: 0,
                    off: 0,
                };
                // SAFETY: valid pool; oid is a volatile PMEMoid owned here.
                let rc = unsafe {
                    pmemobj_alloc(
                        pp.0,
                        &mut oid,
                        64 + 64,
                        2,
                        std::ptr::null(),
                        std::ptr::null_mut(),
                    )
                };
                assert_eq!(rc, 0, "{}", pmemobj::error("pmemobj_alloc"));
                // SAFETY: a live object of this pool.
                let addr = unsafe { pmemobj_direct(oid) } as u64;
                (oid, rel_for(addr, line_offset))
            },
            |&mut (oid, rel)| {
                let t = Instant::now();
                for i in 0..BATCH {
                    pmemobj::tx(pop, || {
                        // SAFETY: inside a transaction; the object is 128 bytes, the range
                        // [rel, rel+64) inside it, and only this thread uses it.
                        unsafe {
                            assert_eq!(pmemobj_tx_add_range(oid, rel, 64), 0);
                            let p = (pmemobj_direct(oid) as *mut u8).add(rel as usize);
                            std::ptr::write_bytes(p, i as u8, 64);
                        }
                    });
                }
                (BATCH as u64, t.elapsed())
            },
        );
        row(
            &format!("TX{{snapshot 64 B + write}}, {threads} thread(s)"),
            a,
            b,
        );
    }
    drop(ours);
    // SAFETY: handle from pmemobj_create, closed once.
    unsafe { pmemobj_close(pop.0) };
    Ok(())
}

/// The offset in a 128-byte object where 64 bytes start at `line_offset` in their cache line
/// (the object's own placement when `line_offset` is None).
fn rel_for(obj: u64, line_offset: Option<u64>) -> u64 {
    line_offset.map_or(0, |o| (o + 64 - obj % 64) % 64)
}

fn row(name: &str, a: f64, b: f64) {
    println!("{name:<34} {a:>12.0} {b:>12.0} {:>6.2}x", a / b);
}
