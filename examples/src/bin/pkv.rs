//! pkv: a small persistent key-value map (a fixed hash table of chained entries) in a typed
//! pool. Every put/delete is one transaction; readers and writers serialize on a persistent
//! reader-writer lock stored in the root (which a crash never leaves locked).
//!
//! Usage: `pkv <pool> put <key> <value> | get <key> | del <key> | list | check | run`
//! (`run` performs numbered operations forever — put `key-i`, and every third step delete
//! `key-(i-2)` in the same transaction — so `check` can recompute the exact expected map).

use anyhow::{bail, Context, Result};
use std::path::Path;
use tx::zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};
use tx::{ptype, PPtr, PRwLock, PoolTyped, Tx};

const BUCKETS: usize = 256;
const KEY_MAX: usize = 48;
const VAL_MAX: usize = 112;

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy)]
#[zerocopy(crate = "tx::zerocopy")]
#[repr(C)]
struct Map {
    lock: PRwLock,
    table: PPtr<Table>,
    count: u64,
    /// Steps done by `run`.
    steps: u64,
}
ptype!(Map, "examples::pkv::Map v1");

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy)]
#[zerocopy(crate = "tx::zerocopy")]
#[repr(C)]
struct Table {
    buckets: [PPtr<Entry>; BUCKETS],
}
ptype!(Table, "examples::pkv::Table v1");

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy)]
#[zerocopy(crate = "tx::zerocopy")]
#[repr(C)]
struct Entry {
    next: PPtr<Entry>,
    key_len: u32,
    val_len: u32,
    key: [u8; KEY_MAX],
    val: [u8; VAL_MAX],
}
ptype!(Entry, "examples::pkv::Entry v1");

type Pool = PoolTyped<Map>;
type T<'a> = Tx<'a, tx::Pool>;

fn bucket(key: &[u8]) -> usize {
    (tx::type_num(std::str::from_utf8(key).unwrap_or("")) as usize) % BUCKETS
}

fn key_of(e: &Entry) -> &[u8] {
    &e.key[..e.key_len as usize]
}

fn table(tx: &mut T<'_>, map: &PPtr<Map>) -> Result<PPtr<Table>, tx::Error> {
    let t = tx.read(map)?.table;
    if !t.is_null() {
        return Ok(t);
    }
    let t = tx.alloc::<Table>()?;
    tx.set_field(map, |m| &m.table, t)?;
    Ok(t)
}

fn put(tx: &mut T<'_>, map: &PPtr<Map>, key: &[u8], val: &[u8]) -> Result<(), tx::Error> {
    let t = table(tx, map)?;
    let b = bucket(key);
    let head = tx.read(&t)?.buckets[b];
    let mut cur = head;
    while !cur.is_null() {
        let e = tx.read(&cur)?;
        if key_of(&e) == key {
            return tx.update(&cur, |e| {
                e.val = [0; VAL_MAX];
                e.val[..val.len()].copy_from_slice(val);
                e.val_len = val.len() as u32;
            });
        }
        cur = e.next;
    }
    let mut e = Entry {
        next: head,
        key_len: key.len() as u32,
        val_len: val.len() as u32,
        key: [0; KEY_MAX],
        val: [0; VAL_MAX],
    };
    e.key[..key.len()].copy_from_slice(key);
    e.val[..val.len()].copy_from_slice(val);
    let n = tx.alloc_value(e)?;
    tx.set_field(&t, |t| &t.buckets[b], n)?;
    tx.update(map, |m| m.count += 1)
}

fn del(tx: &mut T<'_>, map: &PPtr<Map>, key: &[u8]) -> Result<bool, tx::Error> {
    let t = tx.read(map)?.table;
    if t.is_null() {
        return Ok(false);
    }
    let b = bucket(key);
    let mut prev: Option<PPtr<Entry>> = None;
    let mut cur = tx.read(&t)?.buckets[b];
    while !cur.is_null() {
        let e = tx.read(&cur)?;
        if key_of(&e) == key {
            match prev {
                None => tx.set_field(&t, |t| &t.buckets[b], e.next)?,
                Some(p) => tx.set_field(&p, |p| &p.next, e.next)?,
            }
            tx.free(cur)?;
            tx.update(map, |m| m.count -= 1)?;
            return Ok(true);
        }
        prev = Some(cur);
        cur = e.next;
    }
    Ok(false)
}

/// Every (key, value) in the map, checking the chains and the count.
fn entries(pool: &Pool) -> Result<Vec<(String, String)>> {
    let m = pool.read(&pool.root())?;
    let mut out = Vec::new();
    if !m.table.is_null() {
        let t = pool.read(&m.table)?;
        for (b, head) in t.buckets.iter().enumerate() {
            let mut cur = *head;
            while !cur.is_null() {
                let e = pool.read(&cur)?;
                if e.key_len as usize > KEY_MAX || e.val_len as usize > VAL_MAX {
                    bail!("entry {cur:?} has bad lengths");
                }
                if bucket(key_of(&e)) != b {
                    bail!("entry {cur:?} in bucket {b}, its key hashes elsewhere");
                }
                out.push((
                    String::from_utf8_lossy(key_of(&e)).into_owned(),
                    String::from_utf8_lossy(&e.val[..e.val_len as usize]).into_owned(),
                ));
                cur = e.next;
            }
        }
    }
    if out.len() as u64 != m.count {
        bail!("count says {}, chains hold {}", m.count, out.len());
    }
    let live = pool
        .heap()
        .objects_of_type(<Entry as tx::PType>::TYPE_NUM)
        .count();
    if live != out.len() {
        bail!("{live} entry objects live, {} reachable (leak)", out.len());
    }
    out.sort();
    Ok(out)
}

fn run_value(i: u64) -> String {
    format!("value-{i}-{}", i.wrapping_mul(7919))
}

/// The map `run` must have produced after `steps` steps.
fn run_expected(steps: u64) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = (0..steps)
        .filter(|&i| !(i % 3 == 0 && i + 2 < steps))
        .map(|i| (format!("key-{i}"), run_value(i)))
        .collect();
    v.sort();
    v
}

fn check_len(what: &str, b: &[u8], max: usize) -> Result<()> {
    if b.len() > max {
        bail!("{what} of {} bytes, at most {max}", b.len());
    }
    Ok(())
}

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
    let pool: Pool = PoolTyped::open_or_create(Path::new(path), 64 << 20)
        .with_context(|| format!("opening {path}"))?;
    let map = pool.root();
    match cmd.as_str() {
        "put" => {
            let (k, v) = (arg(2)?, arg(3)?);
            check_len("key", k, KEY_MAX)?;
            check_len("value", v, VAL_MAX)?;
            let _w = pool.write_lock(&map, |m| &m.lock)?;
            pool.tx(|tx| put(tx, &map, k, v))?;
        }
        "get" => {
            let k = arg(2)?;
            let _r = pool.read_lock(&map, |m| &m.lock)?;
            let key = String::from_utf8_lossy(k);
            match entries(&pool)?.into_iter().find(|(ek, _)| *ek == key) {
                Some((_, v)) => println!("{v}"),
                None => bail!("no key {key:?}"),
            }
        }
        "del" => {
            let k = arg(2)?;
            let _w = pool.write_lock(&map, |m| &m.lock)?;
            if !pool.tx(|tx| del(tx, &map, k))? {
                bail!("no key {:?}", String::from_utf8_lossy(k));
            }
        }
        "list" => {
            for (k, v) in entries(&pool)? {
                println!("{k} = {v}");
            }
        }
        "check" => {
            let got = entries(&pool)?;
            let steps = pool.read(&map)?.steps;
            if steps > 0 && got != run_expected(steps) {
                bail!("after {steps} run steps the map differs from the expected one");
            }
            let rolled = pool
                .recovered()
                .iter()
                .filter(|r| matches!(r, tx::UndoRecovered::RolledBack { .. }))
                .count();
            println!(
                "ok: {} entries, {steps} run steps, {rolled} transaction(s) rolled back at open",
                got.len()
            );
        }
        "run" => loop {
            let _w = pool.write_lock(&map, |m| &m.lock)?;
            let i = pool.read(&map)?.steps;
            pool.tx(|tx| {
                put(
                    tx,
                    &map,
                    format!("key-{i}").as_bytes(),
                    run_value(i).as_bytes(),
                )?;
                if i % 3 == 2 {
                    tx.nested(|tx| del(tx, &map, format!("key-{}", i - 2).as_bytes()))?;
                }
                tx.set_field(&map, |m| &m.steps, i + 1)
            })?;
            if (i + 1) % 200 == 0 {
                println!("progress {}", i + 1);
            }
        },
        other => bail!("unknown command {other:?}"),
    }
    Ok(())
}
