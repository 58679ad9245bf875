//! examples: runnable programs that show the stack as a user meets it. Each lives in `src/bin/`;
//! the library holds what several of them share: [`kv`], the key-value map of `pkv` and
//! `replicated-kv`, and [`image`], an in-memory copy of a replica that the layers above can
//! recover and check without touching the replica.

pub mod image;
pub mod kv;
