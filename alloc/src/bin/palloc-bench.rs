//! palloc-bench (being written).
fn main() {}
