//! Sesame, an access-request service: the library behind the `sesame`
//! binary. [`server::run`] is the entry point tests and the CLI share.

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod console;
pub mod crypto;
pub mod domain;
pub mod events;
pub mod grpc_web;
pub mod limits;
pub mod mail;
pub mod options;
pub mod policy;
pub mod redact;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod webhooks;

pub use config::Config;
pub use server::run;
