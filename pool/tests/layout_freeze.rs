//! Layout freeze: pins the size and every field offset of the on-media part header, so the
//! format only changes on purpose (together with docs/FORMAT.md and a version bump).

use core::mem::offset_of;
use pool::header::{PartHeader, HEADER_REGION_BYTES, HEADER_SLOT_BYTES};
use static_assertions::{assert_eq_size, const_assert_eq};

assert_eq_size!(PartHeader, [u8; 2048]);
const_assert_eq!(core::mem::align_of::<PartHeader>(), 1);
const_assert_eq!(HEADER_SLOT_BYTES, 2048);
const_assert_eq!(HEADER_REGION_BYTES, 4096);

const_assert_eq!(offset_of!(PartHeader, signature), 0);
const_assert_eq!(offset_of!(PartHeader, major), 8);
const_assert_eq!(offset_of!(PartHeader, compat), 12);
const_assert_eq!(offset_of!(PartHeader, incompat), 16);
const_assert_eq!(offset_of!(PartHeader, ro_compat), 20);
const_assert_eq!(offset_of!(PartHeader, seq), 24);
const_assert_eq!(offset_of!(PartHeader, poolset_uuid), 32);
const_assert_eq!(offset_of!(PartHeader, uuid), 48);
const_assert_eq!(offset_of!(PartHeader, prev_part_uuid), 64);
const_assert_eq!(offset_of!(PartHeader, next_part_uuid), 80);
const_assert_eq!(offset_of!(PartHeader, prev_repl_uuid), 96);
const_assert_eq!(offset_of!(PartHeader, next_repl_uuid), 112);
const_assert_eq!(offset_of!(PartHeader, crtime), 128);
const_assert_eq!(offset_of!(PartHeader, alignment_desc), 136);
const_assert_eq!(offset_of!(PartHeader, machine_class), 144);
const_assert_eq!(offset_of!(PartHeader, data), 145);
const_assert_eq!(offset_of!(PartHeader, machine), 146);
const_assert_eq!(offset_of!(PartHeader, arch_reserved), 148);
const_assert_eq!(offset_of!(PartHeader, layout), 152);
const_assert_eq!(offset_of!(PartHeader, part_size), 216);
const_assert_eq!(offset_of!(PartHeader, pool_size), 224);
const_assert_eq!(offset_of!(PartHeader, part_index), 232);
const_assert_eq!(offset_of!(PartHeader, part_count), 236);
const_assert_eq!(offset_of!(PartHeader, replica_index), 240);
const_assert_eq!(offset_of!(PartHeader, replica_count), 244);
const_assert_eq!(offset_of!(PartHeader, stale_replicas), 248);
const_assert_eq!(offset_of!(PartHeader, reserved), 280);
const_assert_eq!(offset_of!(PartHeader, checksum), 2040);
const_assert_eq!(offset_of!(PartHeader, checksum_reserved), 2044);

/// Little-endian on media: a known header encodes to known bytes.
#[test]
fn fields_are_little_endian() {
    use zerocopy::IntoBytes;
    let mut h = PartHeader::zeroed();
    h.major.set(0x0102_0304);
    h.seq.set(0x1122_3344_5566_7788);
    h.machine.set(0xABCD);
    let b = h.as_bytes();
    assert_eq!(&b[8..12], &[4, 3, 2, 1]);
    assert_eq!(
        &b[24..32],
        &[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]
    );
    assert_eq!(&b[146..148], &[0xCD, 0xAB]);
}

/// The signature and version constants are part of the format.
#[test]
fn constants_are_frozen() {
    assert_eq!(&pool::header::SIGNATURE, b"RSPMPOOL");
    assert_eq!(pool::header::MAJOR, 1);
    assert_eq!(pool::header::INCOMPAT_SINGLEHDR, 1);
    assert_eq!(pool::header::INCOMPAT_STALE, 2);
    assert_eq!(pool::header::STALE_REPLICAS_MAX, 256);
}
