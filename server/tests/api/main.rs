//! Integration tests: the real server on an ephemeral loopback port, called through the
//! generated client crate, over generated CUR 2.0 exports.

#![allow(missing_docs, unreachable_pub, clippy::unwrap_used)]

mod allocation;
mod anomalies;
mod auth;
mod budgets;
mod cache;
mod chargeback;
mod common;
mod csv_form;
mod damaged;
mod differential;
mod drift;
mod faults;
mod fuzz;
mod golden;
mod invalid;
mod limits;
mod manifest;
mod mistakes;
mod observability;
mod process;
mod queries;
mod reference;
mod refresh;
mod s3;
mod s3fixture;
mod shapes_2026;
mod shutdown;
mod sources;
mod tls;
mod traces;
mod watch;
