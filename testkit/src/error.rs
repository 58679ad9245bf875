//! The one error type of the harness.
//!
//! Every variant says what failed and, where it helps, what to do about it (which package to
//! install, what sshd printed). [`Error::Skip`] is not a failure: it tells a test that the
//! environment cannot run it (for example network namespaces without root), and the test should
//! print that loudly and return.

use std::io;
use std::process::ExitStatus;
use std::time::Duration;

/// Result alias used throughout the harness.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong while setting up or tearing down a test fixture.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The environment cannot run this fixture (not root, …); the test should be skipped loudly.
    #[error("skipped: {0}")]
    Skip(String),

    /// OpenSSH's server is not installed where we looked.
    #[error(
        "sshd not found (looked at {searched}); install openssh-server \
         (`apt-get install openssh-server`) or set TESTKIT_SSHD to its absolute path"
    )]
    SshdMissing {
        /// The places that were searched, comma separated.
        searched: String,
    },

    /// A helper program the fixture needs is not installed.
    #[error("`{program}` not found on PATH; install it (`apt-get install {package}`)")]
    ToolMissing {
        /// The program that was looked for, e.g. `nft`.
        program: String,
        /// The Debian package that provides it.
        package: String,
    },

    /// An I/O operation failed; `what` says which one.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, e.g. "writing sshd_config".
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A helper command ran but reported failure.
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        /// The command line, for the reader.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// What it printed on stderr (trimmed).
        stderr: String,
    },

    /// A bounded wait ran out.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long we waited.
        after: Duration,
    },

    /// sshd exited or never accepted connections; `log` is what it printed.
    #[error("sshd on {addr} did not start: {reason}\n--- sshd output ---\n{log}\n--- end ---")]
    SshdStart {
        /// The address sshd was asked to listen on.
        addr: String,
        /// Why we gave up (exited with status …, did not accept within …).
        reason: String,
        /// sshd's stderr (it runs with `-e`).
        log: String,
    },

    /// No free address slot for a network namespace (all test subnets in use).
    #[error("no free network-namespace slot: all {slots} test subnets are in use")]
    NoFreeSlot {
        /// How many slots exist.
        slots: u32,
    },
}

impl Error {
    /// The skip reason, if this error means "cannot run here" rather than "failed".
    pub fn skip_reason(&self) -> Option<&str> {
        match self {
            Error::Skip(reason) => Some(reason),
            _ => None,
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}
