//! Part headers: the on-media [`PartHeader`] (one 2 KiB slot), its decoding with errors that
//! name the field, and the crash-safe double-slot update of the 4 KiB header region.
//!
//! Byte map and rationale: `docs/FORMAT.md`. All integers are little-endian.
//!
//! The 4 KiB header region at the start of a part holds two copies (slots) of the header, each
//! with a sequence number. An update writes the new header to slot 1, persists it, then to slot 0
//! and persists it. Reading takes the valid slot with the highest sequence number, so a crash at
//! any moment leaves either the old or the new header readable (proven in
//! `tests/header_crash.rs` with the recording persister), and a corrupt slot is reported (and
//! repairable) rather than silently used.

use crate::persist::{Flags, PersistError};
use crate::region::Persister;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// Bytes of the header region at the start of each part (like PMDK's `POOL_HDR_SIZE`).
pub const HEADER_REGION_BYTES: usize = 4096;
/// Bytes of one header slot.
pub const HEADER_SLOT_BYTES: usize = 2048;
/// The signature at offset 0 of every slot.
pub const SIGNATURE: [u8; 8] = *b"RSPMPOOL";
/// The format major version this code writes and reads.
pub const MAJOR: u32 = 1;
/// Longest layout name in bytes (the field is NUL-padded, so one byte is always NUL).
pub const LAYOUT_MAX: usize = 63;

/// Compatible features this code knows (none yet).
pub const COMPAT_KNOWN: u32 = 0;
/// Incompatible feature: only part 0 of each replica has a header (`OPTION SINGLEHDR`).
pub const INCOMPAT_SINGLEHDR: u32 = 0x0001;
/// Incompatible feature: `stale_replicas` marks replicas that missed updates (set exactly when
/// the bitmap is not all zero), so a build that does not know it refuses the pool instead of
/// trusting a stale replica.
pub const INCOMPAT_STALE: u32 = 0x0002;
/// Incompatible features this code understands; any other bit makes open fail.
pub const INCOMPAT_KNOWN: u32 = INCOMPAT_SINGLEHDR | INCOMPAT_STALE;
/// Replicas the `stale_replicas` bitmap can name (indices `0..STALE_REPLICAS_MAX`).
pub const STALE_REPLICAS_MAX: usize = 256;
/// Read-only-compatible features this code understands (none yet); others force read-only.
pub const RO_COMPAT_KNOWN: u32 = 0;

/// ELF machine number of x86-64 (`EM_X86_64`).
pub const MACHINE_X86_64: u16 = 62;
/// `machine_class` for 64-bit machines (`ELFCLASS64`).
pub const CLASS_64: u8 = 2;
/// `data` for little-endian machines (`ELFDATA2LSB`).
pub const DATA_LE: u8 = 1;

/// One header slot, exactly as on media (2048 bytes, little-endian, no padding).
#[derive(Clone, FromBytes, IntoBytes, KnownLayout, Immutable, PartialEq, Eq)]
#[repr(C)]
pub struct PartHeader {
    /// [`SIGNATURE`].
    pub signature: [u8; 8],
    /// Format major version ([`MAJOR`]).
    pub major: U32,
    /// Compatible feature flags (unknown bits are ignored).
    pub compat: U32,
    /// Incompatible feature flags (unknown bits refuse the open).
    pub incompat: U32,
    /// Read-only-compatible feature flags (unknown bits allow read-only use only).
    pub ro_compat: U32,
    /// Update sequence number of this slot; the higher valid slot wins.
    pub seq: U64,
    /// UUID shared by every part of every replica of the pool.
    pub poolset_uuid: [u8; 16],
    /// UUID of this part.
    pub uuid: [u8; 16],
    /// UUID of the previous part of this replica (cyclic).
    pub prev_part_uuid: [u8; 16],
    /// UUID of the next part of this replica (cyclic).
    pub next_part_uuid: [u8; 16],
    /// UUID of part 0 of the previous replica (cyclic).
    pub prev_repl_uuid: [u8; 16],
    /// UUID of part 0 of the next replica (cyclic).
    pub next_repl_uuid: [u8; 16],
    /// Creation time, seconds since the Unix epoch.
    pub crtime: U64,
    /// Alignment descriptor of basic types ([`alignment_desc`]).
    pub alignment_desc: U64,
    /// [`CLASS_64`].
    pub machine_class: u8,
    /// [`DATA_LE`].
    pub data: u8,
    /// [`MACHINE_X86_64`].
    pub machine: U16,
    /// Must be zero.
    pub arch_reserved: [u8; 4],
    /// Layout name, UTF-8, NUL-padded (at most [`LAYOUT_MAX`] bytes).
    pub layout: [u8; 64],
    /// Size of this part's file in bytes.
    pub part_size: U64,
    /// Usable bytes of the pool (identical in every header of every replica).
    pub pool_size: U64,
    /// Index of this part within its replica.
    pub part_index: U32,
    /// Number of parts of this replica.
    pub part_count: U32,
    /// Index of this part's replica (0 = primary).
    pub replica_index: U32,
    /// Number of replicas in the pool set.
    pub replica_count: U32,
    /// Bitmap of replicas (bit `r % 8` of byte `r / 8`) known to have missed updates, kept in
    /// the part-0 header of every healthy local replica (the primary's decides); see
    /// [`INCOMPAT_STALE`].
    pub stale_replicas: [u8; 32],
    /// Must be zero.
    pub reserved: [u8; 1760],
    /// CRC-32 (IEEE, `crc32fast`) of the 2048 slot bytes with this field zero.
    pub checksum: U32,
    /// Must be zero.
    pub checksum_reserved: [u8; 4],
}

impl std::fmt::Debug for PartHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartHeader")
            .field("major", &self.major.get())
            .field("seq", &self.seq.get())
            .field("incompat", &self.incompat.get())
            .field("uuid", &Uuid(self.uuid))
            .field("poolset_uuid", &Uuid(self.poolset_uuid))
            .field("layout", &self.layout_name())
            .field("part", &(self.part_index.get(), self.part_count.get()))
            .field(
                "replica",
                &(self.replica_index.get(), self.replica_count.get()),
            )
            .field("part_size", &self.part_size.get())
            .field("pool_size", &self.pool_size.get())
            .field("stale_replicas", &self.stale_replicas())
            .finish_non_exhaustive()
    }
}

/// A 16-byte UUID, printed in the usual 8-4-4-4-12 form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// A random (version 4, RFC 4122 variant) UUID from the OS random source.
    pub fn new_v4() -> std::io::Result<Uuid> {
        let mut b = [0u8; 16];
        let mut filled = 0;
        while filled < 16 {
            // SAFETY: the pointer and length describe the unfilled tail of `b`.
            let n = unsafe { libc::getrandom(b[filled..].as_mut_ptr().cast(), 16 - filled, 0) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            filled += n as usize;
        }
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        Ok(Uuid(b))
    }

    /// True for the all-zero UUID.
    pub fn is_nil(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl std::fmt::Display for Uuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Uuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// The alignment descriptor of this build: 4 bits per basic type (u8, u16, u32, u64, f32, f64,
/// pointer, u128), each `align_of - 1`, plus bit 63 set so the value is never zero.
pub fn alignment_desc() -> u64 {
    let aligns = [
        std::mem::align_of::<u8>(),
        std::mem::align_of::<u16>(),
        std::mem::align_of::<u32>(),
        std::mem::align_of::<u64>(),
        std::mem::align_of::<f32>(),
        std::mem::align_of::<f64>(),
        std::mem::align_of::<*const u8>(),
        std::mem::align_of::<u128>(),
    ];
    let mut d = 1u64 << 63;
    for (i, a) in aligns.iter().enumerate() {
        d |= ((*a as u64 - 1) & 0xf) << (4 * i);
    }
    d
}

/// Why a header slot cannot be used. Each variant names the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The region is shorter than a header.
    #[error("header truncated: {len} bytes, need {HEADER_SLOT_BYTES}")]
    Truncated {
        /// Bytes available.
        len: usize,
    },
    /// `signature` is not [`SIGNATURE`] (all zero: no header was ever written).
    #[error("signature: {found:?} is not a pool header signature {SIGNATURE:?}{}", if found == &[0u8; 8] { " (all zero: no pool here)" } else { "" })]
    Signature {
        /// The bytes found.
        found: [u8; 8],
    },
    /// `checksum` does not match the slot's contents.
    #[error("checksum: stored {stored:#010x}, computed {computed:#010x} (header corrupt)")]
    Checksum {
        /// Stored value.
        stored: u32,
        /// Computed value.
        computed: u32,
    },
    /// `major` is not a version this code reads.
    #[error("major: format version {found} is not supported (this build reads {MAJOR})")]
    Version {
        /// Version found.
        found: u32,
    },
    /// `incompat` has bits this code does not understand.
    #[error("incompat: unknown incompatible feature flags {unknown:#x}")]
    Incompat {
        /// The unknown bits.
        unknown: u32,
    },
    /// A must-be-zero field is not zero.
    #[error("{field}: reserved bytes are not zero (first non-zero at byte {offset} of the field)")]
    Reserved {
        /// Field name.
        field: &'static str,
        /// Offset of the first non-zero byte within the field.
        offset: usize,
    },
    /// Architecture flags differ from this machine's.
    #[error("{field}: pool was created on another architecture (found {found:#x}, this machine {expected:#x})")]
    Arch {
        /// Field name.
        field: &'static str,
        /// Value found.
        found: u64,
        /// This machine's value.
        expected: u64,
    },
    /// The layout name is not NUL-terminated UTF-8.
    #[error("layout: not a NUL-padded UTF-8 name")]
    Layout,
    /// A field has an impossible value.
    #[error("{field}: {message}")]
    Invalid {
        /// Field name.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl PartHeader {
    /// An all-zero header (fill in fields, then [`seal`](Self::seal)).
    pub fn zeroed() -> PartHeader {
        PartHeader::new_zeroed()
    }

    /// The layout name (empty when undecodable).
    pub fn layout_name(&self) -> &str {
        let end = self
            .layout
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.layout.len());
        std::str::from_utf8(&self.layout[..end]).unwrap_or("")
    }

    /// Set the layout name; fails when longer than [`LAYOUT_MAX`] bytes or containing NUL.
    pub fn set_layout(&mut self, name: &str) -> Result<(), HeaderError> {
        if name.len() > LAYOUT_MAX || name.as_bytes().contains(&0) {
            return Err(HeaderError::Invalid {
                field: "layout",
                message: format!(
                    "layout name of {} bytes is longer than {LAYOUT_MAX} or contains NUL",
                    name.len()
                ),
            });
        }
        self.layout = [0; 64];
        self.layout[..name.len()].copy_from_slice(name.as_bytes());
        Ok(())
    }

    /// Set the architecture fields to this machine's.
    pub fn set_arch(&mut self) {
        self.alignment_desc = U64::new(alignment_desc());
        self.machine_class = CLASS_64;
        self.data = DATA_LE;
        self.machine = U16::new(MACHINE_X86_64);
    }

    /// Compute the checksum over the slot with the checksum field zero.
    pub fn compute_checksum(&self) -> u32 {
        let mut h = crc32fast::Hasher::new();
        let bytes = self.as_bytes();
        let at = std::mem::offset_of!(PartHeader, checksum);
        h.update(&bytes[..at]);
        h.update(&[0u8; 4]);
        h.update(&bytes[at + 4..]);
        h.finalize()
    }

    /// Replicas marked stale in `stale_replicas`, in index order.
    pub fn stale_replicas(&self) -> Vec<usize> {
        (0..STALE_REPLICAS_MAX)
            .filter(|&r| self.stale_replicas[r / 8] & (1 << (r % 8)) != 0)
            .collect()
    }

    /// Mark (`stale == true`) or clear replica `r` in `stale_replicas` and keep the
    /// [`INCOMPAT_STALE`] flag in step. `r` must be below [`STALE_REPLICAS_MAX`].
    pub fn set_replica_stale(&mut self, r: usize, stale: bool) {
        assert!(
            r < STALE_REPLICAS_MAX,
            "replica {r} cannot be recorded (bitmap of {STALE_REPLICAS_MAX})"
        );
        if stale {
            self.stale_replicas[r / 8] |= 1 << (r % 8);
        } else {
            self.stale_replicas[r / 8] &= !(1 << (r % 8));
        }
        let any = self.stale_replicas.iter().any(|&b| b != 0);
        let flags = self.incompat.get() & !INCOMPAT_STALE;
        self.incompat
            .set(if any { flags | INCOMPAT_STALE } else { flags });
    }

    /// Store the checksum.
    pub fn seal(&mut self) {
        self.checksum = U32::new(self.compute_checksum());
    }

    /// Decode and validate one slot: signature, checksum, version, incompatible flags, reserved
    /// bytes, architecture, layout encoding and internal consistency.
    pub fn decode(bytes: &[u8]) -> Result<PartHeader, HeaderError> {
        let Some(b) = bytes.get(..HEADER_SLOT_BYTES) else {
            return Err(HeaderError::Truncated { len: bytes.len() });
        };
        // A `FromBytes` type of exactly this length: cannot fail.
        let h =
            PartHeader::read_from_bytes(b).map_err(|_| HeaderError::Truncated { len: b.len() })?;
        if h.signature != SIGNATURE {
            return Err(HeaderError::Signature { found: h.signature });
        }
        let computed = h.compute_checksum();
        if computed != h.checksum.get() {
            return Err(HeaderError::Checksum {
                stored: h.checksum.get(),
                computed,
            });
        }
        if h.major.get() != MAJOR {
            return Err(HeaderError::Version {
                found: h.major.get(),
            });
        }
        let unknown = h.incompat.get() & !INCOMPAT_KNOWN;
        if unknown != 0 {
            return Err(HeaderError::Incompat { unknown });
        }
        for (field, bytes) in [
            ("arch_reserved", &h.arch_reserved[..]),
            ("reserved", &h.reserved[..]),
            ("checksum_reserved", &h.checksum_reserved[..]),
        ] {
            if let Some(offset) = bytes.iter().position(|&x| x != 0) {
                return Err(HeaderError::Reserved { field, offset });
            }
        }
        for (field, found, expected) in [
            ("alignment_desc", h.alignment_desc.get(), alignment_desc()),
            ("machine_class", h.machine_class as u64, CLASS_64 as u64),
            ("data", h.data as u64, DATA_LE as u64),
            ("machine", h.machine.get() as u64, MACHINE_X86_64 as u64),
        ] {
            if found != expected {
                return Err(HeaderError::Arch {
                    field,
                    found,
                    expected,
                });
            }
        }
        let end = h
            .layout
            .iter()
            .position(|&b| b == 0)
            .ok_or(HeaderError::Layout)?;
        if std::str::from_utf8(&h.layout[..end]).is_err() || h.layout[end..].iter().any(|&b| b != 0)
        {
            return Err(HeaderError::Layout);
        }
        let invalid = |field, message: String| Err(HeaderError::Invalid { field, message });
        if h.part_count.get() == 0 || h.part_index.get() >= h.part_count.get() {
            return invalid(
                "part_index",
                format!(
                    "part {} of {} parts",
                    h.part_index.get(),
                    h.part_count.get()
                ),
            );
        }
        if h.replica_count.get() == 0 || h.replica_index.get() >= h.replica_count.get() {
            return invalid(
                "replica_index",
                format!(
                    "replica {} of {} replicas",
                    h.replica_index.get(),
                    h.replica_count.get()
                ),
            );
        }
        let stale_any = h.stale_replicas.iter().any(|&b| b != 0);
        if stale_any != (h.incompat.get() & INCOMPAT_STALE != 0) {
            return invalid(
                "stale_replicas",
                format!(
                    "bitmap {} but incompat STALE is {}",
                    if stale_any { "not empty" } else { "empty" },
                    if stale_any { "clear" } else { "set" }
                ),
            );
        }
        if let Some(r) = h
            .stale_replicas()
            .into_iter()
            .find(|&r| r >= h.replica_count.get() as usize)
        {
            return invalid(
                "stale_replicas",
                format!(
                    "replica {r} marked stale in a pool set of {} replicas",
                    h.replica_count.get()
                ),
            );
        }
        if h.uuid == [0; 16] {
            return invalid("uuid", "part UUID is nil".into());
        }
        if h.poolset_uuid == [0; 16] {
            return invalid("poolset_uuid", "pool set UUID is nil".into());
        }
        Ok(h)
    }
}

/// The result of reading a header region.
#[derive(Clone, Debug)]
pub struct HeaderRead {
    /// The header in force (the valid slot with the highest sequence number).
    pub header: PartHeader,
    /// Slots that need rewriting (corrupt, or older after an interrupted update), with why.
    pub stale: Vec<(usize, StaleSlot)>,
}

/// Why a slot is not current.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StaleSlot {
    /// The slot does not decode.
    Corrupt(HeaderError),
    /// The slot is valid but older (an update was interrupted).
    Older {
        /// Its sequence number.
        seq: u64,
    },
    /// Same sequence number, different contents (should never happen; treated as corruption).
    Differs,
}

/// Errors reading a header region: both slots are unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", if .slot0 == .slot1 { format!("{slot0}") } else { format!("slot 0: {slot0}; slot 1: {slot1}") })]
pub struct RegionError {
    /// Why slot 0 is unusable.
    pub slot0: HeaderError,
    /// Why slot 1 is unusable.
    pub slot1: HeaderError,
}

impl RegionError {
    /// The error of slot 0 (both are usually the same).
    pub fn primary(&self) -> &HeaderError {
        &self.slot0
    }
}

/// Read the header region at `off` of `p`.
pub fn read_region(p: &dyn Persister, off: usize) -> Result<HeaderRead, RegionError> {
    let mut buf = vec![0u8; HEADER_REGION_BYTES];
    p.read(off, &mut buf);
    decode_region(&buf)
}

/// Decode a 4 KiB header region already in memory.
pub fn decode_region(buf: &[u8]) -> Result<HeaderRead, RegionError> {
    let s0 = PartHeader::decode(buf.get(..HEADER_SLOT_BYTES).unwrap_or(&[]));
    let s1 = PartHeader::decode(buf.get(HEADER_SLOT_BYTES..).unwrap_or(&[]));
    match (s0, s1) {
        (Err(slot0), Err(slot1)) => Err(RegionError { slot0, slot1 }),
        (Ok(h), Err(e)) => Ok(HeaderRead {
            header: h,
            stale: vec![(1, StaleSlot::Corrupt(e))],
        }),
        (Err(e), Ok(h)) => Ok(HeaderRead {
            header: h,
            stale: vec![(0, StaleSlot::Corrupt(e))],
        }),
        (Ok(a), Ok(b)) => {
            let (sa, sb) = (a.seq.get(), b.seq.get());
            Ok(if sa > sb {
                HeaderRead {
                    header: a,
                    stale: vec![(1, StaleSlot::Older { seq: sb })],
                }
            } else if sb > sa {
                HeaderRead {
                    header: b,
                    stale: vec![(0, StaleSlot::Older { seq: sa })],
                }
            } else if a == b {
                HeaderRead {
                    header: a,
                    stale: vec![],
                }
            } else {
                // Same sequence, different bytes: cannot both be what we wrote. Slot 0 is
                // written last by an update, so prefer it and rewrite slot 1.
                HeaderRead {
                    header: a,
                    stale: vec![(1, StaleSlot::Differs)],
                }
            })
        }
    }
}

/// Write `h` (with the sequence number set to `seq`, sealed) into both slots of the region at
/// `off`, crash-safely: slot 1 first, persisted, then slot 0, persisted.
///
/// Precondition for crash safety: before the call the region holds a valid header with sequence
/// number below `seq` in slot 0 (or nothing, at creation). Otherwise a crash after slot 1 is
/// written could leave two valid slots of equal or inverted age; this is a programmer error and
/// panics.
pub fn write_region(
    p: &dyn Persister,
    off: usize,
    h: &PartHeader,
    seq: u64,
) -> Result<(), PersistError> {
    let mut slot0 = vec![0u8; HEADER_SLOT_BYTES];
    p.read(off, &mut slot0);
    if let Ok(cur) = PartHeader::decode(&slot0) {
        assert!(
            cur.seq.get() < seq,
            "write_region: slot 0 holds seq {}, not below the new seq {seq}",
            cur.seq.get()
        );
    }
    let mut h = h.clone();
    h.seq = U64::new(seq);
    h.seal();
    // Slot 1 must be durable before slot 0 changes: then a torn slot 0 always has a valid newer
    // slot 1 to fall back to, and a torn slot 1 the old slot 0.
    p.memcpy_persist(off + HEADER_SLOT_BYTES, h.as_bytes(), Flags::NONE)?;
    p.memcpy_persist(off, h.as_bytes(), Flags::NONE)?;
    Ok(())
}

/// Rewrite the stale slots reported by [`read_region`] from the current header.
pub fn repair_region(p: &dyn Persister, off: usize, read: &HeaderRead) -> Result<(), PersistError> {
    for (slot, _) in &read.stale {
        // The current header is valid and sealed; copying it keeps the sequence number.
        p.memcpy_persist(
            off + slot * HEADER_SLOT_BYTES,
            read.header.as_bytes(),
            Flags::NONE,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crash::Recorder;

    pub(crate) fn sample() -> PartHeader {
        let mut h = PartHeader::zeroed();
        h.signature = SIGNATURE;
        h.major = U32::new(MAJOR);
        h.poolset_uuid = Uuid::new_v4().unwrap().0;
        h.uuid = Uuid::new_v4().unwrap().0;
        h.part_count = U32::new(1);
        h.replica_count = U32::new(1);
        h.set_arch();
        h.set_layout("test").unwrap();
        h.seal();
        h
    }

    #[test]
    fn round_trip() {
        let h = sample();
        let back = PartHeader::decode(h.as_bytes()).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.layout_name(), "test");
    }

    #[test]
    fn uuid_v4_bits_and_format() {
        let u = Uuid::new_v4().unwrap();
        assert_eq!(u.0[6] >> 4, 4);
        assert_eq!(u.0[8] >> 6, 2);
        let s = u.to_string();
        assert_eq!(s.len(), 36);
        assert_ne!(Uuid::new_v4().unwrap(), u);
    }

    #[test]
    fn errors_name_fields() {
        let mut h = sample();
        h.major = U32::new(7);
        h.seal();
        assert_eq!(
            PartHeader::decode(h.as_bytes()),
            Err(HeaderError::Version { found: 7 })
        );
        let mut h = sample();
        h.incompat = U32::new(0x80);
        h.seal();
        assert!(PartHeader::decode(h.as_bytes())
            .unwrap_err()
            .to_string()
            .starts_with("incompat:"));
        let mut h = sample();
        h.reserved[10] = 1;
        h.seal();
        assert_eq!(
            PartHeader::decode(h.as_bytes()),
            Err(HeaderError::Reserved {
                field: "reserved",
                offset: 10
            })
        );
        let z = [0u8; HEADER_SLOT_BYTES];
        assert!(PartHeader::decode(&z)
            .unwrap_err()
            .to_string()
            .contains("no pool here"));
        assert!(sample().set_layout(&"x".repeat(64)).is_err());
    }

    #[test]
    #[should_panic(expected = "slot 0 holds seq 2, not below the new seq 2")]
    fn write_region_asserts_a_newer_seq() {
        let r = Recorder::new(HEADER_REGION_BYTES);
        write_region(&r, 0, &sample(), 2).unwrap();
        write_region(&r, 0, &sample(), 2).unwrap();
    }

    #[test]
    fn region_prefers_newer_and_reports_stale() {
        let r = Recorder::new(HEADER_REGION_BYTES);
        let h = sample();
        write_region(&r, 0, &h, 1).unwrap();
        let read = read_region(&r, 0).unwrap();
        assert!(read.stale.is_empty());
        // Corrupt slot 0: slot 1 is used and slot 0 reported.
        r.write(5, &[0xAA]);
        let read = read_region(&r, 0).unwrap();
        assert_eq!(read.header.seq.get(), 1);
        assert!(matches!(read.stale[..], [(0, StaleSlot::Corrupt(_))]));
        repair_region(&r, 0, &read).unwrap();
        assert!(read_region(&r, 0).unwrap().stale.is_empty());
    }
}
