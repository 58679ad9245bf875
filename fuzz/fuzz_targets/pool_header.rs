//! Fuzz target `pool_header`: see `reliability::fuzzing::pool_header` for the input format and what counts as
//! a bug (any panic, hang, or allocation sized by a hostile field).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    reliability::fuzzing::pool_header(data);
});
