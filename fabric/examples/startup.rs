//! startup: how long a process linked with libfabric takes to reach and finish its first
//! `fi_getinfo`. Run it under `time` (or `strace -c`) to see the whole process cost; it prints the
//! in-process part (from `main` to the answer) itself.
//!
//! Usage: `cargo run --release -p fabric --example startup -- [tcp|sockets|verbs]`

use std::time::Instant;

fn main() {
    let t = Instant::now();
    let p = std::env::args()
        .nth(1)
        .and_then(|s| fabric::Provider::from_name(&s))
        .unwrap_or(fabric::Provider::Tcp);
    let ok = fabric::provider_available(p);
    println!(
        "provider {p}: available={ok}, first fi_getinfo took {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
}
