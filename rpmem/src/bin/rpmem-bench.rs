//! rpmem-bench: rpmem against the raw TCP limits of the same machine, in one run.
//!
//! ```sh
//! cargo build --release -p rpmemd && cargo run --release -p rpmem --features bench --bin rpmem-bench
//! ```
//!
//! Measures, side by side: persist latency (median, p99) of 64 B and 4 KiB on one lane against a
//! raw TCP ping-pong on 127.0.0.1 (request of the same size, 8-byte reply; spinning on
//! non-blocking sockets like libfabric's completion waits, and blocking); bandwidth of 1 MiB
//! persists on 1 and 4 lanes against one raw TCP stream of 1 MiB messages (streamed, and with an
//! 8-byte acknowledgement per message); create+close over the local transport and over SSH (a
//! throw-away sshd on 127.0.0.1 from testkit). Pools live in /dev/shm (tmpfs: the target's
//! durability step is an msync of tmpfs pages). rpmemd is taken from `RPMEMD_BIN`, else from
//! next to this binary. A run takes well under a minute. `rpmem-bench persist-only` runs only
//! the 64 B persist loop (for `strace -c -f` or `perf`).

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow_free::{bail, Result};
use rpmem::{Options, PersistFlags, PoolAttr, PoolMemory, RpmemPool, SshOptions, Transport};

/// Minimal error plumbing for a binary without anyhow in this crate's dependencies.
mod anyhow_free {
    pub type Result<T> = std::result::Result<T, String>;
    macro_rules! bail {
        ($($t:tt)*) => { return Err(format!($($t)*)) };
    }
    pub(crate) use bail;
}

const LAT_WARMUP: usize = 500;
const LAT_ITERS: usize = 5000;
const BW_MSG_BYTES: usize = 1 << 20;
const BW_TOTAL_BYTES: usize = 512 << 20;
const CREATE_LOCAL_ITERS: usize = 10;
const CREATE_SSH_ITERS: usize = 5;

fn main() {
    if let Err(e) = run() {
        eprintln!("rpmem-bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let rpmemd = rpmemd_bin()?;
    let site = Site::new()?;
    eprintln!(
        "rpmemd: {}; pools in {}",
        rpmemd.display(),
        site.dir.path().display()
    );
    let local = site.options(Transport::Local {
        program: rpmemd.clone(),
    });

    if std::env::args().nth(1).as_deref() == Some("persist-only") {
        // For profiling (strace -c -f, perf): only the 64 B persist loop.
        let r = persist_latency(&site, &local, 64)?;
        println!("persist 64 B: median {:.1} µs, p99 {:.1} µs", r.0, r.1);
        return Ok(());
    }
    eprintln!("latency ...");
    let mut lat = Vec::new();
    for size in [64usize, 4096] {
        let ours = persist_latency(&site, &local, size)?;
        let spin = raw_pingpong(size, true).map_err(|e| format!("raw ping-pong: {e}"))?;
        let block = raw_pingpong(size, false).map_err(|e| format!("raw ping-pong: {e}"))?;
        lat.push((size, ours, spin, block));
    }
    eprintln!("bandwidth ...");
    let bw1 = persist_bandwidth(&site, &local, 1)?;
    let bw4 = persist_bandwidth(&site, &local, 4)?;
    let raw_stream = raw_bandwidth(false).map_err(|e| format!("raw bandwidth: {e}"))?;
    let raw_acked = raw_bandwidth(true).map_err(|e| format!("raw bandwidth: {e}"))?;
    eprintln!("create+close ...");
    let cc_local = create_close(&site, &local, CREATE_LOCAL_ITERS)?;
    // SHLVL=1 keeps the remote `bash -c` from sourcing the login user's ~/.bashrc (bash does
    // that for commands run by sshd only at shell level 1): this row measures rpmem and sshd,
    // not whatever the user's rc files run (on the reference machine root's ~/.bashrc runs
    // `pyenv init`, 130 ms per session).
    let sshd = testkit::Sshd::builder()
        .set_env("PATH", path_with(&rpmemd))
        .set_env("SHLVL", "1")
        .start()
        .map_err(|e| format!("starting a throw-away sshd: {e}"))?;
    let ssh = site.options(Transport::Ssh(SshOptions {
        config_file: Some("/dev/null".into()),
        known_hosts: Some(sshd.known_hosts().to_path_buf()),
        identity_files: vec![sshd.user_key().to_path_buf()],
        use_agent: false,
        ..SshOptions::default()
    }));
    let ssh_target = format!("{}@127.0.0.1:{}", sshd.user(), sshd.port());
    let cc_ssh = create_close_at(&site, &ssh, &ssh_target, CREATE_SSH_ITERS)?;
    let bare_ssh = bare_ssh_session(&ssh, &ssh_target, CREATE_SSH_ITERS)?;

    println!("| persist latency, 1 lane | rpmem median µs | p99 µs | raw TCP spin median µs | p99 µs | raw TCP blocking median µs | p99 µs | rpmem / raw spin |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (size, ours, spin, block) in &lat {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} |",
            human(*size),
            ours.0,
            ours.1,
            spin.0,
            spin.1,
            block.0,
            block.1,
            ours.0 / spin.0
        );
    }
    println!();
    println!("| 1 MiB messages | MiB/s | vs raw TCP stream |");
    println!("|---|---:|---:|");
    println!(
        "| rpmem persist, 1 lane | {bw1:.0} | {:.0} % |",
        100.0 * bw1 / raw_stream
    );
    println!(
        "| rpmem persist, 4 lanes | {bw4:.0} | {:.0} % |",
        100.0 * bw4 / raw_stream
    );
    println!("| raw TCP, one stream | {raw_stream:.0} | 100 % |");
    println!(
        "| raw TCP, one stream, 8-byte ack per message | {raw_acked:.0} | {:.0} % |",
        100.0 * raw_acked / raw_stream
    );
    println!();
    println!("| create+close (8 MiB pool) | median ms | max ms |");
    println!("|---|---:|---:|");
    println!(
        "| local transport ({CREATE_LOCAL_ITERS} runs) | {:.1} | {:.1} |",
        cc_local.0, cc_local.1
    );
    println!(
        "| SSH on 127.0.0.1 ({CREATE_SSH_ITERS} runs) | {:.1} | {:.1} |",
        cc_ssh.0, cc_ssh.1
    );
    println!(
        "| bare SSH session: connect, handshake, auth, exec `true`, exit ({CREATE_SSH_ITERS} runs) | {:.1} | {:.1} |",
        bare_ssh.0, bare_ssh.1
    );
    println!();
    let lat64 = &lat[0];
    println!("Targets:");
    println!(
        "- 64 B persist median ≤ 1.7 × raw spinning round trip: {:.2} × — {}",
        lat64.1 .0 / lat64.2 .0,
        met(lat64.1 .0 / lat64.2 .0 <= 1.7)
    );
    println!(
        "- 1 MiB persists on 1 lane ≥ 80 % of raw single-stream TCP: {:.0} % — {} (4 lanes: {:.0} %)",
        100.0 * bw1 / raw_stream,
        met(bw1 >= 0.8 * raw_stream),
        100.0 * bw4 / raw_stream
    );
    println!(
        "- create+close ≤ 30 ms local: {:.1} ms — {}",
        cc_local.0,
        met(cc_local.0 <= 30.0)
    );
    println!(
        "- create+close ≤ 120 ms over SSH: {:.1} ms — {}",
        cc_ssh.0,
        met(cc_ssh.0 <= 120.0)
    );
    Ok(())
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn human(size: usize) -> String {
    if size >= 1024 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

fn rpmemd_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("RPMEMD_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let p = exe.with_file_name("rpmemd");
    if !p.exists() {
        bail!(
            "no rpmemd next to {} (build it first: cargo build --release -p rpmemd, or set \
             RPMEMD_BIN)",
            exe.display()
        );
    }
    Ok(p)
}

fn path_with(rpmemd: &Path) -> String {
    let dir = rpmemd
        .parent()
        .unwrap_or(Path::new("/"))
        .display()
        .to_string();
    format!("{dir}:/usr/local/bin:/usr/bin:/bin")
}

/// A poolset-dir with an rpmemd configuration, in /dev/shm when it exists.
struct Site {
    dir: tempfile::TempDir,
    next: std::cell::Cell<u32>,
}

impl Site {
    fn new() -> Result<Site> {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("rpmem-bench")
            .tempdir_in(base)
            .map_err(|e| format!("temp dir: {e}"))?;
        let io = |e: io::Error| format!("preparing the bench dir: {e}");
        std::fs::create_dir(dir.path().join("sets")).map_err(io)?;
        std::fs::create_dir(dir.path().join("parts")).map_err(io)?;
        std::fs::write(
            dir.path().join("rpmemd.conf"),
            format!(
                "poolset-dir = {}\nuse-syslog = no\nlog-file = -\nlog-level = err\n",
                dir.path().join("sets").display()
            ),
        )
        .map_err(io)?;
        Ok(Site {
            dir,
            next: std::cell::Cell::new(0),
        })
    }

    fn options(&self, transport: Transport) -> Options {
        Options {
            transport: Some(transport),
            rpmemd_args: vec![
                "-c".into(),
                self.dir.path().join("rpmemd.conf").display().to_string(),
            ],
            ..Options::default()
        }
    }

    /// A fresh poolset of one part of `mib` MiB; returns its descriptor.
    fn poolset(&self, mib: u64) -> Result<String> {
        let n = self.next.get();
        self.next.set(n + 1);
        let name = format!("b{n}.set");
        let part = self.dir.path().join("parts").join(format!("b{n}.part"));
        std::fs::write(
            self.dir.path().join("sets").join(&name),
            format!("PMEMPOOLSET\n{mib}M {}\n", part.display()),
        )
        .map_err(|e| format!("writing poolset: {e}"))?;
        Ok(name)
    }
}

fn attr() -> PoolAttr {
    PoolAttr {
        signature: *b"RPMBENCH",
        ..PoolAttr::default()
    }
}

fn create(
    site: &Site,
    opts: &Options,
    target: &str,
    pool_bytes: usize,
    nlanes: u32,
) -> Result<(RpmemPool, String)> {
    let desc = site.poolset((pool_bytes as u64 >> 20) + 1)?;
    let mem = PoolMemory::new(pool_bytes).map_err(|e| e.to_string())?;
    let mut n = nlanes;
    let pool = RpmemPool::create(target, &desc, mem, &mut n, &attr(), opts)
        .map_err(|e| format!("create: {e}"))?;
    if n != nlanes {
        bail!("asked for {nlanes} lanes, got {n}");
    }
    Ok((pool, desc))
}

/// (median, p99) in µs.
fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
    (at(0.5), at(0.99))
}

fn persist_latency(site: &Site, opts: &Options, size: usize) -> Result<(f64, f64)> {
    let (pool, _) = create(site, opts, "127.0.0.1", 1 << 20, 1)?;
    let mut times = Vec::with_capacity(LAT_ITERS);
    for i in 0..LAT_WARMUP + LAT_ITERS {
        let t = Instant::now();
        pool.persist(0, size as u64, 0, PersistFlags::NONE)
            .map_err(|e| format!("persist: {e}"))?;
        if i >= LAT_WARMUP {
            times.push(t.elapsed());
        }
    }
    pool.close(true).map_err(|e| format!("close: {e}"))?;
    Ok(percentiles(times))
}

/// MiB/s of 1 MiB persists, `lanes` threads, one lane each.
fn persist_bandwidth(site: &Site, opts: &Options, lanes: u32) -> Result<f64> {
    let region = 16 << 20;
    let (pool, _) = create(site, opts, "127.0.0.1", region * lanes as usize, lanes)?;
    let per_lane = BW_TOTAL_BYTES / lanes as usize / BW_MSG_BYTES;
    let run = |warm: usize, count: usize| -> Result<Duration> {
        let t = Instant::now();
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..lanes)
                .map(|lane| {
                    let pool = &pool;
                    s.spawn(move || -> Result<()> {
                        for i in warm..warm + count {
                            let off = lane as usize * region + (i * BW_MSG_BYTES) % region;
                            pool.persist(off as u64, BW_MSG_BYTES as u64, lane, PersistFlags::NONE)
                                .map_err(|e| format!("persist: {e}"))?;
                        }
                        Ok(())
                    })
                })
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("lane thread panicked".into()))
            })
        })?;
        Ok(t.elapsed())
    };
    run(0, 8)?;
    let took = run(8, per_lane)?;
    pool.close(true).map_err(|e| format!("close: {e}"))?;
    Ok((per_lane * lanes as usize * BW_MSG_BYTES) as f64 / (1 << 20) as f64 / took.as_secs_f64())
}

fn create_close(site: &Site, opts: &Options, iters: usize) -> Result<(f64, f64)> {
    create_close_at(site, opts, "127.0.0.1", iters)
}

/// (median, max) in ms of create + close(remove) of an 8 MiB pool.
fn create_close_at(site: &Site, opts: &Options, target: &str, iters: usize) -> Result<(f64, f64)> {
    let mut times = Vec::new();
    for _ in 0..iters {
        let t = Instant::now();
        let (pool, _) = create(site, opts, target, 8 << 20, 1)?;
        let created = t.elapsed();
        pool.close(true).map_err(|e| format!("close: {e}"))?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        eprintln!(
            "create+close {target}: create {:.1} ms, close {:.1} ms",
            created.as_secs_f64() * 1e3,
            (t.elapsed() - created).as_secs_f64() * 1e3
        );
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times[times.len() - 1]))
}

/// (median, max) in ms of the SSH floor under create+close: the same client, `true` instead
/// of rpmemd.
fn bare_ssh_session(opts: &Options, target: &str, iters: usize) -> Result<(f64, f64)> {
    let Some(Transport::Ssh(ssh)) = &opts.transport else {
        bail!("bare_ssh_session needs the SSH transport");
    };
    let transport = Transport::Ssh(SshOptions {
        remote_program: "true".into(),
        ..ssh.clone()
    });
    let target: rpmem::Target = target.parse().map_err(|e| format!("{e}"))?;
    let mut times = Vec::new();
    for _ in 0..iters {
        let t = Instant::now();
        let ch = rpmem::ControlChannel::open(&transport, &target, &[], Duration::from_secs(10))
            .map_err(|e| format!("ssh: {e}"))?;
        let exit = ch.finish().map_err(|e| format!("ssh: {e}"))?;
        if exit.code != Some(0) {
            bail!("remote `true` exited with {:?}", exit.code);
        }
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times[times.len() - 1]))
}

// ---- raw TCP limits ----

/// Reads exactly `buf.len()` bytes, spinning on WouldBlock when the socket is non-blocking.
fn read_full(s: &mut TcpStream, buf: &mut [u8]) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_full(s: &mut TcpStream, buf: &[u8]) -> io::Result<()> {
    let mut put = 0;
    while put < buf.len() {
        match s.write(&buf[put..]) {
            Ok(n) => put += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn tcp_pair(nonblocking: bool) -> io::Result<(TcpStream, TcpStream)> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let c = TcpStream::connect(l.local_addr()?)?;
    let (s, _) = l.accept()?;
    for x in [&c, &s] {
        x.set_nodelay(true)?;
        x.set_nonblocking(nonblocking)?;
    }
    Ok((c, s))
}

/// Round trip of a `size`-byte request and an 8-byte reply: (median, p99) in µs.
fn raw_pingpong(size: usize, spin: bool) -> io::Result<(f64, f64)> {
    let (mut c, mut s) = tcp_pair(spin)?;
    let total = LAT_WARMUP + LAT_ITERS;
    let server = std::thread::spawn(move || -> io::Result<()> {
        let mut req = vec![0u8; size];
        for _ in 0..total {
            read_full(&mut s, &mut req)?;
            write_full(&mut s, &[1u8; 8])?;
        }
        Ok(())
    });
    let req = vec![7u8; size];
    let mut reply = [0u8; 8];
    let mut times = Vec::with_capacity(LAT_ITERS);
    for i in 0..total {
        let t = Instant::now();
        write_full(&mut c, &req)?;
        read_full(&mut c, &mut reply)?;
        if i >= LAT_WARMUP {
            times.push(t.elapsed());
        }
    }
    server
        .join()
        .map_err(|_| io::Error::other("server thread panicked"))??;
    Ok(percentiles(times))
}

/// MiB/s of one blocking TCP stream of 1 MiB messages, optionally acknowledged one by one.
fn raw_bandwidth(ack_each: bool) -> io::Result<f64> {
    let (mut c, mut s) = tcp_pair(false)?;
    let count = BW_TOTAL_BYTES / BW_MSG_BYTES;
    let server = std::thread::spawn(move || -> io::Result<()> {
        let mut buf = vec![0u8; BW_MSG_BYTES];
        for i in 0..count + 8 {
            read_full(&mut s, &mut buf)?;
            if ack_each || i == count + 7 {
                write_full(&mut s, &[1u8; 8])?;
            }
        }
        Ok(())
    });
    let msg = vec![7u8; BW_MSG_BYTES];
    let mut ack = [0u8; 8];
    // Warm-up: 8 messages, acknowledged at the end of the warm-up or one by one.
    for _ in 0..8 {
        write_full(&mut c, &msg)?;
        if ack_each {
            read_full(&mut c, &mut ack)?;
        }
    }
    let t = Instant::now();
    for i in 0..count {
        write_full(&mut c, &msg)?;
        if ack_each || i == count - 1 {
            read_full(&mut c, &mut ack)?;
        }
    }
    let took = t.elapsed();
    server
        .join()
        .map_err(|_| io::Error::other("server thread panicked"))??;
    Ok((count * BW_MSG_BYTES) as f64 / (1 << 20) as f64 / took.as_secs_f64())
}
