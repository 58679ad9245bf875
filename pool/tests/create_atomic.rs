//! Single-file pool creation is atomic: a process killed (SIGKILL) at any moment while creating
//! pools leaves every path either absent or a complete pool that opens, plus at most temporary
//! files that the next create of the same path removes; create then succeeds (absent path) or
//! refuses clearly (complete pool). Also: the stale temporary-file cleanup rules, publish never
//! replacing a file, the in-place create (size 0, as PMDK) and the errors for a header-less
//! file.
//!
//! The killed child is this test binary re-executed on [`child_creates_pools`] with
//! `POOL_CREATE_CHILD_DIR` set; the kill times are random from a printed seed
//! (`POOL_CREATE_KILL_SEED` replays a run).

use pool::pool::{remove_stale_stages, stage_path};
use pool::{Error, Persister, Pool};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
const LAYOUT: &str = "atomic";
/// Pools one child creates, one after the other, until it is killed.
const POOLS_PER_CHILD: usize = 40;
const CHILD_ENV: &str = "POOL_CREATE_CHILD_DIR";

fn pool_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("p{i}.pool"))
}

/// Not a test of its own: the body of the child process that `kill_during_create` kills. Run
/// without `POOL_CREATE_CHILD_DIR` (the normal test run) it does nothing.
#[test]
fn child_creates_pools() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let mut out = std::io::stdout();
    for i in 0..POOLS_PER_CHILD {
        let p = Pool::create_file(&pool_path(&dir, i), 2 * MIB, LAYOUT).expect("child: create");
        drop(p);
        // Reported only once the create returned: the parent checks it exists.
        writeln!(out, "created {i}").unwrap();
        out.flush().unwrap();
    }
}

/// xorshift64*: the kill times, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn spawn_child(dir: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_creates_pools",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child")
}

fn temp_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".creating-"))
        .collect()
}

#[test]
fn kill_during_create() {
    let seed = testkit::seed("POOL_CREATE_KILL_SEED");
    // xorshift needs a non-zero state.
    let mut rng = Rng(seed | 1);

    // Calibrate: how long a child takes to create all its pools, unkilled.
    let d = testkit::shm_tempdir();
    let started = Instant::now();
    let out = spawn_child(d.path()).wait_with_output().unwrap();
    let full = started.elapsed();
    assert!(out.status.success(), "calibration child failed");
    for i in 0..POOLS_PER_CHILD {
        drop(Pool::open_file(&pool_path(d.path(), i), Some(LAYOUT)).unwrap());
    }
    assert!(
        temp_files(d.path()).is_empty(),
        "a complete run leaves no temporary file"
    );
    println!("calibration: {POOLS_PER_CHILD} creates in {full:?}");

    let rounds = 30;
    let budget = Duration::from_secs(12);
    let t0 = Instant::now();
    let (mut absent_total, mut leftovers_total, mut done_rounds) = (0, 0, 0);
    for round in 0..rounds {
        if t0.elapsed() > budget {
            break;
        }
        let d = testkit::shm_tempdir();
        let dir = d.path();
        let delay = Duration::from_micros(rng.next() % (full.as_micros() as u64).max(1));
        let mut child = spawn_child(dir);
        std::thread::sleep(delay);
        child.kill().unwrap();
        let out = child.wait_with_output().unwrap();
        let acked: Vec<usize> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("created ")?.parse().ok())
            .collect();
        let ctx = format!("round {round} (POOL_CREATE_KILL_SEED={seed}, kill after {delay:?})");
        let leftovers = temp_files(dir);
        assert!(
            leftovers.len() <= 1,
            "{ctx}: one create at a time, yet temporary files {leftovers:?}"
        );
        leftovers_total += leftovers.len();
        for i in 0..POOLS_PER_CHILD {
            let path = pool_path(dir, i);
            if !path.exists() {
                assert!(
                    !acked.contains(&i),
                    "{ctx}: pool {i} was acknowledged but is absent"
                );
                absent_total += 1;
                // Nothing there: create succeeds, removing the killed create's temporary file.
                let p = Pool::create_file(&path, 2 * MIB, LAYOUT)
                    .unwrap_or_else(|e| panic!("{ctx}: create of absent pool {i}: {e}"));
                drop(p);
            } else {
                // Present: a complete pool, and create refuses it clearly.
                drop(
                    Pool::open_file(&path, Some(LAYOUT)).unwrap_or_else(|e| {
                        panic!("{ctx}: pool {i} exists but does not open: {e}")
                    }),
                );
                match Pool::create_file(&path, 2 * MIB, LAYOUT) {
                    Err(Error::Exists { path: p }) => assert_eq!(p, path),
                    Err(e) => panic!("{ctx}: create over pool {i}: unexpected error {e}"),
                    Ok(_) => panic!("{ctx}: create over the complete pool {i} succeeded"),
                }
            }
            drop(Pool::open_file(&path, Some(LAYOUT)).unwrap());
        }
        assert!(
            temp_files(dir).is_empty(),
            "{ctx}: temporary files survive the creates that followed: {:?}",
            temp_files(dir)
        );
        done_rounds += 1;
    }
    println!(
        "{done_rounds} kills: {absent_total} pools absent after a kill (then created), \
         {leftovers_total} temporary files left by a kill (then removed)"
    );
    assert!(done_rounds >= 5, "too few rounds ran in the time budget");
}

/// A child process that has exited and been reaped: its pid names no process (until the
/// kernel reuses it, which does not happen within this test's moments).
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

fn temp_name(dest: &Path, pid: u32, seq: u64) -> PathBuf {
    let name = dest.file_name().unwrap().to_string_lossy();
    dest.with_file_name(format!(".{name}.creating-{pid}-{seq}"))
}

#[test]
fn stale_temporary_files_are_removed_only_when_their_creator_is_gone() {
    let d = testkit::shm_tempdir();
    let dest = d.path().join("app.pool");
    let dead = temp_name(&dest, dead_pid(), 0);
    let mine = temp_name(&dest, std::process::id(), 999);
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let live = temp_name(&dest, sleeper.id(), 0);
    // Creator gone, but someone holds the file's lock: left alone.
    let locked = temp_name(&dest, dead_pid(), 1);
    let other = d.path().join(".other.pool.creating-1-1");
    let odd = d.path().join(".app.pool.creating-xyz");
    for p in [&dead, &mine, &live, &locked, &other, &odd] {
        std::fs::write(p, b"partial").unwrap();
    }
    let lock_holder = std::fs::File::open(&locked).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor owned by `lock_holder`.
    assert_eq!(
        unsafe { libc::flock(lock_holder.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );

    let removed = remove_stale_stages(&dest).unwrap();
    assert_eq!(removed, vec![dead.clone()]);
    assert!(!dead.exists());
    for p in [&mine, &live, &locked, &other, &odd] {
        assert!(p.exists(), "{} was removed", p.display());
    }

    // The lock gone too: a create of the path removes it and says so.
    drop(lock_holder);
    let p = Pool::create_file(&dest, 2 * MIB, LAYOUT).unwrap();
    assert!(
        p.repaired()
            .iter()
            .any(|r| r.contains(&locked.display().to_string()) && r.contains("interrupted create")),
        "{:?}",
        p.repaired()
    );
    assert!(!locked.exists());
    assert!(
        live.exists() && mine.exists(),
        "files of live creators are kept"
    );
    drop(p);
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    // Its creator is gone now.
    assert_eq!(remove_stale_stages(&dest).unwrap(), vec![live.clone()]);

    // A fresh temporary name is in the same directory and matches the cleanup's pattern.
    let t = stage_path(&dest).unwrap();
    assert_eq!(t.parent(), dest.parent());
    assert!(t
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with(".app.pool.creating-"));
}

#[test]
fn staged_pool_appears_only_at_publish_and_never_replaces_a_file() {
    let d = testkit::shm_tempdir();
    let dest = d.path().join("s.pool");
    let (p, staged) = Pool::create_file_staged(&dest, 2 * MIB, LAYOUT).unwrap();
    let temp = staged.temp_path().to_path_buf();
    assert!(temp.exists() && !dest.exists());
    // Stores into the pool before publish are in the published file.

    p.memcpy_persist(100, b"before publish", pool::persist::Flags::NONE)
        .unwrap();
    drop(p);
    staged.publish().unwrap();
    assert!(!temp.exists());
    let p = Pool::open_file(&dest, Some(LAYOUT)).unwrap();
    let mut buf = [0u8; 14];
    p.read(100, &mut buf);
    assert_eq!(&buf, b"before publish");
    drop(p);

    // Dropped unpublished: the temporary file goes, nothing appears.
    let dest2 = d.path().join("t.pool");
    let (p, staged) = Pool::create_file_staged(&dest2, 2 * MIB, LAYOUT).unwrap();
    let temp = staged.temp_path().to_path_buf();
    drop(p);
    drop(staged);
    assert!(!temp.exists() && !dest2.exists());

    // A file that appears at the destination meanwhile is never replaced.
    let (p, staged) = Pool::create_file_staged(&dest2, 2 * MIB, LAYOUT).unwrap();
    let temp = staged.temp_path().to_path_buf();
    std::fs::write(&dest2, b"someone else's").unwrap();
    let e = staged.publish().err().unwrap();
    assert!(matches!(e, Error::Exists { .. }), "{e}");
    drop(p);
    assert_eq!(std::fs::read(&dest2).unwrap(), b"someone else's");
    assert!(
        !temp.exists(),
        "the losing create's temporary file is removed"
    );

    // Two creates of one path: exactly one wins, the other reports Exists.
    let dest3 = d.path().join("race.pool");
    let (pa, a) = Pool::create_file_staged(&dest3, 2 * MIB, LAYOUT).unwrap();
    let (pb, b) = Pool::create_file_staged(&dest3, 2 * MIB, LAYOUT).unwrap();
    a.publish().unwrap();
    assert!(matches!(b.publish(), Err(Error::Exists { .. })));
    drop((pa, pb));
    drop(Pool::open_file(&dest3, Some(LAYOUT)).unwrap());
    assert!(temp_files(d.path()).is_empty());
}

#[test]
fn a_header_less_file_is_named_as_such_and_can_become_a_pool_in_place() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let d = testkit::shm_tempdir();
    let f = d.path().join("zero.pool");
    std::fs::File::create(&f).unwrap().set_len(4 * MIB).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    let ino = std::fs::metadata(&f).unwrap().ino();

    // Open: says what is wrong and what to do.
    let e = Pool::open_file(&f, None).err().unwrap();
    assert!(matches!(e, Error::NotAPool { .. }), "{e:?}");
    let msg = e.to_string();
    for want in [
        "not a pool",
        "no pool here",
        "remove it and create",
        "size 0",
    ] {
        assert!(msg.contains(want), "{want:?} missing from: {msg}");
    }
    // Create with a size: refuses the existing file, naming the way out.
    let e = Pool::create_file(&f, 4 * MIB, LAYOUT).err().unwrap();
    assert!(matches!(e, Error::Exists { .. }), "{e:?}");
    assert!(e.to_string().contains("remove it"), "{e}");

    // Create with size 0 (PMDK: use the existing file): the pool is made inside it.
    let p = Pool::create_file(&f, 0, LAYOUT).unwrap();
    assert_eq!(p.len() as u64, 4 * MIB - 4096);
    drop(p);
    drop(Pool::open_file(&f, Some(LAYOUT)).unwrap());
    let m = std::fs::metadata(&f).unwrap();
    assert_eq!(m.ino(), ino, "the user's file is kept, not replaced");
    assert_eq!(m.mode() & 0o777, 0o600);

    // Size 0 again: it already holds a pool.
    let e = Pool::create_file(&f, 0, LAYOUT).err().unwrap();
    assert!(
        matches!(&e, Error::InPlace { why, .. } if why.contains("already holds a pool")),
        "{e}"
    );

    // Size 0: other data in the header region is never overwritten.
    let junk = d.path().join("junk");
    let mut bytes = vec![0u8; 2 * MIB as usize];
    bytes[10] = 1;
    std::fs::write(&junk, &bytes).unwrap();
    let e = Pool::create_file(&junk, 0, LAYOUT).err().unwrap();
    assert!(
        matches!(&e, Error::InPlace { why, .. } if why.contains("not zero")),
        "{e}"
    );
    assert_eq!(std::fs::read(&junk).unwrap(), bytes);

    // Size 0: an empty file, a missing file.
    let empty = d.path().join("empty");
    std::fs::File::create(&empty).unwrap();
    let e = Pool::create_file(&empty, 0, LAYOUT).err().unwrap();
    assert!(
        matches!(&e, Error::InPlace { why, .. } if why.contains("0 bytes")),
        "{e}"
    );
    let e = Pool::create_file(&d.path().join("missing"), 0, LAYOUT)
        .err()
        .unwrap();
    assert!(
        matches!(&e, Error::InPlace { why, .. } if why.contains("does not exist")),
        "{e}"
    );
    // An empty pre-created file with a size: PMDK refuses an existing file (EEXIST).
    assert!(matches!(
        Pool::create_file(&empty, 2 * MIB, LAYOUT),
        Err(Error::Exists { .. })
    ));
}
