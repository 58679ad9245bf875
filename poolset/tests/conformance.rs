//! Conformance with PMDK 1.12.1's parser: every fixture of `util_poolset_parse` reaches PMDK's
//! verdict (EXPECTED.tsv), errors on the same line, except the deliberate deviations listed in
//! `DEVIATIONS` (documented in docs/POOLSET.md).
//!
//! The fixtures are copied into tests/data/conformance so the test runs without ../shared; when
//! ../shared is present, the copy must be identical to it.

use std::path::{Path, PathBuf};

use poolset::{parse_file, ErrorKind, Mode};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/conformance")
}

/// Files where this parser deliberately disagrees with PMDK: (file, our error line, why).
const DEVIATIONS: &[(&str, u32, &str)] = &[
    ("pool24.set", 4, "duplicate part path"),
    ("pool55.set", 3, "SINGLEHDR with NOHDRS"),
    ("pool56.set", 2, "SINGLEHDR with NOHDRS"),
    ("pool57.set", 4, "SINGLEHDR with NOHDRS"),
    ("pool59.set", 6, "SINGLEHDR with NOHDRS"),
];

/// Does our error kind say what PMDK's message says?
fn same_complaint(pmdk_message: &str, kind: &ErrorKind) -> bool {
    use ErrorKind::*;
    match pmdk_message {
        "the first line must be exactly 'PMEMPOOLSET'" => matches!(kind, BadSignature { .. }),
        "no pool set parts" => matches!(kind, NoParts),
        "no replica parts" => matches!(kind, ReplicaWithoutParts { .. }),
        "invalid token found in the current line" => matches!(
            kind,
            MissingPath { .. }
                | PartTrailingToken { .. }
                | RemoteTrailingToken { .. }
                | WhitespaceOnlyLine
                | IndentedComment
        ),
        "exactly 'REPLICA' expected" => matches!(kind, ReplicaKeyword { .. }),
        "address of remote node and descriptor of remote pool set expected" => {
            matches!(kind, RemoteNeedsDescriptor { .. })
        }
        "incorrect format of size" => matches!(kind, BadSize { .. }),
        "incorrect path (must be an absolute one)" => matches!(kind, RelativePath { .. }),
        "incorrect descriptor (must be a relative path)" => matches!(kind, BadDescriptor { .. }),
        "cannot determine size of a part" => matches!(kind, AutoSize),
        "unknown option" => matches!(kind, UnknownOption { .. }),
        "missing option name" => matches!(kind, MissingOptionName),
        "unexpected parts for remote replica" => matches!(kind, PartsAfterRemoteReplica { .. }),
        other => panic!("EXPECTED.tsv has a message this test does not know: {other}"),
    }
}

struct Row {
    file: String,
    ok: bool,
    line: u32,
    message: String,
    allowed_deviation: String,
}

fn rows() -> Vec<Row> {
    let tsv = std::fs::read_to_string(data_dir().join("EXPECTED.tsv")).expect("EXPECTED.tsv");
    let mut lines = tsv.lines();
    assert_eq!(
        lines.next(),
        Some("file\tpmdk_verdict\tpmdk_line\tpmdk_message\tallowed_deviation")
    );
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 5, "bad row {l:?}");
            Row {
                file: f[0].to_string(),
                ok: match f[1] {
                    "ok" => true,
                    "error" => false,
                    v => panic!("bad verdict {v}"),
                },
                line: f[2].parse().unwrap_or(0),
                message: f[3].to_string(),
                allowed_deviation: f[4].to_string(),
            }
        })
        .collect()
}

#[test]
fn every_fixture_reaches_pmdks_verdict_or_a_documented_deviation() {
    let rows = rows();
    assert_eq!(rows.len(), 63, "the suite has 63 fixtures");
    let mut failures = Vec::new();
    for row in &rows {
        let path = data_dir().join(&row.file);
        let result = parse_file(&path, Mode::Initiator);
        let deviation = DEVIATIONS.iter().find(|d| d.0 == row.file);
        if let Some((_, line, why)) = deviation {
            assert!(
                !row.allowed_deviation.is_empty(),
                "{}: deviating ({why}) where EXPECTED.tsv allows none",
                row.file
            );
            match &result {
                Err(e) if e.diagnostic().map(|d| d.line) == Some(*line) => {}
                other => failures.push(format!(
                    "{}: expected our deliberate error on line {line} ({why}), got {other:?}",
                    row.file
                )),
            }
            continue;
        }
        match (&result, row.ok) {
            (Ok(parsed), true) => {
                // Print -> parse is the identity on every accepted fixture.
                let text = parsed.set.to_text();
                let again = poolset::parse_bytes("printed", text.as_bytes(), Mode::Initiator)
                    .unwrap_or_else(|e| {
                        panic!("{}: printed text does not parse: {e}\n{text}", row.file)
                    });
                assert!(again.set.eq_ignoring_lines(&parsed.set), "{}", row.file);
                assert_eq!(again.set.to_text(), text);
            }
            (Err(e), false) => {
                let Some(d) = e.diagnostic() else {
                    failures.push(format!("{}: not a located error: {e}", row.file));
                    continue;
                };
                if d.line != row.line {
                    failures.push(format!(
                        "{}: error on line {} but PMDK says line {}: {e}",
                        row.file, d.line, row.line
                    ));
                }
                if !same_complaint(&row.message, &d.kind) {
                    failures.push(format!(
                        "{}: PMDK says '{}', we say '{}'",
                        row.file, row.message, d.kind
                    ));
                }
                let shown = e.to_string();
                assert!(
                    shown.starts_with(&format!("{}:{}:", path.display(), d.line)),
                    "{shown}"
                );
            }
            (Ok(_), false) => failures.push(format!(
                "{}: accepted, PMDK rejects on line {}: {}",
                row.file, row.line, row.message
            )),
            (Err(e), true) => failures.push(format!("{}: rejected, PMDK accepts: {e}", row.file)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn deviations_are_documented() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/POOLSET.md"))
            .expect("docs/POOLSET.md");
    for (file, _, _) in DEVIATIONS {
        assert!(
            doc.contains(file),
            "docs/POOLSET.md does not mention {file}"
        );
    }
}

#[test]
fn copy_matches_shared_fixtures_when_present() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/poolset");
    let Ok(entries) = std::fs::read_dir(&shared) else {
        eprintln!(
            "SKIP: {} is absent; using the committed copy only",
            shared.display()
        );
        return;
    };
    let mut n = 0;
    for entry in entries {
        let entry = entry.expect("dir entry");
        let name = entry.file_name();
        let ours = std::fs::read(data_dir().join(&name))
            .unwrap_or_else(|e| panic!("{name:?} missing from tests/data/conformance: {e}"));
        assert_eq!(
            ours,
            std::fs::read(entry.path()).expect("read shared"),
            "{name:?} differs"
        );
        n += 1;
    }
    assert!(
        n >= 64,
        "expected 63 fixtures and EXPECTED.tsv, found {n} files"
    );
}
