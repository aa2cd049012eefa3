//! The libtorch code of routerdc, compiled only into the `routerdc-torch` binary (see its
//! module docs for why it is not part of the library).
//!
//! - [`model`]: the networks (BERT, DeBERTa-v2/v3) and the RouterDC router with its losses.
//!   It reads like the method's equations and imports only the routing core and the HF model
//!   files' settings, never a command.
//! - [`commands`]: what `routerdc-torch` runs: embed, cluster, train (loop, AdamW,
//!   checkpoints) and route.
//! - [`mkl`]: MKL's matrix-multiply kernels chosen by the processor's features on any vendor's
//!   processor (AVX-512 on AMD's).

pub mod commands;
pub mod mkl;
pub mod model;
