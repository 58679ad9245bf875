//! Two (and four) threads allocating and freeing at once, including frees of objects another
//! thread allocated; every object carries its owner's pattern, so a block handed out twice
//! shows up as overwritten contents. The checker and the statistics must agree at the end.

mod common;
use common::*;
use palloc::{CreateOptions, Heap};
use pool::Persister;
use std::sync::mpsc;
use std::sync::Arc;

fn hammer(threads: usize, iters: usize) {
    let r = region(32 << 20);
    let c = CreateOptions {
        lane_count: 8,
        ..small()
    };
    let h = Arc::new(Heap::create(r.clone(), &c, opts()).unwrap());
    // Each thread sends some of its objects to the next thread, which frees them.
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..threads).map(|_| mpsc::channel::<u64>()).unzip();
    let mut handles = Vec::new();
    for (t, rx) in rxs.into_iter().enumerate() {
        let h = h.clone();
        let r = r.clone();
        let tx = txs[(t + 1) % threads].clone();
        handles.push(std::thread::spawn(move || {
            let pat = t as u8 + 1;
            let mut mine: Vec<(u64, usize)> = Vec::new();
            let mut x = t as u64 * 7919 + 1;
            for i in 0..iters {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let size = [64usize, 100, 4096, 300, 40][(x >> 33) as usize % 5];
                let off = h.alloc(size as u64, t as u64, None).unwrap();
                r.write(off as usize, &vec![pat; size]);
                mine.push((off, size));
                if i % 3 == 0 {
                    let (o, s) = mine.swap_remove((x >> 40) as usize % mine.len());
                    let mut buf = vec![0u8; s];
                    r.read(o as usize, &mut buf);
                    assert!(
                        buf.iter().all(|&b| b == pat),
                        "thread {t}: object {o:#x} overwritten"
                    );
                    if i % 2 == 0 {
                        tx.send(o).unwrap();
                    } else {
                        h.free(o, None).unwrap();
                    }
                } else if mine.len() > 200 {
                    let (o, _) = mine.swap_remove(0);
                    h.free(o, None).unwrap();
                }
                while let Ok(o) = rx.try_recv() {
                    h.free(o, None).unwrap();
                }
            }
            drop(tx);
            for (o, s) in &mine {
                let mut buf = vec![0u8; *s];
                r.read(*o as usize, &mut buf);
                assert!(
                    buf.iter().all(|&b| b == pat),
                    "thread {t}: object {o:#x} overwritten"
                );
            }
            (mine.len(), rx)
        }));
    }
    drop(txs);
    let mut live = 0;
    for hd in handles {
        let (n, rx) = hd.join().unwrap();
        live += n;
        for o in rx.iter() {
            h.free(o, None).unwrap();
        }
    }
    assert_eq!(h.stats().objects as usize, live);
    assert_consistent(&h);
}

#[test]
fn two_threads_alloc_and_free_concurrently() {
    hammer(2, 20_000);
}

#[test]
fn four_threads_on_two_cores() {
    hammer(4, 5_000);
}
