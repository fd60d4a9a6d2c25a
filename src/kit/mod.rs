//! The kit for tests, demos and users' CI, apart from the operator itself: nothing under
//! `crate::kit` is used by the reconciler. [`simulator`] is a strict stand-in for the EMR
//! Serverless Spark service and STS (also the `simulator` subcommand); [`devenv`] runs a real
//! etcd + kube-apiserver on loopback for the end-to-end tests and the local demo.

pub mod devenv;
pub mod simulator;
