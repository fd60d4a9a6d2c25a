//! Kubernetes operator that mirrors Alibaba Cloud EMR Serverless Spark job runs into
//! `SparkJobRunRef` objects.

pub mod app;
pub mod cli;
pub mod client;
pub mod conditions;
pub mod controller;
pub mod credentials;
pub mod crd;
pub mod devenv;
pub mod endpoint;
pub mod error;
pub mod mapping;
pub mod policy;
pub mod secret;
pub mod signer;
pub mod simulator;
pub mod state;
pub mod wire;
