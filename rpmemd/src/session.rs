//! One session on the control channel (rpmemd's stdin/stdout): the state machine of
//! docs/PROTOCOL.md §9 driven by `rpmem_proto::session`, with the pool work of [`crate::store`]
//! and the data plane of [`crate::lanes`].
//!
//! The session ends on CLOSE, on REMOVE, on a failed HELLO, on a decode or state error (after one
//! ERROR frame), on a malformed lane frame (a lane's [`Fault`], also after one ERROR frame), or
//! when stdin ends; in every case the pool is made durable and closed (never
//! removed unless CLOSE asked for it) before rpmemd exits.

use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rpmem_proto::{
    session::{negotiate, TargetState},
    Capabilities, Message, PersistMethod, PoolAttr, PoolRequest, PoolResp, ReadError, Secret,
    Status, DEFAULT_LANE_CONNECT_DEADLINE, PROTO_MAJOR, PROTO_MINOR,
};

use crate::lanes::{self, Fault, Lanes, Listening};
use crate::log::{err, info, notice, warning};
use crate::store::{self, Failure, Served};

/// Most lanes granted to one session (one thread each).
pub const LANES_GRANTED_MAX: u32 = 128;

/// How long the control loop waits for input before looking at the lanes' [`Fault`].
const FAULT_POLL: Duration = Duration::from_millis(50);

/// What this rpmemd offers in HELLO_RESP. WRITE_DATA: the lanes handle persists described by
/// remote CQ data (§8.5); INLINE_PERSIST: they handle PERSIST_INLINE (§8.6) in message order
/// (`lanes.rs`, docs/PROTOCOL.md).
pub const OUR_CAPABILITIES: Capabilities = Capabilities(
    Capabilities::DEEP_PERSIST.0
        | Capabilities::APPLIANCE.0
        | Capabilities::SOCKETS.0
        | Capabilities::WRITE_DATA.0
        | Capabilities::INLINE_PERSIST.0,
);

pub struct Settings {
    pub poolset_dir: PathBuf,
    pub persist_apm: bool,
    pub persist_general: bool,
    /// Address the data listener binds to.
    pub listen_ip: IpAddr,
    /// When rpmemd started.
    pub started: Instant,
    /// The whole HELLO must have arrived this long after `started` (docs/PROTOCOL.md §10).
    pub hello_deadline: Duration,
}

/// The pool of the session with its data plane. Field order is drop order: lanes and the
/// registration go before the pool's mapping.
struct OpenPool {
    lanes: Option<Lanes>,
    /// The listener, until every lane is connected.
    pep: Option<fabric::PassiveEndpoint>,
    mr: Option<fabric::MemoryRegion>,
    domain: fabric::Domain,
    served: Arc<Served>,
    _fabric: fabric::Fabric,
}

impl OpenPool {
    /// Stops the lanes, unregisters the memory, and closes the pool.
    fn shutdown(mut self, remove: bool) -> Result<(), Failure> {
        if let Some(l) = self.lanes.take() {
            l.stop();
        }
        drop(self.pep.take());
        // The registration goes before the pool's mapping (Served::close unmaps).
        drop(self.mr.take());
        let served = Arc::try_unwrap(self.served).map_err(|_| {
            Failure::new(
                Status::Internal,
                "pool still referenced after the lanes stopped",
            )
        })?;
        served.close(remove)
    }
}

pub struct Session {
    settings: Settings,
    state: TargetState,
    version: (u16, u16),
    caps: Capabilities,
    pool: Option<OpenPool>,
    /// Lanes granted and the secret, between CREATE_RESP/OPEN_RESP and the lane admission.
    pending: Option<(u32, Secret)>,
    /// Raised by a lane that received a malformed frame: the session ends.
    fault: Arc<Fault>,
    /// Deadline of the control input (the first message), shared with [`ControlInput`].
    input_deadline: Arc<Mutex<Option<Instant>>>,
}

/// The control channel's input (a pipe or socket fd) read in slices of [`FAULT_POLL`], so that a
/// lane fault ends a session that is waiting for the next request. `R` must be unbuffered (a
/// `File`, not `Stdin`): readiness is polled on the descriptor.
///
/// While the session's input deadline is set (until the first message, HELLO, has been read), a
/// read after it fails with `TimedOut`: the deadline covers the whole message, so a peer sending
/// one byte and then nothing cannot hold rpmemd.
pub struct ControlInput<R> {
    inner: R,
    fd: RawFd,
    fault: Arc<Fault>,
    deadline: Arc<Mutex<Option<Instant>>>,
}

impl<R: Read + AsRawFd> Read for ControlInput<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.fault.is_raised() {
                return Err(io::Error::other("the session ended on a lane fault"));
            }
            let mut slice = FAULT_POLL;
            if let Some(d) = *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the first message did not arrive whole before its deadline",
                    ));
                }
                slice = slice.min(left);
            }
            let mut pfd = libc::pollfd {
                fd: self.fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // Rounded up: a 0 ms poll would spin for the last sub-millisecond.
            let millis = (slice.as_micros().div_ceil(1000)) as libc::c_int;
            // SAFETY: one valid pollfd for the duration of the call.
            let rc = unsafe { libc::poll(&mut pfd, 1, millis) };
            if rc > 0 {
                return self.inner.read(buf);
            }
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

impl Session {
    pub fn new(settings: Settings) -> Session {
        let hello_by = settings.started + settings.hello_deadline;
        Session {
            input_deadline: Arc::new(Mutex::new(Some(hello_by))),
            settings,
            state: TargetState::AwaitHello,
            version: (PROTO_MAJOR, PROTO_MINOR),
            caps: Capabilities(0),
            pool: None,
            pending: None,
            fault: Arc::new(Fault::default()),
        }
    }

    /// Wraps the control channel's input so that reading it also watches for lane faults.
    pub fn input<R: Read + AsRawFd>(&self, inner: R) -> ControlInput<R> {
        ControlInput {
            fd: inner.as_raw_fd(),
            inner,
            fault: self.fault.clone(),
            deadline: self.input_deadline.clone(),
        }
    }

    /// Runs the session until it ends; returns the process exit code.
    pub fn run(mut self, input: &mut dyn Read, output: &mut dyn Write) -> i32 {
        let code = loop {
            let msg = match rpmem_proto::read_message(input) {
                _ if self.fault.is_raised() => {
                    let why = self.fault.why().unwrap_or_default();
                    err!("ending the session: {why}");
                    let _ = send(output, &Message::error(0, Status::Malformed, &why));
                    break 1;
                }
                Ok(m) => {
                    // HELLO (or whatever came first) arrived whole: from here on the session
                    // waits for requests as long as the initiator keeps the channel open.
                    *self
                        .input_deadline
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = None;
                    m
                }
                Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::TimedOut => {
                    err!(
                        "no complete HELLO within {:?} of starting ({e}); exiting",
                        self.settings.hello_deadline
                    );
                    break 1;
                }
                Err(ReadError::Closed) => {
                    info!("the initiator closed the control channel");
                    break 0;
                }
                Err(ReadError::Decode(e)) => {
                    err!("malformed message on the control channel: {e}");
                    let _ = send(
                        output,
                        &Message::error(0, Status::Malformed, &format!("malformed message: {e}")),
                    );
                    break 1;
                }
                Err(e) => {
                    err!("control channel: {e}");
                    break 1;
                }
            };
            let ty = msg.msg_type();
            if let Err(e) = self.state.check_request(ty) {
                err!("{e}");
                let _ = send(
                    output,
                    &Message::error(ty.to_wire(), e.status(), &e.to_string()),
                );
                break 1;
            }
            let reply = self.handle(msg);
            if let Err(e) = send(output, &reply) {
                err!("cannot answer {}: {e}", ty.name());
                break 1;
            }
            self.state = self.state.after_reply(ty, &reply);
            if matches!(reply, Message::CreateResp(_) | Message::OpenResp { .. }) {
                if let Err(f) = self.connect_lanes() {
                    err!("{}", f.log_text());
                    let _ = send(output, &Message::error(0, f.status, &f.message));
                    break 1;
                }
            }
            if self.state == TargetState::Closed {
                break 0;
            }
        };
        if let Some(p) = self.pool.take() {
            if let Err(f) = p.shutdown(false) {
                err!("closing the pool: {}", f.log_text());
            }
        }
        code
    }

    fn handle(&mut self, msg: Message) -> Message {
        let name = msg.msg_type().name();
        let ty = msg.msg_type().to_wire();
        let res = match msg {
            Message::Hello(h) => {
                let r = negotiate(PROTO_MAJOR, PROTO_MINOR, OUR_CAPABILITIES, &h);
                if r.status.is_ok() {
                    self.version = (r.major, r.minor);
                    self.caps = r.capabilities;
                } else {
                    warning!(
                        "initiator speaks {}.{}, this rpmemd {PROTO_MAJOR}.{PROTO_MINOR}",
                        h.major,
                        h.minor
                    );
                }
                Ok(Message::HelloResp(r))
            }
            Message::Create { pool, attr } => self.create_or_open(&pool, Some(&attr)),
            Message::Open(pool) => self.create_or_open(&pool, None),
            Message::SetAttr(attr) => self.set_attr(&attr),
            Message::Close { remove } => match self.pool.take() {
                Some(p) => p.shutdown(remove).map(|()| Message::CloseResp(Status::Ok)),
                None => Err(Failure::new(Status::Internal, "CLOSE without a pool")),
            },
            Message::Remove {
                descriptor,
                force,
                pool_set,
            } => {
                store::remove(&self.settings.poolset_dir, &descriptor, force, pool_set).map(|()| {
                    notice!("removed pool {descriptor:?}");
                    Message::RemoveResp(Status::Ok)
                })
            }
            // check_request admits only the requests above.
            other => Err(Failure::new(
                Status::UnexpectedMessage,
                format!("{} is not a request", other.msg_type().name()),
            )),
        };
        res.unwrap_or_else(|f| {
            // The log may say more than the peer is told (Failure::log_detail).
            warning!("{name} failed: {}: {}", f.status, f.log_text());
            Message::error(ty, f.status, &f.message)
        })
    }

    fn grant_method(&self, wanted: PersistMethod, is_pmem: bool) -> Result<PersistMethod, Failure> {
        let s = &self.settings;
        let apm_ok = s.persist_apm && is_pmem && self.caps.contains(Capabilities::APPLIANCE);
        match wanted {
            PersistMethod::Appliance if apm_ok => Ok(PersistMethod::Appliance),
            _ if s.persist_general => Ok(PersistMethod::General),
            _ => Err(Failure::new(
                Status::PersistMethodUnavailable,
                "persist-general is disabled and the appliance method is not possible here \
                 (needs persist-apm = yes and a pool on persistent memory)",
            )),
        }
    }

    fn create_or_open(
        &mut self,
        req: &PoolRequest,
        attr: Option<&PoolAttr>,
    ) -> Result<Message, Failure> {
        req.check()
            .map_err(|e| Failure::new(e.status(), e.to_string()))?;
        let dir = &self.settings.poolset_dir;
        let (served, stored) = match attr {
            Some(a) => (Served::create(dir, &req.descriptor, req.pool_size, a)?, *a),
            None => Served::open(dir, &req.descriptor, req.pool_size)?,
        };
        let method = match self.grant_method(req.persist_method, served.is_pmem()) {
            Ok(m) => m,
            Err(f) => {
                undo(served, attr.is_some());
                return Err(f);
            }
        };
        let listening = match lanes::listen(req.provider, self.settings.listen_ip, &served) {
            Ok(l) => l,
            Err(f) => {
                undo(served, attr.is_some());
                return Err(f);
            }
        };
        let key = listening.mr.remote_key();
        let resp = PoolResp {
            status: Status::Ok,
            nlanes: req.nlanes.min(LANES_GRANTED_MAX),
            addr: listening.pep.local_addr().ip(),
            port: listening.pep.local_addr().port(),
            persist_method: method,
            provider: req.provider,
            rkey: key.key,
            raddr: key.addr,
            pool_size: served.size(),
            secret: new_secret()?,
        };
        notice!(
            "{} pool {:?}: {} bytes, {} lanes, {} on {}:{}",
            if attr.is_some() { "created" } else { "opened" },
            req.descriptor,
            resp.pool_size,
            resp.nlanes,
            req.provider.fabric_name(),
            resp.addr,
            resp.port
        );
        let Listening {
            pep,
            domain,
            mr,
            fabric,
        } = listening;
        self.pool = Some(OpenPool {
            lanes: None,
            pep: Some(pep),
            mr: Some(mr),
            domain,
            served: Arc::new(served),
            _fabric: fabric,
        });
        self.pending = Some((resp.nlanes, resp.secret));
        Ok(match attr {
            Some(_) => Message::CreateResp(resp),
            None => Message::OpenResp { resp, attr: stored },
        })
    }

    fn connect_lanes(&mut self) -> Result<(), Failure> {
        let (Some(p), Some((nlanes, secret))) = (self.pool.as_mut(), self.pending.take()) else {
            return Err(Failure::new(
                Status::Internal,
                "no pool to connect lanes to",
            ));
        };
        let pep = p
            .pep
            .take()
            .ok_or_else(|| Failure::new(Status::Internal, "listener already closed"))?;
        let deadline = Instant::now() + DEFAULT_LANE_CONNECT_DEADLINE;
        let eps = lanes::accept_lanes(&pep, &p.domain, nlanes, &secret, self.version, deadline)?;
        // Every lane is connected: the listener is closed so nobody else can try (§11).
        drop(pep);
        info!("all {nlanes} lanes connected");
        p.lanes = Some(Lanes::spawn(
            eps,
            p.served.clone(),
            self.caps,
            self.fault.clone(),
        ));
        Ok(())
    }

    fn set_attr(&mut self, attr: &PoolAttr) -> Result<Message, Failure> {
        let p = self
            .pool
            .as_mut()
            .ok_or_else(|| Failure::new(Status::Internal, "SET_ATTR without a pool"))?;
        // Lanes share the pool for persisting; the attribute area is outside their reach.
        p.served.store_attr(attr)?;
        Ok(Message::SetAttrResp(Status::Ok))
    }
}

fn undo(served: Served, created: bool) {
    let _ = served.close(created);
}

fn send(out: &mut dyn Write, msg: &Message) -> Result<(), rpmem_proto::WriteError> {
    rpmem_proto::write_message(out, msg)
}

/// 32 bytes from the kernel's CSPRNG.
fn new_secret() -> Result<Secret, Failure> {
    let mut s = [0u8; rpmem_proto::SECRET_LEN];
    let mut got = 0;
    while got < s.len() {
        // SAFETY: writes at most s.len() - got bytes into the rest of `s`.
        let rc = unsafe { libc::getrandom(s[got..].as_mut_ptr().cast(), s.len() - got, 0) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Failure::new(Status::Internal, format!("getrandom: {e}")));
        }
        got += rc as usize;
    }
    Ok(Secret(s))
}
