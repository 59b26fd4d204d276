//! Integration tests of cachearoo-rs live in `tests/tests/`; this library is
//! their shared support code.
