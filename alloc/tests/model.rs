//! Model-based property test: random programs of alloc/zalloc/free/realloc/publish/cancel
//! and reopen against a `BTreeMap` of live objects. Every object is filled with its own byte
//! pattern, so any overlap or lost copy shows up as wrong contents. Proptest prints the
//! minimal failing program and its seed (replay with `PROPTEST_SEED` / the regression file).

mod common;
use common::*;
use palloc::{Action, Error, Heap};
use pool::region::MappedRegion;
use pool::Persister;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        size: u64,
        type_num: u64,
        zero: bool,
    },
    Free(usize),
    Realloc(usize, u64),
    Publish(Vec<u64>, Option<usize>),
    Cancel(u64),
    Reopen,
}

fn size() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => 1u64..300,
        3 => 300u64..4000,
        1 => 10_000u64..50_000,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (size(), 0u64..4, any::<bool>()).prop_map(|(size, type_num, zero)| Op::Alloc { size, type_num, zero }),
        4 => any::<usize>().prop_map(Op::Free),
        2 => (any::<usize>(), size()).prop_map(|(i, s)| Op::Realloc(i, s)),
        2 => (proptest::collection::vec(size(), 1..4), proptest::option::of(any::<usize>()))
            .prop_map(|(v, f)| Op::Publish(v, f)),
        1 => size().prop_map(Op::Cancel),
        1 => Just(Op::Reopen),
    ]
}

/// off -> (type, requested size, pattern byte)
type Model = BTreeMap<u64, (u64, u64, u8)>;

fn fill(r: &MappedRegion, off: u64, len: u64, b: u8) {
    r.write(off as usize, &vec![b; len as usize]);
}

fn verify(h: &Heap<MappedRegion>, r: &MappedRegion, m: &Model) {
    let got: Vec<(u64, u64)> = h.objects().map(|o| (o.off, o.type_num)).collect();
    let want: Vec<(u64, u64)> = m.iter().map(|(&o, &(t, _, _))| (o, t)).collect();
    assert_eq!(got, want);
    for (&off, &(_, len, b)) in m {
        assert!(h.usable_size(off).unwrap() >= len);
        let mut buf = vec![0u8; len as usize];
        r.read(off as usize, &mut buf);
        assert!(
            buf.iter().all(|&x| x == b),
            "object {off:#x} contents changed"
        );
    }
    assert_consistent(h);
}

fn nth(m: &Model, i: usize) -> Option<u64> {
    (!m.is_empty()).then(|| *m.keys().nth(i % m.len()).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn heap_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let r = region(1 << 20);
        let mut h = Heap::create(r.clone(), &small(), opts()).unwrap();
        let mut m: Model = BTreeMap::new();
        let mut pattern = 0u8;
        let mut next = || { pattern = pattern.wrapping_add(1).max(1); pattern };
        for op in ops {
            match op {
                Op::Alloc { size, type_num, zero } => {
                    let res = if zero { h.zalloc(size, type_num, None) } else { h.alloc(size, type_num, None) };
                    match res {
                        Ok(off) => {
                            prop_assert!(!m.contains_key(&off));
                            if zero {
                                let mut buf = vec![1u8; size as usize];
                                r.read(off as usize, &mut buf);
                                prop_assert!(buf.iter().all(|&x| x == 0));
                            }
                            let b = next();
                            fill(&r, off, size, b);
                            m.insert(off, (type_num, size, b));
                        }
                        Err(Error::OutOfMemory { .. }) => {}
                        Err(e) => prop_assert!(false, "alloc: {e}"),
                    }
                }
                Op::Free(i) => {
                    if let Some(off) = nth(&m, i) {
                        h.free(off, None).unwrap();
                        m.remove(&off);
                        prop_assert!(h.free(off, None).is_err());
                    }
                }
                Op::Realloc(i, size) => {
                    if let Some(off) = nth(&m, i) {
                        let (t, len, b) = m[&off];
                        match h.realloc(off, size, t, None) {
                            Ok(new) => {
                                m.remove(&off);
                                // The kept prefix still has the pattern; extend it.
                                let keep = len.min(size);
                                let mut buf = vec![0u8; keep as usize];
                                r.read(new as usize, &mut buf);
                                prop_assert!(buf.iter().all(|&x| x == b));
                                fill(&r, new, size, b);
                                m.insert(new, (t, size, b));
                            }
                            Err(Error::OutOfMemory { .. }) => {}
                            Err(e) => prop_assert!(false, "realloc: {e}"),
                        }
                    }
                }
                Op::Publish(sizes, free) => {
                    let mut acts = Vec::new();
                    let mut oom = false;
                    for s in &sizes {
                        match h.reserve(*s, 9) {
                            Ok(res) => acts.push(Action::Alloc(res)),
                            Err(Error::OutOfMemory { .. }) => oom = true,
                            Err(e) => prop_assert!(false, "reserve: {e}"),
                        }
                    }
                    if oom {
                        h.cancel(acts);
                        continue;
                    }
                    let freed = free.and_then(|i| nth(&m, i));
                    if let Some(f) = freed {
                        acts.push(Action::Free(f));
                    }
                    let offs: Vec<(u64, u64)> = acts.iter().zip(&sizes)
                        .filter_map(|(a, s)| match a { Action::Alloc(r) => Some((r.off(), *s)), _ => None })
                        .collect();
                    h.publish(acts).unwrap();
                    if let Some(f) = freed {
                        m.remove(&f);
                    }
                    for (off, s) in offs {
                        let b = next();
                        fill(&r, off, s, b);
                        m.insert(off, (9, s, b));
                    }
                }
                Op::Cancel(s) => {
                    if let Ok(res) = h.reserve(s, 3) {
                        h.cancel(vec![Action::Alloc(res)]);
                    }
                }
                Op::Reopen => {
                    drop(h);
                    h = Heap::open(r.clone() as Arc<MappedRegion>, opts()).unwrap();
                }
            }
            verify(&h, &r, &m);
        }
    }
}
