//! `pmempool info`: everything on media about a pool, read-only — the poolset structure, every
//! header field of every part, replicas and their health, heap statistics, objects per type,
//! lanes with pending logs. Human text by default (sizes in binary units), `--json` for scripts.

use std::path::PathBuf;

use pool::header::{PartHeader, StaleSlot, Uuid};
use serde_json::{json, Value};

use crate::inspect::{
    heap_findings, heap_survey, pool_findings, replica_image, survey, Area, Finding, Fix,
    HeapSurvey, PartSurvey, ReplicaSurvey, Survey,
};
use crate::remote::{check_remotes, RemoteCheck, RemoteStatus};
use crate::target::{lock_shared, resolve, Target};
use crate::util::{Failure, Progress};

/// Show what is on media in a pool file or a poolset's parts, without changing anything.
///
/// Reads every part's header region (both slots), checks the headers against each other as open
/// would, compares every local replica's data with the primary's, and reads the heap as an open
/// would see it after recovery (recovery runs in memory only: nothing is written). Takes shared
/// locks on the part files, so it refuses a pool another process has open.
///
/// Examples:
///
///   $ pmempool info /dev/shm/app.pool
///   $ pmempool info -v pool.set           # every lane, the raw header slots
///   $ pmempool info --json pool.set | jq '.heap.types'
///
/// Exit status: 0 shown (even when the pool is damaged: use pmempool check to judge it),
/// 1 cannot be read at all (missing file, bad poolset, pool in use), 64 bad command line.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Print JSON instead of text: {"file", "poolset", "options", "pool_size", "replicas":
    /// [{"index", "kind", "parts": [{"path", "size", "header": {FIELD: VALUE, ...}, "slots"}],
    /// "health"}], "heap": {..., "lanes": [...]}, "problems": [...]}; sizes in bytes.
    #[arg(long)]
    pub json: bool,
    /// More detail: every lane, and the state of both header slots of every part.
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// Skip the comparison of local replicas' data with the primary (it reads the whole pool).
    #[arg(long)]
    pub no_data_compare: bool,
    /// Also read remote replicas whole over rpmem and compare them with the primary (their
    /// attributes are always checked).
    #[arg(long)]
    pub compare: bool,
    /// Draw progress bars even when stderr is not a terminal.
    #[arg(long)]
    pub progress: bool,
    /// The pool file or poolset file.
    pub file: PathBuf,
}

fn u(x: [u8; 16]) -> String {
    Uuid(x).to_string()
}

/// Every field of a header as (name, JSON value, human text).
pub fn header_fields(h: &PartHeader) -> Vec<(&'static str, Value, String)> {
    let sig = String::from_utf8_lossy(&h.signature).into_owned();
    let n = |v: u64| (json!(v), v.to_string());
    let x = |v: u64| (json!(v), format!("{v:#x}"));
    let sz = |v: u64| (json!(v), format!("{} ({v})", poolset::human_size(v)));
    let id = |v: [u8; 16]| (json!(u(v)), u(v));
    let crtime = h.crtime.get();
    let mut f: Vec<(&'static str, (Value, String))> = vec![
        ("signature", (json!(sig), sig.clone())),
        ("major", n(h.major.get().into())),
        ("compat", x(h.compat.get().into())),
        ("incompat", x(h.incompat.get().into())),
        ("ro_compat", x(h.ro_compat.get().into())),
        ("seq", n(h.seq.get())),
        ("poolset_uuid", id(h.poolset_uuid)),
        ("uuid", id(h.uuid)),
        ("prev_part_uuid", id(h.prev_part_uuid)),
        ("next_part_uuid", id(h.next_part_uuid)),
        ("prev_repl_uuid", id(h.prev_repl_uuid)),
        ("next_repl_uuid", id(h.next_repl_uuid)),
        (
            "crtime",
            (json!(crtime), format!("{crtime} (seconds since the epoch)")),
        ),
        ("alignment_desc", x(h.alignment_desc.get())),
        ("machine_class", n(h.machine_class.into())),
        ("data", n(h.data.into())),
        ("machine", n(h.machine.get().into())),
        (
            "layout",
            (json!(h.layout_name()), format!("{:?}", h.layout_name())),
        ),
        ("part_size", sz(h.part_size.get())),
        ("pool_size", sz(h.pool_size.get())),
        ("part_index", n(h.part_index.get().into())),
        ("part_count", n(h.part_count.get().into())),
        ("replica_index", n(h.replica_index.get().into())),
        ("replica_count", n(h.replica_count.get().into())),
        (
            "stale_replicas",
            (
                json!(h.stale_replicas()),
                if h.stale_replicas().is_empty() {
                    "none".to_string()
                } else {
                    format!("{:?} (these replicas missed updates)", h.stale_replicas())
                },
            ),
        ),
        ("checksum", x(h.checksum.get().into())),
    ];
    f.drain(..).map(|(k, (j, t))| (k, j, t)).collect()
}

fn slot_states(p: &PartSurvey) -> Vec<(usize, String)> {
    match &p.header {
        Some(Ok(r)) => (0..2)
            .map(|s| {
                let st = r.stale.iter().find(|(i, _)| *i == s).map(|(_, w)| match w {
                    StaleSlot::Corrupt(e) => format!("corrupt: {e}"),
                    StaleSlot::Older { seq } => format!("older (seq {seq})"),
                    StaleSlot::Differs => "differs (same seq)".to_string(),
                });
                (s, st.unwrap_or_else(|| "in force".to_string()))
            })
            .collect(),
        Some(Err(e)) => vec![
            (0, format!("unusable: {}", e.slot0)),
            (1, format!("unusable: {}", e.slot1)),
        ],
        None => Vec::new(),
    }
}

/// A replica's data compared with the primary's: the differing (offset, len) ranges, or why it
/// was not compared.
pub type DataDiff = Result<Vec<(u64, u64)>, String>;

/// Everything `info` shows and `check` judges.
pub struct Report {
    /// What was inspected.
    pub target: Target,
    /// Parts and headers.
    pub survey: Survey,
    /// The primary's heap (None when the primary's data cannot be read: see `heap_note`).
    pub heap: Option<HeapSurvey>,
    /// Why the heap was not read.
    pub heap_note: Option<String>,
    /// Per compared local replica (index): the ranges where its data differs from the primary's.
    pub diffs: Vec<(usize, DataDiff)>,
    /// Remote replicas, as found over rpmem.
    pub remotes: Vec<RemoteCheck>,
    /// Everything found wrong, with how it is repaired.
    pub findings: Vec<Finding>,
}

/// Gather the report (read-only). `compare`: compare local replicas' data with the primary's;
/// `compare_remote`: read remote replicas whole over rpmem and compare them too (their
/// attributes are always checked).
pub fn gather(
    path: &std::path::Path,
    compare: bool,
    compare_remote: bool,
    progress: bool,
) -> Result<Report, Failure> {
    let target = resolve(path).map_err(|e| Failure::new(1, e))?;
    let _locks = lock_shared(&target.set).map_err(|e| Failure::new(1, e))?;
    let s = survey(&target.set);
    // The pool crate's own read-only check: headers, links, sizes, stale marks, replica data.
    let mut bar: Option<(usize, Progress)> = None;
    let mut on_progress = |r: usize, done: u64, total: u64| {
        if !matches!(&bar, Some((i, _)) if *i == r) {
            if let Some((_, b)) = bar.take() {
                b.finish();
            }
            bar = Some((
                r,
                Progress::new(&format!("compare replica {r}"), total, true, progress),
            ));
        }
        if let Some((_, b)) = bar.as_mut() {
            b.set(done);
        }
    };
    let v = pool::verify_with(
        &target.set,
        None,
        pool::VerifyOptions {
            compare_data: compare,
            progress: Some(&mut on_progress),
        },
    )
    .map_err(|e| Failure::new(1, e.to_string()))?;
    if let Some((_, b)) = bar.take() {
        b.finish();
    }
    let mut findings = pool_findings(&v.problems);
    let diffs: Vec<(usize, DataDiff)> = v
        .data
        .iter()
        .map(|d| (d.replica, d.result.clone()))
        .collect();
    let pool_size = s.pool_size();
    let primary = match (replica_image(&target.set, s.primary_parts()), pool_size) {
        (Some(Ok(mut img)), Some(ps)) => {
            img.truncate(ps as usize);
            Ok(img)
        }
        (Some(Err(e)), _) => Err(e),
        (None, _) => Err("the primary replica has missing or mis-sized parts".to_string()),
        (_, None) => {
            Err("the primary's part-0 header is unusable, so the pool size is unknown".to_string())
        }
    };
    let marked: Vec<usize> = v
        .problems
        .iter()
        .filter(|p| p.kind == pool::ProblemKind::MarkedStale)
        .map(|p| p.replica)
        .collect();
    let remotes = check_remotes(
        &target.set,
        primary.as_ref().ok(),
        compare_remote,
        &marked,
        progress,
    );
    findings.extend(remote_findings(&remotes));
    let (heap, heap_note) = match primary {
        Ok(img) => {
            let h = heap_survey(img, progress);
            findings.extend(heap_findings(&h));
            (Some(h), None)
        }
        Err(e) => (None, Some(e)),
    };
    Ok(Report {
        target,
        survey: s,
        heap,
        heap_note,
        diffs,
        remotes,
        findings,
    })
}

/// Remote replicas that failed or differ are rebuilt by resync (pmempool sync, check --repair).
fn remote_findings(remotes: &[RemoteCheck]) -> Vec<Finding> {
    let mut out = Vec::new();
    for rc in remotes {
        let name = format!(
            "replica {} (remote {}:{})",
            rc.index, rc.node, rc.descriptor
        );
        match &rc.status {
            RemoteStatus::Failed(e) => out.push(Finding {
                what: format!("{name}: {e}"),
                fix: Fix::Resync,
                area: Area::Data,
            }),
            RemoteStatus::Reachable {
                diff: Some(Ok(d)), ..
            } if !d.is_empty() => out.push(Finding {
                what: format!(
                    "{name}: data differs from the primary in {} range(s) ({} bytes, first at offset {:#x})",
                    d.len(),
                    d.iter().map(|x| x.1).sum::<u64>(),
                    d[0].0
                ),
                fix: Fix::Resync,
                area: Area::Data,
            }),
            _ => {}
        }
    }
    out
}

/// Run `pmempool info`.
pub fn run(a: &Args) -> Result<u8, Failure> {
    let r = gather(&a.file, !a.no_data_compare, a.compare, a.progress)?;
    if a.json {
        println!("{:#}", to_json(&r));
    } else {
        print!("{}", to_text(&r, a.verbose));
    }
    Ok(0)
}

fn health(r: &Report, index: usize, parts: &[PartSurvey]) -> String {
    let bad_parts = parts
        .iter()
        .filter(|p| !p.size_ok() || matches!(p.header, Some(Err(_))) || p.read_error.is_some())
        .count();
    let stale_slots: usize = parts
        .iter()
        .map(|p| match &p.header {
            Some(Ok(h)) => h.stale.len(),
            _ => 0,
        })
        .sum();
    let mut v = Vec::new();
    let marked = r
        .survey
        .primary_parts()
        .first()
        .and_then(|p| p.hdr())
        .is_some_and(|h| h.stale_replicas().contains(&index));
    if marked {
        v.push("STALE (marked in the primary's header; run pmempool sync)".to_string());
    }
    if bad_parts > 0 {
        v.push(format!("{bad_parts} unusable part(s)"));
    }
    if stale_slots > 0 {
        v.push(format!("{stale_slots} stale header slot(s)"));
    }
    match r.diffs.iter().find(|(i, _)| *i == index) {
        Some((_, Ok(d))) if !d.is_empty() => {
            let bytes: u64 = d.iter().map(|x| x.1).sum();
            v.push(format!(
                "data differs from the primary in {} range(s), {bytes} bytes, first at {:#x}",
                d.len(),
                d[0].0
            ));
        }
        Some((_, Err(e))) => v.push(format!("data not compared: {e}")),
        _ => {}
    }
    if v.is_empty() {
        if index == 0 {
            "healthy".into()
        } else if r.diffs.iter().any(|(i, _)| *i == index) {
            "healthy (data equal to the primary)".into()
        } else {
            "headers healthy (data not compared)".into()
        }
    } else {
        v.join("; ")
    }
}

fn remote_health(r: &Report, index: usize) -> String {
    let marked = r
        .survey
        .primary_parts()
        .first()
        .and_then(|p| p.hdr())
        .is_some_and(|h| h.stale_replicas().contains(&index));
    let mut s = r
        .remotes
        .iter()
        .find(|x| x.index == index)
        .map(|x| x.health())
        .unwrap_or_else(|| "not checked".into());
    if marked {
        s = format!("STALE (marked in the primary's header; run pmempool sync); {s}");
    }
    s
}

fn to_text(r: &Report, verbose: bool) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let set = &r.target.set;
    let kind = if r.target.is_poolset {
        "poolset"
    } else {
        "pool file"
    };
    let _ = writeln!(o, "{kind}: {}", r.target.path.display());
    let mut opts = Vec::new();
    if set.options.single_hdr {
        opts.push("SINGLEHDR");
    }
    if set.options.no_hdrs {
        opts.push("NOHDRS");
    }
    let _ = writeln!(
        o,
        "replicas: {}   options: {}   pool size: {}",
        set.replicas.len(),
        if opts.is_empty() {
            "none".to_string()
        } else {
            opts.join(" ")
        },
        r.survey
            .pool_size()
            .map(poolset::human_size)
            .unwrap_or_else(|| "unknown".into())
    );
    for rep in &r.survey.replicas {
        match rep {
            ReplicaSurvey::Local {
                index,
                parts,
                data_bytes,
            } => {
                let role = if *index == 0 { "primary" } else { "replica" };
                let _ = writeln!(
                    o,
                    "\nreplica {index} ({role}, local): {} part(s), {} of data — {}",
                    parts.len(),
                    poolset::human_size(*data_bytes),
                    health(r, *index, parts)
                );
                for p in parts {
                    let size = match &p.size_file {
                        Ok(s) => poolset::human_size(*s),
                        Err(e) => format!("missing ({e})"),
                    };
                    let _ = writeln!(o, "  part {}: {}  {size}", p.part, p.path.display());
                    if !p.has_header {
                        let _ = writeln!(o, "    no header region (SINGLEHDR/NOHDRS)");
                        continue;
                    }
                    if let Some(e) = &p.read_error {
                        let _ = writeln!(o, "    header: {e}");
                    }
                    if verbose || p.hdr().is_none() {
                        for (s, st) in slot_states(p) {
                            let _ = writeln!(o, "    slot {s}: {st}");
                        }
                    }
                    if let Some(h) = p.hdr() {
                        for (k, _, t) in header_fields(h) {
                            let _ = writeln!(o, "    {k:<15} {t}");
                        }
                    }
                }
            }
            ReplicaSurvey::Remote {
                index,
                node,
                descriptor,
            } => {
                let _ = writeln!(
                    o,
                    "\nreplica {index} (remote): node {node}, descriptor {descriptor} — {}",
                    remote_health(r, *index)
                );
                if let Some(RemoteStatus::Reachable { size, .. }) = r
                    .remotes
                    .iter()
                    .find(|x| x.index == *index)
                    .map(|x| &x.status)
                {
                    let _ = writeln!(o, "  remote pool: {}", poolset::human_size(*size));
                }
            }
        }
    }
    let _ = writeln!(o);
    match (&r.heap, &r.heap_note) {
        (Some(h), _) => heap_text(&mut o, h, verbose),
        (None, Some(n)) => {
            let _ = writeln!(o, "heap: not read: {n}");
        }
        _ => {}
    }
    if !r.findings.is_empty() {
        let _ = writeln!(o, "\nproblems (pmempool check judges and repairs them):");
        for f in &r.findings {
            let _ = writeln!(o, "  {}", f.what);
        }
    }
    o
}

fn heap_text(o: &mut String, h: &HeapSurvey, verbose: bool) {
    use std::fmt::Write;
    let hs = poolset::human_size;
    let hh = match &h.header {
        Ok(hh) => hh,
        Err(e) => {
            let _ = writeln!(o, "heap: {e}");
            return;
        }
    };
    let _ = writeln!(
        o,
        "heap: {} in {} zone(s) of {}-chunks; {} lanes (redo {}, extra {})",
        hs(hh.heap_size),
        hh.zones().len(),
        hs(hh.chunk_size),
        hh.lane_count,
        hs(hh.lane_redo_bytes.into()),
        hs(hh.lane_extra_bytes.into())
    );
    match &h.after {
        Ok(a) => {
            let s = &a.stats;
            let _ = writeln!(
                o,
                "  chunks: {} total, {} free ({}), {} runs; {} objects, {} allocated",
                s.total_chunks,
                s.free_chunks,
                hs(s.free_chunks * hh.chunk_size),
                s.runs,
                s.objects,
                hs(s.allocated_bytes)
            );
            match &a.obj {
                Some(m) => {
                    let _ = writeln!(
                        o,
                        "object pool: id {:#018x}, root {}, run generation {}{}",
                        m.pool_id,
                        if m.root_off == 0 {
                            "none".to_string()
                        } else {
                            format!("at {:#x}", m.root_off)
                        },
                        m.run_gen,
                        if m.initialized {
                            ""
                        } else {
                            " (metadata not written yet: the first open writes it)"
                        }
                    );
                }
                None => {
                    let _ = writeln!(
                        o,
                        "object pool: no ({})",
                        a.not_obj.as_deref().unwrap_or("unknown")
                    );
                }
            }
            if !a.types.is_empty() {
                let _ = writeln!(o, "objects per type:");
                for (t, c) in &a.types {
                    let _ = writeln!(
                        o,
                        "  type {:#018x}: {} object(s), {}",
                        t,
                        c.objects,
                        hs(c.bytes)
                    );
                }
            }
            if !a.redo.is_empty() || !a.undo.is_empty() {
                let _ = writeln!(
                    o,
                    "(shown as after the recovery the next open does: {} redo log(s) replayed or discarded, {} transaction(s) rolled back)",
                    a.redo.len(),
                    a.undo.len()
                );
            }
        }
        Err(e) => {
            let _ = writeln!(o, "  {e}");
        }
    }
    let busy: Vec<_> = h
        .lanes
        .iter()
        .filter(|l| verbose || l.redo != "empty" || l.undo_active || l.undo_committed)
        .collect();
    if busy.is_empty() {
        let _ = writeln!(o, "lanes with pending logs: none");
    } else {
        let _ = writeln!(
            o,
            "lanes{}:",
            if verbose { "" } else { " with pending logs" }
        );
        for l in busy {
            let _ = writeln!(
                o,
                "  lane {}: redo {}; undo {} (generation {})",
                l.lane,
                l.redo,
                if l.undo_active {
                    "ACTIVE (transaction in flight)"
                } else if l.undo_committed {
                    "COMMITTED (not yet retired; rolled forward at open)"
                } else {
                    "idle"
                },
                l.undo_generation
            );
        }
    }
}

fn to_json(r: &Report) -> Value {
    let set = &r.target.set;
    let replicas: Vec<Value> = r
        .survey
        .replicas
        .iter()
        .map(|rep| match rep {
            ReplicaSurvey::Local {
                index,
                parts,
                data_bytes,
            } => json!({
                "index": index,
                "kind": "local",
                "data_bytes": data_bytes,
                "health": health(r, *index, parts),
                "data_diff": r.diffs.iter().find(|(i, _)| i == index).map(|(_, d)| match d {
                    Ok(v) => json!(v.iter().map(|(o, l)| json!({"offset": o, "len": l})).collect::<Vec<_>>()),
                    Err(e) => json!({"error": e}),
                }),
                "parts": parts.iter().map(|p| json!({
                    "replica": p.replica,
                    "part": p.part,
                    "path": p.path.to_string_lossy(),
                    "size": p.size_poolset,
                    "file_size": p.size_file.as_ref().ok(),
                    "file_error": p.size_file.as_ref().err(),
                    "has_header": p.has_header,
                    "slots": slot_states(p).into_iter().map(|(s, st)| json!({"slot": s, "state": st})).collect::<Vec<_>>(),
                    "header": p.hdr().map(|h| {
                        let m: serde_json::Map<String, Value> =
                            header_fields(h).into_iter().map(|(k, j, _)| (k.to_string(), j)).collect();
                        Value::Object(m)
                    }),
                })).collect::<Vec<_>>(),
            }),
            ReplicaSurvey::Remote {
                index,
                node,
                descriptor,
            } => json!({
                "index": index,
                "kind": "remote",
                "node": node,
                "descriptor": descriptor,
                "health": remote_health(r, *index),
                "data_diff": r.remotes.iter().find(|x| x.index == *index).and_then(|x| match &x.status {
                    RemoteStatus::Reachable { diff: Some(Ok(v)), .. } =>
                        Some(json!(v.iter().map(|(o, l)| json!({"offset": o, "len": l})).collect::<Vec<_>>())),
                    RemoteStatus::Reachable { diff: Some(Err(e)), .. } => Some(json!({"error": e})),
                    _ => None,
                }),
            }),
        })
        .collect();
    let heap = r.heap.as_ref().map(|h| {
        let after = h.after.as_ref().ok();
        json!({
            "pool_size": h.pool_size,
            "header": h.header.as_ref().ok().map(|hh| json!({
                "heap_size": hh.heap_size,
                "chunk_size": hh.chunk_size,
                "zone_max_chunks": hh.zone_max_chunks,
                "lane_count": hh.lane_count,
                "lane_redo_bytes": hh.lane_redo_bytes,
                "lane_extra_bytes": hh.lane_extra_bytes,
                "zones": hh.zones().len(),
            })),
            "error": h.header.as_ref().err().cloned().or_else(|| h.after.as_ref().err().cloned()),
            "stats": after.map(|a| json!({
                "total_chunks": a.stats.total_chunks,
                "free_chunks": a.stats.free_chunks,
                "runs": a.stats.runs,
                "objects": a.stats.objects,
                "allocated_bytes": a.stats.allocated_bytes,
            })),
            "object_pool": after.and_then(|a| a.obj.as_ref()).map(|m| json!({
                "pool_id": m.pool_id,
                "root_off": m.root_off,
                "run_generation": m.run_gen,
                "initialized": m.initialized,
            })),
            "types": after.map(|a| a.types.iter().map(|(t, c)| json!({
                "type_num": t, "objects": c.objects, "bytes": c.bytes,
            })).collect::<Vec<_>>()),
            "recovery_stores": after.map(|a| a.stores),
            "lanes": h.lanes.iter().filter(|l| l.redo != "empty" || l.undo_active || l.undo_committed).map(|l| json!({
                "lane": l.lane,
                "redo": l.redo,
                "redo_pending": l.redo_pending,
                "undo_active": l.undo_active,
                "undo_committed": l.undo_committed,
                "undo_generation": l.undo_generation,
            })).collect::<Vec<_>>(),
        })
    });
    json!({
        "file": r.target.path.to_string_lossy(),
        "poolset": r.target.is_poolset,
        "options": {"single_hdr": set.options.single_hdr, "no_hdrs": set.options.no_hdrs},
        "pool_size": r.survey.pool_size(),
        "replicas": replicas,
        "heap": heap,
        "heap_error": r.heap_note,
        "problems": r.findings.iter().map(|f| f.what.clone()).collect::<Vec<_>>(),
    })
}
