//! On-media layout of the heap: header, lanes, zones, chunk headers, run headers, allocation
//! headers. Pure encode/decode and geometry; no I/O policy. Byte maps: `docs/FORMAT.md`,
//! "Heap and redo log". All integers are little-endian.

use crate::ulog;

/// "RSPMHEAP".
pub const HEAP_SIGNATURE: [u8; 8] = *b"RSPMHEAP";
/// Heap format major version.
pub const HEAP_MAJOR: u32 = 1;
/// Bytes reserved at offset 0 for the heap header (the header proper is the first 64).
pub const HEAP_HEADER_AREA: usize = 4096;
/// Bytes of the checksummed heap header.
pub const HEAP_HEADER_BYTES: usize = 64;
/// Offset of the user slots: 8-byte words upper layers own (e.g. the root object's offset).
pub const USER_SLOTS_OFF: usize = 64;
/// Number of user slots.
pub const USER_SLOTS: usize = 8;
/// "RSPMZONE" as a little-endian u64, at offset 0 of each zone header.
pub const ZONE_MAGIC: u64 = u64::from_le_bytes(*b"RSPMZONE");
/// Bytes of a zone header before its chunk headers.
pub const ZONE_HEADER_BYTES: usize = 64;
/// Page alignment of zones and chunk areas.
pub const PAGE: usize = 4096;
/// PMDK's chunk count per zone (a 16 GiB zone of 256 KiB chunks).
pub const ZONE_MAX_CHUNKS_DEFAULT: u32 = 65528;
/// Default chunk size.
pub const CHUNK_SIZE_DEFAULT: u64 = 256 << 10;
/// Smallest chunk size accepted.
pub const CHUNK_SIZE_MIN: u64 = 4096;
/// Bytes of the allocation header in front of every object.
pub const ALLOC_HEADER_BYTES: u64 = 16;
/// Bytes of a run header before its bitmap.
pub const RUN_HEADER_BYTES: usize = 64;

/// Chunk header type: first chunk of a free span.
pub const CHUNK_FREE: u16 = 1;
/// Chunk header type: first chunk of a span holding one large object.
pub const CHUNK_USED: u16 = 2;
/// Chunk header type: a run of small blocks (always one chunk).
pub const CHUNK_RUN: u16 = 3;

/// Encode a chunk header word.
pub fn chunk_header(kind: u16, size_idx: u32) -> u64 {
    kind as u64 | (size_idx as u64) << 32
}

/// Decode a chunk header word: (type, flags, size_idx).
pub fn decode_chunk_header(w: u64) -> (u16, u16, u32) {
    (w as u16, (w >> 16) as u16, (w >> 32) as u32)
}

/// The fixed part of the heap, chosen at create and stored in the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapHeader {
    /// Bytes of the persister the heap was created in (the heap never uses more).
    pub heap_size: u64,
    /// Chunk size (power of two, at least 4 KiB).
    pub chunk_size: u64,
    /// Maximum chunks in one zone.
    pub zone_max_chunks: u32,
    /// Number of lanes.
    pub lane_count: u32,
    /// Bytes of each lane's redo log.
    pub lane_redo_bytes: u32,
    /// Bytes of each lane's area for upper layers (e.g. the transaction undo log).
    pub lane_extra_bytes: u32,
}

/// Why a heap header does not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// All-zero signature.
    NoHeap,
    /// A field is wrong.
    Field(&'static str, String),
}

impl HeapHeader {
    /// Encode the 64-byte header (checksum included).
    pub fn encode(&self) -> [u8; HEAP_HEADER_BYTES] {
        let mut b = [0u8; HEAP_HEADER_BYTES];
        b[0..8].copy_from_slice(&HEAP_SIGNATURE);
        b[8..12].copy_from_slice(&HEAP_MAJOR.to_le_bytes());
        // 12..16 incompat flags: none defined.
        b[16..24].copy_from_slice(&self.heap_size.to_le_bytes());
        b[24..32].copy_from_slice(&self.chunk_size.to_le_bytes());
        b[32..36].copy_from_slice(&self.zone_max_chunks.to_le_bytes());
        b[36..40].copy_from_slice(&self.lane_count.to_le_bytes());
        b[40..44].copy_from_slice(&self.lane_redo_bytes.to_le_bytes());
        b[44..48].copy_from_slice(&self.lane_extra_bytes.to_le_bytes());
        // 48..56 reserved.
        let crc = crc32fast::hash(&b);
        b[56..60].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decode and validate a header read from a persister of `len` bytes.
    pub fn decode(b: &[u8; HEAP_HEADER_BYTES], len: u64) -> Result<HeapHeader, HeaderError> {
        let f = |name, msg: String| Err(HeaderError::Field(name, msg));
        if b[0..8] == [0u8; 8] {
            return Err(HeaderError::NoHeap);
        }
        if b[0..8] != HEAP_SIGNATURE {
            return f("signature", format!("{:?}", &b[0..8]));
        }
        let mut z = *b;
        z[56..60].fill(0);
        let stored = u32::from_le_bytes([b[56], b[57], b[58], b[59]]);
        if crc32fast::hash(&z) != stored {
            return f(
                "checksum",
                format!("stored {stored:#010x} does not match the header"),
            );
        }
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(x)
        };
        if u32_at(8) != HEAP_MAJOR {
            return f(
                "major",
                format!("{} (this build reads {HEAP_MAJOR})", u32_at(8)),
            );
        }
        if u32_at(12) != 0 {
            return f("incompat", format!("unknown flags {:#x}", u32_at(12)));
        }
        if u64_at(48) != 0 || u32_at(60) != 0 {
            return f("reserved", "not zero".into());
        }
        let h = HeapHeader {
            heap_size: u64_at(16),
            chunk_size: u64_at(24),
            zone_max_chunks: u32_at(32),
            lane_count: u32_at(36),
            lane_redo_bytes: u32_at(40),
            lane_extra_bytes: u32_at(44),
        };
        if h.heap_size > len {
            return f(
                "heap_size",
                format!("{} larger than the pool's {len} bytes", h.heap_size),
            );
        }
        h.validate().map_err(|(n, m)| HeaderError::Field(n, m))?;
        // The lanes (redo log + extra area of each) and at least one zone of one chunk must
        // lie inside the heap: everything after open indexes the areas without checking.
        if h.zones().is_empty() {
            let lanes_end =
                HEAP_HEADER_AREA as u64 + u64::from(h.lane_count) * h.lane_bytes() as u64;
            return f(
                "heap_size",
                format!(
                    "{} bytes do not hold the lane area ({} lanes of {} bytes, ending at {lanes_end}) \
                     and one zone of one {}-byte chunk",
                    h.heap_size,
                    h.lane_count,
                    h.lane_bytes(),
                    h.chunk_size
                ),
            );
        }
        Ok(h)
    }

    /// Internal consistency of the parameters (shared by create and open).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !self.chunk_size.is_power_of_two() || self.chunk_size < CHUNK_SIZE_MIN {
            return Err((
                "chunk_size",
                format!(
                    "{} is not a power of two >= {CHUNK_SIZE_MIN}",
                    self.chunk_size
                ),
            ));
        }
        if self.chunk_size > 1 << 30 {
            return Err(("chunk_size", format!("{} above 1 GiB", self.chunk_size)));
        }
        if self.zone_max_chunks == 0 || self.zone_max_chunks > ZONE_MAX_CHUNKS_DEFAULT {
            return Err((
                "zone_max_chunks",
                format!(
                    "{} not in 1..={ZONE_MAX_CHUNKS_DEFAULT}",
                    self.zone_max_chunks
                ),
            ));
        }
        if self.lane_count == 0 || self.lane_count > 1024 {
            return Err(("lane_count", format!("{} not in 1..=1024", self.lane_count)));
        }
        let redo = self.lane_redo_bytes as usize;
        if redo % 64 != 0 || ulog::capacity_for(redo) < 8 || redo > 1 << 20 {
            return Err((
                "lane_redo_bytes",
                format!("{redo}: need a multiple of 64 holding at least 8 entries, at most 1 MiB"),
            ));
        }
        if self.lane_extra_bytes % 64 != 0 || self.lane_extra_bytes > 1 << 24 {
            return Err((
                "lane_extra_bytes",
                format!(
                    "{}: need a multiple of 64, at most 16 MiB",
                    self.lane_extra_bytes
                ),
            ));
        }
        Ok(())
    }

    /// Bytes of one lane.
    pub fn lane_bytes(&self) -> usize {
        self.lane_redo_bytes as usize + self.lane_extra_bytes as usize
    }

    /// Offset of lane `i`'s redo log.
    pub fn lane_off(&self, i: usize) -> usize {
        HEAP_HEADER_AREA + i * self.lane_bytes()
    }

    /// Offset of lane `i`'s extra area.
    pub fn lane_extra_off(&self, i: usize) -> usize {
        self.lane_off(i) + self.lane_redo_bytes as usize
    }

    /// Offset where zones begin.
    pub fn zones_off(&self) -> usize {
        align_up(
            HEAP_HEADER_AREA + self.lane_count as usize * self.lane_bytes(),
            PAGE,
        )
    }

    /// The zones, computed from the parameters alone.
    pub fn zones(&self) -> Vec<Zone> {
        let cs = self.chunk_size as usize;
        let end = self.heap_size as usize;
        let mut off = self.zones_off();
        let mut zones = Vec::new();
        let mut first_chunk = 0usize;
        loop {
            let avail = end.saturating_sub(off);
            let mut n = (avail.saturating_sub(PAGE) / cs).min(self.zone_max_chunks as usize);
            while n > 0 && zone_meta_bytes(n) + n * cs > avail {
                n -= 1;
            }
            if n == 0 {
                break;
            }
            zones.push(Zone {
                off,
                chunks: n,
                chunk_size: cs,
                first_chunk,
            });
            first_chunk += n;
            off += zone_meta_bytes(n) + n * cs;
        }
        zones
    }
}

/// Bytes of a zone's metadata (header + chunk headers), page aligned.
pub fn zone_meta_bytes(chunks: usize) -> usize {
    align_up(ZONE_HEADER_BYTES + 8 * chunks, PAGE)
}

/// Round `x` up to a multiple of `a` (a power of two).
pub fn align_up(x: usize, a: usize) -> usize {
    (x + a - 1) & !(a - 1)
}

/// One zone's geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Zone {
    /// Offset of the zone header.
    pub off: usize,
    /// Chunks in the zone.
    pub chunks: usize,
    /// Chunk size.
    pub chunk_size: usize,
    /// Global index of the zone's first chunk.
    pub first_chunk: usize,
}

impl Zone {
    /// Offset of chunk header `i` (local index).
    pub fn chunk_header_off(&self, i: usize) -> usize {
        self.off + ZONE_HEADER_BYTES + 8 * i
    }
    /// Offset of chunk `i`'s data.
    pub fn chunk_off(&self, i: usize) -> usize {
        self.off + zone_meta_bytes(self.chunks) + i * self.chunk_size
    }
    /// Offset just past the zone.
    pub fn end(&self) -> usize {
        self.chunk_off(self.chunks)
    }
    /// Encode the zone header.
    pub fn encode_header(&self) -> [u8; ZONE_HEADER_BYTES] {
        let mut b = [0u8; ZONE_HEADER_BYTES];
        b[0..8].copy_from_slice(&ZONE_MAGIC.to_le_bytes());
        b[8..12].copy_from_slice(&(self.chunks as u32).to_le_bytes());
        b
    }
}

/// Geometry of a run for a block size within a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunGeom {
    /// Bytes per block (allocation header included).
    pub block_size: u64,
    /// Blocks in the run.
    pub nblocks: u32,
    /// Offset of the first block from the chunk start.
    pub data_off: u32,
}

impl RunGeom {
    /// The geometry for `block_size` in a chunk of `chunk_size`; `None` when not even two
    /// blocks fit.
    pub fn new(block_size: u64, chunk_size: u64) -> Option<RunGeom> {
        if block_size < 32 || block_size % 16 != 0 {
            return None;
        }
        let cs = chunk_size as usize;
        let bs = block_size as usize;
        let mut n = cs.saturating_sub(RUN_HEADER_BYTES + 8) / bs;
        while n > 0 && bitmap_end(n) + n * bs > cs {
            n -= 1;
        }
        (n >= 2).then(|| RunGeom {
            block_size,
            nblocks: n as u32,
            data_off: bitmap_end(n) as u32,
        })
    }

    /// Words in the bitmap.
    pub fn bitmap_words(&self) -> usize {
        (self.nblocks as usize).div_ceil(64)
    }

    /// Encode the run header (bitmap not included).
    pub fn encode(&self) -> [u8; RUN_HEADER_BYTES] {
        let mut b = [0u8; RUN_HEADER_BYTES];
        b[0..8].copy_from_slice(&self.block_size.to_le_bytes());
        b[8..12].copy_from_slice(&self.nblocks.to_le_bytes());
        b[12..16].copy_from_slice(&self.data_off.to_le_bytes());
        b
    }

    /// Decode a run header and check it is the geometry this build computes.
    pub fn decode(b: &[u8; RUN_HEADER_BYTES], chunk_size: u64) -> Result<RunGeom, String> {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[0..8]);
        let block_size = u64::from_le_bytes(x);
        let nblocks = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        let data_off = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
        if b[16..].iter().any(|&v| v != 0) {
            return Err("run header reserved bytes not zero".into());
        }
        let want = RunGeom::new(block_size, chunk_size)
            .ok_or_else(|| format!("run block size {block_size} invalid"))?;
        if want.nblocks != nblocks || want.data_off != data_off {
            return Err(format!(
                "run header says {nblocks} blocks at {data_off}, block size {block_size} gives {} at {}",
                want.nblocks, want.data_off
            ));
        }
        Ok(want)
    }
}

fn bitmap_end(n: usize) -> usize {
    align_up(RUN_HEADER_BYTES + 8 * n.div_ceil(64), 64)
}

/// Encode an allocation header: block bytes (header included) and type number.
pub fn alloc_header(block_bytes: u64, type_num: u64) -> [u8; ALLOC_HEADER_BYTES as usize] {
    let mut b = [0u8; 16];
    b[0..8].copy_from_slice(&block_bytes.to_le_bytes());
    b[8..16].copy_from_slice(&type_num.to_le_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr() -> HeapHeader {
        HeapHeader {
            heap_size: 8 << 20,
            chunk_size: 256 << 10,
            zone_max_chunks: ZONE_MAX_CHUNKS_DEFAULT,
            lane_count: 16,
            lane_redo_bytes: 4096,
            lane_extra_bytes: 8192,
        }
    }

    #[test]
    fn header_round_trips_and_detects_every_byte_flip() {
        let h = hdr();
        let b = h.encode();
        assert_eq!(HeapHeader::decode(&b, 8 << 20), Ok(h));
        for i in 8..HEAP_HEADER_BYTES {
            let mut c = b;
            c[i] ^= 1;
            assert!(HeapHeader::decode(&c, 8 << 20).is_err(), "byte {i}");
        }
        assert_eq!(
            HeapHeader::decode(&[0; 64], 8 << 20),
            Err(HeaderError::NoHeap)
        );
        assert!(matches!(
            HeapHeader::decode(&b, 4 << 20),
            Err(HeaderError::Field("heap_size", _))
        ));
    }

    #[test]
    fn lanes_and_one_zone_must_fit() {
        // Lanes alone past the end (1024 lanes of 8 KiB > 8 MiB), lanes ending exactly at the
        // end, and lanes leaving less than one zone of one chunk: all refused at decode.
        for (lanes, redo, extra) in [(1024, 4096, 4096), (1023, 4096, 4096), (1000, 4096, 4096)] {
            let h = HeapHeader {
                lane_count: lanes,
                lane_redo_bytes: redo,
                lane_extra_bytes: extra,
                ..hdr()
            };
            assert!(h.validate().is_ok());
            match HeapHeader::decode(&h.encode(), 8 << 20) {
                Err(HeaderError::Field("heap_size", m)) => assert!(m.contains("lane"), "{m}"),
                other => panic!("{lanes} lanes: {other:?}"),
            }
        }
    }

    #[test]
    fn zones_fit_and_do_not_overlap() {
        for (size, zmax) in [(8 << 20, 65528), (8 << 20, 5), (3 << 20, 2), (1 << 20, 7)] {
            let h = HeapHeader {
                heap_size: size,
                zone_max_chunks: zmax,
                chunk_size: 64 << 10,
                ..hdr()
            };
            let zones = h.zones();
            assert!(!zones.is_empty());
            let mut off = h.zones_off();
            for z in &zones {
                assert_eq!(z.off, off);
                assert!(z.chunks <= zmax as usize);
                assert_eq!(z.chunk_off(0) % PAGE, 0);
                off = z.end();
            }
            assert!(off <= size as usize);
            // Not enough left for another chunk.
            assert!(size as usize - off < PAGE + (64 << 10));
        }
    }

    #[test]
    fn run_geometry_fits_a_chunk() {
        for cs in [4096u64, 16 << 10, 256 << 10] {
            for bs in (32..=cs / 2).step_by(16) {
                let Some(g) = RunGeom::new(bs, cs) else {
                    continue;
                };
                assert!(g.data_off as u64 + g.nblocks as u64 * bs <= cs);
                assert_eq!(g.data_off % 64, 0);
                assert_eq!(RunGeom::decode(&g.encode(), cs), Ok(g));
            }
        }
        assert_eq!(RunGeom::new(24, 4096), None);
        assert_eq!(RunGeom::new(4096, 4096), None);
    }
}
