//! Connected MSG endpoints: a listener (`PassiveEndpoint`) that hands out connection requests
//! carrying the initiator's private data, and `Endpoint` with RMA write/read and small
//! send/receive messages, every wait bounded by a deadline.
//!
//! Each `Endpoint` owns its own event queue (CM events, shutdown), a transmit CQ and a receive CQ,
//! and a small registered buffer of message slots: one for sending and `rx_slots` receive slots
//! that are posted as soon as the endpoint is enabled, before the connection completes, so no
//! message from the peer can arrive without a receive waiting for it. Endpoints are `Send` but
//! not `Sync`: one thread drives one endpoint (one lane).
//!
//! TCP_NODELAY: the tcp provider sets it on its sockets itself; this crate never touches socket
//! options.

use std::net::SocketAddr;
use std::os::raw::c_void;
use std::ptr;
use std::time::{Duration, Instant};

use libfabric_sys as sys;

use crate::domain::{close_fid, CompletionQueue, Domain, EventQueue, Fabric};
use crate::error::{check, check_int, Error, Result};
use crate::info::Info;
use crate::mr::{Access, MemoryRegion, OwnedRegion, RemoteKey};
use crate::sockaddr;

/// Largest connection private data we accept to send; libfabric guarantees providers carry at
/// least this much (`FI_OPT_CM_DATA_SIZE` may allow more, it is queried when available).
pub const CM_DATA_BYTES_MIN: usize = 56;

/// How often posting looks at the event queue for a peer shutdown (see `check_shutdown`).
const EQ_CHECK_INTERVAL: Duration = Duration::from_millis(1);

/// Token bit marking receive-slot completions; the low bits are the slot index.
const RX_TOKEN: u64 = 1 << 63;

/// Tuning of an endpoint.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Largest message `send`/`recv` carry.
    pub msg_bytes_max: usize,
    /// Receives kept posted; the peer may send this many messages ahead of our `recv` calls.
    pub rx_slots: usize,
    /// How long a completion wait polls before it blocks.
    pub spin: Duration,
    /// Completion queue depth.
    pub cq_size: usize,
}

/// Bytes per microsecond below which a transfer's spin grows: ~2 GiB/s, under what loopback TCP
/// and any RDMA link carry, so the spin outlasts the transfer.
const TRANSFER_SPIN_BYTES_PER_US: u64 = 2048;
/// Upper bound of the extra spin of [`transfer_spin`]: past it a wait blocks as usual.
const TRANSFER_SPIN_MAX: Duration = Duration::from_millis(20);

/// The spin for a wait whose completion cannot come before `bytes` have crossed the link:
/// `base` plus the time the transfer takes at ~2 GiB/s (capped at 20 ms). A wait that blocks
/// before the transfer is done pays a wake-up per message: 1 MiB persists on one rpmem lane
/// ran at ~60 % of a raw TCP stream with a flat 50 µs spin.
pub fn transfer_spin(base: Duration, bytes: u64) -> Duration {
    base + Duration::from_micros(bytes / TRANSFER_SPIN_BYTES_PER_US).min(TRANSFER_SPIN_MAX)
}

/// How long waits spin (yielding the core) before they block, unless configured otherwise.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            msg_bytes_max: 4096,
            rx_slots: 4,
            spin: DEFAULT_SPIN,
            cq_size: 256,
        }
    }
}

/// Whether an RMA write reports its own completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Post with `FI_COMPLETION` and wait for it (the write is done when the call returns).
    Wait,
    /// Post without a completion: the call returns once the write is queued. Its buffer must not
    /// change until a later waited operation on the same endpoint completes (the providers this
    /// crate uses complete in order). A failure still surfaces as an error on that later wait.
    None,
}

/// What `Endpoint::recv_any_into` received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// A message of this many bytes, copied into the caller's buffer.
    Message(usize),
    /// The remote CQ data of a peer's `write_with_data`; the written bytes have landed.
    WriteData(u64),
}

/// A listening endpoint (`fi_passive_ep` + `fi_listen`).
pub struct PassiveEndpoint {
    fid: *mut sys::fid_pep,
    local_addr: SocketAddr,
    // Dropped after fid is closed (Drop runs first, then fields in order).
    eq: EventQueue,
    _fabric: Fabric,
    // The sockets provider keeps pointers into the info a pep was opened with (see Info::dup).
    _info: Info,
}

// SAFETY: the pep is thread-safe under FI_THREAD_SAFE and closed only in Drop.
unsafe impl Send for PassiveEndpoint {}

impl PassiveEndpoint {
    /// Listens on the source address of `info` (from `Hints::listen`); port 0 binds a free port,
    /// see `local_addr`.
    pub fn listen(fabric: &Fabric, info: &Info) -> Result<PassiveEndpoint> {
        let info = info.dup()?;
        let eq = EventQueue::open(fabric)?;
        let mut fid = ptr::null_mut();
        // SAFETY: fabric open, info valid, fid an out-pointer.
        let rc = unsafe {
            sys::fi_passive_ep(fabric.inner.fid, info.as_ptr(), &mut fid, ptr::null_mut())
        };
        check_int("fi_passive_ep", rc)?;
        let mut pep = PassiveEndpoint {
            fid,
            local_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            eq,
            _fabric: fabric.clone(),
            _info: info,
        };
        // SAFETY: pep and eq are live; binding the EQ routes CONNREQ events to it.
        let rc = unsafe { sys::fi_pep_bind(pep.fid, &mut (*pep.eq.fid).fid, 0) };
        check_int("fi_pep_bind", rc)?;
        // SAFETY: pep live and bound.
        check_int("fi_listen", unsafe { sys::fi_listen(pep.fid) })?;
        // SAFETY: the pep's fid header is its first field; getname writes at most len bytes.
        pep.local_addr = unsafe { getname("fi_getname(listener)", &mut (*pep.fid).fid)? };
        Ok(pep)
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until `deadline` for a connection request.
    pub fn get_request(&self, deadline: Instant) -> Result<ConnRequest<'_>> {
        loop {
            let ev = self.eq.wait("waiting for a connection request", deadline)?;
            if ev.event == sys::FI_CONNREQ && !ev.info.is_null() {
                return Ok(ConnRequest {
                    // SAFETY: a CONNREQ event hands ownership of its fi_info to the application.
                    info: Some(unsafe { Info::from_raw(ev.info) }),
                    data: ev.data,
                    pep: self,
                });
            }
            if !ev.info.is_null() {
                // SAFETY: any fi_info delivered by an event is ours to free.
                drop(unsafe { Info::from_raw(ev.info) });
            }
            // Anything else on a listener's EQ (e.g. a late SHUTDOWN) is not for us: keep waiting.
        }
    }
}

impl Drop for PassiveEndpoint {
    fn drop(&mut self) {
        close_fid(self.fid.cast());
    }
}

/// A pending connection request. Dropping it without `accept` rejects it.
pub struct ConnRequest<'a> {
    info: Option<Info>,
    data: Vec<u8>,
    pep: &'a PassiveEndpoint,
}

impl ConnRequest<'_> {
    /// The private data the initiator sent with `connect` (e.g. a session secret). Providers may
    /// pad it: compare only the length the protocol defines.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The address the request came from, when the provider reports it.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.info.as_ref().and_then(Info::dest_addr)
    }

    /// Accepts: creates the endpoint on `domain`, sends `data` back and waits until connected.
    pub fn accept(
        mut self,
        domain: &Domain,
        cfg: &EndpointConfig,
        data: &[u8],
        deadline: Instant,
    ) -> Result<Endpoint> {
        let info = self
            .info
            .take()
            .expect("info is present until accept/reject/drop");
        let mut ep = Endpoint::create(domain, &info, cfg)?;
        check_data_len("fi_accept", &ep, data)?;
        // SAFETY: ep enabled; data outlives the call (the provider copies it).
        let rc = unsafe { sys::fi_accept(ep.fid, data.as_ptr().cast(), data.len()) };
        check_int("fi_accept", rc)?;
        ep.wait_connected("accepting a connection", deadline)?;
        Ok(ep)
    }

    /// Refuses the request, sending `data` to the initiator as the reason. The sockets provider
    /// sends the refusal asynchronously: keep the `PassiveEndpoint` open for a moment afterwards
    /// (closing it at once can drop the refusal, and the initiator then waits for its deadline).
    pub fn reject(mut self, data: &[u8]) -> Result<()> {
        let info = self
            .info
            .take()
            .expect("info is present until accept/reject/drop");
        reject(self.pep, &info, data)
    }
}

impl Drop for ConnRequest<'_> {
    fn drop(&mut self) {
        if let Some(info) = self.info.take() {
            let _ = reject(self.pep, &info, &[]);
        }
    }
}

fn reject(pep: &PassiveEndpoint, info: &Info, data: &[u8]) -> Result<()> {
    // SAFETY: pep live; info->handle identifies the request; data copied by the provider.
    let rc = unsafe {
        sys::fi_reject(
            pep.fid,
            (*info.as_ptr()).handle,
            if data.is_empty() {
                ptr::null()
            } else {
                data.as_ptr().cast()
            },
            data.len(),
        )
    };
    check_int("fi_reject", rc)
}

/// A connected MSG endpoint.
pub struct Endpoint {
    fid: *mut sys::fid_ep,
    cfg: EndpointConfig,
    next_token: u64,
    cm_data_max: usize,
    /// Largest send the provider copies at post time (`fi_inject`, no completion).
    inject_max: usize,
    /// Bytes of remote CQ data the provider carries (0 = `write_with_data` unsupported).
    cq_data_bytes: usize,
    peer_shutdown: bool,
    /// When the event queue was last looked at for a peer shutdown before posting.
    eq_checked: Instant,
    // Dropped after fid is closed (Drop runs first, then these in order).
    msgs: OwnedRegion,
    tx: CompletionQueue,
    rx: CompletionQueue,
    eq: EventQueue,
    _domain: Domain,
    // Kept alive until after the endpoint is closed (see Info::dup).
    _info: Info,
}

// SAFETY: the endpoint's libfabric objects are thread-safe under FI_THREAD_SAFE; the Rust side is
// driven through &mut self only (one thread at a time).
unsafe impl Send for Endpoint {}

impl Endpoint {
    /// Connects to the destination in `info` (from `Hints::connect`), sending `data` as private
    /// connection data, and waits until connected or `deadline`. A refusal is `Error::Rejected`.
    pub fn connect(
        domain: &Domain,
        info: &Info,
        cfg: &EndpointConfig,
        data: &[u8],
        deadline: Instant,
    ) -> Result<Endpoint> {
        let mut ep = Endpoint::create(domain, info, cfg)?;
        check_data_len("fi_connect", &ep, data)?;
        // SAFETY: ep enabled; dest_addr belongs to info (alive); data copied by the provider.
        let rc = unsafe {
            sys::fi_connect(
                ep.fid,
                (*info.as_ptr()).dest_addr,
                if data.is_empty() {
                    ptr::null()
                } else {
                    data.as_ptr().cast()
                },
                data.len(),
            )
        };
        check_int("fi_connect", rc)?;
        ep.wait_connected("connecting", deadline)?;
        Ok(ep)
    }

    fn create(domain: &Domain, info: &Info, cfg: &EndpointConfig) -> Result<Endpoint> {
        if cfg.msg_bytes_max == 0 || cfg.rx_slots == 0 || cfg.rx_slots >= cfg.cq_size {
            return Err(Error::InvalidArgument {
                op: "fi_endpoint",
                what: format!("bad endpoint config {cfg:?}: need msg_bytes_max > 0 and 0 < rx_slots < cq_size"),
            });
        }
        let slots_bytes = cfg
            .msg_bytes_max
            .checked_mul(cfg.rx_slots + 1)
            .ok_or_else(|| Error::InvalidArgument {
                op: "fi_endpoint",
                what: "message slots overflow usize".into(),
            })?;
        let fabric = domain.fabric();
        let eq = EventQueue::open(&fabric)?;
        let tx = CompletionQueue::open(domain, cfg.cq_size)?;
        let rx = CompletionQueue::open(domain, cfg.cq_size)?;
        let msgs = OwnedRegion::new(domain, slots_bytes, Access::LOCAL)?;
        let info = info.dup()?;
        let mut fid = ptr::null_mut();
        // SAFETY: domain open, info valid, fid an out-pointer.
        let rc =
            unsafe { sys::fi_endpoint(domain.inner.fid, info.as_ptr(), &mut fid, ptr::null_mut()) };
        check_int("fi_endpoint", rc)?;
        let mut ep = Endpoint {
            fid,
            cfg: cfg.clone(),
            next_token: 1,
            cm_data_max: CM_DATA_BYTES_MIN,
            inject_max: info.inject_size(),
            cq_data_bytes: info.cq_data_size(),
            peer_shutdown: false,
            eq_checked: Instant::now(),
            msgs,
            tx,
            rx,
            eq,
            _domain: domain.clone(),
            _info: info,
        };
        // SAFETY: all objects are live; binding makes the ep report CM events to eq, transmit
        // completions (only when asked, FI_SELECTIVE_COMPLETION) to tx and receives to rx.
        unsafe {
            check_int(
                "fi_ep_bind(eq)",
                sys::fi_ep_bind(ep.fid, &mut (*ep.eq.fid).fid, 0),
            )?;
            check_int(
                "fi_ep_bind(tx cq)",
                sys::fi_ep_bind(
                    ep.fid,
                    &mut (*ep.tx.fid).fid,
                    u64::from(sys::FI_TRANSMIT) | sys::FI_SELECTIVE_COMPLETION,
                ),
            )?;
            check_int(
                "fi_ep_bind(rx cq)",
                sys::fi_ep_bind(ep.fid, &mut (*ep.rx.fid).fid, u64::from(sys::FI_RECV)),
            )?;
            check_int("fi_enable", sys::fi_enable(ep.fid))?;
        }
        ep.cm_data_max = ep.query_cm_data_size();
        for slot in 0..cfg.rx_slots {
            ep.post_recv_slot(slot)?;
        }
        Ok(ep)
    }

    fn query_cm_data_size(&self) -> usize {
        let mut size: usize = 0;
        let mut len = std::mem::size_of::<usize>();
        // SAFETY: ep live; optval points to a usize and optlen says so.
        let rc = unsafe {
            sys::fi_getopt(
                &mut (*self.fid).fid,
                sys::FI_OPT_ENDPOINT as i32,
                sys::FI_OPT_CM_DATA_SIZE as i32,
                (&mut size as *mut usize).cast(),
                &mut len,
            )
        };
        if rc == 0 && size > 0 {
            size
        } else {
            CM_DATA_BYTES_MIN
        }
    }

    /// Largest message `send` injects (no completion wait); 0 when the provider cannot.
    pub fn inject_max(&self) -> usize {
        self.inject_max
    }

    /// Largest private data `connect`/`accept` can carry on this provider.
    pub fn cm_data_max(&self) -> usize {
        self.cm_data_max
    }

    fn wait_connected(&mut self, op: &'static str, deadline: Instant) -> Result<()> {
        let ev = self.eq.wait(op, deadline)?;
        if !ev.info.is_null() {
            // SAFETY: any fi_info delivered by an event is ours to free.
            drop(unsafe { Info::from_raw(ev.info) });
        }
        match ev.event {
            e if e == sys::FI_CONNECTED => Ok(()),
            // A connection torn down before it was established was refused on the other side.
            e if e == sys::FI_SHUTDOWN => Err(Error::Rejected { op }),
            e => Err(Error::UnexpectedEvent { op, event: e }),
        }
    }

    fn token(&mut self) -> u64 {
        let t = self.next_token;
        self.next_token = (self.next_token + 1) & !RX_TOKEN;
        t
    }

    fn slot_ptr(&self, slot: usize) -> *mut u8 {
        self.msgs
            .mr()
            .as_ptr()
            .wrapping_add(slot * self.cfg.msg_bytes_max)
    }

    fn post_recv_slot(&mut self, slot: usize) -> Result<()> {
        let iov = libc::iovec {
            iov_base: self.slot_ptr(slot).cast(),
            iov_len: self.cfg.msg_bytes_max,
        };
        let mut desc = self.msgs.mr().desc();
        let msg = sys::fi_msg {
            msg_iov: (&iov as *const libc::iovec).cast(),
            desc: &mut desc,
            iov_count: 1,
            addr: 0,
            context: (RX_TOKEN | slot as u64) as *mut c_void,
            data: 0,
        };
        // SAFETY: the slot lies inside the registered msgs buffer, which outlives the endpoint's
        // closing (field order); msg and iov are read during the call only.
        self.post(
            "fi_recvmsg",
            Instant::now() + Duration::from_secs(5),
            |ep| unsafe { sys::fi_recvmsg(ep, &msg, u64::from(sys::FI_COMPLETION)) },
        )
    }

    /// Posts with `f`, retrying on FI_EAGAIN (queue full) after driving progress, until deadline.
    fn post(
        &mut self,
        op: &'static str,
        deadline: Instant,
        mut f: impl FnMut(*mut sys::fid_ep) -> isize,
    ) -> Result<()> {
        let start = Instant::now();
        loop {
            let rc = f(self.fid);
            if rc != -(sys::FI_EAGAIN as isize) {
                return check(op, rc).map(|_| ());
            }
            // Only unsignaled operations can be outstanding here, so a successful completion
            // cannot be read; an error completion is reported.
            if let Some(c) = self.tx.poll(op)? {
                return Err(Error::InvalidArgument {
                    op,
                    what: format!("unexpected completion of token {} while posting", c.token),
                });
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    op,
                    waited: start.elapsed(),
                });
            }
            std::thread::yield_now();
        }
    }

    /// Before posting: fails fast once the peer is known to have shut down. Reading the event
    /// queue costs the tcp provider a system call, so it is looked at only every
    /// `EQ_CHECK_INTERVAL`; waits look at it between their blocking slices anyway.
    fn check_shutdown(&mut self, op: &'static str) -> Result<()> {
        if self.peer_shutdown {
            return Err(Error::Disconnected { op });
        }
        let now = Instant::now();
        if now.duration_since(self.eq_checked) < EQ_CHECK_INTERVAL {
            return Ok(());
        }
        self.eq_checked = now;
        shutdown_seen(&self.eq, &mut self.peer_shutdown, op)
    }

    fn wait_tx(&mut self, op: &'static str, token: u64, deadline: Instant) -> Result<()> {
        let spin = self.cfg.spin;
        // Split borrows: the CQ is read while the EQ is checked between slices.
        let Endpoint {
            tx,
            eq,
            peer_shutdown,
            ..
        } = self;
        let c = tx
            .wait(op, spin, deadline, || shutdown_seen(eq, peer_shutdown, op))
            .map_err(|e| canceled_is_disconnect(e, peer_shutdown))?;
        if c.token != token {
            return Err(Error::InvalidArgument {
                op,
                what: format!("completion for token {} while waiting for {token}", c.token),
            });
        }
        Ok(())
    }

    /// RMA-writes `len` bytes at `local_offset` of `local` to `remote_offset` of the peer's
    /// region `remote`. Both ranges are bounds-checked.
    #[allow(clippy::too_many_arguments)]
    pub fn write(
        &mut self,
        local: &MemoryRegion,
        local_offset: usize,
        len: usize,
        remote: &RemoteKey,
        remote_offset: u64,
        signal: Signal,
        deadline: Instant,
    ) -> Result<()> {
        self.rma(
            "fi_write",
            local,
            local_offset,
            len,
            remote,
            remote_offset,
            signal,
            None,
            deadline,
        )
    }

    /// Whether the provider can carry remote CQ data (`write_with_data`).
    pub fn supports_write_data(&self) -> bool {
        self.cq_data_bytes >= 8
    }

    /// RMA-writes like `write` with `Signal::None` and delivers `data` to the peer as remote CQ
    /// data (`fi_writedata`): one operation instead of a write plus a message. The peer sees it
    /// from `recv_any_into` as `Incoming::WriteData(data)` once the written bytes are in its
    /// memory; it consumes none of the peer's receive slots. The buffer rule of `Signal::None`
    /// applies. `Error::InvalidArgument` when the provider carries no CQ data
    /// (`supports_write_data`).
    #[allow(clippy::too_many_arguments)]
    pub fn write_with_data(
        &mut self,
        local: &MemoryRegion,
        local_offset: usize,
        len: usize,
        remote: &RemoteKey,
        remote_offset: u64,
        data: u64,
        deadline: Instant,
    ) -> Result<()> {
        if !self.supports_write_data() {
            return Err(Error::InvalidArgument {
                op: "fi_writedata",
                what: format!(
                    "provider {} carries {} bytes of remote CQ data, 8 are needed",
                    self._domain.provider_name(),
                    self.cq_data_bytes
                ),
            });
        }
        self.rma(
            "fi_writedata",
            local,
            local_offset,
            len,
            remote,
            remote_offset,
            Signal::None,
            Some(data),
            deadline,
        )
    }

    /// RMA-reads `len` bytes from `remote_offset` of the peer's region into `local_offset` of
    /// `local`, and waits until the data has landed.
    pub fn read(
        &mut self,
        local: &MemoryRegion,
        local_offset: usize,
        len: usize,
        remote: &RemoteKey,
        remote_offset: u64,
        deadline: Instant,
    ) -> Result<()> {
        self.rma(
            "fi_read",
            local,
            local_offset,
            len,
            remote,
            remote_offset,
            Signal::Wait,
            None,
            deadline,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn rma(
        &mut self,
        op: &'static str,
        local: &MemoryRegion,
        local_offset: usize,
        len: usize,
        remote: &RemoteKey,
        remote_offset: u64,
        signal: Signal,
        cq_data: Option<u64>,
        deadline: Instant,
    ) -> Result<()> {
        self.check_shutdown(op)?;
        let buf = local.local(op, local_offset, len)?;
        let addr = remote.target(op, remote_offset, len)?;
        let token = self.token();
        let iov = libc::iovec {
            iov_base: buf.cast(),
            iov_len: len,
        };
        let rma_iov = sys::fi_rma_iov {
            addr,
            len,
            key: remote.key,
        };
        let mut desc = local.desc();
        let msg = sys::fi_msg_rma {
            msg_iov: (&iov as *const libc::iovec).cast(),
            desc: &mut desc,
            iov_count: 1,
            addr: 0,
            rma_iov: &rma_iov,
            rma_iov_count: 1,
            context: token as *mut c_void,
            data: cq_data.unwrap_or(0),
        };
        let mut flags = match signal {
            Signal::Wait => u64::from(sys::FI_COMPLETION),
            Signal::None => 0,
        };
        if cq_data.is_some() {
            flags |= u64::from(sys::FI_REMOTE_CQ_DATA);
        }
        let is_read = op == "fi_read";
        // SAFETY: buf..buf+len lies in `local`'s registration (checked), which the caller keeps
        // alive across the call; with Signal::Wait we return only after completion, with
        // Signal::None the caller accepted the documented buffer rule. msg/iovs live through
        // the call (providers copy them).
        self.post(op, deadline, |ep| unsafe {
            if is_read {
                sys::fi_readmsg(ep, &msg, flags)
            } else {
                sys::fi_writemsg(ep, &msg, flags)
            }
        })?;
        if signal == Signal::Wait {
            self.wait_tx(op, token, deadline)?;
        }
        Ok(())
    }

    /// Sends a small message (at most `msg_bytes_max`). When it fits the provider's inject size
    /// (`inject_max`; 128 bytes on tcp 1.17) it is injected: copied at post time, no completion to
    /// wait for, and a failure surfaces on a later wait of this endpoint (as for
    /// `Signal::None` writes). Larger messages are waited for until they have left.
    pub fn send(&mut self, data: &[u8], deadline: Instant) -> Result<()> {
        let op = "fi_send";
        if data.len() > self.cfg.msg_bytes_max {
            return Err(Error::InvalidArgument {
                op,
                what: format!(
                    "message of {} bytes exceeds the {}-byte limit",
                    data.len(),
                    self.cfg.msg_bytes_max
                ),
            });
        }
        self.check_shutdown(op)?;
        if data.len() <= self.inject_max {
            // SAFETY: data is valid for data.len() bytes during the call; FI_INJECT copies it
            // before returning, and no completion is generated (a failure still produces an
            // error completion, reported by a later wait).
            return self.post(op, deadline, |ep| unsafe {
                sys::fi_inject(ep, data.as_ptr().cast(), data.len(), 0)
            });
        }
        let send_slot = self.cfg.rx_slots;
        self.msgs
            .write_at(send_slot * self.cfg.msg_bytes_max, data)?;
        let token = self.token();
        let iov = libc::iovec {
            iov_base: self.slot_ptr(send_slot).cast(),
            iov_len: data.len(),
        };
        let mut desc = self.msgs.mr().desc();
        let msg = sys::fi_msg {
            msg_iov: (&iov as *const libc::iovec).cast(),
            desc: &mut desc,
            iov_count: 1,
            addr: 0,
            context: token as *mut c_void,
            data: 0,
        };
        // SAFETY: the send slot is inside the registered msgs buffer; we wait for completion
        // before the slot can be reused.
        self.post(op, deadline, |ep| unsafe {
            sys::fi_sendmsg(ep, &msg, u64::from(sys::FI_COMPLETION))
        })?;
        self.wait_tx(op, token, deadline)
    }

    /// Receives one message into `out`, returning its length. A message longer than `out` is
    /// an error (the message is consumed), and so is a peer's `write_with_data` (use
    /// `recv_any_into` on endpoints whose peer sends those).
    pub fn recv_into(&mut self, out: &mut [u8], deadline: Instant) -> Result<usize> {
        let spin = self.cfg.spin;
        self.recv_into_spinning(out, spin, deadline)
    }

    /// [`Endpoint::recv_into`] with this wait's own spin time instead of
    /// [`EndpointConfig::spin`]: for a reply that cannot come before a long transfer ends (a
    /// wait that blocks too early pays a wake-up on every message).
    pub fn recv_into_spinning(
        &mut self,
        out: &mut [u8],
        spin: Duration,
        deadline: Instant,
    ) -> Result<usize> {
        match self.recv_any_into_spinning(out, spin, deadline)? {
            Incoming::Message(n) => Ok(n),
            Incoming::WriteData(d) => Err(Error::InvalidArgument {
                op: "fi_recv",
                what: format!(
                    "the peer sent an RMA write with data {d:#x} where a message was expected"
                ),
            }),
        }
    }

    /// Receives the next incoming event: a message (copied into `out`, its length returned) or
    /// the data of a peer's `write_with_data`, whose bytes are in this side's memory by now.
    pub fn recv_any_into(&mut self, out: &mut [u8], deadline: Instant) -> Result<Incoming> {
        let spin = self.cfg.spin;
        self.recv_any_into_spinning(out, spin, deadline)
    }

    /// [`Endpoint::recv_any_into`] with this wait's own spin time (see
    /// [`Endpoint::recv_into_spinning`]).
    pub fn recv_any_into_spinning(
        &mut self,
        out: &mut [u8],
        spin: Duration,
        deadline: Instant,
    ) -> Result<Incoming> {
        let op = "fi_recv";
        let Endpoint {
            rx,
            tx,
            eq,
            peer_shutdown,
            ..
        } = self;
        // Between blocking slices: a peer shutdown, or a failed unsignaled write or injected send
        // (their error completions land on the transmit queue, which nothing else reads then).
        let c = rx
            .wait(op, spin, deadline, || {
                shutdown_seen(eq, peer_shutdown, op)?;
                match tx.poll(op)? {
                    None => Ok(()),
                    Some(c) => Err(Error::InvalidArgument {
                        op,
                        what: format!("unexpected send completion of token {}", c.token),
                    }),
                }
            })
            .map_err(|e| canceled_is_disconnect(e, peer_shutdown))?;
        if c.flags & u64::from(sys::FI_REMOTE_CQ_DATA) != 0
            && c.flags & u64::from(sys::FI_RECV) == 0
        {
            return Ok(Incoming::WriteData(c.data));
        }
        if c.token & RX_TOKEN == 0 || (c.token & !RX_TOKEN) as usize >= self.cfg.rx_slots {
            return Err(Error::InvalidArgument {
                op,
                what: format!("receive completion with unknown token {:#x}", c.token),
            });
        }
        let slot = (c.token & !RX_TOKEN) as usize;
        let len = c.len.min(self.cfg.msg_bytes_max);
        let copied = if len <= out.len() {
            self.msgs
                .read_at(slot * self.cfg.msg_bytes_max, &mut out[..len])
                .map(|_| len)
        } else {
            Err(Error::InvalidArgument {
                op,
                what: format!("received {len} bytes, buffer holds {}", out.len()),
            })
        };
        self.post_recv_slot(slot)?;
        copied.map(Incoming::Message)
    }

    /// Receives one message.
    pub fn recv(&mut self, deadline: Instant) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; self.cfg.msg_bytes_max];
        let n = self.recv_into(&mut buf, deadline)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// The peer's address, when the provider reports it.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        let mut buf = [0u8; 128];
        let mut len = buf.len();
        // SAFETY: ep live; getpeer writes at most len bytes into buf.
        let rc = unsafe { sys::fi_getpeer(self.fid, buf.as_mut_ptr().cast(), &mut len) };
        if rc != 0 {
            return None;
        }
        // SAFETY: len bytes of buf are initialised.
        unsafe { sockaddr::parse(buf.as_ptr(), len.min(buf.len())) }
    }
}

fn shutdown_seen(eq: &EventQueue, seen: &mut bool, op: &'static str) -> Result<()> {
    if *seen {
        return Err(Error::Disconnected { op });
    }
    if let Some(ev) = eq.read(op, Duration::ZERO)? {
        if !ev.info.is_null() {
            // SAFETY: any fi_info delivered by an event is ours to free.
            drop(unsafe { Info::from_raw(ev.info) });
        }
        if ev.event == sys::FI_SHUTDOWN {
            *seen = true;
            return Err(Error::Disconnected { op });
        }
    }
    Ok(())
}

/// This crate never cancels operations, so a completion with FI_ECANCELED means the provider
/// flushed the endpoint's queues because the connection went down (tcp does this on a peer's
/// shutdown or reset, sometimes before the SHUTDOWN event is readable).
fn canceled_is_disconnect(e: Error, seen: &mut bool) -> Error {
    match e {
        Error::Completion { op, code, .. } if code == sys::FI_ECANCELED as i32 => {
            *seen = true;
            Error::Disconnected { op }
        }
        e => e,
    }
}

fn check_data_len(op: &'static str, ep: &Endpoint, data: &[u8]) -> Result<()> {
    if data.len() > ep.cm_data_max {
        return Err(Error::InvalidArgument {
            op,
            what: format!(
                "connection data of {} bytes exceeds the provider's {}-byte limit",
                data.len(),
                ep.cm_data_max
            ),
        });
    }
    Ok(())
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if !self.peer_shutdown {
            // SAFETY: ep live; shutdown tells the peer promptly. Errors are not actionable.
            let _ = unsafe { sys::fi_shutdown(self.fid, 0) };
        }
        close_fid(self.fid.cast());
    }
}

/// `fi_getname` on any fid, as a socket address.
///
/// # Safety
/// `fid` must be a live libfabric object.
unsafe fn getname(op: &'static str, fid: *mut sys::fid) -> Result<SocketAddr> {
    let mut buf = [0u8; 128];
    let mut len = buf.len();
    // SAFETY: fid live (caller); buf has len writable bytes.
    let rc = unsafe { sys::fi_getname(fid, buf.as_mut_ptr().cast(), &mut len) };
    check_int(op, rc)?;
    // SAFETY: len bytes of buf initialised (bounded by buf's size).
    unsafe { sockaddr::parse(buf.as_ptr(), len.min(buf.len())) }.ok_or_else(|| Error::Fabric {
        op,
        code: sys::FI_EINVAL as i32,
        text: "listener address is not an IPv4/IPv6 socket address".into(),
    })
}
