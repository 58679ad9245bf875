//! The poolset(5) grammar and the checks that need no file system, in one pass over the lines.
//!
//! Every check runs when its line is reached, so the first error in the file is the one reported,
//! as PMDK does. The order of checks inside one line also follows PMDK (path before size, token
//! count before descriptor) so that files with several problems get PMDK's line.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Diagnostic, Error, ErrorKind, Warning, WarningKind};
use crate::model::{LocalReplica, Options, Part, PoolSet, RemoteReplica, Replica};
use crate::node::parse_node;
use crate::size::parse_size;

/// The smallest part PMDK can create (`PMEM_MIN_PART`); smaller parts get a warning.
pub const MIN_PART_BYTES: u64 = 2 << 20;

/// [`parse_file`] refuses longer files: no real poolset comes near this, and it bounds memory.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// Who the poolset is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// An application's (or pmempool's) poolset: local and remote replicas allowed.
    Initiator,
    /// A poolset served by rpmemd on the remote node: no `REPLICA` lines at all.
    Rpmemd,
}

/// A valid poolset and what looked suspicious in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The pool set.
    pub set: PoolSet,
    /// Warnings, in line order.
    pub warnings: Vec<Warning>,
}

/// Reads and parses a poolset file. Reads at most [`MAX_FILE_BYTES`] (+1 to detect longer files);
/// does no other I/O.
pub fn parse_file(path: &Path, mode: Mode) -> Result<Parsed, Error> {
    let read_err = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Error::TooLarge {
            path: path.to_path_buf(),
            size_bytes: bytes.len() as u64,
        });
    }
    parse_bytes(&path.display().to_string(), &bytes, mode)
}

/// Parses poolset text held in memory; `name` is used as the file name in messages.
pub fn parse_bytes(name: &str, bytes: &[u8], mode: Mode) -> Result<Parsed, Error> {
    Parser::new(name, mode)
        .run(bytes)
        .map_err(|(line, col, kind)| {
            Error::Invalid(Diagnostic {
                file: name.to_string(),
                line,
                col,
                kind,
            })
        })
}

/// (line, column, what) — located by the caller into a [`Diagnostic`].
type Fail = (u32, u32, ErrorKind);

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A whitespace-separated token and its 1-based byte column.
#[derive(Clone, Copy)]
struct Token<'a> {
    col: u32,
    text: &'a str,
}

fn tokens(text: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, b) in text
        .bytes()
        .enumerate()
        .chain(std::iter::once((text.len(), b' ')))
    {
        let blank = b == b' ' || b == b'\t';
        match (start, blank) {
            (None, false) => start = Some(i),
            (Some(s), true) => {
                out.push(Token {
                    col: to_u32(s + 1),
                    text: &text[s..i],
                });
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// A short, printable excerpt of raw bytes for messages.
fn excerpt(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let mut out: String = s.chars().take(60).flat_map(char::escape_debug).collect();
    if s.chars().count() > 60 {
        out.push_str("...");
    }
    out
}

struct Parser<'a> {
    name: &'a str,
    mode: Mode,
    options: Options,
    replicas: Vec<Replica>,
    warnings: Vec<Warning>,
    /// Lexically normalised part path -> line it was first used on.
    paths: HashMap<PathBuf, u32>,
    /// Whether the set's first part is a directory, and its line.
    first_part: Option<(bool, u32)>,
    /// Running total of the current local replica's part sizes.
    replica_bytes: u64,
}

impl<'a> Parser<'a> {
    fn new(name: &'a str, mode: Mode) -> Self {
        Parser {
            name,
            mode,
            options: Options::default(),
            replicas: Vec::new(),
            warnings: Vec::new(),
            paths: HashMap::new(),
            first_part: None,
            replica_bytes: 0,
        }
    }

    fn warn(&mut self, line: u32, col: u32, kind: WarningKind) {
        self.warnings.push(Warning {
            file: self.name.to_string(),
            line,
            col,
            kind,
        });
    }

    fn run(mut self, bytes: &[u8]) -> Result<Parsed, Fail> {
        if bytes.is_empty() {
            return Err((1, 1, ErrorKind::EmptyFile));
        }
        let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        let mut lines = body.split(|b| *b == b'\n');
        let line_count = body.split(|b| *b == b'\n').count();

        // `lines` yields at least one item for a non-empty input.
        let first = lines.next().unwrap_or_default();
        self.signature(strip_cr(first))?;
        self.replicas.push(Replica::Local(LocalReplica {
            parts: Vec::new(),
            line: 1,
        }));

        for (idx, raw) in lines.enumerate() {
            self.line(to_u32(idx + 2), strip_cr(raw))?;
        }
        self.close_replica(to_u32(line_count + 1), 1)?;
        Ok(Parsed {
            set: PoolSet {
                options: self.options,
                replicas: self.replicas,
            },
            warnings: self.warnings,
        })
    }

    fn signature(&self, line: &[u8]) -> Result<(), Fail> {
        const SIG: &[u8] = b"PMEMPOOLSET";
        if line == SIG {
            return Ok(());
        }
        let col = line
            .iter()
            .zip(SIG)
            .position(|(a, b)| a != b)
            .unwrap_or(line.len().min(SIG.len()));
        let hint = if line.starts_with(b"\xEF\xBB\xBF") {
            " (the file starts with a UTF-8 byte-order mark; remove it)"
        } else if line.is_empty() || line.starts_with(b"#") {
            " (no comment or blank line may come before it)"
        } else {
            ""
        };
        Err((
            1,
            to_u32(col + 1),
            ErrorKind::BadSignature {
                found: excerpt(line),
                hint,
            },
        ))
    }

    fn line(&mut self, n: u32, raw: &[u8]) -> Result<(), Fail> {
        // PMDK: a line that is empty or starts with '#' is skipped; elsewhere '#' starts a comment.
        if raw.is_empty() || raw[0] == b'#' {
            return Ok(());
        }
        let hash = raw.iter().position(|b| *b == b'#');
        let content = &raw[..hash.unwrap_or(raw.len())];
        if let Some(i) = content
            .iter()
            .position(|b| (*b < 0x20 && *b != b'\t') || *b == 0x7f)
        {
            return Err((
                n,
                to_u32(i + 1),
                ErrorKind::ControlChar { byte: content[i] },
            ));
        }
        let text = std::str::from_utf8(content).map_err(|e| {
            let i = e.valid_up_to();
            (n, to_u32(i + 1), ErrorKind::NotUtf8 { byte: content[i] })
        })?;
        let toks = tokens(text);
        let Some(first) = toks.first() else {
            let kind = if hash.is_some() {
                ErrorKind::IndentedComment
            } else {
                ErrorKind::WhitespaceOnlyLine
            };
            return Err((n, 1, kind));
        };
        if first.col > 1 {
            for keyword in ["REPLICA", "OPTION"] {
                if first.text == keyword {
                    return Err((n, first.col, ErrorKind::IndentedKeyword { keyword }));
                }
            }
        }
        if let Some(rest) = text.strip_prefix("OPTION") {
            if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
                let found = first.text.to_string();
                return Err((n, 7, ErrorKind::OptionKeyword { found }));
            }
            self.options_line(n, &toks[1..])
        } else if let Some(rest) = text.strip_prefix("REPLICA") {
            if rest.is_empty() {
                self.local_replica(n)
            } else if rest.starts_with([' ', '\t']) {
                self.remote_replica(n, &toks[1..])
            } else {
                let found = first.text.to_string();
                Err((n, 8, ErrorKind::ReplicaKeyword { found }))
            }
        } else {
            self.part(n, &toks)
        }
    }

    fn options_line(&mut self, n: u32, names: &[Token<'_>]) -> Result<(), Fail> {
        if names.is_empty() {
            return Err((n, 1, ErrorKind::MissingOptionName));
        }
        for t in names {
            let (flag, name) = match t.text {
                "SINGLEHDR" => (&mut self.options.single_hdr, "SINGLEHDR"),
                "NOHDRS" => (&mut self.options.no_hdrs, "NOHDRS"),
                other => {
                    let name = other.to_string();
                    return Err((n, t.col, ErrorKind::UnknownOption { name }));
                }
            };
            let duplicate = std::mem::replace(flag, true);
            if duplicate {
                self.warn(n, t.col, WarningKind::DuplicateOption { name });
            }
            if self.options.single_hdr && self.options.no_hdrs {
                return Err((n, t.col, ErrorKind::ConflictingOptions));
            }
        }
        Ok(())
    }

    /// Checks that the replica being closed (the last one) has parts; `n`/`col` locate the line
    /// that closes it (the next `REPLICA` or the end of the file).
    fn close_replica(&self, n: u32, col: u32) -> Result<(), Fail> {
        match self.replicas.last() {
            Some(Replica::Local(l)) if l.parts.is_empty() => {
                let kind = if self.replicas.len() == 1 {
                    ErrorKind::NoParts
                } else {
                    ErrorKind::ReplicaWithoutParts {
                        replica_line: l.line,
                    }
                };
                Err((n, col, kind))
            }
            _ => Ok(()),
        }
    }

    fn local_replica(&mut self, n: u32) -> Result<(), Fail> {
        if self.mode == Mode::Rpmemd {
            return Err((n, 1, ErrorKind::ReplicasNotAllowed));
        }
        self.close_replica(n, 1)?;
        self.replicas.push(Replica::Local(LocalReplica {
            parts: Vec::new(),
            line: n,
        }));
        self.replica_bytes = 0;
        Ok(())
    }

    fn remote_replica(&mut self, n: u32, args: &[Token<'_>]) -> Result<(), Fail> {
        if self.mode == Mode::Rpmemd {
            return Err((n, 1, ErrorKind::ReplicasNotAllowed));
        }
        self.close_replica(n, 1)?;
        let needs = |hint: &str| ErrorKind::RemoteNeedsDescriptor {
            hint: hint.to_string(),
        };
        let bad_address = |t: &Token<'_>, reason: String| {
            (
                n,
                t.col,
                ErrorKind::BadNodeAddress {
                    address: t.text.to_string(),
                    reason,
                },
            )
        };
        let (node, desc_col, descriptor) = match args {
            [] => {
                return Err((
                    n,
                    8,
                    needs(" (for a local replica, remove the whitespace after 'REPLICA')"),
                ))
            }
            [one] => match parse_node(one.text) {
                Ok((node, Some(desc))) => {
                    // `desc` is a suffix of `one.text`, so the offset is the length difference.
                    let offset = one.text.len() - desc.len();
                    (node, one.col + to_u32(offset), desc)
                }
                Ok((node, None)) => {
                    let hint = if node.port.is_some() {
                        format!(" ('{}' names a port, not a descriptor)", one.text)
                    } else {
                        String::new()
                    };
                    return Err((n, one.col, needs(&hint)));
                }
                // Without a ':' the token cannot be the one-token form: PMDK's verdict is
                // "address and descriptor expected", and so is ours.
                Err(_) if !one.text.contains(':') => return Err((n, one.col, needs(""))),
                Err(reason) => return Err(bad_address(one, reason)),
            },
            [addr, desc] => {
                check_descriptor(n, desc.col, desc.text)?;
                match parse_node(addr.text) {
                    Ok((node, None)) => (node, desc.col, desc.text),
                    Ok((_, Some(x))) => {
                        let reason = format!(
                            "'{x}' after ':' is not a port number (the descriptor is the next field)"
                        );
                        return Err(bad_address(addr, reason));
                    }
                    Err(reason) => return Err(bad_address(addr, reason)),
                }
            }
            [_, _, extra, ..] => {
                let token = extra.text.to_string();
                return Err((n, extra.col, ErrorKind::RemoteTrailingToken { token }));
            }
        };
        check_descriptor(n, desc_col, descriptor)?;
        if let Some((true, _)) = self.first_part {
            return Err((n, 1, ErrorKind::RemoteInDirectorySet));
        }
        self.replicas.push(Replica::Remote(RemoteReplica {
            user: node.user,
            host: node.host,
            port: node.port,
            descriptor: PathBuf::from(descriptor),
            line: n,
        }));
        Ok(())
    }

    fn part(&mut self, n: u32, toks: &[Token<'_>]) -> Result<(), Fail> {
        let replica_line = match self.replicas.last() {
            Some(Replica::Remote(r)) => Some(r.line),
            _ => None,
        };
        if let Some(replica_line) = replica_line {
            return Err((n, 1, ErrorKind::PartsAfterRemoteReplica { replica_line }));
        }
        let (size_tok, path_tok) = match toks {
            [one] => {
                let found = one.text.to_string();
                return Err((n, one.col, ErrorKind::MissingPath { found }));
            }
            [size, path] => (*size, *path),
            [_, _, extra, ..] => {
                let token = extra.text.to_string();
                return Err((n, extra.col, ErrorKind::PartTrailingToken { token }));
            }
            // `line` only calls here with at least one token.
            [] => return Err((n, 1, ErrorKind::WhitespaceOnlyLine)),
        };
        let path = path_tok.text;
        if !path.starts_with('/') {
            let path = path.to_string();
            return Err((n, path_tok.col, ErrorKind::RelativePath { path }));
        }
        if names_root(path) {
            let path = path.to_string();
            return Err((n, path_tok.col, ErrorKind::RootPath { path }));
        }
        if path.ends_with("/.") || path.ends_with("/..") {
            let path = path.to_string();
            return Err((n, path_tok.col, ErrorKind::DotFilePath { path }));
        }
        if size_tok.text == "AUTO" {
            return Err((n, size_tok.col, ErrorKind::AutoSize));
        }
        let size = parse_size(size_tok.text).map_err(|(reason, offset)| {
            let token = size_tok.text.to_string();
            (
                n,
                size_tok.col + to_u32(offset),
                ErrorKind::BadSize { token, reason },
            )
        })?;
        let is_directory = path.ends_with('/');
        let kind_name = |dir: bool| if dir { "directory" } else { "file" };
        match self.first_part {
            None => self.first_part = Some((is_directory, n)),
            Some((first_dir, first_line)) if first_dir != is_directory => {
                return Err((
                    n,
                    path_tok.col,
                    ErrorKind::MixedPartKinds {
                        this: kind_name(is_directory),
                        first: kind_name(first_dir),
                        first_line,
                    },
                ));
            }
            Some(_) => {}
        }
        let normalised: PathBuf = Path::new(path).components().collect();
        if let Some(first_line) = self.paths.get(&normalised) {
            return Err((
                n,
                path_tok.col,
                ErrorKind::DuplicatePath {
                    path: path.to_string(),
                    first_line: *first_line,
                },
            ));
        }
        self.paths.insert(normalised, n);
        self.replica_bytes = self.replica_bytes.checked_add(size).ok_or((
            n,
            size_tok.col,
            ErrorKind::ReplicaSizeOverflow,
        ))?;
        if !is_directory && size < MIN_PART_BYTES {
            self.warn(
                n,
                size_tok.col,
                WarningKind::PartBelowMinimum {
                    size_bytes: size,
                    min_bytes: MIN_PART_BYTES,
                },
            );
        }
        match self.replicas.last_mut() {
            Some(Replica::Local(l)) => l.parts.push(Part {
                size,
                path: PathBuf::from(path),
                is_directory,
                line: n,
            }),
            // The primary replica is pushed before any line is read and a remote last replica
            // returned above, so the last replica is local here.
            _ => unreachable!("part() runs only while the last replica is local"),
        }
        Ok(())
    }
}

fn check_descriptor(n: u32, col: u32, desc: &str) -> Result<(), Fail> {
    let reason = if desc.is_empty() {
        "the descriptor is empty"
    } else if desc.starts_with('/') {
        "the descriptor must be a relative path (relative to rpmemd's poolset directory)"
    } else if Path::new(desc)
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        "'..' may not appear in a descriptor; it must stay inside rpmemd's poolset directory"
    } else if desc == "." || desc.ends_with('/') || desc.ends_with("/.") {
        "it names a directory; a descriptor names a poolset file (no trailing '/' or '.')"
    } else {
        return Ok(());
    };
    Err((
        n,
        col,
        ErrorKind::BadDescriptor {
            descriptor: desc.to_string(),
            reason,
        },
    ))
}

/// Whether the absolute `path` lexically names `/` (`/`, `//`, `/.`, `/a/..`, ...): a part there
/// would be the root directory itself.
fn names_root(path: &str) -> bool {
    let mut depth = 0usize;
    for c in Path::new(path).components() {
        match c {
            std::path::Component::Normal(_) => depth += 1,
            std::path::Component::ParentDir => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    depth == 0
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}
