//! bedrock-attribution server: who spent what on Amazon Bedrock, from CUR 2.0 exports.
//!
//! Data flows one way: [`catalog`] lists export roots and builds immutable
//! [`snapshot`]s; [`load`] reads each billing period once, applying the data contract's
//! [`rules`], and sums it into compact [`layers`] (fine, daily, monthly; persisted to a
//! cache directory); [`query`] plans each question over the coarsest exact layers with
//! DataFusion; [`service`] is the thin tonic adapter, and [`server`] wires them to gRPC
//! with health and reflection, behind the access control of [`auth`]. [`budgets`] keeps
//! monthly budgets and forecasts where each stands.

pub mod account;
pub mod allocate;
pub mod allocator;
pub mod auth;
pub mod budgets;
pub mod catalog;
pub mod config;
pub mod demo;
pub mod error;
pub mod layers;
pub mod load;
pub mod period;
#[cfg(test)]
mod proptests;
pub mod query;
pub mod rules;
pub mod server;
pub mod service;
pub mod snapshot;
pub mod telemetry;

pub use config::Config;
pub use error::Error;
