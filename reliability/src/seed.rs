//! Seeds, budgets and deadlines from the environment. Every randomized test prints the seed it
//! used; setting the same variable replays the run exactly.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `var` parsed as a u64, or `None` when unset. A set but unparsable value is a mistake the
/// user must hear about, so it panics naming the variable.
pub fn env_u64(var: &str) -> Option<u64> {
    let v = std::env::var(var).ok()?;
    let t = v.trim().replace('_', "");
    Some(
        t.parse()
            .unwrap_or_else(|_| panic!("{var}={v:?} is not an unsigned integer")),
    )
}

/// The seed in `var`, else one from the clock; printed either way with how to replay it.
pub fn seed(var: &str) -> u64 {
    let s = env_u64(var).unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x5eed)
    });
    eprintln!("{var}={s} (set it to replay this run)");
    s
}

/// How long a soak may run: `RELIABILITY_SOAK_SECS`, when set.
pub fn soak() -> Option<Duration> {
    env_u64("RELIABILITY_SOAK_SECS").map(Duration::from_secs)
}

/// splitmix64: small, seedable, good enough to pick moments and sizes.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        self.next_u64() % n
    }
}
