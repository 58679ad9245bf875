//! The application the harness runs, the model it must agree with, and the recovery check.
//!
//! The pool's root ([`Root`]) holds [`SLOTS`] pointers to [`Obj`]ects and [`DATA`] bytes of
//! data. A workload is a sequence of [`Step`]s:
//! - [`Step::Tx`]: a transaction of [`TxOp`]s (root data writes, allocations into a slot — the
//!   old object freed —, frees, object word writes, nested transactions that may abort), ending
//!   in commit or abort;
//! - [`Step::Publish`]: outside any transaction, reserve an object, fill and persist it, then
//!   publish the allocation, the slot pointer (two 8-byte sets) and the old object's free as one
//!   atomic redo-log action list (libpmemobj's reserve/publish);
//! - [`Step::PublishFree`]: free a slot's object and null the slot in one publish;
//! - [`Step::ReserveCancel`]: reserve and cancel (must leave no trace).
//!
//! [`Model`] is the state a correct stack shows; [`recover`] opens a crash image (heap redo
//! recovery, then undo rollback), runs the heap checker and reads the state back, also checking
//! that the live objects of type [`Obj`] are exactly those the slots point to (no leak, no
//! dangling pointer).

use palloc::{Action, CreateOptions};
use pool::image::MemImage;
use pool::persist::Flags;
use pool::Persister;
use proptest::prelude::*;
use std::sync::Arc;
use tx::{ptype, Error, PPtr, PType, PoolTyped, TxOptions};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Bytes of the root's data area.
pub const DATA: usize = 192;
/// Object slots in the root.
pub const SLOTS: usize = 8;

/// The root object.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Root {
    /// Pointers to objects (null = empty slot).
    pub slots: [PPtr<Obj>; SLOTS],
    /// Free-form data that transactions overwrite.
    pub data: [u8; DATA],
}
ptype!(Root, "reliability::Root");

/// An object a slot points to.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Obj {
    /// Eight words.
    pub words: [u64; 8],
}
ptype!(Obj, "reliability::Obj");

/// One operation inside a transaction.
#[derive(Clone, Debug)]
pub enum TxOp {
    /// Overwrite `len` bytes of the root's data at `at` with `byte`.
    WriteRoot {
        /// Start.
        at: usize,
        /// Length.
        len: usize,
        /// Fill byte.
        byte: u8,
    },
    /// Allocate an object holding `val` in every word into `slot` (freeing what was there).
    Alloc {
        /// Slot.
        slot: usize,
        /// Value.
        val: u64,
    },
    /// Free the object in `slot` (if any) and null the slot.
    Free {
        /// Slot.
        slot: usize,
    },
    /// Set word `idx` of the object in `slot` (if any).
    WriteObj {
        /// Slot.
        slot: usize,
        /// Word index.
        idx: usize,
        /// Value.
        val: u64,
    },
    /// A nested transaction; `abort` makes it fail, which aborts the whole transaction.
    Nested {
        /// Its operations.
        ops: Vec<TxOp>,
        /// Whether it fails.
        abort: bool,
    },
}

/// One step of a workload.
#[derive(Clone, Debug)]
pub enum Step {
    /// A transaction; `abort` makes it fail at the end.
    Tx {
        /// Its operations.
        ops: Vec<TxOp>,
        /// Whether it aborts.
        abort: bool,
    },
    /// Atomic publish of a new object into `slot` (the old one freed in the same publish).
    Publish {
        /// Slot.
        slot: usize,
        /// Value of every word.
        val: u64,
    },
    /// Atomic publish freeing `slot`'s object and nulling the slot (nothing when empty).
    PublishFree {
        /// Slot.
        slot: usize,
    },
    /// Reserve `size` bytes and cancel.
    ReserveCancel {
        /// Size.
        size: u64,
    },
}

/// The state the pool must show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    /// The root's data.
    pub data: Vec<u8>,
    /// Each slot's object words, `None` for an empty slot.
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
    fn apply_ops(&mut self, ops: &[TxOp]) -> bool {
        for op in ops {
            match *op {
                TxOp::WriteRoot { at, len, byte } => self.data[at..at + len].fill(byte),
                TxOp::Alloc { slot, val } => self.slots[slot] = Some([val; 8]),
                TxOp::Free { slot } => self.slots[slot] = None,
                TxOp::WriteObj { slot, idx, val } => {
                    if let Some(o) = &mut self.slots[slot] {
                        o[idx] = val;
                    }
                }
                TxOp::Nested { ref ops, abort } => {
                    if !self.apply_ops(ops) || abort {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// The state after `step` (all of it, or for an abort nothing).
    pub fn after(&self, step: &Step) -> Model {
        let mut next = self.clone();
        match *step {
            Step::Tx { ref ops, abort } => {
                if !next.apply_ops(ops) || abort {
                    return self.clone();
                }
            }
            Step::Publish { slot, val } => next.slots[slot] = Some([val; 8]),
            Step::PublishFree { slot } => next.slots[slot] = None,
            Step::ReserveCancel { .. } => {}
        }
        next
    }
}

/// The heap layout of the harness's pools: 16 KiB chunks, two lanes with 1 KiB redo logs and a
/// 512-byte undo area (two 216-byte slots), so that small transactions commit with a commit
/// record, ordinary ones already need undo overflow blocks, and publishes of several actions
/// grow the redo log.
pub fn layout() -> TxOptions {
    TxOptions {
        heap: CreateOptions {
            chunk_size: 16 << 10,
            zone_max_chunks: 65528,
            lane_count: 2,
            lane_redo_bytes: 1024,
            lane_extra_bytes: 512,
        },
        runtime: Default::default(),
    }
}

fn run_ops<P: Persister + ?Sized>(
    tx: &mut tx::Tx<'_, P>,
    root: &PPtr<Root>,
    ops: &[TxOp],
) -> Result<(), Error> {
    for op in ops {
        match *op {
            TxOp::WriteRoot { at, len, byte } => {
                tx.update(root, |r| r.data[at..at + len].fill(byte))?;
            }
            TxOp::Alloc { slot, val } => {
                let old = tx.read(root)?.slots[slot];
                if !old.is_null() {
                    tx.free(old)?;
                }
                let n = tx.alloc_value(Obj { words: [val; 8] })?;
                tx.set_field(root, |r| &r.slots[slot], n)?;
            }
            TxOp::Free { slot } => {
                let old = tx.read(root)?.slots[slot];
                if !old.is_null() {
                    tx.free(old)?;
                    tx.set_field(root, |r| &r.slots[slot], PPtr::null())?;
                }
            }
            TxOp::WriteObj { slot, idx, val } => {
                let o = tx.read(root)?.slots[slot];
                if !o.is_null() {
                    tx.set_field(&o, |x| &x.words[idx], val)?;
                }
            }
            TxOp::Nested { ref ops, abort } => {
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

/// Offset in the pool of the pointer in `slot` of the root.
fn slot_off<P: Persister + ?Sized>(pool: &PoolTyped<Root, P>, slot: usize) -> u64 {
    pool.root_off()
        + std::mem::offset_of!(Root, slots) as u64
        + (slot * std::mem::size_of::<PPtr<Obj>>()) as u64
}

/// Run one step. Returns whether it changed (committed) anything the model tracks; an error is
/// an operating error of the stack (the harness fails on it).
pub fn run_step<P: Persister + ?Sized>(
    pool: &PoolTyped<Root, P>,
    step: &Step,
) -> Result<bool, Error> {
    let root = pool.root();
    match *step {
        Step::Tx { ref ops, abort } => {
            let r = pool.tx(|tx| {
                run_ops(tx, &root, ops)?;
                if abort {
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
        Step::Publish { slot, val } => {
            let heap = pool.heap();
            let old = pool.read(&root)?.slots[slot];
            let res = heap.reserve(std::mem::size_of::<Obj>() as u64, Obj::TYPE_NUM)?;
            // The object's bytes are durable before the publish makes it reachable.
            let obj = Obj { words: [val; 8] };
            pool.persister()
                .memcpy_persist(res.off() as usize, obj.as_bytes(), Flags::NONE)?;
            let s = slot_off(pool, slot);
            let new = res.off();
            let mut acts = vec![
                Action::Alloc(res),
                Action::Set { off: s, value: new },
                Action::Set {
                    off: s + 8,
                    value: pool.id(),
                },
            ];
            if !old.is_null() {
                acts.push(Action::Free(old.off()));
            }
            heap.publish(acts)?;
            Ok(true)
        }
        Step::PublishFree { slot } => {
            let old = pool.read(&root)?.slots[slot];
            if old.is_null() {
                return Ok(false);
            }
            let s = slot_off(pool, slot);
            pool.heap().publish(vec![
                Action::Set { off: s, value: 0 },
                Action::Set {
                    off: s + 8,
                    value: 0,
                },
                Action::Free(old.off()),
            ])?;
            Ok(true)
        }
        Step::ReserveCancel { size } => {
            let heap = pool.heap();
            let r = heap.reserve(size, Obj::TYPE_NUM)?;
            heap.cancel(vec![Action::Alloc(r)]);
            Ok(false)
        }
    }
}

/// What the pool holds, as a model; fails when the live objects of type [`Obj`] are not exactly
/// the ones the slots point to.
pub fn observe<P: Persister + ?Sized>(pool: &PoolTyped<Root, P>) -> Result<Model, String> {
    let r = pool.read(&pool.root()).map_err(|e| e.to_string())?;
    let mut slots = Vec::new();
    let mut offs = Vec::new();
    for (i, s) in r.slots.iter().enumerate() {
        if s.is_null() {
            slots.push(None);
        } else {
            let o = pool
                .read(s)
                .map_err(|e| format!("slot {i} object {s:?}: {e}"))?;
            offs.push(s.off());
            slots.push(Some(o.words));
        }
    }
    let mut live: Vec<u64> = pool
        .heap()
        .objects_of_type(Obj::TYPE_NUM)
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

/// Open a crash image as the application would after a restart (heap redo recovery, undo
/// rollback), run the heap checker on the result and read the state back.
pub fn recover(img: &[u8]) -> Result<Model, String> {
    let p = Arc::new(MemImage::new(img.to_vec()));
    let pool = PoolTyped::<Root, MemImage>::open_in(p.clone(), Default::default())
        .map_err(|e| format!("open failed: {e}"))?;
    let rep = palloc::check(&*p).map_err(|e| format!("heap checker: {e}"))?;
    if !rep.is_ok() {
        return Err(format!("heap checker: {:?}", rep.problems));
    }
    observe(&pool)
}

fn tx_op(depth: u32) -> BoxedStrategy<TxOp> {
    let leaf = prop_oneof![
        3 => (0..DATA).prop_flat_map(|at| (Just(at), 1..=(DATA - at).min(96), any::<u8>()))
            .prop_map(|(at, len, byte)| TxOp::WriteRoot { at, len, byte }),
        2 => (0..SLOTS, any::<u64>()).prop_map(|(slot, val)| TxOp::Alloc { slot, val }),
        1 => (0..SLOTS).prop_map(|slot| TxOp::Free { slot }),
        2 => (0..SLOTS, 0..8usize, any::<u64>())
            .prop_map(|(slot, idx, val)| TxOp::WriteObj { slot, idx, val }),
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    prop_oneof![
        8 => leaf,
        1 => (prop::collection::vec(tx_op(depth - 1), 1..4), prop::bool::weighted(0.3))
            .prop_map(|(ops, abort)| TxOp::Nested { ops, abort }),
    ]
    .boxed()
}

/// A random step.
pub fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (prop::collection::vec(tx_op(1), 1..7), prop::bool::weighted(0.2))
            .prop_map(|(ops, abort)| Step::Tx { ops, abort }),
        2 => (0..SLOTS, any::<u64>()).prop_map(|(slot, val)| Step::Publish { slot, val }),
        1 => (0..SLOTS).prop_map(|slot| Step::PublishFree { slot }),
        1 => (1u64..40_000).prop_map(|size| Step::ReserveCancel { size }),
    ]
}

/// A random workload of `1..max_steps` steps.
pub fn workload(max_steps: usize) -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(step(), 1..max_steps)
}
