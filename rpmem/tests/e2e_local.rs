//! End to end against a real rpmemd process started by the local transport (no SSH): data
//! arrives byte-exact in the target's part file, reads back, attributes round-trip, lanes work
//! in parallel, and every refusal or failure is a typed error.

mod common;

use common::*;
use rpmem::{Error, PersistFlags, PoolMemory, RemoveFlags, RpmemPool};
use rpmem_proto::Status;

const TARGET: &str = "127.0.0.1";

#[test]
fn create_persist_close_lands_byte_exact_in_the_part_file() {
    let site = Site::new();
    let parts = site.poolset("pool.set", &[8]);
    let size = 4 << 20;
    let seed = seed();
    let data = pattern(seed, size);
    let mem = PoolMemory::new(size).unwrap();
    mem.write(0, &data).unwrap();
    let mut nlanes = 4;
    let pool = RpmemPool::create(
        TARGET,
        "pool.set",
        mem,
        &mut nlanes,
        &attr(1),
        &site.local(),
    )
    .unwrap();
    assert_eq!(nlanes, 4);
    assert!(pool.remote_size() >= size as u64);
    // Persist in uneven pieces on different lanes.
    let mut off = 0u64;
    let mut lane = 0;
    while off < size as u64 {
        let len = (size as u64 - off).min(333_333);
        pool.persist(off, len, lane % nlanes, PersistFlags::NONE)
            .unwrap();
        off += len;
        lane += 1;
    }
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
}
