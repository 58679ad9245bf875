//! replicated-kv: the key-value map of `pkv` in a pool whose poolset has replicas — local ones
//! and remote ones served by rpmemd — so that every transaction reaches every replica before it
//! returns. The demo of the README's main job: `run` is killed with SIGKILL, then `verify`
//! reads the remote replica back over the fabric and shows that it holds every committed step.
//!
//! ```text
//! replicated-kv [--local-rpmemd PATH] [--rpmemd-arg ARG]... [--degraded] POOLSET COMMAND
//! ```
//!
//! Commands: `put K V`, `get K`, `del K`, `list`; `run [N]` (numbered steps as in pkv, forever
//! or N of them, printing `committed N steps` every 100); `check` (opens the pool: replicas are
//! brought in line with the primary, the transaction in flight is rolled back, the map is
//! checked); `verify [--committed N]` (does **not** open the pool: compares each replica's data
//! with the primary's — a remote one read through rpmem — and recovers each copy on its own, in
//! memory, to check the map); `health`; `resync` (brings stale or missing replicas back).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use examples::kv::{self, KvPool};
use pool::image::MemImage;
use pool::{FailurePolicy, OpenOptions, Persister, Pool, ResyncMode};
use poolset::{PoolSet, Replica};
use rpmem::replica::Connector;
use rpmem::{Options, PoolMemory, RpmemPool, Transport};
use tx::obj::LAYOUT;
use tx::PoolTyped;

const USAGE: &str = "usage: replicated-kv [--local-rpmemd PATH] [--rpmemd-arg ARG]... [--degraded]
                     POOLSET COMMAND

Commands:
  put KEY VALUE | get KEY | del KEY | list
  run [N]                 numbered steps (put key-i, every third step delete key-(i-2)),
                          forever or N of them; prints `committed N steps` every 100
  check                   open the pool (replicas repaired from the primary, the transaction
                          in flight rolled back) and check the map against the steps
  verify [--committed N]  without opening the pool: compare every replica's data with the
                          primary's (remote replicas read through rpmem) and recover each copy
                          in memory to check its map; --committed N: each must hold >= N steps
  health                  open the pool degraded and show every replica's health
  resync                  bring stale or missing replicas back from the primary

The pool is created from POOLSET (its part sizes) when the primary's first part does not exist.
  --local-rpmemd PATH   start rpmemd as a local child process (no SSH) for REPLICA lines,
                        whose host must then be a loopback address such as localhost
  --rpmemd-arg ARG      pass ARG to rpmemd (repeatable), e.g. --rpmemd-arg --poolset-dir ...
  --degraded            failure policy degraded (a failing replica is marked stale and work
                        continues) instead of fail-stop (the operation fails)
Without --local-rpmemd, rpmemd is started over SSH (RPMEM_TRANSPORT etc. as rpmem101).";

/// How long a busy pool (the killed app's rpmemd still closing it) is retried.
const BUSY_RETRY: Duration = Duration::from_secs(10);

struct Cli {
    opts: Options,
    policy: FailurePolicy,
    set_file: PathBuf,
    cmd: String,
    args: Vec<String>,
}

fn parse_cli() -> Result<Option<Cli>> {
    let mut opts = Options::from_env();
    let mut policy = FailurePolicy::FailStop;
    let mut positional = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if !positional.is_empty() {
            // Everything after the pool set belongs to the command.
            positional.push(a);
            continue;
        }
        match a.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            "--local-rpmemd" => {
                let p = args.next().context("--local-rpmemd needs a PATH")?;
                opts.transport = Some(Transport::Local {
                    program: PathBuf::from(p),
                });
            }
            "--rpmemd-arg" => opts
                .rpmemd_args
                .push(args.next().context("--rpmemd-arg needs a value")?),
            "--degraded" => policy = FailurePolicy::Degraded,
            s if s.starts_with('-') && s.len() > 1 => bail!("unknown option {s}\n\n{USAGE}"),
            _ => positional.push(a),
        }
    }
    let mut it = positional.into_iter();
    let (Some(set_file), Some(cmd)) = (it.next(), it.next()) else {
        bail!("expected POOLSET and COMMAND\n\n{USAGE}");
    };
    Ok(Some(Cli {
        opts,
        policy,
        set_file: PathBuf::from(set_file),
        cmd,
        args: it.collect(),
    }))
}

fn parse_set(file: &Path) -> Result<PoolSet> {
    Ok(poolset::parse_file(file, poolset::Mode::Initiator)
        .with_context(|| format!("reading the pool set {}", file.display()))?
        .set)
}

/// The primary's first part file.
fn primary_part0(set: &PoolSet) -> Result<&Path> {
    match set.replicas.first() {
        Some(Replica::Local(l)) if !l.parts.is_empty() => Ok(&l.parts[0].path),
        _ => bail!("the pool set has no local primary replica"),
    }
}

/// Retry `f` while what it reports says the pool is busy: after a SIGKILL the app's rpmemd
/// child notices the end of its session and releases the remote pool a moment later.
fn retry_busy<T, E: std::fmt::Display>(mut f: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let started = Instant::now();
    loop {
        match f() {
            Err(e)
                if started.elapsed() < BUSY_RETRY && {
                    let t = e.to_string();
                    t.contains("in use by another") || t.contains("file lock held")
                } =>
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            r => return r,
        }
    }
}

fn open_pool(cli: &Cli, set: &PoolSet, policy: FailurePolicy) -> Result<KvPool> {
    let c = Connector::new(cli.opts.clone());
    let f = c.as_fn();
    let o = OpenOptions {
        remote: Some(&f),
        failure_policy: policy,
        ..OpenOptions::default()
    };
    let part0 = primary_part0(set)?;
    if !part0.exists() {
        let p = Pool::create(set, LAYOUT, o)
            .with_context(|| format!("creating the pool {}", cli.set_file.display()))?;
        println!(
            "created {} ({} bytes, {} replicas)",
            cli.set_file.display(),
            p.len(),
            p.replica_count()
        );
        return Ok(PoolTyped::create_in(Arc::new(p), &Default::default())?);
    }
    let p = retry_busy(|| Pool::open(set, Some(LAYOUT), o))
        .with_context(|| format!("opening the pool {}", cli.set_file.display()))?;
    for r in p.repaired() {
        println!("repaired at open: {r}");
    }
    Ok(PoolTyped::open_in(Arc::new(p), Default::default())?)
}

fn print_health(pool: &KvPool) {
    for h in pool.persister().replica_health() {
        match &h.stale {
            None => println!("replica {} ({}): healthy", h.replica, h.description),
            Some(why) => println!("replica {} ({}): STALE: {why}", h.replica, h.description),
        }
    }
}

fn main() -> Result<()> {
    let Some(cli) = parse_cli()? else {
        return Ok(());
    };
    let set = parse_set(&cli.set_file)?;
    match cli.cmd.as_str() {
        "verify" => return verify(&cli, &set),
        "resync" => return resync(&cli, &set),
        _ => {}
    }
    let policy = if cli.cmd == "health" {
        FailurePolicy::Degraded
    } else {
        cli.policy
    };
    let pool = open_pool(&cli, &set, policy)?;
    if kv::run_command(&pool, &cli.cmd, &cli.args)? {
        if cli.cmd == "check" {
            print_health(&pool);
        }
        return Ok(());
    }
    let map = pool.root();
    match cli.cmd.as_str() {
        "health" => print_health(&pool),
        "run" => {
            let limit: Option<u64> = match cli.args.first() {
                Some(n) => Some(n.parse().with_context(|| format!("run: bad count {n:?}"))?),
                None => None,
            };
            let mut healthy = pool
                .persister()
                .replica_health()
                .iter()
                .filter(|h| h.is_healthy())
                .count();
            let mut done = 0u64;
            while limit != Some(done) {
                let _w = pool.write_lock(&map, |m| &m.lock)?;
                let i = kv::run_step(&pool).with_context(|| format!("run step {}", done + 1))?;
                done += 1;
                if (i + 1) % 100 == 0 {
                    println!("committed {} steps", i + 1);
                }
                let now = pool
                    .persister()
                    .replica_health()
                    .iter()
                    .filter(|h| h.is_healthy())
                    .count();
                if now != healthy {
                    println!("replica health changed at step {}:", i + 1);
                    print_health(&pool);
                    healthy = now;
                }
            }
            println!("committed {} steps", pool.read(&map)?.steps);
        }
        other => bail!("unknown command {other:?}\n\n{USAGE}"),
    }
    Ok(())
}

fn resync(cli: &Cli, set: &PoolSet) -> Result<()> {
    let c = Connector::new(cli.opts.clone());
    let f = c.as_fn();
    let o = OpenOptions {
        remote: Some(&f),
        ..OpenOptions::default()
    };
    let report = retry_busy(|| {
        pool::resync(set, Some(LAYOUT), o, ResyncMode::Compare, &mut |p| {
            if p.done_bytes == p.total_bytes {
                println!("replica {}: {} bytes compared", p.replica, p.total_bytes);
            }
        })
    })
    .context("resync")?;
    if report.replicas.is_empty() {
        println!("every replica is healthy: nothing to resync");
    }
    for r in &report.replicas {
        println!(
            "replica {} ({}): was {}; {} bytes copied",
            r.replica, r.description, r.was, r.copied_bytes
        );
    }
    Ok(())
}

/// An exclusive `flock` on the primary's first part, held (the file kept open) while `verify`
/// reads, so that no process has the pool open meanwhile (the pool takes the same lock).
fn lock_part(path: &Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    retry_busy(|| {
        // SAFETY: flock on a descriptor owned by `f`, which outlives the call.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            Ok(())
        } else {
            Err(format!(
                "{}: pool is in use by another process (file lock held)",
                path.display()
            ))
        }
    })
    .map_err(anyhow::Error::msg)?;
    Ok(f)
}

/// Ranges `[start, end)` where `a` and `b` differ; ranges closer than 64 bytes are merged.
fn diff_ranges(a: &[u8], b: &[u8]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if x != y {
            match out.last_mut() {
                Some((_, end)) if i < *end + 64 => *end = i + 1,
                _ => out.push((i, i + 1)),
            }
        }
    }
    out
}

/// The data area of a local replica made of one part with a header.
fn local_data(path: &Path, len: usize) -> Result<Vec<u8>> {
    let b = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let hdr = pool::header::HEADER_REGION_BYTES;
    if b.len() < hdr + len {
        bail!(
            "{}: {} bytes, the pool needs {} (header + data)",
            path.display(),
            b.len(),
            hdr + len
        );
    }
    Ok(b[hdr..hdr + len].to_vec())
}

/// The data of remote replica `rr`, read by RMA over a session of its own.
fn remote_data(
    opts: &Options,
    rr: &poolset::RemoteReplica,
    len: usize,
    poolset_uuid: [u8; 16],
) -> Result<Vec<u8>> {
    let target = rpmem::Target {
        user: rr.user.clone(),
        host: rr.host.clone(),
        port: rr.port,
    }
    .to_string();
    let desc = rr
        .descriptor
        .to_str()
        .context("the descriptor is not UTF-8")?;
    let mut nlanes = 1;
    let (rp, attr) =
        retry_busy(|| RpmemPool::open(&target, desc, PoolMemory::new(len)?, &mut nlanes, opts))
            .with_context(|| format!("opening {target}:{desc} through rpmem"))?;
    let mut out = vec![0u8; len];
    let read = (|| -> Result<()> {
        if attr.poolset_uuid != poolset_uuid {
            bail!(
                "its attributes name pool set {}, the primary is {}",
                pool::header::Uuid(attr.poolset_uuid),
                pool::header::Uuid(poolset_uuid)
            );
        }
        if rp.size() < len as u64 {
            bail!("it has {} bytes, the pool {len}", rp.size());
        }
        for (i, chunk) in out.chunks_mut(1 << 20).enumerate() {
            rp.read(chunk, (i << 20) as u64, 0)
                .with_context(|| format!("reading at offset {}", i << 20))?;
        }
        Ok(())
    })();
    let closed = rp.close(false);
    read?;
    closed.context("closing the rpmem session")?;
    Ok(out)
}

/// Recover a copy of a pool's data in memory and check its map: (entries, steps).
fn recover_copy(data: Vec<u8>) -> Result<(usize, u64)> {
    let p: KvPool<MemImage> = PoolTyped::open_in(Arc::new(MemImage::new(data)), Default::default())
        .context("recovering the copy (heap + transactions)")?;
    kv::check(&p)
}

fn verify(cli: &Cli, set: &PoolSet) -> Result<()> {
    let committed: Option<u64> = match cli.args.as_slice() {
        [] => None,
        [flag, n] if flag == "--committed" => Some(
            n.parse()
                .with_context(|| format!("bad --committed {n:?}"))?,
        ),
        _ => bail!("verify takes only --committed N"),
    };
    let Some(Replica::Local(primary)) = set.replicas.first() else {
        bail!("the pool set has no local primary replica");
    };
    if primary.parts.len() != 1 || set.options.no_hdrs || set.options.single_hdr {
        bail!("verify reads primaries of one part with a header only");
    }
    let part0 = &primary.parts[0].path;
    let _lock = lock_part(part0)?;
    let head = std::fs::read(part0).with_context(|| format!("reading {}", part0.display()))?;
    let hdr = pool::header::decode_region(&head[..head.len().min(4096)])
        .with_context(|| format!("{}: pool header", part0.display()))?
        .header;
    let len = usize::try_from(hdr.pool_size.get()).context("pool size")?;
    let pdata = local_data(part0, len)?;
    drop(head);
    let stale = hdr.stale_replicas();
    println!(
        "primary {}: pool set {}, {len} bytes of data, replicas marked stale: {stale:?}",
        part0.display(),
        pool::header::Uuid(hdr.poolset_uuid)
    );
    let (n, psteps) = recover_copy(pdata.clone()).context("the primary's copy")?;
    println!("  recovered in memory on its own: {n} entries, {psteps} run steps, map consistent");
    let mut failed = 0;
    if committed.is_some_and(|c| psteps < c) {
        println!(
            "  FAIL: the app reported {} committed steps",
            committed.unwrap_or(0)
        );
        failed += 1;
    }
    for (r, rep) in set.replicas.iter().enumerate().skip(1) {
        let (what, data) = match rep {
            Replica::Local(l) if l.parts.len() == 1 => (
                format!("local {}", l.parts[0].path.display()),
                local_data(&l.parts[0].path, len),
            ),
            Replica::Local(_) => {
                println!("replica {r}: local, several parts: not compared by verify");
                continue;
            }
            Replica::Remote(rr) => (
                format!(
                    "remote {}:{} (read through rpmem)",
                    rr.host,
                    rr.descriptor.display()
                ),
                remote_data(&cli.opts, rr, len, hdr.poolset_uuid),
            ),
        };
        println!("replica {r} ({what}):");
        if stale.contains(&r) {
            println!("  marked stale in the primary: not expected to match (run resync)");
        }
        let data = match data {
            Ok(d) => d,
            Err(e) => {
                println!("  FAIL: {e:#}");
                failed += 1;
                continue;
            }
        };
        let diffs = diff_ranges(&pdata, &data);
        if diffs.is_empty() {
            println!("  {len} bytes, identical to the primary's");
        } else {
            let bytes: usize = diffs.iter().map(|(a, b)| b - a).sum();
            println!(
                "  {len} bytes; {} range(s) ({bytes} bytes) differ from the primary: stores the \
                 app made but had not flushed when it died (lock words, the transaction in \
                 flight); the next open copies them from the primary",
                diffs.len()
            );
            for (a, b) in diffs.iter().take(8) {
                println!("    [{a:#x}, {b:#x})");
            }
        }
        match recover_copy(data) {
            Ok((n, steps)) => {
                println!(
                    "  recovered in memory on its own: {n} entries, {steps} run steps, map \
                     consistent"
                );
                if let Some(c) = committed.filter(|_| !stale.contains(&r)) {
                    if steps < c {
                        println!("  FAIL: the app reported {c} committed steps");
                        failed += 1;
                    } else {
                        println!("  holds every step the app reported committed ({c})");
                    }
                }
                if stale.contains(&r) {
                    // Left behind on purpose; resync brings it back.
                } else if steps > psteps || (steps < psteps && steps + 1 != psteps) {
                    println!("  FAIL: the primary has {psteps} steps");
                    failed += 1;
                } else if steps + 1 == psteps {
                    println!(
                        "  one step fewer than the primary: its commit reached the primary's \
                         memory, not yet the replica, when the app died (it never returned)"
                    );
                }
            }
            Err(e) => {
                println!("  FAIL: {e:#}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("verify: {failed} check(s) failed");
    }
    println!("verify: ok");
    Ok(())
}
