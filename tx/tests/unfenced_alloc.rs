//! An allocation of an aborted transaction (header flushed, never fenced) whose block a later
//! transaction allocates again with the same type: every crash image of the later transaction
//! must pass the heap checker and hold the object entirely or not at all.
//!
//! The later reservation finds the right header bytes in the cache and writes nothing, so
//! without a fence when the aborted transaction released its reservation, the later commit
//! (no written ranges, so no fence of its own before the publish) could make the block
//! allocated over a header that never reached media.

mod common;
use common::prog::Root;
use common::small;
use pool::crash::{Enumerate, Recorder};
use std::sync::Arc;
use tx::{Error, PoolTyped};

type Pool = PoolTyped<Root, Recorder>;

fn run(abort_with_free: bool) {
    let rec = Arc::new(Recorder::new(384 << 10));
    rec.set_capture(false);
    let pool = Pool::create_in(rec.clone(), &small(1)).unwrap();
    let mut first = 0;
    let r = pool.tx(|tx| {
        first = tx.alloc_raw(40, 7, false)?;
        if abort_with_free {
            // Released inside the transaction, which then commits nothing.
            tx.free_raw(first)?;
            return Ok(());
        }
        Err(Error::Config("abort on purpose".into()))
    });
    assert_eq!(r.is_ok(), abort_with_free);
    rec.clear_history();
    rec.set_capture(true);
    let off = pool.tx(|tx| tx.alloc_raw(40, 7, false)).unwrap();
    rec.set_capture(false);
    assert_eq!(off, first, "the released block is the one allocated again");
    let n = rec
        .check_crash_images(
            &Enumerate {
                samples: 64,
                ..Enumerate::default()
            },
            |img| {
                let r = common::image_recorder(img);
                let p = Pool::open_in(r.clone(), Default::default())
                    .map_err(|e| format!("open: {e}"))?;
                let rep = palloc::check(&*r).map_err(|e| e.to_string())?;
                if !rep.is_ok() {
                    return Err(format!("heap checker: {:?}", rep.problems));
                }
                let objs: Vec<(u64, u64)> = p
                    .heap()
                    .objects_of_type(7)
                    .map(|o| (o.off, o.type_num))
                    .collect();
                if objs.is_empty() || objs == [(off, 7)] {
                    Ok(())
                } else {
                    Err(format!("objects of type 7: {objs:?}"))
                }
            },
        )
        .unwrap_or_else(|f| panic!("free in tx {abort_with_free}: {f}"));
    eprintln!("{n} crash images");
}

#[test]
fn an_aborted_transactions_block_allocated_again_has_a_durable_header() {
    run(false);
}

/// (Also held before the cancel fenced: the commit of the freeing transaction fenced the owed
/// header. Kept as a guard of the free-in-transaction path.)
#[test]
fn a_block_freed_in_its_own_transaction_allocated_again_has_a_durable_header() {
    run(true);
}
