//! Arbitrary text as a client frame (the server's decoder): never panics,
//! the fast path agrees with the tolerant path, and a decoded message
//! survives an encode/decode round trip.
#![no_main]

use cachearoo_core::wire::ClientMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    // The one-pass decoder must agree with the tolerant reference path.
    assert_eq!(
        ClientMessage::decode(text),
        ClientMessage::decode_tolerant(text)
    );
    if let Ok(msg) = ClientMessage::decode(text) {
        // Encoding normalises (e.g. always writes `events`), so compare the
        // second round trip with the first.
        let once = ClientMessage::decode(&msg.encode()).expect("our own encoding decodes");
        let twice = ClientMessage::decode(&once.encode()).expect("our own encoding decodes");
        assert_eq!(once, twice);
    }
});
