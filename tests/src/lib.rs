//! Support code of the integration tests: the deterministic simulated world
//! ([`sim`]) in which client cores talk to the server's hub over a simulated
//! network and clock.

pub mod harness;
pub mod sim;
pub mod store;
