//! Target addresses: `[user@]host[:port]`, IPv6 hosts in brackets (`[::1]:2222`).
//!
//! This is the syntax of librpmem's `target` argument and of the node part of a poolset's
//! `REPLICA` line. The port here is the SSH port of the control channel.

use std::fmt;
use std::str::FromStr;

/// Where rpmemd runs: the SSH login and address of the target machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Login name; `None` means "as the SSH configuration or the current user says".
    pub user: Option<String>,
    /// Host name or address, without brackets.
    pub host: String,
    /// SSH port; `None` means "as the SSH configuration says, else 22".
    pub port: Option<u16>,
}

/// Why a target string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("empty target (expected [user@]host[:port])")]
    Empty,
    #[error("empty user name before '@' in target {0:?}")]
    EmptyUser(String),
    #[error("empty host in target {0:?}")]
    EmptyHost(String),
    #[error("unclosed '[' in target {0:?} (IPv6 addresses are written [addr]:port)")]
    UnclosedBracket(String),
    #[error("unexpected {found:?} after ']' in target {target:?} (expected ':port' or nothing)")]
    AfterBracket { target: String, found: String },
    #[error("bad port {port:?} in target {target:?} (expected a number from 1 to 65535)")]
    BadPort { target: String, port: String },
    #[error("IPv6 address {0:?} must be written in brackets, e.g. [::1]:22")]
    BareIpv6(String),
    #[error("invalid character {ch:?} in target {target:?}")]
    BadChar { target: String, ch: char },
    #[error("{what} in target {target:?} may not start with '-' (ssh would read it as an option)")]
    LeadingDash { target: String, what: &'static str },
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(text: &str) -> Result<Self, TargetError> {
        if text.is_empty() {
            return Err(TargetError::Empty);
        }
        if let Some(ch) = text
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || *c == '/')
        {
            return Err(TargetError::BadChar {
                target: text.into(),
                ch,
            });
        }
        let (user, rest) = match text.rfind('@') {
            Some(0) => return Err(TargetError::EmptyUser(text.into())),
            Some(at) => (Some(text[..at].to_string()), &text[at + 1..]),
            None => (None, text),
        };
        let (host, port_text) = if let Some(inner) = rest.strip_prefix('[') {
            let close = inner
                .find(']')
                .ok_or_else(|| TargetError::UnclosedBracket(text.into()))?;
            let after = &inner[close + 1..];
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| TargetError::AfterBracket {
                            target: text.into(),
                            found: after.into(),
                        })?,
                ),
            };
            (&inner[..close], port)
        } else if rest.matches(':').count() > 1 {
            return Err(TargetError::BareIpv6(rest.into()));
        } else {
            match rest.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(TargetError::EmptyHost(text.into()));
        }
        // Both end up on an ssh command line (the external transport); a leading '-' there
        // would be an option such as -oProxyCommand=..., i.e. a local command.
        for (what, value) in [("host", Some(host)), ("user", user.as_deref())] {
            if value.is_some_and(|v| v.starts_with('-')) {
                return Err(TargetError::LeadingDash {
                    target: text.into(),
                    what,
                });
            }
        }
        let port = match port_text {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
                _ => {
                    return Err(TargetError::BadPort {
                        target: text.into(),
                        port: p.into(),
                    })
                }
            },
        };
        Ok(Target {
            user,
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, user: Option<&str>, host: &str, port: Option<u16>) {
        let target: Target = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(target.user.as_deref(), user, "{text}");
        assert_eq!(target.host, host, "{text}");
        assert_eq!(target.port, port, "{text}");
        assert_eq!(target.to_string().parse::<Target>().unwrap(), target);
    }

    #[test]
    fn accepts_every_documented_form() {
        check("host", None, "host", None);
        check("host:2222", None, "host", Some(2222));
        check("alice@host", Some("alice"), "host", None);
        check("alice@10.0.0.1:22", Some("alice"), "10.0.0.1", Some(22));
        check("[::1]", None, "::1", None);
        check("bob@[fe80::1]:7636", Some("bob"), "fe80::1", Some(7636));
    }

    #[test]
    fn refuses_malformed_targets_with_the_reason() {
        let bad = |t: &str| t.parse::<Target>().unwrap_err();
        assert_eq!(bad(""), TargetError::Empty);
        assert!(matches!(bad("@host"), TargetError::EmptyUser(_)));
        assert!(matches!(bad("alice@"), TargetError::EmptyHost(_)));
        assert!(matches!(bad(":22"), TargetError::EmptyHost(_)));
        assert!(matches!(bad("[::1"), TargetError::UnclosedBracket(_)));
        assert!(matches!(bad("[::1]x"), TargetError::AfterBracket { .. }));
        assert!(matches!(bad("host:0"), TargetError::BadPort { .. }));
        assert!(matches!(bad("host:65536"), TargetError::BadPort { .. }));
        assert!(matches!(bad("host:+22"), TargetError::BadPort { .. }));
        assert!(matches!(bad("host:"), TargetError::BadPort { .. }));
        assert!(matches!(bad("::1"), TargetError::BareIpv6(_)));
        assert!(matches!(bad("ho st"), TargetError::BadChar { .. }));
        assert!(matches!(bad("host/x"), TargetError::BadChar { .. }));
        assert!(matches!(
            bad("-oProxyCommand=touch${IFS}x"),
            TargetError::LeadingDash { what: "host", .. }
        ));
        assert!(matches!(
            bad("-x@host"),
            TargetError::LeadingDash { what: "user", .. }
        ));
    }
}
