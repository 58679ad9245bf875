//! pool: local persistent memory (mapping, flushing, headers, local replicas).
//!
//! Layers, bottom up:
//! - [`persist`]: the hardware persistence primitives (cache-line flushes chosen by CPUID, fences,
//!   non-temporal copies, `msync`).
//!
//! Architecture invariant: `pool` never touches the network; remote replicas plug in through a
//! trait implemented elsewhere.

pub mod persist;
