//! The typed result of parsing a poolset: options, replicas, parts with byte sizes and remote nodes.
//!
//! These types carry no I/O and no parser state. `line` fields are the 1-based line of the poolset
//! file the item came from (used by later layers to point users at the right line); two sets that
//! differ only in line numbers describe the same pool (see [`PoolSet::eq_ignoring_lines`]).

use std::path::PathBuf;

/// A parsed poolset(5) file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSet {
    /// Pool-wide options (`OPTION ...` lines).
    pub options: Options,
    /// `replicas[0]` is the primary replica and is always [`Replica::Local`]; the parser never
    /// returns an empty list.
    pub replicas: Vec<Replica>,
}

/// Pool-wide options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// `OPTION SINGLEHDR`: only the first part of each replica carries a header.
    pub single_hdr: bool,
    /// `OPTION NOHDRS`: no part carries a header (PMDK's internal option). Never together with
    /// `single_hdr` (the parser rejects the pair).
    pub no_hdrs: bool,
}

/// One replica of the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replica {
    /// Parts on this machine.
    Local(LocalReplica),
    /// A pool on another machine, served by rpmemd.
    Remote(RemoteReplica),
}

/// A replica made of local parts (files or directories).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReplica {
    /// Never empty when produced by the parser.
    pub parts: Vec<Part>,
    /// Line of `PMEMPOOLSET` (primary replica) or of the `REPLICA` line that starts this replica.
    pub line: u32,
}

/// One part of a local replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Size in bytes; never 0. For a directory part, the size reserved for the files in it.
    pub size: u64,
    /// Absolute path, valid UTF-8, without whitespace, control characters or `#`; never `/`
    /// itself, and a file part's last component is never `.` or `..`.
    pub path: PathBuf,
    /// The path names a directory (written with a trailing `/`; see docs/POOLSET.md).
    pub is_directory: bool,
    /// Line the part was written on.
    pub line: u32,
}

/// A replica on a remote node, reached over SSH and served by rpmemd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteReplica {
    /// SSH user, if given (`user@host`).
    pub user: Option<String>,
    /// Host name or address, without the brackets an IPv6 address is written with.
    pub host: String,
    /// SSH port, if given.
    pub port: Option<u16>,
    /// Path of the poolset on the remote node, relative to rpmemd's poolset directory; names a
    /// file (not `.`, no trailing `/`), never contains `..`.
    pub descriptor: PathBuf,
    /// Line of the `REPLICA` line.
    pub line: u32,
}

impl Replica {
    /// The line this replica starts on.
    pub fn line(&self) -> u32 {
        match self {
            Replica::Local(l) => l.line,
            Replica::Remote(r) => r.line,
        }
    }
}

impl PoolSet {
    /// The primary replica (always local).
    pub fn primary(&self) -> Option<&LocalReplica> {
        match self.replicas.first() {
            Some(Replica::Local(l)) => Some(l),
            _ => None,
        }
    }

    /// Same options, replicas, parts and nodes; line numbers are not compared.
    pub fn eq_ignoring_lines(&self, other: &PoolSet) -> bool {
        self.without_lines() == other.without_lines()
    }

    /// A copy with every `line` field set to 0.
    pub fn without_lines(&self) -> PoolSet {
        let mut s = self.clone();
        for r in &mut s.replicas {
            match r {
                Replica::Local(l) => {
                    l.line = 0;
                    for p in &mut l.parts {
                        p.line = 0;
                    }
                }
                Replica::Remote(r) => r.line = 0,
            }
        }
        s
    }
}
