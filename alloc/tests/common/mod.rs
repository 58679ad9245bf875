//! Shared helpers for palloc's integration tests.
#![allow(dead_code)]

use palloc::{CreateOptions, Heap, Options};
use pool::persist::{FlushPath, Flusher};
use pool::region::MappedRegion;
use std::sync::Arc;

/// An anonymous mapping with the plain `clflush` path (always available on x86-64).
pub fn region(len: usize) -> Arc<MappedRegion> {
    let map = memmap2::MmapMut::map_anon(len).expect("anonymous mapping");
    Arc::new(MappedRegion::from_mmap(
        map,
        Flusher::with_path(FlushPath::Clflush).expect("clflush exists on x86-64"),
    ))
}

/// Small layout for tests: 16 KiB chunks, 4 lanes with 1 KiB redo logs and a 256-byte extra.
pub fn small() -> CreateOptions {
    CreateOptions {
        chunk_size: 16 << 10,
        zone_max_chunks: 65528,
        lane_count: 4,
        lane_redo_bytes: 1024,
        lane_extra_bytes: 256,
    }
}

/// Objects as (off, type, usable) sorted by offset.
pub fn objects<P: pool::Persister + ?Sized>(h: &Heap<P>) -> Vec<(u64, u64, u64)> {
    h.objects()
        .map(|o| (o.off, o.type_num, o.usable_size))
        .collect()
}

/// Check the heap and panic with the problems if any; also compare with the heap's stats.
pub fn assert_consistent<P: pool::Persister + ?Sized>(h: &Heap<P>) {
    let r = palloc::check(&**h.persister()).expect("heap header readable");
    assert!(r.is_ok(), "checker: {:?}", r.problems);
    assert!(
        r.pending_logs.is_empty(),
        "pending logs {:?}",
        r.pending_logs
    );
    let s = h.stats();
    assert_eq!(s.objects, r.objects, "stats vs checker objects");
    assert_eq!(
        s.allocated_bytes, r.allocated_bytes,
        "stats vs checker bytes"
    );
    assert_eq!(s.runs, r.runs, "stats vs checker runs");
    assert_eq!(s.total_chunks, r.chunks);
    assert_eq!(s.free_chunks, r.free_chunks, "stats vs checker free chunks");
}

/// Default open options.
pub fn opts() -> Options {
    Options::default()
}
