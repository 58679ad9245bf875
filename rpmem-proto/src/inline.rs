//! PERSIST_INLINE (protocol 1.2, capability INLINE_PERSIST): persists that carry their bytes.
//!
//! rpmemd copies the records of one message into the pool and makes them durable before it
//! stores the message with the next sequence number, whichever lane that one arrives on. So an
//! initiator may send several of them without waiting for the answers, and the target still
//! makes them durable in the order the initiator copied their bytes — which RMA writes cannot
//! promise (their bytes land when they arrive, ahead of the PERSIST before them, and two lanes'
//! writes of one cache line land in either order).
//!
//! [`InlineBatch`] builds one frame in place (the initiator copies pool bytes straight into
//! it), [`InlineRecords`] checks a received body and iterates it without copying (rpmemd), and
//! [`InlineRecord`] is the owned form inside [`crate::Message::PersistInline`]. Byte map:
//! docs/PROTOCOL.md §8.6.

use zerocopy::{FromBytes, IntoBytes};

use crate::error::DecodeError;
use crate::msg::PERSIST_RELAXED;
use crate::types::MsgType;
use crate::wire::{FrameHeader, InlineRecordWire, PersistInlineWire};
use crate::{FRAME_MAGIC, HEADER_LEN, LANE_INLINE_FRAME_MAX};

/// Largest PERSIST_INLINE body.
pub const INLINE_BODY_MAX: usize = LANE_INLINE_FRAME_MAX - HEADER_LEN;
/// Bytes of the fixed part of the body (`lane`, `flags`, `seq`).
pub const INLINE_FIXED_LEN: usize = std::mem::size_of::<PersistInlineWire>();
/// Bytes of a record header (`offset`, `length`, `reserved`).
pub const INLINE_RECORD_HEADER_LEN: usize = std::mem::size_of::<InlineRecordWire>();
/// Most data bytes one record (and one message) can carry.
pub const INLINE_DATA_MAX: usize = INLINE_BODY_MAX - INLINE_FIXED_LEN - INLINE_RECORD_HEADER_LEN;

const _: () = assert!(INLINE_DATA_MAX.is_multiple_of(8));

const MSG: &str = "PERSIST_INLINE";

fn padded(len: usize) -> usize {
    (len + 7) & !7
}

/// One record, owned: `data` is to be stored at pool offset `offset`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InlineRecord {
    pub offset: u64,
    pub data: Vec<u8>,
}

/// A checked PERSIST_INLINE body, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct InlineRecords<'a> {
    pub lane: u32,
    pub relaxed: bool,
    /// Session-wide sequence number (≥ 1).
    pub seq: u64,
    /// The records part of the body (after the fixed part), already checked.
    records: &'a [u8],
    count: usize,
}

impl<'a> InlineRecords<'a> {
    /// Checks a whole body: size, flags, at least one record, every record's length (1 ..=
    /// [`INLINE_DATA_MAX`]), reserved fields and padding zero, no trailing bytes.
    pub fn parse(body: &'a [u8]) -> Result<InlineRecords<'a>, DecodeError> {
        if body.len() > INLINE_BODY_MAX {
            return Err(DecodeError::bad(
                MSG,
                "body_len",
                format!(
                    "{} bytes, the maximum is {INLINE_BODY_MAX} (a {LANE_INLINE_FRAME_MAX}-byte \
                     frame)",
                    body.len()
                ),
            ));
        }
        let (fixed, mut rest) =
            PersistInlineWire::ref_from_prefix(body).map_err(|_| DecodeError::Truncated {
                msg: MSG,
                field: "lane..flags",
            })?;
        let flags = fixed.flags.get();
        if fixed.seq.get() == 0 {
            return Err(DecodeError::bad(
                MSG,
                "seq",
                "0, sequence numbers start at 1",
            ));
        }
        if flags & !PERSIST_RELAXED != 0 {
            return Err(DecodeError::bad(
                MSG,
                "flags",
                format!("unknown bits {:#x}", flags & !PERSIST_RELAXED),
            ));
        }
        let records = rest;
        let mut count = 0;
        while !rest.is_empty() {
            let (h, after) =
                InlineRecordWire::ref_from_prefix(rest).map_err(|_| DecodeError::Truncated {
                    msg: MSG,
                    field: "record offset..reserved",
                })?;
            if h.reserved.get() != 0 {
                return Err(DecodeError::bad(
                    MSG,
                    "record reserved",
                    format!("reserved, must be 0 but is {:#x}", h.reserved.get()),
                ));
            }
            let len = h.length.get() as usize;
            if len == 0 || len > INLINE_DATA_MAX {
                return Err(DecodeError::bad(
                    MSG,
                    "record length",
                    format!("{len}, must be 1 ..= {INLINE_DATA_MAX}"),
                ));
            }
            let Some(data_and_pad) = after.get(..padded(len)) else {
                return Err(DecodeError::Truncated {
                    msg: MSG,
                    field: "record data",
                });
            };
            if data_and_pad[len..].iter().any(|&b| b != 0) {
                return Err(DecodeError::bad(
                    MSG,
                    "record padding",
                    "padding after the data must be zero",
                ));
            }
            rest = &after[padded(len)..];
            count += 1;
        }
        if count == 0 {
            return Err(DecodeError::bad(
                MSG,
                "records",
                "a message carries at least one",
            ));
        }
        Ok(InlineRecords {
            lane: fixed.lane.get(),
            relaxed: flags & PERSIST_RELAXED != 0,
            seq: fixed.seq.get(),
            records,
            count,
        })
    }

    /// Number of records (at least 1).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Always false: a checked body has at least one record.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The records in message order: `(offset, data)`.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &'a [u8])> + 'a {
        let mut rest = self.records;
        std::iter::from_fn(move || {
            // parse checked every record, so these splits cannot fail; stop rather than panic.
            let (h, after) = InlineRecordWire::ref_from_prefix(rest).ok()?;
            let len = h.length.get() as usize;
            let data = after.get(..len)?;
            rest = after.get(padded(len)..)?;
            Some((h.offset.get(), data))
        })
    }

    /// Owned copies of the records.
    pub fn to_owned_records(&self) -> Vec<InlineRecord> {
        self.iter()
            .map(|(offset, data)| InlineRecord {
                offset,
                data: data.to_vec(),
            })
            .collect()
    }
}

/// Appends the body of a PERSIST_INLINE (fixed part and records) to `out`.
pub(crate) fn encode_body(
    out: &mut Vec<u8>,
    lane: u32,
    relaxed: bool,
    seq: u64,
    records: &[InlineRecord],
) {
    let flags = if relaxed { PERSIST_RELAXED } else { 0 };
    out.extend_from_slice(
        PersistInlineWire {
            lane: lane.into(),
            flags: flags.into(),
            seq: seq.into(),
        }
        .as_bytes(),
    );
    for r in records {
        put_record(out, r.offset, r.data.len(), |d| d.copy_from_slice(&r.data));
    }
}

fn put_record(out: &mut Vec<u8>, offset: u64, len: usize, fill: impl FnOnce(&mut [u8])) {
    out.extend_from_slice(
        InlineRecordWire {
            offset: offset.into(),
            length: (len as u32).into(),
            reserved: 0.into(),
        }
        .as_bytes(),
    );
    let at = out.len();
    out.resize(at + padded(len), 0);
    fill(&mut out[at..at + len]);
}

/// One PERSIST_INLINE frame being built on the initiator: records are appended (with their
/// data, or reserved to be filled just before sending) until the next one does not fit, then
/// the sequence number is set and [`frame`](Self::frame) gives the bytes to send.
#[derive(Debug)]
pub struct InlineBatch {
    buf: Vec<u8>,
    lane: u32,
    records: usize,
    /// Hull of the records' ranges (for error messages): `(start, end)`.
    hull: Option<(u64, u64)>,
}

impl InlineBatch {
    /// An empty batch for `lane`.
    pub fn new(lane: u32) -> InlineBatch {
        let mut b = InlineBatch {
            buf: Vec::with_capacity(LANE_INLINE_FRAME_MAX),
            lane,
            records: 0,
            hull: None,
        };
        b.clear();
        b
    }

    /// Empties the batch (keeping its buffer).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.buf.resize(HEADER_LEN, 0);
        self.buf.extend_from_slice(
            PersistInlineWire {
                lane: self.lane.into(),
                flags: 0.into(),
                seq: 0.into(),
            }
            .as_bytes(),
        );
        self.records = 0;
        self.hull = None;
    }

    /// True when no record was added.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Whether a record of `len` bytes fits in this batch now.
    pub fn fits(&self, len: usize) -> bool {
        len > 0
            && len <= INLINE_DATA_MAX
            && self.buf.len() + INLINE_RECORD_HEADER_LEN + padded(len) <= LANE_INLINE_FRAME_MAX
    }

    /// Adds a record of `len` bytes for pool offset `offset`; `fill` writes its data. Returns
    /// false (and adds nothing) when it does not fit ([`fits`](Self::fits)).
    pub fn push_with(&mut self, offset: u64, len: usize, fill: impl FnOnce(&mut [u8])) -> bool {
        if !self.fits(len) {
            return false;
        }
        put_record(&mut self.buf, offset, len, fill);
        self.records += 1;
        let end = offset.saturating_add(len as u64);
        self.hull = Some(match self.hull {
            Some((s, e)) => (s.min(offset), e.max(end)),
            None => (offset, end),
        });
        true
    }

    /// Adds a record of `len` bytes for pool offset `offset` whose data is written later by
    /// [`fill`](Self::fill). Returns false (and adds nothing) when it does not fit.
    pub fn reserve(&mut self, offset: u64, len: usize) -> bool {
        self.push_with(offset, len, |_| {})
    }

    /// Calls `f(offset, data)` for every record in order, so the caller writes the data of
    /// records added by [`reserve`](Self::reserve) (or overwrites any record's).
    pub fn fill<E>(&mut self, mut f: impl FnMut(u64, &mut [u8]) -> Result<(), E>) -> Result<(), E> {
        let mut at = HEADER_LEN + INLINE_FIXED_LEN;
        while at < self.buf.len() {
            let Ok((h, _)) = InlineRecordWire::ref_from_prefix(&self.buf[at..]) else {
                break;
            };
            let (offset, len) = (h.offset.get(), h.length.get() as usize);
            let data = at + INLINE_RECORD_HEADER_LEN;
            f(offset, &mut self.buf[data..data + len])?;
            at = data + padded(len);
        }
        Ok(())
    }

    /// Sets the message's session-wide sequence number (≥ 1).
    pub fn set_seq(&mut self, seq: u64) {
        let at = HEADER_LEN + std::mem::offset_of!(PersistInlineWire, seq);
        self.buf[at..at + 8].copy_from_slice(&seq.to_le_bytes());
    }

    /// Hull `(offset, length)` of the records' ranges, for error messages.
    pub fn hull(&self) -> (u64, u64) {
        self.hull.map_or((0, 0), |(s, e)| (s, e - s))
    }

    /// The complete frame (header filled in).
    pub fn frame(&mut self) -> &[u8] {
        let body_len = (self.buf.len() - HEADER_LEN) as u32;
        let h = FrameHeader {
            magic: FRAME_MAGIC.into(),
            msg_type: MsgType::PersistInline.to_wire().into(),
            flags: 0.into(),
            body_len: body_len.into(),
            reserved: 0.into(),
        };
        self.buf[..HEADER_LEN].copy_from_slice(h.as_bytes());
        &self.buf
    }
}
