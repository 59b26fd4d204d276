//! Arbitrary text as a client frame (the server's decoder): never panics,
//! and a decoded message survives an encode/decode round trip.
#![no_main]

use cachearoo_core::wire::ClientMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(msg) = ClientMessage::decode(text) {
        // Encoding normalises (e.g. always writes `events`), so compare the
        // second round trip with the first.
        let once = ClientMessage::decode(&msg.encode()).expect("our own encoding decodes");
        let twice = ClientMessage::decode(&once.encode()).expect("our own encoding decodes");
        assert_eq!(once, twice);
    }
});
