//! rpmemd: the target daemon of remote replication.
//!
//! Started by the initiator (over SSH, or as a local child process) with its stdin/stdout as the
//! control channel (docs/PROTOCOL.md). It serves one session: HELLO, then CREATE/OPEN of a pool
//! described by a poolset inside `poolset-dir` (or REMOVE), the data lanes over libfabric, and
//! exits after CLOSE or when stdin ends. `rpmemd --remove POOLSET [--force] [--pool-set]`
//! removes a pool and exits instead.
//!
//! The data listener binds to the address the initiator reached this host on: the server
//! address of `SSH_CONNECTION` when started by sshd, `127.0.0.1` otherwise (local transport).
//! `RPMEMD_LISTEN_ADDR` overrides both (for set-ups where neither is right).
//!
//! Modules: [`log`] (never stdout), [`store`] (pool, attributes, durability), [`lanes`] (data
//! plane), [`session`] (the control state machine).

mod lanes;
mod log;
mod session;
mod store;

use std::io::{self, Read};
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use rpmemd::config::Config;

use crate::log::{err, info};

/// How long rpmemd waits for the whole HELLO after starting (docs/PROTOCOL.md §10);
/// `RPMEMD_HELLO_DEADLINE_MS` overrides it.
const HELLO_DEADLINE: Duration = Duration::from_secs(10);

fn main() {
    let started = Instant::now();
    let cfg = match Config::from_args_and_files(std::env::args_os()) {
        Ok(c) => c,
        Err(rpmemd::config::ConfigError::Cli(e)) => e.exit(),
        Err(e) => {
            eprintln!("rpmemd: {e}");
            std::process::exit(2);
        }
    };
    log::init(&cfg);
    if let Some(r) = &cfg.remove {
        match store::remove(&cfg.poolset_dir, &r.poolset, r.force, r.pool_set) {
            Ok(()) => {
                info!("removed pool {:?}", r.poolset);
                std::process::exit(0)
            }
            Err(f) => {
                err!(
                    "cannot remove {:?}: {}: {}",
                    r.poolset,
                    f.status,
                    f.log_text()
                );
                std::process::exit(1)
            }
        }
    }
    let listen_ip = match listen_ip() {
        Ok(ip) => ip,
        Err(e) => {
            err!("{e}");
            std::process::exit(2);
        }
    };
    info!(
        "serving poolset-dir {} with the data listener on {listen_ip}",
        cfg.poolset_dir.display()
    );
    let hello_deadline = match hello_deadline() {
        Ok(d) => d,
        Err(e) => {
            err!("{e}");
            std::process::exit(2);
        }
    };
    let settings = session::Settings {
        poolset_dir: cfg.poolset_dir.clone(),
        persist_apm: cfg.persist_apm,
        persist_general: cfg.persist_general,
        listen_ip,
        started,
        hello_deadline,
    };
    let stdin = io::stdin();
    // Unbuffered: the session polls the descriptor between reads, which must not miss bytes
    // sitting in a user-space buffer (Stdin's is one).
    let stdin_file = match stdin.as_fd().try_clone_to_owned() {
        Ok(fd) => std::fs::File::from(fd),
        Err(e) => {
            err!("cannot duplicate stdin: {e}");
            std::process::exit(2);
        }
    };
    let session = session::Session::new(settings);
    let mut input = session.input(stdin_file);
    let mut output = io::stdout().lock();
    let code = session.run(&mut input as &mut dyn Read, &mut output);
    std::process::exit(code);
}

/// The address the data listener binds to (see the module note).
fn listen_ip() -> Result<IpAddr, String> {
    if let Ok(v) = std::env::var("RPMEMD_LISTEN_ADDR") {
        return v
            .parse()
            .map_err(|e| format!("RPMEMD_LISTEN_ADDR={v:?} is not an IP address: {e}"));
    }
    if let Ok(v) = std::env::var("SSH_CONNECTION") {
        // "client_ip client_port server_ip server_port"
        if let Some(ip) = v.split_whitespace().nth(2) {
            // sshd may write IPv6 with a zone (%eth0); libfabric takes the plain address.
            let ip = ip.split('%').next().unwrap_or(ip);
            return ip
                .parse()
                .map_err(|e| format!("SSH_CONNECTION={v:?}: bad server address: {e}"));
        }
        return Err(format!("SSH_CONNECTION={v:?} has no server address"));
    }
    Ok(IpAddr::from([127, 0, 0, 1]))
}

/// The HELLO deadline: `RPMEMD_HELLO_DEADLINE_MS` (milliseconds, 1 or more) if set, else
/// [`HELLO_DEADLINE`].
fn hello_deadline() -> Result<Duration, String> {
    match std::env::var("RPMEMD_HELLO_DEADLINE_MS") {
        Err(_) => Ok(HELLO_DEADLINE),
        Ok(v) => match v.parse::<u64>() {
            Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
            _ => Err(format!(
                "RPMEMD_HELLO_DEADLINE_MS={v:?} is not a number of milliseconds (1 or more)"
            )),
        },
    }
}
