//! The pipeline stages: each a typed config and a function from tables to tables.

pub mod calibrate;
pub mod cluster;
pub mod convert;
pub mod embed;
pub mod import;
pub mod ingest;
pub mod report;
pub mod route;
pub mod train;
pub mod tune;
