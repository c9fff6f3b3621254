//! bedrock-attribution server: who spent what on Amazon Bedrock, from CUR 2.0 exports.
//!
//! Data flows one way: [`catalog`] lists export roots and builds immutable
//! [`snapshot`]s, [`normalize`] applies the data contract's [`rules`] once per snapshot,
//! [`query`] plans grouped sums with DataFusion, and [`service`] is the thin tonic
//! adapter. [`server`] wires them to gRPC with health and reflection.

pub mod allocate;
pub mod catalog;
pub mod config;
pub mod demo;
pub mod error;
pub mod normalize;
pub mod query;
pub mod rules;
pub mod server;
pub mod service;
pub mod snapshot;
pub mod telemetry;

pub use config::Config;
pub use error::Error;
