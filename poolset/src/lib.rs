//! poolset: parses, validates and prints PMDK poolset(5) files.
