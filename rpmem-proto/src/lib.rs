//! rpmem-proto: the wire codec shared by rpmem (initiator) and rpmemd (target).
//!
//! What it owns: the byte layout of every control-channel and data-lane message
//! (docs/PROTOCOL.md is the normative byte map), typed encode/decode, framing over
//! `std::io::Read`/`Write`, and the pure rules of the session (version negotiation, which message
//! is legal when).
//!
//! Architecture invariants:
//! - no I/O beyond the `Read`/`Write` framing helpers; no sockets, no libfabric, no files;
//! - nothing a peer sends can panic the decoder or make it allocate more than [`MAX_BODY_LEN`];
//! - malformed bytes are a [`DecodeError`] naming the field, well-formed but illegal messages a
//!   [`ProtocolError`];
//! - wire structs ([`wire`]) are never media structs; every integer is fixed-width little-endian.

pub mod error;
pub mod frame;
pub mod inline;
pub mod msg;
pub mod session;
pub mod types;
pub mod wire;
pub mod write_data;

use std::time::Duration;

pub use error::{DecodeError, ProtocolError};
pub use frame::{
    decode, decode_header, decode_lane_frame, encode, encode_into, read_message, write_message,
    FrameHead, LaneConnect, LaneFrame, ReadError, WriteError,
};
pub use inline::{InlineBatch, InlineRecord, InlineRecords};
pub use msg::{check_range, EncodeError, Hello, HelloResp, Message, PoolRequest, PoolResp};
pub use types::{
    Capabilities, MsgType, PersistMethod, PoolAttr, Provider, Secret, Status, UnknownStatus,
    SECRET_LEN,
};
pub use write_data::WriteData;

/// Protocol major version: bumped for any incompatible change of a byte map.
pub const PROTO_MAJOR: u16 = 1;
/// Protocol minor version: bumped when message types or capability bits are added.
pub const PROTO_MINOR: u16 = 2;

/// Frame magic, bytes `R P M F` on the wire.
pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"RPMF");
/// HELLO/HELLO_RESP magic, bytes `R P M H` on the wire.
pub const HELLO_MAGIC: u32 = u32::from_le_bytes(*b"RPMH");
/// Lane connection-data magic, bytes `R P M L` on the wire.
pub const LANE_MAGIC: u32 = u32::from_le_bytes(*b"RPML");

/// Size of the frame header.
pub const HEADER_LEN: usize = 16;
/// Largest body a receiver accepts; a header announcing more is refused before reading on.
pub const MAX_BODY_LEN: u32 = 64 * 1024;
/// Largest pool descriptor (bytes of UTF-8, like PATH_MAX without the NUL).
pub const MAX_DESCRIPTOR_LEN: usize = 4095;
/// Largest ERROR text.
pub const MAX_ERROR_TEXT_LEN: usize = 1024;
/// Largest lane count a request may ask for.
pub const MAX_LANES: u32 = 1024;
/// Largest frame on a data lane (a PERSIST: header + 24 bytes). Lane receive buffers must hold
/// at least this much.
pub const LANE_FRAME_MAX: usize = HEADER_LEN + 24;
/// Largest PERSIST_INLINE frame (protocol 1.2): rpmemd's lane receive buffers hold this much.
pub const LANE_INLINE_FRAME_MAX: usize = 4096;
/// Size of the lane connection-request data.
pub const LANE_CONNECT_LEN: usize = 48;

/// Default deadline for any control-channel reply (HELLO_RESP, CREATE_RESP, ...).
pub const DEFAULT_CONTROL_DEADLINE: Duration = Duration::from_secs(10);
/// Default deadline for all lanes to connect after CREATE_RESP/OPEN_RESP.
pub const DEFAULT_LANE_CONNECT_DEADLINE: Duration = Duration::from_secs(10);
/// Default deadline for a PERSIST_RESP.
pub const DEFAULT_PERSIST_DEADLINE: Duration = Duration::from_secs(5);

const _: () = assert!(HEADER_LEN == std::mem::size_of::<wire::FrameHeader>());
const _: () = assert!(LANE_CONNECT_LEN == std::mem::size_of::<wire::LaneConnectWire>());
const _: () = assert!(LANE_FRAME_MAX == HEADER_LEN + std::mem::size_of::<wire::PersistWire>());
const _: () = assert!(MAX_DESCRIPTOR_LEN <= u16::MAX as usize);
const _: () = assert!(MAX_ERROR_TEXT_LEN <= u16::MAX as usize);

/// Fuzzing entry point (fuzz/fuzz_targets/rpmem_decode.rs): feeds `data` to every decoder a peer
/// can reach and checks that whatever decodes re-encodes to exactly the same bytes.
///
/// Panics only if that property is violated, which is a codec bug the fuzzer should report.
pub fn fuzz_decode(data: &[u8]) {
    // Whole frame, as a lane receive buffer is decoded.
    if let Ok(m) = decode(data) {
        let again = encode(&m).expect("a decoded message re-encodes");
        assert_eq!(again, data, "decode -> encode changed the bytes of {m:?}");
    }
    // Lane framing (rpmemd's lanes): accepts exactly what `decode` accepts, with the same records.
    match (decode_lane_frame(data), decode(data)) {
        (
            Ok(LaneFrame::Inline(r)),
            Ok(Message::PersistInline {
                lane,
                relaxed,
                seq,
                records,
            }),
        ) => {
            assert_eq!((r.lane, r.relaxed, r.seq), (lane, relaxed, seq));
            assert_eq!(r.to_owned_records(), records);
        }
        (Ok(LaneFrame::Message(a)), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("lane decode {a:?} disagrees with decode {b:?}"),
    }
    // Stream framing, as the control channel is read: same property for the consumed prefix.
    let mut cursor = std::io::Cursor::new(data);
    if let Ok(m) = read_message(&mut cursor) {
        let used = cursor.position() as usize;
        let again = encode(&m).expect("a decoded message re-encodes");
        assert_eq!(again, &data[..used]);
    }
    // Write data (the first 8 bytes as the provider would hand them over): total, identity.
    if let Some(d) = data.first_chunk::<8>() {
        let d = u64::from_le_bytes(*d);
        let wd = WriteData::decode(d);
        assert_eq!(wd.encode(), Ok(d), "write data {d:#x} does not re-encode");
    }
    // Lane connection data.
    if let Ok(c) = LaneConnect::decode(data) {
        assert_eq!(c.encode().as_slice(), data);
    }
    // Every body decoder directly, with the first two bytes choosing the type.
    if let Some((t, body)) = data.split_first_chunk::<2>() {
        let ty = MsgType::ALL[usize::from(u16::from_le_bytes(*t)) % MsgType::ALL.len()];
        if let Ok(m) = Message::decode_body(ty, body) {
            let mut again = Vec::new();
            m.encode_body(&mut again)
                .expect("a decoded message re-encodes");
            assert_eq!(again, body);
        }
    }
}
