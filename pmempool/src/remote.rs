//! Remote replicas, reached through rpmem: the connector every command uses (rpmem
//! [`Options::from_env`](rpmem::Options::from_env), so `RPMEM_TRANSPORT`, `RPMEMD_PATH`,
//! `RPMEM_CMD`, `RPMEM_SSH` work as they do for applications), and the read-only health check of
//! `info` and `check`: open the remote pool with the attributes the local headers say it must
//! have (`pool::verify::remote_spec`; rpmem's connector refuses disagreeing ones, naming the
//! field), and optionally read it whole and compare it with the primary's data.
//!
//! Opening a remote pool only reads it: its attributes are compared, never rewritten (only a
//! resync, create or transform rewrites them), and no byte of its data is written.

use pool::{Persister, Replica as _};
use poolset::{PoolSet, Replica};

use crate::image::Image;
use crate::target::node_name;
use crate::util::Progress;

/// The connector closure for `pool::OpenOptions::remote`.
pub fn connector(
) -> impl Fn(&poolset::RemoteReplica, &pool::RemoteSpec) -> Result<Box<dyn pool::Replica>, String> {
    rpmem::replica::connector(rpmem::Options::from_env())
}

/// What was found about one remote replica.
#[derive(Clone, Debug)]
pub struct RemoteCheck {
    /// Replica index.
    pub index: usize,
    /// `[user@]host[:port]`.
    pub node: String,
    /// Poolset descriptor on the node.
    pub descriptor: String,
    /// The outcome.
    pub status: RemoteStatus,
}

/// Health of a remote replica.
#[derive(Clone, Debug)]
pub enum RemoteStatus {
    /// Not contacted (why).
    NotChecked(String),
    /// It could not be opened, or its attributes disagree with the pool set (rpmem's message).
    Failed(String),
    /// Opened; attributes agree.
    Reachable {
        /// Bytes of its pool.
        size: u64,
        /// Ranges where its data differs from the primary's, when compared.
        diff: Option<Result<Vec<(u64, u64)>, String>>,
    },
}

/// Check every remote replica of `set`: open it over rpmem and, with `compare`, read it whole and
/// compare it with `primary` (the primary's data, truncated to the pool size). Replicas in
/// `skip` (marked stale) are not contacted.
pub fn check_remotes(
    set: &PoolSet,
    primary: Option<&Image>,
    compare: bool,
    skip: &[usize],
    progress: bool,
) -> Vec<RemoteCheck> {
    let conn = rpmem::replica::Connector::new(rpmem::Options::from_env());
    let mut out = Vec::new();
    for (r, rep) in set.replicas.iter().enumerate() {
        let Replica::Remote(rr) = rep else { continue };
        let status = if skip.contains(&r) {
            RemoteStatus::NotChecked("marked stale in the primary's header".into())
        } else {
            match pool::verify::remote_spec(set, r) {
                Err(e) => {
                    RemoteStatus::NotChecked(format!("its expected attributes are unknown: {e}"))
                }
                Ok(spec) => match conn.connect_replica(rr, &spec) {
                    Err(e) => RemoteStatus::Failed(e),
                    Ok(rep) => {
                        let size = rep.len() as u64;
                        let diff = match (compare, primary) {
                            (false, _) => None,
                            (true, None) => Some(Err("the primary's data cannot be read".into())),
                            (true, Some(img)) => Some(compare_remote(r, &rep, img, progress)),
                        };
                        RemoteStatus::Reachable { size, diff }
                    }
                },
            }
        };
        out.push(RemoteCheck {
            index: r,
            node: node_name(rr),
            descriptor: rr.descriptor.display().to_string(),
            status,
        });
    }
    out
}

fn compare_remote(
    r: usize,
    rep: &rpmem::replica::RpmemReplica,
    img: &Image,
    progress: bool,
) -> Result<Vec<(u64, u64)>, String> {
    const CHUNK: usize = 1 << 20;
    let len = img.len();
    if rep.len() < len {
        return Err(format!(
            "its pool has {} bytes, smaller than the pool's {len}",
            rep.len()
        ));
    }
    let mut bar = Progress::new(
        &format!("compare replica {r} (remote)"),
        len as u64,
        true,
        progress,
    );
    let mut a = vec![0u8; CHUNK.min(len)];
    let mut b = vec![0u8; CHUNK.min(len)];
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut off = 0;
    while off < len {
        let n = (len - off).min(CHUNK);
        img.read(off, &mut a[..n]);
        rep.read(off, &mut b[..n]).map_err(|e| e.to_string())?;
        if a[..n] != b[..n] {
            let first = a[..n]
                .iter()
                .zip(&b[..n])
                .position(|(x, y)| x != y)
                .unwrap_or(0);
            let last = a[..n]
                .iter()
                .zip(&b[..n])
                .rposition(|(x, y)| x != y)
                .unwrap_or(n - 1);
            let (s, e) = ((off + first) as u64, (off + last + 1) as u64);
            match out.last_mut() {
                Some(d) if d.0 + d.1 == s => d.1 = e - d.0,
                _ => out.push((s, e - s)),
            }
        }
        off += n;
        bar.set(off as u64);
    }
    bar.finish();
    Ok(out)
}

impl RemoteCheck {
    /// One line of health, as `info` prints it.
    pub fn health(&self) -> String {
        match &self.status {
            RemoteStatus::NotChecked(why) => format!("not checked: {why}"),
            RemoteStatus::Failed(e) => format!("UNHEALTHY: {e}"),
            RemoteStatus::Reachable { diff, .. } => match diff {
                None => {
                    "attributes agree with the pool set (data not compared; use --compare)".into()
                }
                Some(Ok(d)) if d.is_empty() => {
                    "healthy (attributes agree, data equal to the primary)".into()
                }
                Some(Ok(d)) => format!(
                    "data differs from the primary in {} range(s), {} bytes, first at {:#x}",
                    d.len(),
                    d.iter().map(|x| x.1).sum::<u64>(),
                    d[0].0
                ),
                Some(Err(e)) => format!("attributes agree; data not compared: {e}"),
            },
        }
    }
}
