//! Pool create/open: single files, multi-part poolsets, SINGLEHDR/NOHDRS, local replicas,
//! file locks (also after a crashed holder), and every open error the issue lists.

use pool::header::{self, PartHeader, HEADER_SLOT_BYTES};
use pool::persist::{Flags, FlushPath, Flusher};
use pool::{Error, OpenOptions, Persister, Pool};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use zerocopy::{FromBytes, IntoBytes};

const MIB: u64 = 1 << 20;

fn write_set(d: &Path, body: &str) -> PathBuf {
    let p = d.join("pool.set");
    std::fs::write(&p, format!("PMEMPOOLSET\n{body}")).unwrap();
    p
}

/// Rewrite both header slots of `file` after `edit` (resealed unless `edit` breaks it on purpose).
fn edit_header(file: &Path, reseal: bool, edit: impl Fn(&mut PartHeader)) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .unwrap();
    for slot in 0..2u64 {
        let mut b = vec![0u8; HEADER_SLOT_BYTES];
        f.read_exact_at(&mut b, slot * HEADER_SLOT_BYTES as u64)
            .unwrap();
        let mut h = PartHeader::read_from_bytes(&b).unwrap();
        edit(&mut h);
        if reseal {
            h.seal();
        }
        f.write_all_at(h.as_bytes(), slot * HEADER_SLOT_BYTES as u64)
            .unwrap();
    }
}

#[test]
fn single_file_round_trip() {
    let d = testkit::shm_tempdir();
    let path = d.path().join("p");
    {
        let p = Pool::create_file(&path, 4 * MIB, "demo").unwrap();
        assert_eq!(p.len() as u64, 4 * MIB - 4096);
        p.memcpy_persist(100, b"hello pool", Flags::NONE).unwrap();
        p.write_u64(4096, 42);
        p.persist(4096, 8).unwrap();
        assert_eq!(p.header().unwrap().layout_name(), "demo");
        assert!(!p.is_pmem() || std::env::var("PMEM_IS_PMEM_FORCE").as_deref() == Ok("1"));
    }
    let p = Pool::open_file(&path, Some("demo")).unwrap();
    let mut b = [0u8; 10];
    p.read(100, &mut b);
    assert_eq!(&b, b"hello pool");
    assert_eq!(p.read_u64(4096), 42);
    // Data lives after the 4 KiB header region in the file.
    let mut f = [0u8; 10];
    std::fs::File::open(&path)
        .unwrap()
        .read_exact_at(&mut f, 4096 + 100)
        .unwrap();
    assert_eq!(&f, b"hello pool");
}

#[test]
fn multi_part_is_contiguous_and_parts_hold_their_bytes() {
    let d = testkit::shm_tempdir();
    let a = d.path().join("a");
    let b = d.path().join("b");
    let set = write_set(
        d.path(),
        &format!("2M {}\n3M {}\n", a.display(), b.display()),
    );
    let first_len = 2 * MIB - 4096;
    {
        let p = Pool::create_poolset(&set, "multi").unwrap();
        assert_eq!(p.len() as u64, 5 * MIB - 2 * 4096);
        // A write straddling the part boundary.
        let data: Vec<u8> = (0..8192u32).map(|i| i as u8).collect();
        p.memcpy_persist(first_len as usize - 4096, &data, Flags::NONE)
            .unwrap();
    }
    let fa = std::fs::File::open(&a).unwrap();
    let fb = std::fs::File::open(&b).unwrap();
    let mut x = vec![0u8; 4096];
    fa.read_exact_at(&mut x, 2 * MIB - 4096).unwrap();
    assert_eq!(x[1], 1);
    fb.read_exact_at(&mut x, 4096).unwrap(); // part b's data starts after its header
    assert_eq!(x[0], 0); // byte 4096 of data = 4096 as u8 = 0
    assert_eq!(x[1], 1);
    let p = Pool::open_poolset(&set, Some("multi")).unwrap();
    let mut y = vec![0u8; 8192];
    p.read(first_len as usize - 4096, &mut y);
    assert!(y.iter().enumerate().all(|(i, &v)| v == i as u8));
}

#[test]
fn singlehdr_and_nohdrs() {
    let d = testkit::shm_tempdir();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    let set = write_set(
        d.path(),
        &format!("OPTION SINGLEHDR\n2M {}\n2M {}\n", a.display(), b.display()),
    );
    let p = Pool::create_poolset(&set, "s").unwrap();
    assert_eq!(p.len() as u64, 4 * MIB - 4096);
    assert_eq!(
        p.header().unwrap().incompat.get(),
        header::INCOMPAT_SINGLEHDR
    );
    // K2: part_count counts every part of the replica, headerless ones included (FORMAT.md).
    assert_eq!(p.header().unwrap().part_count.get(), 2);
    assert_eq!(p.header().unwrap().part_index.get(), 0);
    drop(p);
    Pool::open_poolset(&set, None).unwrap();
    // A part dropped from the poolset is named by part_count.
    let fewer = write_set(d.path(), &format!("OPTION SINGLEHDR\n2M {}\n", a.display()));
    let e = expect_err(&fewer, None);
    assert!(
        matches!(
            e,
            Error::Mismatch {
                field: "part_count",
                ..
            }
        ),
        "{e}"
    );

    let d = testkit::shm_tempdir();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    let set = write_set(
        d.path(),
        &format!("OPTION NOHDRS\n2M {}\n2M {}\n", a.display(), b.display()),
    );
    let p = Pool::create_poolset(&set, "n").unwrap();
    assert_eq!(p.len() as u64, 4 * MIB);
    assert!(p.header().is_none());
    p.memcpy_persist(0, b"raw", Flags::NONE).unwrap();
    drop(p);
    let mut x = [0u8; 3];
    std::fs::File::open(&a)
        .unwrap()
        .read_exact_at(&mut x, 0)
        .unwrap();
    assert_eq!(&x, b"raw");
    Pool::open_poolset(&set, None).unwrap();
}

#[test]
fn local_replicas_receive_every_persist_and_are_verified() {
    let d = testkit::shm_tempdir();
    let (a, r1, r2a, r2b) = (
        d.path().join("a"),
        d.path().join("r1"),
        d.path().join("r2a"),
        d.path().join("r2b"),
    );
    let set = write_set(
        d.path(),
        &format!(
            "4M {}\nREPLICA\n4M {}\nREPLICA\n2M {}\n3M {}\n",
            a.display(),
            r1.display(),
            r2a.display(),
            r2b.display()
        ),
    );
    {
        let p = Pool::create_poolset(&set, "rep").unwrap();
        assert_eq!(p.replica_count(), 3);
        let big = vec![0xABu8; 100_000];
        p.memcpy_persist(2 * MIB as usize - 50_000, &big, Flags::NONE)
            .unwrap();
        p.write(10, b"plain");
        p.persist(10, 5).unwrap();
        p.memset_persist(500, 7, 300, Flags::NO_DRAIN).unwrap();
        p.drain().unwrap();
    }
    // Each replica file holds the bytes.
    let mut x = [0u8; 5];
    std::fs::File::open(&r1)
        .unwrap()
        .read_exact_at(&mut x, 4096 + 10)
        .unwrap();
    assert_eq!(&x, b"plain");
    // Replica 2: second part holds the tail of the big write (data offset 2 MiB - 4096 onward).
    let mut y = [0u8; 1];
    std::fs::File::open(&r2b)
        .unwrap()
        .read_exact_at(&mut y, 4096 + 100)
        .unwrap();
    assert_eq!(y[0], 0xAB);
    Pool::open_poolset(&set, Some("rep")).unwrap();

    // Change a byte in replica 1 behind the pool's back: open copies it back from the primary
    // and says so.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&r1)
        .unwrap()
        .write_all_at(&[1], 4096 + 12345)
        .unwrap();
    let p = Pool::open_poolset(&set, None).unwrap();
    assert!(
        p.repaired().len() == 1 && p.repaired()[0].contains("offset 12345"),
        "{:?}",
        p.repaired()
    );
    assert!(p.verify_replicas().unwrap().is_empty());
}

#[test]
fn replica_smaller_than_primary_is_refused() {
    let d = testkit::shm_tempdir();
    let set = write_set(
        d.path(),
        &format!(
            "4M {}\nREPLICA\n2M {}\n",
            d.path().join("a").display(),
            d.path().join("b").display()
        ),
    );
    let e = Pool::create_poolset(&set, "x").err().unwrap();
    assert!(
        matches!(e, Error::ReplicaTooSmall { replica: 1, .. }),
        "{e}"
    );
    assert!(
        !d.path().join("a").exists(),
        "failed create removes its files"
    );
}

#[test]
fn every_flush_path_works_through_a_pool() {
    for path in FlushPath::ALL {
        let Ok(f) = Flusher::with_path(path) else {
            eprintln!("SKIP {path:?}: CPU lacks it");
            continue;
        };
        let d = testkit::shm_tempdir();
        let file = d.path().join("p");
        let text = format!("PMEMPOOLSET\n2M {}\n", file.display());
        let set = poolset::parse_bytes("x.set", text.as_bytes(), poolset::Mode::Initiator)
            .unwrap()
            .set;
        let opts = OpenOptions {
            flusher: Some(f),
            ..OpenOptions::default()
        };
        let p = Pool::create(&set, "paths", opts).unwrap();
        let data: Vec<u8> = (0..70_000u32).map(|i| (i * 31) as u8).collect();
        for flags in [Flags::NONE, Flags::NONTEMPORAL, Flags::TEMPORAL] {
            p.memcpy_persist(3, &data, flags).unwrap();
            let mut back = vec![0u8; data.len()];
            p.read(3, &mut back);
            assert_eq!(back, data, "{path:?} {flags:?}");
        }
        drop(p);
        let mut x = vec![0u8; data.len()];
        std::fs::File::open(&file)
            .unwrap()
            .read_exact_at(&mut x, 4096 + 3)
            .unwrap();
        assert_eq!(x, data);
    }
}

fn expect_err(set: &Path, layout: Option<&str>) -> Error {
    match Pool::open_poolset(set, layout) {
        Ok(_) => panic!("open succeeded"),
        Err(e) => {
            eprintln!("error as reported: {e}");
            e
        }
    }
}

fn two_part_pool() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let d = testkit::shm_tempdir();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    let set = write_set(
        d.path(),
        &format!("2M {}\n2M {}\n", a.display(), b.display()),
    );
    Pool::create_poolset(&set, "layout-a").unwrap();
    (d, set, a, b)
}

#[test]
fn open_errors_name_what_is_wrong() {
    // Wrong signature.
    let (_d, set, a, _b) = two_part_pool();
    edit_header(&a, true, |h| h.signature = *b"NOTAPOOL");
    let e = expect_err(&set, None);
    assert!(e.to_string().contains("signature"), "{e}");

    // Unsupported version.
    let (_d, set, a, _b) = two_part_pool();
    edit_header(&a, true, |h| h.major.set(9));
    assert!(expect_err(&set, None)
        .to_string()
        .contains("major: format version 9"));

    // Unknown incompat flag.
    let (_d, set, _a, b) = two_part_pool();
    edit_header(&b, true, |h| h.incompat.set(0x40));
    let e = expect_err(&set, None);
    assert!(
        e.to_string().contains("incompat") && e.to_string().contains("0x40"),
        "{e}"
    );

    // K3: unknown read-only-compatible flag: no writable open, the bits are named.
    let (_d, set, _a, b) = two_part_pool();
    edit_header(&b, true, |h| h.ro_compat.set(0x4));
    let e = expect_err(&set, None);
    assert!(
        matches!(e, Error::RoCompat { unknown: 0x4, .. }) && e.to_string().contains("0x4"),
        "{e}"
    );

    // Bad checksum (field changed without resealing).
    let (_d, set, a, _b) = two_part_pool();
    edit_header(&a, false, |h| h.crtime.set(h.crtime.get() + 1));
    assert!(expect_err(&set, None).to_string().contains("checksum"));

    // Layout mismatch.
    let (_d, set, _a, _b) = two_part_pool();
    let e = expect_err(&set, Some("layout-b"));
    assert!(
        e.to_string().contains("layout") && e.to_string().contains("layout-a"),
        "{e}"
    );

    // Wrong part order.
    let (d, _set, a, b) = two_part_pool();
    let swapped = write_set(
        d.path(),
        &format!("2M {}\n2M {}\n", b.display(), a.display()),
    );
    let e = expect_err(&swapped, None);
    assert!(
        matches!(
            e,
            Error::Mismatch {
                field: "part_index",
                ..
            }
        ),
        "{e}"
    );

    // UUID links broken: a part from another pool.
    let (_d1, _set1, a1, _b1) = two_part_pool();
    let (d2, _set2, _a2, b2) = two_part_pool();
    let mixed = write_set(
        d2.path(),
        &format!("2M {}\n2M {}\n", a1.display(), b2.display()),
    );
    let e = expect_err(&mixed, None);
    assert!(
        matches!(
            e,
            Error::Mismatch {
                field: "poolset_uuid",
                ..
            }
        ),
        "{e}"
    );
    // Same pool set UUID but a foreign part UUID link.
    let (_d, set, a, _b) = two_part_pool();
    edit_header(&a, true, |h| h.next_part_uuid = [9; 16]);
    let e = expect_err(&set, None);
    assert!(
        matches!(
            e,
            Error::Mismatch {
                field: "next_part_uuid",
                ..
            }
        ),
        "{e}"
    );

    // File too small / size mismatch.
    let (_d, set, _a, b) = two_part_pool();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&b)
        .unwrap()
        .set_len(MIB)
        .unwrap();
    let e = expect_err(&set, None);
    assert!(
        matches!(e, Error::FileTooSmall { actual, expected, .. } if actual == MIB && expected == 2 * MIB),
        "{e}"
    );
    let (_d, set, _a, b) = two_part_pool();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&b)
        .unwrap()
        .set_len(3 * MIB)
        .unwrap();
    assert!(matches!(
        expect_err(&set, None),
        Error::SizeMismatch {
            what: "poolset",
            ..
        }
    ));
    // Header says another part size than the (consistent) file and poolset.
    let (_d, set, a, _b) = two_part_pool();
    edit_header(&a, true, |h| h.part_size.set(8 * MIB));
    assert!(matches!(
        expect_err(&set, None),
        Error::SizeMismatch { what: "header", .. }
    ));

    // Not a pool at all.
    let d = testkit::shm_tempdir();
    let f = d.path().join("zero");
    std::fs::File::create(&f).unwrap().set_len(2 * MIB).unwrap();
    let e = Pool::open_file(&f, None).err().unwrap();
    assert!(e.to_string().contains("no pool here"), "{e}");
}

#[test]
fn one_corrupt_slot_is_repaired_at_open() {
    let (_d, set, a, _b) = two_part_pool();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&a)
        .unwrap()
        .write_all_at(&[0xFF], 700)
        .unwrap();
    let p = Pool::open_poolset(&set, None).unwrap();
    assert_eq!(p.repaired().len(), 1, "{:?}", p.repaired());
    drop(p);
    assert!(Pool::open_poolset(&set, None)
        .unwrap()
        .repaired()
        .is_empty());
}

/// C4: a stale slot is rewritten only after every open check passed; an open that fails (here:
/// wrong layout) leaves the file untouched.
#[test]
fn failed_open_does_not_rewrite_a_stale_slot() {
    let (_d, set, a, _b) = two_part_pool();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&a)
        .unwrap();
    f.write_all_at(&[0xFF], 700).unwrap();
    let mut before = vec![0u8; 4096];
    f.read_exact_at(&mut before, 0).unwrap();
    let e = expect_err(&set, Some("another-layout"));
    assert!(
        matches!(
            e,
            Error::Mismatch {
                field: "layout",
                ..
            }
        ),
        "{e}"
    );
    let mut after = vec![0u8; 4096];
    f.read_exact_at(&mut after, 0).unwrap();
    assert!(before == after, "a failed open rewrote the header region");
    // The right layout opens and repairs.
    let p = Pool::open_poolset(&set, Some("layout-a")).unwrap();
    assert_eq!(p.repaired().len(), 1, "{:?}", p.repaired());
}

#[test]
fn creation_errors() {
    let d = testkit::shm_tempdir();
    let small = write_set(d.path(), &format!("1M {}\n", d.path().join("s").display()));
    assert!(
        matches!(Pool::create_poolset(&small, "x"), Err(Error::PartTooSmall { size, .. }) if size == MIB)
    );
    let odd = write_set(
        d.path(),
        &format!("2098000 {}\n", d.path().join("o").display()),
    );
    assert!(matches!(
        Pool::create_poolset(&odd, "x"),
        Err(Error::PartNotAligned { .. })
    ));
    let f = d.path().join("exists");
    std::fs::write(&f, b"x").unwrap();
    assert!(matches!(
        Pool::create_file(&f, 2 * MIB, "x"),
        Err(Error::Exists { .. })
    ));
    assert!(matches!(
        Pool::create_file(&d.path().join("l"), 2 * MIB, &"l".repeat(64)),
        Err(Error::LayoutName(_))
    ));
    let remote = write_set(
        d.path(),
        &format!(
            "2M {}\nREPLICA user@host remote.set\n",
            d.path().join("r").display()
        ),
    );
    let e = Pool::create_poolset(&remote, "x").err().unwrap();
    assert!(matches!(e, Error::RemoteReplica { replica: 1, .. }), "{e}");
    assert!(!d.path().join("r").exists());
}

/// Open a pool whose holder just closed it. Other tests of this binary spawn children: between
/// fork and exec a child holds a copy of every descriptor, and so briefly of a pool's `flock`
/// (descriptors are close-on-exec, so the copy goes at exec). Retry `Locked` for up to 2 s.
fn open_after_release(path: &Path) -> Pool {
    for _ in 0..200 {
        match Pool::open_file(path, None) {
            Err(Error::Locked { .. }) => std::thread::sleep(std::time::Duration::from_millis(10)),
            other => return other.unwrap(),
        }
    }
    panic!(
        "{}: still locked 2 s after its holder closed it",
        path.display()
    );
}

#[test]
fn second_open_fails_while_first_is_open() {
    let d = testkit::shm_tempdir();
    let path = d.path().join("p");
    let p = Pool::create_file(&path, 2 * MIB, "l").unwrap();
    assert!(matches!(
        Pool::open_file(&path, None),
        Err(Error::Locked { .. })
    ));
    drop(p);
    open_after_release(&path);
}

/// Child half of `crashed_holder_does_not_leave_pool_locked`: opens the pool and waits to die.
#[test]
fn child_holds_pool() {
    let Ok(path) = std::env::var("POOL_TEST_HOLD") else {
        return;
    };
    let _p = Pool::open_file(Path::new(&path), None).unwrap();
    println!("HOLDING");
    std::thread::sleep(std::time::Duration::from_secs(60));
}

#[test]
fn crashed_holder_does_not_leave_pool_locked() {
    let d = testkit::shm_tempdir();
    let path = d.path().join("p");
    drop(Pool::create_file(&path, 2 * MIB, "l").unwrap());
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "child_holds_pool",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("POOL_TEST_HOLD", &path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut holding = false;
    for line in BufReader::new(out).lines() {
        if line.unwrap().contains("HOLDING") {
            holding = true;
            break;
        }
    }
    assert!(holding, "child never opened the pool");
    assert!(matches!(
        Pool::open_file(&path, None),
        Err(Error::Locked { .. })
    ));
    child.kill().unwrap(); // SIGKILL: no destructors run, like a crash
    child.wait().unwrap();
    open_after_release(&path);
}

fn replicated_pool() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let d = testkit::shm_tempdir();
    let (a, r) = (d.path().join("a"), d.path().join("r"));
    let set = write_set(
        d.path(),
        &format!("2M {}\nREPLICA\n2M {}\n", a.display(), r.display()),
    );
    drop(Pool::create_poolset(&set, "rep").unwrap());
    (d, set, a, r)
}

/// C1: a store that was never flushed reaches the primary's file but not the replica (replicas
/// get bytes only on flush). Open must not fail: the primary is authoritative, the differing
/// range is copied to the replica and reported.
#[test]
fn unflushed_store_does_not_break_open_of_a_replicated_pool() {
    let (_d, set, _a, r) = replicated_pool();
    {
        let p = Pool::open_poolset(&set, None).unwrap();
        p.write(0, b"x");
        p.write(70_000, b"yz");
    } // dropped without flush
    let p = Pool::open_poolset(&set, None).unwrap();
    assert_eq!(p.repaired().len(), 1, "{:?}", p.repaired());
    assert!(p.repaired()[0].contains("replica 1"), "{:?}", p.repaired());
    assert!(p.verify_replicas().unwrap().is_empty());
    drop(p);
    let mut x = [0u8; 2];
    let f = std::fs::File::open(&r).unwrap();
    f.read_exact_at(&mut x[..1], 4096).unwrap();
    assert_eq!(&x[..1], b"x");
    f.read_exact_at(&mut x, 4096 + 70_000).unwrap();
    assert_eq!(&x, b"yz");
    assert!(Pool::open_poolset(&set, None)
        .unwrap()
        .repaired()
        .is_empty());
}

/// C1: `verify_replicas` reports differing ranges (by replica and offset) and changes nothing;
/// `skip_data_verify` opens without comparing (and so without repairing).
#[test]
fn verify_replicas_reports_without_repairing() {
    let (_d, set, _a, r) = replicated_pool();
    let rf = std::fs::OpenOptions::new().write(true).open(&r).unwrap();
    rf.write_all_at(&[1], 4096 + 12345).unwrap();
    rf.write_all_at(&[2, 2, 2], 4096 + 3 * MIB / 2).unwrap();
    let ps = poolset::parse_file(&set, poolset::Mode::Initiator)
        .unwrap()
        .set;
    let opts = OpenOptions {
        skip_data_verify: true,
        ..OpenOptions::default()
    };
    let p = Pool::open(&ps, None, opts).unwrap();
    assert!(p.repaired().is_empty());
    let diffs = p.verify_replicas().unwrap();
    let got: Vec<(usize, u64, u64)> = diffs.iter().map(|d| (d.replica, d.offset, d.len)).collect();
    assert_eq!(got, vec![(1, 12345, 1), (1, 3 * MIB / 2, 3)], "{diffs:?}");
    // Reporting changed nothing.
    assert_eq!(p.verify_replicas().unwrap(), diffs);
    drop(p);
    // A normal open repairs from the primary.
    let p = Pool::open_poolset(&set, None).unwrap();
    assert_eq!(p.repaired().len(), 1, "{:?}", p.repaired());
    assert!(p.verify_replicas().unwrap().is_empty());
}

/// K7: a failed create removes only the files it created. A dangling symlink is not seen by
/// `exists()` but makes `create_new` fail, exactly like a file another process created between
/// a check and the create: it must survive the cleanup.
#[test]
fn failed_create_removes_only_what_it_created() {
    let d = testkit::shm_tempdir();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    std::os::unix::fs::symlink(d.path().join("nowhere"), &b).unwrap();
    let set = write_set(
        d.path(),
        &format!("2M {}\n2M {}\n", a.display(), b.display()),
    );
    let e = Pool::create_poolset(&set, "x").err().unwrap();
    assert!(matches!(e, Error::Exists { .. }), "{e}");
    assert!(!a.exists(), "the part this create made is removed");
    assert!(
        std::fs::symlink_metadata(&b).is_ok(),
        "a file this create did not make was removed"
    );
}

/// K5: a character device is refused clearly (Device DAX sizing is not implemented), not with a
/// misleading size error.
#[test]
fn character_devices_are_refused_clearly() {
    let e = Pool::open_file(Path::new("/dev/zero"), None).err().unwrap();
    assert!(
        matches!(e, Error::CharDevice { dax: false, .. }) && e.to_string().contains("Device DAX"),
        "{e}"
    );
    let d = testkit::shm_tempdir();
    let set = write_set(d.path(), "2M /dev/zero\n");
    let e = expect_err(&set, None);
    assert!(matches!(e, Error::CharDevice { .. }), "{e}");
}

/// T4: the is-pmem decision of a pool, forced in-process both ways (tmpfs refuses MAP_SYNC, so
/// unforced it is "not pmem" here unless the environment forces it).
#[test]
fn is_pmem_can_be_forced_in_process() {
    for force in [Some(true), Some(false)] {
        let d = testkit::shm_tempdir();
        let file = d.path().join("p");
        let text = format!("PMEMPOOLSET\n2M {}\n", file.display());
        let set = poolset::parse_bytes("x.set", text.as_bytes(), poolset::Mode::Initiator)
            .unwrap()
            .set;
        let opts = OpenOptions {
            is_pmem_force: force,
            ..OpenOptions::default()
        };
        let p = Pool::create(&set, "f", opts).unwrap();
        assert_eq!(Some(p.is_pmem()), force);
        assert_eq!(
            p.primary().region().flusher().is_pmem(),
            force.unwrap(),
            "flusher follows the decision"
        );
        p.memcpy_persist(0, b"forced", Flags::NONE).unwrap();
        drop(p);
        let p = Pool::open(&set, None, opts).unwrap();
        assert_eq!(Some(p.is_pmem()), force);
    }
}

/// Child half of `pmem_is_pmem_force_env_is_honoured`.
#[test]
fn child_reports_is_pmem() {
    let Ok(path) = std::env::var("POOL_TEST_IS_PMEM") else {
        return;
    };
    let p = Pool::create_file(Path::new(&path), 2 * MIB, "env").unwrap();
    println!("IS_PMEM={}", p.is_pmem());
}

/// T4: `PMEM_IS_PMEM_FORCE` from the real environment (in a child process, so this process's
/// environment stays untouched).
#[test]
fn pmem_is_pmem_force_env_is_honoured() {
    for (value, expect) in [("1", "IS_PMEM=true"), ("0", "IS_PMEM=false")] {
        let d = testkit::shm_tempdir();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "child_reports_is_pmem",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("POOL_TEST_IS_PMEM", d.path().join("p"))
            .env("PMEM_IS_PMEM_FORCE", value)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(expect), "PMEM_IS_PMEM_FORCE={value}: {text}");
    }
}

/// T5: the remaining link errors, each named by field and file.
#[test]
fn broken_links_and_foreign_replicas_are_named() {
    let field_and_path = |e: &Error| match e {
        Error::Mismatch { field, path, .. } => Some((*field, path.clone())),
        _ => None,
    };
    // prev_part_uuid of part 0 (its next link is intact).
    let (_d, set, a, _b) = two_part_pool();
    edit_header(&a, true, |h| h.prev_part_uuid = [9; 16]);
    let e = expect_err(&set, None);
    assert_eq!(
        field_and_path(&e),
        Some(("prev_part_uuid", a.clone())),
        "{e}"
    );

    // next_repl_uuid and prev_repl_uuid of the primary of a replicated pool.
    let (_d, set, a, _r) = replicated_pool();
    edit_header(&a, true, |h| h.next_repl_uuid = [5; 16]);
    let e = expect_err(&set, None);
    assert_eq!(
        field_and_path(&e),
        Some(("next_repl_uuid", a.clone())),
        "{e}"
    );
    let (_d, set, _a, r) = replicated_pool();
    edit_header(&r, true, |h| h.prev_repl_uuid = [6; 16]);
    let e = expect_err(&set, None);
    assert_eq!(
        field_and_path(&e),
        Some(("prev_repl_uuid", r.clone())),
        "{e}"
    );

    // A replica of another pool.
    let (_d1, _set1, a1, _r1) = replicated_pool();
    let (d2, _set2, _a2, r2) = replicated_pool();
    let mixed = write_set(
        d2.path(),
        &format!("2M {}\nREPLICA\n2M {}\n", a1.display(), r2.display()),
    );
    let e = expect_err(&mixed, None);
    assert_eq!(
        field_and_path(&e),
        Some(("poolset_uuid", r2.clone())),
        "{e}"
    );
    assert!(e.to_string().contains(&r2.display().to_string()), "{e}");
}

/// A flush covers whole cache lines on the primary, so a word stored next to the flushed one in
/// the same line is durable there too; replicas must receive the same whole lines (palloc's redo
/// log flushes one word per line).
#[test]
fn replicas_receive_whole_flushed_cache_lines() {
    let (_d, set, _a, r) = replicated_pool();
    let ps = poolset::parse_file(&set, poolset::Mode::Initiator)
        .unwrap()
        .set;
    let opts = OpenOptions {
        skip_data_verify: true,
        ..OpenOptions::default()
    };
    {
        let p = Pool::open(&ps, None, opts).unwrap();
        p.write_u64(128, 0x1111);
        p.write_u64(128 + 56, 0x2222); // same 64-byte line, last word
        p.write_u64(4096 - 8, 0x3333); // last word before a page boundary
        p.persist(128, 8).unwrap();
        p.persist(4096 - 8, 8).unwrap();
    }
    let p = Pool::open(&ps, None, opts).unwrap();
    assert!(p.verify_replicas().unwrap().is_empty());
    drop(p);
    let mut word = [0u8; 8];
    let f = std::fs::File::open(&r).unwrap();
    f.read_exact_at(&mut word, 4096 + 128 + 56).unwrap();
    assert_eq!(u64::from_le_bytes(word), 0x2222);
}
