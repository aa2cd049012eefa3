//! Reading pickles without executing them: a parse-only machine ([`vm`]) and the pandas
//! DataFrame layout on top of it ([`pandas`]).

pub mod pandas;
pub mod vm;
