//! Runnable examples of cachearoo-rs: see `examples/examples/`.
