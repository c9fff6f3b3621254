//! Queries: typed specs in, DataFusion plans over a snapshot, exact grouped sums out.
//!
//! Nothing here knows about tonic. [`spec`] holds the validated domain request,
//! [`plan`] turns it into a DataFusion `DataFrame` (never SQL text), [`answer`] runs the
//! plan and orders the groups, and [`page`] cuts answers into pages with tokens bound to
//! the request and the snapshot.

pub mod anomalies;
pub mod answer;
pub mod cache;
pub mod cancel;
pub mod cover;
pub mod discovery;
pub mod page;
pub mod plan;
pub mod spec;
pub mod tag_notes;

pub use answer::{Answer, GroupRow, Key, run, run_with};
pub use plan::LayerChoice;
pub use spec::{
    CostMetric, Dimension, Filter, Granularity, PrincipalGrouping, QuerySpec, TagFilter,
};
