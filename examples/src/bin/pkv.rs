//! pkv: a small persistent key-value map (a fixed hash table of chained entries) in a typed
//! pool. Every put/delete is one transaction; readers and writers serialize on a persistent
//! reader-writer lock stored in the root (which a crash never leaves locked).
//!
//! Usage: `pkv <pool> put <key> <value> | get <key> | del <key> | list | check | run`
//! (`run` performs numbered operations forever — put `key-i`, and every third step delete
//! `key-(i-2)` in the same transaction — so `check` can recompute the exact expected map).

use anyhow::{bail, Context, Result};
use examples::kv::{self, KvPool};
use std::path::Path;
use tx::PoolTyped;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(path), Some(cmd)) = (args.first(), args.get(1)) else {
        bail!("usage: pkv <pool> put <key> <value> | get <key> | del <key> | list | check | run");
    };
    let pool: KvPool = PoolTyped::open_or_create(Path::new(path), 64 << 20)
        .with_context(|| format!("opening {path}"))?;
    if kv::run_command(&pool, cmd, &args[2..])? {
        return Ok(());
    }
    let map = pool.root();
    match cmd.as_str() {
        "run" => loop {
            let _w = pool.write_lock(&map, |m| &m.lock)?;
            let i = kv::run_step(&pool)?;
            if (i + 1) % 200 == 0 {
                println!("progress {}", i + 1);
            }
        },
        other => bail!("unknown command {other:?}"),
    }
}
