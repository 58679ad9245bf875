//! Small shared helpers: size arguments (`64M`, `1GiB`, `4096`), a hand-written progress bar on
//! stderr, terminal checks, and the command outcome type that carries an exit code.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Exit code of a bad command line, for every command (sysexits' `EX_USAGE`), so that it never
/// collides with a command's own codes (`check` uses 0..=3).
pub const EXIT_USAGE: u8 = 64;

/// A command's failure: the message (printed as `pmempool CMD: error: ...`) and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// Exit code.
    pub code: u8,
    /// What went wrong and what to do.
    pub message: String,
}

impl Failure {
    /// A failure with exit code `code`.
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

/// Print a failure of command `cmd` and turn it into the exit code.
pub fn report(cmd: &str, r: Result<u8, Failure>) -> ExitCode {
    match r {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("pmempool {cmd}: error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Parse a size: a number of bytes with an optional unit — `K`, `M`, `G`, `T` (and `KB`..`TB`,
/// `KiB`..`TiB`) are powers of 1024, as in poolset files. Case-insensitive; no fractions.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "size {s:?}: expected a number of bytes, e.g. 64M or 1G"
        ));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("size {s:?}: number too large"))?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(format!(
                "size {s:?}: unknown unit {unit:?} (use K, M, G or T, powers of 1024)"
            ))
        }
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size {s:?} does not fit in 64 bits"))
}

/// Parse a byte range `A-B` (B exclusive), `A-` (to the end) or `-B` (from 0); each end is a
/// size as [`parse_size`] reads it. Returns (start, end) with `end` `None` for "to the end".
pub fn parse_range(s: &str) -> Result<(u64, Option<u64>), String> {
    let Some((a, b)) = s.split_once('-') else {
        return Err(format!(
            "range {s:?}: expected START-END (END exclusive), START- or -END, e.g. 0-4K"
        ));
    };
    let start = if a.trim().is_empty() {
        0
    } else {
        parse_size(a)?
    };
    let end = if b.trim().is_empty() {
        None
    } else {
        Some(parse_size(b)?)
    };
    if let Some(e) = end {
        if e <= start {
            return Err(format!("range {s:?}: end {e} is not after start {start}"));
        }
    }
    Ok((start, end))
}

/// Whether stdin is a terminal (for confirmation prompts).
pub fn stdin_is_tty() -> bool {
    std::io::stdin().is_terminal()
}

/// A progress bar on stderr: drawn only when stderr is a terminal or when forced
/// (`--progress`), at most ten times a second, and erased when done.
pub struct Progress {
    label: String,
    total: u64,
    done: u64,
    start: Instant,
    last: Option<Instant>,
    enabled: bool,
    forced: bool,
    bytes: bool,
}

impl Progress {
    /// A bar for `total` units (`bytes`: print them as sizes).
    pub fn new(label: &str, total: u64, bytes: bool, forced: bool) -> Progress {
        Progress {
            label: label.to_string(),
            total: total.max(1),
            done: 0,
            start: Instant::now(),
            last: None,
            enabled: forced || std::io::stderr().is_terminal(),
            forced,
            bytes,
        }
    }

    /// Set the amount done so far.
    pub fn set(&mut self, done: u64) {
        self.done = done.min(self.total);
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        // On a terminal, stay quiet for operations shorter than half a second.
        if !self.forced && now.duration_since(self.start) < Duration::from_millis(500) {
            return;
        }
        if self
            .last
            .is_some_and(|l| now.duration_since(l) < Duration::from_millis(100))
            && self.done < self.total
        {
            return;
        }
        self.last = Some(now);
        self.draw();
    }

    fn draw(&self) {
        const WIDTH: u64 = 30;
        let filled = (self.done * WIDTH / self.total) as usize;
        let pct = self.done * 100 / self.total;
        let amount = if self.bytes {
            format!(
                "{}/{}",
                poolset::human_size(self.done),
                poolset::human_size(self.total)
            )
        } else {
            format!("{}/{}", self.done, self.total)
        };
        let mut e = std::io::stderr().lock();
        let _ = write!(
            e,
            "\r{} [{}{}] {pct:>3}% {amount}",
            self.label,
            "#".repeat(filled),
            ".".repeat(WIDTH as usize - filled)
        );
        let _ = e.flush();
    }

    /// Finish: the bar is drawn full (when it was shown at all) and the line ended.
    pub fn finish(mut self) {
        self.done = self.total;
        if self.enabled && (self.forced || self.last.is_some()) {
            self.draw();
            let _ = writeln!(std::io::stderr());
        }
        self.enabled = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2kb"), Ok(2048));
        assert!(parse_size("M").is_err());
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("3X").is_err());
        assert!(parse_size("99999999999999999999T").is_err());
        assert!(parse_size("16777216T").is_err());
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("0-4K"), Ok((0, Some(4096))));
        assert_eq!(parse_range("16-"), Ok((16, None)));
        assert_eq!(parse_range("-1M"), Ok((0, Some(1 << 20))));
        assert!(parse_range("8-8").is_err());
        assert!(parse_range("12").is_err());
    }
}
