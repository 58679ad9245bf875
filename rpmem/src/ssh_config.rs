//! The basics of the user's OpenSSH client configuration (`~/.ssh/config`).
//!
//! Only what the control channel needs: `HostName`, `User`, `Port`, `IdentityFile`,
//! `UserKnownHostsFile` and `StrictHostKeyChecking`, inside `Host` blocks with OpenSSH's patterns
//! (`*`, `?`, `!negation`). As in OpenSSH the first value found for a key wins, except
//! `IdentityFile`, which accumulates. `Match` blocks are not evaluated: their options are skipped.

use std::path::{Path, PathBuf};

/// What the configuration says about one host alias.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostConfig {
    pub host_name: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_files: Vec<PathBuf>,
    pub known_hosts_file: Option<PathBuf>,
    /// `StrictHostKeyChecking no` (or `accept-new`/`off`): accept a host that is not yet known.
    pub accept_unknown_host: Option<bool>,
}

/// A configuration line that could not be understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {what}")]
pub struct SshConfigError {
    pub file: String,
    pub line: usize,
    pub what: String,
}

/// Reads `path` and returns what it says for `alias`; a missing file is an empty configuration.
pub fn load(path: &Path, alias: &str) -> Result<HostConfig, SshConfigError> {
    match std::fs::read(path) {
        Ok(bytes) => lookup(&path.display().to_string(), &bytes, alias),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HostConfig::default()),
        Err(e) => Err(SshConfigError {
            file: path.display().to_string(),
            line: 0,
            what: format!("cannot read: {e}"),
        }),
    }
}

/// Evaluates configuration `text` (named `file` in errors) for host `alias`.
pub fn lookup(file: &str, text: &[u8], alias: &str) -> Result<HostConfig, SshConfigError> {
    let text = String::from_utf8_lossy(text);
    let mut config = HostConfig::default();
    let mut active = true; // options before the first Host block apply to every host
    for (index, raw) in text.lines().enumerate() {
        let error = |what: String| SshConfigError {
            file: file.to_string(),
            line: index + 1,
            what,
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = split_key_value(line);
        let key = key.to_ascii_lowercase();
        match key.as_str() {
            "host" => {
                active = host_matches(value, alias);
                continue;
            }
            "match" => {
                active = false;
                continue;
            }
            _ if !active => continue,
            _ => {}
        }
        if value.is_empty() {
            return Err(error(format!("option {key} has no value")));
        }
        match key.as_str() {
            "hostname" => {
                config.host_name.get_or_insert_with(|| value.to_string());
            }
            "user" => {
                config.user.get_or_insert_with(|| value.to_string());
            }
            "port" if config.port.is_none() => {
                let port = value
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| error(format!("bad port {value:?}")))?;
                config.port = Some(port);
            }
            "identityfile" => config.identity_files.push(expand_path(value)),
            "userknownhostsfile" if config.known_hosts_file.is_none() => {
                // Several files may be listed; the first is the one we read.
                let first = value.split_whitespace().next().unwrap_or(value);
                config.known_hosts_file = Some(expand_path(first));
            }
            "stricthostkeychecking" if config.accept_unknown_host.is_none() => {
                let accept = match value.to_ascii_lowercase().as_str() {
                    "no" | "off" | "accept-new" => true,
                    "yes" | "ask" => false,
                    other => {
                        return Err(error(format!("bad StrictHostKeyChecking value {other:?}")))
                    }
                };
                config.accept_unknown_host = Some(accept);
            }
            _ => {} // every other OpenSSH option is irrelevant to us
        }
    }
    Ok(config)
}

fn split_key_value(line: &str) -> (&str, &str) {
    let split_at = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let (key, rest) = line.split_at(split_at);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim();
    let rest = rest
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(rest);
    (key, rest)
}

/// OpenSSH's `Host` rule: some pattern matches and no negated pattern matches.
fn host_matches(patterns: &str, alias: &str) -> bool {
    let mut matched = false;
    for pattern in patterns.split_whitespace() {
        if let Some(negated) = pattern.strip_prefix('!') {
            if wildcard_match(negated.as_bytes(), alias.as_bytes()) {
                return false;
            }
        } else if wildcard_match(pattern.as_bytes(), alias.as_bytes()) {
            matched = true;
        }
    }
    matched
}

fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            wildcard_match(&pattern[1..], text)
                || (!text.is_empty() && wildcard_match(pattern, &text[1..]))
        }
        (Some(b'?'), Some(_)) => wildcard_match(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) if p.eq_ignore_ascii_case(t) => {
            wildcard_match(&pattern[1..], &text[1..])
        }
        _ => false,
    }
}

/// Expands a leading `~/` to `$HOME/`.
pub fn expand_path(value: &str) -> PathBuf {
    match (value.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "\
# global part
IdentityFile /keys/global
Host replica*  !replica-old
    HostName 10.1.2.3
    User alice
    Port=2222
    IdentityFile /keys/replica
Host *
    User nobody
    Port 22
    StrictHostKeyChecking accept-new
Match user root
    HostName never-used
";

    #[test]
    fn first_value_wins_and_identity_files_accumulate() {
        let c = lookup("cfg", CONFIG.as_bytes(), "replica1").unwrap();
        assert_eq!(c.host_name.as_deref(), Some("10.1.2.3"));
        assert_eq!(c.user.as_deref(), Some("alice"));
        assert_eq!(c.port, Some(2222));
        assert_eq!(
            c.identity_files,
            vec![
                PathBuf::from("/keys/global"),
                PathBuf::from("/keys/replica")
            ]
        );
        assert_eq!(c.accept_unknown_host, Some(true));
    }

    #[test]
    fn negated_patterns_exclude_and_match_blocks_are_skipped() {
        let c = lookup("cfg", CONFIG.as_bytes(), "replica-old").unwrap();
        assert_eq!(c.host_name, None);
        assert_eq!(c.user.as_deref(), Some("nobody"));
        assert_eq!(c.port, Some(22));
    }

    #[test]
    fn bad_values_name_file_and_line() {
        let err = lookup("cfg", b"Host x\n Port many\n", "x").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.to_string().starts_with("cfg:2: bad port"), "{err}");
        let err = lookup("cfg", b"Host *\nUser\n", "x").unwrap_err();
        assert_eq!(err.line, 2);
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match(b"a*c", b"abbbc"));
        assert!(wildcard_match(b"a?c", b"abc"));
        assert!(!wildcard_match(b"a?c", b"ac"));
        assert!(wildcard_match(b"*", b""));
        assert!(!wildcard_match(b"abc", b"abcd"));
    }
}
