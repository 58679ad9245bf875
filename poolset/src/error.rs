//! Errors and warnings: where (file, line, column) and what (a typed kind with a plain-words message).
//!
//! Columns count bytes from 1, like compilers do, so they stay exact on lines that are not UTF-8.

use std::fmt;
use std::path::PathBuf;

/// Why a poolset could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read (missing, a directory, no permission, ...).
    #[error("{}: cannot read the poolset file: {source}", path.display())]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is larger than [`crate::MAX_FILE_BYTES`]; no poolset is that long.
    #[error("{}: the file is {size_bytes} bytes long; a poolset file may be at most {max} bytes", path.display(), max = crate::MAX_FILE_BYTES)]
    TooLarge {
        /// The file that was asked for.
        path: PathBuf,
        /// Its size (at least this many bytes).
        size_bytes: u64,
    },
    /// The text is not a valid poolset.
    #[error("{0}")]
    Invalid(Diagnostic),
}

impl Error {
    /// The located diagnostic, when the error is about the file's content.
    pub fn diagnostic(&self) -> Option<&Diagnostic> {
        match self {
            Error::Invalid(d) => Some(d),
            _ => None,
        }
    }
}

/// An error at a place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name as given to the parser.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based byte column.
    pub col: u32,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.col, self.kind)
    }
}

impl std::error::Error for Diagnostic {}

/// What is wrong with a poolset. Messages are full sentences without the location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    #[error("the file is empty; the first line must be exactly 'PMEMPOOLSET'")]
    EmptyFile,
    #[error("the first line must be exactly 'PMEMPOOLSET', found '{found}'{hint}")]
    BadSignature { found: String, hint: &'static str },
    #[error("the line is not valid UTF-8 (byte 0x{byte:02x}); only comments may hold other bytes")]
    NotUtf8 { byte: u8 },
    #[error(
        "control character 0x{byte:02x} in the line; only spaces and tabs may separate fields"
    )]
    ControlChar { byte: u8 },
    #[error("the line holds only whitespace; PMDK rejects such lines, make it empty")]
    WhitespaceOnlyLine,
    #[error("a comment must start in column 1; PMDK rejects indented comments")]
    IndentedComment,
    #[error("'{keyword}' must start in column 1; PMDK does not accept indented keywords")]
    IndentedKeyword { keyword: &'static str },
    #[error("a part line needs a size and a path, found only '{found}'")]
    MissingPath { found: String },
    #[error("unexpected '{token}' after the part's path; a part line is 'SIZE PATH' (paths cannot contain spaces)")]
    PartTrailingToken { token: String },
    #[error("incorrect size '{token}': {reason}")]
    BadSize { token: String, reason: SizeProblem },
    #[error("cannot determine the size of the part: AUTO needs a Device DAX device, and this project supports none")]
    AutoSize,
    #[error("incorrect path '{path}': a part path must be absolute (start with '/')")]
    RelativePath { path: String },
    #[error("incorrect path '{path}': it names the root directory; a part needs its own file or directory below '/'")]
    RootPath { path: String },
    #[error("incorrect path '{path}': its last component ('.' or '..') names a directory; a directory part is written with a trailing '/'")]
    DotFilePath { path: String },
    #[error("the part path '{path}' is already used on line {first_line}; every part needs its own file")]
    DuplicatePath { path: String, first_line: u32 },
    #[error("cannot mix directory and file parts in one pool set: this part is a {this}, the part on line {first_line} is a {first}")]
    MixedPartKinds {
        this: &'static str,
        first: &'static str,
        first_line: u32,
    },
    #[error("the replica's total size overflows 2^64 bytes")]
    ReplicaSizeOverflow,
    #[error("the pool set has no parts; at least one 'SIZE PATH' line must follow 'PMEMPOOLSET'")]
    NoParts,
    #[error("the replica started on line {replica_line} has no parts")]
    ReplicaWithoutParts { replica_line: u32 },
    #[error("expected exactly 'REPLICA' (or 'REPLICA NODE DESCRIPTOR'), found '{found}'")]
    ReplicaKeyword { found: String },
    #[error("expected exactly 'OPTION' followed by option names, found '{found}'")]
    OptionKeyword { found: String },
    #[error("a remote replica needs the address of the remote node and the descriptor of the remote pool set: 'REPLICA [user@]host[:port] DESCRIPTOR' or 'REPLICA [user@]host:DESCRIPTOR'{hint}")]
    RemoteNeedsDescriptor { hint: String },
    #[error("unexpected '{token}' after the remote pool set descriptor")]
    RemoteTrailingToken { token: String },
    #[error("incorrect descriptor '{descriptor}': {reason}")]
    BadDescriptor {
        descriptor: String,
        reason: &'static str,
    },
    #[error("incorrect remote node address '{address}': {reason}")]
    BadNodeAddress { address: String, reason: String },
    #[error("a remote replica (line {replica_line}) cannot have parts; start a local replica with 'REPLICA' first")]
    PartsAfterRemoteReplica { replica_line: u32 },
    #[error("a pool set with directory parts cannot have remote replicas (PMDK stores the remote replica as a file part)")]
    RemoteInDirectorySet,
    #[error("unknown option '{name}'; known options are SINGLEHDR and NOHDRS")]
    UnknownOption { name: String },
    #[error("missing option name after 'OPTION'; known options are SINGLEHDR and NOHDRS")]
    MissingOptionName,
    #[error("OPTION SINGLEHDR and OPTION NOHDRS cannot be used together")]
    ConflictingOptions,
    #[error("a pool set served by rpmemd cannot have replicas")]
    ReplicasNotAllowed,
}

/// Why a size token is not a size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SizeProblem {
    #[error("a size must start with a decimal number")]
    NoNumber,
    #[error("a size cannot be negative")]
    Negative,
    #[error("a size must be greater than zero")]
    Zero,
    #[error("the size does not fit in 64 bits")]
    Overflow,
    #[error("unknown unit; use B, K, M, G, T, P (powers of 1024), KiB, MiB, GiB, TiB, PiB, or kB, MB, GB, TB, PB (powers of 1000)")]
    UnknownUnit,
}

/// Something legal but probably unintended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The file name as given to the parser.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based byte column.
    pub col: u32,
    /// What looks wrong.
    pub kind: WarningKind,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.col, self.kind)
    }
}

/// What a warning is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WarningKind {
    #[error("part size {size_bytes} bytes is below the minimum part size of 2 MiB ({min_bytes} bytes); creating the pool will fail")]
    PartBelowMinimum { size_bytes: u64, min_bytes: u64 },
    #[error("option {name} is given more than once")]
    DuplicateOption { name: &'static str },
}
