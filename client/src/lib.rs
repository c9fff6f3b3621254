//! Typed client and command-line tool for the Bedrock cost attribution service.
//!
//! BI backends and scripts talk to the service through [`Client`], which wraps the
//! generated tonic stub with one typed method per RPC, per-request timeouts, paging
//! helpers that follow `next_page_token` to the end, and one [`Error`] type that keeps
//! the gRPC code. Amounts are exact: [`Money`] holds a [`rust_decimal::Decimal`], never
//! a float. Every generated message is re-exported as [`proto`], so callers need no
//! direct dependency on the API crate.
//!
//! The `bedrock-attribution` binary is a thin shell over [`cli`]; its rendering
//! functions live there so they can be tested on fixed responses without a server.

pub mod cli;
mod client;
mod error;
mod money;
mod paging;
mod time;

pub use bedrock_attribution::v1 as proto;

pub use client::{BudgetEvents, Client, ClientBuilder, Credentials};
pub use error::{Error, code_name};
pub use money::Money;
pub use paging::AllRows;
pub use time::{from_timestamp, parse_datetime, time_range, to_timestamp};
