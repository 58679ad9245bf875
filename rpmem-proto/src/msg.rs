//! Typed messages and their encoding to / decoding from frame bodies.
//!
//! Decoding is strict: every reserved field must be zero, every enum value known, every string
//! length-bounded, valid UTF-8 and NUL-free, and no byte may follow the last field. Together with
//! encoding being a pure function of the typed value, this makes decode → encode reproduce the
//! received bytes exactly (a property test and the fuzz target check it).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::{DecodeError, ProtocolError};
use crate::types::{Capabilities, MsgType, PersistMethod, PoolAttr, Provider, Secret, Status};
use crate::wire::*;
use crate::{HELLO_MAGIC, LANE_FRAME_MAX, MAX_DESCRIPTOR_LEN, MAX_ERROR_TEXT_LEN, MAX_LANES};

/// HELLO: first message of a session, initiator → rpmemd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Highest protocol version the initiator speaks.
    pub major: u16,
    pub minor: u16,
    pub capabilities: Capabilities,
}

/// HELLO_RESP: rpmemd's answer. On `Status::Ok`, `major.minor` is the version the session uses
/// and `capabilities` the common set; on `VersionMismatch` it is rpmemd's own version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloResp {
    pub status: Status,
    pub major: u16,
    pub minor: u16,
    pub capabilities: Capabilities,
}

/// What CREATE and OPEN ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolRequest {
    /// Size of the initiator's local pool; the remote pool must be at least this large.
    pub pool_size: u64,
    /// Lanes requested; rpmemd grants at most this many.
    pub nlanes: u32,
    /// Size of each receive buffer the initiator posts on a lane; at least [`LANE_FRAME_MAX`].
    pub buff_size: u32,
    pub provider: Provider,
    pub persist_method: PersistMethod,
    /// Poolset file, relative to rpmemd's poolset-dir.
    pub descriptor: String,
}

impl PoolRequest {
    /// Semantic checks rpmemd applies before touching any file.
    pub fn check(&self) -> Result<(), ProtocolError> {
        if self.pool_size == 0 {
            return Err(ProtocolError::Illegal {
                field: "pool_size",
                value: 0,
                why: "a pool cannot be empty",
            });
        }
        if self.nlanes == 0 || self.nlanes > MAX_LANES {
            return Err(ProtocolError::Illegal {
                field: "nlanes",
                value: self.nlanes.into(),
                why: "must be between 1 and MAX_LANES",
            });
        }
        if (self.buff_size as usize) < LANE_FRAME_MAX {
            return Err(ProtocolError::Illegal {
                field: "buff_size",
                value: self.buff_size.into(),
                why: "smaller than the largest lane frame (LANE_FRAME_MAX)",
            });
        }
        Ok(())
    }
}

/// What CREATE_RESP and OPEN_RESP grant: how to reach the registered pool memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolResp {
    pub status: Status,
    /// Lanes granted (≤ requested).
    pub nlanes: u32,
    /// Address and port of the data endpoint listener.
    pub addr: IpAddr,
    pub port: u16,
    pub persist_method: PersistMethod,
    pub provider: Provider,
    /// Memory key of the registered pool.
    pub rkey: u64,
    /// Remote virtual address of pool offset 0 (what RMA operations target).
    pub raddr: u64,
    /// Size of the remote pool (≥ the requested size).
    pub pool_size: u64,
    /// Must be presented by every lane endpoint in its connection request.
    pub secret: Secret,
}

/// A decoded message of either channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Hello(Hello),
    HelloResp(HelloResp),
    Create {
        pool: PoolRequest,
        attr: PoolAttr,
    },
    CreateResp(PoolResp),
    Open(PoolRequest),
    OpenResp {
        resp: PoolResp,
        attr: PoolAttr,
    },
    SetAttr(PoolAttr),
    SetAttrResp(Status),
    /// `remove`: delete the pool's parts (and the header) after closing.
    Close {
        remove: bool,
    },
    CloseResp(Status),
    /// `force`: ignore errors while removing; `pool_set`: also remove the poolset file.
    Remove {
        descriptor: String,
        force: bool,
        pool_set: bool,
    },
    RemoveResp(Status),
    /// A request failed. `in_reply_to` is the raw type of the request (0 when none applies).
    Error {
        in_reply_to: u16,
        status: Status,
        message: String,
    },
    /// Make `[offset, offset + length)` of the pool durable; the data was RMA-written before.
    Persist {
        lane: u32,
        relaxed: bool,
        deep: bool,
        offset: u64,
        length: u64,
    },
    /// (1.2) Store each record's bytes at its offset and make them durable, in message order
    /// on the lane (§8.6).
    PersistInline {
        lane: u32,
        relaxed: bool,
        /// Session-wide order over all lanes, from 1.
        seq: u64,
        records: Vec<crate::inline::InlineRecord>,
    },
    PersistResp {
        lane: u32,
        status: Status,
    },
}

/// PERSIST flag: no ordering with respect to later persists is needed (librpmem's RELAXED).
pub const PERSIST_RELAXED: u32 = 1 << 0;
/// PERSIST flag: also flush to the deepest persistence domain (deep persist).
pub const PERSIST_DEEP: u32 = 1 << 1;
/// CLOSE flag: remove the pool after closing it.
pub const CLOSE_REMOVE: u32 = 1 << 0;
/// REMOVE flag: ignore errors while removing.
pub const REMOVE_FORCE: u32 = 1 << 0;
/// REMOVE flag: remove the poolset file too.
pub const REMOVE_POOL_SET: u32 = 1 << 1;

/// A typed message that cannot be put on the wire (for example a descriptor that is too long).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode {msg}: field `{field}` {why}")]
pub struct EncodeError {
    pub msg: &'static str,
    pub field: &'static str,
    pub why: String,
}

impl Message {
    pub fn msg_type(&self) -> MsgType {
        match self {
            Message::Hello(_) => MsgType::Hello,
            Message::HelloResp(_) => MsgType::HelloResp,
            Message::Create { .. } => MsgType::Create,
            Message::CreateResp(_) => MsgType::CreateResp,
            Message::Open(_) => MsgType::Open,
            Message::OpenResp { .. } => MsgType::OpenResp,
            Message::SetAttr(_) => MsgType::SetAttr,
            Message::SetAttrResp(_) => MsgType::SetAttrResp,
            Message::Close { .. } => MsgType::Close,
            Message::CloseResp(_) => MsgType::CloseResp,
            Message::Remove { .. } => MsgType::Remove,
            Message::RemoveResp(_) => MsgType::RemoveResp,
            Message::Error { .. } => MsgType::Error,
            Message::Persist { .. } => MsgType::Persist,
            Message::PersistInline { .. } => MsgType::PersistInline,
            Message::PersistResp { .. } => MsgType::PersistResp,
        }
    }

    /// An ERROR whose text is made encodable: cut to [`MAX_ERROR_TEXT_LEN`] bytes at a character
    /// boundary and with NUL characters replaced, so reporting a failure never fails itself.
    /// An ERROR never carries `Ok` (PROTOCOL §4.12): passing `Status::Ok` is a caller bug, and
    /// is reported as `Internal` rather than put on the wire as a success.
    pub fn error(in_reply_to: u16, status: Status, text: &str) -> Message {
        let status = if status.is_ok() {
            Status::Internal
        } else {
            status
        };
        let mut message: String = text.replace('\0', "\u{FFFD}");
        if message.len() > MAX_ERROR_TEXT_LEN {
            let mut cut = MAX_ERROR_TEXT_LEN;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        Message::Error {
            in_reply_to,
            status,
            message,
        }
    }

    /// Appends the body (not the frame header) to `out`.
    pub fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let name = self.msg_type().name();
        match self {
            Message::Hello(h) => put(
                out,
                &HelloWire {
                    magic: HELLO_MAGIC.into(),
                    major: h.major.into(),
                    minor: h.minor.into(),
                    capabilities: h.capabilities.0.into(),
                },
            ),
            Message::HelloResp(h) => put(
                out,
                &HelloRespWire {
                    magic: HELLO_MAGIC.into(),
                    major: h.major.into(),
                    minor: h.minor.into(),
                    capabilities: h.capabilities.0.into(),
                    status: h.status.to_wire().into(),
                    reserved: 0.into(),
                },
            ),
            Message::Create { pool, attr } => {
                put(out, &pool_request_wire(pool));
                put(out, &PoolAttrWire::from(attr));
                put_str(
                    out,
                    name,
                    "descriptor",
                    &pool.descriptor,
                    MAX_DESCRIPTOR_LEN,
                )?;
            }
            Message::Open(pool) => {
                put(out, &pool_request_wire(pool));
                put_str(
                    out,
                    name,
                    "descriptor",
                    &pool.descriptor,
                    MAX_DESCRIPTOR_LEN,
                )?;
            }
            Message::CreateResp(resp) => put(out, &pool_resp_wire(resp)),
            Message::OpenResp { resp, attr } => {
                put(out, &pool_resp_wire(resp));
                put(out, &PoolAttrWire::from(attr));
            }
            Message::SetAttr(attr) => put(out, &PoolAttrWire::from(attr)),
            Message::SetAttrResp(s) | Message::CloseResp(s) | Message::RemoveResp(s) => put(
                out,
                &StatusWire {
                    status: s.to_wire().into(),
                    reserved: 0.into(),
                },
            ),
            Message::Close { remove } => put(
                out,
                &FlagsWire {
                    flags: flag(*remove, CLOSE_REMOVE).into(),
                    reserved: 0.into(),
                },
            ),
            Message::Remove {
                descriptor,
                force,
                pool_set,
            } => {
                put(
                    out,
                    &FlagsWire {
                        flags: (flag(*force, REMOVE_FORCE) | flag(*pool_set, REMOVE_POOL_SET))
                            .into(),
                        reserved: 0.into(),
                    },
                );
                put_str(out, name, "descriptor", descriptor, MAX_DESCRIPTOR_LEN)?;
            }
            Message::Error {
                in_reply_to,
                status,
                message,
            } => {
                if status.is_ok() {
                    return Err(EncodeError {
                        msg: name,
                        field: "status",
                        why: "is Ok, but an ERROR must carry a failure status".into(),
                    });
                }
                put(
                    out,
                    &ErrorWire {
                        in_reply_to: (*in_reply_to).into(),
                        reserved: 0.into(),
                        status: status.to_wire().into(),
                    },
                );
                put_str(out, name, "message", message, MAX_ERROR_TEXT_LEN)?;
            }
            Message::Persist {
                lane,
                relaxed,
                deep,
                offset,
                length,
            } => put(
                out,
                &PersistWire {
                    lane: (*lane).into(),
                    flags: (flag(*relaxed, PERSIST_RELAXED) | flag(*deep, PERSIST_DEEP)).into(),
                    offset: (*offset).into(),
                    length: (*length).into(),
                },
            ),
            Message::PersistInline {
                lane,
                relaxed,
                seq,
                records,
            } => {
                if *seq == 0 {
                    return Err(EncodeError {
                        msg: name,
                        field: "seq",
                        why: "is 0, sequence numbers start at 1".into(),
                    });
                }
                if records.is_empty() {
                    return Err(EncodeError {
                        msg: name,
                        field: "records",
                        why: "is empty, a PERSIST_INLINE carries at least one".into(),
                    });
                }
                let start = out.len();
                crate::inline::encode_body(out, *lane, *relaxed, *seq, records);
                let bad = records
                    .iter()
                    .find(|r| r.data.is_empty() || r.data.len() > crate::inline::INLINE_DATA_MAX);
                if let Some(r) = bad {
                    out.truncate(start);
                    return Err(EncodeError {
                        msg: name,
                        field: "record length",
                        why: format!(
                            "is {}, must be 1 ..= {}",
                            r.data.len(),
                            crate::inline::INLINE_DATA_MAX
                        ),
                    });
                }
                if out.len() - start > crate::inline::INLINE_BODY_MAX {
                    let len = out.len() - start;
                    out.truncate(start);
                    return Err(EncodeError {
                        msg: name,
                        field: "records",
                        why: format!(
                            "make a body of {len} bytes, the maximum is {}",
                            crate::inline::INLINE_BODY_MAX
                        ),
                    });
                }
            }
            Message::PersistResp { lane, status } => put(
                out,
                &PersistRespWire {
                    lane: (*lane).into(),
                    status: status.to_wire().into(),
                },
            ),
        }
        Ok(())
    }

    /// Decodes the body of a frame whose header announced `msg_type`.
    pub fn decode_body(msg_type: MsgType, body: &[u8]) -> Result<Message, DecodeError> {
        let mut r = Reader {
            buf: body,
            msg: msg_type.name(),
        };
        let m = match msg_type {
            MsgType::Hello => {
                let w: &HelloWire = r.fixed("magic..capabilities")?;
                r.magic(w.magic.get())?;
                Message::Hello(Hello {
                    major: w.major.get(),
                    minor: w.minor.get(),
                    capabilities: Capabilities(w.capabilities.get()),
                })
            }
            MsgType::HelloResp => {
                let w: &HelloRespWire = r.fixed("magic..reserved")?;
                r.magic(w.magic.get())?;
                r.zero("reserved", w.reserved.get().into())?;
                Message::HelloResp(HelloResp {
                    status: Status::from_wire(w.status.get()),
                    major: w.major.get(),
                    minor: w.minor.get(),
                    capabilities: Capabilities(w.capabilities.get()),
                })
            }
            MsgType::Create => {
                let w: &PoolRequestWire = r.fixed("pool_size..reserved")?;
                let a: &PoolAttrWire = r.fixed("pool_attr")?;
                let descriptor = r.string("descriptor", MAX_DESCRIPTOR_LEN)?;
                Message::Create {
                    pool: r.pool_request(w, descriptor)?,
                    attr: PoolAttr::from(a),
                }
            }
            MsgType::Open => {
                let w: &PoolRequestWire = r.fixed("pool_size..reserved")?;
                let descriptor = r.string("descriptor", MAX_DESCRIPTOR_LEN)?;
                Message::Open(r.pool_request(w, descriptor)?)
            }
            MsgType::CreateResp => {
                let w: &PoolRespWire = r.fixed("status..secret")?;
                Message::CreateResp(r.pool_resp(w)?)
            }
            MsgType::OpenResp => {
                let w: &PoolRespWire = r.fixed("status..secret")?;
                let a: &PoolAttrWire = r.fixed("pool_attr")?;
                Message::OpenResp {
                    resp: r.pool_resp(w)?,
                    attr: PoolAttr::from(a),
                }
            }
            MsgType::SetAttr => {
                let a: &PoolAttrWire = r.fixed("pool_attr")?;
                Message::SetAttr(PoolAttr::from(a))
            }
            MsgType::SetAttrResp | MsgType::CloseResp | MsgType::RemoveResp => {
                let w: &StatusWire = r.fixed("status..reserved")?;
                r.zero("reserved", w.reserved.get().into())?;
                let s = Status::from_wire(w.status.get());
                match msg_type {
                    MsgType::SetAttrResp => Message::SetAttrResp(s),
                    MsgType::CloseResp => Message::CloseResp(s),
                    _ => Message::RemoveResp(s),
                }
            }
            MsgType::Close => {
                let w: &FlagsWire = r.fixed("flags..reserved")?;
                let flags = r.flags(w.flags.get(), CLOSE_REMOVE)?;
                r.zero("reserved", w.reserved.get().into())?;
                Message::Close {
                    remove: flags & CLOSE_REMOVE != 0,
                }
            }
            MsgType::Remove => {
                let w: &FlagsWire = r.fixed("flags..reserved")?;
                let flags = r.flags(w.flags.get(), REMOVE_FORCE | REMOVE_POOL_SET)?;
                r.zero("reserved", w.reserved.get().into())?;
                let descriptor = r.string("descriptor", MAX_DESCRIPTOR_LEN)?;
                Message::Remove {
                    descriptor,
                    force: flags & REMOVE_FORCE != 0,
                    pool_set: flags & REMOVE_POOL_SET != 0,
                }
            }
            MsgType::Error => {
                let w: &ErrorWire = r.fixed("in_reply_to..status")?;
                r.zero("reserved", w.reserved.get().into())?;
                let status = Status::from_wire(w.status.get());
                if status.is_ok() {
                    return Err(DecodeError::bad(
                        r.msg,
                        "status",
                        "an ERROR must carry a failure status, not Ok",
                    ));
                }
                let message = r.string("message", MAX_ERROR_TEXT_LEN)?;
                Message::Error {
                    in_reply_to: w.in_reply_to.get(),
                    status,
                    message,
                }
            }
            MsgType::Persist => {
                let w: &PersistWire = r.fixed("lane..length")?;
                let flags = r.flags(w.flags.get(), PERSIST_RELAXED | PERSIST_DEEP)?;
                Message::Persist {
                    lane: w.lane.get(),
                    relaxed: flags & PERSIST_RELAXED != 0,
                    deep: flags & PERSIST_DEEP != 0,
                    offset: w.offset.get(),
                    length: w.length.get(),
                }
            }
            MsgType::PersistInline => {
                let p = crate::inline::InlineRecords::parse(r.buf)?;
                r.buf = &[];
                Message::PersistInline {
                    lane: p.lane,
                    relaxed: p.relaxed,
                    seq: p.seq,
                    records: p.to_owned_records(),
                }
            }
            MsgType::PersistResp => {
                let w: &PersistRespWire = r.fixed("lane..status")?;
                Message::PersistResp {
                    lane: w.lane.get(),
                    status: Status::from_wire(w.status.get()),
                }
            }
        };
        r.finish()?;
        Ok(m)
    }
}

/// Checks a PERSIST range against the pool: `offset + length` must not overflow and must lie
/// within `pool_size`. rpmemd applies this before touching memory.
pub fn check_range(offset: u64, length: u64, pool_size: u64) -> Result<(), ProtocolError> {
    match offset.checked_add(length) {
        Some(end) if end <= pool_size => Ok(()),
        _ => Err(ProtocolError::OutOfRange {
            offset,
            length,
            pool_size,
        }),
    }
}

fn flag(on: bool, bit: u32) -> u32 {
    if on {
        bit
    } else {
        0
    }
}

fn put<T: IntoBytes + Immutable>(out: &mut Vec<u8>, v: &T) {
    out.extend_from_slice(v.as_bytes());
}

fn put_str(
    out: &mut Vec<u8>,
    msg: &'static str,
    field: &'static str,
    s: &str,
    max: usize,
) -> Result<(), EncodeError> {
    let err = |why: String| EncodeError { msg, field, why };
    if s.len() > max {
        return Err(err(format!(
            "is {} bytes long, the maximum is {max}",
            s.len()
        )));
    }
    if s.contains('\0') {
        return Err(err("contains a NUL character".into()));
    }
    // max ≤ u16::MAX is asserted at compile time in lib.rs, so the cast cannot truncate.
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn pool_request_wire(p: &PoolRequest) -> PoolRequestWire {
    PoolRequestWire {
        pool_size: p.pool_size.into(),
        nlanes: p.nlanes.into(),
        buff_size: p.buff_size.into(),
        provider: p.provider.to_wire().into(),
        persist_method: p.persist_method.to_wire().into(),
        reserved: 0.into(),
    }
}

fn pool_resp_wire(r: &PoolResp) -> PoolRespWire {
    let (addr_family, addr) = match r.addr {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (ADDR_FAMILY_V4, b)
        }
        IpAddr::V6(a) => (ADDR_FAMILY_V6, a.octets()),
    };
    PoolRespWire {
        status: r.status.to_wire().into(),
        nlanes: r.nlanes.into(),
        port: r.port.into(),
        addr_family: addr_family.into(),
        persist_method: r.persist_method.to_wire().into(),
        provider: r.provider.to_wire().into(),
        addr,
        rkey: r.rkey.into(),
        raddr: r.raddr.into(),
        pool_size: r.pool_size.into(),
        secret: r.secret.0,
    }
}

/// `addr_family` value for an IPv4 address (in the first 4 bytes of `addr`, the rest zero).
pub const ADDR_FAMILY_V4: u16 = 4;
/// `addr_family` value for an IPv6 address (all 16 bytes of `addr`).
pub const ADDR_FAMILY_V6: u16 = 6;

/// A bounded cursor over one frame body; every read names the field it was reading.
struct Reader<'a> {
    buf: &'a [u8],
    msg: &'static str,
}

impl<'a> Reader<'a> {
    fn fixed<T>(&mut self, field: &'static str) -> Result<&'a T, DecodeError>
    where
        T: FromBytes + KnownLayout + Immutable + Unaligned,
    {
        let (v, rest) = T::ref_from_prefix(self.buf).map_err(|_| DecodeError::Truncated {
            msg: self.msg,
            field,
        })?;
        self.buf = rest;
        Ok(v)
    }

    fn string(&mut self, field: &'static str, max: usize) -> Result<String, DecodeError> {
        let msg = self.msg;
        let Some((len, rest)) = self.buf.split_first_chunk::<2>() else {
            return Err(DecodeError::Truncated { msg, field });
        };
        let len = usize::from(u16::from_le_bytes(*len));
        if len > max {
            return Err(DecodeError::bad(
                msg,
                field,
                format!("length {len} exceeds the maximum of {max} bytes"),
            ));
        }
        if rest.len() < len {
            return Err(DecodeError::Truncated { msg, field });
        }
        let (bytes, rest) = rest.split_at(len);
        let s = std::str::from_utf8(bytes)
            .map_err(|e| DecodeError::bad(msg, field, format!("not UTF-8: {e}")))?;
        if s.contains('\0') {
            return Err(DecodeError::bad(msg, field, "contains a NUL byte"));
        }
        self.buf = rest;
        Ok(s.to_owned())
    }

    fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                msg: self.msg,
                extra: self.buf.len(),
            })
        }
    }

    fn zero(&self, field: &'static str, v: u64) -> Result<(), DecodeError> {
        if v == 0 {
            Ok(())
        } else {
            Err(DecodeError::bad(
                self.msg,
                field,
                format!("reserved, must be 0 but is {v:#x}"),
            ))
        }
    }

    fn magic(&self, v: u32) -> Result<(), DecodeError> {
        if v == HELLO_MAGIC {
            Ok(())
        } else {
            Err(DecodeError::bad(
                self.msg,
                "magic",
                format!("{v:#010x}, expected {HELLO_MAGIC:#010x}"),
            ))
        }
    }

    fn flags(&self, v: u32, known: u32) -> Result<u32, DecodeError> {
        if v & !known == 0 {
            Ok(v)
        } else {
            Err(DecodeError::bad(
                self.msg,
                "flags",
                format!("unknown bits {:#x}", v & !known),
            ))
        }
    }

    fn provider(&self, v: u16) -> Result<Provider, DecodeError> {
        Provider::from_wire(v)
            .ok_or_else(|| DecodeError::bad(self.msg, "provider", format!("unknown provider {v}")))
    }

    fn persist_method(&self, v: u16) -> Result<PersistMethod, DecodeError> {
        PersistMethod::from_wire(v).ok_or_else(|| {
            DecodeError::bad(self.msg, "persist_method", format!("unknown method {v}"))
        })
    }

    fn pool_request(
        &self,
        w: &PoolRequestWire,
        descriptor: String,
    ) -> Result<PoolRequest, DecodeError> {
        self.zero("reserved", w.reserved.get().into())?;
        Ok(PoolRequest {
            pool_size: w.pool_size.get(),
            nlanes: w.nlanes.get(),
            buff_size: w.buff_size.get(),
            provider: self.provider(w.provider.get())?,
            persist_method: self.persist_method(w.persist_method.get())?,
            descriptor,
        })
    }

    fn pool_resp(&self, w: &PoolRespWire) -> Result<PoolResp, DecodeError> {
        let addr = match w.addr_family.get() {
            ADDR_FAMILY_V4 => {
                if w.addr[4..].iter().any(|b| *b != 0) {
                    return Err(DecodeError::bad(
                        self.msg,
                        "addr",
                        "IPv4 address with non-zero bytes after the first 4",
                    ));
                }
                IpAddr::V4(Ipv4Addr::new(w.addr[0], w.addr[1], w.addr[2], w.addr[3]))
            }
            ADDR_FAMILY_V6 => IpAddr::V6(Ipv6Addr::from(w.addr)),
            other => {
                return Err(DecodeError::bad(
                    self.msg,
                    "addr_family",
                    format!("{other}, expected 4 or 6"),
                ))
            }
        };
        Ok(PoolResp {
            status: Status::from_wire(w.status.get()),
            nlanes: w.nlanes.get(),
            addr,
            port: w.port.get(),
            persist_method: self.persist_method(w.persist_method.get())?,
            provider: self.provider(w.provider.get())?,
            rkey: w.rkey.get(),
            raddr: w.raddr.get(),
            pool_size: w.pool_size.get(),
            secret: Secret(w.secret),
        })
    }
}
