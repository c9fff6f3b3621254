//! Generated CUR 2.0 exports: the `--demo` dataset and the fixtures of the tests.
//!
//! [`cur_file`] writes line items as CUR 2.0 parquet with a chosen physical schema,
//! [`export`] lays files out as AWS Data Exports does (manifests, leftover chunks,
//! create-new executions), and [`generator`] makes a realistic organisation's months of
//! Bedrock spend with every trap of the data contract in it.

pub mod csv_form;
pub mod cur_file;
pub mod export;
pub mod generator;
pub mod scale;

pub use cur_file::{CurLineItem, SchemaOptions, TimestampUnit};
pub use export::{ExportWriter, PeriodLayout};
pub use generator::{DemoConfig, generate};
