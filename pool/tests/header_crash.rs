//! Crash images of the header update path, proven with the recording persister: whatever
//! subset of the not-yet-durable stores survives, the header region reads back as exactly the
//! old or the new header, never as anything else and never as unreadable.

use pool::crash::{Enumerate, Recorder};
use pool::header::{self, PartHeader, Uuid, HEADER_REGION_BYTES};
use pool::persist::Flags;
use pool::region::Persister;

fn sample(layout: &str) -> PartHeader {
    let mut h = PartHeader::zeroed();
    h.signature = header::SIGNATURE;
    h.major.set(header::MAJOR);
    h.poolset_uuid = Uuid::new_v4().unwrap().0;
    h.uuid = Uuid::new_v4().unwrap().0;
    h.part_count.set(1);
    h.replica_count.set(1);
    h.set_arch();
    h.set_layout(layout).unwrap();
    h
}

fn opts() -> Enumerate {
    Enumerate {
        samples: 400,
        ..Enumerate::default()
    }
}

#[test]
fn update_leaves_old_or_new_header() {
    let r = Recorder::new(HEADER_REGION_BYTES);
    let old = sample("old");
    r.set_capture(false);
    header::write_region(&r, 0, &old, 1).unwrap();
    r.set_capture(true);
    r.clear_history();

    let mut new = old.clone();
    new.set_layout("new").unwrap();
    new.next_repl_uuid = Uuid::new_v4().unwrap().0;
    header::write_region(&r, 0, &new, 2).unwrap();
    assert_eq!(
        r.fences(),
        2 + 2,
        "set-up and update: two slot writes each, one fence each"
    );

    let n = r
        .check_crash_images(&opts(), |img| {
            let read = header::decode_region(img).map_err(|e| format!("unreadable: {e}"))?;
            match (read.header.seq.get(), read.header.layout_name()) {
                (1, "old") | (2, "new") => Ok(()),
                other => Err(format!("unexpected header {other:?}")),
            }
        })
        .unwrap_or_else(|f| panic!("{f}"));
    // Only the words that differ between old and new are uncertain, so this is exhaustive.
    assert!(n > 10, "only {n} images checked");
    eprintln!("checked {n} crash images of the header update");
}

#[test]
fn creation_leaves_no_header_or_the_new_one() {
    let r = Recorder::new(HEADER_REGION_BYTES);
    header::write_region(&r, 0, &sample("fresh"), 1).unwrap();
    // ~13 non-zero words per slot: 2^13 images per fence, enumerated exhaustively.
    let all = Enumerate {
        exhaustive_max: 1 << 14,
        ..opts()
    };
    r.check_crash_images(&all, |img| match header::decode_region(img) {
        Ok(read) if read.header.layout_name() == "fresh" => Ok(()),
        Ok(read) => Err(format!("wrong header {:?}", read.header)),
        // A crash during creation leaves no pool: that must be an error, never a wrong header.
        Err(_) => Ok(()),
    })
    .unwrap_or_else(|f| panic!("{f}"));
    // And after the last fence the header is durable.
    let read = header::decode_region(&r.durable_image()).unwrap();
    assert_eq!(read.header.layout_name(), "fresh");
}

/// The checker is not vacuous: an update that writes both slots before one fence can lose
/// both, and the crash enumeration finds that.
#[test]
fn broken_update_protocol_is_caught() {
    let r = Recorder::new(HEADER_REGION_BYTES);
    let old = sample("old");
    header::write_region(&r, 0, &old, 1).unwrap();
    r.clear_history();
    let mut new = old.clone();
    new.set_layout("new").unwrap();
    new.seq.set(2);
    new.seal();
    use zerocopy::IntoBytes;
    r.memcpy_persist(0, new.as_bytes(), Flags::NO_DRAIN)
        .unwrap();
    r.memcpy_persist(2048, new.as_bytes(), Flags::NO_DRAIN)
        .unwrap();
    r.drain().unwrap();
    let res = r.check_crash_images(
        &Enumerate {
            seed: Some(7),
            ..opts()
        },
        |img| {
            header::decode_region(img)
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    );
    let fail = res.expect_err("tearing both slots must be found");
    assert_eq!(
        fail.fence, 2,
        "the crash is before the single fence of the broken update"
    );
}
