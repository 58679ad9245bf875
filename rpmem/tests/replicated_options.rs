//! Remote replicas of pools with poolset options and several parts (issue 7: "pools with
//! remote replicas support what local ones do"): a SINGLEHDR primary of two parts replicated to
//! a two-part SINGLEHDR remote pool, and to a NOHDRS remote pool. Data persisted through the
//! primary reads back byte-exact from rpmemd after a reopen, and a fail-stop open accepts the
//! remote replica again.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use pool::persist::Flags;
use pool::{FailurePolicy, OpenOptions, Persister, Pool};
use rpmem::replica::Connector;

fn pool_with(
    dir: &Path,
    site: &Site,
    remote_text: &str,
    create: bool,
) -> Result<Pool, pool::Error> {
    std::fs::write(site.poolset_dir().join("r.set"), remote_text).unwrap();
    let set_file = dir.join("pool.set");
    std::fs::write(
        &set_file,
        format!(
            "PMEMPOOLSET\nOPTION SINGLEHDR\n2M {}\n2M {}\nREPLICA localhost:r.set\n",
            dir.join("a").display(),
            dir.join("b").display()
        ),
    )
    .unwrap();
    let set = poolset::parse_file(&set_file, poolset::Mode::Initiator)
        .unwrap()
        .set;
    let mut opts = site.local();
    opts.persist_deadline = Duration::from_secs(2);
    let c = Connector::new(opts);
    let f = c.as_fn();
    let o = OpenOptions {
        remote: Some(&f),
        failure_policy: FailurePolicy::FailStop,
        ..OpenOptions::default()
    };
    if create {
        Pool::create(&set, "options", o)
    } else {
        Pool::open(&set, Some("options"), o)
    }
}

fn round_trip(remote_text: impl Fn(&Path) -> String) {
    let dir = testkit::shm_tempdir();
    let site = Site::new();
    let text = remote_text(&site.poolset_dir().join("..").join("parts"));
    std::fs::create_dir_all(site.poolset_dir().join("..").join("parts")).unwrap();
    let p = pool_with(dir.path(), &site, &text, true).unwrap();
    for line in text.lines().filter(|l| l.contains('/')) {
        let part = line.split_whitespace().last().unwrap();
        assert!(Path::new(part).exists(), "rpmemd created {part}");
    }
    let len = p.len();
    let data = pattern(seed(), len);
    p.memcpy_persist(0, &data, Flags::NONE).unwrap();
    drop(p);
    // Reopen fail-stop: the remote replica is accepted as the primary's.
    let p = pool_with(dir.path(), &site, &text, false).expect("reopen with the remote replica");
    let mut primary = vec![0u8; len];
    p.read(0, &mut primary);
    assert!(primary == data, "primary differs after reopen");
    drop(p);
    let back = remote_bytes("r.set", len, &site.local());
    assert!(
        back == data,
        "remote replica differs from the data persisted"
    );
}

#[test]
fn singlehdr_primary_to_a_two_part_singlehdr_remote_pool() {
    round_trip(|parts| {
        format!(
            "PMEMPOOLSET\nOPTION SINGLEHDR\n3M {}\n3M {}\n",
            parts.join("r0").display(),
            parts.join("r1").display()
        )
    });
}

#[test]
fn singlehdr_primary_to_a_nohdrs_remote_pool() {
    round_trip(|parts| {
        format!(
            "PMEMPOOLSET\nOPTION NOHDRS\n6M {}\n",
            parts.join("r0").display()
        )
    });
}
