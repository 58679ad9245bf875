//! Behaviour at the API boundary beyond the PMDK fixtures: each deliberate deviation documented in
//! docs/POOLSET.md, remote replica forms, directory parts, warnings, rpmemd mode, messages.

use std::path::PathBuf;

use poolset::{parse_bytes, ErrorKind, Mode, Parsed, Replica, WarningKind};

fn ok(text: &[u8]) -> Parsed {
    ok_in(text, Mode::Initiator)
}

fn ok_in(text: &[u8], mode: Mode) -> Parsed {
    match parse_bytes("t.set", text, mode) {
        Ok(p) => p,
        Err(e) => panic!(
            "expected success for {:?}, got {e}",
            String::from_utf8_lossy(text)
        ),
    }
}

/// The one check helper: `text` fails at `line:col` and the message contains `fragment`.
fn err(text: &[u8], line: u32, col: u32, fragment: &str) -> ErrorKind {
    err_in(text, Mode::Initiator, line, col, fragment)
}

fn err_in(text: &[u8], mode: Mode, line: u32, col: u32, fragment: &str) -> ErrorKind {
    let e = match parse_bytes("t.set", text, mode) {
        Ok(p) => panic!(
            "expected an error for {:?}, got {p:?}",
            String::from_utf8_lossy(text)
        ),
        Err(e) => e,
    };
    let d = e.diagnostic().expect("a located error").clone();
    let shown = e.to_string();
    assert_eq!((d.line, d.col), (line, col), "wrong place: {shown}");
    assert!(
        shown.starts_with(&format!("t.set:{line}:{col}: ")),
        "{shown}"
    );
    assert!(shown.contains(fragment), "'{shown}' lacks '{fragment}'");
    d.kind
}

const HDR: &str = "PMEMPOOLSET\n";

fn set(body: &str) -> Vec<u8> {
    format!("{HDR}{body}").into_bytes()
}

#[test]
fn crlf_line_ends_are_accepted() {
    let p = ok(b"PMEMPOOLSET\r\n# c\r\n\r\n4M /a\r\nREPLICA\r\n4M /b\r\n");
    assert_eq!(p.set.replicas.len(), 2);
}

#[test]
fn sizes_are_overflow_checked_and_never_negative_or_zero() {
    err(&set("-1G /a\n"), 2, 1, "negative");
    err(&set("+1G /a\n"), 2, 1, "must start with a decimal number");
    err(&set("16384P /a\n"), 2, 1, "64 bits");
    err(&set("99999999999999999999 /a\n"), 2, 1, "64 bits");
    err(&set("0 /a\n"), 2, 1, "greater than zero");
    err(&set("  10X0G /a\n"), 2, 5, "unknown unit");
    err(&set("8000P /a\n8000P /b\n8000P /c\n"), 4, 1, "overflows");
    // Separate replicas have separate totals.
    ok(&set("8000P /a\n8000P /b\nREPLICA\n8000P /c\n8000P /d\n"));
}

#[test]
fn options() {
    let p = ok(&set("OPTION SINGLEHDR\n4M /a\n"));
    assert!(p.set.options.single_hdr && !p.set.options.no_hdrs);
    err(&set("OPTIONSINGLEHDR\n4M /a\n"), 2, 7, "'OPTION'");
    err(
        &set("OPTION SINGLEHDR NOHDRS\n4M /a\n"),
        2,
        18,
        "cannot be used together",
    );
    err(
        &set("OPTION singlehdr\n4M /a\n"),
        2,
        8,
        "unknown option 'singlehdr'",
    );
    let p = ok(&set("OPTION NOHDRS NOHDRS\n4M /a\n"));
    assert_eq!(p.warnings.len(), 1);
    assert_eq!(
        p.warnings[0].kind,
        WarningKind::DuplicateOption { name: "NOHDRS" }
    );
    assert_eq!((p.warnings[0].line, p.warnings[0].col), (2, 15));
}

#[test]
fn bytes_that_are_not_text() {
    err(&set("4M /a\0b\n"), 2, 6, "control character 0x00");
    err(&set("4M /a\x0bb\n"), 2, 6, "0x0b");
    err(
        b"PMEMPOOLSET\n4M /caf\xe9\n",
        2,
        8,
        "not valid UTF-8 (byte 0xe9)",
    );
    // Comments may hold anything.
    ok(b"PMEMPOOLSET\n# caf\xe9 \x01\n4M /a # \xff\xfe\n");
    err(b"\xEF\xBB\xBFPMEMPOOLSET\n4M /a\n", 1, 1, "byte-order mark");
    err(b"", 1, 1, "empty");
    err(b"PMEMPOOLSET", 2, 1, "no parts");
    err(b"PMEMPOOLSE\n", 1, 11, "exactly 'PMEMPOOLSET'");
    err(b"PMEMPOOLSET \n4M /a\n", 1, 12, "exactly 'PMEMPOOLSET'");
}

#[test]
fn blanks_and_comments_follow_pmdk() {
    err(&set("  \t\n4M /a\n"), 2, 1, "only whitespace");
    err(&set("  # c\n4M /a\n"), 2, 1, "column 1");
    err(&set("4M /a\n  REPLICA\n4M /b\n"), 3, 3, "column 1");
    let p = ok(&set("\t4M\t/a\t# trailing comment\n"));
    assert_eq!(p.set.primary().map(|r| r.parts[0].size), Some(4 << 20));
    // '#' ends the path, as in PMDK.
    let p = ok(&set("4M /a#b\n"));
    assert_eq!(
        p.set.primary().map(|r| r.parts[0].path.clone()),
        Some(PathBuf::from("/a"))
    );
}

#[test]
fn part_lines() {
    err(&set("4M\n"), 2, 1, "needs a size and a path");
    err(&set("4M /a b\n"), 2, 7, "unexpected 'b'");
    err(&set("4M a\n"), 2, 4, "absolute");
    // PMDK checks the path before the size.
    err(&set("4X a\n"), 2, 4, "absolute");
    err(&set("AUTO /dev/dax0.0\n"), 2, 1, "Device DAX");
}

#[test]
fn duplicate_paths_are_rejected_after_lexical_normalisation() {
    err(
        &set("4M /a/b\n4M /c\nREPLICA\n4M /a//./b\n"),
        5,
        4,
        "already used on line 2",
    );
}

#[test]
fn directory_parts_are_written_with_a_trailing_slash() {
    let p = ok(&set("1G /mnt/d0/\n1G /mnt/d1/\nREPLICA\n1K /mnt/d2/\n"));
    let Some(primary) = p.set.primary() else {
        panic!("no primary")
    };
    assert!(primary.parts.iter().all(|x| x.is_directory));
    assert!(p.warnings.is_empty(), "no size warning for directories");
    err(
        &set("1G /mnt/d0/\n1G /mnt/f\n"),
        3,
        4,
        "cannot mix directory and file parts",
    );
    err(&set("1G /mnt/f\nREPLICA\n1G /mnt/d/\n"), 4, 4, "cannot mix");
    err(
        &set("1G /mnt/d0/\nREPLICA h d.set\n"),
        3,
        1,
        "directory parts cannot have remote",
    );
    err(&set("1G /mnt/d0/\n1G /mnt/d0\n"), 3, 4, "cannot mix");
}

#[test]
fn a_part_cannot_be_the_root_directory() {
    for p in ["/", "/.", "/./", "//", "/a/..", "/a/../"] {
        err(&set(&format!("4M {p}\n")), 2, 4, "root directory");
    }
    // A file part whose last component is '.' or '..' would name a directory.
    for p in ["/mnt/.", "/mnt/a/.."] {
        err(&set(&format!("4M {p}\n")), 2, 4, "names a directory");
    }
    ok(&set("4M /mnt/./a\n4M /mnt/..c\n"));
    ok(&set("4M /mnt/../b/\n4M /mnt/..c/\n"));
}

#[test]
fn small_parts_give_a_warning_not_an_error() {
    let p = ok(&set("4M /a\n  1M /b\n"));
    assert_eq!(p.warnings.len(), 1);
    let w = &p.warnings[0];
    assert_eq!((w.line, w.col), (3, 3));
    assert!(
        matches!(w.kind, WarningKind::PartBelowMinimum { size_bytes, .. } if size_bytes == 1 << 20)
    );
    assert!(
        w.to_string()
            .starts_with("t.set:3:3: part size 1048576 bytes is below"),
        "{w}"
    );
}

fn remote(p: &Parsed, i: usize) -> poolset::RemoteReplica {
    match &p.set.replicas[i] {
        Replica::Remote(r) => r.clone(),
        other => panic!("replica {i} is not remote: {other:?}"),
    }
}

#[test]
fn remote_replica_forms() {
    let p = ok(&set("4M /a\nREPLICA alice@node2:target.poolset\nREPLICA [::1]:7636 d/x.set\nREPLICA h:22:y.set # c\nREPLICA 10.0.0.2 z.set\n"));
    let r = remote(&p, 1);
    assert_eq!(
        (r.user.as_deref(), r.host.as_str(), r.port),
        (Some("alice"), "node2", None)
    );
    assert_eq!(r.descriptor, PathBuf::from("target.poolset"));
    assert_eq!(r.line, 3);
    let r = remote(&p, 2);
    assert_eq!(
        (r.host.as_str(), r.port, r.descriptor.clone()),
        ("::1", Some(7636), PathBuf::from("d/x.set"))
    );
    let r = remote(&p, 3);
    assert_eq!(
        (r.host.as_str(), r.port, r.descriptor.clone()),
        ("h", Some(22), PathBuf::from("y.set"))
    );
    let r = remote(&p, 4);
    assert_eq!(
        (r.user.clone(), r.host.as_str(), r.port),
        (None, "10.0.0.2", None)
    );
    assert_eq!(
        p.set.to_text(),
        "PMEMPOOLSET\n4M /a\nREPLICA alice@node2 target.poolset\nREPLICA [::1]:7636 d/x.set\nREPLICA h:22 y.set\nREPLICA 10.0.0.2 z.set\n"
    );
    // A local replica may follow a remote one.
    ok(&set("4M /a\nREPLICA h d.set\nREPLICA\n4M /b\n"));
    // '@' separates a user only before the host: after it, it is part of the descriptor.
    let p = ok(&set(
        "4M /a\nREPLICA host:pools/a@b.set\nREPLICA u@h p/c@d.set\n",
    ));
    let r = remote(&p, 1);
    assert_eq!(
        (r.user.clone(), r.host.as_str(), r.descriptor.clone()),
        (None, "host", PathBuf::from("pools/a@b.set"))
    );
    let r = remote(&p, 2);
    assert_eq!(
        (r.user.as_deref(), r.descriptor.clone()),
        (Some("u"), PathBuf::from("p/c@d.set"))
    );
}

#[test]
fn remote_replica_errors() {
    err(
        &set("4M /a\nREPLICA host:7636\n"),
        3,
        9,
        "names a port, not a descriptor",
    );
    err(
        &set("4M /a\nREPLICA target\n"),
        3,
        9,
        "descriptor of the remote pool set",
    );
    err(&set("4M /a\nREPLICA \n"), 3, 8, "remove the whitespace");
    err(&set("4M /a\nREPLICA h d e\n"), 3, 13, "unexpected 'e'");
    err(&set("4M /a\nREPLICA h /d\n"), 3, 11, "relative path");
    err(&set("4M /a\nREPLICA h:/d\n"), 3, 11, "relative path");
    err(&set("4M /a\nREPLICA h ../d\n"), 3, 11, "'..'");
    // A descriptor names a poolset file: never the directory itself or a directory in it.
    for d in [".", "./", "sub/", "sub/.", "./."] {
        err(
            &set(&format!("4M /a\nREPLICA h {d}\n")),
            3,
            11,
            "names a directory",
        );
        err(
            &set(&format!("4M /a\nREPLICA h:{d}\n")),
            3,
            11,
            "names a directory",
        );
    }
    ok(&set("4M /a\nREPLICA h ./x.set\nREPLICA h .hidden.set\n"));
    // '.' and '..' are not host names, nor is anything with an empty label.
    for h in [".", "..", ".h", "a..b"] {
        err(
            &set(&format!("4M /a\nREPLICA {h} x.set\n")),
            3,
            9,
            "not a host name",
        );
        err(
            &set(&format!("4M /a\nREPLICA {h}:x.set\n")),
            3,
            9,
            "not a host name",
        );
    }
    ok(&set("4M /a\nREPLICA node.example. x.set\n"));
    err(&set("4M /a\nREPLICA h:x d\n"), 3, 9, "not a port number");
    err(&set("4M /a\nREPLICA h:0 d\n"), 3, 9, "1-65535");
    err(
        &set("4M /a\nREPLICA -oProxyCommand=x d\n"),
        3,
        9,
        "cannot start with '-'",
    );
    err(&set("4M /a\nREPLICA ::1:d\n"), 3, 9, "in brackets");
    err(
        &set("4M /a\nREPLICA [nothex]:d\n"),
        3,
        9,
        "not an IPv6 address",
    );
    err(
        &set("4M /a\nREPLICA h d\n4M /b\n"),
        4,
        1,
        "cannot have parts",
    );
    // A remote replica cannot be the primary, and cannot close a local replica without parts.
    err(&set("REPLICA h d\n"), 2, 1, "has no parts");
    err(
        &set("4M /a\nREPLICA\nREPLICA h d\n"),
        4,
        1,
        "started on line 3 has no parts",
    );
}

#[test]
fn rpmemd_mode_allows_no_replicas() {
    let p = ok_in(&set("OPTION NOHDRS\n4M /a\n4M /b\n"), Mode::Rpmemd);
    assert_eq!(p.set.replicas.len(), 1);
    err_in(
        &set("4M /a\nREPLICA\n4M /b\n"),
        Mode::Rpmemd,
        3,
        1,
        "rpmemd cannot have replicas",
    );
    err_in(
        &set("4M /a\nREPLICA h d\n"),
        Mode::Rpmemd,
        3,
        1,
        "rpmemd cannot have replicas",
    );
}

#[test]
fn missing_file_is_a_read_error() {
    let e = poolset::parse_file(std::path::Path::new("/nonexistent/x.set"), Mode::Initiator)
        .expect_err("missing file");
    assert!(matches!(e, poolset::Error::Read { .. }));
    assert!(
        e.to_string().contains("/nonexistent/x.set: cannot read"),
        "{e}"
    );
    let e =
        poolset::parse_file(std::path::Path::new("/"), Mode::Initiator).expect_err("a directory");
    assert!(matches!(e, poolset::Error::Read { .. }), "{e}");
}
