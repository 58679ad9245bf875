//! The key-value map of `pkv` and `replicated-kv`: a fixed hash table of chained entries in a
//! typed pool, generic over the persister the pool lives in (a pool with replicas, or an
//! in-memory copy of a replica that `replicated-kv verify` recovers on its own).
//!
//! Every put/delete runs inside the caller's transaction. `run` steps are numbered: step `i`
//! puts `key-i` and, when `i % 3 == 2`, deletes `key-(i-2)` in the same transaction, so
//! [`run_expected`] recomputes the exact map from the step count stored in the root.
//!
//! The type names given to `ptype!` are part of the on-media format (type numbers are derived
//! from them): they keep their `examples::pkv::` prefix so existing pools keep opening.

use anyhow::{bail, Context, Result};
use pool::Persister;
use tx::zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};
use tx::{ptype, PPtr, PRwLock, PoolTyped, Tx};

/// Buckets of the hash table.
pub const BUCKETS: usize = 256;
/// Longest key in bytes.
pub const KEY_MAX: usize = 48;
/// Longest value in bytes.
pub const VAL_MAX: usize = 112;

/// The root object.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy)]
#[zerocopy(crate = "tx::zerocopy")]
#[repr(C)]
pub struct Map {
    /// Readers and writers of the map serialize on it.
    pub lock: PRwLock,
    /// The table, allocated by the first put.
    pub table: PPtr<Table>,
    /// Entries in the table.
    pub count: u64,
    /// Steps done by `run`.
    pub steps: u64,
}
ptype!(Map, "examples::pkv::Map v1");

/// The hash table: one chain head per bucket.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy)]
#[zerocopy(crate = "tx::zerocopy")]
#[repr(C)]
pub struct Table {
    /// Chain heads.
    pub buckets: [PPtr<Entry>; BUCKETS],
}
ptype!(Table, "examples::pkv::Table v1");

/// One key-value pair.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy)]
#[zerocopy(crate = "tx::zerocopy")]
#[repr(C)]
pub struct Entry {
    /// Next entry of the chain.
    pub next: PPtr<Entry>,
    /// Bytes of `key` in use.
    pub key_len: u32,
    /// Bytes of `val` in use.
    pub val_len: u32,
    /// The key, zero-padded.
    pub key: [u8; KEY_MAX],
    /// The value, zero-padded.
    pub val: [u8; VAL_MAX],
}
ptype!(Entry, "examples::pkv::Entry v1");

/// The map's pool over persister `P`.
pub type KvPool<P = pool::Pool> = PoolTyped<Map, P>;

fn bucket(key: &[u8]) -> usize {
    (tx::type_num(std::str::from_utf8(key).unwrap_or("")) as usize) % BUCKETS
}

fn key_of(e: &Entry) -> &[u8] {
    &e.key[..e.key_len as usize]
}

fn table<P: Persister + ?Sized>(
    tx: &mut Tx<'_, P>,
    map: &PPtr<Map>,
) -> Result<PPtr<Table>, tx::Error> {
    let t = tx.read(map)?.table;
    if !t.is_null() {
        return Ok(t);
    }
    let t = tx.alloc::<Table>()?;
    tx.set_field(map, |m| &m.table, t)?;
    Ok(t)
}

/// Put `key` = `val` (lengths checked by the caller: at most [`KEY_MAX`]/[`VAL_MAX`]).
pub fn put<P: Persister + ?Sized>(
    tx: &mut Tx<'_, P>,
    map: &PPtr<Map>,
    key: &[u8],
    val: &[u8],
) -> Result<(), tx::Error> {
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

/// Delete `key`; false when it is not there.
pub fn del<P: Persister + ?Sized>(
    tx: &mut Tx<'_, P>,
    map: &PPtr<Map>,
    key: &[u8],
) -> Result<bool, tx::Error> {
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

/// Every (key, value) in the map, sorted, checking the chains, the count and that no entry
/// object is leaked.
pub fn entries<P: Persister + ?Sized>(pool: &KvPool<P>) -> Result<Vec<(String, String)>> {
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
                if out.len() as u64 > m.count.saturating_add(1) {
                    bail!("chains hold more than the count of {} (a cycle?)", m.count);
                }
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

/// The value `run` puts at step `i`.
pub fn run_value(i: u64) -> String {
    format!("value-{i}-{}", i.wrapping_mul(7919))
}

/// The map `run` must have produced after `steps` steps.
pub fn run_expected(steps: u64) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = (0..steps)
        .filter(|&i| !(i % 3 == 0 && i + 2 < steps))
        .map(|i| (format!("key-{i}"), run_value(i)))
        .collect();
    v.sort();
    v
}

/// One `run` step as a transaction: put `key-i`, every third step delete `key-(i-2)`, and
/// count the step. Returns the step number done. The caller holds the map's write lock.
pub fn run_step<P: Persister + ?Sized>(pool: &KvPool<P>) -> Result<u64, tx::Error> {
    let map = pool.root();
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
    Ok(i)
}

/// Check the map against what `run` produced: returns (entries, run steps).
pub fn check<P: Persister + ?Sized>(pool: &KvPool<P>) -> Result<(usize, u64)> {
    let got = entries(pool)?;
    let steps = pool.read(&pool.root())?.steps;
    if steps > 0 && got != run_expected(steps) {
        bail!("after {steps} run steps the map differs from the expected one");
    }
    Ok((got.len(), steps))
}

/// Fail when a key or value is too long.
pub fn check_len(what: &str, b: &[u8], max: usize) -> Result<()> {
    if b.len() > max {
        bail!("{what} of {} bytes, at most {max}", b.len());
    }
    Ok(())
}

/// The commands `pkv` and `replicated-kv` share — `put <key> <value>`, `get <key>`,
/// `del <key>`, `list`, `check` — on an open pool; `operands` are the words after the command.
/// Returns `Ok(false)` for any other command (the caller's own, or unknown).
pub fn run_command<P: Persister + ?Sized>(
    pool: &KvPool<P>,
    cmd: &str,
    operands: &[String],
) -> Result<bool> {
    let arg = |i: usize| -> Result<&[u8]> {
        operands
            .get(i)
            .map(|s| s.as_bytes())
            .with_context(|| format!("{cmd}: missing argument {}", i + 1))
    };
    let map = pool.root();
    match cmd {
        "put" => {
            let (k, v) = (arg(0)?, arg(1)?);
            check_len("key", k, KEY_MAX)?;
            check_len("value", v, VAL_MAX)?;
            let _w = pool.write_lock(&map, |m| &m.lock)?;
            pool.tx(|tx| put(tx, &map, k, v))?;
        }
        "get" => {
            let key = String::from_utf8_lossy(arg(0)?).into_owned();
            let _r = pool.read_lock(&map, |m| &m.lock)?;
            match entries(pool)?.into_iter().find(|(k, _)| *k == key) {
                Some((_, v)) => println!("{v}"),
                None => bail!("no key {key:?}"),
            }
        }
        "del" => {
            let k = arg(0)?;
            let _w = pool.write_lock(&map, |m| &m.lock)?;
            if !pool.tx(|tx| del(tx, &map, k))? {
                bail!("no key {:?}", String::from_utf8_lossy(k));
            }
        }
        "list" => {
            for (k, v) in entries(pool)? {
                println!("{k} = {v}");
            }
        }
        "check" => {
            let (n, steps) = check(pool)?;
            let rolled = pool
                .recovered()
                .iter()
                .filter(|r| matches!(r, tx::UndoRecovered::RolledBack { .. }))
                .count();
            println!(
                "ok: {n} entries, {steps} run steps, {rolled} transaction(s) rolled back at open"
            );
        }
        _ => return Ok(false),
    }
    Ok(true)
}
