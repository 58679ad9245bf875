//! Every single-byte corruption of a header slot is detected (exhaustive over all 2048 bytes
//! and several corruption patterns), and at region level the corrupt slot is reported.

use pool::header::{self, PartHeader, StaleSlot, Uuid, HEADER_SLOT_BYTES};
use zerocopy::IntoBytes;

fn sample() -> PartHeader {
    let mut h = PartHeader::zeroed();
    h.signature = header::SIGNATURE;
    h.major.set(header::MAJOR);
    h.seq.set(3);
    h.poolset_uuid = Uuid::new_v4().unwrap().0;
    h.uuid = Uuid::new_v4().unwrap().0;
    h.next_part_uuid = h.uuid;
    h.prev_part_uuid = h.uuid;
    h.part_count.set(1);
    h.replica_count.set(1);
    h.part_size.set(8 << 20);
    h.pool_size.set((8 << 20) - 4096);
    h.crtime.set(1_700_000_000);
    h.set_arch();
    h.set_layout("corruption-test").unwrap();
    h.seal();
    h
}

#[test]
fn every_single_byte_corruption_of_a_slot_is_detected() {
    let good = sample();
    let bytes = good.as_bytes().to_vec();
    assert!(PartHeader::decode(&bytes).is_ok());
    let mut checked = 0;
    for i in 0..HEADER_SLOT_BYTES {
        // Every possible new value of this byte.
        for v in 0..=255u8 {
            if v == bytes[i] {
                continue;
            }
            let mut bad = bytes.clone();
            bad[i] = v;
            assert!(
                PartHeader::decode(&bad).is_err(),
                "byte {i} set to {v:#04x} was not detected"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, HEADER_SLOT_BYTES * 255);
}

#[test]
fn every_single_byte_corruption_of_a_region_is_reported() {
    let good = sample();
    let mut region = good.as_bytes().to_vec();
    region.extend_from_slice(good.as_bytes());
    for i in 0..region.len() {
        let mut bad = region.clone();
        bad[i] ^= 0x5A;
        let read = header::decode_region(&bad).expect("the other slot is intact");
        assert_eq!(read.header, good, "byte {i}");
        let slot = i / HEADER_SLOT_BYTES;
        assert!(
            matches!(&read.stale[..], [(s, StaleSlot::Corrupt(_))] if *s == slot),
            "byte {i}: {:?}",
            read.stale
        );
    }
}

#[test]
fn decode_never_panics_on_short_or_random_input() {
    let mut state = 0x1234_5678u64;
    for len in [0usize, 1, 100, 2047, 2048, 4095, 4096] {
        let buf: Vec<u8> = (0..len)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                (state >> 33) as u8
            })
            .collect();
        let _ = PartHeader::decode(&buf);
        let _ = header::decode_region(&buf);
    }
}
