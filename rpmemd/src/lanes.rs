//! The data plane of one session: the libfabric listener, the registration of the served pool,
//! the admission of exactly `nlanes` lane endpoints that present the session secret, and one
//! thread per lane answering PERSIST — or, with WRITE_DATA negotiated (protocol 1.1, §8.5), the
//! remote CQ data of an RMA write describing a persist, or, with INLINE_PERSIST (1.2, §8.6), a
//! PERSIST_INLINE whose records it stores and makes durable — with PERSIST_RESP, one message at
//! a time and in order, so a lane's persists become durable in the order they were sent.
//!
//! Invariants: the listener is bound to one address (never the wildcard), it is closed once every
//! lane is connected, a connection request is accepted only with valid lane-connect data (right
//! version, free lane below the granted count, secret equal in constant time), and nothing a lane
//! peer sends can panic a lane thread: every frame is decoded and checked before use.
//!
//! A lane frame that does not decode, or a receive truncated because the frame was longer than
//! a PERSIST_INLINE (docs/PROTOCOL.md §8.1), means the peer is broken or hostile: the lane answers
//! PERSIST_RESP `Malformed` (best effort), closes, and raises the session's [`Fault`], which
//! ends the whole session (ERROR `Malformed` on the control channel, pool closed, exit 1). So
//! does write data on a session that did not negotiate WRITE_DATA (or on an endpoint whose
//! provider carries less than 8 bytes of CQ data): the peer sent what the session does not
//! define; likewise a PERSIST_INLINE without INLINE_PERSIST. Write data that decodes (every `u64` does) but names a range outside the pool, or
//! DEEP without DEEP_PERSIST, is refused in step like the same PERSIST.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fabric::Incoming;
use fabric::{Access, Domain, Endpoint, EndpointConfig, Fabric, Hints, Info, MemoryRegion};
use rpmem_proto::LaneFrame;
use rpmem_proto::{
    session::{check_inline, check_persist, check_write_data},
    Capabilities, LaneConnect, Message, Provider, Secret, Status, WriteData, LANE_CONNECT_LEN,
};

use crate::log::{debug, info, warning};
use crate::store::{Failure, Served};

/// Size of the message slots of a lane endpoint: a whole PERSIST_INLINE (a PERSIST is 40 bytes).
pub const LANE_MSG_BYTES: usize = rpmem_proto::LANE_INLINE_FRAME_MAX;
/// How long a lane thread blocks in one receive before looking at the stop flag.
const LANE_POLL: Duration = Duration::from_millis(100);
/// Deadline for sending one PERSIST_RESP.
const SEND_DEADLINE: Duration = Duration::from_secs(5);

pub fn endpoint_config() -> EndpointConfig {
    EndpointConfig {
        msg_bytes_max: LANE_MSG_BYTES,
        rx_slots: 4,
        cq_size: 32,
        ..EndpointConfig::default()
    }
}

/// A listener on an ephemeral port with the pool memory registered.
pub struct Listening {
    pub pep: fabric::PassiveEndpoint,
    pub domain: Domain,
    pub mr: MemoryRegion,
    pub fabric: Fabric,
}

/// Opens the provider on `ip`, registers the served pool, listens on a free port.
pub fn listen(provider: Provider, ip: IpAddr, served: &Served) -> Result<Listening, Failure> {
    let prov = fabric::Provider::from_name(provider.fabric_name()).ok_or_else(|| {
        Failure::new(
            Status::ProviderUnavailable,
            format!(
                "provider {} is not supported by this rpmemd",
                provider.fabric_name()
            ),
        )
    })?;
    let addr = ip.to_string();
    let unavailable = |e: fabric::Error| {
        Failure::new(
            Status::ProviderUnavailable,
            format!("libfabric provider {prov} on {addr}: {e}"),
        )
    };
    let info = Info::get(&Hints::listen(prov, &addr, "0")).map_err(unavailable)?;
    let fab = Fabric::open(&info).map_err(unavailable)?;
    let domain = Domain::open(&fab, &info).map_err(unavailable)?;
    let len = usize::try_from(served.size()).unwrap_or(usize::MAX);
    // SAFETY: base_ptr..base_ptr+len is inside the pool's live shared mapping (size() is the data
    // area minus the attribute area). The session keeps the pool alive until this registration
    // is dropped (Session::shutdown drops the lanes and the MR before the pool), and rpmemd never
    // makes Rust references to the registered bytes (the pool crate copies through raw pointers).
    let mr = unsafe {
        MemoryRegion::register(
            &domain,
            served.base_ptr(),
            len,
            Access::LOCAL | Access::REMOTE_WRITE | Access::REMOTE_READ,
        )
    }
    .map_err(|e| {
        Failure::new(
            Status::Memlock,
            format!(
                "registering {len} bytes of pool memory failed: {e} (check the memlock limit, \
                 `ulimit -l`, on the target)"
            ),
        )
    })?;
    let pep = fabric::PassiveEndpoint::listen(&fab, &info)
        .map_err(|e| Failure::new(Status::Io, format!("listening on {addr} with {prov}: {e}")))?;
    Ok(Listening {
        pep,
        domain,
        mr,
        fabric: fab,
    })
}

/// Accepts exactly `nlanes` endpoints presenting `secret`, refusing every other request, until
/// `deadline`. Returns the endpoints indexed by lane.
pub fn accept_lanes(
    pep: &fabric::PassiveEndpoint,
    domain: &Domain,
    nlanes: u32,
    secret: &Secret,
    version: (u16, u16),
    deadline: Instant,
) -> Result<Vec<Endpoint>, Failure> {
    let mut lanes: Vec<Option<Endpoint>> = (0..nlanes).map(|_| None).collect();
    let mut connected = 0u32;
    // A bounded number of refused attempts: a flood of bad requests cannot keep us here forever
    // (the deadline bounds it too).
    let mut refusals_left = 64 + 4 * nlanes;
    while connected < nlanes {
        let req = pep.get_request(deadline).map_err(|e| {
            let missing: Vec<String> = lanes
                .iter()
                .enumerate()
                .filter(|(_, e)| e.is_none())
                .map(|(i, _)| i.to_string())
                .collect();
            Failure::new(
                Status::Io,
                format!(
                    "lanes {} did not connect to {} in time: {e}",
                    missing.join(","),
                    pep.local_addr()
                ),
            )
        })?;
        let peer = req
            .peer_addr()
            .map_or_else(|| "unknown peer".to_string(), |a| a.to_string());
        let data = req.data();
        let verdict = match data.get(..LANE_CONNECT_LEN).map(LaneConnect::decode) {
            None => Err(format!(
                "connection data of {} bytes, too short",
                data.len()
            )),
            Some(Err(e)) => Err(format!("malformed connection data: {e}")),
            Some(Ok(c)) => {
                if (c.major, c.minor) != version {
                    Err(format!(
                        "version {}.{} differs from the negotiated {}.{}",
                        c.major, c.minor, version.0, version.1
                    ))
                } else if !c.secret.ct_eq(secret) {
                    Err("wrong session secret".to_string())
                } else if c.lane >= nlanes {
                    Err(format!("lane {} outside the {nlanes} granted", c.lane))
                } else if lanes[c.lane as usize].is_some() {
                    Err(format!("lane {} is already connected", c.lane))
                } else {
                    Ok(c.lane)
                }
            }
        };
        match verdict {
            Ok(lane) => {
                let ep = req
                    .accept(domain, &endpoint_config(), &[], deadline)
                    .map_err(|e| {
                        Failure::new(
                            Status::Io,
                            format!("accepting lane {lane} from {peer}: {e}"),
                        )
                    })?;
                debug!("lane {lane} connected from {peer}");
                lanes[lane as usize] = Some(ep);
                connected += 1;
            }
            Err(why) => {
                warning!("refused a lane connection from {peer}: {why}");
                let _ = req.reject(&[]);
                refusals_left = refusals_left.saturating_sub(1);
                if refusals_left == 0 {
                    return Err(Failure::new(
                        Status::Io,
                        "too many refused lane connections; ending the session",
                    ));
                }
            }
        }
    }
    // Every slot was filled exactly once above.
    Ok(lanes.into_iter().flatten().collect())
}

/// A fault found by a lane thread that ends the whole session; the control loop polls it.
#[derive(Default)]
pub struct Fault {
    raised: AtomicBool,
    why: Mutex<Option<String>>,
}

impl Fault {
    /// Records the first fault (later ones only add log lines).
    pub fn raise(&self, why: String) {
        let mut w = self.why.lock().unwrap_or_else(|p| p.into_inner());
        if w.is_none() {
            *w = Some(why);
        }
        self.raised.store(true, Ordering::SeqCst);
    }

    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::SeqCst)
    }

    /// The first fault's description, if one was raised.
    pub fn why(&self) -> Option<String> {
        self.why.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The session-wide order of PERSIST_INLINE messages (docs/PROTOCOL.md §8.6): the message with
/// sequence number `n` is stored only after the one with `n - 1`, whichever lanes they came on.
#[derive(Default)]
pub struct InlineOrder {
    /// Highest sequence number stored (or refused) so far.
    done: Mutex<u64>,
    turn: std::sync::Condvar,
}

/// How long a PERSIST_INLINE waits for the message before it (on another lane) to be handled;
/// past it the session ends (a peer that skips a number, or a lane that stopped, never sends it).
const INLINE_TURN_WAIT: Duration = Duration::from_secs(5);

impl InlineOrder {
    /// Waits until message `seq` is next. `Err` says why it never will be: a number already
    /// used (a broken or hostile peer), the wait ran out, or the session is stopping.
    fn wait_turn(&self, seq: u64, stop: &AtomicBool) -> Result<(), String> {
        let deadline = Instant::now() + INLINE_TURN_WAIT;
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if seq <= *done {
                return Err(format!(
                    "PERSIST_INLINE sequence number {seq} was already used (last handled: {})",
                    *done
                ));
            }
            if seq == *done + 1 {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline || stop.load(Ordering::SeqCst) {
                return Err(format!(
                    "PERSIST_INLINE {seq} waited {} ms for {} (the last handled is {}), which \
                     never came",
                    INLINE_TURN_WAIT.as_millis(),
                    seq - 1,
                    *done
                ));
            }
            let slice = deadline.saturating_duration_since(now).min(LANE_POLL);
            done = self
                .turn
                .wait_timeout(done, slice)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Message `seq` (which had its turn) is handled: the next one may go.
    fn finish(&self, seq: u64) {
        *self.done.lock().unwrap_or_else(|p| p.into_inner()) = seq;
        self.turn.notify_all();
    }
}

/// The running lanes of a session.
pub struct Lanes {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Lanes {
    pub fn spawn(
        endpoints: Vec<Endpoint>,
        served: Arc<Served>,
        caps: Capabilities,
        fault: Arc<Fault>,
    ) -> Lanes {
        let stop = Arc::new(AtomicBool::new(false));
        let order = Arc::new(InlineOrder::default());
        let threads = endpoints
            .into_iter()
            .enumerate()
            .map(|(lane, ep)| {
                let stop = stop.clone();
                let served = served.clone();
                let fault = fault.clone();
                let order = order.clone();
                std::thread::Builder::new()
                    .name(format!("lane-{lane}"))
                    .spawn(move || {
                        let session = LaneSession {
                            served: &served,
                            caps,
                            stop: &stop,
                            fault: &fault,
                            order: &order,
                        };
                        serve_lane(lane as u32, ep, &session)
                    })
            })
            .filter_map(|r| match r {
                Ok(h) => Some(h),
                Err(e) => {
                    crate::log::err!("cannot start a lane thread: {e}");
                    None
                }
            })
            .collect();
        Lanes { stop, threads }
    }

    /// Stops every lane thread and waits for it (its endpoint is shut down and closed).
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// What every lane thread of a session shares.
struct LaneSession<'a> {
    served: &'a Served,
    caps: Capabilities,
    stop: &'a AtomicBool,
    fault: &'a Fault,
    order: &'a InlineOrder,
}

fn serve_lane(lane: u32, mut ep: Endpoint, session: &LaneSession<'_>) {
    let LaneSession {
        served,
        caps,
        stop,
        fault,
        order,
    } = *session;
    let mut buf = [0u8; LANE_MSG_BYTES];
    let pool_size = served.size();
    // Write data is defined only when negotiated, and readable only when this endpoint's
    // provider carries all 64 bits of it (§8.5).
    let write_data_ok = caps.contains(Capabilities::WRITE_DATA) && ep.supports_write_data();
    // Ends the session for a malformed lane input (§8.1): best-effort Malformed answer, fault.
    let malformed = |ep: &mut Endpoint, why: String| {
        warning!("{why}; ending the session");
        let _ = reply(ep, lane, Status::Malformed);
        fault.raise(why);
    };
    // The next persist is likely the size of the last one, and its write-with-data completes
    // only once all of it has arrived: spin that long before blocking.
    let mut last_length = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let spin = fabric::transfer_spin(fabric::DEFAULT_SPIN, last_length);
        let incoming = match ep.recv_any_into_spinning(&mut buf, spin, Instant::now() + LANE_POLL) {
            Ok(i) => i,
            Err(fabric::Error::Timeout { .. }) => continue,
            Err(fabric::Error::Disconnected { .. }) => {
                info!("lane {lane}: the initiator disconnected");
                return;
            }
            Err(e) if e.is_truncated() => {
                let why = format!(
                    "lane {lane}: malformed frame: longer than the {LANE_MSG_BYTES}-byte receive \
                     buffer (truncated)"
                );
                malformed(&mut ep, why);
                return;
            }
            Err(e) => {
                warning!("lane {lane}: receive failed, closing the lane: {e}");
                return;
            }
        };
        let status = match incoming {
            Incoming::WriteData(d) if !write_data_ok => {
                let why = format!(
                    "lane {lane}: malformed input: RMA write with data {d:#018x}, but WRITE_DATA \
                     is not in use on this session (negotiated: {}, provider carries 8 bytes of \
                     CQ data: {})",
                    caps.contains(Capabilities::WRITE_DATA),
                    ep.supports_write_data()
                );
                malformed(&mut ep, why);
                return;
            }
            Incoming::WriteData(d) => {
                let wd = WriteData::decode(d);
                last_length = wd.length;
                persist_write_data(lane, wd, served, caps)
            }
            Incoming::Message(n) => match rpmem_proto::decode_lane_frame(&buf[..n]) {
                Ok(LaneFrame::Inline(_)) if !caps.contains(Capabilities::INLINE_PERSIST) => {
                    let why = format!(
                        "lane {lane}: malformed input: PERSIST_INLINE, but INLINE_PERSIST is not \
                         in use on this session"
                    );
                    malformed(&mut ep, why);
                    return;
                }
                Ok(LaneFrame::Inline(records)) => {
                    last_length = records.iter().map(|(_, d)| d.len() as u64).sum();
                    if let Err(why) = order.wait_turn(records.seq, stop) {
                        malformed(&mut ep, format!("lane {lane}: {why}"));
                        return;
                    }
                    let status = persist_inline(lane, &records, served, pool_size);
                    order.finish(records.seq);
                    status
                }
                Ok(LaneFrame::Message(msg)) => {
                    if let Message::Persist { length, .. } = msg {
                        last_length = length;
                    }
                    persist_message(lane, &msg, served, pool_size, caps)
                }
                Err(e) => {
                    malformed(&mut ep, format!("lane {lane}: malformed frame: {e}"));
                    return;
                }
            },
        };
        if let Err(e) = reply(&mut ep, lane, status) {
            warning!("lane {lane}: cannot answer, closing the lane: {e}");
            return;
        }
    }
}

/// Answers a decoded lane frame: a PERSIST inside the pool is made durable.
fn persist_message(
    lane: u32,
    msg: &Message,
    served: &Served,
    pool_size: u64,
    caps: Capabilities,
) -> Status {
    if let Err(e) = check_persist(msg, lane, pool_size, caps) {
        warning!("lane {lane}: PERSIST refused: {e}");
        return e.status();
    }
    match *msg {
        Message::Persist {
            offset,
            length,
            deep,
            ..
        } => make_durable(lane, served, offset, length, deep),
        // check_persist accepts only PERSIST.
        _ => Status::Internal,
    }
}

/// Answers a PERSIST_INLINE (§8.6): every range checked first (a refusal stores nothing),
/// then the records stored and made durable.
fn persist_inline(
    lane: u32,
    records: &rpmem_proto::InlineRecords<'_>,
    served: &Served,
    pool_size: u64,
) -> Status {
    if let Err(e) = check_inline(records, lane, pool_size) {
        warning!("lane {lane}: PERSIST_INLINE refused: {e}");
        return e.status();
    }
    match served.store_inline(records) {
        Ok(()) => Status::Ok,
        Err(e) => {
            crate::log::err!(
                "lane {lane}: storing {} inline record(s) failed: {e}",
                records.len()
            );
            Status::Io
        }
    }
}

/// Answers write data (§8.5): checked exactly as the same PERSIST, then made durable.
fn persist_write_data(lane: u32, wd: WriteData, served: &Served, caps: Capabilities) -> Status {
    if let Err(e) = check_write_data(&wd, served.size(), caps) {
        warning!("lane {lane}: persist by write data refused: {e}");
        return e.status();
    }
    make_durable(lane, served, wd.offset, wd.length, wd.deep)
}

fn make_durable(lane: u32, served: &Served, offset: u64, length: u64, deep: bool) -> Status {
    match served.persist(offset, length, deep) {
        Ok(()) => Status::Ok,
        Err(e) => {
            crate::log::err!("lane {lane}: persist {offset}+{length} failed: {e}");
            Status::Io
        }
    }
}

fn reply(ep: &mut Endpoint, lane: u32, status: Status) -> Result<(), String> {
    let frame =
        rpmem_proto::encode(&Message::PersistResp { lane, status }).map_err(|e| e.to_string())?;
    ep.send(&frame, Instant::now() + SEND_DEADLINE)
        .map_err(|e| e.to_string())
}
