//! replicated-bench: transactions per second over a pool with 0, 1 and 2 remote replicas served
//! by real rpmemd processes on this host (local transport, libfabric tcp on 127.0.0.1), and
//! with one replica on a second host in a network namespace (over SSH; root only, the row is
//! skipped otherwise). Rows: TX{alloc 64 B} and TX{snapshot 64 B + write}, 1 and 2 threads.
//!
//! ```text
//! cargo build --release -p rpmemd
//! PMEM_IS_PMEM_FORCE=1 cargo run --release -p examples --features bench --bin replicated-bench [SECONDS]
//! ```
//!
//! rpmemd is taken from `RPMEMD_BIN`, else from beside this binary (`target/release/rpmemd`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::bench::throughput;

use anyhow::{bail, Context, Result};
use pool::{OpenOptions, Pool};
use rpmem::replica::Connector;
use rpmem::{Options, SshOptions, Transport};
use tx::{ObjPool, TxOptions};

/// Primary part size (MiB); remote parts are 2 MiB larger (header + attribute area).
const PART_MIB: u64 = 64;
/// Transactions per timed batch (allocations are freed after each batch, untimed).
const BATCH: usize = 500;
/// The issue's target for TX{alloc 64 B} with one replica on loopback, one thread.
const TARGET_ALLOC_1R: f64 = 50_000.0;

/// A throw-away rpmemd poolset-dir with a configuration file.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Result<Site> {
        let dir = tempfile::tempdir_in(shm()).context("temp dir")?;
        std::fs::create_dir(dir.path().join("sets"))?;
        std::fs::write(
            dir.path().join("rpmemd.conf"),
            format!(
                "poolset-dir = {}\nuse-syslog = no\nlog-file = -\nlog-level = err\n",
                dir.path().join("sets").display()
            ),
        )?;
        Ok(Site { dir })
    }

    fn target_poolset(&self, name: &str) -> Result<()> {
        let part = self.dir.path().join(format!("{name}.part0"));
        std::fs::write(
            self.dir.path().join("sets").join(name),
            format!("PMEMPOOLSET\n{}M {}\n", PART_MIB + 2, part.display()),
        )?;
        Ok(())
    }

    fn args(&self) -> Vec<String> {
        vec![
            "-c".into(),
            self.dir.path().join("rpmemd.conf").display().to_string(),
        ]
    }
}

fn shm() -> PathBuf {
    let p = Path::new("/dev/shm");
    if p.is_dir() {
        p.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn rpmemd_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("RPMEMD_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let p = exe.with_file_name("rpmemd");
    if !p.exists() {
        bail!(
            "{} not found: run `cargo build --release -p rpmemd` first, or set RPMEMD_BIN",
            p.display()
        );
    }
    Ok(p)
}

/// (TX{alloc 64 B}, TX{snapshot 64 B + write}) per second with `threads` threads.
fn measure(pool: &ObjPool, threads: usize, budget: Duration) -> (f64, f64) {
    let alloc = throughput(
        threads,
        budget,
        || (),
        |_| {
            let mut offs = Vec::with_capacity(BATCH);
            let t = Instant::now();
            for _ in 0..BATCH {
                offs.push(pool.tx(|tx| tx.alloc_raw(64, 1, false)).expect("tx alloc"));
            }
            let d = t.elapsed();
            for o in offs {
                pool.heap().free(o, None).expect("free");
            }
            (BATCH as u64, d)
        },
    );
    let snap = throughput(
        threads,
        budget,
        || pool.heap().zalloc(64, 2, None).expect("object"),
        |&mut obj| {
            let t = Instant::now();
            for i in 0..BATCH {
                pool.tx(|tx| tx.write_raw(obj, 0, &[i as u8; 64]))
                    .expect("tx write");
            }
            (BATCH as u64, t.elapsed())
        },
    );
    (alloc, snap)
}

/// Creates the pool (`replicas` = REPLICA lines) and measures it.
fn row(
    name: &str,
    replicas: &[String],
    opts: &Options,
    budget: Duration,
    out: &mut Vec<(String, usize, f64, f64)>,
) -> Result<()> {
    let dir = tempfile::tempdir_in(shm())?;
    let set_file = dir.path().join("pool.set");
    let mut text = format!(
        "PMEMPOOLSET\n{PART_MIB}M {}\n",
        dir.path().join("primary.part").display()
    );
    for r in replicas {
        text.push_str(&format!("REPLICA {r}\n"));
    }
    std::fs::write(&set_file, text)?;
    let set = poolset::parse_file(&set_file, poolset::Mode::Initiator)?.set;
    let c = Connector::new(opts.clone());
    let f = c.as_fn();
    let o = OpenOptions {
        remote: Some(&f),
        ..OpenOptions::default()
    };
    let p = Pool::create(&set, tx::obj::LAYOUT, o).with_context(|| format!("{name}: create"))?;
    let pool = ObjPool::create_in(Arc::new(p), &TxOptions::default())?;
    for threads in [1, 2] {
        let (a, s) = measure(&pool, threads, budget);
        println!("{name:<34} {threads:>7} {a:>14.0} {s:>18.0}");
        out.push((name.to_string(), threads, a, s));
    }
    Ok(())
}

fn main() -> Result<()> {
    let secs: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().context("SECONDS"))
        .transpose()?
        .unwrap_or(1.0);
    let budget = Duration::from_secs_f64(secs);
    if std::env::var("PMEM_IS_PMEM_FORCE").as_deref() != Ok("1") {
        eprintln!("note: set PMEM_IS_PMEM_FORCE=1 to take the cache-flush path on /dev/shm");
    }
    let rpmemd = rpmemd_path()?;
    let site = Site::new()?;
    for n in ["r1a.set", "r2a.set", "r2b.set", "ns.set"] {
        site.target_poolset(n)?;
    }
    let local = Options {
        transport: Some(Transport::Local {
            program: rpmemd.clone(),
        }),
        rpmemd_args: site.args(),
        ..Options::default()
    };
    println!(
        "{PART_MIB} MiB pool in {}, {secs:.1}s per cell, batches of {BATCH}, {} cores",
        shm().display(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "{:<34} {:>7} {:>14} {:>18}",
        "remote replicas", "threads", "TX{alloc 64 B}/s", "TX{snap 64 B+write}/s"
    );
    let mut out = Vec::new();
    row("0 (local pool only)", &[], &local, budget, &mut out)?;
    row(
        "1 on loopback (local rpmemd)",
        &["localhost:r1a.set".into()],
        &local,
        budget,
        &mut out,
    )?;
    row(
        "2 on loopback (local rpmemd)",
        &["localhost:r2a.set".into(), "localhost:r2b.set".into()],
        &local,
        budget,
        &mut out,
    )?;
    namespace_row(&rpmemd, &site, budget, &mut out)?;
    if let Some((_, _, a, _)) = out
        .iter()
        .find(|(n, t, _, _)| n.starts_with("1 on loopback") && *t == 1)
    {
        println!(
            "target: >= {TARGET_ALLOC_1R:.0} TX{{alloc 64 B}}/s with 1 replica on loopback, 1 \
             thread: {a:.0} ({})",
            if *a >= TARGET_ALLOC_1R {
                "met"
            } else {
                "MISSED"
            }
        );
    }
    Ok(())
}

/// One replica on a second host (network namespace, rpmemd over SSH); skipped unless root.
fn namespace_row(
    rpmemd: &Path,
    site: &Site,
    budget: Duration,
    out: &mut Vec<(String, usize, f64, f64)>,
) -> Result<()> {
    let name = "1 in a netns host (SSH + tcp)";
    let host = match testkit::NetnsHost::create() {
        Ok(h) => h,
        Err(e) => {
            println!("{name:<34} skipped: {e}");
            return Ok(());
        }
    };
    let bin_dir = rpmemd.parent().context("rpmemd directory")?;
    let sshd = host
        .sshd_builder()
        .set_env(
            "PATH",
            format!("{}:/usr/local/bin:/usr/bin:/bin", bin_dir.display()),
        )
        .start()?;
    let opts = Options {
        transport: Some(Transport::Ssh(SshOptions {
            config_file: Some("/dev/null".into()),
            known_hosts: Some(sshd.known_hosts().to_path_buf()),
            accept_unknown_host: false,
            identity_files: vec![sshd.user_key().to_path_buf()],
            use_agent: false,
            remote_program: "rpmemd".into(),
            connect_timeout: Duration::from_secs(10),
        })),
        rpmemd_args: site.args(),
        ..Options::default()
    };
    let line = format!(
        "{}@{}:{}:ns.set",
        sshd.user(),
        host.peer_addr(),
        sshd.port()
    );
    row(name, &[line], &opts, budget, out)
}
