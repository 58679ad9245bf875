//! Side-by-side benchmark of palloc and Debian's libpmemobj (through FFI): alloc+free of 64 B
//! and 4 KiB with 1 and 2 threads, and the open time of a pool holding 1 M objects. Both pools
//! are files in /dev/shm of the same size; run with `PMEM_IS_PMEM_FORCE=1` so both take the
//! cache-flush path.
//!
//! Run: `PMEM_IS_PMEM_FORCE=1 cargo run --release -p palloc --features bench --bin palloc-bench`
//! (optional arguments: seconds per cell, default 0.5; objects for the open row, default
//! 1000000).

use palloc::{CreateOptions, Heap, Options};
use pool::Pool;
use std::ffi::CString;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::pmemobj::{self, *};

const POOL_BYTES: u64 = 512 << 20;

fn ours_create(path: &Path) -> Result<Heap<Pool>, String> {
    let pool = Pool::create_file(path, POOL_BYTES, "bench").map_err(|e| e.to_string())?;
    Heap::create(
        Arc::new(pool),
        &CreateOptions::default(),
        Options::default(),
    )
    .map_err(|e| e.to_string())
}

/// Runs `threads` threads each doing alloc+free pairs for `budget`; returns pairs per second.
fn throughput(threads: usize, budget: Duration, op: impl Fn() + Sync) -> f64 {
    let start = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    let t0 = Instant::now();
                    while t0.elapsed() < budget {
                        for _ in 0..16 {
                            op();
                        }
                        n += 16;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("bench thread"))
            .sum()
    });
    total as f64 / start.elapsed().as_secs_f64()
}

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0.5);
    let objects: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let budget = Duration::from_secs_f64(secs);
    if std::env::var("PMEM_IS_PMEM_FORCE").as_deref() != Ok("1") {
        eprintln!("note: set PMEM_IS_PMEM_FORCE=1 so both libraries take the cache-flush path");
    }
    let dir = tempfile::tempdir_in("/dev/shm").map_err(|e| e.to_string())?;
    let ours = ours_create(&dir.path().join("ours"))?;
    let pop = pmemobj::create(&dir.path().join("pmdk"), POOL_BYTES)?;
    println!(
        "pool: {} MiB files in /dev/shm, is_pmem {}, {:.1}s per cell, {} cores",
        POOL_BYTES >> 20,
        ours.persister().is_pmem(),
        secs,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "{:<28} {:>14} {:>14} {:>7}",
        "alloc+free pairs/s", "palloc", "libpmemobj", "ratio"
    );
    for (size, threads) in [(64u64, 1usize), (4096, 1), (64, 2), (4096, 2)] {
        let a = throughput(threads, budget, || {
            let off = ours.alloc(size, 1, None).expect("palloc alloc");
            ours.free(off, None).expect("palloc free");
        });
        let b = throughput(threads, budget, || {
            let mut oid = PmemOid {
                pool_uuid_lo: 0,
                off: 0,
            };
            let p = pop;
            // SAFETY: valid pool handle; oid is a volatile PMEMoid owned by this frame.
            unsafe {
                assert_eq!(
                    pmemobj_alloc(
                        p.0,
                        &mut oid,
                        size as usize,
                        1,
                        std::ptr::null(),
                        std::ptr::null_mut()
                    ),
                    0,
                    "pmemobj_alloc"
                );
                pmemobj_free(&mut oid);
            }
        });
        println!(
            "{:<28} {:>14.0} {:>14.0} {:>6.2}x",
            format!("{size} B, {threads} thread(s)"),
            a,
            b,
            a / b
        );
    }
    drop(ours);
    // SAFETY: handle from pmemobj_create, closed once.
    unsafe { pmemobj_close(pop.0) };

    // Open time with `objects` live 64-byte objects.
    let (po, pp) = (dir.path().join("open-ours"), dir.path().join("open-pmdk"));
    let t = Instant::now();
    {
        let h = ours_create(&po)?;
        for _ in 0..objects {
            h.alloc(64, 1, None).map_err(|e| e.to_string())?;
        }
    }
    let fill_ours = t.elapsed();
    let t = Instant::now();
    {
        let p = pmemobj::create(&pp, POOL_BYTES)?;
        for _ in 0..objects {
            let mut oid = PmemOid {
                pool_uuid_lo: 0,
                off: 0,
            };
            // SAFETY: valid handle; volatile oid.
            let rc = unsafe {
                pmemobj_alloc(p.0, &mut oid, 64, 1, std::ptr::null(), std::ptr::null_mut())
            };
            if rc != 0 {
                return Err(pmemobj::error("pmemobj_alloc (fill)"));
            }
        }
        // SAFETY: handle from pmemobj_create, closed once.
        unsafe { pmemobj_close(p.0) };
    }
    let fill_pmdk = t.elapsed();
    let t = Instant::now();
    let pool = Pool::open_file(&po, Some("bench")).map_err(|e| e.to_string())?;
    let t_pool = t.elapsed();
    let h = Heap::open(Arc::new(pool), Options::default()).map_err(|e| e.to_string())?;
    let open_ours = t.elapsed();
    let first = h.alloc(64, 1, None).map_err(|e| e.to_string())?;
    let first_ours = t.elapsed();
    assert_eq!(h.stats().objects, objects + 1);
    let _ = first;
    drop(h);
    let layout = CString::new("bench").expect("literal");
    let t = Instant::now();
    // SAFETY: valid strings; the pool was closed above.
    let p = unsafe { pmemobj_open(pmemobj::c_path(&pp).as_ptr(), layout.as_ptr()) };
    if p.is_null() {
        return Err(pmemobj::error("pmemobj_open"));
    }
    let open_pmdk = t.elapsed();
    let mut oid = PmemOid {
        pool_uuid_lo: 0,
        off: 0,
    };
    // SAFETY: valid handle; volatile oid.
    unsafe { pmemobj_alloc(p, &mut oid, 64, 1, std::ptr::null(), std::ptr::null_mut()) };
    let first_pmdk = t.elapsed();
    // SAFETY: opened above, closed once.
    unsafe { pmemobj_close(p) };
    println!(
        "{:<28} {:>14} {:>14}",
        format!("{objects} x 64 B objects"),
        "palloc",
        "libpmemobj"
    );
    println!(
        "{:<28} {:>12.1}ms {:>12.1}ms",
        "fill (alloc each)",
        fill_ours.as_secs_f64() * 1e3,
        fill_pmdk.as_secs_f64() * 1e3
    );
    println!(
        "{:<28} {:>12.1}ms {:>12.1}ms   (palloc: pool open {:.1}ms of it)",
        "open",
        open_ours.as_secs_f64() * 1e3,
        open_pmdk.as_secs_f64() * 1e3,
        t_pool.as_secs_f64() * 1e3
    );
    println!(
        "{:<28} {:>12.1}ms {:>12.1}ms   (libpmemobj rebuilds its heap lazily)",
        "open + first alloc",
        first_ours.as_secs_f64() * 1e3,
        first_pmdk.as_secs_f64() * 1e3
    );
    Ok(())
}
