//! examples: runnable programs that show the stack as a user meets it. Each lives in `src/bin/`;
//! the library holds what several of them share: [`kv`], the key-value map of `pkv` and
//! `replicated-kv`. (The in-memory copy of a replica that `replicated-kv verify` recovers and
//! checks is `pool::image::MemImage`.)

pub mod kv;
