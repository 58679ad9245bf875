//! Fuzz target: the poolset parser on arbitrary bytes, in both modes. Any panic is a bug; so is a
//! set that parses but whose printed text does not parse back to the same set (lines aside) or
//! prints differently the second time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poolset::{parse_bytes, Mode};

fuzz_target!(|data: &[u8]| {
    for mode in [Mode::Initiator, Mode::Rpmemd] {
        if let Ok(parsed) = parse_bytes("fuzz.set", data, mode) {
            let text = parsed.set.to_text();
            let again = match parse_bytes("printed.set", text.as_bytes(), mode) {
                Ok(p) => p,
                Err(e) => panic!("printed text does not parse: {e}\n{text}"),
            };
            assert!(
                again.set.eq_ignoring_lines(&parsed.set),
                "round trip changed the set:\n{text}"
            );
            assert_eq!(again.set.to_text(), text, "printing is not a fixpoint");
        }
    }
});
