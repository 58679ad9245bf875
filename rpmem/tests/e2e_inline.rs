//! Protocol 1.2 inline persists (docs/PROTOCOL.md §8.6) against a real rpmemd.
//!
//! Through rpmem: small flushes travel as PERSIST_INLINE, barriers send without waiting and a
//! drain reads every answer; mixed with RMA-sized flushes the bytes land exactly. Through raw
//! lanes (a hostile or broken peer): messages are stored in sequence order across lanes (the
//! later number wins even when it arrives first); several messages in flight are answered in
//! order; a message with
//! one out-of-range record is refused whole (`OutOfRange`, nothing stored, lane usable); a
//! wrong lane number is `BadLane`; a reused sequence number, or PERSIST_INLINE on a session
//! that did not negotiate INLINE_PERSIST, ends the session (ERROR `Malformed`, exit 1).

mod common;
#[path = "common/raw.rs"]
#[allow(dead_code)] // each test binary uses only some of these
mod raw;

use std::time::{Duration, Instant};

use common::*;
use raw::*;
use rpmem::{PoolMemory, RpmemPool};
use rpmem_proto::{Capabilities, InlineRecord, Message, Status};

const TARGET: &str = "127.0.0.1";

#[test]
fn flushes_and_barriers_land_byte_exact() {
    let site = Site::new();
    let parts = site.poolset("inl.set", &[8]);
    let size = 4 << 20;
    let seed = seed();
    let mem = PoolMemory::new(size).unwrap();
    mem.write(0, &pattern(seed, size)).unwrap();
    let mut nlanes = 2;
    let pool = RpmemPool::create(
        TARGET,
        "inl.set",
        mem,
        &mut nlanes,
        &attr(50),
        &site.local(),
    )
    .unwrap();
    for lane in 0..nlanes {
        assert!(pool.uses_inline_persist(lane), "lane {lane}");
    }
    // The whole pool once by RMA (one big flush), then many small overwrites: records that
    // share a message, messages that fill up, barriers ahead of their answers (more than the
    // three a lane may have outstanding), and RMA-sized flushes in between, which must wait
    // for the inline persists before them. Persists on different lanes are not ordered with
    // each other (as in librpmem), so the lane changes every 50 steps, after a drain.
    pool.flush(0, size as u64, 0).unwrap();
    pool.drain(0).unwrap();
    let mut want = pattern(seed, size);
    let mut rng = seed | 1;
    for step in 0..400u64 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let lane = (step / 50 % 2) as u32;
        if step % 50 == 0 && step > 0 {
            pool.drain(1 - lane).unwrap();
        }
        let len = match step % 7 {
            0 => 8,
            1 => 4056,
            2 => 300_000,
            _ => 1 + (rng % 2000) as usize,
        };
        let off = (rng >> 20) as usize % (size - len);
        let byte = (step % 251) as u8;
        pool.memory().write(off, &vec![byte; len]).unwrap();
        want[off..off + len].fill(byte);
        pool.flush(off as u64, len as u64, lane).unwrap();
        if step % 3 == 0 {
            pool.barrier(lane).unwrap();
        }
    }
    for lane in 0..nlanes {
        pool.drain(lane).unwrap();
    }
    let mut back = vec![0u8; size];
    pool.read(&mut back, 0, 1).unwrap();
    assert!(back == want, "read back differs (seed {seed})");
    pool.close(false).unwrap();
    let file = std::fs::read(&parts[0]).unwrap();
    let at = PART0_DATA_OFFSET as usize;
    assert!(
        file[at..at + size] == want[..],
        "part file differs (seed {seed})"
    );
}

fn inline(lane: u32, seq: u64, records: &[(u64, &[u8])]) -> Vec<u8> {
    rpmem_proto::encode(&Message::PersistInline {
        lane,
        relaxed: false,
        seq,
        records: records
            .iter()
            .map(|&(offset, data)| InlineRecord {
                offset,
                data: data.to_vec(),
            })
            .collect(),
    })
    .unwrap()
}

impl RawLane {
    fn send(&mut self, frame: &[u8]) {
        self.ep
            .send(frame, Instant::now() + Duration::from_secs(5))
            .unwrap();
    }

    /// The next PERSIST_RESP: `(lane, status)`.
    fn any_answer(&mut self) -> Option<(u32, Status)> {
        let frame = self.ep.recv(Instant::now() + Duration::from_secs(5)).ok()?;
        match rpmem_proto::decode(&frame) {
            Ok(Message::PersistResp { lane, status }) => Some((lane, status)),
            other => panic!("expected PERSIST_RESP, got {other:?}"),
        }
    }

    fn answer(&mut self) -> Option<Status> {
        let frame = self.ep.recv(Instant::now() + Duration::from_secs(5)).ok()?;
        match rpmem_proto::decode(&frame) {
            Ok(Message::PersistResp { lane: 0, status }) => Some(status),
            other => panic!("expected PERSIST_RESP for lane 0, got {other:?}"),
        }
    }
}

#[test]
fn inline_messages_are_answered_in_order_and_refused_whole() {
    let site = Site::new();
    let parts = site.poolset("raw.set", &[4]);
    let mut child = spawn(&site);
    let (resp, minor, caps) = create(&mut child, rpmem_proto::PROTO_MINOR, Capabilities::KNOWN);
    assert_eq!(minor, 2);
    assert!(caps.contains(Capabilities::INLINE_PERSIST), "{caps:?}");
    let size = resp.pool_size;
    let mut lane = connect(&resp, minor);
    // Three messages in flight before the first answer is read.
    lane.send(&inline(0, 1, &[(0, &[1; 100]), (200, &[2; 3])]));
    lane.send(&inline(0, 2, &[(100, &[3; 50])]));
    lane.send(&inline(0, 3, &[(0, &[4; 10]), (size - 1, &[5])]));
    for i in 0..3 {
        assert_eq!(lane.answer(), Some(Status::Ok), "message {i}");
    }
    // One bad record refuses the whole message: the good record before it is not stored.
    lane.send(&inline(0, 4, &[(300, &[6; 8]), (size, &[7])]));
    assert_eq!(lane.answer(), Some(Status::OutOfRange));
    lane.send(&inline(0, 5, &[(400, &[6; 8]), (u64::MAX - 2, &[7; 8])]));
    assert_eq!(lane.answer(), Some(Status::OutOfRange));
    // Another lane's number.
    lane.send(&inline(7, 6, &[(500, &[8; 8])]));
    assert_eq!(lane.answer(), Some(Status::BadLane));
    // Still in step (a refused message used its sequence number too).
    lane.send(&inline(0, 7, &[(600, &[9; 8])]));
    assert_eq!(lane.answer(), Some(Status::Ok));
    let close = call(&mut child, &Message::Close { remove: false });
    assert!(matches!(close, Message::CloseResp(Status::Ok)), "{close:?}");
    assert!(child.wait().unwrap().success());
    let err = stderr_of(&mut child);
    assert!(err.contains("PERSIST_INLINE refused"), "rpmemd log: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let file = std::fs::read(&parts[0]).unwrap();
    let at = PART0_DATA_OFFSET as usize;
    let mut want = vec![0u8; 700];
    want[..100].fill(1);
    want[200..203].fill(2);
    want[100..150].fill(3);
    want[..10].fill(4);
    want[600..608].fill(9);
    assert_eq!(&file[at..at + 700], &want[..]);
    assert_eq!(file[at + size as usize - 1], 5);
}

#[test]
fn inline_without_the_capability_ends_the_session() {
    let site = Site::new();
    site.poolset("raw.set", &[4]);
    let mut child = spawn(&site);
    // A 1.1 session: INLINE_PERSIST is not defined there, whatever is offered.
    let (resp, minor, caps) = create(&mut child, 1, Capabilities::KNOWN);
    assert_eq!(minor, 1);
    assert!(!caps.contains(Capabilities::INLINE_PERSIST));
    let mut lane = connect(&resp, minor);
    lane.send(&inline(0, 1, &[(0, &[1; 8])]));
    let answer = lane.answer();
    assert!(
        matches!(answer, None | Some(Status::Malformed)),
        "{answer:?}"
    );
    expect_malformed_end(&mut child, &["lane 0", "INLINE_PERSIST"], "no capability");
}

#[test]
fn a_reused_sequence_number_ends_the_session() {
    let site = Site::new();
    site.poolset("raw.set", &[4]);
    let mut child = spawn(&site);
    let (resp, minor, _) = create(&mut child, rpmem_proto::PROTO_MINOR, Capabilities::KNOWN);
    let mut lane = connect(&resp, minor);
    lane.send(&inline(0, 1, &[(0, &[1; 8])]));
    assert_eq!(lane.answer(), Some(Status::Ok));
    // A replayed (or confused) message: its number was handled already.
    lane.send(&inline(0, 1, &[(0, &[2; 8])]));
    let answer = lane.answer();
    assert!(
        matches!(answer, None | Some(Status::Malformed)),
        "{answer:?}"
    );
    expect_malformed_end(&mut child, &["already used"], "reused number");
}

/// The session-wide order across lanes, deterministically: message 2 (on lane 1) arrives
/// before message 1 (on lane 0) and both write the same bytes. rpmemd must hold message 2 back
/// until message 1 is stored, so the bytes of message 2 — the later copy — are what remains.
/// (Stored on arrival, lane by lane, message 1 would overwrite them.)
#[test]
fn the_later_number_wins_whatever_lane_arrives_first() {
    let site = Site::new();
    let parts = site.poolset("raw.set", &[4]);
    let mut child = spawn(&site);
    let (resp, minor, _) =
        create_lanes(&mut child, rpmem_proto::PROTO_MINOR, Capabilities::KNOWN, 2);
    assert_eq!(resp.nlanes, 2);
    let mut lane0 = connect_lane(&resp, minor, 0);
    let mut lane1 = connect_lane(&resp, minor, 1);
    lane1.send(&inline(1, 2, &[(64, &[0xBB; 64])]));
    // Give lane 1's thread every chance to store out of turn.
    std::thread::sleep(Duration::from_millis(100));
    lane0.send(&inline(0, 1, &[(64, &[0xAA; 64]), (256, &[0xCC; 8])]));
    assert_eq!(lane0.any_answer(), Some((0, Status::Ok)));
    assert_eq!(lane1.any_answer(), Some((1, Status::Ok)));
    let close = call(&mut child, &Message::Close { remove: false });
    assert!(matches!(close, Message::CloseResp(Status::Ok)), "{close:?}");
    assert!(child.wait().unwrap().success());
    let file = std::fs::read(&parts[0]).unwrap();
    let at = PART0_DATA_OFFSET as usize;
    assert_eq!(
        &file[at + 64..at + 128],
        &[0xBB; 64][..],
        "message 2's bytes win"
    );
    assert_eq!(&file[at + 256..at + 264], &[0xCC; 8][..]);
}
