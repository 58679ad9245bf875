//! Fuzz target: the rpmem wire decoders (frames, stream framing, lane connection data, every body
//! decoder). `rpmem_proto::fuzz_decode` panics only if something that decodes does not re-encode
//! to the same bytes; any other panic, hang or large allocation is a decoder bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rpmem_proto::fuzz_decode(data);
});
