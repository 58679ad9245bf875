//! A "second host" in a network namespace, joined to the root namespace by a veth pair.
//!
//! Each [`NetnsHost`] owns one *slot* `s` in `0..SLOT_COUNT`, which fixes its subnet
//! `10.213.(s / 64).((s % 64) * 4)/30` (host side `.1`, namespace side `.2`) and its veth names
//! `pmt<s>h` (root namespace) / `pmt<s>p` (inside). A slot is claimed by holding an exclusive
//! `flock` on `/run/testkit-netns/slot-<s>` for the host's lifetime, which works across threads
//! and processes and is released by the kernel if the test process dies; whoever claims a slot
//! next first removes what the dead owner left (its namespace and veth). Namespaces are named
//! `pmt-<pid>-<n>`; a sweep at the first creation in a process also deletes `pmt-*` namespaces
//! whose pid no longer exists.
//!
//! Fault injection: [`NetnsHost::cut_link`] installs an nftables table *inside the namespace*
//! that silently drops every packet on the veth (so connections stall instead of being refused),
//! and [`NetnsHost::restore_link`] deletes it; the table dies with the namespace, so a crashed
//! test cannot leave the root namespace's firewall modified. [`NetnsHost::set_link_down`] /
//! [`NetnsHost::set_link_up`] take the veth down instead (connects then fail at once).
//!
//! Drop kills every process still inside the namespace, deletes the namespace (and with it the
//! veth pair) and releases the slot.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Once;
use std::thread;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::process::{require_tool, run_checked};
use crate::sshd::{Sshd, SshdBuilder};

/// Number of /30 subnets in 10.213.0.0/16.
const SLOT_COUNT: u32 = 16384;
/// Where slot lock files live (tmpfs: cleared on reboot, like the namespaces themselves).
const SLOT_DIR: &str = "/run/testkit-netns";
/// Prefix of our namespace names.
const NETNS_PREFIX: &str = "pmt-";
/// Name of the nftables table that cuts the link (inside the namespace, so per instance).
const CUT_TABLE: &str = "testkit_cut";

static NEXT_INSTANCE: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();

/// A network namespace with a veth link to the root namespace; removed on drop. Root only.
#[derive(Debug)]
pub struct NetnsHost {
    name: String,
    slot: u32,
    host_veth: String,
    peer_veth: String,
    host_addr: Ipv4Addr,
    peer_addr: Ipv4Addr,
    ip_tool: PathBuf,
    cut: AtomicBool,
    // Holding the open, flock'ed file is what reserves the slot.
    slot_lock: File,
}

impl NetnsHost {
    /// Creates the namespace, the veth pair and the addresses, and brings the links up.
    ///
    /// Returns [`Error::Skip`] when not running as root, so tests can skip loudly
    /// (see [`crate::fixture_or_skip!`]); any other error is a real failure.
    pub fn create() -> Result<NetnsHost> {
        if !crate::is_root() {
            return Err(Error::Skip("needs root (network namespaces)".into()));
        }
        let ip_tool = require_tool("ip", "iproute2")?;
        SWEEP.call_once(|| sweep_stale(&ip_tool));
        fs::create_dir_all(SLOT_DIR).map_err(|e| Error::io(format!("creating {SLOT_DIR}"), e))?;

        let pid = std::process::id();
        let instance = NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed);
        let name = format!("{NETNS_PREFIX}{pid}-{instance}");
        let (slot, mut slot_lock) = claim_slot()?;
        let host_veth = format!("pmt{slot}h");
        let peer_veth = format!("pmt{slot}p");
        let base = [10, 213, (slot / 64) as u8, ((slot % 64) * 4) as u8];
        let host_addr = Ipv4Addr::new(base[0], base[1], base[2], base[3] + 1);
        let peer_addr = Ipv4Addr::new(base[0], base[1], base[2], base[3] + 2);

        // Remove what a dead previous owner of this slot may have left, then record ourselves
        // before creating anything, so that a crash from here on is cleaned up the same way.
        clean_slot_leftovers(&ip_tool, &mut slot_lock, &host_veth);
        write_slot_record(&mut slot_lock, &name)?;

        let host = NetnsHost {
            name,
            slot,
            host_veth,
            peer_veth,
            host_addr,
            peer_addr,
            ip_tool,
            cut: AtomicBool::new(false),
            slot_lock,
        };
        // From here on, Drop undoes whatever part of the setup succeeded.
        host.setup()?;
        Ok(host)
    }

    fn setup(&self) -> Result<()> {
        let host_cidr = format!("{}/30", self.host_addr);
        let peer_cidr = format!("{}/30", self.peer_addr);
        self.ip(&["netns", "add", &self.name])?;
        self.ip(&[
            "link",
            "add",
            &self.host_veth,
            "type",
            "veth",
            "peer",
            "name",
            &self.peer_veth,
            "netns",
            &self.name,
        ])?;
        self.ip(&["addr", "add", &host_cidr, "dev", &self.host_veth])?;
        self.ip(&["link", "set", &self.host_veth, "up"])?;
        self.ip_in(&["addr", "add", &peer_cidr, "dev", &self.peer_veth])?;
        self.ip_in(&["link", "set", &self.peer_veth, "up"])?;
        self.ip_in(&["link", "set", "lo", "up"])?;
        Ok(())
    }

    /// The namespace's name (`pmt-<pid>-<n>`), as `ip netns` shows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address of the root-namespace end of the veth pair.
    pub fn host_addr(&self) -> Ipv4Addr {
        self.host_addr
    }

    /// The address of the namespace end: the "second host".
    pub fn peer_addr(&self) -> Ipv4Addr {
        self.peer_addr
    }

    /// Name of the veth in the root namespace.
    pub fn host_veth(&self) -> &str {
        &self.host_veth
    }

    /// Name of the veth inside the namespace.
    pub fn peer_veth(&self) -> &str {
        &self.peer_veth
    }

    /// The subnet slot (unique among live hosts on this machine).
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// A command that runs `program` inside the namespace (`ip netns exec NAME program`).
    /// Run it with a timeout (see [`crate::output_with_timeout`]).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(&self.ip_tool);
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Options for an sshd that runs inside the namespace and listens on [`NetnsHost::peer_addr`].
    pub fn sshd_builder(&self) -> SshdBuilder {
        Sshd::builder().in_netns(self)
    }

    /// Starts an sshd inside the namespace, listening on [`NetnsHost::peer_addr`].
    pub fn start_sshd(&self) -> Result<Sshd> {
        self.sshd_builder().start()
    }

    /// Binds a TCP listener *inside* the namespace on `peer_addr:port` (0 = any free port).
    /// The socket stays in the namespace; accept on it from any thread.
    pub fn tcp_listener(&self, port: u16) -> Result<TcpListener> {
        let addr = SocketAddr::new(IpAddr::V4(self.peer_addr), port);
        run_in_netns(&self.name, move || TcpListener::bind(addr))
            .map_err(|e| Error::io(format!("binding {addr} in namespace {}", self.name), e))
    }

    /// A TCP port on [`NetnsHost::peer_addr`] that is free inside the namespace.
    pub fn free_port(&self) -> Result<u16> {
        free_port_in(&self.name, IpAddr::V4(self.peer_addr))
    }

    /// Silently drops all traffic between the namespace and the outside (nftables table
    /// `testkit_cut` inside the namespace), so connections stall until their timeouts.
    /// Calling it while already cut does nothing. Needs `nft` (package nftables).
    pub fn cut_link(&self) -> Result<()> {
        let nft = require_tool("nft", "nftables")?;
        if self.cut.load(Ordering::SeqCst) {
            return Ok(());
        }
        let ruleset = format!(
            "table inet {CUT_TABLE} {{\n\
             \x20 chain input {{ type filter hook input priority -300; policy accept; \
             iifname \"{veth}\" drop; }}\n\
             \x20 chain output {{ type filter hook output priority -300; policy accept; \
             oifname \"{veth}\" drop; }}\n\
             }}\n",
            veth = self.peer_veth
        );
        let path = std::env::temp_dir().join(format!("testkit-cut-{}.nft", self.name));
        fs::write(&path, ruleset)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        let mut cmd = self.command(&nft);
        cmd.arg("-f").arg(&path);
        let result = run_checked(&mut cmd);
        // The file was only the transport for the ruleset.
        let _ = fs::remove_file(&path);
        result?;
        self.cut.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Undoes [`NetnsHost::cut_link`]; does nothing if the link is not cut.
    pub fn restore_link(&self) -> Result<()> {
        if !self.cut.load(Ordering::SeqCst) {
            return Ok(());
        }
        let nft = require_tool("nft", "nftables")?;
        let mut cmd = self.command(&nft);
        cmd.args(["delete", "table", "inet", CUT_TABLE]);
        run_checked(&mut cmd)?;
        self.cut.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Whether [`NetnsHost::cut_link`] is in effect.
    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }

    /// Takes the root-namespace end of the veth down (`ip link set … down`): the peer becomes
    /// unreachable at once (connects fail instead of stalling).
    pub fn set_link_down(&self) -> Result<()> {
        self.ip(&["link", "set", &self.host_veth, "down"])
    }

    /// Brings the veth back up after [`NetnsHost::set_link_down`].
    pub fn set_link_up(&self) -> Result<()> {
        self.ip(&["link", "set", &self.host_veth, "up"])?;
        // The connected route comes back with the link; wait (bounded) until it is usable.
        let peer = self.peer_addr.to_string();
        crate::wait_for(Duration::from_secs(5), || {
            run_checked(Command::new(&self.ip_tool).args(["route", "get", &peer]))
                .map(|o| {
                    o.status.success()
                        && String::from_utf8_lossy(&o.stdout).contains(&self.host_veth)
                })
                .unwrap_or(false)
        });
        Ok(())
    }

    /// The process ids currently inside the namespace.
    pub fn pids(&self) -> Result<Vec<u32>> {
        let out = run_checked(Command::new(&self.ip_tool).args(["netns", "pids", &self.name]))?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect())
    }

    fn ip(&self, args: &[&str]) -> Result<()> {
        run_checked(Command::new(&self.ip_tool).args(args)).map(|_| ())
    }

    fn ip_in(&self, args: &[&str]) -> Result<()> {
        run_checked(
            Command::new(&self.ip_tool)
                .args(["-n", &self.name])
                .args(args),
        )
        .map(|_| ())
    }
}

impl Drop for NetnsHost {
    fn drop(&mut self) {
        remove_netns(&self.ip_tool, &self.name);
        // Normally the veth died with the namespace; this catches a failed setup half-way.
        delete_link_if_present(&self.ip_tool, &self.host_veth);
        // Clear the record, then the lock is released when the file is closed.
        let _ = self.slot_lock.set_len(0);
    }
}

/// Runs `f` on a fresh thread that has joined the named network namespace.
fn run_in_netns<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let path = Path::new("/run/netns").join(name);
    let worker = thread::spawn(move || {
        let ns = File::open(&path)?;
        // SAFETY: ns is an open namespace file for the whole call; setns changes the network
        // namespace of this thread only, and the thread ends right after f.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        f()
    });
    worker
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("namespace worker thread panicked")))
}

/// A port free on `ip` inside namespace `name` (found by binding port 0 there).
pub(crate) fn free_port_in(name: &str, ip: IpAddr) -> Result<u16> {
    run_in_netns(name, move || {
        TcpListener::bind(SocketAddr::new(ip, 0))?
            .local_addr()
            .map(|a| a.port())
    })
    .map_err(|e| {
        Error::io(
            format!("finding a free port on {ip} in namespace {name}"),
            e,
        )
    })
}

/// Claims the lowest free slot. Scanning from 0 keeps the number of lock files small (at most
/// the peak number of hosts alive at once); a held slot costs one non-blocking lock attempt.
fn claim_slot() -> Result<(u32, File)> {
    for slot in 0..SLOT_COUNT {
        let path = Path::new(SLOT_DIR).join(format!("slot-{slot}"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        // SAFETY: file is open for the call; flock has no memory-safety preconditions.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok((slot, file));
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(Error::io(format!("locking {}", path.display()), err));
        }
    }
    Err(Error::NoFreeSlot { slots: SLOT_COUNT })
}

fn clean_slot_leftovers(ip_tool: &Path, lock: &mut File, host_veth: &str) {
    let mut previous = String::new();
    if lock.seek(SeekFrom::Start(0)).is_ok() && lock.read_to_string(&mut previous).is_ok() {
        let name = previous.trim();
        if name.starts_with(NETNS_PREFIX) {
            remove_netns(ip_tool, name);
        }
    }
    delete_link_if_present(ip_tool, host_veth);
}

fn write_slot_record(lock: &mut File, name: &str) -> Result<()> {
    lock.set_len(0)
        .and_then(|()| lock.seek(SeekFrom::Start(0)))
        .and_then(|_| lock.write_all(name.as_bytes()))
        .map_err(|e| Error::io("writing the netns slot record", e))
}

/// Kills everything inside the namespace, then deletes it. Best effort; errors are ignored
/// because this runs in Drop and in cleanup of stale state.
fn remove_netns(ip_tool: &Path, name: &str) {
    if !Path::new("/run/netns").join(name).exists() {
        return;
    }
    // A process left inside would keep the namespace (and the veth) alive after `ip netns del`.
    let pids = |ip_tool: &Path| -> Vec<i32> {
        run_checked(Command::new(ip_tool).args(["netns", "pids", name]))
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    for pid in pids(ip_tool) {
        // SAFETY: kill has no memory-safety preconditions; pid came from `ip netns pids`.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    crate::wait_for(Duration::from_secs(5), || pids(ip_tool).is_empty());
    let _ = run_checked(Command::new(ip_tool).args(["netns", "del", name]));
}

fn delete_link_if_present(ip_tool: &Path, link: &str) {
    if Path::new("/sys/class/net").join(link).exists() {
        let _ = run_checked(Command::new(ip_tool).args(["link", "del", link]));
    }
}

/// Deletes `pmt-<pid>-<n>` namespaces whose process is gone (a test that crashed or was killed).
fn sweep_stale(ip_tool: &Path) {
    let Ok(entries) = fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NETNS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            remove_netns(ip_tool, &name);
        }
    }
}
