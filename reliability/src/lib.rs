//! reliability: the cross-stack reliability harness (issue 9). Its tests live in `tests/`
//! (docs/TESTING.md says what each one proves and how to replay or soak it); this library holds
//! what they share:
//!
//! - [`workload`]: the application the harness runs — a root object with slots and data, random
//!   steps (transactions with nested parts and aborts, atomic publishes, reserve + cancel), the
//!   model they must agree with, proptest strategies for them, and the recovery check.
//! - [`remote`]: a remote replica for `pool`'s fan-out that records, in a
//!   [`pool::crash::Recorder`], exactly what a remote target would have persisted.
//! - [`fuzzing`]: the bodies of the fuzz targets in `fuzz/` and their deterministic seeds.
//! - [`seed`]: seeds and budgets from the environment, printed so a run can be replayed.
//!
//! Invariant: nothing here weakens what it tests — helpers only observe through public APIs, and
//! the model is independent of the code under test.

pub mod fuzzing;
pub mod remote;
pub mod seed;
pub mod workload;
