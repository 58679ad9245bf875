//! reliability: the cross-stack reliability harness (issue 9). Its tests live in `tests/`.
