//! Kubernetes operator that mirrors Alibaba Cloud EMR Serverless Spark job runs into
//! `SparkJobRunRef` objects.

pub mod devenv;
pub mod secret;
pub mod signer;
pub mod simulator;
pub mod wire;
