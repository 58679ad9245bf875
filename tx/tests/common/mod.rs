//! Shared helpers for tx's integration tests.
#![allow(dead_code)]

pub mod prog;

use palloc::CreateOptions;
use pool::persist::{FlushPath, Flusher};
use pool::region::MappedRegion;
use std::sync::Arc;
use tx::TxOptions;

/// An anonymous mapping with the plain `clflush` path (always available on x86-64).
pub fn region(len: usize) -> Arc<MappedRegion> {
    let map = memmap2::MmapMut::map_anon(len).expect("anonymous mapping");
    Arc::new(MappedRegion::from_mmap(
        map,
        Flusher::with_path(FlushPath::Clflush).expect("clflush exists on x86-64"),
    ))
}

/// A recorder holding a crash image, not recording (for opening the pool in it).
pub fn image_recorder(img: &[u8]) -> Arc<pool::crash::Recorder> {
    let r = Arc::new(pool::crash::Recorder::from_image(img));
    r.set_capture(false);
    r
}

/// Small layout: 16 KiB chunks, `lanes` lanes with 1 KiB redo logs and a 512-byte undo area
/// (two 216-byte slots: a transaction of a few dozen bytes commits with a commit record, one
/// of a few hundred bytes already needs overflow blocks and commits with three fences).
pub fn small(lanes: u32) -> TxOptions {
    TxOptions {
        heap: CreateOptions {
            chunk_size: 16 << 10,
            zone_max_chunks: 65528,
            lane_count: lanes,
            lane_redo_bytes: 1024,
            lane_extra_bytes: 512,
        },
        runtime: Default::default(),
    }
}

/// Check the heap and panic with the problems if any.
pub fn assert_heap_ok<P: pool::Persister + ?Sized>(p: &P) {
    let r = palloc::check(p).expect("heap header readable");
    assert!(r.is_ok(), "heap checker: {:?}", r.problems);
}
