//! The shared real-socket suite (`client/tests/suite`) on smol.

#[path = "../../client/tests/suite/mod.rs"]
mod suite;

crate::real_socket_suite!(cachearoo_smol::SmolRuntime, smol::block_on);
