//! The networks: the HF encoders (parameter names are the HF checkpoint keys) and the RouterDC
//! router with its losses, and the MLP router (`docs/method.md`).

pub mod bert;
pub mod deberta;
pub mod int8;
pub mod layers;
pub mod mlp;
pub mod network;
pub mod router;
