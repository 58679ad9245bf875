//! Property tests (bounded case counts, part of the normal `cargo test`):
//! - generated valid sets: print -> parse gives the same set, and printing again the same text;
//! - arbitrary bytes and mutated PMDK fixtures: never a panic; every error is located inside the
//!   input; whatever parses survives print -> parse.
//!
//! proptest prints the failing input and keeps a regression seed file on failure.

use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::sync::OnceLock;

use proptest::prelude::*;

use poolset::{parse_bytes, LocalReplica, Mode, Options, Part, PoolSet, RemoteReplica, Replica};

/// Every part path and descriptor of `set`, exactly as stored (the `Debug` form of an `OsStr` keeps
/// every byte, escaping what is not UTF-8). `PathBuf` equality (and so `eq_ignoring_lines`)
/// compares components, which hides a writer that rewrites `/a//b` as `/a/b`.
fn path_bytes(set: &PoolSet) -> Vec<String> {
    let mut out = Vec::new();
    for r in &set.replicas {
        match r {
            Replica::Local(l) => {
                for p in &l.parts {
                    out.push(format!("{:?}", p.path.as_os_str()));
                }
            }
            Replica::Remote(r) => out.push(format!("{:?}", r.descriptor.as_os_str())),
        }
    }
    out
}

fn check_round_trip(set: &PoolSet, mode: Mode) -> Result<(), TestCaseError> {
    let text = set.to_text();
    let parsed = parse_bytes("printed", text.as_bytes(), mode)
        .map_err(|e| TestCaseError::fail(format!("printed text does not parse: {e}\n{text}")))?;
    prop_assert!(
        parsed.set.eq_ignoring_lines(set),
        "\n{text}\nparsed back as {:?}",
        parsed.set
    );
    prop_assert_eq!(path_bytes(&parsed.set), path_bytes(set), "\n{}", text);
    prop_assert_eq!(parsed.set.to_text(), text.clone());
    // Line numbers point at the line the item was printed on.
    let lines: Vec<&str> = text.lines().collect();
    for r in &parsed.set.replicas {
        match r {
            Replica::Local(l) => {
                for p in &l.parts {
                    let line = lines[p.line as usize - 1];
                    prop_assert!(line.ends_with(&*p.path.to_string_lossy()), "{line}");
                }
            }
            Replica::Remote(r) => prop_assert!(lines[r.line as usize - 1].starts_with("REPLICA ")),
        }
    }
    Ok(())
}

fn size() -> impl Strategy<Value = u64> {
    prop_oneof![
        1u64..=(1 << 50),
        (1u64..=1024).prop_map(|n| n << 20),
        (1u64..=16).prop_map(|n| n << 40),
        (1u64..=999).prop_map(|n| n * 1_000_000),
    ]
}

fn part(dirs: bool, replica: usize, index: usize) -> impl Strategy<Value = Part> {
    let name = "[a-zA-Z0-9._-]{1,12}"
        .prop_filter("'.' and '..' name directories", |n| n != "." && n != "..");
    // Separators a writer could be tempted to normalise; the round trip must keep them.
    let sep = prop::sample::select(vec!["/", "//", "/./"]);
    (size(), sep, name).prop_map(move |(size, sep, name)| Part {
        size,
        // The replica/index prefix keeps paths unique within the set.
        path: PathBuf::from(format!(
            "/mnt/r{replica}p{index}{sep}{name}{}",
            if dirs { "/" } else { "" }
        )),
        is_directory: dirs,
        line: 0,
    })
}

fn local(dirs: bool, replica: usize) -> impl Strategy<Value = Replica> {
    (1usize..=4)
        .prop_flat_map(move |n| (0..n).map(|i| part(dirs, replica, i)).collect::<Vec<_>>())
        .prop_map(|parts| Replica::Local(LocalReplica { parts, line: 0 }))
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9.-]{0,15}".prop_filter("no empty label", |h| !h.contains("..")),
        any::<[u8; 4]>().prop_map(|b| format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3])),
        any::<[u16; 8]>().prop_map(|s| Ipv6Addr::from(s).to_string()),
    ]
}

fn remote() -> impl Strategy<Value = Replica> {
    (
        proptest::option::of("[a-z_][a-z0-9_.-]{0,8}"),
        host(),
        proptest::option::of(1u16..),
        "[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,10}(/[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,10}){0,2}",
    )
        .prop_map(|(user, host, port, desc)| {
            Replica::Remote(RemoteReplica {
                user,
                host,
                port,
                descriptor: PathBuf::from(desc),
                line: 0,
            })
        })
}

fn pool_set() -> impl Strategy<Value = PoolSet> {
    (any::<bool>(), 0u8..3, 0usize..4)
        .prop_flat_map(|(dirs, opt, extra)| {
            let mut replicas: Vec<BoxedStrategy<Replica>> = vec![local(dirs, 0).boxed()];
            for r in 1..=extra {
                // PMDK forbids remote replicas in a set of directories.
                replicas.push(if dirs {
                    local(true, r).boxed()
                } else {
                    prop_oneof![local(false, r), remote()].boxed()
                });
            }
            let options = Options {
                single_hdr: opt == 1,
                no_hdrs: opt == 2,
            };
            (Just(options), replicas)
        })
        .prop_map(|(options, replicas)| PoolSet { options, replicas })
}

fn fixtures() -> &'static Vec<Vec<u8>> {
    static FIXTURES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/conformance");
        (0..63)
            .map(|i| std::fs::read(dir.join(format!("pool{i}.set"))).expect("fixture"))
            .collect()
    })
}

/// Any input: no panic, errors located inside the input, accepted sets survive print -> parse.
fn check_any(bytes: &[u8], mode: Mode) -> Result<(), TestCaseError> {
    match parse_bytes("fuzz.set", bytes, mode) {
        Ok(parsed) => check_round_trip(&parsed.set, mode),
        Err(poolset::Error::Invalid(d)) => {
            let lines = bytes.split(|b| *b == b'\n').count() as u32;
            prop_assert!(
                d.line >= 1 && d.line <= lines + 1,
                "line {} of {lines}",
                d.line
            );
            prop_assert!(d.col >= 1);
            prop_assert!(!d.kind.to_string().is_empty());
            Ok(())
        }
        Err(other) => Err(TestCaseError::fail(format!(
            "unexpected error kind: {other}"
        ))),
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    /// Insert a fragment that matters to the grammar.
    Splice(usize, &'static str),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop::sample::select(vec![
        "\n",
        "\r\n",
        "#",
        " ",
        "\t",
        "REPLICA",
        "REPLICA ",
        "OPTION ",
        "SINGLEHDR",
        "NOHDRS",
        "AUTO",
        "/",
        ":",
        "@",
        "[::1]",
        "K",
        "MiB",
        "GB",
        "0",
        "-",
        "\0",
        "\u{e9}",
        "\u{FEFF}",
    ]);
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Replace(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        (any::<usize>(), interesting).prop_map(|(i, s)| Mutation::Splice(i, s)),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        match *m {
            Mutation::Replace(i, b) if len > 0 => bytes[i % len] = b,
            Mutation::Insert(i, b) => bytes.insert(i % (len + 1), b),
            Mutation::Delete(i) if len > 0 => {
                bytes.remove(i % len);
            }
            Mutation::Splice(i, s) => {
                let at = i % (len + 1);
                bytes.splice(at..at, s.bytes());
            }
            _ => {}
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn generated_sets_round_trip(set in pool_set()) {
        check_round_trip(&set, Mode::Initiator)?;
    }

    #[test]
    fn generated_single_replica_sets_round_trip_in_rpmemd_mode(mut set in pool_set()) {
        set.replicas.truncate(1);
        check_round_trip(&set, Mode::Rpmemd)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_any(&bytes, Mode::Initiator)?;
        check_any(&bytes, Mode::Rpmemd)?;
    }

    #[test]
    fn arbitrary_text_after_the_signature_never_panics(body in "[ -~\t\n]{0,300}") {
        let bytes = format!("PMEMPOOLSET\n{body}").into_bytes();
        check_any(&bytes, Mode::Initiator)?;
    }

    #[test]
    fn mutated_fixtures_never_panic(
        index in 0usize..63,
        mutations in prop::collection::vec(mutation(), 0..6),
    ) {
        let bytes = apply(fixtures()[index].clone(), &mutations);
        check_any(&bytes, Mode::Initiator)?;
        check_any(&bytes, Mode::Rpmemd)?;
    }
}

/// The byte comparison in `check_round_trip` sees a rewritten path that `eq_ignoring_lines` does
/// not (PathBuf compares components): without it the round trip could not catch such a writer.
#[test]
fn round_trip_compares_path_bytes_exactly() {
    let with = |path: &str, desc: &str| PoolSet {
        options: Options::default(),
        replicas: vec![
            Replica::Local(LocalReplica {
                parts: vec![Part {
                    size: 4 << 20,
                    path: PathBuf::from(path),
                    is_directory: false,
                    line: 0,
                }],
                line: 0,
            }),
            Replica::Remote(RemoteReplica {
                user: None,
                host: "h".into(),
                port: None,
                descriptor: PathBuf::from(desc),
                line: 0,
            }),
        ],
    };
    let written = with("/a//b", "d//x.set");
    let rewritten = with("/a/b", "d/x.set");
    assert!(written.eq_ignoring_lines(&rewritten));
    assert_ne!(path_bytes(&written), path_bytes(&rewritten));
    // Text written with a doubled slash is kept byte for byte.
    check_round_trip(&written, Mode::Initiator).unwrap();
}
