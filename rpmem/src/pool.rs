//! [`RpmemPool`]: one session with rpmemd — the control channel (HELLO, CREATE/OPEN, SET_ATTR,
//! CLOSE) and the data lanes (one libfabric endpoint per lane, each behind its own lock).
//!
//! Persist on a lane = RMA write of the range from the local [`PoolMemory`] to the same offset
//! of the remote pool, then PERSIST and its PERSIST_RESP (general method), or an RMA read of 8
//! bytes of the range (appliance method). The providers we ask for order sends after writes
//! (`FI_ORDER_SAW`, requested in `fabric::Info::get`), so the PERSIST is sent right after the
//! write is posted (docs/PROTOCOL.md §8.2).
//!
//! Protocol 1.1 (capability WRITE_DATA, §8.5): where the lane's provider carries 8 bytes of
//! remote CQ data, a persist whose range fits the 64-bit immediate is one RMA write with data
//! (the last chunk's, describing the whole range) followed by the PERSIST_RESP wait, instead of
//! write + PERSIST. `RPMEM_NO_WRITE_DATA=1` keeps the capability out of HELLO.
//!
//! Protocol 1.2 (capability INLINE_PERSIST, §8.6): `flush` of a small range copies its bytes
//! into the lane's pending PERSIST_INLINE instead of posting an RMA write; [`RpmemPool::barrier`]
//! sends it without waiting for the answer (rpmemd stores these messages in their session-wide
//! sequence order, so the target's media follow the order of the barriers, and of the copies
//! when two lanes send the same bytes) and [`RpmemPool::drain`] reads every answer.
//! A chain of dependent fences (undo entry → data → commit) then costs one round trip. A range
//! too large for a message goes by RMA write, after every answer pending on the lane.

use std::collections::VecDeque;
use std::io;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fabric::{
    Access, Domain, Endpoint, EndpointConfig, Fabric, Hints, Info, MemoryRegion, OwnedRegion,
    RemoteKey, Signal,
};
use rpmem_proto::{
    check_range,
    inline::INLINE_DATA_MAX,
    session::{accept_hello_resp, check_reply},
    Capabilities, Hello, InlineBatch, LaneConnect, Message, PersistMethod, PoolAttr, PoolRequest,
    PoolResp, Provider, ReadError, Status, WriteData, LANE_FRAME_MAX, PROTO_MAJOR, PROTO_MINOR,
};

use crate::memory::PoolMemory;
use crate::options::Options;
use crate::target::Target;
use crate::transport::ControlChannel;
use crate::Error;

/// Size of each lane receive buffer (a PERSIST_RESP frame is 24 bytes).
const LANE_BUFF_BYTES: usize = 64;
/// Largest single RMA transfer we post (bounded again by the provider's max_msg_size).
const RMA_CHUNK_MAX: usize = 16 << 20;
/// Most persists a lane sends ahead of their answers (`barrier`); the next one first reads the
/// oldest answer. Inline persists are what makes this safe (docs/PROTOCOL.md §8.6).
const MAX_UNANSWERED: usize = 3;
/// Bounce buffer of `read`, per lane.
const READ_BOUNCE_BYTES: usize = 1 << 20;
/// What HELLO offers: every capability this version knows (minus WRITE_DATA when
/// [`NO_WRITE_DATA_ENV`] is set, see [`capabilities_offered`]).
const CAPABILITIES_OFFERED: Capabilities = Capabilities::KNOWN;

/// Environment switch: `RPMEM_NO_WRITE_DATA=1` leaves WRITE_DATA out of HELLO, so every persist
/// is RMA write + PERSIST as in protocol 1.0 (for comparison, and for providers misbehaving with
/// remote CQ data).
const NO_WRITE_DATA_ENV: &str = "RPMEM_NO_WRITE_DATA";
/// `FI_ORDER_WAW` of rdma/fabric.h (`1ULL << 4`): RMA writes are transmitted in order. A
/// multi-chunk persist uses write data only when the provider reports it (§8.5).
const FI_ORDER_WAW: u64 = 1 << 4;

/// The capabilities HELLO offers, with the environment switch applied.
fn capabilities_offered() -> Capabilities {
    let off = std::env::var_os(NO_WRITE_DATA_ENV).is_some_and(|v| !v.is_empty() && v != "0");
    if off {
        Capabilities(CAPABILITIES_OFFERED.0 & !Capabilities::WRITE_DATA.0)
    } else {
        CAPABILITIES_OFFERED
    }
}

/// Flags of [`RpmemPool::persist`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PersistFlags(u32);

impl PersistFlags {
    pub const NONE: PersistFlags = PersistFlags(0);
    /// No ordering with other lanes' persists is needed (librpmem's RPMEM_PERSIST_RELAXED).
    pub const RELAXED: PersistFlags = PersistFlags(1);

    pub fn contains(self, other: PersistFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

/// Flags of [`remove`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RemoveFlags {
    /// Ignore errors while removing parts.
    pub force: bool,
    /// Remove the poolset file too.
    pub pool_set: bool,
}

struct Control {
    /// `None` once the channel was finished after rpmemd went away, or dropped after a failure.
    ch: Option<ControlChannel>,
    /// Why the session is unusable: set by the first failure that leaves the channel in an
    /// unknown state (see [`Control::call`]); every later request fails with `SessionBroken`.
    broken: Option<String>,
    target: String,
    /// Deadline of one whole request and its reply (not of each read: a peer trickling bytes
    /// cannot stretch it).
    deadline: Duration,
    /// Negotiated in HELLO.
    caps: Capabilities,
    minor: u16,
}

impl Control {
    fn start(target: &str, opts: &Options) -> Result<Control, Error> {
        let t: Target = target.parse()?;
        let (transport, args) = opts.resolve();
        let ch = ControlChannel::open(&transport, &t, &args, opts.control_deadline).map_err(
            |source| Error::Start {
                target: target.to_string(),
                source,
            },
        )?;
        let mut c = Control {
            ch: Some(ch),
            broken: None,
            target: target.to_string(),
            deadline: opts.control_deadline,
            caps: Capabilities(0),
            minor: PROTO_MINOR,
        };
        c.hello()?;
        Ok(c)
    }

    /// Why the channel is gone: rpmemd's exit, waited for briefly.
    fn gone(&mut self, during: &'static str) -> Error {
        let until = Instant::now() + Duration::from_millis(300);
        let mut explain = None;
        while let Some(ch) = self.ch.as_mut() {
            if let Some(exit) = ch.try_exit() {
                explain = Some(exit.explain());
                break;
            }
            if Instant::now() >= until {
                // The channel is dead anyway: finishing it collects the exit status and stderr
                // (over SSH the exit status arrives after the end of the data).
                explain = self
                    .ch
                    .take()
                    .and_then(|c| c.finish().ok())
                    .map(|e| e.explain());
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let explain = explain.unwrap_or_else(|| {
            "the control channel closed (rpmemd's exit status is not known)".to_string()
        });
        Error::RpmemdGone {
            target: self.target.clone(),
            during,
            explain,
        }
    }

    fn io_error(&mut self, during: &'static str, e: io::Error) -> Error {
        match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::ControlTimeout {
                target: self.target.clone(),
                during,
                waited: self.deadline,
            },
            io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset => self.gone(during),
            _ => Error::ControlIo {
                target: self.target.clone(),
                during,
                source: e,
            },
        }
    }

    /// Sends `req` and reads its reply (the response type, or ERROR turned into `Refused`).
    ///
    /// The request and its reply share one deadline. A failure that leaves the stream in an
    /// unknown state — a timeout (the reply may still come, or half of it came), a truncated or
    /// undecodable frame, a reply of the wrong type, an I/O error, rpmemd gone — breaks the
    /// session: the channel is dropped (a local rpmemd is killed) so that a late reply can never
    /// be taken for the answer to a later request, and every later call fails with
    /// `SessionBroken` naming the first failure. A refusal (an ERROR frame) does not: the stream
    /// is in step.
    fn call(&mut self, req: &Message) -> Result<Message, Error> {
        let during = req.msg_type().name();
        if let Some(why) = &self.broken {
            return Err(Error::SessionBroken {
                target: self.target.clone(),
                during,
                why: why.clone(),
            });
        }
        let r = self.exchange(req);
        if let Err(e) = &r {
            if matches!(
                e,
                Error::ControlTimeout { .. }
                    | Error::ControlIo { .. }
                    | Error::Protocol { .. }
                    | Error::RpmemdGone { .. }
            ) {
                self.break_session(e);
            }
        }
        if let Some(ch) = self.ch.as_mut() {
            ch.set_deadline(None);
        }
        r
    }

    /// Marks the session broken by `e` and drops the channel without waiting for rpmemd.
    fn break_session(&mut self, e: &Error) {
        if self.broken.is_none() {
            self.broken = Some(e.to_string());
        }
        if let Some(ch) = self.ch.take() {
            ch.abort();
        }
    }

    fn exchange(&mut self, req: &Message) -> Result<Message, Error> {
        let ty = req.msg_type();
        let during = ty.name();
        let Some(ch) = self.ch.as_mut() else {
            return Err(self.gone(during));
        };
        ch.set_deadline(Some(Instant::now() + self.deadline));
        if let Err(e) = rpmem_proto::write_message(ch, req) {
            return Err(match e {
                rpmem_proto::WriteError::Io(e) => self.io_error(during, e),
                rpmem_proto::WriteError::Encode(e) => Error::InvalidArgument(e.to_string()),
            });
        }
        let Some(ch) = self.ch.as_mut() else {
            return Err(self.gone(during));
        };
        let reply = match rpmem_proto::read_message(ch) {
            Ok(m) => m,
            Err(ReadError::Closed) | Err(ReadError::Truncated(_)) => return Err(self.gone(during)),
            Err(ReadError::Io(e)) => return Err(self.io_error(during, e)),
            Err(ReadError::Decode(e)) => {
                return Err(Error::Protocol {
                    target: self.target.clone(),
                    during,
                    detail: e.to_string(),
                })
            }
        };
        check_reply(ty, &reply).map_err(|e| Error::Protocol {
            target: self.target.clone(),
            during,
            detail: e.to_string(),
        })?;
        if let Message::Error {
            status, message, ..
        } = reply
        {
            return Err(Error::Refused {
                target: self.target.clone(),
                request: during,
                status,
                message,
            });
        }
        Ok(reply)
    }

    fn hello(&mut self) -> Result<(), Error> {
        let offered = capabilities_offered();
        let reply = self.call(&Message::Hello(Hello {
            major: PROTO_MAJOR,
            minor: PROTO_MINOR,
            capabilities: offered,
        }))?;
        let Message::HelloResp(r) = reply else {
            return Err(self.unexpected("HELLO", &reply));
        };
        accept_hello_resp(PROTO_MAJOR, PROTO_MINOR, &r).map_err(|_| Error::VersionMismatch {
            target: self.target.clone(),
            peer_major: r.major,
            peer_minor: r.minor,
            ours: PROTO_MAJOR,
        })?;
        // Only what both sides offered and the negotiated minor defines: a bit we did not offer
        // (or do not know) is never used, whatever rpmemd claims.
        self.caps = Capabilities(
            r.capabilities.common(offered).0 & Capabilities::defined_in_minor(r.minor).0,
        );
        self.minor = r.minor;
        Ok(())
    }

    /// A reply of a type the request does not allow: the session is out of step, so it is
    /// broken as in [`call`](Self::call).
    fn unexpected(&mut self, during: &'static str, got: &Message) -> Error {
        let e = Error::Protocol {
            target: self.target.clone(),
            during,
            detail: format!("unexpected reply {}", got.msg_type().name()),
        };
        self.break_session(&e);
        e
    }
}

struct Lane {
    ep: Endpoint,
    /// Why the lane is unusable: after a timeout or a transport error a late answer could still
    /// arrive and be taken for the answer to the next request, so the lane is never used again.
    broken: Option<String>,
    /// Hull of the ranges written by `flush` and not yet drained.
    flushed: Option<(u64, u64)>,
    /// Persists that fit may be one RMA write with data (WRITE_DATA negotiated and this
    /// endpoint carries 8 bytes of CQ data).
    write_data: bool,
    bounce: Option<OwnedRegion>,
    /// The PERSIST_INLINE `flush` is filling (INLINE_PERSIST negotiated, general method;
    /// docs/PROTOCOL.md §8.6); `None` when the lane does not use inline persists.
    inline: Option<InlineBatch>,
    /// Persists sent by `barrier` whose PERSIST_RESP is still to be read, oldest first:
    /// `(offset, length, deadline)`. At most [`MAX_UNANSWERED`].
    unanswered: VecDeque<(u64, u64, Instant)>,
}

/// A remote pool replica (librpmem's `RPMEMpool`).
///
/// Field order is drop order: lanes (endpoints) first, then the registration of the local
/// memory, the domain, the control channel (closing it makes rpmemd close the pool), and the
/// local memory last.
pub struct RpmemPool {
    lanes: Vec<Mutex<Lane>>,
    local_mr: MemoryRegion,
    domain: Domain,
    _fabric: Fabric,
    control: Mutex<Control>,
    memory: PoolMemory,
    remote: RemoteKey,
    caps: Capabilities,
    method: PersistMethod,
    provider: Provider,
    max_rma: usize,
    /// The provider transmits RMA writes in order (`FI_ORDER_WAW`): a multi-chunk persist may
    /// carry its write data on the last chunk (§8.5).
    writes_ordered: bool,
    persist_deadline: Duration,
    /// The next PERSIST_INLINE sequence number (session-wide, from 1). Held while a message's
    /// bytes are copied, so messages are numbered in the order their copies were taken and
    /// rpmemd, storing them in that order, ends with the newest copy of every byte (§8.6).
    inline_seq: Mutex<u64>,
}

enum Kind<'a> {
    Create(&'a PoolAttr),
    Open,
}

impl RpmemPool {
    /// Creates the pool described by `descriptor` (a poolset relative to rpmemd's
    /// poolset-dir) on `target` (`[user@]host[:port]`), replicating `memory`. `nlanes` is the
    /// number of lanes wanted; on return it holds the number granted.
    pub fn create(
        target: &str,
        descriptor: &str,
        memory: PoolMemory,
        nlanes: &mut u32,
        attr: &PoolAttr,
        opts: &Options,
    ) -> Result<RpmemPool, Error> {
        RpmemPool::start(target, descriptor, memory, nlanes, Kind::Create(attr), opts)
            .map(|(p, _)| p)
    }

    /// Opens an existing remote pool; returns it with the attributes stored in it.
    pub fn open(
        target: &str,
        descriptor: &str,
        memory: PoolMemory,
        nlanes: &mut u32,
        opts: &Options,
    ) -> Result<(RpmemPool, PoolAttr), Error> {
        RpmemPool::start(target, descriptor, memory, nlanes, Kind::Open, opts)
            .map(|(p, a)| (p, a.unwrap_or_default()))
    }

    fn start(
        target: &str,
        descriptor: &str,
        memory: PoolMemory,
        nlanes: &mut u32,
        kind: Kind<'_>,
        opts: &Options,
    ) -> Result<(RpmemPool, Option<PoolAttr>), Error> {
        if *nlanes == 0 {
            return Err(Error::InvalidArgument("nlanes must be at least 1".into()));
        }
        let mut control = Control::start(target, opts)?;
        let caps = control.caps;
        let request = PoolRequest {
            pool_size: memory.len() as u64,
            nlanes: *nlanes,
            buff_size: LANE_BUFF_BYTES as u32,
            provider: opts.provider,
            persist_method: opts.persist_method,
            descriptor: descriptor.to_string(),
        };
        let request_sent = request.clone();
        let kind_name = match kind {
            Kind::Create(_) => "CREATE",
            Kind::Open => "OPEN",
        };
        let (resp, attr) = match kind {
            Kind::Create(a) => match control.call(&Message::Create {
                pool: request,
                attr: *a,
            })? {
                Message::CreateResp(r) => (r, None),
                other => return Err(control.unexpected("CREATE", &other)),
            },
            Kind::Open => match control.call(&Message::Open(request))? {
                Message::OpenResp { resp, attr } => (resp, Some(attr)),
                other => return Err(control.unexpected("OPEN", &other)),
            },
        };
        if let Err(detail) = check_resp(&resp, &request_sent, caps) {
            let e = Error::Protocol {
                target: control.target.clone(),
                during: kind_name,
                detail,
            };
            control.break_session(&e);
            return Err(e);
        }
        let lane_ip = match lane_ip(control.ch.as_ref().and_then(|c| c.peer_ip()), resp.addr) {
            Ok(ip) => ip,
            Err(detail) => {
                let e = Error::Protocol {
                    target: control.target.clone(),
                    during: kind_name,
                    detail,
                };
                control.break_session(&e);
                return Err(e);
            }
        };
        let pool = RpmemPool::connect(control, memory, &resp, lane_ip, caps, opts)?;
        *nlanes = resp.nlanes;
        Ok((pool, attr))
    }

    fn connect(
        control: Control,
        memory: PoolMemory,
        resp: &PoolResp,
        lane_ip: LaneIp,
        caps: Capabilities,
        opts: &Options,
    ) -> Result<RpmemPool, Error> {
        let prov = fabric::Provider::from_name(resp.provider.fabric_name()).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "provider {} is not supported here",
                resp.provider.fabric_name()
            ))
        })?;
        let addr = lane_ip.ip.to_string();
        let port = resp.port.to_string();
        let provider_err = |source| Error::Provider {
            provider: prov.to_string(),
            addr: format!("{addr}:{port}"),
            source,
        };
        let info = Info::get(&Hints::connect(prov, &addr, &port)).map_err(provider_err)?;
        let fab = Fabric::open(&info).map_err(provider_err)?;
        let domain = Domain::open(&fab, &info).map_err(provider_err)?;
        // SAFETY: PoolMemory guarantees [ptr, ptr+len) valid for its life; the pool owns the
        // memory and drops the registration (field order) before it; the memory is only ever
        // accessed through raw copies.
        let local_mr = unsafe {
            MemoryRegion::register(&domain, memory.as_ptr(), memory.len(), Access::LOCAL)
        }
        .map_err(|source| Error::Register {
            len: memory.len(),
            source,
        })?;
        let cfg = EndpointConfig {
            // Sends carry up to a whole PERSIST_INLINE; receives are PERSIST_RESPs.
            msg_bytes_max: LANE_BUFF_BYTES.max(rpmem_proto::LANE_INLINE_FRAME_MAX),
            // A PERSIST_RESP for each of MAX_UNANSWERED barriers plus the one being waited for.
            rx_slots: MAX_UNANSWERED + 1,
            cq_size: 32,
            ..EndpointConfig::default()
        };
        let deadline = Instant::now() + opts.lane_connect_deadline;
        let mut lanes = Vec::with_capacity(resp.nlanes as usize);
        for lane in 0..resp.nlanes {
            let data = LaneConnect {
                major: PROTO_MAJOR,
                minor: control.minor,
                lane,
                secret: resp.secret,
            }
            .encode();
            let ep =
                Endpoint::connect(&domain, &info, &cfg, &data, deadline).map_err(|source| {
                    Error::LaneConnect {
                        lane,
                        addr: addr.clone(),
                        port: resp.port,
                        provider: prov.name(),
                        source: Box::new(source),
                        note: lane_ip.note.clone(),
                    }
                })?;
            let write_data = caps.contains(Capabilities::WRITE_DATA) && ep.supports_write_data();
            let inline = (caps.contains(Capabilities::INLINE_PERSIST)
                && resp.persist_method == PersistMethod::General)
                .then(|| InlineBatch::new(lane));
            lanes.push(Mutex::new(Lane {
                ep,
                broken: None,
                flushed: None,
                write_data,
                bounce: None,
                inline,
                unanswered: VecDeque::new(),
            }));
        }
        let max_rma = info.max_msg_size().clamp(4096, RMA_CHUNK_MAX);
        Ok(RpmemPool {
            lanes,
            local_mr,
            domain,
            _fabric: fab,
            control: Mutex::new(control),
            memory,
            remote: RemoteKey {
                addr: resp.raddr,
                len: resp.pool_size,
                key: resp.rkey,
            },
            caps,
            method: resp.persist_method,
            provider: resp.provider,
            max_rma,
            writes_ordered: info.msg_order() & FI_ORDER_WAW != 0,
            persist_deadline: opts.persist_deadline,
            inline_seq: Mutex::new(1),
        })
    }

    /// Whether persists on `lane` use RMA write with data where the range fits (protocol 1.1,
    /// WRITE_DATA negotiated and the provider carries 8 bytes of CQ data).
    pub fn uses_write_data(&self, lane: u32) -> bool {
        self.lane(lane).map(|l| l.write_data).unwrap_or(false)
    }

    /// Whether `flush` on `lane` sends small ranges as PERSIST_INLINE (protocol 1.2,
    /// INLINE_PERSIST negotiated, general method), so that `barrier` need not wait.
    pub fn uses_inline_persist(&self, lane: u32) -> bool {
        self.lane(lane).map(|l| l.inline.is_some()).unwrap_or(false)
    }

    /// Number of lanes granted.
    pub fn nlanes(&self) -> u32 {
        self.lanes.len() as u32
    }

    /// Size of the local pool (the replicated range).
    pub fn size(&self) -> u64 {
        self.memory.len() as u64
    }

    /// Size of the remote pool (at least [`size`](Self::size)).
    pub fn remote_size(&self) -> u64 {
        self.remote.len
    }

    /// The persist method rpmemd granted.
    pub fn persist_method(&self) -> PersistMethod {
        self.method
    }

    /// The provider of the data lanes.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The local memory (write to it, then persist).
    pub fn memory(&self) -> &PoolMemory {
        &self.memory
    }

    fn lane(&self, lane: u32) -> Result<MutexGuard<'_, Lane>, Error> {
        let l = self.lanes.get(lane as usize).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "lane {lane} outside the {} lanes granted",
                self.lanes.len()
            ))
        })?;
        // A panic while holding a lane lock leaves the endpoint usable (its state is in
        // libfabric), so a poisoned lock is taken over.
        Ok(l.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Runs `f` on `lane` under its lock; a transport failure (timeout, connection error,
    /// undecodable reply) marks the lane broken for good, a refusal by rpmemd does not.
    fn with_lane<T>(
        &self,
        lane: u32,
        f: impl FnOnce(&mut Lane) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut l = self.lane(lane)?;
        if let Some(why) = &l.broken {
            return Err(Error::LaneBroken {
                lane,
                why: why.clone(),
            });
        }
        let r = f(&mut l);
        if let Err(e) = &r {
            if matches!(
                e,
                Error::Lane { .. } | Error::LaneTimeout { .. } | Error::Protocol { .. }
            ) {
                l.broken = Some(e.to_string());
            }
        }
        r
    }

    /// A failed data-plane step: a deadline reached is `LaneTimeout`, anything else `Lane`.
    fn lane_err(&self, lane: u32, op: &'static str, source: fabric::Error) -> Error {
        match source {
            fabric::Error::Timeout { .. } => Error::LaneTimeout {
                lane,
                op,
                deadline: self.persist_deadline,
            },
            source => Error::Lane { lane, op, source },
        }
    }

    fn check(&self, offset: u64, length: u64) -> Result<(), Error> {
        check_range(offset, length, self.size()).map_err(|e| Error::InvalidArgument(e.to_string()))
    }

    /// RMA-writes the range, unsignaled (the next waited operation on the lane covers it).
    fn write_range(&self, l: &mut Lane, lane: u32, offset: u64, length: u64) -> Result<(), Error> {
        let mut done = 0u64;
        while done < length {
            let n = (length - done).min(self.max_rma as u64);
            let off = offset + done;
            l.ep.write(
                &self.local_mr,
                off as usize,
                n as usize,
                &self.remote,
                off,
                Signal::None,
                Instant::now() + self.persist_deadline,
            )
            .map_err(|source| self.lane_err(lane, "RMA write", source))?;
            done += n;
        }
        Ok(())
    }

    /// The write data describing this persist, when it may be sent that way (§8.5): the lane
    /// uses write data, the range is not empty and fits the immediate, and it is one RMA chunk
    /// or the provider orders writes. `None`: RMA write + PERSIST.
    fn write_data_for(
        &self,
        l: &Lane,
        offset: u64,
        length: u64,
        relaxed: bool,
        deep: bool,
    ) -> Option<WriteData> {
        let one_chunk = length <= self.max_rma as u64;
        (l.write_data
            && length > 0
            && WriteData::fits(offset, length)
            && (one_chunk || self.writes_ordered))
            .then_some(WriteData {
                relaxed,
                deep,
                offset,
                length,
            })
    }

    /// Persist by RMA write with data (§8.5): every chunk but the last a plain unsignaled write,
    /// the last one carrying the immediate that describes the **whole** range; then the
    /// PERSIST_RESP. rpmemd acts on the immediate only once the last chunk has landed, and the
    /// earlier chunks landed before it (one chunk, or in-order writes: `write_data_for`).
    fn persist_write_data(&self, l: &mut Lane, lane: u32, wd: WriteData) -> Result<(), Error> {
        let imm = wd
            .encode()
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let WriteData { offset, length, .. } = wd;
        let deadline = Instant::now() + self.persist_deadline;
        let mut done = 0u64;
        while done < length {
            let n = (length - done).min(self.max_rma as u64);
            let off = offset + done;
            let last = done + n == length;
            let r = if last {
                l.ep.write_with_data(
                    &self.local_mr,
                    off as usize,
                    n as usize,
                    &self.remote,
                    off,
                    imm,
                    deadline,
                )
            } else {
                l.ep.write(
                    &self.local_mr,
                    off as usize,
                    n as usize,
                    &self.remote,
                    off,
                    Signal::None,
                    deadline,
                )
            };
            r.map_err(|source| self.lane_err(lane, "RMA write with data", source))?;
            done += n;
        }
        self.read_persist_resp(l, lane, offset, length, deadline)
    }

    fn persist_msg(
        &self,
        l: &mut Lane,
        lane: u32,
        offset: u64,
        length: u64,
        relaxed: bool,
        deep: bool,
    ) -> Result<(), Error> {
        if self.method == PersistMethod::Appliance && !deep {
            // Read-after-write: the read completes only after the writes before it reached
            // the target's memory, which is in its persistence domain (rpmemd checked).
            let n = length.min(8) as usize;
            if n > 0 {
                let Lane { ep, bounce: b, .. } = l;
                let b = match b {
                    Some(b) => b,
                    None => b.insert(new_bounce(&self.domain, lane)?),
                };
                ep.read(
                    b.mr(),
                    0,
                    n,
                    &self.remote,
                    offset,
                    Instant::now() + self.persist_deadline,
                )
                .map_err(|source| self.lane_err(lane, "RMA read (appliance persist)", source))?;
            }
            return Ok(());
        }
        let deadline = self.send_persist(l, lane, offset, length, relaxed, deep)?;
        self.read_persist_resp(l, lane, offset, length, deadline)
    }

    /// Sends PERSIST for the range on the lane; returns the deadline of its answer.
    fn send_persist(
        &self,
        l: &mut Lane,
        lane: u32,
        offset: u64,
        length: u64,
        relaxed: bool,
        deep: bool,
    ) -> Result<Instant, Error> {
        let frame = rpmem_proto::encode(&Message::Persist {
            lane,
            relaxed,
            deep,
            offset,
            length,
        })
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let deadline = Instant::now() + self.persist_deadline;
        l.ep.send(&frame, deadline)
            .map_err(|source| self.lane_err(lane, "sending PERSIST", source))?;
        Ok(deadline)
    }

    /// Waits for the PERSIST_RESP of the PERSIST sent on the lane.
    fn read_persist_resp(
        &self,
        l: &mut Lane,
        lane: u32,
        offset: u64,
        length: u64,
        deadline: Instant,
    ) -> Result<(), Error> {
        let mut buf = [0u8; LANE_BUFF_BYTES];
        let n =
            l.ep.recv_into_spinning(
                &mut buf,
                fabric::transfer_spin(fabric::DEFAULT_SPIN, length),
                deadline,
            )
            .map_err(|source| self.lane_err(lane, "waiting for PERSIST_RESP", source))?;
        let protocol = |detail: String| Error::Protocol {
            target: self.target_name(),
            during: "PERSIST",
            detail,
        };
        match rpmem_proto::decode(&buf[..n]).map_err(|e| protocol(e.to_string()))? {
            Message::PersistResp { lane: l2, status } => {
                if l2 != lane {
                    return Err(protocol(format!(
                        "PERSIST_RESP for lane {l2} on lane {lane}"
                    )));
                }
                if status != Status::Ok {
                    return Err(Error::PersistRefused {
                        lane,
                        offset,
                        length,
                        status,
                    });
                }
                Ok(())
            }
            other => Err(protocol(format!(
                "expected PERSIST_RESP, got {}",
                other.msg_type().name()
            ))),
        }
    }

    fn target_name(&self) -> String {
        self.control
            .lock()
            .map(|c| c.target.clone())
            .unwrap_or_default()
    }

    /// Makes `[offset, offset+length)` of the local memory durable on the target, on `lane`.
    pub fn persist(
        &self,
        offset: u64,
        length: u64,
        lane: u32,
        flags: PersistFlags,
    ) -> Result<(), Error> {
        self.check(offset, length)?;
        let relaxed = flags.contains(PersistFlags::RELAXED);
        self.with_lane(lane, |l| {
            // Earlier flushes and barriers first: their answers come before this one's, and
            // this persist's RMA bytes must not land ahead of them.
            self.quiesce(l, lane)?;
            // Appliance persists are read-after-write and never involve rpmemd.
            if self.method == PersistMethod::General {
                if let Some(wd) = self.write_data_for(l, offset, length, relaxed, false) {
                    return self.persist_write_data(l, lane, wd);
                }
            }
            self.write_range(l, lane, offset, length)?;
            self.persist_msg(l, lane, offset, length, relaxed, false)
        })
    }

    /// As [`persist`](Self::persist), and also flushes to the deepest persistence domain on
    /// the target (DEEP; needs the DEEP_PERSIST capability).
    pub fn deep_persist(&self, offset: u64, length: u64, lane: u32) -> Result<(), Error> {
        if !self.caps.contains(Capabilities::DEEP_PERSIST) {
            return Err(Error::InvalidArgument(
                "rpmemd on the target does not support deep persist (capability not negotiated)"
                    .into(),
            ));
        }
        self.check(offset, length)?;
        self.with_lane(lane, |l| {
            self.quiesce(l, lane)?;
            if let Some(wd) = self.write_data_for(l, offset, length, false, true) {
                return self.persist_write_data(l, lane, wd);
            }
            self.write_range(l, lane, offset, length)?;
            self.persist_msg(l, lane, offset, length, false, true)
        })
    }

    /// Starts replicating `[offset, offset+length)` on `lane` without waiting; [`drain`]
    /// (Self::drain) on the same lane makes every flushed range durable.
    pub fn flush(&self, offset: u64, length: u64, lane: u32) -> Result<(), Error> {
        self.check(offset, length)?;
        self.with_lane(lane, |l| {
            if length == 0 {
                return Ok(());
            }
            if l.inline.is_some() && length as usize <= INLINE_DATA_MAX {
                return self.flush_inline(l, lane, offset, length as usize);
            }
            // By RMA: its bytes land when they arrive, so every earlier persist of the lane
            // must be durable on the target first (§8.6).
            self.quiesce(l, lane)?;
            self.write_range(l, lane, offset, length)?;
            let end = offset + length;
            l.flushed = Some(match l.flushed {
                Some((s, e)) => (s.min(offset), e.max(end)),
                None => (offset, end),
            });
            Ok(())
        })
    }

    /// Waits until every range flushed on `lane` is durable on the target (one PERSIST over
    /// the hull of the flushed ranges: bytes in between are persisted too, which is harmless).
    pub fn drain(&self, lane: u32) -> Result<(), Error> {
        self.with_lane(lane, |l| self.drain_locked(l, lane))
    }

    /// Orders every range flushed on `lane` so far before every later one, on the target,
    /// without waiting: the pending persist is sent and its answer left for a later
    /// [`drain`](Self::drain) (or the fourth barrier) to read. With the appliance method, or
    /// without inline persists, a barrier is a drain: RMA bytes sent after it could otherwise
    /// land on the target ahead of it.
    pub fn barrier(&self, lane: u32) -> Result<(), Error> {
        self.with_lane(lane, |l| {
            if l.inline.is_none() {
                return self.drain_locked(l, lane);
            }
            self.send_pending(l, lane)
        })
    }

    /// [`drain`](Self::drain) on a lane already locked.
    fn drain_locked(&self, l: &mut Lane, lane: u32) -> Result<(), Error> {
        if self.method == PersistMethod::Appliance {
            let Some((s, e)) = l.flushed.take() else {
                return Ok(());
            };
            return self.persist_msg(l, lane, s, e - s, false, false);
        }
        self.send_pending(l, lane)?;
        self.settle(l, lane)
    }

    /// Adds `[offset, offset+length)` to the lane's PERSIST_INLINE, whose bytes are copied from
    /// the local memory when it is sent (sending the pending persists first when it is full, or
    /// when RMA ranges wait for their PERSIST: they were flushed earlier and go first).
    fn flush_inline(
        &self,
        l: &mut Lane,
        lane: u32,
        offset: u64,
        length: usize,
    ) -> Result<(), Error> {
        let full = l.inline.as_ref().is_some_and(|b| !b.fits(length));
        if full || l.flushed.is_some() {
            self.send_pending(l, lane)?;
        }
        let pushed = l.inline.as_mut().is_some_and(|b| b.reserve(offset, length));
        if !pushed {
            return Err(Error::InvalidArgument(format!(
                "inline persist of {length} bytes at {offset} does not fit an empty message"
            )));
        }
        Ok(())
    }

    /// Sends what `flush` left pending on the lane — the RMA ranges' PERSIST, then the
    /// PERSIST_INLINE (at most one of them is non-empty: see `flush_inline`/`flush`) — as
    /// unanswered persists.
    fn send_pending(&self, l: &mut Lane, lane: u32) -> Result<(), Error> {
        if let Some((s, e)) = l.flushed.take() {
            self.make_room(l, lane)?;
            let deadline = self.send_persist(l, lane, s, e - s, false, false)?;
            l.unanswered.push_back((s, e - s, deadline));
        }
        if l.inline.as_ref().is_none_or(|b| b.is_empty()) {
            return Ok(());
        }
        self.make_room(l, lane)?;
        let deadline = Instant::now() + self.persist_deadline;
        let Lane { ep, inline, .. } = l;
        let Some(b) = inline.as_mut() else {
            return Ok(());
        };
        let (s, len) = b.hull();
        {
            // Numbered and copied under one lock: a later number has a later copy.
            let mut next = self.inline_seq.lock().unwrap_or_else(|p| p.into_inner());
            b.set_seq(*next);
            *next += 1;
            // The ranges were checked against the memory at flush; a failure here would leave
            // a number unsent, and rpmemd ends the session when it waits for it in vain.
            b.fill(|off, d| self.memory.read(off as usize, d))?;
        }
        let sent = ep.send(b.frame(), deadline);
        b.clear();
        sent.map_err(|source| self.lane_err(lane, "sending PERSIST_INLINE", source))?;
        l.unanswered.push_back((s, len, deadline));
        Ok(())
    }

    /// Reads the oldest unanswered persist's answer when the lane has [`MAX_UNANSWERED`].
    fn make_room(&self, l: &mut Lane, lane: u32) -> Result<(), Error> {
        if l.unanswered.len() >= MAX_UNANSWERED {
            if let Some((o, n, dl)) = l.unanswered.pop_front() {
                self.read_persist_resp(l, lane, o, n, dl)?;
            }
        }
        Ok(())
    }

    /// Reads every unanswered persist's answer, oldest first.
    fn settle(&self, l: &mut Lane, lane: u32) -> Result<(), Error> {
        while let Some((o, n, dl)) = l.unanswered.pop_front() {
            self.read_persist_resp(l, lane, o, n, dl)?;
        }
        Ok(())
    }

    /// Sends whatever is pending and reads every answer: nothing of the lane is in flight.
    fn quiesce(&self, l: &mut Lane, lane: u32) -> Result<(), Error> {
        if l.inline.as_ref().is_some_and(|b| !b.is_empty()) || !l.unanswered.is_empty() {
            self.send_pending(l, lane)?;
            self.settle(l, lane)?;
        }
        Ok(())
    }

    /// The first half of [`drain`](Self::drain): sends the PERSIST covering every range
    /// flushed on `lane` and returns without waiting for its answer; [`PendingDrain::wait`]
    /// waits. The lane stays locked in between, so several pools (or lanes) can have their
    /// drains in flight at once — this is how a pool with several remote replicas drains them
    /// in parallel. With the appliance method the whole drain happens here.
    pub fn drain_begin(&self, lane: u32) -> Result<PendingDrain<'_>, Error> {
        let mut l = self.lane(lane)?;
        if let Some(why) = &l.broken {
            return Err(Error::LaneBroken {
                lane,
                why: why.clone(),
            });
        }
        if self.method == PersistMethod::Appliance {
            let Some((s, e)) = l.flushed.take() else {
                return Ok(PendingDrain {
                    pool: self,
                    lane,
                    state: None,
                });
            };
            let r = self.persist_msg(&mut l, lane, s, e - s, false, false);
            if let Err(err) = &r {
                mark_broken(&mut l, err);
            }
            return r.map(|()| PendingDrain {
                pool: self,
                lane,
                state: None,
            });
        }
        if let Err(err) = self.send_pending(&mut l, lane) {
            mark_broken(&mut l, &err);
            return Err(err);
        }
        let state = (!l.unanswered.is_empty()).then_some(l);
        Ok(PendingDrain {
            pool: self,
            lane,
            state,
        })
    }

    /// Reads `out.len()` bytes at `offset` of the remote pool (RMA read; rpmemd's CPU is not
    /// involved).
    pub fn read(&self, out: &mut [u8], offset: u64, lane: u32) -> Result<(), Error> {
        check_range(offset, out.len() as u64, self.remote.len)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        self.with_lane(lane, |l| {
            // Inline persists are stored by rpmemd only when it handles them: a read after
            // them on this lane sees their bytes.
            self.quiesce(l, lane)?;
            let mut done = 0usize;
            while done < out.len() {
                let n = (out.len() - done).min(READ_BOUNCE_BYTES).min(self.max_rma);
                let deadline = Instant::now() + self.persist_deadline;
                let Lane { ep, bounce: b, .. } = l;
                let b = match b {
                    Some(b) => b,
                    None => b.insert(new_bounce(&self.domain, lane)?),
                };
                ep.read(b.mr(), 0, n, &self.remote, offset + done as u64, deadline)
                    .map_err(|source| self.lane_err(lane, "RMA read", source))?;
                b.read_at(0, &mut out[done..done + n])
                    .map_err(|source| self.lane_err(lane, "copying read data", source))?;
                done += n;
            }
            Ok(())
        })
    }

    /// Stores new pool attributes on the target.
    pub fn set_attr(&self, attr: &PoolAttr) -> Result<(), Error> {
        let mut c = self.control.lock().unwrap_or_else(|p| p.into_inner());
        match c.call(&Message::SetAttr(*attr))? {
            Message::SetAttrResp(_) => Ok(()),
            other => Err(c.unexpected("SET_ATTR", &other)),
        }
    }

    /// Closes the session: rpmemd shuts the lanes, makes the pool durable and closes it (and
    /// removes it with `remove`), then exits.
    pub fn close(self, remove: bool) -> Result<(), Error> {
        let RpmemPool {
            lanes,
            local_mr,
            domain,
            _fabric,
            control,
            memory,
            ..
        } = self;
        let mut control = control.into_inner().unwrap_or_else(|p| p.into_inner());
        // The lanes are shut down first: rpmemd's lane threads then see the disconnect at once
        // instead of noticing its stop flag only at the end of their current receive slice, so
        // CLOSE_RESP (sent after every lane thread ended) is not delayed.
        drop(lanes);
        drop(local_mr);
        drop(domain);
        drop(_fabric);
        let reply = control.call(&Message::Close { remove });
        match reply? {
            Message::CloseResp(_) => {}
            other => return Err(control.unexpected("CLOSE", &other)),
        }
        let target = control.target.clone();
        let Some(ch) = control.ch.take() else {
            return Err(control.gone("CLOSE"));
        };
        let exit = ch.finish().map_err(|source| Error::Start {
            target: target.clone(),
            source,
        })?;
        drop(memory);
        if exit.code.is_some_and(|c| c != 0) {
            return Err(Error::RpmemdGone {
                target,
                during: "CLOSE",
                explain: exit.explain(),
            });
        }
        Ok(())
    }
}

/// A drain whose PERSIST was sent and whose answer is awaited ([`RpmemPool::drain_begin`]).
/// Holds the lane's lock until [`wait`](Self::wait); dropped without waiting, the lane is
/// marked broken (its answer would otherwise be taken for the next request's).
pub struct PendingDrain<'a> {
    pool: &'a RpmemPool,
    lane: u32,
    /// The lane, with answers to read; `None` when there is nothing to wait for.
    state: Option<MutexGuard<'a, Lane>>,
}

impl PendingDrain<'_> {
    /// Waits for the answer: `Ok` once every range flushed on the lane before
    /// [`RpmemPool::drain_begin`] is durable on the target.
    pub fn wait(mut self) -> Result<(), Error> {
        let Some(mut l) = self.state.take() else {
            return Ok(());
        };
        let r = self.pool.settle(&mut l, self.lane);
        if let Err(e) = &r {
            mark_broken(&mut l, e);
        }
        r
    }
}

impl Drop for PendingDrain<'_> {
    fn drop(&mut self) {
        if let Some(mut l) = self.state.take() {
            l.broken = Some("a drain was started and never waited for".into());
        }
    }
}

/// As `with_lane`: a transport failure makes the lane unusable for good.
fn mark_broken(l: &mut Lane, e: &Error) {
    if matches!(
        e,
        Error::Lane { .. } | Error::LaneTimeout { .. } | Error::Protocol { .. }
    ) {
        l.broken = Some(e.to_string());
    }
}

fn new_bounce(domain: &Domain, lane: u32) -> Result<OwnedRegion, Error> {
    OwnedRegion::new(domain, READ_BOUNCE_BYTES, Access::LOCAL).map_err(|source| Error::Lane {
        lane,
        op: "allocating the read buffer",
        source,
    })
}

/// Checks a CREATE_RESP/OPEN_RESP against the request and the negotiated capabilities;
/// the error is the detail of a protocol error (rpmemd is broken or the reply was tampered with).
fn check_resp(r: &PoolResp, asked: &PoolRequest, caps: Capabilities) -> Result<(), String> {
    if r.nlanes == 0 || r.nlanes > asked.nlanes {
        return Err(format!(
            "granted {} lanes for {} asked",
            r.nlanes, asked.nlanes
        ));
    }
    if r.pool_size < asked.pool_size {
        return Err(format!(
            "remote pool of {} bytes is smaller than the {} asked",
            r.pool_size, asked.pool_size
        ));
    }
    if r.provider != asked.provider {
        return Err(format!(
            "listener uses provider {:?}, {:?} was asked",
            r.provider, asked.provider
        ));
    }
    if r.port == 0 {
        return Err("data listener port 0".into());
    }
    // rpmemd may fall back from Appliance to General (§8.3), never the other way: granting
    // Appliance unasked, or without the negotiated capability, would make this side stop
    // sending PERSIST and trust RMA reads for durability the target never promised.
    match (asked.persist_method, r.persist_method) {
        (_, PersistMethod::General) => {}
        (PersistMethod::Appliance, PersistMethod::Appliance)
            if caps.contains(Capabilities::APPLIANCE) => {}
        (PersistMethod::Appliance, PersistMethod::Appliance) => {
            return Err(
                "granted the appliance persist method without the APPLIANCE capability".into(),
            )
        }
        (wanted, granted) => {
            return Err(format!(
                "granted persist method {granted:?}, {wanted:?} was asked"
            ))
        }
    }
    Ok(())
}

/// Where the lanes connect, and why when that is not the address rpmemd announced.
#[derive(Debug, PartialEq, Eq)]
struct LaneIp {
    ip: IpAddr,
    /// Empty, or a sentence (with a leading separator) for error messages.
    note: String,
}

/// Chooses the lanes' address (docs/PROTOCOL.md §14, "Lane address"). `peer` is the address the
/// control channel reached the target at (`ControlChannel::peer_ip`), `announced` the listener
/// address in CREATE_RESP/OPEN_RESP.
///
/// - `peer` unknown (external ssh command): the announced address, unless it is unspecified or
///   multicast;
/// - the announced address is `peer`, or both are loopback addresses (the target is this host,
///   and rpmemd's `RPMEMD_LISTEN_ADDR` chose another loopback address): the announced one;
/// - otherwise `peer`: the announced address is not followed, so neither rpmemd nor someone
///   rewriting its reply can send the lanes (and the session secret) to another host, and a
///   target behind NAT, which announces its private address, is still reached.
fn lane_ip(peer: Option<IpAddr>, announced: IpAddr) -> Result<LaneIp, String> {
    let announced_ok = |ip: IpAddr| LaneIp {
        ip,
        note: String::new(),
    };
    match peer {
        None if announced.is_unspecified() || announced.is_multicast() => Err(format!(
            "rpmemd announced the data listener address {announced}, which cannot be connected to"
        )),
        None => Ok(announced_ok(announced)),
        Some(p) if p == announced || (p.is_loopback() && announced.is_loopback()) => {
            Ok(announced_ok(announced))
        }
        Some(p) => Ok(LaneIp {
            ip: p,
            note: format!(
                "; rpmemd announced {announced}, which is not the address the target was \
                 reached at, so it was not followed"
            ),
        }),
    }
}

/// Removes the pool `descriptor` on `target` (REMOVE); rpmemd refuses a pool in use.
pub fn remove(
    target: &str,
    descriptor: &str,
    flags: RemoveFlags,
    opts: &Options,
) -> Result<(), Error> {
    let mut c = Control::start(target, opts)?;
    match c.call(&Message::Remove {
        descriptor: descriptor.to_string(),
        force: flags.force,
        pool_set: flags.pool_set,
    })? {
        Message::RemoveResp(_) => {}
        other => return Err(c.unexpected("REMOVE", &other)),
    }
    let target_s = c.target.clone();
    if let Some(ch) = c.ch.take() {
        ch.finish().map_err(|source| Error::Start {
            target: target_s,
            source,
        })?;
    }
    Ok(())
}

const _: () = assert!(LANE_BUFF_BYTES >= LANE_FRAME_MAX);

#[cfg(test)]
mod tests {
    use super::*;
    use rpmem_proto::Secret;

    fn request(method: PersistMethod) -> PoolRequest {
        PoolRequest {
            pool_size: 1 << 20,
            nlanes: 4,
            buff_size: LANE_BUFF_BYTES as u32,
            provider: Provider::Tcp,
            persist_method: method,
            descriptor: "a.set".into(),
        }
    }

    fn resp(method: PersistMethod) -> PoolResp {
        PoolResp {
            status: Status::Ok,
            nlanes: 2,
            addr: IpAddr::from([127, 0, 0, 1]),
            port: 4242,
            persist_method: method,
            provider: Provider::Tcp,
            rkey: 1,
            raddr: 0,
            pool_size: 1 << 20,
            secret: Secret([7; rpmem_proto::SECRET_LEN]),
        }
    }

    /// `check(asked method, granted method, caps, tweak)` is Ok or an error containing `want`.
    fn check(
        asked: PersistMethod,
        granted: PersistMethod,
        caps: Capabilities,
        tweak: impl FnOnce(&mut PoolResp),
        want: Option<&str>,
    ) {
        let mut r = resp(granted);
        tweak(&mut r);
        match (check_resp(&r, &request(asked), caps), want) {
            (Ok(()), None) => {}
            (Err(e), Some(w)) => assert!(e.contains(w), "{e:?} should name {w:?}"),
            (got, want) => panic!("got {got:?}, wanted an error naming {want:?}"),
        }
    }

    #[test]
    fn check_resp_accepts_what_was_asked_or_the_general_fallback() {
        use PersistMethod::{Appliance as A, General as G};
        let all = Capabilities::KNOWN;
        check(G, G, all, |_| {}, None);
        check(A, G, all, |_| {}, None);
        check(A, A, all, |_| {}, None);
        check(A, G, Capabilities(0), |_| {}, None);
    }

    #[test]
    fn check_resp_refuses_an_unasked_or_unnegotiated_appliance_method() {
        use PersistMethod::{Appliance as A, General as G};
        check(
            G,
            A,
            Capabilities::KNOWN,
            |_| {},
            Some("Appliance, General was asked"),
        );
        check(
            A,
            A,
            Capabilities::DEEP_PERSIST,
            |_| {},
            Some("APPLIANCE capability"),
        );
    }

    #[test]
    fn check_resp_refuses_bad_port_lanes_size_provider() {
        let g = PersistMethod::General;
        let all = Capabilities::KNOWN;
        check(g, g, all, |r| r.port = 0, Some("port 0"));
        check(g, g, all, |r| r.nlanes = 0, Some("granted 0 lanes"));
        check(g, g, all, |r| r.nlanes = 5, Some("granted 5 lanes for 4"));
        check(g, g, all, |r| r.pool_size = 4096, Some("smaller than"));
        check(
            g,
            g,
            all,
            |r| r.provider = Provider::Sockets,
            Some("provider Sockets"),
        );
    }

    #[test]
    fn lane_ip_follows_the_announced_address_only_when_it_is_the_peer_or_same_host_loopback() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let chosen = |peer: Option<&str>, announced: &str| {
            lane_ip(peer.map(ip), ip(announced)).map(|l| (l.ip.to_string(), l.note.is_empty()))
        };
        let ok = |s: &str, followed: bool| Ok((s.to_string(), followed));
        // Unknown peer (external ssh): the announced address, if connectable.
        assert_eq!(chosen(None, "10.1.2.3"), ok("10.1.2.3", true));
        assert!(chosen(None, "0.0.0.0")
            .unwrap_err()
            .contains("cannot be connected"));
        assert!(chosen(None, "::").is_err());
        assert!(chosen(None, "224.0.0.1").is_err());
        // Known peer: equal, or loopback on both sides (same host).
        assert_eq!(chosen(Some("10.1.2.3"), "10.1.2.3"), ok("10.1.2.3", true));
        assert_eq!(
            chosen(Some("127.0.0.1"), "127.0.0.2"),
            ok("127.0.0.2", true)
        );
        assert_eq!(chosen(Some("::1"), "127.0.0.1"), ok("127.0.0.1", true));
        // Anything else is not followed: the peer is used and the note says why.
        assert_eq!(
            chosen(Some("127.0.0.1"), "192.0.2.1"),
            ok("127.0.0.1", false)
        );
        assert_eq!(chosen(Some("10.1.2.3"), "127.0.0.1"), ok("10.1.2.3", false));
        assert_eq!(
            chosen(Some("203.0.113.9"), "10.0.0.5"),
            ok("203.0.113.9", false)
        );
        let note = lane_ip(Some(ip("10.1.2.3")), ip("0.0.0.0")).unwrap().note;
        assert!(
            note.contains("announced 0.0.0.0") && note.contains("not followed"),
            "{note}"
        );
    }
}
