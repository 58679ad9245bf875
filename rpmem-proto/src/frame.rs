//! Framing: the 16-byte header, whole-frame encode/decode, blocking `Read`/`Write` helpers, and
//! the (unframed) lane connection-request data.
//!
//! The header is checked in this order: magic, body length (so a hostile length is refused
//! before a single body byte is read or allocated), type, reserved fields.

use std::io::{self, Read, Write};

use zerocopy::{FromBytes, IntoBytes};

use crate::error::DecodeError;
use crate::inline::InlineRecords;
use crate::msg::{EncodeError, Message};
use crate::types::{MsgType, Secret};
use crate::wire::{FrameHeader, LaneConnectWire};
use crate::{FRAME_MAGIC, HEADER_LEN, LANE_CONNECT_LEN, LANE_MAGIC, MAX_BODY_LEN};

/// A checked frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHead {
    pub msg_type: MsgType,
    pub body_len: u32,
}

/// Decodes and checks a frame header.
pub fn decode_header(bytes: &[u8; HEADER_LEN]) -> Result<FrameHead, DecodeError> {
    // HEADER_LEN == size_of::<FrameHeader>() is asserted in lib.rs, so this cannot fail; map it
    // to a decode error anyway rather than unwrap.
    let h = FrameHeader::ref_from_bytes(bytes).map_err(|_| DecodeError::Truncated {
        msg: "frame header",
        field: "header",
    })?;
    if h.magic.get() != FRAME_MAGIC {
        return Err(DecodeError::BadMagic {
            found: h.magic.get(),
        });
    }
    let body_len = h.body_len.get();
    if body_len > MAX_BODY_LEN {
        return Err(DecodeError::BodyTooLarge {
            len: body_len,
            max: MAX_BODY_LEN,
        });
    }
    let raw = h.msg_type.get();
    let msg_type = MsgType::from_wire(raw).ok_or(DecodeError::UnknownType(raw))?;
    if h.flags.get() != 0 {
        return Err(DecodeError::bad(
            "frame header",
            "flags",
            format!("reserved, must be 0 but is {:#x}", h.flags.get()),
        ));
    }
    if h.reserved.get() != 0 {
        return Err(DecodeError::bad(
            "frame header",
            "reserved",
            format!("reserved, must be 0 but is {:#x}", h.reserved.get()),
        ));
    }
    Ok(FrameHead { msg_type, body_len })
}

/// Appends one complete frame (header and body) to `out`.
pub fn encode_into(msg: &Message, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    if let Err(e) = msg.encode_body(out) {
        out.truncate(start);
        return Err(e);
    }
    let body_len = out.len() - start - HEADER_LEN;
    // Every message's largest encoding is far below MAX_BODY_LEN (a test pins the largest one);
    // this check guards future messages.
    let body_len = u32::try_from(body_len)
        .ok()
        .filter(|l| *l <= MAX_BODY_LEN)
        .ok_or_else(|| {
            out.truncate(start);
            EncodeError {
                msg: msg.msg_type().name(),
                field: "body",
                why: format!("is {body_len} bytes, over the maximum of {MAX_BODY_LEN}"),
            }
        })?;
    let header = FrameHeader {
        magic: FRAME_MAGIC.into(),
        msg_type: msg.msg_type().to_wire().into(),
        flags: 0.into(),
        body_len: body_len.into(),
        reserved: 0.into(),
    };
    out[start..start + HEADER_LEN].copy_from_slice(header.as_bytes());
    Ok(())
}

/// One complete frame as bytes.
pub fn encode(msg: &Message) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(64);
    encode_into(msg, &mut out)?;
    Ok(out)
}

/// Decodes exactly one frame: `frame` must hold the header and the whole body and nothing more
/// (a lane receive buffer, for instance).
pub fn decode(frame: &[u8]) -> Result<Message, DecodeError> {
    let (head, body) = split_frame(frame)?;
    Message::decode_body(head.msg_type, body)
}

/// A frame received on a data lane: a PERSIST_INLINE, checked but not copied, or any other
/// message.
#[derive(Debug)]
pub enum LaneFrame<'a> {
    Inline(InlineRecords<'a>),
    Message(Message),
}

/// Decodes one whole frame as rpmemd's lanes do: exactly as [`decode`], except that a
/// PERSIST_INLINE is checked in place instead of copied into a [`Message`].
pub fn decode_lane_frame(frame: &[u8]) -> Result<LaneFrame<'_>, DecodeError> {
    let (head, body) = split_frame(frame)?;
    if head.msg_type == MsgType::PersistInline {
        return InlineRecords::parse(body).map(LaneFrame::Inline);
    }
    Message::decode_body(head.msg_type, body).map(LaneFrame::Message)
}

/// The checked header and the body of one whole frame (no bytes missing, none after it).
fn split_frame(frame: &[u8]) -> Result<(FrameHead, &[u8]), DecodeError> {
    let Some((head, body)) = frame.split_first_chunk::<HEADER_LEN>() else {
        return Err(DecodeError::Truncated {
            msg: "frame header",
            field: "header",
        });
    };
    let head = decode_header(head)?;
    let want = head.body_len as usize;
    if body.len() < want {
        return Err(DecodeError::Truncated {
            msg: head.msg_type.name(),
            field: "frame body",
        });
    }
    if body.len() > want {
        return Err(DecodeError::TrailingBytes {
            msg: "frame",
            extra: body.len() - want,
        });
    }
    Ok((head, body))
}

/// Failure to read a message from a stream.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The stream ended cleanly between frames: the peer closed the channel.
    #[error("the peer closed the channel")]
    Closed,
    /// The stream ended inside a frame.
    #[error("the channel ended in the middle of a frame ({0})")]
    Truncated(&'static str),
    #[error("I/O error on the channel: {0}")]
    Io(#[from] io::Error),
    #[error("malformed message from the peer: {0}")]
    Decode(#[from] DecodeError),
}

/// Failure to write a message to a stream.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("I/O error on the channel: {0}")]
    Io(#[from] io::Error),
}

/// Reads one frame from a blocking stream. Allocates at most [`MAX_BODY_LEN`] bytes, whatever the
/// peer claims. Deadlines are the transport's business (socket timeouts, channel timeouts).
pub fn read_message<R: Read + ?Sized>(r: &mut R) -> Result<Message, ReadError> {
    let mut head = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Err(ReadError::Closed),
            Ok(0) => return Err(ReadError::Truncated("frame header")),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    let head = decode_header(&head)?;
    let mut body = vec![0u8; head.body_len as usize];
    r.read_exact(&mut body).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => ReadError::Truncated(head.msg_type.name()),
        _ => ReadError::Io(e),
    })?;
    Ok(Message::decode_body(head.msg_type, &body)?)
}

/// Encodes `msg` and writes it as one `write_all`, then flushes.
pub fn write_message<W: Write + ?Sized>(w: &mut W, msg: &Message) -> Result<(), WriteError> {
    let frame = encode(msg)?;
    w.write_all(&frame)?;
    w.flush()?;
    Ok(())
}

/// Connection-request data a lane endpoint presents to rpmemd's listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaneConnect {
    /// Protocol version negotiated on the control channel.
    pub major: u16,
    pub minor: u16,
    /// Lane this endpoint serves, below the granted lane count.
    pub lane: u32,
    pub secret: Secret,
}

impl LaneConnect {
    pub fn encode(&self) -> [u8; LANE_CONNECT_LEN] {
        let w = LaneConnectWire {
            magic: LANE_MAGIC.into(),
            major: self.major.into(),
            minor: self.minor.into(),
            lane: self.lane.into(),
            reserved: 0.into(),
            secret: self.secret.0,
        };
        let mut out = [0u8; LANE_CONNECT_LEN];
        out.copy_from_slice(w.as_bytes());
        out
    }

    /// Decodes connection-request data; it must be exactly [`LANE_CONNECT_LEN`] bytes.
    pub fn decode(data: &[u8]) -> Result<LaneConnect, DecodeError> {
        const MSG: &str = "lane connect";
        if data.len() < LANE_CONNECT_LEN {
            return Err(DecodeError::Truncated {
                msg: MSG,
                field: "magic..secret",
            });
        }
        if data.len() > LANE_CONNECT_LEN {
            return Err(DecodeError::TrailingBytes {
                msg: MSG,
                extra: data.len() - LANE_CONNECT_LEN,
            });
        }
        let w = LaneConnectWire::ref_from_bytes(data).map_err(|_| DecodeError::Truncated {
            msg: MSG,
            field: "magic..secret",
        })?;
        if w.magic.get() != LANE_MAGIC {
            return Err(DecodeError::bad(
                MSG,
                "magic",
                format!("{:#010x}, expected {LANE_MAGIC:#010x}", w.magic.get()),
            ));
        }
        if w.reserved.get() != 0 {
            return Err(DecodeError::bad(
                MSG,
                "reserved",
                format!("reserved, must be 0 but is {:#x}", w.reserved.get()),
            ));
        }
        Ok(LaneConnect {
            major: w.major.get(),
            minor: w.minor.get(),
            lane: w.lane.get(),
            secret: Secret(w.secret),
        })
    }
}
