//! pqueue: a persistent FIFO queue (a singly linked list with head and tail) in a typed pool.
//!
//! Every push and pop is one transaction, so after a crash (or `kill -9`) the queue holds
//! exactly the operations that returned. The values make the state checkable: value `i` is
//! the `i`-th push, so the queue always holds `popped..pushed` in order.
//!
//! Usage: `pqueue <pool> push <n> | pop <n> | show | check | run`
//! (`run` pushes two and pops one, forever, printing progress; made to be killed).

use anyhow::{bail, Context, Result};
use std::path::Path;
use tx::zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};
use tx::{ptype, PPtr, PoolTyped};

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug)]
#[zerocopy(crate = "tx::zerocopy")]
#[repr(C)]
struct Queue {
    head: PPtr<Node>,
    tail: PPtr<Node>,
    /// Values pushed so far (the next push's value).
    pushed: u64,
    /// Values popped so far (the value at the head).
    popped: u64,
}
ptype!(Queue, "examples::pqueue::Queue v1");

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug)]
#[zerocopy(crate = "tx::zerocopy")]
#[repr(C)]
struct Node {
    next: PPtr<Node>,
    value: u64,
    /// `!value`, to catch a node whose bytes were only partly written.
    check: u64,
}
ptype!(Node, "examples::pqueue::Node v1");

type Pool = PoolTyped<Queue>;

fn push(pool: &Pool) -> Result<u64> {
    let q = pool.root();
    Ok(pool.tx(|tx| {
        let r = tx.read(&q)?;
        let n = tx.alloc_value(Node {
            next: PPtr::null(),
            value: r.pushed,
            check: !r.pushed,
        })?;
        if r.tail.is_null() {
            tx.set_field(&q, |q| &q.head, n)?;
        } else {
            tx.set_field(&r.tail, |t| &t.next, n)?;
        }
        tx.update(&q, |q| {
            q.tail = n;
            q.pushed += 1;
        })?;
        Ok::<_, tx::Error>(r.pushed)
    })?)
}

fn pop(pool: &Pool) -> Result<Option<u64>> {
    let q = pool.root();
    Ok(pool.tx(|tx| {
        let r = tx.read(&q)?;
        if r.head.is_null() {
            return Ok::<_, tx::Error>(None);
        }
        let n = tx.read(&r.head)?;
        tx.update(&q, |q| {
            q.head = n.next;
            if n.next.is_null() {
                q.tail = PPtr::null();
            }
            q.popped += 1;
        })?;
        tx.free(r.head)?;
        Ok(Some(n.value))
    })?)
}

/// Walk the queue and check every invariant; returns the values.
fn check(pool: &Pool) -> Result<Vec<u64>> {
    let r = pool.read(&pool.root())?;
    let mut vals = Vec::new();
    let mut cur = r.head;
    let mut last = PPtr::null();
    while !cur.is_null() {
        let n = pool.read(&cur)?;
        if n.check != !n.value {
            bail!("node {cur:?} torn: value {} check {:#x}", n.value, n.check);
        }
        vals.push(n.value);
        last = cur;
        cur = n.next;
    }
    if last != r.tail {
        bail!("tail {:?} is not the last node {last:?}", r.tail);
    }
    let want: Vec<u64> = (r.popped..r.pushed).collect();
    if vals != want {
        bail!(
            "queue holds {} values, expected {}..{}",
            vals.len(),
            r.popped,
            r.pushed
        );
    }
    let nodes = pool
        .heap()
        .objects_of_type(<Node as tx::PType>::TYPE_NUM)
        .count();
    if nodes != vals.len() {
        bail!(
            "{nodes} node objects live, {} in the queue (leak)",
            vals.len()
        );
    }
    Ok(vals)
}

/// Transactions in flight at the last crash that the open rolled back.
fn rolled_back(pool: &Pool) -> usize {
    pool.recovered()
        .iter()
        .filter(|r| matches!(r, tx::UndoRecovered::RolledBack { .. }))
        .count()
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(path), Some(cmd)) = (args.first(), args.get(1)) else {
        bail!("usage: pqueue <pool> push <n> | pop <n> | show | check | run");
    };
    let n: u64 = match args.get(2) {
        Some(s) => s.parse().with_context(|| format!("count {s:?}"))?,
        None => 1,
    };
    let pool: Pool = PoolTyped::open_or_create(Path::new(path), 64 << 20)
        .with_context(|| format!("opening {path}"))?;
    match cmd.as_str() {
        "push" => {
            for _ in 0..n {
                push(&pool)?;
            }
        }
        "pop" => {
            for _ in 0..n {
                match pop(&pool)? {
                    Some(v) => println!("{v}"),
                    None => break,
                }
            }
        }
        "show" => println!("{:?}", check(&pool)?),
        "check" => {
            let v = check(&pool)?;
            let r = pool.read(&pool.root())?;
            let rolled = rolled_back(&pool);
            println!(
                "ok: {} values ({}..{}), {rolled} transaction(s) rolled back at open",
                v.len(),
                r.popped,
                r.pushed
            );
        }
        "run" => {
            let mut i: u64 = 0;
            loop {
                push(&pool)?;
                push(&pool)?;
                pop(&pool)?;
                i += 1;
                if i.is_multiple_of(200) {
                    println!("progress {i}");
                }
            }
        }
        other => bail!("unknown command {other:?}"),
    }
    Ok(())
}
