//! testkit: the shared test harness of the workspace (a dev-dependency only).
//!
//! It gives tests real infrastructure instead of mocks:
//!
//! - [`Sshd`]: a real OpenSSH server on a free port of 127.0.0.1 (or of a namespace host), with
//!   throw-away host and user keys, an `authorized_keys` and a `known_hosts` in a temp dir. It is
//!   killed and its temp dir removed on drop. [`Sshd::ssh_command`] gives a preconfigured `ssh`.
//! - [`NetnsHost`]: a "second host": a network namespace joined to the root namespace by a veth
//!   pair with its own /30 from 10.213.0.0/16, able to run commands and an [`Sshd`] inside, and to
//!   cut the link (nftables) or take it down (ip link) for fault injection. Root only: otherwise
//!   [`NetnsHost::create`] returns [`Error::Skip`], and [`skip_unless_root!`] skips a test loudly.
//! - [`rpmemd`]: the real rpmemd for end-to-end tests (`RPMEMD_BIN`, or built once into
//!   `<target-dir>/e2e-rpmemd`) and the `PATH` an sshd gives its sessions to find it.
//! - Small helpers: [`free_port`], [`wait_for`] (bounded polling), [`output_with_timeout`]
//!   (run a program with a deadline), [`shm_tempdir`] (a temp dir on tmpfs).
//!
//! Invariants: every wait is bounded (nothing here can hang a test); every fixture cleans up
//! after itself on drop and stale leftovers of dead test processes are removed on the next run;
//! fixtures get unique names, ports and subnets so tests can run in parallel, also across
//! processes.

pub mod bench;
mod error;
mod netns;
#[cfg(feature = "pmemobj")]
pub mod pmemobj;
mod process;
pub mod rpmemd;
mod sshd;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::thread;
use std::time::{Duration, Instant};

pub use error::{Error, Result};
pub use netns::NetnsHost;
pub use process::{command_line, output_with_timeout, which};
pub use sshd::{KeyType, Sshd, SshdBuilder};

/// The seed of a randomized test: the environment variable `var` when it holds a number (to
/// replay a run), else one taken from the clock. Printed to stderr as `var=seed`, so that a
/// failing run says how to replay it.
pub fn seed(var: &str) -> u64 {
    let seed = std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("{var}={seed}");
    seed
}

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is found by binding port 0 and closing the socket, so another process may take it
/// before the caller binds it; callers that can must retry on "address in use" ([`Sshd`] does).
pub fn free_port() -> Result<u16> {
    free_port_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Like [`free_port`] for another local address.
pub fn free_port_on(ip: IpAddr) -> Result<u16> {
    let listener = TcpListener::bind(SocketAddr::new(ip, 0))
        .map_err(|e| Error::io(format!("binding a free port on {ip}"), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("reading the bound port", e))?;
    Ok(addr.port())
}

/// A temp dir in /dev/shm when that exists (tmpfs: pool files there are memory, and tests do not
/// wear the disk), else in the system temp dir. Removed on drop.
///
/// Panics (failing the calling test) when the directory cannot be created, naming where.
pub fn shm_tempdir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap_or_else(|e| panic!("creating a temp dir in /dev/shm: {e}"))
    } else {
        tempfile::tempdir().unwrap_or_else(|e| {
            panic!(
                "creating a temp dir in {}: {e}",
                std::env::temp_dir().display()
            )
        })
    }
}

/// Polls `condition` until it returns true or `timeout` has passed; returns whether it held.
///
/// The poll interval starts at 5 ms and grows to 100 ms, so short waits stay fast and long ones
/// do not spin. The condition is always checked once more at the deadline.
pub fn wait_for(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut interval = Duration::from_millis(5);
    loop {
        if condition() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        thread::sleep(interval.min(deadline - now));
        interval = (interval * 2).min(Duration::from_millis(100));
    }
}

/// Sets its flag when dropped: a writer thread in a race test holds one so that the reader
/// threads stop even when the writer panics (a failed assertion must not hang the test).
pub struct StopOnDrop<'a>(pub &'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Whether the process runs with effective uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Returns true when running as root; otherwise prints
/// `SKIPPED: <test> needs root (network namespaces)` to stderr and returns false.
///
/// Use as `if !testkit::require_root("my_test") { return; }`, or [`skip_unless_root!`].
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    report_skip(test, "needs root (network namespaces)");
    false
}

/// Prints `SKIPPED: <test> <reason>` to the process's real stderr.
///
/// It writes to the stderr handle rather than with `eprintln!`, because the test harness
/// captures `eprintln!` output of passing tests and a skip must never be silent.
pub fn report_skip(test: &str, reason: &str) {
    use std::io::Write as _;
    // Nothing sensible to do if stderr itself is gone.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test} {reason}");
}

/// Returns from the enclosing test (printing `SKIPPED: … needs root` to stderr) unless running as
/// root. Without an argument the test name is taken from the test thread's name.
#[macro_export]
macro_rules! skip_unless_root {
    () => {
        if !$crate::require_root(::std::thread::current().name().unwrap_or("this test")) {
            return;
        }
    };
    ($test:expr) => {
        if !$crate::require_root($test) {
            return;
        }
    };
}

/// Unwraps a fixture result; on [`Error::Skip`] prints `SKIPPED: <test> <reason>` to stderr and
/// returns from the enclosing test; on any other error panics with the error's message.
#[macro_export]
macro_rules! fixture_or_skip {
    ($result:expr) => {
        match $result {
            Ok(value) => value,
            Err(err) => match err.skip_reason() {
                Some(reason) => {
                    $crate::report_skip(
                        ::std::thread::current().name().unwrap_or("this test"),
                        reason,
                    );
                    return;
                }
                None => panic!("fixture failed: {err}"),
            },
        }
    };
}

/// The name of the user the process runs as (effective uid), as sshd will know it.
pub fn current_user_name() -> Result<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let mut buf = vec![0_u8; 4096];
    // SAFETY: an all-zero passwd is a valid value (pointers null, integers zero); it is only
    // read after getpwuid_r filled it.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: pwd, buf and result are valid for writes for the whole call and buf.len() is the
    // true buffer length; on success pw_name points into buf, which outlives its use below.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return Err(Error::io(
            format!("looking up the user name of uid {uid}"),
            std::io::Error::from_raw_os_error(if rc != 0 { rc } else { libc::ENOENT }),
        ));
    }
    // SAFETY: getpwuid_r succeeded, so pw_name is a NUL-terminated string inside buf.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    Ok(name.to_string_lossy().into_owned())
}
