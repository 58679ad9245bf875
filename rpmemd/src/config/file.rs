//! Configuration file syntax (PMDK rpmemd(1)): one `key = value` per line; `#` starts a comment
//! anywhere on a line; blank lines are ignored; booleans are `yes` or `no`. Unknown keys, missing
//! `=`, empty values and bad values are errors naming `file:line`. A later line overrides an
//! earlier one for the same key.

use std::path::Path;

use super::{ConfigError, LogLevel, Origin, Settings, Sourced};

/// Largest configuration file read; a bigger one is certainly not a configuration file.
pub const MAX_CONFIG_FILE_LEN: u64 = 1 << 20;

/// Parses the text of a configuration file read from `path` (used in errors and origins).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Settings, ConfigError> {
    let mut s = Settings::default();
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = i + 1;
        let err = |why: String| ConfigError::Syntax {
            path: path.to_owned(),
            line,
            why,
        };
        let text = std::str::from_utf8(raw).map_err(|_| err("not valid UTF-8".into()))?;
        let text = match text.find('#') {
            Some(at) => &text[..at],
            None => text,
        }
        .trim();
        if text.is_empty() {
            continue;
        }
        let Some((key, value)) = text.split_once('=') else {
            return Err(err(format!("expected `key = value`, found `{text}`")));
        };
        let (key, value) = (key.trim(), value.trim());
        if value.is_empty() {
            return Err(err(format!("`{key}` has no value")));
        }
        let origin = Origin::File {
            path: path.to_owned(),
            line,
        };
        match key {
            "poolset-dir" => s.poolset_dir = sourced(value.to_owned(), &origin),
            "log-file" => s.log_file = sourced(value.to_owned(), &origin),
            "persist-apm" => s.persist_apm = sourced(yes_no(key, value).map_err(err)?, &origin),
            "persist-general" => {
                s.persist_general = sourced(yes_no(key, value).map_err(err)?, &origin)
            }
            "use-syslog" => s.use_syslog = sourced(yes_no(key, value).map_err(err)?, &origin),
            "log-level" => {
                let level: LogLevel = value.parse().map_err(err)?;
                s.log_level = sourced(level, &origin)
            }
            other => {
                return Err(err(format!(
                    "unknown key `{other}` (known: poolset-dir, persist-apm, persist-general, \
                     use-syslog, log-file, log-level)"
                )))
            }
        }
    }
    Ok(s)
}

fn sourced<T>(value: T, origin: &Origin) -> Option<Sourced<T>> {
    Some(Sourced {
        value,
        origin: origin.clone(),
    })
}

fn yes_no(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(format!("`{key}` must be `yes` or `no`, not `{value}`")),
    }
}
