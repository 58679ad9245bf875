//! Model-based property test: random transactional programs (root writes, allocations, frees,
//! object writes, nested transactions, aborts, reopens) against an in-memory model. After every
//! transaction the pool must equal the model exactly (no leaked or missing object) and the heap
//! checker must pass. Proptest prints the failing case (and `PROPTEST_` env vars replay it).

mod common;
use common::prog::{gen_prog, observe, run, Model, Rng, Root};
use common::{assert_heap_ok, region, small};
use proptest::prelude::*;
use tx::PoolTyped;

type Pool = PoolTyped<Root, pool::region::MappedRegion>;

fn check_program(seed: u64, steps: usize, reopen_every: u64) {
    let reg = region(2 << 20);
    let mut pool: Pool = PoolTyped::create_in(reg.clone(), &small(2)).unwrap();
    let mut model = Model::default();
    let mut rng = Rng(seed);
    for step in 0..steps {
        if rng.below(reopen_every) == 0 {
            drop(pool);
            pool = PoolTyped::open_in(reg.clone(), Default::default()).unwrap();
        }
        let p = gen_prog(&mut rng, 8);
        let committed = run(&pool, &p).unwrap_or_else(|e| panic!("seed {seed} step {step}: {e}"));
        model.apply(&p);
        let seen = observe(&pool).unwrap_or_else(|e| panic!("seed {seed} step {step}: {e}"));
        assert_eq!(
            seen, model,
            "seed {seed} step {step} (committed {committed}): {p:?}"
        );
        assert_heap_ok(&*reg);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn random_programs_match_the_model(seed in any::<u64>(), reopen_every in 2u64..10) {
        check_program(seed, 40, reopen_every);
    }
}
