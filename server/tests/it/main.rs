//! The integration test binary: a real Sesame server on 127.0.0.1:0, called
//! through the generated tonic client, on SQLite and on PostgreSQL.

mod harness;
mod postgres;

mod abuse;
mod access_requests;
mod agreement;
mod cli;
mod client;
mod clients;
mod codes;
mod console;
mod console_serving;
mod deadlines;
mod delivery;
mod email_rendering;
mod events;
mod faults;
mod gdpr;
mod group_commit;
mod mail;
mod metrics;
mod otlp;
mod policy;
mod privacy;
mod providers;
mod replicas;
mod service;
mod tls;
