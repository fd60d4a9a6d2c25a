//! Kubernetes operator that mirrors Alibaba Cloud EMR Serverless Spark job runs into
//! `SparkJobRunRef` objects.

// Errors are the rare path and carry the service's answer and the object's name on purpose.
#![allow(clippy::result_large_err)]

pub mod app;
pub mod body;
pub mod cli;
pub mod client;
pub mod conditions;
pub mod config;
// One `printcolumn(...)` per column repeats the same keys, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
pub mod crd;
pub mod credentials;
pub mod endpoint;
pub mod error;
pub mod import;
pub mod kit;
pub mod leader;
pub mod mapping;
pub mod metrics;
pub mod policy;
pub mod reconcile;
pub mod secret;
pub mod server;
pub mod signer;
pub mod state;
pub mod text;
pub mod transport;
pub mod wait;
pub mod wire;
