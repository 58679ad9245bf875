//! Error type of the wrapper: every libfabric failure is named by the operation that failed and
//! carries libfabric's own text (`fi_strerror`, or the provider's `fi_cq_strerror`/`fi_eq_strerror`).

use std::ffi::CStr;
use std::time::Duration;

use libfabric_sys as sys;

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong talking to libfabric.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A wait reached its deadline. Nothing arrived: the peer may be dead or the link cut.
    #[error("{op}: no answer within {waited:?} (deadline reached; check that the peer is alive and the network path is up)")]
    Timeout {
        /// What was being waited for.
        op: &'static str,
        /// How long the call waited before giving up.
        waited: Duration,
    },
    /// A libfabric call returned an error code.
    #[error("{op}: {text} (libfabric error {code})")]
    Fabric {
        /// The libfabric function or step that failed.
        op: &'static str,
        /// The positive `FI_E*` / errno code.
        code: i32,
        /// `fi_strerror` text, or the provider's text when it gave one.
        text: String,
    },
    /// `fi_getinfo` found no provider matching the request.
    #[error("libfabric provider `{provider}` is not available for MSG endpoints with RMA on {node}: {text}")]
    ProviderUnavailable {
        /// Provider name asked for.
        provider: String,
        /// Node (address) asked for, or `(any)`.
        node: String,
        /// libfabric's reason, with a hint where we know one.
        text: String,
    },
    /// The listener refused the connection (wrong session secret, or it is not accepting).
    #[error(
        "{op}: connection refused by the peer (wrong session secret, or nobody listening there)"
    )]
    Rejected {
        /// The step that saw the refusal.
        op: &'static str,
    },
    /// The connection was shut down by the peer (or reset) while waiting.
    #[error("{op}: the connection was shut down by the peer")]
    Disconnected {
        /// What was being waited for.
        op: &'static str,
    },
    /// An operation completed in error.
    #[error("{op}: operation failed: {text} (error {code}, provider errno {prov_errno})")]
    Completion {
        /// The operation that failed.
        op: &'static str,
        /// The positive `FI_E*` code of the completion.
        code: i32,
        /// Provider-specific errno.
        prov_errno: i32,
        /// Provider text for the failure.
        text: String,
    },
    /// An event queue delivered an event this wrapper did not expect at this point.
    #[error("{op}: unexpected event {event} on the event queue")]
    UnexpectedEvent {
        /// What was being waited for.
        op: &'static str,
        /// The `FI_*` event number.
        event: u32,
    },
    /// A caller-supplied argument is out of range (offset, length, message size, address).
    #[error("{op}: {what}")]
    InvalidArgument {
        /// The call that refused the argument.
        op: &'static str,
        /// What is wrong with it.
        what: String,
    },
}

impl Error {
    /// True for a receive that completed truncated (`FI_ETRUNC`): the peer sent a message longer
    /// than the posted buffer. Protocol code treats this as a malformed frame.
    pub fn is_truncated(&self) -> bool {
        matches!(self, Error::Completion { code, .. } if *code == sys::FI_ETRUNC as i32)
    }
}

/// libfabric's text for a (positive or negative) error code.
pub(crate) fn strerror(code: i32) -> String {
    let code = code.unsigned_abs() as i32;
    // SAFETY: fi_strerror accepts any integer and returns a pointer to a static NUL-terminated
    // string (or a thread-local buffer for unknown codes), valid until the next call on this thread.
    let p = unsafe { sys::fi_strerror(code) };
    if p.is_null() {
        return format!("unknown error {code}");
    }
    // SAFETY: non-null, NUL-terminated, see above; copied out immediately.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Turns a libfabric return code (0 or positive = success, negative = -FI_E*) into a Result.
pub(crate) fn check(op: &'static str, rc: isize) -> Result<isize> {
    if rc >= 0 {
        Ok(rc)
    } else {
        let code = i32::try_from(-rc).unwrap_or(i32::MAX);
        Err(Error::Fabric {
            op,
            code,
            text: strerror(code),
        })
    }
}

/// `check` for the `int`-returning calls.
pub(crate) fn check_int(op: &'static str, rc: std::os::raw::c_int) -> Result<()> {
    check(op, rc as isize).map(|_| ())
}
