//! Reading pickles without executing them: a parse-only machine ([`vm`]), and on top of it the
//! pandas DataFrame layout ([`pandas`]) and PyTorch state dicts ([`state_dict`]).

pub mod pandas;
pub mod state_dict;
mod teardown;
pub mod vm;
