//! pkv: a small persistent key-value map (a fixed hash table of chained entries) in a typed
//! pool. Every put/delete is one transaction; readers and writers serialize on a persistent
//! reader-writer lock stored in the root (which a crash never leaves locked).
//!
//! Usage: `pkv <pool> put <key> <value> | get <key> | del <key> | list | check | run`
//! (`run` performs numbered operations forever — put `key-i`, and every third step delete
//! `key-(i-2)` in the same transaction — so `check` can recompute the exact expected map).

use anyhow::{bail, Context, Result};
use examples::kv::{self, check_len, KvPool, KEY_MAX, VAL_MAX};
use std::path::Path;
use tx::PoolTyped;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(path), Some(cmd)) = (args.first(), args.get(1)) else {
        bail!("usage: pkv <pool> put <key> <value> | get <key> | del <key> | list | check | run");
    };
    let arg = |i: usize| -> Result<&[u8]> {
        args.get(i)
            .map(|s| s.as_bytes())
            .with_context(|| format!("{cmd}: missing argument {}", i - 1))
    };
    let pool: KvPool = PoolTyped::open_or_create(Path::new(path), 64 << 20)
        .with_context(|| format!("opening {path}"))?;
    let map = pool.root();
    match cmd.as_str() {
        "put" => {
            let (k, v) = (arg(2)?, arg(3)?);
            check_len("key", k, KEY_MAX)?;
            check_len("value", v, VAL_MAX)?;
            let _w = pool.write_lock(&map, |m| &m.lock)?;
            pool.tx(|tx| kv::put(tx, &map, k, v))?;
        }
        "get" => {
            let k = arg(2)?;
            let _r = pool.read_lock(&map, |m| &m.lock)?;
            let key = String::from_utf8_lossy(k);
            match kv::entries(&pool)?.into_iter().find(|(ek, _)| *ek == key) {
                Some((_, v)) => println!("{v}"),
                None => bail!("no key {key:?}"),
            }
        }
        "del" => {
            let k = arg(2)?;
            let _w = pool.write_lock(&map, |m| &m.lock)?;
            if !pool.tx(|tx| kv::del(tx, &map, k))? {
                bail!("no key {:?}", String::from_utf8_lossy(k));
            }
        }
        "list" => {
            for (k, v) in kv::entries(&pool)? {
                println!("{k} = {v}");
            }
        }
        "check" => {
            let (n, steps) = kv::check(&pool)?;
            let rolled = pool
                .recovered()
                .iter()
                .filter(|r| matches!(r, tx::UndoRecovered::RolledBack { .. }))
                .count();
            println!(
                "ok: {n} entries, {steps} run steps, {rolled} transaction(s) rolled back at open"
            );
        }
        "run" => loop {
            let _w = pool.write_lock(&map, |m| &m.lock)?;
            let i = kv::run_step(&pool)?;
            if (i + 1) % 200 == 0 {
                println!("progress {}", i + 1);
            }
        },
        other => bail!("unknown command {other:?}"),
    }
    Ok(())
}
