//! What `routerdc-torch` runs: one module per command. Commands may use the library's stages
//! for settings, files and checks; the networks come from [`super::model`].

pub mod cluster;
pub mod embed;
pub mod route;
pub mod serve;
pub mod train;
pub mod tune;
