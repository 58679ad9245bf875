//! `pmempool dump`: raw bytes of a pool's user area (the primary replica's data, pool offset 0
//! up to the pool size) or of one object, as `hexdump -C` text or as binary. Read-only: the
//! bytes are those on media, before any recovery an open would do.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use pool::Persister;

use crate::inspect::{replica_image, survey};
use crate::target::{lock_shared, resolve};
use crate::util::{parse_range, parse_size, Failure, Progress};

/// Print raw bytes of a pool's user area (offsets are pool offsets, as palloc and tx use them).
///
/// The user area is the primary replica's data: part data areas concatenated, header regions
/// left out, up to the pool size. Default output is `hexdump -C` style (offset, 16 bytes in hex,
/// ASCII); runs of identical lines are shown as `*`. Nothing is written to the pool.
///
/// Examples:
///
///   $ pmempool dump --range 0-4K /dev/shm/app.pool          # heap header and user slots
///   $ pmempool dump --object 0x52010 /dev/shm/app.pool      # one object's usable bytes
///   $ pmempool dump --binary --range 1M-2M pool.set > slice.bin
///
/// Exit status: 0 dumped, 1 cannot (missing file, pool in use, range outside the pool, not a
/// live object), 64 bad command line.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Byte range START-END (END exclusive), START- or -END; sizes like 4K allowed, or hex 0x...
    #[arg(long, short = 'r')]
    pub range: Option<String>,
    /// Dump the usable bytes of the live object at this pool offset (what tx's PPtr holds).
    #[arg(long, short = 'o', conflicts_with = "range")]
    pub object: Option<String>,
    /// Write raw bytes to stdout instead of text.
    #[arg(long, short = 'b')]
    pub binary: bool,
    /// Say on stderr what is dumped (pool size, range, object type).
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// Draw the progress bar even when stderr is not a terminal.
    #[arg(long)]
    pub progress: bool,
    /// The pool file or poolset file.
    pub file: PathBuf,
}

fn parse_num(s: &str) -> Result<u64, String> {
    let t = s.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).map_err(|_| format!("{s:?}: not a hex number")),
        None => parse_size(t),
    }
}

fn parse_any_range(s: &str) -> Result<(u64, Option<u64>), String> {
    if s.contains("0x") || s.contains("0X") {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("range {s:?}: expected START-END"))?;
        let start = if a.is_empty() { 0 } else { parse_num(a)? };
        let end = if b.is_empty() {
            None
        } else {
            Some(parse_num(b)?)
        };
        if end.is_some_and(|e| e <= start) {
            return Err(format!("range {s:?}: end is not after start"));
        }
        Ok((start, end))
    } else {
        parse_range(s)
    }
}

/// Run `pmempool dump`.
pub fn run(a: &Args) -> Result<u8, Failure> {
    let fail = |m: String| Failure::new(1, m);
    let t = resolve(&a.file).map_err(fail)?;
    let _locks = lock_shared(&t.set).map_err(fail)?;
    let s = survey(&t.set);
    let pool_size = s.pool_size().ok_or_else(|| {
        fail(format!(
            "{}: the primary's part-0 header is unusable, so the pool size is unknown (see pmempool check)",
            a.file.display()
        ))
    })?;
    let mut img = match replica_image(&t.set, s.primary_parts()) {
        Some(Ok(i)) => i,
        Some(Err(e)) => return Err(fail(e)),
        None => {
            return Err(fail(format!(
                "{}: the primary replica has missing or mis-sized parts (see pmempool check)",
                a.file.display()
            )))
        }
    };
    img.truncate(pool_size as usize);
    let (start, end) = if let Some(o) = &a.object {
        let off = parse_num(o).map_err(|e| fail(format!("--object {e}")))?;
        // Opening the heap in memory only (recovery lands in the image's overlay, not the file).
        let img = Arc::new(img);
        let heap = palloc::Heap::open(img.clone(), palloc::Options::default())
            .map_err(|e| fail(format!("{}: heap: {e}", a.file.display())))?;
        let info = heap
            .object(off)
            .map_err(|e| fail(format!("--object {o}: {e}")))?;
        drop(heap);
        if a.verbose {
            eprintln!(
                "object at {:#x}: type {:#018x}, {} usable bytes",
                info.off, info.type_num, info.usable_size
            );
        }
        let img = Arc::try_unwrap(img).map_err(|_| fail("internal: image still shared".into()))?;
        return dump(&img, info.off, info.off + info.usable_size, a);
    } else if let Some(r) = &a.range {
        parse_any_range(r).map_err(|e| fail(format!("--range {e}")))?
    } else {
        (0, None)
    };
    let end = end.unwrap_or(pool_size);
    if end > pool_size {
        return Err(fail(format!(
            "--range ends at {end}, past the pool's {pool_size} bytes"
        )));
    }
    dump(&img, start, end, a)
}

fn dump(img: &crate::image::Image, start: u64, end: u64, a: &Args) -> Result<u8, Failure> {
    if a.verbose {
        eprintln!(
            "pool size {} bytes; dumping pool offsets {start:#x}..{end:#x} ({} bytes)",
            img.len(),
            end - start
        );
    }
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let mut bar = Progress::new("dump", end - start, true, a.progress);
    const CHUNK: u64 = 1 << 20;
    let mut off = start;
    let mut prev: Option<[u8; 16]> = None;
    let mut starred = false;
    let mut buf = vec![0u8; CHUNK as usize];
    let io = |e: std::io::Error| Failure::new(1, format!("stdout: {e}"));
    while off < end {
        let n = (end - off).min(CHUNK) as usize;
        img.read(off as usize, &mut buf[..n]);
        if a.binary {
            out.write_all(&buf[..n]).map_err(io)?;
        } else {
            for (k, line) in buf[..n].chunks(16).enumerate() {
                let at = off + 16 * k as u64;
                let full: Option<[u8; 16]> = line.try_into().ok();
                if full.is_some() && full == prev && at + 16 < end {
                    if !starred {
                        writeln!(out, "*").map_err(io)?;
                        starred = true;
                    }
                    continue;
                }
                starred = false;
                prev = full;
                write_line(&mut out, at, line).map_err(io)?;
            }
        }
        off += n as u64;
        bar.set(off - start);
    }
    if !a.binary {
        writeln!(out, "{end:08x}").map_err(io)?;
    }
    out.flush().map_err(io)?;
    bar.finish();
    if let Some(e) = img.io_error() {
        return Err(Failure::new(1, e));
    }
    Ok(0)
}

fn write_line(out: &mut impl Write, at: u64, line: &[u8]) -> std::io::Result<()> {
    let mut s = format!("{at:08x} ");
    for i in 0..16 {
        if i == 8 {
            s.push(' ');
        }
        match line.get(i) {
            Some(b) => s.push_str(&format!(" {b:02x}")),
            None => s.push_str("   "),
        }
    }
    s.push_str("  |");
    for &b in line {
        s.push(if (0x20..0x7f).contains(&b) {
            b as char
        } else {
            '.'
        });
    }
    s.push('|');
    writeln!(out, "{s}")
}
