//! Pool descriptor confinement: a descriptor received from an initiator (or `--remove`) names a
//! poolset file *relative to* `poolset-dir`, and must never resolve outside it.
//!
//! Refused: empty descriptors, NUL bytes, absolute paths, any `..` component (even one that would
//! stay inside: the rule is simpler to audit than a normaliser), descriptors naming the directory
//! itself or ending in `/` or `/.` (a directory, even when the leaf does not exist yet), an
//! existing leaf that is not a regular file (a directory, FIFO, socket, device), and anything
//! whose real path (all symlinks followed) is outside the canonical `poolset-dir`.
//!
//! Errors are sent to the initiator as text, so their `Display` never shows a path outside
//! poolset-dir; [`PathError::log_detail`] adds it for rpmemd's own log. For a file that does not exist yet (CREATE of a new poolset is not a thing, but
//! REMOVE and error reporting want a stable answer), the parent directory is canonicalised instead
//! and must be inside; a dangling symlink is refused because creating through it would follow it.
//!
//! Limits: the check and the later open are two steps; an attacker who can write inside
//! poolset-dir could swap a component between them. poolset-dir is the administrator's directory;
//! `openat2(RESOLVE_BENEATH)` would close the gap and is the upgrade path. The *parts* a poolset
//! lists may be anywhere, as in PMDK: the administrator wrote the poolset.

use std::io;
use std::path::{Component, Path, PathBuf};

/// Why a descriptor was refused.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("empty pool descriptor")]
    Empty,
    #[error("pool descriptor {descriptor:?} contains a NUL byte")]
    Nul { descriptor: String },
    #[error("pool descriptor {descriptor:?} is absolute; it must be relative to poolset-dir")]
    Absolute { descriptor: String },
    #[error("pool descriptor {descriptor:?} contains a `..` component")]
    ParentComponent { descriptor: String },
    #[error("pool descriptor {descriptor:?} names poolset-dir itself, not a poolset file")]
    IsPoolsetDir { descriptor: String },
    #[error("pool descriptor {descriptor:?} ends in '/' or '/.', so it names a directory; name the poolset file without a trailing slash")]
    NamesDirectory { descriptor: String },
    #[error("pool descriptor {descriptor:?} is {what}, not a poolset file")]
    NotRegular {
        descriptor: String,
        /// "a directory", "a FIFO", ...
        what: &'static str,
    },
    #[error("poolset-dir {dir} is not usable: {source}")]
    PoolsetDir { dir: PathBuf, source: io::Error },
    #[error("pool descriptor {descriptor:?}: directory {missing} does not exist")]
    NotFound {
        descriptor: String,
        missing: PathBuf,
    },
    #[error("pool descriptor {descriptor:?} is a dangling symbolic link")]
    DanglingSymlink { descriptor: String },
    /// `Display` (what the peer is told) names neither path; [`PathError::log_detail`] does.
    #[error("pool descriptor {descriptor:?} leads outside poolset-dir")]
    Escapes {
        descriptor: String,
        resolved: PathBuf,
        root: PathBuf,
    },
    #[error("pool descriptor {descriptor:?}: {source}")]
    Io {
        descriptor: String,
        source: io::Error,
    },
}

impl PathError {
    /// The text for rpmemd's log: like `Display`, plus, for [`PathError::Escapes`], the real path
    /// outside poolset-dir and poolset-dir itself (which the peer must not learn).
    pub fn log_detail(&self) -> String {
        match self {
            PathError::Escapes {
                descriptor,
                resolved,
                root,
            } => format!(
                "pool descriptor {descriptor:?} resolves to {}, outside poolset-dir {}",
                resolved.display(),
                root.display()
            ),
            other => other.to_string(),
        }
    }
}

/// What a non-regular file is, for messages.
fn file_kind(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

/// Resolves `descriptor` against `poolset_dir` and returns the real (canonical) path, guaranteed
/// to be strictly inside the canonical `poolset_dir` at the time of the call and, when it exists,
/// a regular file. Open it with [`open_regular_file`], so a swap after this check cannot block.
pub fn resolve_descriptor(poolset_dir: &Path, descriptor: &str) -> Result<PathBuf, PathError> {
    let owned = || descriptor.to_owned();
    if descriptor.is_empty() {
        return Err(PathError::Empty);
    }
    if descriptor.contains('\0') {
        return Err(PathError::Nul {
            descriptor: owned(),
        });
    }
    let rel = Path::new(descriptor);
    for c in rel.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err(PathError::ParentComponent {
                    descriptor: owned(),
                })
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(PathError::Absolute {
                    descriptor: owned(),
                })
            }
        }
    }
    // Path::components drops a trailing '/' and '.', which would turn `new.set/` into `new.set`.
    if descriptor.ends_with('/') || descriptor.ends_with("/.") {
        return Err(PathError::NamesDirectory {
            descriptor: owned(),
        });
    }
    let root = poolset_dir
        .canonicalize()
        .map_err(|source| PathError::PoolsetDir {
            dir: poolset_dir.to_owned(),
            source,
        })?;
    let candidate = root.join(rel);
    let inside = |p: &Path| p != root && p.starts_with(&root);

    match candidate.canonicalize() {
        Ok(real) => {
            if real == root {
                return Err(PathError::IsPoolsetDir {
                    descriptor: owned(),
                });
            }
            if !inside(&real) {
                return Err(PathError::Escapes {
                    descriptor: owned(),
                    resolved: real,
                    root,
                });
            }
            let meta = real.metadata().map_err(|source| PathError::Io {
                descriptor: owned(),
                source,
            })?;
            if !meta.is_file() {
                return Err(PathError::NotRegular {
                    descriptor: owned(),
                    what: file_kind(meta.file_type()),
                });
            }
            Ok(real)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // The name itself exists but does not resolve: a dangling symlink.
            if candidate.symlink_metadata().is_ok() {
                return Err(PathError::DanglingSymlink {
                    descriptor: owned(),
                });
            }
            let (Some(parent), Some(name)) = (candidate.parent(), candidate.file_name()) else {
                // Unreachable for a non-empty relative path without `..` joined to a directory;
                // report it as naming the directory rather than panic.
                return Err(PathError::IsPoolsetDir {
                    descriptor: owned(),
                });
            };
            let real_parent = match parent.canonicalize() {
                Ok(p) => p,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(PathError::NotFound {
                        descriptor: owned(),
                        missing: parent.to_owned(),
                    })
                }
                Err(source) => {
                    return Err(PathError::Io {
                        descriptor: owned(),
                        source,
                    })
                }
            };
            if real_parent != root && !inside(&real_parent) {
                return Err(PathError::Escapes {
                    descriptor: owned(),
                    resolved: real_parent.join(name),
                    root,
                });
            }
            Ok(real_parent.join(name))
        }
        Err(source) => Err(PathError::Io {
            descriptor: owned(),
            source,
        }),
    }
}

/// Opens the poolset file at `path` (the canonical path [`resolve_descriptor`] returned) for
/// reading, refusing anything but a regular file without ever blocking on it.
///
/// Between resolution and open, someone who can write in poolset-dir could swap the file for a
/// FIFO (a plain open would then wait for a writer forever) or a symlink. So the open uses
/// `O_NONBLOCK` (a FIFO opens at once) and `O_NOFOLLOW` (the last component may not be a symlink:
/// the resolved path never ends in one, so one there was swapped in; symlinks in the directories
/// above are still followed, see the module's Limits), then `fstat` on the open descriptor must
/// show a regular file, and only then is `O_NONBLOCK` cleared for ordinary blocking reads.
pub fn open_regular_file(path: &Path) -> io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => io::Error::new(
                e.kind(),
                format!(
                    "{}: is a symbolic link (the resolved path had none; it was replaced)",
                    path.display()
                ),
            ),
            _ => e,
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        let what = file_kind(meta.file_type());
        let kind = if meta.is_dir() {
            io::ErrorKind::IsADirectory
        } else {
            io::ErrorKind::InvalidInput
        };
        return Err(io::Error::new(
            kind,
            format!("{}: is {what}, not a regular file", path.display()),
        ));
    }
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is the open descriptor owned by `file`, alive for both calls; F_GETFL and
    // F_SETFL only read and set its status flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    /// A poolset-dir `root/psd` with a file, a subdirectory, and an `outside` sibling directory.
    struct Fixture {
        _tmp: tempfile::TempDir,
        psd: PathBuf,
        outside: PathBuf,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let psd = tmp.path().join("psd");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(psd.join("sub")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(psd.join("pool.set"), "PMEMPOOLSET\n").unwrap();
        fs::write(psd.join("sub/inner.set"), "PMEMPOOLSET\n").unwrap();
        fs::write(outside.join("secret.set"), "PMEMPOOLSET\n").unwrap();
        Fixture {
            psd: psd.canonicalize().unwrap(),
            outside: outside.canonicalize().unwrap(),
            _tmp: tmp,
        }
    }

    #[test]
    fn accepts_files_inside() {
        let f = fixture();
        assert_eq!(
            resolve_descriptor(&f.psd, "pool.set").unwrap(),
            f.psd.join("pool.set")
        );
        assert_eq!(
            resolve_descriptor(&f.psd, "./sub//inner.set").unwrap(),
            f.psd.join("sub/inner.set")
        );
        // Not existing yet, in an existing directory inside.
        assert_eq!(
            resolve_descriptor(&f.psd, "sub/new.set").unwrap(),
            f.psd.join("sub/new.set")
        );
    }

    #[test]
    fn refuses_malformed_descriptors() {
        let f = fixture();
        assert!(matches!(
            resolve_descriptor(&f.psd, ""),
            Err(PathError::Empty)
        ));
        assert!(matches!(
            resolve_descriptor(&f.psd, "a\0b"),
            Err(PathError::Nul { .. })
        ));
        let abs = f.outside.join("secret.set");
        assert!(matches!(
            resolve_descriptor(&f.psd, abs.to_str().unwrap()),
            Err(PathError::Absolute { .. })
        ));
        for d in ["../outside/secret.set", "sub/../pool.set", ".."] {
            assert!(
                matches!(
                    resolve_descriptor(&f.psd, d),
                    Err(PathError::ParentComponent { .. })
                ),
                "{d}"
            );
        }
        assert!(matches!(
            resolve_descriptor(&f.psd, "."),
            Err(PathError::IsPoolsetDir { .. })
        ));
    }

    #[test]
    fn refuses_symlinked_file_leading_outside() {
        let f = fixture();
        symlink(f.outside.join("secret.set"), f.psd.join("evil.set")).unwrap();
        let e = resolve_descriptor(&f.psd, "evil.set").unwrap_err();
        assert!(
            matches!(&e, PathError::Escapes { resolved, .. } if *resolved == f.outside.join("secret.set")),
            "{e}"
        );
        // A relative link climbing out is the same thing.
        symlink("../outside/secret.set", f.psd.join("evil2.set")).unwrap();
        assert!(matches!(
            resolve_descriptor(&f.psd, "evil2.set"),
            Err(PathError::Escapes { .. })
        ));
    }

    #[test]
    fn refuses_symlinked_directory_leading_outside() {
        let f = fixture();
        symlink(&f.outside, f.psd.join("link")).unwrap();
        // Existing file through the link, and a not-yet-existing one.
        assert!(matches!(
            resolve_descriptor(&f.psd, "link/secret.set"),
            Err(PathError::Escapes { .. })
        ));
        assert!(matches!(
            resolve_descriptor(&f.psd, "link/new.set"),
            Err(PathError::Escapes { .. })
        ));
        // The directory link itself, pointing outside.
        assert!(matches!(
            resolve_descriptor(&f.psd, "link"),
            Err(PathError::Escapes { .. })
        ));
    }

    #[test]
    fn accepts_symlinked_directory_inside() {
        let f = fixture();
        symlink(f.psd.join("sub"), f.psd.join("alias")).unwrap();
        assert_eq!(
            resolve_descriptor(&f.psd, "alias/inner.set").unwrap(),
            f.psd.join("sub/inner.set")
        );
        assert_eq!(
            resolve_descriptor(&f.psd, "alias/new.set").unwrap(),
            f.psd.join("sub/new.set")
        );
        // A link inside pointing back at the directory itself names the directory.
        symlink(&f.psd, f.psd.join("self")).unwrap();
        assert!(matches!(
            resolve_descriptor(&f.psd, "self"),
            Err(PathError::IsPoolsetDir { .. })
        ));
    }

    #[test]
    fn poolset_dir_reached_through_a_symlink_is_fine() {
        let f = fixture();
        let link = f.outside.join("psd-link");
        symlink(&f.psd, &link).unwrap();
        assert_eq!(
            resolve_descriptor(&link, "pool.set").unwrap(),
            f.psd.join("pool.set")
        );
    }

    #[test]
    fn refuses_dangling_symlink() {
        let f = fixture();
        symlink(f.outside.join("not-there.set"), f.psd.join("dangling.set")).unwrap();
        assert!(matches!(
            resolve_descriptor(&f.psd, "dangling.set"),
            Err(PathError::DanglingSymlink { .. })
        ));
    }

    #[test]
    fn refuses_directories_and_other_non_regular_files() {
        let f = fixture();
        symlink(f.psd.join("sub"), f.psd.join("alias")).unwrap();
        for d in ["sub", "alias", "./sub"] {
            let e = resolve_descriptor(&f.psd, d).unwrap_err();
            assert!(matches!(e, PathError::NotRegular { .. }), "{d}: {e}");
            assert!(e.to_string().contains("is a directory"), "{e}");
        }
        mkfifo(&f.psd.join("fifo.set"));
        let e = resolve_descriptor(&f.psd, "fifo.set").unwrap_err();
        assert!(matches!(e, PathError::NotRegular { .. }), "{e}");
        assert!(e.to_string().contains("FIFO"), "{e}");
    }

    #[test]
    fn refuses_a_trailing_slash() {
        let f = fixture();
        // Existing file, existing directory, missing leaf: the slash is never dropped silently.
        for d in [
            "pool.set/",
            "sub/",
            "new.set/",
            "sub/new.set/",
            "./",
            "new.set/.",
        ] {
            let e = resolve_descriptor(&f.psd, d).unwrap_err();
            assert!(matches!(e, PathError::NamesDirectory { .. }), "{d}: {e}");
        }
    }

    #[test]
    fn escape_detail_goes_to_the_log_not_the_peer() {
        let f = fixture();
        symlink(f.outside.join("secret.set"), f.psd.join("evil.set")).unwrap();
        symlink(&f.outside, f.psd.join("link")).unwrap();
        for d in ["evil.set", "link/new.set"] {
            let e = resolve_descriptor(&f.psd, d).unwrap_err();
            let peer = e.to_string();
            assert!(peer.contains("leads outside poolset-dir"), "{peer}");
            assert!(!peer.contains(f.outside.to_str().unwrap()), "{peer}");
            assert!(!peer.contains(f.psd.to_str().unwrap()), "{peer}");
            let log = e.log_detail();
            assert!(log.contains(f.outside.to_str().unwrap()), "{log}");
            assert!(log.contains(f.psd.to_str().unwrap()), "{log}");
        }
        // Other errors carry nothing to hide: the log text is the peer text.
        let e = resolve_descriptor(&f.psd, "../x").unwrap_err();
        assert_eq!(e.log_detail(), e.to_string());
    }

    fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    /// Runs `f` on another thread and fails (instead of hanging) if it does not return in time.
    fn within_seconds<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(secs))
            .expect("the call blocked")
    }

    #[test]
    fn open_regular_file_opens_files_and_refuses_the_rest() {
        use std::io::Read;
        let f = fixture();
        let mut s = String::new();
        let mut file = open_regular_file(&f.psd.join("pool.set")).unwrap();
        file.read_to_string(&mut s).unwrap();
        assert_eq!(s, "PMEMPOOLSET\n");
        // The descriptor is back in blocking mode.
        // SAFETY: F_GETFL on a descriptor this test owns.
        let fl = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&file), libc::F_GETFL) };
        assert_eq!(fl & libc::O_NONBLOCK, 0);

        let e = open_regular_file(&f.psd.join("sub")).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        // A FIFO swapped in after resolution: refused at once, not a hang waiting for a writer.
        let fifo = f.psd.join("swapped.set");
        mkfifo(&fifo);
        let e = within_seconds(5, move || open_regular_file(&fifo)).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
        // A symlink as the last component (the resolved path never has one) is refused.
        symlink(f.psd.join("pool.set"), f.psd.join("link.set")).unwrap();
        assert!(open_regular_file(&f.psd.join("link.set")).is_err());
        // Symlinks in the directories above are followed.
        symlink(f.psd.join("sub"), f.psd.join("alias")).unwrap();
        assert!(open_regular_file(&f.psd.join("alias/inner.set")).is_ok());
    }

    #[test]
    fn missing_directories_are_named() {
        let f = fixture();
        let e = resolve_descriptor(&f.psd, "nope/pool.set").unwrap_err();
        assert!(
            matches!(&e, PathError::NotFound { missing, .. } if *missing == f.psd.join("nope")),
            "{e}"
        );
        let e = resolve_descriptor(&f.psd.join("absent"), "pool.set").unwrap_err();
        assert!(matches!(e, PathError::PoolsetDir { .. }));
        assert!(e.to_string().contains("absent"));
    }
}
