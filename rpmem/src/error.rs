//! Errors of the initiator API. Each variant names the step that failed and, in its message,
//! what the user should check (SSH reachability, rpmemd installed, poolset in poolset-dir,
//! memlock limit, provider availability, a dead target).

use std::time::Duration;

use rpmem_proto::Status;

use crate::target::TargetError;
use crate::transport::TransportError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad target: {0}")]
    Target(#[from] TargetError),
    #[error("cannot start rpmemd on {target}: {source}")]
    Start {
        target: String,
        source: TransportError,
    },
    /// The control channel ended: rpmemd exited, was killed, or is not installed.
    #[error("rpmemd on {target} went away during {during}: {explain}")]
    RpmemdGone {
        target: String,
        during: &'static str,
        explain: String,
    },
    #[error(
        "rpmemd on {target} did not answer {during} within {waited:?} (rpmemd hung, or the \
         link to the target is down)"
    )]
    ControlTimeout {
        target: String,
        during: &'static str,
        waited: Duration,
    },
    /// An earlier control-channel failure (timeout, broken frame, undecodable or unexpected
    /// reply, rpmemd gone) ended the session: a late or partial reply could otherwise be taken
    /// for the answer to a later request, so the channel was closed and is not used again.
    #[error(
        "the session with rpmemd on {target} is broken by an earlier failure ({why}); {during} \
         was not sent: close the pool and start a new session"
    )]
    SessionBroken {
        target: String,
        during: &'static str,
        why: String,
    },
    #[error("control channel to {target} failed during {during}: {source}")]
    ControlIo {
        target: String,
        during: &'static str,
        source: std::io::Error,
    },
    /// rpmemd answered with an ERROR frame.
    #[error("rpmemd on {target} refused {request}: {status}: {message}")]
    Refused {
        target: String,
        request: &'static str,
        status: Status,
        message: String,
    },
    #[error("protocol error with rpmemd on {target} during {during}: {detail}")]
    Protocol {
        target: String,
        during: &'static str,
        detail: String,
    },
    #[error(
        "rpmemd on {target} speaks protocol {peer_major}.{peer_minor}, this rpmem speaks \
         {ours}.x: install matching rpmem and rpmemd versions"
    )]
    VersionMismatch {
        target: String,
        peer_major: u16,
        peer_minor: u16,
        ours: u16,
    },
    #[error("libfabric provider {provider} is not usable to reach {addr}: {source}")]
    Provider {
        provider: String,
        addr: String,
        source: fabric::Error,
    },
    #[error(
        "registering {len} bytes of local pool memory failed: {source} (check the memlock \
         limit, `ulimit -l`)"
    )]
    Register { len: usize, source: fabric::Error },
    #[error(
        "lane {lane}: cannot connect to rpmemd's data listener {addr}:{port} ({provider}): \
         {source} (check that the target's address is reachable from here and no firewall \
         blocks the port){note}"
    )]
    LaneConnect {
        lane: u32,
        addr: String,
        port: u16,
        provider: &'static str,
        /// Boxed to keep `Error` small.
        source: Box<fabric::Error>,
        /// Empty, or why the address rpmemd announced was not the one connected to.
        note: String,
    },
    /// A data-plane operation failed: the target died or the link is down.
    #[error("lane {lane}: {op} failed: {source} (target not responding: rpmemd died or the link is down)")]
    Lane {
        lane: u32,
        op: &'static str,
        source: fabric::Error,
    },
    /// A data-plane wait reached the persist deadline: rpmemd is stopped or hung, or the link
    /// is down (silently dropped packets never give a connection error, only silence).
    #[error(
        "lane {lane}: {op}: no answer within the {deadline:?} persist deadline (rpmemd on the \
         target is stopped or hung, or the link to the target is down)"
    )]
    LaneTimeout {
        lane: u32,
        op: &'static str,
        deadline: Duration,
    },
    /// The lane failed earlier (timeout, connection error, malformed reply); its endpoint may
    /// still deliver a late answer, so it is not used again.
    #[error(
        "lane {lane} is unusable after an earlier failure ({why}); close the pool and start a \
         new session"
    )]
    LaneBroken { lane: u32, why: String },
    #[error("lane {lane}: rpmemd refused to persist {offset}+{length}: {status}")]
    PersistRefused {
        lane: u32,
        offset: u64,
        length: u64,
        status: Status,
    },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("cannot allocate {len} bytes of pool memory: {why}")]
    Alloc { len: usize, why: String },
}
