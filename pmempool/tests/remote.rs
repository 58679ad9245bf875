//! Remote replicas end to end with a real rpmemd (local transport: RPMEM_TRANSPORT=local,
//! RPMEMD_PATH = a wrapper giving rpmemd its configuration): create, info (attributes, and the
//! data with --compare), check finds a damaged remote replica and --repair resyncs it, sync
//! recreates a deleted one, transform adds and removes remote replicas.

mod common;

use common::*;

#[test]
fn remote_replica_create_info_check_repair_sync_transform() {
    let d = testkit::shm_tempdir();
    let site = RemoteSite::new(d.path());
    let remote = site.poolset("r.set", 10);
    let primary = d.path().join("p0");
    let set = write_set(
        d.path(),
        "pool.set",
        &[
            format!("8M {}", primary.display()),
            "REPLICA localhost:r.set".into(),
        ],
    );
    site.expect(&["create", s(&set)], 0);
    let pool_size = (8 << 20) - HDR as usize;
    let same = |remote: &std::path::Path| {
        read_at(&primary, HDR, pool_size) == read_at(remote, REMOTE_DATA_OFFSET, pool_size)
    };
    assert!(same(&remote), "create filled the remote replica");

    // info: attributes always, data with --compare.
    let out = site.expect(&["info", s(&set)], 0);
    let t = text(&out.stdout);
    assert!(
        t.contains("replica 1 (remote): node localhost, descriptor r.set — attributes agree"),
        "{t}"
    );
    let out = site.expect(&["info", "--compare", "--json", s(&set)], 0);
    let v = json(&out);
    let r1 = &v["replicas"][1];
    assert_eq!(r1["kind"], "remote");
    assert!(
        r1["health"].as_str().unwrap().starts_with("healthy"),
        "{r1}"
    );
    assert_eq!(r1["data_diff"], serde_json::json!([]));
    site.expect(&["check", s(&set)], 0);

    // A byte of the remote replica's data changed behind rpmemd's back.
    flip(&remote, REMOTE_DATA_OFFSET + 123_456);
    let out = site.expect(&["info", "--compare", s(&set)], 0);
    assert!(text(&out.stdout)
        .contains("data differs from the primary in 1 range(s), 1 bytes, first at 0x1e240"));
    let out = site.expect(&["check", s(&set)], 2);
    let t = text(&out.stdout);
    assert!(
        t.contains("replica 1 (remote localhost:r.set): data differs")
            && t.contains("[repairable: resync from the primary]"),
        "{t}"
    );
    let out = site.expect(&["check", "--repair", "--yes", s(&set)], 1);
    assert!(
        text(&out.stdout).contains("now consistent"),
        "{}",
        text(&out.stdout)
    );
    assert!(same(&remote), "repair copied the primary's bytes");

    // The remote pool's part deleted: check says so, sync recreates and fills it.
    std::fs::remove_file(&remote).unwrap();
    let out = site.expect(&["check", s(&set)], 2);
    assert!(
        text(&out.stdout).contains("replica 1 (remote localhost:r.set)"),
        "{}",
        text(&out.stdout)
    );
    let out = site.expect(&["sync", s(&set)], 0);
    assert!(
        text(&out.stdout).contains("replica 1 (remote localhost:r.set): rebuilt"),
        "{}",
        text(&out.stdout)
    );
    assert!(same(&remote));
    site.expect(&["check", s(&set)], 0);

    // transform: add a second remote replica, then remove the first one.
    let remote2 = site.poolset("r2.set", 10);
    let two = write_set(
        d.path(),
        "two.set",
        &[
            format!("8M {}", primary.display()),
            "REPLICA localhost:r.set".into(),
            "REPLICA localhost:r2.set".into(),
        ],
    );
    let out = site.expect(&["transform", "--dry-run", s(&set), s(&two)], 0);
    assert!(text(&out.stdout).contains("add replica 2: remote localhost:r2.set"));
    assert!(!remote2.exists());
    site.expect(&["transform", s(&set), s(&two)], 0);
    assert!(same(&remote2));
    site.expect(&["check", s(&two)], 0);
    let only2 = write_set(
        d.path(),
        "only2.set",
        &[
            format!("8M {}", primary.display()),
            "REPLICA localhost:r2.set".into(),
        ],
    );
    site.expect(&["transform", s(&two), s(&only2)], 0);
    assert!(
        !remote.exists(),
        "the removed remote pool was removed by rpmemd"
    );
    assert!(
        site.sets.join("r.set").exists(),
        "its poolset file stays on the node"
    );
    site.expect(&["check", s(&only2)], 0);
    let out = site.expect(&["info", "--compare", s(&only2)], 0);
    assert!(
        text(&out.stdout).contains("healthy (attributes agree, data equal to the primary)"),
        "{}",
        text(&out.stdout)
    );
}
