//! pool: local persistent memory (mapping, flushing, headers, local replicas).
