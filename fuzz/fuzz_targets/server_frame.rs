//! Arbitrary bytes as a server text frame: decoding never panics, and
//! whatever decodes re-encodes to something that decodes to the same value.
#![no_main]

use cachearoo_core::wire::ServerMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = ServerMessage::decode_slice(data) {
        let again = ServerMessage::decode(&msg.encode()).expect("our own encoding decodes");
        assert_eq!(again, msg);
    }
});
