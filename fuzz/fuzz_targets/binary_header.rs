//! Arbitrary bytes as a binary event frame: decoding never panics, and a
//! decoded header re-encodes to the same bytes up to the padding.
#![no_main]

use cachearoo_core::wire::{BinaryHeader, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((header, payload)) = BinaryHeader::decode(data) {
        assert_eq!(payload.len(), data.len() - HEADER_LEN);
        // Names longer than 36 bytes decode (when they fit) but do not encode.
        if let Ok(frame) = header.encode(payload) {
            let (again, p) = BinaryHeader::decode(&frame).expect("our own encoding decodes");
            assert_eq!(again, header);
            assert_eq!(p, payload);
        }
    }
});
