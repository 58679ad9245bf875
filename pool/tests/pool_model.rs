//! Model-based property test of a multi-part pool with a local replica: random writes, persists,
//! memcpy/memset with every flag combination, crossing part boundaries; after close and reopen the
//! pool (and, through `verify_replicas`, every replica) equals a plain `Vec<u8>`
//! model that advances only on what was made durable.

use pool::persist::Flags;
use pool::{OpenOptions, Persister, Pool};
use proptest::prelude::*;

const MIB: usize = 1 << 20;

#[derive(Clone, Debug)]
enum Op {
    /// memcpy_persist of `len` bytes of `seed`-derived data, drained at once or later.
    Copy {
        off: usize,
        len: usize,
        seed: u8,
        no_drain: bool,
        nontemporal: bool,
    },
    /// memset_persist.
    Set { off: usize, len: usize, byte: u8 },
    /// Plain write followed by persist of the same range.
    WritePersist { off: usize, len: usize, seed: u8 },
}

/// The set has primary parts of 2 MiB + 3 MiB (boundary in the user area near 2 MiB - 4 KiB) and a
/// replica of one 5 MiB part, so the user area is just under 5 MiB.
fn op(user_len: usize) -> impl Strategy<Value = Op> {
    // Bias offsets towards the part boundary, where off-by-one mistakes live.
    let boundary = 2 * MIB - 4096;
    let off = prop_oneof![
        0..user_len,
        (boundary - 300)..(boundary + 300),
        (user_len - 300)..user_len,
    ];
    let len = prop_oneof![1usize..64, 64usize..5000, 5000usize..300_000];
    (off, len, any::<u8>(), any::<bool>(), any::<bool>(), 0u8..3).prop_map(
        move |(off, len, seed, a, b, kind)| {
            let len = len.min(user_len - off).max(1).min(user_len - off);
            match kind {
                0 => Op::Copy {
                    off,
                    len,
                    seed,
                    no_drain: a,
                    nontemporal: b,
                },
                1 => Op::Set {
                    off,
                    len,
                    byte: seed,
                },
                _ => Op::WritePersist { off, len, seed },
            }
        },
    )
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i * 31 % 251) as u8))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn pool_and_replica_match_the_model_after_reopen(ops in prop::collection::vec(op(5 * MIB - 4096 - 4096), 1..40)) {
        let d = testkit::shm_tempdir();
        let (a, b, r) = (d.path().join("a"), d.path().join("b"), d.path().join("r"));
        let set = d.path().join("pool.set");
        std::fs::write(&set, format!(
            "PMEMPOOLSET\n2M {}\n3M {}\nREPLICA\n5M {}\n", a.display(), b.display(), r.display()
        )).unwrap();
        let mut model;
        {
            let pool = Pool::create_poolset(&set, "model").unwrap();
            model = vec![0u8; pool.len()];
            prop_assert_eq!(pool.len(), 5 * MIB - 4096 - 4096);
            for op in &ops {
                match *op {
                    Op::Copy { off, len, seed, no_drain, nontemporal } => {
                        let data = pattern(seed, len);
                        let mut flags = if nontemporal { Flags::NONTEMPORAL } else { Flags::TEMPORAL };
                        if no_drain { flags = flags | Flags::NO_DRAIN; }
                        pool.memcpy_persist(off, &data, flags).unwrap();
                        if no_drain { pool.drain().unwrap(); }
                        model[off..off + len].copy_from_slice(&data);
                    }
                    Op::Set { off, len, byte } => {
                        pool.memset_persist(off, byte, len, Flags::NONE).unwrap();
                        model[off..off + len].fill(byte);
                    }
                    Op::WritePersist { off, len, seed } => {
                        let data = pattern(seed, len);
                        pool.write(off, &data);
                        pool.persist(off, len).unwrap();
                        model[off..off + len].copy_from_slice(&data);
                    }
                }
            }
        }
        // Reopen without the open-time synchronisation (which would copy the primary over a
        // replica that missed a persist), then compare every replica byte with the primary;
        // then the primary must equal the model.
        let ps = poolset::parse_file(&set, poolset::Mode::Initiator).unwrap().set;
        let opts = OpenOptions { skip_data_verify: true, ..OpenOptions::default() };
        let pool = Pool::open(&ps, Some("model"), opts).unwrap();
        let diffs = pool.verify_replicas().unwrap();
        prop_assert!(diffs.is_empty(), "replica differs from the primary: {:?}", diffs);
        let mut got = vec![0u8; pool.len()];
        pool.read(0, &mut got);
        prop_assert!(got == model, "pool content differs from the model");
    }
}
