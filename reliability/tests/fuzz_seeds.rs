//! The fuzz targets' seed corpora and a bounded sweep of their bodies on every `cargo test`.
//!
//! - Every committed seed in `fuzz/corpus/{pool_header,ulog_recover,heap_open}/` runs through
//!   its target's body (`reliability::fuzzing`) without a panic, and every seed the generator
//!   makes is committed. `RELIABILITY_WRITE_FUZZ_SEEDS=1` (re)writes them from the generator
//!   (byte-identical on every run except the random pool id inside heap images).
//! - A seeded random sweep (`RELIABILITY_FUZZ_SEED` replays it) mutates the seeds — byte flips,
//!   truncation, extension — and runs each body: the same properties as the fuzz targets, with
//!   no fuzzer needed.

use reliability::fuzzing::{heap_open, pool_header, seeds, ulog_recover};
use reliability::seed::{env_u64, seed, Rng};
use std::path::PathBuf;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

fn body(target: &str) -> fn(&[u8]) {
    match target {
        "pool_header" => pool_header,
        "ulog_recover" => ulog_recover,
        "heap_open" => heap_open,
        t => panic!("unknown fuzz target {t}"),
    }
}

#[test]
fn committed_seeds_exist_and_pass_their_target() {
    let write = env_u64("RELIABILITY_WRITE_FUZZ_SEEDS") == Some(1);
    for (target, name, bytes) in seeds() {
        let dir = corpus_dir(target);
        let path = dir.join(&name);
        if write {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        assert!(
            path.exists(),
            "seed {} missing: run RELIABILITY_WRITE_FUZZ_SEEDS=1 cargo test -p reliability \
             --test fuzz_seeds and commit fuzz/corpus",
            path.display()
        );
    }
    let mut n = 0;
    for target in ["pool_header", "ulog_recover", "heap_open"] {
        let f = body(target);
        for e in std::fs::read_dir(corpus_dir(target)).unwrap() {
            let e = e.unwrap();
            let data = std::fs::read(e.path()).unwrap();
            f(&data);
            n += 1;
        }
    }
    eprintln!("{n} committed seeds ran through their targets");
}

#[test]
fn mutated_seeds_never_panic() {
    let s = seed("RELIABILITY_FUZZ_SEED");
    let rounds = env_u64("RELIABILITY_FUZZ_ROUNDS").unwrap_or(300);
    let mut rng = Rng(s);
    let all = seeds();
    for target in ["pool_header", "ulog_recover", "heap_open"] {
        let f = body(target);
        let mine: Vec<&Vec<u8>> = all
            .iter()
            .filter(|(t, _, _)| *t == target)
            .map(|(_, _, b)| b)
            .collect();
        for round in 0..rounds {
            let mut d = mine[rng.below(mine.len() as u64) as usize].clone();
            match rng.below(4) {
                0 if d.len() > 1 => d.truncate(1 + rng.below(d.len() as u64 - 1) as usize),
                1 => d.extend((0..rng.below(64)).map(|_| rng.next_u64() as u8)),
                _ => {
                    for _ in 0..1 + rng.below(16) {
                        if d.len() > 1 {
                            let i = 1 + rng.below(d.len() as u64 - 1) as usize;
                            d[i] = rng.next_u64() as u8;
                        }
                    }
                }
            }
            let r = std::panic::catch_unwind(|| f(&d));
            assert!(
                r.is_ok(),
                "{target}: round {round} panicked (RELIABILITY_FUZZ_SEED={s}); input of {} bytes",
                d.len()
            );
        }
    }
}
