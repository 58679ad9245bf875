//! Part sizes: parsing `100G`, `1000kB`, `5MiB`, `4096` (overflow-checked, never negative or zero)
//! and printing a byte count back in the shortest exact form.

use crate::error::SizeProblem;

/// Units PMDK accepts, case-sensitive, with their multipliers.
const UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("K", 1 << 10),
    ("M", 1 << 20),
    ("G", 1 << 30),
    ("T", 1 << 40),
    ("P", 1 << 50),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("PiB", 1 << 50),
    ("kB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
    ("PB", 1_000_000_000_000_000),
];

/// Parses a size token. On error, also returns the byte offset in `token` the problem starts at.
pub(crate) fn parse_size(token: &str) -> Result<u64, (SizeProblem, usize)> {
    if token.starts_with('-') {
        return Err((SizeProblem::Negative, 0));
    }
    let digits_len = token.bytes().take_while(u8::is_ascii_digit).count();
    if digits_len == 0 {
        return Err((SizeProblem::NoNumber, 0));
    }
    let (digits, unit) = token.split_at(digits_len);
    let mut number: u64 = 0;
    for d in digits.bytes() {
        number = number
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or((SizeProblem::Overflow, 0))?;
    }
    let multiplier = if unit.is_empty() {
        1
    } else {
        UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, m)| *m)
            .ok_or((SizeProblem::UnknownUnit, digits_len))?
    };
    let size = number
        .checked_mul(multiplier)
        .ok_or((SizeProblem::Overflow, 0))?;
    if size == 0 {
        return Err((SizeProblem::Zero, 0));
    }
    Ok(size)
}

/// The shortest exact spelling PMDK also reads: the largest power-of-1024 unit that divides
/// `size_bytes`, else plain bytes.
pub(crate) fn format_size(size_bytes: u64) -> String {
    for (unit, mult) in [
        ("P", 1u64 << 50),
        ("T", 1 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ] {
        // Every unit is a power of two, so divisibility is a mask test.
        if size_bytes != 0 && size_bytes & (mult - 1) == 0 {
            return format!("{}{unit}", size_bytes / mult);
        }
    }
    size_bytes.to_string()
}

/// Human form for display (not for poolset text): `32 MiB`, `1.5 GiB`, `100 B`.
pub fn human_size(size_bytes: u64) -> String {
    const UNITS_H: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    let mut value = size_bytes as f64;
    while value >= 1024.0 && unit < UNITS_H.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{size_bytes} B")
    } else if value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS_H[unit])
    } else {
        format!("{value:.2} {}", UNITS_H[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let ok: &[(&str, u64)] = &[
            ("1", 1),
            ("1B", 1),
            ("2K", 2048),
            ("2KiB", 2048),
            ("2kB", 2000),
            ("3M", 3 << 20),
            ("3MB", 3_000_000),
            ("1G", 1 << 30),
            ("1GiB", 1 << 30),
            ("1GB", 1_000_000_000),
            ("1T", 1 << 40),
            ("1TB", 1_000_000_000_000),
            ("1P", 1 << 50),
            ("1PiB", 1 << 50),
            ("16383P", 16383 << 50),
            ("0100", 100),
            ("18446744073709551615", u64::MAX),
        ];
        for (t, v) in ok {
            assert_eq!(parse_size(t), Ok(*v), "{t}");
        }
        let bad: &[(&str, SizeProblem)] = &[
            ("", SizeProblem::NoNumber),
            ("G", SizeProblem::NoNumber),
            ("+1G", SizeProblem::NoNumber),
            ("-1G", SizeProblem::Negative),
            ("0", SizeProblem::Zero),
            ("0G", SizeProblem::Zero),
            ("18446744073709551616", SizeProblem::Overflow),
            ("16384P", SizeProblem::Overflow),
            ("1k", SizeProblem::UnknownUnit),
            ("1g", SizeProblem::UnknownUnit),
            ("1bb", SizeProblem::UnknownUnit),
            ("1Bg", SizeProblem::UnknownUnit),
            ("1gK", SizeProblem::UnknownUnit),
            ("10X0G", SizeProblem::UnknownUnit),
            ("1 G", SizeProblem::UnknownUnit),
        ];
        for (t, p) in bad {
            assert_eq!(parse_size(t).map_err(|e| e.0), Err(*p), "{t}");
        }
    }

    #[test]
    fn format_round_trips() {
        for v in [
            1u64,
            1023,
            1024,
            1536,
            2 << 20,
            1_000_000,
            5 << 30,
            u64::MAX,
            16383 << 50,
        ] {
            assert_eq!(parse_size(&format_size(v)), Ok(v), "{v}");
        }
        assert_eq!(format_size(32 << 20), "32M");
        assert_eq!(human_size(32 << 20), "32 MiB");
        assert_eq!(human_size(100), "100 B");
        assert_eq!(human_size(1536), "1.50 KiB");
    }
}
