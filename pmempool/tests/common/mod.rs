//! Shared helpers of the command tests: run the real binary, poolsets, byte surgery on part
//! files. Temp dirs on tmpfs come from [`testkit::shm_tempdir`].

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

/// `pool.set` in `dir`: a primary of two 8 MiB parts `a0`, `a1` and a local replica of one
/// 16 MiB part `b0`.
pub fn two_parts_and_a_replica(dir: &Path) -> PathBuf {
    let p = |n: &str| dir.join(n);
    write_set(
        dir,
        "pool.set",
        &[
            format!("8M {}", p("a0").display()),
            format!("8M {}", p("a1").display()),
            "REPLICA".into(),
            format!("16M {}", p("b0").display()),
        ],
    )
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

/// A target "node" on this host: rpmemd's poolset directory, its parts directory, and a wrapper
/// script that runs rpmemd with its configuration (for `RPMEMD_PATH`, local transport). The
/// rpmemd binary comes from [`testkit::rpmemd::binary`].
pub struct RemoteSite {
    pub sets: PathBuf,
    pub parts: PathBuf,
    pub wrapper: PathBuf,
}

/// Offset of remote pool offset 0 in a remote part file: the part header region (4096) plus
/// rpmemd's attribute area (4096); see docs/PROTOCOL.md "Target side".
pub const REMOTE_DATA_OFFSET: u64 = 8192;

impl RemoteSite {
    pub fn new(base: &Path) -> RemoteSite {
        use std::os::unix::fs::PermissionsExt;
        let site = base.join("site");
        let sets = site.join("sets");
        let parts = site.join("parts");
        std::fs::create_dir_all(&sets).unwrap();
        std::fs::create_dir_all(&parts).unwrap();
        let conf = site.join("rpmemd.conf");
        std::fs::write(
            &conf,
            format!(
                "poolset-dir = {}\nuse-syslog = no\nlog-file = -\nlog-level = info\n",
                sets.display()
            ),
        )
        .unwrap();
        let wrapper = site.join("rpmemd.sh");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec {} -c {} \"$@\"\n",
                testkit::rpmemd::binary().display(),
                conf.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        RemoteSite {
            sets,
            parts,
            wrapper,
        }
    }

    /// A remote pool set `name` of one part of `mib` MiB; returns the part's path.
    pub fn poolset(&self, name: &str, mib: u64) -> PathBuf {
        let part = self.parts.join(format!("{name}.part0"));
        std::fs::write(
            self.sets.join(name),
            format!("PMEMPOOLSET\n{mib}M {}\n", part.display()),
        )
        .unwrap();
        part
    }

    /// Run pmempool with the local transport pointed at this site's rpmemd.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_pmempool"))
            .args(args)
            .env("RPMEM_TRANSPORT", "local")
            .env("RPMEMD_PATH", &self.wrapper)
            .output()
            .expect("run pmempool")
    }

    /// As [`run`](Self::run), printing everything when the exit code is not `code`.
    #[track_caller]
    pub fn expect(&self, args: &[&str], code: i32) -> Output {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "pmempool {args:?}\nstdout:\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }
}
