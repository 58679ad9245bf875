//! A throw-away OpenSSH server for tests.
//!
//! [`Sshd::start`] generates host keys and a user key pair with `ssh-keygen` in a fresh temp dir,
//! writes `authorized_keys`, `known_hosts` (the host keys for `[ADDR]:PORT`, and for
//! `[localhost]:PORT` on loopback) and a minimal `sshd_config`, then runs `/usr/sbin/sshd -D -e -f
//! CONFIG` on a free port and waits (bounded) until the port accepts connections. sshd's stderr
//! goes to a log file in the temp dir; a failed start reports it. On drop sshd is killed and
//! reaped and the temp dir removed.
//!
//! As root sshd uses privilege separation (it needs `/run/sshd`, which is created if missing) and
//! accepts logins of root with keys only. As a normal user sshd runs unprivileged and accepts
//! only that user. Either way the login user is the user running the tests.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::process::{command_line, require_tool, run_checked};

/// Prefix of our temp dirs (in `std::env::temp_dir()`).
const DIR_PREFIX: &str = "testkit-sshd-";
/// File in the temp dir holding the pid of the test process that owns the sshd.
const OWNER_FILE: &str = "owner.pid";

static SWEEP: Once = Once::new();

/// How many times a start is retried when the chosen port was taken in the meantime.
const PORT_ATTEMPTS_MAX: u32 = 5;

/// Key algorithms the harness can generate with `ssh-keygen`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// `ssh-ed25519`.
    Ed25519,
    /// `ecdsa-sha2-nistp256`.
    Ecdsa,
    /// `ssh-rsa` (3072 bits; slow to generate, use only when a client needs it).
    Rsa,
}

impl KeyType {
    fn keygen_args(self) -> &'static [&'static str] {
        match self {
            KeyType::Ed25519 => &["-t", "ed25519"],
            KeyType::Ecdsa => &["-t", "ecdsa", "-b", "256"],
            KeyType::Rsa => &["-t", "rsa", "-b", "3072"],
        }
    }

    fn file_stem(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "ed25519",
            KeyType::Ecdsa => "ecdsa",
            KeyType::Rsa => "rsa",
        }
    }
}

/// Options for [`Sshd`]; [`Sshd::start`] uses the defaults.
#[derive(Clone, Debug)]
pub struct SshdBuilder {
    listen_ip: IpAddr,
    netns: Option<String>,
    host_key_types: Vec<KeyType>,
    user_key_type: KeyType,
    accept_env: Vec<String>,
    set_env: Vec<(String, String)>,
    subsystems: Vec<(String, String)>,
    extra_config: Vec<String>,
    start_timeout: Duration,
}

impl Default for SshdBuilder {
    fn default() -> Self {
        SshdBuilder {
            listen_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            netns: None,
            host_key_types: vec![KeyType::Ed25519, KeyType::Ecdsa],
            user_key_type: KeyType::Ed25519,
            accept_env: [
                "LANG",
                "LC_*",
                "RPMEM_*",
                "PMEM_*",
                "RUST_LOG",
                "RUST_BACKTRACE",
            ]
            .map(String::from)
            .to_vec(),
            set_env: Vec::new(),
            subsystems: Vec::new(),
            extra_config: Vec::new(),
            start_timeout: Duration::from_secs(10),
        }
    }
}

impl SshdBuilder {
    /// The address sshd listens on (default 127.0.0.1).
    pub fn listen_ip(mut self, ip: IpAddr) -> Self {
        self.listen_ip = ip;
        self
    }

    /// Runs sshd inside `host`'s network namespace, listening on its peer address (the address
    /// the root namespace reaches it by; readiness is checked from the root namespace, so do
    /// not change the listen address to one reachable only inside).
    pub fn in_netns(mut self, host: &crate::NetnsHost) -> Self {
        self.netns = Some(host.name().to_owned());
        self.listen_ip = IpAddr::V4(host.peer_addr());
        self
    }

    /// The host key algorithms to generate (default ed25519 and ECDSA P-256); all of them are
    /// written to `known_hosts`. An empty list is treated as the default.
    pub fn host_key_types(mut self, types: &[KeyType]) -> Self {
        self.host_key_types = types.to_vec();
        self
    }

    /// The algorithm of the user key pair (default ed25519).
    pub fn user_key_type(mut self, key_type: KeyType) -> Self {
        self.user_key_type = key_type;
        self
    }

    /// Adds an `AcceptEnv` pattern (defaults: LANG, LC_*, RPMEM_*, PMEM_*, RUST_LOG, RUST_BACKTRACE).
    pub fn accept_env(mut self, pattern: impl Into<String>) -> Self {
        self.accept_env.push(pattern.into());
        self
    }

    /// Sets an environment variable in every session (sshd's `SetEnv`), e.g. `PATH` so that a
    /// freshly built binary is found.
    pub fn set_env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_env.push((name.into(), value.into()));
        self
    }

    /// Adds a `Subsystem NAME COMMAND` line.
    pub fn subsystem(mut self, name: impl Into<String>, command: impl Into<String>) -> Self {
        self.subsystems.push((name.into(), command.into()));
        self
    }

    /// Appends a raw line to sshd_config (it must come before any `Match` block you add).
    pub fn config_line(mut self, line: impl Into<String>) -> Self {
        self.extra_config.push(line.into());
        self
    }

    /// How long to wait for sshd to accept connections (default 10 s).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Generates the keys, writes the files, starts sshd and waits until it accepts connections.
    pub fn start(self) -> Result<Sshd> {
        let sshd_path = find_sshd()?;
        let keygen = require_tool("ssh-keygen", "openssh-client")?;
        let ip_tool = match self.netns {
            Some(_) => Some(require_tool("ip", "iproute2")?),
            None => None,
        };
        if crate::is_root() {
            ensure_privsep_dir()?;
        }
        let user = crate::current_user_name()?;
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir()
            .map_err(|e| Error::io("creating the sshd temp dir", e))?;
        let root = dir.path().to_path_buf();
        SWEEP.call_once(sweep_stale);
        // Recorded so that a later run can clean up after this process if it gets killed.
        write_file(&root.join(OWNER_FILE), &std::process::id().to_string())?;

        let host_key_types = if self.host_key_types.is_empty() {
            SshdBuilder::default().host_key_types
        } else {
            self.host_key_types.clone()
        };
        let mut host_keys = Vec::new();
        for key_type in host_key_types {
            let path = root.join(format!("ssh_host_{}_key", key_type.file_stem()));
            generate_key(&keygen, key_type, &path, "testkit-host")?;
            host_keys.push((key_type, path));
        }
        let user_key = root.join(format!("id_{}", self.user_key_type.file_stem()));
        generate_key(&keygen, self.user_key_type, &user_key, "testkit-user")?;
        let authorized_keys = root.join("authorized_keys");
        copy_file(&pub_path(&user_key), &authorized_keys)?;

        let config_path = root.join("sshd_config");
        let known_hosts = root.join("known_hosts");
        let log_path = root.join("sshd.log");
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS_MAX {
            let port = match &self.netns {
                Some(name) => crate::netns::free_port_in(name, self.listen_ip)?,
                None => crate::free_port_on(self.listen_ip)?,
            };
            let addr = SocketAddr::new(self.listen_ip, port);
            let config = self.config_text(addr, &root, &host_keys, &authorized_keys);
            write_file(&config_path, &config)?;
            write_file(&known_hosts, &known_hosts_text(addr, &host_keys)?)?;
            let log_file = File::create(&log_path)
                .map_err(|e| Error::io(format!("creating {}", log_path.display()), e))?;

            let mut cmd = match (&self.netns, &ip_tool) {
                (Some(name), Some(ip)) => {
                    let mut cmd = Command::new(ip);
                    cmd.args(["netns", "exec", name.as_str()]).arg(&sshd_path);
                    cmd
                }
                _ => Command::new(&sshd_path),
            };
            cmd.arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file);
            let line = command_line(&cmd);
            let mut child = cmd
                .spawn()
                .map_err(|e| Error::io(format!("starting `{line}`"), e))?;
            match wait_ready(&mut child, addr, &log_path, self.start_timeout) {
                Ok(()) => {
                    return Ok(Sshd {
                        child,
                        addr,
                        user,
                        host_keys,
                        user_key,
                        authorized_keys,
                        known_hosts,
                        config_path,
                        log_path,
                        netns: self.netns.clone(),
                        dir,
                    })
                }
                Err(WaitError::PortTaken(err)) => {
                    kill_and_reap(&mut child);
                    last_error = Some(err);
                }
                Err(WaitError::Fatal(err)) => {
                    kill_and_reap(&mut child);
                    return Err(err);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| Error::SshdStart {
            addr: self.listen_ip.to_string(),
            reason: "no attempt was made".into(),
            log: String::new(),
        }))
    }

    fn config_text(
        &self,
        addr: SocketAddr,
        root: &Path,
        host_keys: &[(KeyType, PathBuf)],
        authorized_keys: &Path,
    ) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let mut line = |s: String| {
            let _ = writeln!(text, "{s}");
        };
        line("# Written by testkit for one test run; everything lives in this directory.".into());
        line(format!("ListenAddress {}", addr.ip()));
        line(format!("Port {}", addr.port()));
        for (_, path) in host_keys {
            line(format!("HostKey {}", path.display()));
        }
        line(format!("PidFile {}", root.join("sshd.pid").display()));
        line(format!("AuthorizedKeysFile {}", authorized_keys.display()));
        line("PubkeyAuthentication yes".into());
        line("PasswordAuthentication no".into());
        line("KbdInteractiveAuthentication no".into());
        line("HostbasedAuthentication no".into());
        line("UsePAM no".into());
        line("StrictModes no".into());
        line("PermitRootLogin prohibit-password".into());
        line("UseDNS no".into());
        line("PrintMotd no".into());
        line("PrintLastLog no".into());
        line("X11Forwarding no".into());
        // Tests open many connections and channels at once (lanes, parallel tests).
        line("MaxStartups 100:30:200".into());
        line("MaxSessions 100".into());
        line("LogLevel VERBOSE".into());
        if !self.accept_env.is_empty() {
            line(format!("AcceptEnv {}", self.accept_env.join(" ")));
        }
        if !self.set_env.is_empty() {
            let pairs: Vec<String> = self
                .set_env
                .iter()
                .map(|(k, v)| format!("\"{k}={v}\""))
                .collect();
            line(format!("SetEnv {}", pairs.join(" ")));
        }
        for (name, command) in &self.subsystems {
            line(format!("Subsystem {name} {command}"));
        }
        for extra in &self.extra_config {
            line(extra.clone());
        }
        text
    }
}

/// A running OpenSSH server with its throw-away keys; killed and cleaned up on drop.
#[derive(Debug)]
pub struct Sshd {
    child: Child,
    addr: SocketAddr,
    user: String,
    host_keys: Vec<(KeyType, PathBuf)>,
    user_key: PathBuf,
    authorized_keys: PathBuf,
    known_hosts: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    netns: Option<String>,
    // Last field: dropped after the child has been killed in Drop.
    dir: tempfile::TempDir,
}

enum WaitError {
    /// The port was taken between choosing and binding it; try another.
    PortTaken(Error),
    Fatal(Error),
}

impl Sshd {
    /// Starts an sshd on 127.0.0.1 with the default options.
    pub fn start() -> Result<Sshd> {
        SshdBuilder::default().start()
    }

    /// Options for a customised start.
    pub fn builder() -> SshdBuilder {
        SshdBuilder::default()
    }

    /// The TCP port sshd listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address sshd listens on.
    pub fn ip(&self) -> IpAddr {
        self.addr.ip()
    }

    /// Address and port.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The login user (the user running the tests).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// `user@ADDR`, as given to ssh.
    pub fn destination(&self) -> String {
        format!("{}@{}", self.user, self.addr.ip())
    }

    /// Private key file of the first host key (ed25519 unless configured otherwise).
    pub fn host_key(&self) -> &Path {
        // The builder always generates at least one host key.
        &self.host_keys[0].1
    }

    /// All host keys: algorithm and private key file (the public key is next to it, `.pub`).
    pub fn host_keys(&self) -> &[(KeyType, PathBuf)] {
        &self.host_keys
    }

    /// The user's private key file (authorized on this server).
    pub fn user_key(&self) -> &Path {
        &self.user_key
    }

    /// The user's public key file.
    pub fn user_key_pub(&self) -> PathBuf {
        pub_path(&self.user_key)
    }

    /// The `authorized_keys` file sshd reads (tests may append to it).
    pub fn authorized_keys(&self) -> &Path {
        &self.authorized_keys
    }

    /// A `known_hosts` file with this server's host keys for `[ADDR]:PORT` (and
    /// `[localhost]:PORT` when ADDR is 127.0.0.1).
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    /// The generated sshd_config.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The temp dir holding everything; removed on drop. Tests may put their own files here.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The network namespace sshd runs in, if any.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// The process id of the listening sshd.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What sshd printed so far (it runs with `-e`, so this is its whole log).
    pub fn log(&self) -> String {
        read_log(&self.log_path)
    }

    /// An `ssh` command that logs in to this server with the test key, verifying the host key
    /// against [`Sshd::known_hosts`] (`StrictHostKeyChecking=yes`), never prompting
    /// (`BatchMode=yes`), ignoring the user's own ssh config. Append the remote command with
    /// `.arg(…)`; run it with a timeout (see [`crate::output_with_timeout`]).
    pub fn ssh_command(&self) -> Command {
        self.ssh_command_with_known_hosts(&self.known_hosts)
    }

    /// Like [`Sshd::ssh_command`] but checking the host key against another known_hosts file
    /// (e.g. an empty one, to see that an unknown host is refused).
    pub fn ssh_command_with_known_hosts(&self, known_hosts: &Path) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.arg("-F")
            .arg("/dev/null")
            .arg("-p")
            .arg(self.port().to_string())
            .arg("-i")
            .arg(&self.user_key)
            .arg("-o")
            .arg("IdentitiesOnly=yes")
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .arg("-o")
            .arg("GlobalKnownHostsFile=/dev/null")
            .arg("-o")
            .arg("StrictHostKeyChecking=yes")
            .arg("-o")
            .arg("BatchMode=yes")
            .arg("-o")
            .arg("ConnectTimeout=10")
            .arg("-o")
            .arg("LogLevel=ERROR")
            .arg(self.destination());
        cmd
    }

    /// The text of an ssh_config with one `Host ALIAS` block pointing at this server (HostName,
    /// Port, User, IdentityFile, UserKnownHostsFile, StrictHostKeyChecking yes, BatchMode yes).
    pub fn ssh_config_text(&self, alias: &str) -> String {
        format!(
            "Host {alias}\n\
             \x20   HostName {host}\n\
             \x20   Port {port}\n\
             \x20   User {user}\n\
             \x20   IdentityFile {key}\n\
             \x20   IdentitiesOnly yes\n\
             \x20   UserKnownHostsFile {kh}\n\
             \x20   GlobalKnownHostsFile /dev/null\n\
             \x20   StrictHostKeyChecking yes\n\
             \x20   BatchMode yes\n",
            host = self.addr.ip(),
            port = self.port(),
            user = self.user,
            key = self.user_key.display(),
            kh = self.known_hosts.display(),
        )
    }

    /// Writes [`Sshd::ssh_config_text`] for `alias` to `ssh_config` in the temp dir and returns
    /// its path (use with `ssh -F PATH ALIAS`).
    pub fn write_ssh_config(&self, alias: &str) -> Result<PathBuf> {
        let path = self.dir.path().join("ssh_config");
        write_file(&path, &self.ssh_config_text(alias))?;
        Ok(path)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

fn read_log(path: &Path) -> String {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}

/// Waits until `addr` accepts TCP connections, or sshd exits, or `timeout` passes.
fn wait_ready(
    child: &mut Child,
    addr: SocketAddr,
    log_path: &Path,
    timeout: Duration,
) -> std::result::Result<(), WaitError> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let log = read_log(log_path);
                let taken = log.contains("Address already in use")
                    || log.contains("Cannot bind any address");
                let err = Error::SshdStart {
                    addr: addr.to_string(),
                    reason: format!("sshd exited with {status}"),
                    log: log.trim().to_owned(),
                };
                return Err(if taken {
                    WaitError::PortTaken(err)
                } else {
                    WaitError::Fatal(err)
                });
            }
            Ok(None) => {}
            Err(e) => return Err(WaitError::Fatal(Error::io("waiting for sshd", e))),
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(WaitError::Fatal(Error::SshdStart {
                addr: addr.to_string(),
                reason: format!("no connection accepted within {timeout:?}"),
                log: read_log(log_path).trim().to_owned(),
            }));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn kill_and_reap(child: &mut Child) {
    // The process may already be gone (killed by a test or with its namespace): ignore.
    let _ = child.kill();
    // SIGKILL cannot be ignored; the bound only guards against an unkillable (D state) sshd.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            _ => break,
        }
    }
}

fn find_sshd() -> Result<PathBuf> {
    let mut searched = Vec::new();
    if let Some(path) = std::env::var_os("TESTKIT_SSHD") {
        let path = PathBuf::from(path);
        if path.is_absolute() && path.is_file() {
            return Ok(path);
        }
        // An explicit choice that does not work is an error, not a reason to pick another sshd.
        return Err(Error::SshdMissing {
            searched: format!("TESTKIT_SSHD={} (must be an absolute path)", path.display()),
        });
    }
    // sshd re-executes itself and therefore must be started with an absolute path.
    for candidate in ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"] {
        let path = PathBuf::from(candidate);
        if path.is_file() {
            return Ok(path);
        }
        searched.push(candidate.to_owned());
    }
    if let Some(path) = crate::which("sshd") {
        if path.is_absolute() {
            return Ok(path);
        }
    }
    searched.push("PATH".to_owned());
    Err(Error::SshdMissing {
        searched: searched.join(", "),
    })
}

/// sshd running as root refuses to start without its privilege-separation directory.
fn ensure_privsep_dir() -> Result<()> {
    let dir = Path::new("/run/sshd");
    if dir.is_dir() {
        return Ok(());
    }
    match fs::DirBuilder::new().mode(0o755).create(dir) {
        Ok(()) => Ok(()),
        // Another test created it concurrently.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io(
            "creating sshd's privilege separation dir /run/sshd",
            e,
        )),
    }
}

fn generate_key(keygen: &Path, key_type: KeyType, path: &Path, comment: &str) -> Result<()> {
    let mut cmd = Command::new(keygen);
    cmd.arg("-q")
        .args(key_type.keygen_args())
        .arg("-N")
        .arg("")
        .arg("-C")
        .arg(comment)
        .arg("-f")
        .arg(path);
    run_checked(&mut cmd).map(|_| ())
}

fn pub_path(private: &Path) -> PathBuf {
    let mut name = private.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

fn known_hosts_text(addr: SocketAddr, host_keys: &[(KeyType, PathBuf)]) -> Result<String> {
    let mut names = vec![known_hosts_name(&addr.ip().to_string(), addr.port())];
    if addr.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST) {
        names.push(known_hosts_name("localhost", addr.port()));
    }
    let mut text = String::new();
    for (_, key) in host_keys {
        let public = pub_path(key);
        let content = fs::read_to_string(&public)
            .map_err(|e| Error::io(format!("reading {}", public.display()), e))?;
        // "ALGORITHM BASE64 COMMENT": known_hosts wants the first two fields.
        let fields: Vec<&str> = content.split_whitespace().take(2).collect();
        if fields.len() != 2 {
            return Err(Error::io(
                format!("parsing {}", public.display()),
                std::io::Error::new(std::io::ErrorKind::InvalidData, "not an OpenSSH public key"),
            ));
        }
        for name in &names {
            let _ = writeln!(text, "{name} {} {}", fields[0], fields[1]);
        }
    }
    Ok(text)
}

/// known_hosts names a non-default port as `[host]:port`.
fn known_hosts_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

fn copy_file(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| Error::io(format!("copying {} to {}", from.display(), to.display()), e))
}

/// Kills sshds (and removes the temp dirs) left behind by test processes that died without
/// running their destructors (SIGKILL, abort). Best effort: nothing here may fail a test.
fn sweep_stale() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let dir = entry.path();
        let read_pid = |name: &str| -> Option<i32> {
            fs::read_to_string(dir.join(name)).ok()?.trim().parse().ok()
        };
        let Some(owner) = read_pid(OWNER_FILE) else {
            // Not (yet) recorded: possibly a start in progress in another process.
            continue;
        };
        if Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        if let Some(pid) = read_pid("sshd.pid") {
            // Guard against pid reuse: only kill a process that is still an sshd.
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "sshd" {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
