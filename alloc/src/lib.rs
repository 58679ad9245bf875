//! palloc: the persistent heap (redo log, zones, chunks, runs), in the folder `alloc/`.
//!
//! Not implemented yet (issue 5). It exports nothing until it works.
