//! The MLP router (`docs/method.md`, "Other routers"): on a frozen, unit-length query embedding
//! e(x), one output per LLM,
//!
//!   ŷ(x) = W₂ · relu(W₁ e(x) + b₁) + b₂        (`--hidden H`; H = 0: ŷ(x) = W e(x) + b)
//!   route(x) = argmax_t ŷ_t(x)
//!
//! fitted to the targets y (score − cost_rate × cost) by mean squared error, or by binary
//! cross-entropy of sigmoid(ŷ) for targets in [0, 1]. Parameter names are `layers.<i>.weight`
//! and `layers.<i>.bias`, as a `torch.nn.Sequential` of Linear layers would name them (the ReLU
//! between them has none).

use tch::{Reduction, Tensor, nn};

use routerdc::routing::MlpLoss;

#[derive(Debug)]
pub struct Mlp {
    /// (W, b) of each Linear layer, in order; a ReLU between consecutive layers.
    pub layers: Vec<(Tensor, Tensor)>,
}

impl Mlp {
    /// Layers initialised as `torch.nn.Linear` initialises them.
    pub fn new(root: &nn::Path, dim: i64, hidden: i64, llms: i64) -> Mlp {
        let widths = if hidden == 0 { vec![dim, llms] } else { vec![dim, hidden, llms] };
        let layers = widths
            .windows(2)
            .enumerate()
            .map(|(index, pair)| {
                let linear = nn::linear(root / "layers" / index, pair[0], pair[1], Default::default());
                let bias = linear.bs.expect("nn::linear has a bias by default");
                (linear.ws, bias)
            })
            .collect();
        Mlp { layers }
    }

    /// ŷ, `[B, T]`, for embeddings `[B, d]`.
    pub fn forward(&self, embeddings: &Tensor) -> Tensor {
        let mut x = embeddings.shallow_clone();
        for (index, (weight, bias)) in self.layers.iter().enumerate() {
            if index > 0 {
                x = x.relu();
            }
            x = x.linear(weight, Some(bias));
        }
        x
    }

    /// The routing scores: ŷ, or sigmoid(ŷ) for a router fitted with BCE (the same argmax).
    pub fn scores(&self, embeddings: &Tensor, loss: MlpLoss) -> Tensor {
        let out = tch::no_grad(|| self.forward(embeddings));
        match loss {
            MlpLoss::Mse => out,
            MlpLoss::Bce => out.sigmoid(),
        }
    }

    /// The parameters by name (`layers.<i>.weight`, `layers.<i>.bias`), detached copies.
    pub fn named(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.layers.len());
        for (index, (weight, bias)) in self.layers.iter().enumerate() {
            out.push((format!("layers.{index}.weight"), weight.detach().copy()));
            out.push((format!("layers.{index}.bias"), bias.detach().copy()));
        }
        out
    }

    /// Copy `saved` (as [`Mlp::named`] returned it) into the parameters.
    pub fn load(&mut self, saved: &[(String, Tensor)]) {
        tch::no_grad(|| {
            for ((weight, bias), pair) in self.layers.iter_mut().zip(saved.chunks(2)) {
                weight.copy_(&pair[0].1);
                bias.copy_(&pair[1].1);
            }
        });
    }

    /// An MLP from named tensors as [`Mlp::named`] writes them, checked: consecutive layers
    /// chain, the input is `dim` wide and the output has `llms` values. `Err` says what is wrong.
    pub fn from_named(mut named: Vec<(String, Tensor)>, dim: i64, llms: i64) -> Result<Mlp, String> {
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let mut layers = Vec::new();
        for index in 0.. {
            let take = |named: &mut Vec<(String, Tensor)>, name: String| {
                named.iter().position(|(n, _)| *n == name).map(|at| named.remove(at).1)
            };
            let weight = take(&mut named, format!("layers.{index}.weight"));
            let bias = take(&mut named, format!("layers.{index}.bias"));
            match (weight, bias) {
                (Some(weight), Some(bias)) => {
                    layers.push((weight.to_kind(tch::Kind::Float), bias.to_kind(tch::Kind::Float)))
                }
                (None, None) => break,
                _ => return Err(format!("layer {index} lacks its weight or its bias")),
            }
        }
        if let Some((name, _)) = named.first() {
            return Err(format!("an unexpected tensor `{name}`"));
        }
        if layers.is_empty() || layers.len() > 2 {
            return Err(format!("{} layers; an MLP router has 1 or 2", layers.len()));
        }
        let mut width = dim;
        for (index, (weight, bias)) in layers.iter().enumerate() {
            let (out, input) = match weight.size().as_slice() {
                [out, input] => (*out, *input),
                shape => return Err(format!("layer {index}: a weight of shape {shape:?}")),
            };
            if input != width || bias.size() != [out] {
                return Err(format!(
                    "layer {index}: weight {:?} and bias {:?} do not follow a {width}-wide input",
                    weight.size(),
                    bias.size()
                ));
            }
            width = out;
        }
        if width != llms {
            return Err(format!("{width} outputs for {llms} LLMs"));
        }
        Ok(Mlp { layers })
    }
}

/// The fitting loss, averaged over queries and LLMs.
pub fn loss(prediction: &Tensor, target: &Tensor, kind: MlpLoss) -> Tensor {
    match kind {
        MlpLoss::Mse => prediction.mse_loss(target, Reduction::Mean),
        MlpLoss::Bce => prediction.binary_cross_entropy_with_logits::<Tensor>(target, None, None, Reduction::Mean),
    }
}
