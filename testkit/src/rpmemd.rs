//! The real rpmemd for end-to-end tests: finding (or building) the binary, and the `PATH` an
//! [`Sshd`](crate::Sshd) gives its sessions so that a remote `rpmemd` command finds it.
//!
//! Finding rpmemd: `RPMEMD_BIN` if set; otherwise the binary is built once per test process
//! with `cargo build -p rpmemd` into `<target-dir>/e2e-rpmemd` — a separate target directory,
//! because the outer `cargo test` holds the lock of its own one while tests run (trybuild's
//! approach). The first run pays for one extra build; later runs are a no-op build.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The rpmemd binary: `RPMEMD_BIN` if set, else built once into `<target-dir>/e2e-rpmemd`.
///
/// Panics (failing the calling test) with cargo's stderr when the build fails, or when the
/// test executable does not live in `<target>/<profile>/deps`.
pub fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("RPMEMD_BIN") {
            return PathBuf::from(p);
        }
        // <target>/<profile>/deps/<test>-xxxx -> <target>
        let exe = std::env::current_exe().expect("test executable path");
        let target = exe
            .parent()
            .and_then(Path::parent)
            .and_then(Path::parent)
            .expect("test executable lives in <target>/<profile>/deps");
        let dir = target.join("e2e-rpmemd");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        // testkit sits one level below the workspace root, as every crate that uses it.
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let out = Command::new(cargo)
            .args(["build", "--quiet", "-p", "rpmemd", "--bin", "rpmemd"])
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&dir)
            .output()
            .expect("running cargo build -p rpmemd");
        assert!(
            out.status.success(),
            "cargo build -p rpmemd failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir.join("debug").join("rpmemd")
    })
    .clone()
}

/// The `PATH` an sshd gives its sessions so that they find [`binary`]: its directory first,
/// then the usual system directories. Use as
/// `Sshd::builder().set_env("PATH", testkit::rpmemd::session_path())`.
pub fn session_path() -> String {
    let bin = binary();
    let bin_dir = bin.parent().unwrap_or(Path::new("/")).display().to_string();
    format!("{bin_dir}:/usr/local/bin:/usr/bin:/bin")
}
