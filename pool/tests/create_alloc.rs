//! Create allocates every part (no sparse files) and a full file system is a clear error at
//! create, not a SIGBUS at the first store.

use pool::{Error, Pool};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;

const MIB: u64 = 1 << 20;

#[test]
fn created_parts_are_allocated_not_sparse() {
    let d = testkit::shm_tempdir();
    let path = d.path().join("p");
    let p = Pool::create_file(&path, 4 * MIB, "alloc").unwrap();
    let m = std::fs::metadata(&path).unwrap();
    assert_eq!(m.len(), 4 * MIB);
    assert!(
        m.blocks() * 512 >= 4 * MIB,
        "part is sparse: {} bytes allocated of {}",
        m.blocks() * 512,
        4 * MIB
    );
    drop(p);
}

/// A tmpfs of 4 MiB mounted for the test; unmounted (and its directory removed) on drop.
struct SmallTmpfs {
    dir: tempfile::TempDir,
}

impl SmallTmpfs {
    fn mount() -> Result<SmallTmpfs, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root (mounting a tmpfs needs CAP_SYS_ADMIN)".into());
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4M", "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(SmallTmpfs { dir })
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("WARNING: could not unmount {}", self.dir.path().display());
        }
    }
}

#[test]
fn full_file_system_is_a_clear_error_at_create() {
    let fs = match SmallTmpfs::mount() {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIP full_file_system_is_a_clear_error_at_create: {why}");
            return;
        }
    };
    let path = fs.path().join("big");
    let e = Pool::create_file(&path, 8 * MIB, "full")
        .err()
        .expect("an 8 MiB pool cannot be created on a 4 MiB file system");
    eprintln!("error as reported: {e}");
    assert!(
        matches!(&e, Error::Allocate { size, .. } if *size == 8 * MIB),
        "{e}"
    );
    assert!(e.to_string().contains("No space left"), "{e}");
    assert!(!path.exists(), "failed create leaves no file behind");
    // A pool that fits is fine on the same file system.
    drop(Pool::create_file(&fs.path().join("small"), 2 * MIB, "fits").unwrap());
}
