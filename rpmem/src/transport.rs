//! The control channel: a byte stream to an rpmemd process started on the target.
//!
//! Three ways to start rpmemd, all giving the same [`ControlChannel`] (stdin/stdout of rpmemd):
//! - [`Transport::Local`]: a child process of ours, no SSH at all (the embedded default);
//! - [`Transport::Ssh`]: the built-in SSH client (libssh2 through the `ssh2` crate), which verifies
//!   the host key against known_hosts, authenticates with the agent or key files, and honours the
//!   basics of `~/.ssh/config`;
//! - [`Transport::External`]: an external command such as `ssh -T` (PMDK's RPMEM_SSH idea), for
//!   set-ups the built-in client cannot handle (jump hosts, GSSAPI, …).
//!
//! Every read and write has a deadline (`io_timeout`): a stopped rpmemd or a silently cut link
//! gives [`std::io::ErrorKind::TimedOut`], never a hang.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::ssh_config::{self, HostConfig, SshConfigError};
use crate::target::Target;

/// Most bytes of rpmemd's stderr kept for error messages.
const STDERR_KEPT_MAX: usize = 16 * 1024;
/// Longest wait for the peer's CHANNEL_CLOSE when an SSH channel is dropped.
const SSH_DROP_WAIT: Duration = Duration::from_millis(200);
/// Longest wait for the rest of rpmemd's stderr once it has exited.
const STDERR_WAIT_MAX: Duration = Duration::from_secs(1);

/// How rpmemd is started.
#[derive(Clone, Debug)]
pub enum Transport {
    /// Run `program` as a child process on this machine (no SSH). The target's host is ignored
    /// except for its address, which must be a loopback address for the data plane.
    Local { program: PathBuf },
    /// Start `rpmemd` on the target through the built-in SSH client.
    Ssh(SshOptions),
    /// Run `argv[0] argv[1..] [-p PORT] [-l USER] HOST -- REMOTE-COMMAND` (OpenSSH's syntax).
    External { argv: Vec<String> },
}

/// Settings of the built-in SSH client.
#[derive(Clone, Debug)]
pub struct SshOptions {
    /// OpenSSH client configuration to honour; `None` means `~/.ssh/config`.
    pub config_file: Option<PathBuf>,
    /// known_hosts file; `None` means the configuration's `UserKnownHostsFile`, else
    /// `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// Accept a host whose key is not in known_hosts (never one whose key differs).
    pub accept_unknown_host: bool,
    /// Private keys to try before the configuration's and the default ones.
    pub identity_files: Vec<PathBuf>,
    /// Try the SSH agent first when `SSH_AUTH_SOCK` is set.
    pub use_agent: bool,
    /// Command that runs rpmemd on the target (a program name looked up in the remote PATH).
    pub remote_program: String,
    pub connect_timeout: Duration,
}

impl Default for SshOptions {
    fn default() -> Self {
        SshOptions {
            config_file: None,
            known_hosts: None,
            accept_unknown_host: false,
            identity_files: Vec::new(),
            use_agent: true,
            remote_program: "rpmemd".into(),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the control channel could not be set up or failed; each says what to check.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot resolve target host {host:?}: {source}")]
    Resolve { host: String, source: io::Error },
    #[error("cannot reach SSH on {addr}: {source} (is sshd running there and the port right?)")]
    Connect { addr: String, source: io::Error },
    #[error("SSH handshake with {addr} failed: {source}")]
    Handshake { addr: String, source: ssh2::Error },
    #[error(
        "host key of {host} (port {port}) is not in {known_hosts}: refusing to connect \
         (add it, e.g. `ssh-keyscan -p {port} {host} >> {known_hosts}`, or accept unknown hosts \
         explicitly)"
    )]
    UnknownHostKey {
        host: String,
        port: u16,
        known_hosts: String,
    },
    #[error(
        "host key of {host} (port {port}) does NOT match {known_hosts}: refusing to connect \
         (possible man-in-the-middle, or the host was reinstalled)"
    )]
    HostKeyMismatch {
        host: String,
        port: u16,
        known_hosts: String,
    },
    #[error("cannot check the host key against known_hosts {path}: {source}")]
    KnownHosts { path: String, source: ssh2::Error },
    #[error("cannot read known_hosts {path}: {source}")]
    KnownHostsRead { path: String, source: io::Error },
    #[error("SSH authentication as {user:?} on {host} failed; tried: {tried}")]
    Auth {
        user: String,
        host: String,
        tried: String,
    },
    #[error("cannot determine the user name to log in as: give the target as user@host")]
    NoUser,
    #[error("SSH channel to {host}: {source}")]
    Channel { host: String, source: ssh2::Error },
    #[error("cannot start {program:?}: {source} (is rpmemd installed and on PATH?)")]
    Spawn { program: String, source: io::Error },
    #[error("ssh configuration: {0}")]
    Config(#[from] SshConfigError),
    #[error("control channel: {0}")]
    Io(#[from] io::Error),
}

/// How rpmemd ended, as seen through the channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpmemdExit {
    /// Exit status; `None` when killed by a signal or not reported.
    pub code: Option<i32>,
    /// The end of what rpmemd (or the shell that should have started it) wrote on stderr.
    pub stderr: String,
}

impl RpmemdExit {
    /// A sentence for the user about why rpmemd is gone.
    pub fn explain(&self) -> String {
        let detail = self.stderr.trim();
        match self.code {
            Some(127) => {
                format!("rpmemd is not installed on the target (not found on PATH): {detail}")
            }
            Some(126) => format!("rpmemd on the target cannot be executed: {detail}"),
            Some(code) => format!("rpmemd exited with status {code}: {detail}"),
            None => format!("rpmemd was killed or its exit status is unknown: {detail}"),
        }
    }
}

/// A byte stream to rpmemd's stdin/stdout with deadlines on every read and write.
pub struct ControlChannel {
    inner: Inner,
    io_timeout: Duration,
    /// Absolute deadline of the message being read or written, if the caller set one.
    deadline: Option<Instant>,
    /// The target's address as this side reached it, when known (not for an external ssh).
    peer_ip: Option<IpAddr>,
}

enum Inner {
    Child {
        child: Child,
        stdin: Option<ChildStdin>,
        stdout: ChildStdout,
        stderr: Option<mpsc::Receiver<String>>,
    },
    Ssh {
        channel: ssh2::Channel,
        // Kept for the channel's lifetime, and to set per-call timeouts.
        session: ssh2::Session,
    },
}

impl ControlChannel {
    /// Starts rpmemd on `target` with `args` and returns the channel to it.
    pub fn open(
        transport: &Transport,
        target: &Target,
        args: &[String],
        io_timeout: Duration,
    ) -> Result<ControlChannel, TransportError> {
        match transport {
            Transport::Local { program } => {
                let mut command = Command::new(program);
                command.args(args);
                // A local rpmemd serves on loopback whatever the target's name says.
                let peer_ip = Some(IpAddr::from([127, 0, 0, 1]));
                spawn(command, &program.display().to_string(), io_timeout, peer_ip)
            }
            Transport::External { argv } => {
                let (program, fixed) = argv.split_first().ok_or_else(|| TransportError::Spawn {
                    program: String::new(),
                    source: io::Error::new(io::ErrorKind::InvalidInput, "empty ssh command"),
                })?;
                let mut command = Command::new(program);
                command.args(fixed);
                if let Some(port) = target.port {
                    command.arg("-p").arg(port.to_string());
                }
                if let Some(user) = &target.user {
                    command.arg("-l").arg(user);
                }
                // "--" ends ssh's options: nothing after it can be read as one. The host is
                // not resolved here: the external command may know it under an alias.
                command
                    .arg("--")
                    .arg(&target.host)
                    .arg(shell_command_line(args));
                spawn(command, program, io_timeout, None)
            }
            Transport::Ssh(options) => ssh_open(options, target, args, io_timeout),
        }
    }

    /// The address of the target as this side reached it: loopback for the local transport, the
    /// TCP peer of the built-in SSH client; `None` for an external ssh command (unknown here).
    pub fn peer_ip(&self) -> Option<IpAddr> {
        self.peer_ip
    }

    /// Sets an absolute deadline for the message about to be read or written: every read and
    /// write fails with `TimedOut` once it has passed, however slowly the peer trickles bytes.
    /// `None` leaves only the per-call I/O deadline.
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// Time left for one read or write: the I/O deadline, cut short by the message deadline.
    fn call_timeout(&self) -> io::Result<Duration> {
        let Some(deadline) = self.deadline else {
            return Ok(self.io_timeout);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "rpmemd did not complete the message before its deadline",
            ));
        }
        Ok(left.min(self.io_timeout))
    }

    /// Closes our end and waits (up to the I/O deadline) for rpmemd to exit.
    pub fn finish(mut self) -> Result<RpmemdExit, TransportError> {
        match &mut self.inner {
            Inner::Child {
                child,
                stdin,
                stderr,
                ..
            } => {
                drop(stdin.take());
                let status = match wait_child(child, self.io_timeout)? {
                    Some(status) => Some(status),
                    None => {
                        // rpmemd ignored the end of its input: do not wait for it forever.
                        let _ = child.kill();
                        child.wait().ok()
                    }
                };
                Ok(RpmemdExit {
                    code: status.and_then(|s| s.code()),
                    stderr: take_stderr(stderr),
                })
            }
            Inner::Ssh { channel, .. } => {
                // Errors while closing only mean the peer is already gone; the exit status
                // below is what the caller wants to know.
                let _ = channel.send_eof();
                Ok(ssh_exit(channel))
            }
        }
    }

    /// Drops the channel after a failure without waiting for rpmemd: a local child is killed
    /// and reaped at once (it may be stopped or hung, and must not answer anyone later); an SSH
    /// channel is closed with the short drop wait, which ends the remote rpmemd's input.
    pub fn abort(mut self) {
        if let Inner::Child { child, stdin, .. } = &mut self.inner {
            drop(stdin.take());
            // Errors mean the child has already exited; the wait reaps it either way.
            let _ = child.kill();
            let _ = child.wait();
        }
        // Drop finishes the job (for a reaped child it returns at once).
    }

    /// rpmemd's exit, if it has already exited (for error messages after an EOF).
    pub fn try_exit(&mut self) -> Option<RpmemdExit> {
        match &mut self.inner {
            Inner::Child { child, stderr, .. } => match child.try_wait() {
                Ok(Some(status)) => Some(RpmemdExit {
                    code: status.code(),
                    stderr: take_stderr(stderr),
                }),
                _ => None,
            },
            Inner::Ssh { channel, .. } => {
                if !channel.eof() {
                    return None;
                }
                Some(ssh_exit(channel))
            }
        }
    }
}

impl Read for ControlChannel {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let timeout = self.call_timeout()?;
        match &mut self.inner {
            Inner::Child { stdout, .. } => {
                wait_fd(stdout.as_raw_fd(), libc::POLLIN, timeout)?;
                stdout.read(buf)
            }
            Inner::Ssh { channel, session } => {
                session.set_timeout(libssh2_millis(timeout));
                channel.read(buf)
            }
        }
    }
}

impl Write for ControlChannel {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let timeout = self.call_timeout()?;
        match &mut self.inner {
            Inner::Child { stdin, .. } => {
                let stdin = stdin
                    .as_mut()
                    .ok_or_else(|| io::Error::from(io::ErrorKind::BrokenPipe))?;
                wait_fd(stdin.as_raw_fd(), libc::POLLOUT, timeout)?;
                stdin.write(buf)
            }
            Inner::Ssh { channel, session } => {
                session.set_timeout(libssh2_millis(timeout));
                channel.write(buf)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Child { stdin, .. } => stdin.as_mut().map_or(Ok(()), |s| s.flush()),
            Inner::Ssh { channel, .. } => channel.flush(),
        }
    }
}

impl Drop for ControlChannel {
    fn drop(&mut self) {
        match &mut self.inner {
            Inner::Child { child, stdin, .. } => {
                // Closing stdin tells rpmemd the initiator is gone; give it a moment, then make
                // sure no orphan is left behind.
                drop(stdin.take());
                if !matches!(wait_child(child, Duration::from_millis(500)), Ok(Some(_))) {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
            Inner::Ssh { session, .. } => {
                // Freeing the channel and the session sends CHANNEL_CLOSE and waits for the
                // peer's, each up to the session timeout; over a dead link that would stretch a
                // failed close by two full I/O deadlines. Nothing more is needed from the peer
                // here (finish() already waited for a healthy one), so the wait is kept short;
                // the TCP connection is closed either way.
                session.set_timeout(libssh2_millis(SSH_DROP_WAIT));
            }
        }
    }
}

/// Drains what is left of the remote stderr, waits for the channel to close, and reads the exit
/// status. Errors here only mean the peer is already gone, so they leave the fields empty.
fn ssh_exit(channel: &mut ssh2::Channel) -> RpmemdExit {
    let mut stderr = String::new();
    let _ = channel
        .stderr()
        .take(STDERR_KEPT_MAX as u64)
        .read_to_string(&mut stderr);
    let _ = channel.wait_close();
    RpmemdExit {
        code: channel.exit_status().ok(),
        stderr,
    }
}

fn spawn(
    mut command: Command,
    program: &str,
    io_timeout: Duration,
    peer_ip: Option<IpAddr>,
) -> Result<ControlChannel, TransportError> {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|source| TransportError::Spawn {
        program: program.to_string(),
        source,
    })?;
    // The three pipes were requested just above, so they exist.
    let stdin = child.stdin.take().expect("stdin was piped");
    let stdout = child.stdout.take().expect("stdout was piped");
    let stderr = child.stderr.take().expect("stderr was piped");
    Ok(ControlChannel {
        inner: Inner::Child {
            child,
            stdin: Some(stdin),
            stdout,
            stderr: Some(collect_stderr(stderr)),
        },
        io_timeout,
        deadline: None,
        peer_ip,
    })
}

/// Keeps the last `STDERR_KEPT_MAX` bytes of a child's stderr, draining it so it never blocks.
fn collect_stderr(mut stderr: ChildStderr) -> mpsc::Receiver<String> {
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > STDERR_KEPT_MAX {
                kept.drain(..kept.len() - STDERR_KEPT_MAX);
            }
        }
        // The receiver may be gone (channel dropped); nothing is lost then.
        let _ = done.send(String::from_utf8_lossy(&kept).into_owned());
    });
    result
}

/// What the stderr collector kept, waiting a moment at most: a grandchild that inherited the
/// pipe (e.g. an ssh connection master) may hold it open long after rpmemd is gone.
fn take_stderr(stderr: &mut Option<mpsc::Receiver<String>>) -> String {
    stderr
        .take()
        .and_then(|r| r.recv_timeout(STDERR_WAIT_MAX).ok())
        .unwrap_or_default()
}

/// libssh2 takes a timeout in milliseconds as u32, where 0 means "forever": never pass 0.
fn libssh2_millis(timeout: Duration) -> u32 {
    timeout.as_millis().clamp(1, u32::MAX as u128) as u32
}

fn wait_child(
    child: &mut Child,
    timeout: Duration,
) -> io::Result<Option<std::process::ExitStatus>> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if std::time::Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until `fd` is ready for `events` or the deadline passes.
fn wait_fd(fd: RawFd, events: libc::c_short, timeout: Duration) -> io::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        let millis = left.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: `pfd` is a valid pollfd for the duration of the call and we pass a count of 1.
        let ready = unsafe { libc::poll(&mut pfd, 1, millis) };
        match ready {
            1.. => return Ok(()), // readable, writable, or hung up: the read/write will tell
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("rpmemd did not answer within {timeout:?}"),
                ))
            }
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
}

/// Resolves `host` like `to_socket_addrs`, but gives up after `timeout` (getaddrinfo has no
/// deadline of its own; the lookup thread finishes in the background).
fn resolve_bounded(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<Vec<SocketAddr>, TransportError> {
    let (done, result) = mpsc::channel();
    let name = host.to_string();
    std::thread::spawn(move || {
        let _ = done.send((name.as_str(), port).to_socket_addrs().map(|a| a.collect()));
    });
    let answer = result.recv_timeout(timeout).unwrap_or_else(|_| {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer from the resolver within {timeout:?}"),
        ))
    });
    answer.map_err(|source| TransportError::Resolve {
        host: host.to_string(),
        source,
    })
}

/// Quotes each argument for a POSIX shell (the remote side of an SSH exec is a shell).
pub fn shell_command_line(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@+%".contains(&b))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

fn local_user() -> Option<String> {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
}

fn ssh_open(
    options: &SshOptions,
    target: &Target,
    args: &[String],
    io_timeout: Duration,
) -> Result<ControlChannel, TransportError> {
    let config_path = options
        .config_file
        .clone()
        .or_else(|| home().map(|h| h.join(".ssh/config")));
    let config = match &config_path {
        Some(path) => ssh_config::load(path, &target.host)?,
        None => HostConfig::default(),
    };
    let host = config
        .host_name
        .clone()
        .unwrap_or_else(|| target.host.clone());
    let port = target.port.or(config.port).unwrap_or(22);
    let user = target
        .user
        .clone()
        .or_else(|| config.user.clone())
        .or_else(local_user)
        .ok_or(TransportError::NoUser)?;

    let addrs = resolve_bounded(&host, port, options.connect_timeout)?;
    let mut last_error = None;
    let mut tcp = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, options.connect_timeout) {
            Ok(stream) => {
                tcp = Some(stream);
                break;
            }
            Err(e) => last_error = Some((addr.to_string(), e)),
        }
    }
    let tcp = match (tcp, last_error) {
        (Some(tcp), _) => tcp,
        (None, Some((addr, source))) => return Err(TransportError::Connect { addr, source }),
        (None, None) => {
            return Err(TransportError::Resolve {
                host,
                source: io::Error::new(io::ErrorKind::NotFound, "no address"),
            })
        }
    };
    let peer_ip = tcp.peer_addr()?.ip();
    let addr_text = format!("{host}:{port}");
    tcp.set_nodelay(true)?;

    let mut session = ssh2::Session::new().map_err(|source| TransportError::Handshake {
        addr: addr_text.clone(),
        source,
    })?;
    session.set_timeout(options.connect_timeout.as_millis().min(u32::MAX as u128) as u32);
    session.set_tcp_stream(tcp);
    session
        .handshake()
        .map_err(|source| TransportError::Handshake {
            addr: addr_text.clone(),
            source,
        })?;

    verify_host_key(&session, options, &config, &host, port)?;
    authenticate(&session, options, &config, &user, &host)?;

    let mut channel = session
        .channel_session()
        .map_err(|source| TransportError::Channel {
            host: host.clone(),
            source,
        })?;
    let mut command = vec![options.remote_program.clone()];
    command.extend(args.iter().cloned());
    channel
        .exec(&shell_command_line(&command))
        .map_err(|source| TransportError::Channel {
            host: host.clone(),
            source,
        })?;
    // From here on every blocking call is bounded by the I/O deadline.
    session.set_timeout(libssh2_millis(io_timeout));
    Ok(ControlChannel {
        inner: Inner::Ssh { channel, session },
        io_timeout,
        deadline: None,
        peer_ip: Some(peer_ip),
    })
}

/// Checks the server's host key as OpenSSH would: against the known_hosts file (the explicit one,
/// else the configuration's `UserKnownHostsFile` or `~/.ssh/known_hosts`, plus
/// `/etc/ssh/ssh_known_hosts` when no explicit file was given), host names compared in lower
/// case, hashed entries understood, `@revoked` keys refused, other `@` markers ignored.
fn verify_host_key(
    session: &ssh2::Session,
    options: &SshOptions,
    config: &HostConfig,
    host: &str,
    port: u16,
) -> Result<(), TransportError> {
    let mut files = Vec::new();
    match options.known_hosts.clone() {
        Some(explicit) => files.push(explicit),
        None => {
            files.extend(
                config
                    .known_hosts_file
                    .clone()
                    .or_else(|| home().map(|h| h.join(".ssh/known_hosts"))),
            );
            files.push(PathBuf::from("/etc/ssh/ssh_known_hosts"));
        }
    }
    let files_text = files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let known_hosts_error = |source| TransportError::KnownHosts {
        path: files_text.clone(),
        source,
    };
    let mut known = session.known_hosts().map_err(known_hosts_error)?;
    let (key, _) = session.host_key().ok_or_else(|| {
        known_hosts_error(ssh2::Error::new(
            ssh2::ErrorCode::Session(-1),
            "server sent no host key",
        ))
    })?;
    let key_base64 = base64(key);
    let mut revoked = false;
    for file in &files {
        let text = match std::fs::read(file) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(TransportError::KnownHostsRead {
                    path: file.display().to_string(),
                    source,
                })
            }
        };
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("@revoked") {
                revoked |= rest.split_whitespace().nth(2) == Some(key_base64.as_str());
                continue;
            }
            if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
                continue;
            }
            // libssh2 reads one entry per call; a line it cannot parse (an unknown key type,
            // say) is skipped, as OpenSSH skips it.
            let _ = known.read_str(line, ssh2::KnownHostFileKind::OpenSSH);
        }
    }
    if revoked {
        return Err(TransportError::HostKeyMismatch {
            host: host.to_string(),
            port,
            known_hosts: format!("{files_text} (the key is marked @revoked)"),
        });
    }
    let accept_unknown = options.accept_unknown_host || config.accept_unknown_host == Some(true);
    match known.check_port(&host.to_ascii_lowercase(), port, key) {
        ssh2::CheckResult::Match => Ok(()),
        ssh2::CheckResult::NotFound if accept_unknown => Ok(()),
        ssh2::CheckResult::NotFound | ssh2::CheckResult::Failure => {
            Err(TransportError::UnknownHostKey {
                host: host.to_string(),
                port,
                known_hosts: files_text,
            })
        }
        ssh2::CheckResult::Mismatch => Err(TransportError::HostKeyMismatch {
            host: host.to_string(),
            port,
            known_hosts: files_text,
        }),
    }
}

/// Standard base64 with padding, as known_hosts writes keys.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.len();
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= n {
                out.push(ALPHABET[(v >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn authenticate(
    session: &ssh2::Session,
    options: &SshOptions,
    config: &HostConfig,
    user: &str,
    host: &str,
) -> Result<(), TransportError> {
    let mut tried = Vec::new();
    if options.use_agent && std::env::var_os("SSH_AUTH_SOCK").is_some() {
        tried.push("ssh-agent".to_string());
        if session.userauth_agent(user).is_ok() && session.authenticated() {
            return Ok(());
        }
    }
    let defaults = ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .filter_map(|name| home().map(|h| h.join(".ssh").join(name)));
    let candidates = options
        .identity_files
        .iter()
        .cloned()
        .chain(config.identity_files.iter().cloned())
        .chain(defaults);
    for key in candidates {
        if !key.exists() {
            continue;
        }
        tried.push(key.display().to_string());
        if session.userauth_pubkey_file(user, None, &key, None).is_ok() && session.authenticated() {
            return Ok(());
        }
    }
    Err(TransportError::Auth {
        user: user.to_string(),
        host: host.to_string(),
        tried: if tried.is_empty() {
            "no agent and no key file found".into()
        } else {
            tried.join(", ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff, 0xfe, 0xfd, 0x00]), "//79AA==");
    }

    #[test]
    fn shell_quoting_keeps_arguments_whole() {
        let args: Vec<String> = ["rpmemd", "a b", "it's", "", "--x=1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let line = shell_command_line(&args);
        assert_eq!(line, r#"rpmemd 'a b' 'it'\''s' '' --x=1"#);
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s|' {}", shell_command_line(&args[1..])))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a b|it's||--x=1|");
    }

    fn local(program: &str, args: &[&str]) -> ControlChannel {
        let target: Target = "127.0.0.1".parse().unwrap();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        ControlChannel::open(
            &Transport::Local {
                program: program.into(),
            },
            &target,
            &args,
            Duration::from_millis(300),
        )
        .unwrap()
    }

    #[test]
    fn local_child_round_trip_and_exit_status() {
        let mut channel = local("cat", &[]);
        channel.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        channel.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        assert_eq!(channel.peer_ip(), Some(IpAddr::from([127, 0, 0, 1])));
        let exit = channel.finish().unwrap();
        assert_eq!(exit.code, Some(0));
    }

    #[test]
    fn a_silent_peer_times_out_instead_of_hanging() {
        let mut channel = local("sleep", &["5"]);
        let started = std::time::Instant::now();
        let err = channel.read(&mut [0u8; 1]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn finish_is_bounded_when_rpmemd_ignores_eof_or_a_grandchild_holds_stderr() {
        let started = std::time::Instant::now();
        let exit = local("sleep", &["30"]).finish().unwrap();
        assert_eq!(exit.code, None, "killed, so no exit code");
        let exit = local("sh", &["-c", "sleep 30 & exit 3"]).finish().unwrap();
        assert_eq!(exit.code, Some(3));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_trickling_peer_cannot_stretch_a_message_past_its_deadline() {
        let mut channel = local("sh", &["-c", "while :; do printf x; sleep 0.05; done"]);
        channel.set_deadline(Some(Instant::now() + Duration::from_millis(400)));
        let started = Instant::now();
        let mut buf = [0u8; 1000];
        let err = channel.read_exact(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        channel.set_deadline(None);
        channel.read_exact(&mut buf[..2]).unwrap();
    }

    #[test]
    fn missing_program_and_remote_stderr_are_reported() {
        let target: Target = "127.0.0.1".parse().unwrap();
        let err = ControlChannel::open(
            &Transport::Local {
                program: "/nonexistent/rpmemd".into(),
            },
            &target,
            &[],
            Duration::from_secs(1),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("is rpmemd installed"), "{err}");

        let channel = local("sh", &["-c", "echo 'sh: rpmemd: not found' >&2; exit 127"]);
        let exit = channel.finish().unwrap();
        assert_eq!(exit.code, Some(127));
        assert!(
            exit.explain().contains("not installed"),
            "{}",
            exit.explain()
        );
    }
}
