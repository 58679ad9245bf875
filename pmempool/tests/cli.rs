//! Drives the real `pmempool` binary: exit codes, stdout structure (text and JSON), and the
//! `FILE:LINE:COL: error|warning: MESSAGE` lines on stderr.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn pmempool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pmempool"))
        .args(args)
        .output()
        .expect("run pmempool")
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../poolset/examples")
        .join(name)
}

fn write_set(dir: &tempfile::TempDir, text: &[u8]) -> String {
    let path = dir.path().join("t.set");
    std::fs::write(&path, text).expect("write poolset");
    path.display().to_string()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn example_poolset_human_output() {
    let file = example("pmem101.poolset");
    let out = pmempool(&["poolset", file.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("valid poolset, 2 replicas"), "{stdout}");
    assert!(
        stdout.contains("32 MiB  /dev/shm/pmem101.part0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("remote, line 5): node alice@node2, descriptor target.poolset"),
        "{stdout}"
    );
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

#[test]
fn example_poolset_json_output() {
    let file = example("pmem101.poolset");
    let out = pmempool(&["poolset", "--json", file.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(v["options"], serde_json::json!([]));
    let replicas = v["replicas"].as_array().expect("replicas list");
    assert_eq!(replicas.len(), 2);
    assert_eq!(replicas[0]["kind"], "local");
    assert_eq!(replicas[0]["parts"][0]["size"], 33554432u64);
    assert_eq!(replicas[0]["parts"][0]["path"], "/dev/shm/pmem101.part0");
    assert_eq!(replicas[1]["kind"], "remote");
    assert_eq!(replicas[1]["user"], "alice");
    assert_eq!(replicas[1]["host"], "node2");
    assert_eq!(replicas[1]["port"], Value::Null);
    assert_eq!(replicas[1]["descriptor"], "target.poolset");
}

#[test]
fn json_options_and_ipv6_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write_set(
        &dir,
        b"PMEMPOOLSET\nOPTION SINGLEHDR\n1G /a\nREPLICA [::1]:7636 d.set\n",
    );
    let out = pmempool(&["poolset", "--json", &f]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(v["options"], serde_json::json!(["SINGLEHDR"]));
    assert_eq!(v["replicas"][1]["host"], "::1");
    assert_eq!(v["replicas"][1]["port"], 7636);
    assert_eq!(v["replicas"][1]["user"], Value::Null);
}

#[test]
fn invalid_file_exits_1_with_located_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write_set(&dir, b"PMEMPOOLSET\n1G /a\nREPLICA\n1G relative/b\n");
    let out = pmempool(&["poolset", &f]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr,
        format!("{f}:4:4: error: incorrect path 'relative/b': a part path must be absolute (start with '/')\n")
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn warnings_go_to_stderr_and_do_not_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write_set(&dir, b"PMEMPOOLSET\n100K /a\n");
    let out = pmempool(&["poolset", "--json", &f]);
    assert_eq!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "{f}:2:1: warning: part size 102400 bytes is below"
        )),
        "{stderr}"
    );
    serde_json::from_slice::<Value>(&out.stdout).expect("stdout stays pure JSON");
}

#[test]
fn unreadable_file_exits_1_with_clear_error() {
    let out = pmempool(&["poolset", "/nonexistent/pool.set"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/pool.set: cannot read the poolset file"),
        "{stderr}"
    );
    let out = pmempool(&["poolset", "/"]);
    assert_eq!(out.status.code(), Some(1), "a directory is not a poolset");
}

#[test]
fn not_utf8_file_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write_set(&dir, b"PMEMPOOLSET\n1G /caf\xe9\n");
    let out = pmempool(&["poolset", &f]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with(&format!("{f}:2:8: error: ")),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn rpmemd_mode() {
    let target = example("target.poolset");
    let out = pmempool(&["poolset", "--rpmemd", target.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let initiator = example("pmem101.poolset");
    let initiator = initiator.to_str().expect("utf-8");
    let out = pmempool(&["poolset", "--rpmemd", initiator]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!("{initiator}:5:1: error: a pool set served by rpmemd cannot have replicas\n")
    );
}

#[test]
fn help_explains_with_an_example() {
    let out = pmempool(&["poolset", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for needle in [
        "Example",
        "REPLICA alice@node2:target.poolset",
        "--json",
        "--rpmemd",
        "Exit status",
    ] {
        assert!(help.contains(needle), "help lacks {needle}:\n{help}");
    }
    let out = pmempool(&["--help"]);
    assert!(text(&out.stdout).contains("poolset"));
    let out = pmempool(&["poolset"]);
    assert_eq!(out.status.code(), Some(64), "missing FILE is a usage error");
}
