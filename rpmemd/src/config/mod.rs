//! rpmemd configuration: PMDK rpmemd(1)'s keys, files and command line.
//!
//! Precedence, lowest first: built-in defaults; then either the file given with `-c FILE` alone,
//! or the system file (`/etc/rpmemd/rpmemd.conf`) followed by the user file
//! (`$HOME/.rpmemd.conf`), each skipped if absent; then command-line options. In `poolset-dir`
//! (PMDK) and `log-file` (as in rpmemd(1)'s example; PMDK itself does not), the first `$HOME`
//! anywhere in the value is replaced by the home directory, once, unless a letter or digit
//! follows it (`$HOMEDIR` stays as written), as PMDK's `str_replace_home` does. Every value
//! remembers where it came from ([`Origin`]) so errors can say which file and line to fix.
//!
//! Defaults (rpmemd(1) "DEFAULT CONFIGURATION"): `log-file = /var/log/rpmemd.log`,
//! `poolset-dir = $HOME`, `persist-apm = no`, `persist-general = yes`, `use-syslog = yes`,
//! `log-level = err`.
//!
//! Refused at start-up, naming the origin: a relative `poolset-dir` or one that is `/` (also
//! through `HOME=/` or a symlink: confinement would mean nothing), and `persist-apm = no`
//! together with `persist-general = no` (no pool could be served).

mod cli;
mod file;

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::Parser;

pub use cli::Cli;
pub use file::{parse as parse_file, MAX_CONFIG_FILE_LEN};

/// The system-wide configuration file.
pub const SYSTEM_CONFIG_FILE: &str = "/etc/rpmemd/rpmemd.conf";
/// The per-user configuration file, relative to `$HOME`.
pub const USER_CONFIG_FILE_NAME: &str = ".rpmemd.conf";

/// rpmemd's log levels, in increasing verbosity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Err,
    Warn,
    Notice,
    Info,
    Debug,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Err => "err",
            LogLevel::Warn => "warn",
            LogLevel::Notice => "notice",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

impl FromStr for LogLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<LogLevel, String> {
        match s {
            "err" => Ok(LogLevel::Err),
            "warn" => Ok(LogLevel::Warn),
            "notice" => Ok(LogLevel::Notice),
            "info" => Ok(LogLevel::Info),
            "debug" => Ok(LogLevel::Debug),
            _ => Err(format!(
                "log level `{s}` is not one of err, warn, notice, info, debug"
            )),
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a setting came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Default,
    File { path: PathBuf, line: usize },
    CommandLine,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("built-in default"),
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::CommandLine => f.write_str("command line"),
        }
    }
}

/// A value and its origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sourced<T> {
    pub value: T,
    pub origin: Origin,
}

/// One layer of settings (a file, the command line, the defaults): `None` = not set here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub poolset_dir: Option<Sourced<String>>,
    pub persist_apm: Option<Sourced<bool>>,
    pub persist_general: Option<Sourced<bool>>,
    pub use_syslog: Option<Sourced<bool>>,
    pub log_file: Option<Sourced<String>>,
    pub log_level: Option<Sourced<LogLevel>>,
}

impl Settings {
    /// rpmemd(1)'s default configuration.
    pub fn defaults() -> Settings {
        fn d<T>(value: T) -> Option<Sourced<T>> {
            Some(Sourced {
                value,
                origin: Origin::Default,
            })
        }
        Settings {
            poolset_dir: d("$HOME".to_owned()),
            persist_apm: d(false),
            persist_general: d(true),
            use_syslog: d(true),
            log_file: d("/var/log/rpmemd.log".to_owned()),
            log_level: d(LogLevel::Err),
        }
    }

    /// Values set in `upper` replace ours.
    pub fn overlay(&mut self, upper: Settings) {
        fn o<T>(lower: &mut Option<T>, upper: Option<T>) {
            if upper.is_some() {
                *lower = upper;
            }
        }
        o(&mut self.poolset_dir, upper.poolset_dir);
        o(&mut self.persist_apm, upper.persist_apm);
        o(&mut self.persist_general, upper.persist_general);
        o(&mut self.use_syslog, upper.use_syslog);
        o(&mut self.log_file, upper.log_file);
        o(&mut self.log_level, upper.log_level);
    }
}

/// `--remove POOLSET [--force] [--pool-set]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoveRequest {
    /// Poolset descriptor, relative to poolset-dir (checked by `paths::resolve_descriptor`).
    pub poolset: String,
    pub force: bool,
    pub pool_set: bool,
}

/// The effective configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Absolute; `$HOME` substituted.
    pub poolset_dir: PathBuf,
    pub persist_apm: bool,
    pub persist_general: bool,
    pub use_syslog: bool,
    pub log_file: PathBuf,
    pub log_level: LogLevel,
    /// Set when rpmemd was asked to remove a pool and exit instead of serving.
    pub remove: Option<RemoveRequest>,
    /// Configuration files actually read, in order.
    pub files_read: Vec<PathBuf>,
}

/// Where the configuration files are and what `$HOME` is: the process environment in
/// production, a temporary directory in tests.
#[derive(Clone, Debug)]
pub struct Environment {
    pub system_file: PathBuf,
    pub home: Option<PathBuf>,
}

impl Environment {
    pub fn from_process() -> Environment {
        Environment {
            system_file: PathBuf::from(SYSTEM_CONFIG_FILE),
            home: std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from),
        }
    }
}

/// Why the configuration could not be established.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Bad command line, or `--help` / `--version` (call `.exit()` on the clap error to print it
    /// with the right exit code).
    #[error(transparent)]
    Cli(#[from] clap::Error),
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}:{line}: {why}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        why: String,
    },
    #[error("{key} (from {origin}) uses $HOME, but HOME is not set")]
    NoHome { key: &'static str, origin: Origin },
    #[error("no persist method is enabled: persist-apm = no (from {apm}) and persist-general = no (from {general}); rpmemd could accept no pool, so enable at least one")]
    NoPersistMethod { apm: Origin, general: Origin },
    #[error("{key} = {value:?} (from {origin}): {why}")]
    Invalid {
        key: &'static str,
        value: String,
        origin: Origin,
        why: &'static str,
    },
}

impl Config {
    /// The configuration from the process's command line (`args`, program name first) and the
    /// configuration files found through the process environment.
    pub fn from_args_and_files<I, T>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Config::from_args_with(args, &Environment::from_process())
    }

    /// As [`from_args_and_files`](Self::from_args_and_files), with an explicit environment.
    pub fn from_args_with<I, T>(args: I, env: &Environment) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let cli = Cli::try_parse_from(args)?;
        let mut settings = Settings::defaults();
        let mut files_read = Vec::new();
        match &cli.config {
            Some(path) => {
                // An explicitly named file must exist.
                let layer = read_file(path)?.ok_or_else(|| ConfigError::Read {
                    path: path.clone(),
                    source: io::Error::new(io::ErrorKind::NotFound, "no such file"),
                })?;
                settings.overlay(layer);
                files_read.push(path.clone());
            }
            None => {
                let user = env.home.as_ref().map(|h| h.join(USER_CONFIG_FILE_NAME));
                for path in std::iter::once(&env.system_file).chain(user.as_ref()) {
                    if let Some(layer) = read_file(path)? {
                        settings.overlay(layer);
                        files_read.push(path.clone());
                    }
                }
            }
        }
        settings.overlay(cli_layer(&cli));
        let remove = cli.remove.map(|poolset| RemoveRequest {
            poolset,
            force: cli.force,
            pool_set: cli.pool_set,
        });
        finish(settings, env, remove, files_read)
    }
}

/// Reads and parses one file; `Ok(None)` if it does not exist.
fn read_file(path: &Path) -> Result<Option<Settings>, ConfigError> {
    use std::io::Read;
    let read_err = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_err(e)),
    };
    let mut bytes = Vec::new();
    f.take(MAX_CONFIG_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_CONFIG_FILE_LEN {
        return Err(read_err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_CONFIG_FILE_LEN} bytes"),
        )));
    }
    file::parse(path, &bytes).map(Some)
}

fn cli_layer(cli: &Cli) -> Settings {
    fn c<T>(value: T) -> Option<Sourced<T>> {
        Some(Sourced {
            value,
            origin: Origin::CommandLine,
        })
    }
    Settings {
        poolset_dir: cli.poolset_dir.clone().and_then(c),
        persist_apm: cli.persist_apm.then_some(true).and_then(c),
        persist_general: cli.persist_general.then_some(true).and_then(c),
        use_syslog: cli.use_syslog.then_some(true).and_then(c),
        log_file: cli.log_file.clone().and_then(c),
        log_level: cli.log_level.and_then(c),
    }
}

fn finish(
    s: Settings,
    env: &Environment,
    remove: Option<RemoveRequest>,
    files_read: Vec<PathBuf>,
) -> Result<Config, ConfigError> {
    // Settings::defaults() sets every field and overlays never unset one.
    let (Some(psd), Some(apm), Some(general), Some(syslog), Some(log_file), Some(level)) = (
        s.poolset_dir,
        s.persist_apm,
        s.persist_general,
        s.use_syslog,
        s.log_file,
        s.log_level,
    ) else {
        unreachable!("defaults set every field");
    };
    let poolset_dir = expand_home("poolset-dir", &psd, env)?;
    if !poolset_dir.is_absolute() {
        return Err(ConfigError::Invalid {
            key: "poolset-dir",
            value: psd.value,
            origin: psd.origin,
            why: "must be an absolute path",
        });
    }
    if names_root(&poolset_dir) {
        return Err(ConfigError::Invalid {
            key: "poolset-dir",
            value: psd.value,
            origin: psd.origin,
            why: "is the root directory: every file on the machine would be a valid pool \
                  descriptor; use a directory that holds only poolset files",
        });
    }
    let log_file = expand_home("log-file", &log_file, env)?;
    if !apm.value && !general.value {
        return Err(ConfigError::NoPersistMethod {
            apm: apm.origin,
            general: general.origin,
        });
    }
    Ok(Config {
        poolset_dir,
        persist_apm: apm.value,
        persist_general: general.value,
        use_syslog: syslog.value,
        log_file,
        log_level: level.value,
        remove,
        files_read,
    })
}

/// Whether the absolute `dir` is `/`: lexically (`/`, `//`, `/tmp/..`) or, when it exists, after
/// following symbolic links.
fn names_root(dir: &Path) -> bool {
    use std::path::Component;
    let mut depth = 0usize;
    for c in dir.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    depth == 0 || dir.canonicalize().is_ok_and(|real| real == Path::new("/"))
}

fn expand_home(
    key: &'static str,
    v: &Sourced<String>,
    env: &Environment,
) -> Result<PathBuf, ConfigError> {
    // PMDK (rpmemd_config.c, str_replace_home): the first `$HOME` anywhere in the value is
    // replaced, once, unless a letter or digit follows it; otherwise the value is kept as written.
    const HOME: &str = "$HOME";
    let Some(at) = v.value.find(HOME) else {
        return Ok(PathBuf::from(&v.value));
    };
    let after = &v.value[at + HOME.len()..];
    if after.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Ok(PathBuf::from(&v.value));
    }
    let home = env.home.as_ref().ok_or_else(|| ConfigError::NoHome {
        key,
        origin: v.origin.clone(),
    })?;
    let home = home.to_str().ok_or(ConfigError::Invalid {
        key,
        value: v.value.clone(),
        origin: v.origin.clone(),
        why: "$HOME is not valid UTF-8 and cannot be substituted",
    })?;
    Ok(PathBuf::from(format!("{}{home}{after}", &v.value[..at])))
}

#[cfg(test)]
mod tests;
