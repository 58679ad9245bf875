//! Read-only heap consistency checker (the heap part of `pmempool check`).
//!
//! Walks the on-media structures without opening the heap and without writing: the header,
//! every lane's redo log, every zone header, every chunk header (so every chunk is accounted
//! for exactly once and spans cannot overlap), every run header and bitmap, and the allocation
//! header of every live object. Problems are collected, not returned at the first one.

use crate::heap::tail_bits;
use crate::layout::{self, HeapHeader, RunGeom, ALLOC_HEADER_BYTES};
use crate::ulog::{self, LogState};
use crate::Error;
use pool::Persister;

/// What the checker found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Inconsistencies, each naming where.
    pub problems: Vec<String>,
    /// Lanes holding a complete redo log not yet replayed (open will replay it; the counts
    /// below describe the heap before the replay).
    pub pending_logs: Vec<usize>,
    /// Zones.
    pub zones: usize,
    /// All chunks.
    pub chunks: u64,
    /// Free chunks.
    pub free_chunks: u64,
    /// Chunks that are runs.
    pub runs: u64,
    /// Chunks in spans holding large objects.
    pub span_chunks: u64,
    /// Live objects.
    pub objects: u64,
    /// Sum of the usable sizes of live objects.
    pub allocated_bytes: u64,
}

impl CheckReport {
    /// True when no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Check the heap in `p`. Errors only when there is no readable heap header at all.
pub fn check<P: Persister + ?Sized>(p: &P) -> Result<CheckReport, Error> {
    let len = p.len() as u64;
    if len < layout::HEAP_HEADER_AREA as u64 {
        return Err(Error::TooSmall {
            len,
            need: layout::HEAP_HEADER_AREA as u64,
        });
    }
    let mut raw = [0u8; layout::HEAP_HEADER_BYTES];
    p.read(0, &mut raw);
    let hdr = HeapHeader::decode(&raw, len).map_err(|e| match e {
        layout::HeaderError::NoHeap => Error::NoHeap,
        layout::HeaderError::Field(field, detail) => Error::BadHeader { field, detail },
    })?;
    let mut r = CheckReport::default();
    for lane in 0..hdr.lane_count as usize {
        match ulog::inspect(p, hdr.lane_off(lane), hdr.lane_redo_bytes as usize) {
            Ok(LogState::Committed { .. }) => r.pending_logs.push(lane),
            Ok(_) => {}
            Err(e) => r.problems.push(format!("lane {lane}: {e}")),
        }
    }
    let zones = hdr.zones();
    r.zones = zones.len();
    for (zi, z) in zones.iter().enumerate() {
        r.chunks += z.chunks as u64;
        let mut zh = [0u8; layout::ZONE_HEADER_BYTES];
        p.read(z.off, &mut zh);
        if zh != z.encode_header() {
            r.problems
                .push(format!("zone {zi} at {:#x}: header invalid", z.off));
            continue;
        }
        let mut i = 0;
        while i < z.chunks {
            let w = p.read_u64(z.chunk_header_off(i));
            let (kind, flags, size) = layout::decode_chunk_header(w);
            let size = size as usize;
            let at = format!("zone {zi} chunk {i}");
            if flags != 0 || size == 0 || i + size > z.chunks {
                r.problems.push(format!(
                    "{at}: header {w:#018x} invalid (flags, or size {size} past the zone's {} chunks); rest of zone unchecked",
                    z.chunks
                ));
                break;
            }
            let off = z.chunk_off(i);
            match kind {
                layout::CHUNK_FREE => r.free_chunks += size as u64,
                layout::CHUNK_USED => {
                    r.span_chunks += size as u64;
                    let block = size as u64 * hdr.chunk_size;
                    let stored = p.read_u64(off);
                    if stored != block {
                        r.problems.push(format!(
                            "{at}: object header says {stored} bytes, span has {block}"
                        ));
                    }
                    r.objects += 1;
                    r.allocated_bytes += block - ALLOC_HEADER_BYTES;
                }
                layout::CHUNK_RUN if size == 1 => {
                    r.runs += 1;
                    let mut rh = [0u8; layout::RUN_HEADER_BYTES];
                    p.read(off, &mut rh);
                    match RunGeom::decode(&rh, hdr.chunk_size) {
                        Err(m) => r.problems.push(format!("{at}: {m}")),
                        Ok(g) => {
                            let bits: Vec<u64> = (0..g.bitmap_words())
                                .map(|k| p.read_u64(off + layout::RUN_HEADER_BYTES + 8 * k))
                                .collect();
                            if tail_bits(&bits, g.nblocks) != 0 {
                                r.problems.push(format!(
                                    "{at}: bitmap bits set past block {}",
                                    g.nblocks
                                ));
                            }
                            for b in 0..g.nblocks {
                                if bits[b as usize / 64] & (1 << (b % 64)) == 0 {
                                    continue;
                                }
                                let start =
                                    off + g.data_off as usize + b as usize * g.block_size as usize;
                                let stored = p.read_u64(start);
                                if stored != g.block_size {
                                    r.problems.push(format!(
                                        "{at} block {b}: object header says {stored} bytes, run blocks are {}",
                                        g.block_size
                                    ));
                                }
                                r.objects += 1;
                                r.allocated_bytes += g.block_size - ALLOC_HEADER_BYTES;
                            }
                        }
                    }
                }
                _ => {
                    r.problems.push(format!(
                        "{at}: header {w:#018x} has unknown type {kind} (or a run of {size} chunks); rest of zone unchecked"
                    ));
                    break;
                }
            }
            i += size;
        }
    }
    let counted = r.free_chunks + r.runs + r.span_chunks;
    if r.problems.is_empty() && counted != r.chunks {
        r.problems.push(format!(
            "{counted} chunks accounted for, heap has {}",
            r.chunks
        ));
    }
    Ok(r)
}
