//! placeholder
#![allow(missing_docs)]
pub struct ServerConfig;
pub struct RunningServer;
pub struct ServerStats;
#[derive(Debug)]
pub struct Error;
pub fn start(_c: ServerConfig) -> Result<RunningServer, Error> {
    Err(Error)
}
