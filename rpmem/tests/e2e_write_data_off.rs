//! WRITE_DATA forced off with `RPMEM_NO_WRITE_DATA=1` (docs/PROTOCOL.md §4.13): the initiator
//! does not offer the capability, every persist is RMA write + PERSIST as in protocol 1.0, and
//! the data still lands byte-exact. One test in its own binary: it sets the environment variable
//! before anything else runs, with no other test thread reading the environment.

mod common;

use common::*;
use rpmem::{PersistFlags, PoolMemory, RpmemPool};
use rpmem_proto::write_data::WRITE_DATA_LENGTH_MAX;

#[test]
fn persists_land_byte_exact_with_write_data_forced_off() {
    // SAFETY-free in edition 2021; the only test of this binary, so no thread reads the
    // environment concurrently.
    std::env::set_var(NO_WRITE_DATA_ENV, "1");
    let site = Site::new();
    let parts = site.poolset("off.set", &[16]);
    let size = 12 << 20;
    let seed = seed();
    let data = pattern(seed, size);
    let mem = PoolMemory::new(size).unwrap();
    mem.write(0, &data).unwrap();
    let mut nlanes = 2;
    let pool = RpmemPool::create(
        TARGET,
        "off.set",
        mem,
        &mut nlanes,
        &attr(42),
        &site.local(),
    )
    .unwrap();
    for lane in 0..nlanes {
        assert!(
            !pool.uses_write_data(lane),
            "{} is set: lane {lane} must not use write data",
            NO_WRITE_DATA_ENV
        );
    }
    let mut off = 0u64;
    for (i, len) in [64, 1, 4096, 333_333, WRITE_DATA_LENGTH_MAX, 1 << 20]
        .into_iter()
        .enumerate()
    {
        let lane = i as u32 % nlanes;
        let end = (off + len).min(size as u64);
        match i % 3 {
            0 => pool.persist(off, end - off, lane, PersistFlags::NONE),
            1 => pool.persist(off, end - off, lane, PersistFlags::RELAXED),
            _ => pool.deep_persist(off, end - off, lane),
        }
        .unwrap_or_else(|e| panic!("persist {i} of {len} bytes at {off}: {e}"));
        off = end;
    }
    pool.persist(off, size as u64 - off, 0, PersistFlags::NONE)
        .unwrap();
    let mut back = vec![0u8; size];
    pool.read(&mut back, 0, 1).unwrap();
    assert!(back == data, "read back differs (seed {seed})");
    pool.close(false).unwrap();
    let file = std::fs::read(&parts[0]).unwrap();
    let at = PART0_DATA_OFFSET as usize;
    assert!(
        file[at..at + size] == data[..],
        "part file bytes differ from the pattern (seed {seed})"
    );
    std::env::remove_var(NO_WRITE_DATA_ENV);
}

const TARGET: &str = "127.0.0.1";

/// The initiator's switch that keeps WRITE_DATA out of HELLO (rpmem/src/pool.rs).
const NO_WRITE_DATA_ENV: &str = "RPMEM_NO_WRITE_DATA";
