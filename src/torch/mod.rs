//! The libtorch code of routerdc, compiled only into the `routerdc-torch` binary (see its
//! module docs for why it is not part of the library).

pub mod bert;
pub mod deberta;
pub mod embed;
pub mod encoder;
pub mod layers;
pub mod router;
pub mod train;
