//! The shared real-socket suite (`client/tests/suite`) on async-std.

#[path = "../../client/tests/suite/mod.rs"]
mod suite;

crate::real_socket_suite!(
    cachearoo_async_std::AsyncStdRuntime,
    async_std::task::block_on
);
