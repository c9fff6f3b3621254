//! The data contract's rules (`shared/cur2-bedrock.md`), as pure functions.
//!
//! Every rule that turns a raw CUR 2.0 line item into something we group by lives here
//! and nowhere else: the normalize step calls these once per line item per snapshot,
//! and the query layer only groups and sums what they produced. That is what makes
//! every grouping reconcile to the same totals.

pub mod arn;
pub mod bedrock;
pub mod money;
pub mod usage;
