//! testkit: shared test harness.
