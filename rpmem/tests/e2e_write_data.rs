//! Protocol 1.1 persists by RMA write with data (docs/PROTOCOL.md §8.5) against a real rpmemd:
//! data lands byte-exact with WRITE_DATA negotiated (sizes around the immediate's 4 MiB limit, so
//! both the write-data and the PERSIST path run in one session; relaxed and deep flags), and a
//! raw fabric client sending hostile immediates gets what §8.5 promises: an out-of-range or
//! overflowing range is refused in step (`OutOfRange`, lane usable), write data on a session
//! that did not negotiate WRITE_DATA ends the session (ERROR `Malformed`, exit 1).
//!
//! The same persists with WRITE_DATA forced off (`RPMEM_NO_WRITE_DATA=1`) are in
//! `e2e_write_data_off.rs`: a test binary of its own, because the switch is an environment
//! variable and other tests of this binary run in parallel threads.

mod common;
#[path = "common/raw.rs"]
#[allow(dead_code)] // each test binary uses only some of these
mod raw;

use common::*;
use raw::*;
use rpmem::{PersistFlags, PoolMemory, RpmemPool};
use rpmem_proto::write_data::{WRITE_DATA_LENGTH_MAX, WRITE_DATA_OFFSET_MAX};
use rpmem_proto::{Capabilities, Message, Status, WriteData};

const TARGET: &str = "127.0.0.1";

#[test]
fn persists_land_byte_exact_with_write_data_negotiated() {
    assert!(
        std::env::var_os(NO_WRITE_DATA_ENV).is_none(),
        "unset {} to run this test",
        NO_WRITE_DATA_ENV
    );
    let site = Site::new();
    let parts = site.poolset("wd.set", &[16]);
    let size = 12 << 20;
    let seed = seed();
    let data = pattern(seed, size);
    let mem = PoolMemory::new(size).unwrap();
    mem.write(0, &data).unwrap();
    let mut nlanes = 2;
    let pool =
        RpmemPool::create(TARGET, "wd.set", mem, &mut nlanes, &attr(40), &site.local()).unwrap();
    for lane in 0..nlanes {
        assert!(
            pool.uses_write_data(lane),
            "tcp carries 8 bytes of CQ data and rpmemd 1.1 offers WRITE_DATA: lane {lane} \
             should use it"
        );
    }
    // Lengths below, at and above the immediate's limit (the last two go as PERSIST), odd
    // offsets, both lanes, relaxed and deep flags.
    let lim = WRITE_DATA_LENGTH_MAX;
    let mut off = 0u64;
    for (i, len) in [64, 1, 4096, 333_333, lim - 1, lim, lim + 1, 1 << 20]
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
    assert_eq!(off, size as u64, "the ranges cover the pool");
    // Overwrite a 64-byte record many times, as the benchmark does: each persist is answered
    // for its own write (a stale answer would leave the last value unchecked).
    for v in 0..200u8 {
        pool.memory().write(4096, &[v; 64]).unwrap();
        pool.persist(4096, 64, 0, PersistFlags::NONE).unwrap();
    }
    let mut want = data.clone();
    want[4096..4096 + 64].fill(199);
    let mut back = vec![0u8; size];
    pool.read(&mut back, 0, 1).unwrap();
    assert!(back == want, "read back differs (seed {seed})");
    pool.close(false).unwrap();
    let file = std::fs::read(&parts[0]).unwrap();
    let at = PART0_DATA_OFFSET as usize;
    assert!(
        file[at..at + size] == want[..],
        "part file bytes differ from the pattern (seed {seed})"
    );
}

fn imm(offset: u64, length: u64) -> u64 {
    WriteData {
        relaxed: false,
        deep: false,
        offset,
        length,
    }
    .encode()
    .unwrap()
}

#[test]
fn out_of_range_write_data_is_refused_in_step_and_the_lane_stays_usable() {
    let site = Site::new();
    site.poolset("raw.set", &[4]);
    let mut child = spawn(&site);
    let (resp, minor, caps) = create(&mut child, rpmem_proto::PROTO_MINOR, Capabilities::KNOWN);
    assert_eq!(minor, rpmem_proto::PROTO_MINOR);
    assert!(caps.contains(Capabilities::WRITE_DATA), "{caps:?}");
    let size = resp.pool_size;
    let mut lane = connect(&resp, minor);
    assert_eq!(lane.persist_raw(0, 64, imm(0, 64)), Some(Status::Ok));
    // Ranges that pass the end of the pool, by one byte or by far; the write itself is in range
    // (the memory registration would refuse anything else), only the immediate lies.
    for (off, len) in [
        (size, 1),
        (size - 63, 64),
        (0, size + 1),
        (WRITE_DATA_OFFSET_MAX, WRITE_DATA_LENGTH_MAX),
        (size - 1, WRITE_DATA_LENGTH_MAX),
    ] {
        assert_eq!(
            lane.persist_raw(0, 64, imm(off, len)),
            Some(Status::OutOfRange),
            "[{off}, +{len})"
        );
    }
    // Every bit set: offset 2^40-1, length 4 MiB-1, relaxed and deep — out of range, no overflow.
    assert_eq!(lane.persist_raw(0, 8, u64::MAX), Some(Status::OutOfRange));
    // The lane is still in step: the last byte of the pool, and a deep persist.
    assert_eq!(
        lane.persist_raw(size - 1, 1, imm(size - 1, 1)),
        Some(Status::Ok)
    );
    let deep = WriteData {
        relaxed: true,
        deep: true,
        offset: 4096,
        length: 4096,
    }
    .encode()
    .unwrap();
    assert_eq!(lane.persist_raw(4096, 4096, deep), Some(Status::Ok));
    let close = call(&mut child, &Message::Close { remove: true });
    assert!(matches!(close, Message::CloseResp(Status::Ok)), "{close:?}");
    assert!(child.wait().unwrap().success());
    let err = stderr_of(&mut child);
    assert!(
        err.contains("persist by write data refused"),
        "rpmemd log: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn write_data_without_the_capability_ends_the_session() {
    // Two ways of not having WRITE_DATA: not offered in 1.1, or offered by a 1.0 initiator
    // (the bit is not defined there, so it is not negotiated).
    for (name, minor, caps) in [
        (
            "not offered",
            1,
            Capabilities(Capabilities::KNOWN.0 & !Capabilities::WRITE_DATA.0),
        ),
        ("protocol 1.0", 0, Capabilities::KNOWN),
    ] {
        let site = Site::new();
        let parts = site.poolset("raw.set", &[4]);
        let mut child = spawn(&site);
        let (resp, got_minor, got_caps) = create(&mut child, minor, caps);
        assert_eq!(got_minor, minor, "{name}");
        assert!(!got_caps.contains(Capabilities::WRITE_DATA), "{name}");
        let mut lane = connect(&resp, got_minor);
        // The lane answers Malformed if it can, then closes: never Ok.
        let answer = lane.persist_raw(0, 64, imm(0, 64));
        assert!(
            matches!(answer, None | Some(Status::Malformed)),
            "{name}: {answer:?}"
        );
        // ERROR Malformed on the control channel naming the lane, exit status 1, pool kept.
        expect_malformed_end(&mut child, &["lane 0", "WRITE_DATA"], name);
        assert!(parts[0].exists(), "{name}: the pool must not be removed");
        let err = stderr_of(&mut child);
        assert!(err.contains("malformed input"), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
}

/// The initiator's switch that keeps WRITE_DATA out of HELLO (rpmem/src/pool.rs).
const NO_WRITE_DATA_ENV: &str = "RPMEM_NO_WRITE_DATA";
