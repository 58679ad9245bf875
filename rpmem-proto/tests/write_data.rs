//! The write-data immediate (docs/PROTOCOL.md §8.5): bit map pinned, round trips, every value a
//! field cannot hold refused by encode, decode total, the target's checks, and the negotiation
//! rule that WRITE_DATA needs protocol 1.1.

use proptest::prelude::*;
use rpmem_proto::session::{check_write_data, negotiate};
use rpmem_proto::write_data::*;
use rpmem_proto::{Capabilities, Hello, ProtocolError, Status};

fn wd(relaxed: bool, deep: bool, offset: u64, length: u64) -> WriteData {
    WriteData {
        relaxed,
        deep,
        offset,
        length,
    }
}

/// One `check(value, expected immediate)` per field, so the bit map is pinned exactly as the
/// document draws it.
#[test]
fn bit_map_golden_values() {
    let check = |w: WriteData, want: u64| {
        assert_eq!(w.encode(), Ok(want), "{w:?}");
        assert_eq!(WriteData::decode(want), w, "{want:#x}");
    };
    check(wd(false, false, 0, 0), 0);
    check(wd(true, false, 0, 0), 1 << 63);
    check(wd(false, true, 0, 0), 1 << 62);
    check(wd(false, false, 0, 1), 1 << 40);
    check(wd(false, false, 1, 0), 1);
    check(wd(false, false, 0x1000, 0x40), 0x0000_4000_0000_1000);
    check(
        wd(false, false, (1 << 40) - 1, (1 << 22) - 1),
        0x3FFF_FFFF_FFFF_FFFF,
    );
    check(wd(true, true, (1 << 40) - 1, (1 << 22) - 1), u64::MAX);
}

#[test]
fn limits_are_4mib_and_1tib_minus_one() {
    assert_eq!(WRITE_DATA_LENGTH_MAX, 4 * 1024 * 1024 - 1);
    assert_eq!(WRITE_DATA_OFFSET_MAX, (1 << 40) - 1);
    assert!(WriteData::fits(
        WRITE_DATA_OFFSET_MAX,
        WRITE_DATA_LENGTH_MAX
    ));
    assert!(!WriteData::fits(WRITE_DATA_OFFSET_MAX + 1, 0));
    assert!(!WriteData::fits(0, WRITE_DATA_LENGTH_MAX + 1));
}

/// The edges of every out-of-range value, each refused naming its field.
#[test]
fn out_of_range_edges_refused_naming_the_field() {
    for off in [
        WRITE_DATA_OFFSET_MAX + 1,
        WRITE_DATA_OFFSET_MAX + 2,
        1 << 41,
        1 << 62,
        1 << 63,
        u64::MAX,
    ] {
        let e = wd(false, false, off, 8).encode().unwrap_err();
        assert_eq!(e.field, "offset", "{off:#x}");
        assert!(!WriteData::fits(off, 8));
    }
    for len in [
        WRITE_DATA_LENGTH_MAX + 1,
        1 << 23,
        1 << 24,
        1 << 40,
        u64::MAX,
    ] {
        let e = wd(true, true, 0, len).encode().unwrap_err();
        assert_eq!(e.field, "length", "{len:#x}");
        assert!(!WriteData::fits(0, len));
    }
}

proptest! {
    #[test]
    fn round_trip_in_range(
        relaxed in any::<bool>(),
        deep in any::<bool>(),
        offset in 0..=WRITE_DATA_OFFSET_MAX,
        length in 0..=WRITE_DATA_LENGTH_MAX,
    ) {
        let w = wd(relaxed, deep, offset, length);
        prop_assert!(WriteData::fits(offset, length));
        let d = w.encode().unwrap();
        prop_assert_eq!(WriteData::decode(d), w);
    }

    /// Decode is total and decode → encode is the identity: every immediate has exactly one
    /// meaning and one encoding.
    #[test]
    fn every_u64_decodes_and_reencodes(d in any::<u64>()) {
        let w = WriteData::decode(d);
        prop_assert!(WriteData::fits(w.offset, w.length));
        prop_assert_eq!(w.encode(), Ok(d));
    }

    /// Any offset above the field is refused, whatever else is in range.
    #[test]
    fn every_offset_out_of_range_refused(
        offset in (WRITE_DATA_OFFSET_MAX + 1)..=u64::MAX,
        length in 0..=WRITE_DATA_LENGTH_MAX,
        relaxed in any::<bool>(),
    ) {
        prop_assert!(!WriteData::fits(offset, length));
        let e = wd(relaxed, false, offset, length).encode().unwrap_err();
        prop_assert_eq!(e.field, "offset");
    }

    /// Any length above the field is refused, whatever else is in range.
    #[test]
    fn every_length_out_of_range_refused(
        offset in 0..=WRITE_DATA_OFFSET_MAX,
        length in (WRITE_DATA_LENGTH_MAX + 1)..=u64::MAX,
        deep in any::<bool>(),
    ) {
        prop_assert!(!WriteData::fits(offset, length));
        let e = wd(false, deep, offset, length).encode().unwrap_err();
        prop_assert_eq!(e.field, "length");
    }
}

#[test]
fn target_checks_range_and_deep_like_persist() {
    let all = Capabilities::KNOWN;
    let pool = 1 << 20;
    assert_eq!(
        check_write_data(&wd(false, false, 0, pool), pool, all),
        Ok(())
    );
    assert_eq!(
        check_write_data(&wd(true, true, pool - 1, 1), pool, all),
        Ok(())
    );
    // Zero length at the end is an ordering point, as for PERSIST.
    assert_eq!(
        check_write_data(&wd(false, false, pool, 0), pool, all),
        Ok(())
    );
    for (off, len) in [
        (pool, 1),
        (pool - 1, 2),
        (0, pool + 1),
        (WRITE_DATA_OFFSET_MAX, 1),
    ] {
        let e = check_write_data(&wd(false, false, off, len), pool, all).unwrap_err();
        assert!(
            matches!(e, ProtocolError::OutOfRange { offset, length, pool_size }
                if offset == off && length == len && pool_size == pool),
            "{e:?}"
        );
        assert_eq!(e.status(), Status::OutOfRange);
    }
    // The largest immediate cannot overflow the range arithmetic.
    let e = check_write_data(&WriteData::decode(u64::MAX), u64::MAX, all);
    assert_eq!(e, Ok(()));
    // DEEP without DEEP_PERSIST: refused as Malformed, like PERSIST's DEEP flag.
    let e = check_write_data(&wd(false, true, 0, 8), pool, Capabilities::WRITE_DATA).unwrap_err();
    assert_eq!(e.status(), Status::Malformed);
}

#[test]
fn write_data_capability_needs_minor_1() {
    let hello = |minor| Hello {
        major: 1,
        minor,
        capabilities: Capabilities::KNOWN,
    };
    let r = negotiate(1, 1, Capabilities::KNOWN, &hello(1));
    assert!(r.capabilities.contains(Capabilities::WRITE_DATA));
    // A 1.0 initiator (or a 1.0 rpmemd) never gets the bit, even if it is offered.
    let r = negotiate(1, 1, Capabilities::KNOWN, &hello(0));
    assert_eq!(r.minor, 0);
    assert!(!r.capabilities.contains(Capabilities::WRITE_DATA));
    assert!(r.capabilities.contains(Capabilities::DEEP_PERSIST));
    let r = negotiate(1, 0, Capabilities::KNOWN, &hello(1));
    assert!(!r.capabilities.contains(Capabilities::WRITE_DATA));
    assert_eq!(Capabilities::WRITE_DATA.0, 1 << 4);
    assert_eq!(Capabilities::defined_in_minor(0).0, 0b1111);
    assert_eq!(Capabilities::defined_in_minor(1).0, 0b1_1111);
    assert_eq!(Capabilities::defined_in_minor(2), Capabilities::KNOWN);
}

#[test]
fn inline_persist_capability_needs_minor_2() {
    let hello = |minor| Hello {
        major: 1,
        minor,
        capabilities: Capabilities::KNOWN,
    };
    assert_eq!(Capabilities::INLINE_PERSIST.0, 1 << 5);
    let r = negotiate(1, 2, Capabilities::KNOWN, &hello(2));
    assert!(r.capabilities.contains(Capabilities::INLINE_PERSIST));
    // A 1.1 peer on either side never gets it, whatever is offered.
    let r = negotiate(1, 2, Capabilities::KNOWN, &hello(1));
    assert_eq!(r.minor, 1);
    assert!(!r.capabilities.contains(Capabilities::INLINE_PERSIST));
    assert!(r.capabilities.contains(Capabilities::WRITE_DATA));
    let r = negotiate(1, 1, Capabilities::KNOWN, &hello(2));
    assert!(!r.capabilities.contains(Capabilities::INLINE_PERSIST));
}
