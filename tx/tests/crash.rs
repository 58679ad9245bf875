//! Crash images at every fence of random transactions.
//!
//! Each transaction runs on a pool inside `pool::crash::Recorder`. For every crash image the
//! recorder allows before each fence of the transaction (and after it), a fresh pool is opened
//! on the image — heap redo recovery, then undo rollback — and must pass the heap checker and
//! hold exactly the state before the transaction or (for a committed one) after it: a
//! committed transaction fully there or fully gone while it runs, never a mixture, and fully
//! there once `tx` returned; an aborted one never visible.
//!
//! Replay: the test prints `TX_CRASH_SEED=<seed>` (the programs); the recorder prints
//! `POOL_CRASH_SEED` when it samples images. `TX_CRASH_TXS` sets the number of transactions.

mod common;
use common::prog::{gen_prog, observe, run, Model, Rng, Root};
use common::small;
use pool::crash::{Enumerate, Recorder};
use std::sync::Arc;
use tx::PoolTyped;

fn recovered_state(img: &[u8]) -> Result<Model, String> {
    let r = common::image_recorder(img);
    let pool = PoolTyped::<Root, Recorder>::open_in(r.clone(), Default::default())
        .map_err(|e| format!("open failed: {e}"))?;
    let rep = palloc::check(&*r).map_err(|e| e.to_string())?;
    if !rep.is_ok() {
        return Err(format!("heap checker: {:?}", rep.problems));
    }
    observe(&pool)
}

#[test]
fn every_crash_image_is_before_or_after_each_transaction() {
    let seed = testkit::seed("TX_CRASH_SEED");
    let txs: usize = std::env::var("TX_CRASH_TXS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    eprintln!("TX_CRASH_SEED={seed} (TX_CRASH_TXS={txs})");
    let mut rng = Rng(seed);
    let rec = Arc::new(Recorder::new(384 << 10));
    rec.set_capture(false);
    let pool = PoolTyped::<Root, Recorder>::create_in(rec.clone(), &small(1)).unwrap();
    let mut model = Model::default();
    let opts = Enumerate {
        exhaustive_max: 256,
        samples: 64,
        seed: None,
    };
    let mut images = 0;
    for i in 0..txs {
        let p = gen_prog(&mut rng, 6);
        let before = model.clone();
        let mut after = model.clone();
        after.apply(&p);
        rec.clear_history();
        rec.set_capture(true);
        let committed = run(&pool, &p).unwrap();
        rec.set_capture(false);
        if !committed {
            assert_eq!(after, before, "tx {i} aborted, the model must not change");
        }
        model = after.clone();
        assert_eq!(observe(&pool).unwrap(), model, "live state after tx {i}");
        let final_fence = rec.fences();
        images += rec
            .check_crash_images(&opts, |img| {
                let s = recovered_state(img)?;
                if s == before || s == after {
                    Ok(())
                } else {
                    Err(format!(
                        "recovered state is neither before nor after: {s:?}"
                    ))
                }
            })
            .unwrap_or_else(|f| panic!("TX_CRASH_SEED={seed} tx {i} ({p:?}): {f}"));
        // Once `tx` returned, the outcome is durable.
        let end = recovered_state(&rec.crash_point_now().durable_image())
            .unwrap_or_else(|e| panic!("TX_CRASH_SEED={seed} tx {i}: {e}"));
        assert_eq!(
            end, after,
            "TX_CRASH_SEED={seed} tx {i}: durable state after return (fences {final_fence})"
        );
    }
    eprintln!("checked {images} crash images over {txs} transactions");
}

/// Objects of type 7 and the first 8 bytes of the root's data: what the big transactions change.
fn big_state<P: pool::Persister + ?Sized>(pool: &PoolTyped<Root, P>) -> (Vec<u64>, [u8; 8]) {
    let r = pool.read(&pool.root()).unwrap();
    let mut head = [0u8; 8];
    head.copy_from_slice(&r.data[..8]);
    (
        pool.heap().objects_of_type(7).map(|o| o.off).collect(),
        head,
    )
}

#[test]
fn a_transaction_freeing_ten_thousand_objects_is_all_or_nothing() {
    let rec = Arc::new(Recorder::new(2 << 20));
    rec.set_capture(false);
    let pool = PoolTyped::<Root, Recorder>::create_in(rec.clone(), &small(1)).unwrap();
    // 1 KiB lane redo logs hold 60 entries; transactions of 500 allocations already need the
    // log to grow.
    let mut objs = Vec::new();
    for _ in 0..20 {
        let got: Vec<u64> = pool
            .tx(|tx| (0..500).map(|_| tx.alloc_raw(40, 7, false)).collect())
            .unwrap();
        objs.extend(got);
    }
    assert_eq!(big_state(&pool).0.len(), 10_000);
    let before = big_state(&pool);
    let root = pool.root();
    rec.clear_history();
    rec.set_capture(true);
    pool.tx(|tx| {
        for &o in &objs {
            tx.free_raw(o)?;
        }
        tx.update(&root, |r| r.data[..8].copy_from_slice(b"freed10k"))
    })
    .unwrap();
    rec.set_capture(false);
    let after = big_state(&pool);
    assert_eq!(after, (Vec::new(), *b"freed10k"));
    let opts = Enumerate {
        exhaustive_max: 64,
        samples: 8,
        seed: None,
    };
    let n = rec
        .check_crash_images(&opts, |img| {
            let r = common::image_recorder(img);
            let p = PoolTyped::<Root, Recorder>::open_in(r.clone(), Default::default())
                .map_err(|e| format!("open failed: {e}"))?;
            let rep = palloc::check(&*r).map_err(|e| e.to_string())?;
            if !rep.is_ok() {
                return Err(format!("heap checker: {:?}", rep.problems));
            }
            let s = big_state(&p);
            if s == before || s == after {
                Ok(())
            } else {
                Err(format!(
                    "neither before nor after: {} objects, head {:?}",
                    s.0.len(),
                    s.1
                ))
            }
        })
        .unwrap_or_else(|f| panic!("{f}"));
    eprintln!("{n} crash images of a 10 000-free transaction checked");
}
