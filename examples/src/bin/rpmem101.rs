//! rpmem101: the seed program of remote replication. Creates the remote replica described by a
//! poolset on the target, fills local memory with text, persists it, and closes.
//!
//! ```text
//! rpmem101 [--local-rpmemd PATH | --ssh-known-hosts FILE --ssh-identity FILE --ssh-config FILE]
//!          [--rpmemd-arg ARG]... TARGET POOLSET_DESCRIPTOR
//! ```
//!
//! Transport: `--local-rpmemd PATH` runs that rpmemd as a child process (no SSH; the target
//! must then be a loopback address such as `localhost`). Otherwise rpmemd is started over SSH
//! with the built-in client (known_hosts checked, `--ssh-*` choose its files;
//! `RPMEM_TRANSPORT=external` with `RPMEM_SSH`
//! runs an external ssh instead; `RPMEM_ENABLE_SOCKETS=1` selects the `sockets` provider).
//! There is deliberately no implicit local default for `localhost`: `ssh localhost` is a real,
//! different thing, and which one runs should be visible on the command line.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use rpmem::{Options, PersistFlags, PoolAttr, PoolMemory, RpmemPool, SshOptions, Transport};

const USAGE: &str =
    "usage: rpmem101 [--local-rpmemd PATH] [--ssh-known-hosts FILE] [--ssh-identity FILE]...
                [--ssh-config FILE] [--rpmemd-arg ARG]... TARGET POOLSET_DESCRIPTOR

Creates the remote pool POOLSET_DESCRIPTOR (a poolset file relative to rpmemd's poolset-dir)
on TARGET ([user@]host[:port]), writes a greeting into the first bytes of a 1 MiB local pool,
persists it on the remote replica and closes the pool.

  --local-rpmemd PATH   start rpmemd as a local child process (no SSH); TARGET must be a
                        loopback address such as localhost or 127.0.0.1
  --ssh-known-hosts FILE  check the target's host key against FILE only (built-in SSH)
  --ssh-identity FILE   try this private key first (repeatable; built-in SSH)
  --ssh-config FILE     read this OpenSSH client configuration instead of ~/.ssh/config
  --rpmemd-arg ARG      pass ARG to rpmemd (repeatable), e.g. --rpmemd-arg -c --rpmemd-arg FILE
  -h, --help            this text

Without --local-rpmemd, rpmemd is started over SSH (built-in client; RPMEM_TRANSPORT=external
and RPMEM_SSH select an external ssh command). RPMEM_ENABLE_SOCKETS=1 uses the sockets provider.

Check the result on the target with, for a single-part pool:
  hexdump -C -s 8192 -n 64 PART_FILE
(4096 bytes of pool header + 4096 bytes of rpmemd's attribute area precede remote offset 0.)";

const POOL_SIZE: usize = 1 << 20;
const GREETING: &[u8] = b"Hello world from rpmem101! (persisted over the fabric)\n";

fn main() -> Result<()> {
    let mut opts = Options::from_env();
    let mut positional = Vec::new();
    let mut ssh: Option<SshOptions> = None;
    let mut local = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            "--local-rpmemd" => {
                let p = args.next().context("--local-rpmemd needs a PATH")?;
                opts.transport = Some(Transport::Local {
                    program: PathBuf::from(p),
                });
                local = true;
            }
            flag @ ("--ssh-known-hosts" | "--ssh-identity" | "--ssh-config") => {
                let file = args
                    .next()
                    .with_context(|| format!("{flag} needs a FILE"))?;
                let file = PathBuf::from(file);
                let o = ssh.get_or_insert_with(|| SshOptions {
                    remote_program: opts.remote_program.clone(),
                    ..SshOptions::default()
                });
                match flag {
                    "--ssh-known-hosts" => o.known_hosts = Some(file),
                    "--ssh-identity" => o.identity_files.push(file),
                    _ => o.config_file = Some(file),
                }
            }
            "--rpmemd-arg" => opts
                .rpmemd_args
                .push(args.next().context("--rpmemd-arg needs a value")?),
            s if s.starts_with('-') && s.len() > 1 => bail!("unknown option {s}\n\n{USAGE}"),
            _ => positional.push(a),
        }
    }
    let [target, descriptor] = positional.as_slice() else {
        bail!("expected TARGET and POOLSET_DESCRIPTOR\n\n{USAGE}");
    };
    if let Some(ssh) = ssh {
        if local {
            bail!("--local-rpmemd runs rpmemd without SSH: it cannot be combined with --ssh-*");
        }
        if opts.transport.is_some() {
            bail!("--ssh-* configure the built-in SSH client, but RPMEM_TRANSPORT chose another");
        }
        opts.transport = Some(Transport::Ssh(ssh));
    }

    let memory = PoolMemory::new(POOL_SIZE)?;
    memory.write(0, GREETING)?;
    let attr = PoolAttr {
        signature: *b"RPMEM101",
        major: 1,
        ..PoolAttr::default()
    };
    let mut nlanes = 4;
    let pool = RpmemPool::create(target, descriptor, memory, &mut nlanes, &attr, &opts)
        .with_context(|| format!("creating {descriptor} on {target}"))?;
    println!(
        "created {descriptor} on {target}: {} bytes remote, {nlanes} lanes, provider {:?}",
        pool.remote_size(),
        pool.provider()
    );
    pool.persist(0, GREETING.len() as u64, 0, PersistFlags::NONE)
        .context("persisting the greeting")?;
    println!("persisted {} bytes at offset 0", GREETING.len());
    pool.close(false).context("closing the pool")?;
    println!("closed");
    Ok(())
}
