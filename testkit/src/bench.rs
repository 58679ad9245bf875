//! Benchmark helpers shared by the side-by-side benchmark binaries (`tx-bench`,
//! `replicated-bench`): a fixed-time multi-thread throughput loop.

use std::time::Duration;

/// Runs `threads` threads; each builds its state with `setup`, then calls `batch` until the time
/// `batch` reports reaches `budget`. `batch` returns (operations done, time to count), so it can
/// leave its own set-up and tear-down out of the measurement. Returns operations per second: the
/// sum of the threads' rates (they run concurrently for about the same time each).
pub fn throughput<S>(
    threads: usize,
    budget: Duration,
    setup: impl Fn() -> S + Sync,
    batch: impl Fn(&mut S) -> (u64, Duration) + Sync,
) -> f64 {
    let results: Vec<(u64, Duration)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut st = setup();
                    let (mut n, mut t) = (0u64, Duration::ZERO);
                    while t < budget {
                        let (k, d) = batch(&mut st);
                        n += k;
                        t += d;
                    }
                    (n, t)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("bench thread panicked"))
            .collect()
    });
    results
        .iter()
        .map(|(n, t)| *n as f64 / t.as_secs_f64())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_operations_over_reported_time_summed_over_threads() {
        // Each batch reports 10 operations in 1 ms: 10 000 op/s per thread.
        let rate = throughput(
            2,
            Duration::from_millis(5),
            || (),
            |_| (10, Duration::from_millis(1)),
        );
        assert!((rate - 20_000.0).abs() < 1e-6, "{rate}");
    }
}
