//! The 64-bit remote CQ data that describes a persist carried by an RMA write with data
//! (capability `WRITE_DATA`, protocol 1.1; docs/PROTOCOL.md §8.5).
//!
//! Bit map of the `u64` (the provider carries it as an integer, so there is no byte order to
//! state beyond "bit 0 is the least significant bit"):
//!
//! | bits   | width | field    | meaning |
//! |--------|------:|----------|---------|
//! | 63     | 1     | relaxed  | PERSIST's `RELAXED` flag |
//! | 62     | 1     | deep     | PERSIST's `DEEP` flag (needs `DEEP_PERSIST`) |
//! | 40..62 | 22    | length   | length of the persisted range, 0 ..= 4 MiB − 1 |
//! | 0..40  | 40    | offset   | pool offset of the range, 0 ..= 1 TiB − 1 |
//!
//! Every `u64` decodes (no reserved bits, no invalid values), and decode → encode is the
//! identity; what a value *means* (range inside the pool, DEEP negotiated) is checked by
//! [`crate::session::check_write_data`]. A persist whose range does not fit
//! ([`WriteData::fits`]) uses the PERSIST message instead.

use crate::msg::EncodeError;

/// Bit of the `relaxed` flag.
pub const WRITE_DATA_RELAXED: u64 = 1 << 63;
/// Bit of the `deep` flag.
pub const WRITE_DATA_DEEP: u64 = 1 << 62;
/// Position of the lowest bit of the length field.
pub const WRITE_DATA_LENGTH_SHIFT: u32 = 40;
/// Width of the length field in bits.
pub const WRITE_DATA_LENGTH_BITS: u32 = 22;
/// Largest length the immediate can describe (4 MiB − 1).
pub const WRITE_DATA_LENGTH_MAX: u64 = (1 << WRITE_DATA_LENGTH_BITS) - 1;
/// Largest offset the immediate can describe (1 TiB − 1).
pub const WRITE_DATA_OFFSET_MAX: u64 = (1 << WRITE_DATA_LENGTH_SHIFT) - 1;

const _: () = assert!(WRITE_DATA_LENGTH_SHIFT + WRITE_DATA_LENGTH_BITS == 62);
const _: () = assert!(WRITE_DATA_LENGTH_MAX == 4 * 1024 * 1024 - 1);
const _: () = assert!(WRITE_DATA_OFFSET_MAX == (1u64 << 40) - 1);

/// A persist described by the remote CQ data of an RMA write: make `[offset, offset + length)`
/// durable, with PERSIST's flags. It always describes the whole persist, even when the range was
/// written in several RMA writes and only the last one carries the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WriteData {
    pub relaxed: bool,
    pub deep: bool,
    pub offset: u64,
    pub length: u64,
}

impl WriteData {
    /// Whether a range can be described at all (else the initiator sends PERSIST).
    pub fn fits(offset: u64, length: u64) -> bool {
        offset <= WRITE_DATA_OFFSET_MAX && length <= WRITE_DATA_LENGTH_MAX
    }

    /// The 64-bit immediate; refuses an offset or length its field cannot hold.
    pub fn encode(&self) -> Result<u64, EncodeError> {
        let err = |field: &'static str, v: u64, max: u64| EncodeError {
            msg: "write data",
            field,
            why: format!("{v} exceeds the field's maximum of {max}"),
        };
        if self.offset > WRITE_DATA_OFFSET_MAX {
            return Err(err("offset", self.offset, WRITE_DATA_OFFSET_MAX));
        }
        if self.length > WRITE_DATA_LENGTH_MAX {
            return Err(err("length", self.length, WRITE_DATA_LENGTH_MAX));
        }
        let mut d = self.offset | (self.length << WRITE_DATA_LENGTH_SHIFT);
        if self.relaxed {
            d |= WRITE_DATA_RELAXED;
        }
        if self.deep {
            d |= WRITE_DATA_DEEP;
        }
        Ok(d)
    }

    /// Decodes any `u64` (total: every bit pattern is a well-formed description).
    pub fn decode(d: u64) -> WriteData {
        WriteData {
            relaxed: d & WRITE_DATA_RELAXED != 0,
            deep: d & WRITE_DATA_DEEP != 0,
            offset: d & WRITE_DATA_OFFSET_MAX,
            length: (d >> WRITE_DATA_LENGTH_SHIFT) & WRITE_DATA_LENGTH_MAX,
        }
    }
}
