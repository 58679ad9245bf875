//! tx: undo-logged transactions and the typed object API users write apps with.
//!
//! Not implemented yet (issue 6). It exports nothing until it works.
