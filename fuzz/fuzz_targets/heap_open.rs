//! Fuzz target `heap_open`: see `reliability::fuzzing::heap_open` for the input format and what counts as
//! a bug (any panic, hang, or allocation sized by a hostile field).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    reliability::fuzzing::heap_open(data);
});
