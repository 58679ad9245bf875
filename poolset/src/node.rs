//! Remote node addresses: `[user@]host[:port]`, IPv6 hosts in brackets, and the one-token form
//! `[user@]host[:port]:DESCRIPTOR` of the design card.
//!
//! Disambiguation of the text after `host:` (see docs/POOLSET.md): all digits is a port;
//! digits followed by `:` is a port and then a descriptor; anything else is a descriptor.
//! User and host may not start with `-`, so they can never be read by ssh as options. Only an `@`
//! before the host (before the first `:` or `[`) separates a user; later ones are descriptor text.

use std::net::Ipv6Addr;

/// A remote node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

/// Parses a node address. Returns the node and, when the token continues with `:DESCRIPTOR`
/// (one-token form), that descriptor text (possibly empty). Errors are plain-words reasons.
pub(crate) fn parse_node(token: &str) -> Result<(Node, Option<&str>), String> {
    // The user part ends before the host: an '@' after the first ':' or '[' belongs to the port
    // or descriptor text (`host:pools/a@b.set`), never to a user name.
    let host_start = token.find([':', '[']).unwrap_or(token.len());
    let (user, rest) = match token[..host_start].find('@') {
        Some(at) => {
            let u = &token[..at];
            check_user(u)?;
            (Some(u.to_string()), &token[at + 1..])
        }
        None => (None, token),
    };
    let (host, after) = if let Some(inner) = rest.strip_prefix('[') {
        let close = inner
            .find(']')
            .ok_or_else(|| "'[' without a closing ']'".to_string())?;
        let host = &inner[..close];
        check_ipv6(host)?;
        (host, &inner[close + 1..])
    } else {
        let end = rest.find(':').unwrap_or(rest.len());
        let host = &rest[..end];
        check_host_name(host, &rest[end..])?;
        (host, &rest[end..])
    };
    let mut node = Node {
        user,
        host: host.to_string(),
        port: None,
    };
    if after.is_empty() {
        return Ok((node, None));
    }
    let Some(x) = after.strip_prefix(':') else {
        return Err(format!(
            "expected ':' or the end after the host, found '{after}'"
        ));
    };
    if x.is_empty() {
        return Err("nothing after ':'; expected a port number or a descriptor".to_string());
    }
    let digits = x.bytes().take_while(u8::is_ascii_digit).count();
    if digits == x.len() {
        node.port = Some(parse_port(x)?);
        return Ok((node, None));
    }
    if digits > 0 && x.as_bytes()[digits] == b':' {
        node.port = Some(parse_port(&x[..digits])?);
        return Ok((node, Some(&x[digits + 1..])));
    }
    Ok((node, Some(x)))
}

fn parse_port(digits: &str) -> Result<u16, String> {
    match digits.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("port '{digits}' is not in 1-65535")),
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')
}

fn check_user(user: &str) -> Result<(), String> {
    if user.is_empty() {
        return Err("empty user name before '@'".to_string());
    }
    if user.starts_with('-') {
        return Err("a user name cannot start with '-'".to_string());
    }
    if let Some(c) = user.chars().find(|c| !is_name_char(*c)) {
        return Err(format!(
            "character '{c}' is not allowed in a user name (letters, digits, '.', '-', '_')"
        ));
    }
    Ok(())
}

fn check_host_name(host: &str, after: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err(if after.len() > 1 && after[1..].contains(':') {
            "empty host name; write an IPv6 address in brackets, e.g. [::1]:7636".to_string()
        } else {
            "empty host name".to_string()
        });
    }
    if host.starts_with('-') {
        return Err("a host name cannot start with '-'".to_string());
    }
    if host.contains('@') {
        return Err("more than one '@'".to_string());
    }
    if host.starts_with('.') || host.contains("..") {
        return Err(format!(
            "'{host}' is not a host name: it starts with '.' or has an empty label ('..')"
        ));
    }
    if let Some(c) = host.chars().find(|c| !is_name_char(*c)) {
        return Err(format!(
            "character '{c}' is not allowed in a host name (letters, digits, '.', '-', '_'; IPv6 in brackets)"
        ));
    }
    Ok(())
}

fn check_ipv6(host: &str) -> Result<(), String> {
    let (addr, zone) = match host.split_once('%') {
        Some((a, z)) => (a, Some(z)),
        None => (host, None),
    };
    if addr.parse::<Ipv6Addr>().is_err() {
        return Err(format!("'{addr}' in brackets is not an IPv6 address"));
    }
    if let Some(z) = zone {
        if z.is_empty() || !z.chars().all(is_name_char) {
            return Err(format!("'{z}' is not a valid IPv6 zone"));
        }
    }
    Ok(())
}

/// Writes a node back: brackets around IPv6 hosts.
pub(crate) fn format_node(user: Option<&str>, host: &str, port: Option<u16>) -> String {
    let mut s = String::new();
    if let Some(u) = user {
        s.push_str(u);
        s.push('@');
    }
    if host.contains(':') {
        s.push('[');
        s.push_str(host);
        s.push(']');
    } else {
        s.push_str(host);
    }
    if let Some(p) = port {
        s.push(':');
        s.push_str(&p.to_string());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(user: Option<&str>, host: &str, port: Option<u16>) -> Node {
        Node {
            user: user.map(str::to_string),
            host: host.to_string(),
            port,
        }
    }

    #[test]
    fn forms() {
        assert_eq!(parse_node("host"), Ok((node(None, "host", None), None)));
        assert_eq!(
            parse_node("u@host:123"),
            Ok((node(Some("u"), "host", Some(123)), None))
        );
        assert_eq!(
            parse_node("u@host:target.poolset"),
            Ok((node(Some("u"), "host", None), Some("target.poolset")))
        );
        assert_eq!(
            parse_node("host:7636:d/x.set"),
            Ok((node(None, "host", Some(7636)), Some("d/x.set")))
        );
        assert_eq!(
            parse_node("host:123abc"),
            Ok((node(None, "host", None), Some("123abc")))
        );
        assert_eq!(
            parse_node("[::1]:7636"),
            Ok((node(None, "::1", Some(7636)), None))
        );
        assert_eq!(
            parse_node("u@[fe80::1%eth0]:t.set"),
            Ok((node(Some("u"), "fe80::1%eth0", None), Some("t.set")))
        );
        // An '@' after the host belongs to the descriptor, not to a user name.
        assert_eq!(
            parse_node("host:pools/a@b.set"),
            Ok((node(None, "host", None), Some("pools/a@b.set")))
        );
        assert_eq!(
            parse_node("u@host:7636:a@b.set"),
            Ok((node(Some("u"), "host", Some(7636)), Some("a@b.set")))
        );
        assert_eq!(
            parse_node("[::1]:x@y"),
            Ok((node(None, "::1", None), Some("x@y")))
        );
        assert_eq!(
            parse_node("10.0.0.2"),
            Ok((node(None, "10.0.0.2", None), None))
        );
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "@h",
            "u@",
            "-oProxyCommand=x",
            "u@-h",
            "a@b@c",
            "h:",
            "h:0",
            "h:65536",
            "::1",
            "[::1",
            "[zz]:1",
            "[::1]x",
            "h/x",
            "u!@h",
        ] {
            assert!(parse_node(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn format() {
        assert_eq!(format_node(Some("u"), "::1", Some(7)), "u@[::1]:7");
        assert_eq!(format_node(None, "h", None), "h");
    }
}
