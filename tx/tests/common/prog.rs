//! Random transactional programs, their in-memory model, and the observed state of a pool.
#![allow(dead_code)]

use pool::Persister;
use tx::{ptype, Error, PPtr, PoolTyped};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Bytes of the root's data area.
pub const DATA: usize = 192;
/// Object slots in the root.
pub const SLOTS: usize = 8;

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Root {
    pub slots: [PPtr<Obj>; SLOTS],
    pub data: [u8; DATA],
}
ptype!(Root, "tx-tests::Root");

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Obj {
    pub words: [u64; 8],
}
ptype!(Obj, "tx-tests::Obj");

/// One operation inside a transaction.
#[derive(Clone, Debug)]
pub enum Op {
    /// Overwrite `len` bytes of the root's data at `at` with `byte`.
    WriteRoot { at: usize, len: usize, byte: u8 },
    /// Allocate an object holding `val` in every word into `slot` (freeing what was there).
    Alloc { slot: usize, val: u64 },
    /// Free the object in `slot` (if any) and null the slot.
    Free { slot: usize },
    /// Set word `idx` of the object in `slot` (if any).
    WriteObj { slot: usize, idx: usize, val: u64 },
    /// A nested transaction; `abort` makes it fail (which aborts the whole transaction).
    Nested { ops: Vec<Op>, abort: bool },
}

/// One transaction: its operations and whether it ends with an abort.
#[derive(Clone, Debug)]
pub struct Prog {
    pub ops: Vec<Op>,
    pub abort: bool,
}

/// The model: what the pool must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    pub data: Vec<u8>,
    pub slots: Vec<Option<[u64; 8]>>,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            data: vec![0; DATA],
            slots: vec![None; SLOTS],
        }
    }
}

impl Model {
    fn apply_ops(&mut self, ops: &[Op]) -> bool {
        for op in ops {
            match *op {
                Op::WriteRoot { at, len, byte } => self.data[at..at + len].fill(byte),
                Op::Alloc { slot, val } => self.slots[slot] = Some([val; 8]),
                Op::Free { slot } => self.slots[slot] = None,
                Op::WriteObj { slot, idx, val } => {
                    if let Some(o) = &mut self.slots[slot] {
                        o[idx] = val;
                    }
                }
                Op::Nested { ref ops, abort } => {
                    if !self.apply_ops(ops) || abort {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Apply a transaction: all of it, or (abort) nothing.
    pub fn apply(&mut self, p: &Prog) {
        let mut next = self.clone();
        if next.apply_ops(&p.ops) && !p.abort {
            *self = next;
        }
    }
}

fn run_ops<P: Persister + ?Sized>(
    tx: &mut tx::Tx<'_, P>,
    root: &PPtr<Root>,
    ops: &[Op],
) -> Result<(), Error> {
    for op in ops {
        match *op {
            Op::WriteRoot { at, len, byte } => {
                tx.update(root, |r| r.data[at..at + len].fill(byte))?;
            }
            Op::Alloc { slot, val } => {
                let old = tx.read(root)?.slots[slot];
                if !old.is_null() {
                    tx.free(old)?;
                }
                let n = tx.alloc_value(Obj { words: [val; 8] })?;
                tx.set_field(root, |r| &r.slots[slot], n)?;
            }
            Op::Free { slot } => {
                let old = tx.read(root)?.slots[slot];
                if !old.is_null() {
                    tx.free(old)?;
                    tx.set_field(root, |r| &r.slots[slot], PPtr::null())?;
                }
            }
            Op::WriteObj { slot, idx, val } => {
                let o = tx.read(root)?.slots[slot];
                if !o.is_null() {
                    tx.set_field(&o, |x| &x.words[idx], val)?;
                }
            }
            Op::Nested { ref ops, abort } => {
                tx.nested(|tx| {
                    run_ops(tx, root, ops)?;
                    if abort {
                        return Err(Error::Config("nested abort".into()));
                    }
                    Ok(())
                })?;
            }
        }
    }
    Ok(())
}

/// Run `p` on the pool. Returns whether it committed.
pub fn run<P: Persister + ?Sized>(pool: &PoolTyped<Root, P>, p: &Prog) -> Result<bool, Error> {
    let root = pool.root();
    let r = pool.tx(|tx| {
        run_ops(tx, &root, &p.ops)?;
        if p.abort {
            return Err(Error::Config("abort".into()));
        }
        Ok(())
    });
    match r {
        Ok(()) => Ok(true),
        Err(Error::Config(_)) | Err(Error::NestedAborted) => Ok(false),
        Err(e) => Err(e),
    }
}

/// What the pool holds, as a model; also checks that the only live user objects are the ones
/// the root's slots point to (no leak, no dangling slot).
pub fn observe<P: Persister + ?Sized>(pool: &PoolTyped<Root, P>) -> Result<Model, String> {
    let r = pool.read(&pool.root()).map_err(|e| e.to_string())?;
    let mut slots = Vec::new();
    let mut offs = Vec::new();
    for s in &r.slots {
        if s.is_null() {
            slots.push(None);
        } else {
            let o = pool
                .read(s)
                .map_err(|e| format!("slot object {s:?}: {e}"))?;
            offs.push(s.off());
            slots.push(Some(o.words));
        }
    }
    let mut live: Vec<u64> = pool
        .heap()
        .objects_of_type(<Obj as tx::PType>::TYPE_NUM)
        .map(|o| o.off)
        .collect();
    live.sort_unstable();
    offs.sort_unstable();
    if live != offs {
        return Err(format!(
            "live objects {live:x?} != objects in slots {offs:x?}"
        ));
    }
    Ok(Model {
        data: r.data.to_vec(),
        slots,
    })
}

/// splitmix64, for seeded generation outside proptest.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn gen_op(rng: &mut Rng, depth: u32) -> Op {
    match rng.below(if depth < 1 { 9 } else { 8 }) {
        0..=2 => {
            let at = rng.below(DATA as u64) as usize;
            let len = 1 + rng.below((DATA - at).min(64) as u64) as usize;
            Op::WriteRoot {
                at,
                len,
                byte: rng.next() as u8,
            }
        }
        3 | 4 => Op::Alloc {
            slot: rng.below(SLOTS as u64) as usize,
            val: rng.next(),
        },
        5 => Op::Free {
            slot: rng.below(SLOTS as u64) as usize,
        },
        6 | 7 => Op::WriteObj {
            slot: rng.below(SLOTS as u64) as usize,
            idx: rng.below(8) as usize,
            val: rng.next(),
        },
        _ => Op::Nested {
            ops: (0..1 + rng.below(3))
                .map(|_| gen_op(rng, depth + 1))
                .collect(),
            abort: rng.below(3) == 0,
        },
    }
}

/// A random transaction of up to `max_ops` operations.
pub fn gen_prog(rng: &mut Rng, max_ops: u64) -> Prog {
    Prog {
        ops: (0..1 + rng.below(max_ops))
            .map(|_| gen_op(rng, 0))
            .collect(),
        abort: rng.below(5) == 0,
    }
}
