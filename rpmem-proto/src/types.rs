//! Typed values carried by messages: message types, status codes, providers, persist methods,
//! capabilities, the session secret and the pool attributes.
//!
//! Each wire enum has a `from_wire` that refuses unknown values (except [`Status`], which keeps
//! unknown codes so a newer peer's failure is still reported as a failure) and an `to_wire` that
//! is its exact inverse, so decode followed by encode reproduces the received bytes.

use std::fmt;

/// Message type, the `msg_type` field of the frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum MsgType {
    Hello = 0x0001,
    Create = 0x0002,
    Open = 0x0003,
    SetAttr = 0x0004,
    Close = 0x0005,
    Remove = 0x0006,
    Persist = 0x0101,
    PersistInline = 0x0102,
    HelloResp = 0x8001,
    CreateResp = 0x8002,
    OpenResp = 0x8003,
    SetAttrResp = 0x8004,
    CloseResp = 0x8005,
    RemoveResp = 0x8006,
    Error = 0x80FF,
    PersistResp = 0x8101,
}

/// Bit set in the type of every response (and of ERROR).
pub const RESPONSE_BIT: u16 = 0x8000;

impl MsgType {
    /// All message types, in wire-value order of requests then responses.
    pub const ALL: [MsgType; 16] = [
        MsgType::Hello,
        MsgType::Create,
        MsgType::Open,
        MsgType::SetAttr,
        MsgType::Close,
        MsgType::Remove,
        MsgType::Persist,
        MsgType::PersistInline,
        MsgType::HelloResp,
        MsgType::CreateResp,
        MsgType::OpenResp,
        MsgType::SetAttrResp,
        MsgType::CloseResp,
        MsgType::RemoveResp,
        MsgType::Error,
        MsgType::PersistResp,
    ];

    /// The type for a wire value, `None` if this version does not define it.
    pub fn from_wire(v: u16) -> Option<MsgType> {
        MsgType::ALL.iter().copied().find(|t| *t as u16 == v)
    }

    pub fn to_wire(self) -> u16 {
        self as u16
    }

    /// Upper-case protocol name, as used in docs/PROTOCOL.md and in error messages.
    pub fn name(self) -> &'static str {
        match self {
            MsgType::Hello => "HELLO",
            MsgType::Create => "CREATE",
            MsgType::Open => "OPEN",
            MsgType::SetAttr => "SET_ATTR",
            MsgType::Close => "CLOSE",
            MsgType::Remove => "REMOVE",
            MsgType::Persist => "PERSIST",
            MsgType::PersistInline => "PERSIST_INLINE",
            MsgType::HelloResp => "HELLO_RESP",
            MsgType::CreateResp => "CREATE_RESP",
            MsgType::OpenResp => "OPEN_RESP",
            MsgType::SetAttrResp => "SET_ATTR_RESP",
            MsgType::CloseResp => "CLOSE_RESP",
            MsgType::RemoveResp => "REMOVE_RESP",
            MsgType::Error => "ERROR",
            MsgType::PersistResp => "PERSIST_RESP",
        }
    }

    /// Whether the message travels on a data lane (PERSIST, PERSIST_INLINE, PERSIST_RESP)
    /// rather than on the control channel.
    pub fn is_lane(self) -> bool {
        matches!(
            self,
            MsgType::Persist | MsgType::PersistInline | MsgType::PersistResp
        )
    }

    pub fn is_response(self) -> bool {
        self.to_wire() & RESPONSE_BIT != 0
    }

    /// The response type that answers this request on success (`None` for responses).
    pub fn response(self) -> Option<MsgType> {
        if self.is_response() {
            return None;
        }
        MsgType::from_wire(self.to_wire() | RESPONSE_BIT)
    }
}

impl fmt::Display for MsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Status code of a response or an ERROR.
///
/// Unknown codes are kept as [`Status::Unrecognized`] rather than refused: a newer rpmemd may
/// report a failure this version cannot name, and that must still surface as a failure.
/// `Unrecognized` holds an [`UnknownStatus`], which cannot hold a code listed here, so every
/// `Status` has exactly one wire code and `Unrecognized` never goes on the wire as `Ok`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Ok,
    VersionMismatch,
    Malformed,
    UnexpectedMessage,
    PathRefused,
    PoolsetNotFound,
    PoolExists,
    PoolBusy,
    PoolTooSmall,
    BadPoolset,
    ProviderUnavailable,
    PersistMethodUnavailable,
    OutOfRange,
    BadLane,
    NoSpace,
    PermissionDenied,
    Memlock,
    Io,
    Internal,
    Unrecognized(UnknownStatus),
}

/// A status code this version does not define (above `Internal`, 18). Only constructible through
/// [`UnknownStatus::new`], which refuses the defined codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UnknownStatus(u32);

impl UnknownStatus {
    /// `None` if `code` is one of the codes [`Status`] names.
    pub fn new(code: u32) -> Option<UnknownStatus> {
        if (code as usize) < Status::KNOWN.len() {
            None
        } else {
            Some(UnknownStatus(code))
        }
    }

    /// The wire code.
    pub fn code(self) -> u32 {
        self.0
    }
}

impl Status {
    const KNOWN: [Status; 19] = [
        Status::Ok,
        Status::VersionMismatch,
        Status::Malformed,
        Status::UnexpectedMessage,
        Status::PathRefused,
        Status::PoolsetNotFound,
        Status::PoolExists,
        Status::PoolBusy,
        Status::PoolTooSmall,
        Status::BadPoolset,
        Status::ProviderUnavailable,
        Status::PersistMethodUnavailable,
        Status::OutOfRange,
        Status::BadLane,
        Status::NoSpace,
        Status::PermissionDenied,
        Status::Memlock,
        Status::Io,
        Status::Internal,
    ];

    pub fn from_wire(v: u32) -> Status {
        match Status::KNOWN.get(v as usize) {
            Some(s) => *s,
            None => Status::Unrecognized(UnknownStatus(v)),
        }
    }

    pub fn to_wire(self) -> u32 {
        match self {
            Status::Unrecognized(v) => v.code(),
            known => Status::KNOWN
                .iter()
                .position(|s| *s == known)
                // Every variant except Unrecognized is listed in KNOWN, in wire order.
                .expect("known status listed in KNOWN") as u32,
        }
    }

    pub fn is_ok(self) -> bool {
        self == Status::Ok
    }

    /// What went wrong and what the user should check, in one sentence.
    pub fn describe(self) -> &'static str {
        match self {
            Status::Ok => "success",
            Status::VersionMismatch => {
                "protocol version mismatch: install matching rpmem and rpmemd versions"
            }
            Status::Malformed => "malformed message: the peer sent bytes that do not decode",
            Status::UnexpectedMessage => "message not allowed in the current session state",
            Status::PathRefused => {
                "pool descriptor refused: it must be a relative path inside rpmemd's poolset-dir"
            }
            Status::PoolsetNotFound => "poolset file not found in rpmemd's poolset-dir",
            Status::PoolExists => "pool already exists on the target",
            Status::PoolBusy => "pool is in use by another session",
            Status::PoolTooSmall => "the remote pool is smaller than the requested size",
            Status::BadPoolset => "the poolset file on the target is invalid",
            Status::ProviderUnavailable => "the requested fabric provider is not available on the target",
            Status::PersistMethodUnavailable => {
                "the requested persist method is not enabled on the target"
            }
            Status::OutOfRange => "offset or length outside the pool",
            Status::BadLane => "lane number outside the negotiated lane count",
            Status::NoSpace => "no space left on the target",
            Status::PermissionDenied => "permission denied on the target",
            Status::Memlock => {
                "registering the pool memory failed: check the memlock limit (ulimit -l) on the target"
            }
            Status::Io => "I/O error on the target",
            Status::Internal => "internal error in rpmemd",
            Status::Unrecognized(_) => "failure code unknown to this version",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Unrecognized(v) => write!(f, "status {}: {}", v.code(), self.describe()),
            s => write!(f, "{s:?}: {}", s.describe()),
        }
    }
}

/// libfabric provider for the data lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Provider {
    Tcp = 1,
    Sockets = 2,
    Verbs = 3,
}

impl Provider {
    pub fn from_wire(v: u16) -> Option<Provider> {
        match v {
            1 => Some(Provider::Tcp),
            2 => Some(Provider::Sockets),
            3 => Some(Provider::Verbs),
            _ => None,
        }
    }

    pub fn to_wire(self) -> u16 {
        self as u16
    }

    /// The provider name as `fi_getinfo` hints spell it.
    pub fn fabric_name(self) -> &'static str {
        match self {
            Provider::Tcp => "tcp",
            Provider::Sockets => "sockets",
            Provider::Verbs => "verbs",
        }
    }
}

/// How written data is made durable on the target (rpmemd(1) "PERSISTENCY METHODS").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum PersistMethod {
    /// General Purpose Server Persistency Method: RMA write, then a PERSIST message; rpmemd
    /// flushes (pmem) or msyncs (non-pmem) the range and answers.
    General = 1,
    /// Appliance Persistency Method: RMA write then RMA read of the range, no target CPU; only
    /// where the target memory is in the persistence domain.
    Appliance = 2,
}

impl PersistMethod {
    pub fn from_wire(v: u16) -> Option<PersistMethod> {
        match v {
            1 => Some(PersistMethod::General),
            2 => Some(PersistMethod::Appliance),
            _ => None,
        }
    }

    pub fn to_wire(self) -> u16 {
        self as u16
    }
}

/// Capability bits exchanged in HELLO/HELLO_RESP. Unknown bits are carried unchanged and
/// ignored: the session uses the intersection of both sides' known bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(pub u64);

impl Capabilities {
    /// PERSIST with the DEEP flag is understood.
    pub const DEEP_PERSIST: Capabilities = Capabilities(1 << 0);
    /// The appliance persist method can be granted.
    pub const APPLIANCE: Capabilities = Capabilities(1 << 1);
    /// The `sockets` provider can be used.
    pub const SOCKETS: Capabilities = Capabilities(1 << 2);
    /// The `verbs` provider can be used.
    pub const VERBS: Capabilities = Capabilities(1 << 3);
    /// Persists may be carried by an RMA write with remote CQ data (protocol 1.1; the 64-bit
    /// immediate of [`crate::write_data::WriteData`]) instead of a PERSIST message. Used only
    /// where the lane's provider carries at least 8 bytes of CQ data.
    pub const WRITE_DATA: Capabilities = Capabilities(1 << 4);
    /// Small persists may be PERSIST_INLINE messages carrying their bytes, which rpmemd copies
    /// into the pool in message order (protocol 1.2): the initiator may then send the next
    /// persist of a lane before the answer to the previous one, and rpmemd still makes them
    /// durable in order.
    pub const INLINE_PERSIST: Capabilities = Capabilities(1 << 5);
    /// Every bit defined by this version.
    pub const KNOWN: Capabilities = Capabilities(0b11_1111);

    /// The bits protocol `1.minor` defines: a session never uses a bit its negotiated minor
    /// does not define, whatever the peers offered.
    pub fn defined_in_minor(minor: u16) -> Capabilities {
        match minor {
            0 => Capabilities(0b1111),
            1 => Capabilities(0b1_1111),
            _ => Capabilities::KNOWN,
        }
    }

    pub fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }

    /// The capabilities both sides have, restricted to bits this version knows.
    pub fn common(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 & other.0 & Capabilities::KNOWN.0)
    }
}

impl std::ops::BitOr for Capabilities {
    type Output = Capabilities;
    fn bitor(self, rhs: Capabilities) -> Capabilities {
        Capabilities(self.0 | rhs.0)
    }
}

/// Length of the per-session secret.
pub const SECRET_LEN: usize = 32;

/// The per-session secret rpmemd issues in CREATE_RESP/OPEN_RESP and checks in every lane's
/// connection request. `Debug` does not print it and comparison takes the same time whatever
/// the bytes, so it does not leak through logs or timing.
#[derive(Clone, Copy)]
pub struct Secret(pub [u8; SECRET_LEN]);

impl Secret {
    /// Constant-time comparison.
    pub fn ct_eq(&self, other: &Secret) -> bool {
        let diff = self
            .0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        // black_box keeps the optimiser from turning the fold into an early-exit comparison.
        std::hint::black_box(diff) == 0
    }

    pub fn as_bytes(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.ct_eq(other)
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Pool attributes, the Rust face of librpmem's `struct rpmem_pool_attr`. rpmemd stores them in
/// the remote pool header on CREATE and SET_ATTR and returns them on OPEN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct PoolAttr {
    pub signature: [u8; 8],
    pub major: u32,
    pub compat_features: u32,
    pub incompat_features: u32,
    pub ro_compat_features: u32,
    pub poolset_uuid: [u8; 16],
    pub uuid: [u8; 16],
    pub next_uuid: [u8; 16],
    pub prev_uuid: [u8; 16],
    pub user_flags: [u8; 16],
}

impl From<&crate::wire::PoolAttrWire> for PoolAttr {
    fn from(w: &crate::wire::PoolAttrWire) -> PoolAttr {
        PoolAttr {
            signature: w.signature,
            major: w.major.get(),
            compat_features: w.compat_features.get(),
            incompat_features: w.incompat_features.get(),
            ro_compat_features: w.ro_compat_features.get(),
            poolset_uuid: w.poolset_uuid,
            uuid: w.uuid,
            next_uuid: w.next_uuid,
            prev_uuid: w.prev_uuid,
            user_flags: w.user_flags,
        }
    }
}

impl From<&PoolAttr> for crate::wire::PoolAttrWire {
    fn from(a: &PoolAttr) -> crate::wire::PoolAttrWire {
        crate::wire::PoolAttrWire {
            signature: a.signature,
            major: a.major.into(),
            compat_features: a.compat_features.into(),
            incompat_features: a.incompat_features.into(),
            ro_compat_features: a.ro_compat_features.into(),
            poolset_uuid: a.poolset_uuid,
            uuid: a.uuid,
            next_uuid: a.next_uuid,
            prev_uuid: a.prev_uuid,
            user_flags: a.user_flags,
        }
    }
}
