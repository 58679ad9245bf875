//! Shared helpers of the command tests: run the real binary, temp dirs in /dev/shm, poolsets,
//! byte surgery on part files.

#![allow(dead_code)]

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn pmempool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pmempool"))
        .args(args)
        .output()
        .expect("run pmempool")
}

/// Run and print everything when the exit code is not `code`.
#[track_caller]
pub fn run_expect(args: &[&str], code: i32) -> Output {
    let out = pmempool(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "pmempool {args:?}\nstdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn shm_dir() -> tempfile::TempDir {
    let base = if Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    tempfile::Builder::new()
        .prefix("pmempool-test")
        .tempdir_in(base)
        .expect("temp dir")
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Write a poolset file `name` in `dir` from `lines` (after the PMEMPOOLSET line).
pub fn write_set(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    let mut t = String::from("PMEMPOOLSET\n");
    for l in lines {
        t.push_str(l);
        t.push('\n');
    }
    std::fs::write(&path, t).expect("write poolset");
    path
}

pub fn read_at(path: &Path, off: u64, len: usize) -> Vec<u8> {
    let f = std::fs::File::open(path).expect("open part");
    let mut b = vec![0u8; len];
    f.read_exact_at(&mut b, off).expect("read part");
    b
}

pub fn write_at(path: &Path, off: u64, data: &[u8]) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open part for writing");
    f.write_all_at(data, off).expect("write part");
}

/// XOR one byte of a file.
pub fn flip(path: &Path, off: u64) {
    let b = read_at(path, off, 1)[0];
    write_at(path, off, &[b ^ 0x5a]);
}

/// All bytes of every file listed.
pub fn snapshot(files: &[&Path]) -> Vec<Vec<u8>> {
    files
        .iter()
        .map(|f| std::fs::read(f).expect("read file"))
        .collect()
}

pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).expect("valid JSON on stdout")
}

/// Bytes of the header region in front of the user area of a single-file pool.
pub const HDR: u64 = 4096;

/// The heap header of a single-file pool.
pub fn heap_header(pool: &Path) -> palloc::layout::HeapHeader {
    let len = std::fs::metadata(pool).unwrap().len() - HDR;
    let raw: [u8; palloc::layout::HEAP_HEADER_BYTES] =
        read_at(pool, HDR, palloc::layout::HEAP_HEADER_BYTES)
            .try_into()
            .unwrap();
    palloc::layout::HeapHeader::decode(&raw, len).expect("heap header decodes")
}
