//! `sesame-loadtest`: scenarios that load a running Sesame server over
//! loopback and measure it with HDR histograms. Every loop is bounded in
//! time and count and stops by itself.

pub mod baseline;
pub mod connect;
pub mod mail;
pub mod rpc;
pub mod scale;
pub mod stats;
pub mod watch;
