//! Logging of the daemon: never to stdout (stdout carries only protocol frames).
//!
//! Messages at or above the configured `log-level` go to syslog (`use-syslog`) or to `log-file`
//! (`-` means stderr); if the log file cannot be opened they go to stderr. Errors are always
//! copied to stderr as well, because the initiator shows the end of rpmemd's stderr when a session
//! fails (that is how a user learns what went wrong on the target).

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::sync::{Mutex, OnceLock};

use rpmemd::config::{Config, LogLevel};

enum Sink {
    Syslog,
    File(Mutex<File>),
    Stderr,
}

struct Logger {
    level: LogLevel,
    sink: Sink,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Sets up logging from the configuration. Called once, before anything is logged; later calls
/// are ignored.
pub fn init(cfg: &Config) {
    let sink = if cfg.use_syslog {
        // SAFETY: the identity string is 'static and NUL-terminated; openlog keeps the pointer.
        unsafe { libc::openlog(c"rpmemd".as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
        Sink::Syslog
    } else if cfg.log_file.as_os_str() == "-" {
        Sink::Stderr
    } else {
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&cfg.log_file)
        {
            Ok(f) => Sink::File(Mutex::new(f)),
            Err(e) => {
                eprintln!(
                    "rpmemd: cannot open log file {}: {e}; logging to stderr",
                    cfg.log_file.display()
                );
                Sink::Stderr
            }
        }
    };
    let _ = LOGGER.set(Logger {
        level: cfg.log_level,
        sink,
    });
}

/// Logs `msg` at `level`.
pub fn log(level: LogLevel, msg: &str) {
    let Some(l) = LOGGER.get() else {
        eprintln!("rpmemd: {}: {msg}", level.as_str());
        return;
    };
    let to_stderr_too = level == LogLevel::Err && !matches!(l.sink, Sink::Stderr);
    if to_stderr_too {
        eprintln!("rpmemd: {msg}");
    }
    // Levels are ordered from the most severe (err) to the least (debug).
    if level > l.level {
        return;
    }
    let line = format!("rpmemd[{}]: {}: {msg}", std::process::id(), level.as_str());
    match &l.sink {
        Sink::Stderr => eprintln!("{line}"),
        Sink::File(f) => {
            if let Ok(mut f) = f.lock() {
                let _ = writeln!(f, "{line}");
            }
        }
        Sink::Syslog => {
            let prio = match level {
                LogLevel::Err => libc::LOG_ERR,
                LogLevel::Warn => libc::LOG_WARNING,
                LogLevel::Notice => libc::LOG_NOTICE,
                LogLevel::Info => libc::LOG_INFO,
                LogLevel::Debug => libc::LOG_DEBUG,
            };
            let text = CString::new(msg.replace('\0', " ")).unwrap_or_default();
            // SAFETY: "%s" with one NUL-terminated argument; both live through the call.
            unsafe { libc::syslog(prio, c"%s".as_ptr(), text.as_ptr()) };
        }
    }
}

macro_rules! err { ($($t:tt)*) => { $crate::log::log(rpmemd::config::LogLevel::Err, &format!($($t)*)) } }
macro_rules! warning { ($($t:tt)*) => { $crate::log::log(rpmemd::config::LogLevel::Warn, &format!($($t)*)) } }
macro_rules! notice { ($($t:tt)*) => { $crate::log::log(rpmemd::config::LogLevel::Notice, &format!($($t)*)) } }
macro_rules! info { ($($t:tt)*) => { $crate::log::log(rpmemd::config::LogLevel::Info, &format!($($t)*)) } }
macro_rules! debug { ($($t:tt)*) => { $crate::log::log(rpmemd::config::LogLevel::Debug, &format!($($t)*)) } }
pub(crate) use {debug, err, info, notice, warning};
