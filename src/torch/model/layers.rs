//! The pieces BERT and DeBERTa share: multi-head attention with a residual LayerNorm, and the
//! feed-forward block. Names follow HF's modules so that `VarStore` keys equal checkpoint keys.

use std::sync::atomic::{AtomicBool, Ordering};

use tch::{Kind, Tensor, nn, nn::Module};

use routerdc::hf::EncoderConfig;

use super::int8::Int8Linear;

/// Mixed precision, autocast-style: matrix products and attention in bfloat16, everything else
/// (weights, LayerNorm, softmax inputs of the losses, the optimizer) in float32.
static BF16: AtomicBool = AtomicBool::new(false);

pub fn set_bf16(enabled: bool) {
    BF16.store(enabled, Ordering::Relaxed);
}

fn bf16() -> bool {
    BF16.load(Ordering::Relaxed)
}

/// A Linear layer whose weights are trained in float32 and may be packed for the int8 kernel
/// for inference ([`Dense::quantize`]).
#[derive(Debug)]
pub struct Dense {
    pub layer: nn::Linear,
    int8: Option<Int8Linear>,
}

impl Dense {
    pub fn new(path: nn::Path, inputs: i64, outputs: i64, bias: bool) -> Dense {
        let settings = nn::LinearConfig { bias, ..Default::default() };
        Dense { layer: nn::linear(path, inputs, outputs, settings), int8: None }
    }

    /// From now on `x Wᵀ + b` runs through the int8 kernel (inference only: it has no gradient).
    pub fn quantize(&mut self) -> Result<(), String> {
        self.int8 = Some(Int8Linear::pack(&self.layer)?);
        Ok(())
    }
}

/// `x Wᵀ + b`: int8 when the layer is quantized, in bfloat16 when mixed precision is on (the
/// result back in float32), float32 otherwise.
pub fn linear(dense: &Dense, x: &Tensor) -> Tensor {
    if let Some(int8) = &dense.int8 {
        return int8.forward(x);
    }
    let layer = &dense.layer;
    if !bf16() {
        return layer.forward(x);
    }
    let half = |t: &Tensor| t.to_kind(Kind::BFloat16);
    x.to_kind(Kind::BFloat16).linear(&half(&layer.ws), layer.bs.as_ref().map(half).as_ref()).to_kind(Kind::Float)
}

pub fn layer_norm(path: &nn::Path, config: &EncoderConfig) -> nn::LayerNorm {
    let settings = nn::LayerNormConfig { eps: config.layer_norm_eps, ..Default::default() };
    nn::layer_norm(path, vec![config.hidden_size], settings)
}

/// Self-attention: `LN(h + O · Attn(Q h, K h, V h))`.
#[derive(Debug)]
pub struct Attention {
    pub query: Dense,
    pub key: Dense,
    value: Dense,
    output: Dense,
    layer_norm: nn::LayerNorm,
    pub heads: i64,
    dropout: f64,
    hidden_dropout: f64,
}

impl Attention {
    /// `names` are the projections' names: BERT `query`/`key`/`value`, DeBERTa `*_proj`.
    pub fn new(projections: &nn::Path, output: &nn::Path, names: [&str; 3], config: &EncoderConfig) -> Attention {
        let size = config.hidden_size;
        let linear = |name: &str| Dense::new(projections / name, size, size, true);
        Attention {
            query: linear(names[0]),
            key: linear(names[1]),
            value: linear(names[2]),
            output: Dense::new(output / "dense", size, size, true),
            layer_norm: layer_norm(&(output / "LayerNorm"), config),
            heads: config.num_attention_heads,
            dropout: config.attention_dropout,
            hidden_dropout: config.hidden_dropout,
        }
    }

    /// Packs the four projections for the int8 kernel.
    pub fn quantize(&mut self) -> Result<(), String> {
        for dense in [&mut self.query, &mut self.key, &mut self.value, &mut self.output] {
            dense.quantize()?;
        }
        Ok(())
    }

    /// `[B, L, H]` → `[B, heads, L, d_h]`.
    pub fn split_heads(&self, x: &Tensor) -> Tensor {
        let (batch, length, hidden) = x.size3().expect("hidden states are [B, L, H]");
        x.view([batch, length, self.heads, hidden / self.heads]).transpose(1, 2)
    }

    /// Queries, keys and values of `hidden`, each `[B, heads, L, d_h]`.
    pub fn project(&self, hidden: &Tensor) -> (Tensor, Tensor, Tensor) {
        (
            self.split_heads(&linear(&self.query, hidden)),
            self.split_heads(&linear(&self.key, hidden)),
            self.split_heads(&linear(&self.value, hidden)),
        )
    }

    /// Queries of the first token only, `[B, heads, 1, d_h]`, with all keys and values.
    pub fn project_first(&self, hidden: &Tensor) -> (Tensor, Tensor, Tensor) {
        (
            self.split_heads(&linear(&self.query, &hidden.narrow(1, 0, 1))),
            self.split_heads(&linear(&self.key, hidden)),
            self.split_heads(&linear(&self.value, hidden)),
        )
    }

    /// Attention over `hidden` with `mask` (boolean, true = attend) and the default 1/√d_h scale.
    pub fn forward(&self, hidden: &Tensor, mask: Option<&Tensor>, train: bool) -> Tensor {
        let (q, k, v) = self.project(hidden);
        self.attend(hidden, (&q, &k, &v), mask, None, train)
    }

    /// `LN(h + O · softmax(q kᵀ · scale + mask) v)`; `mask` is boolean (true = attend) or an
    /// additive float bias that already holds the mask; none: every key is attended to (no
    /// padding), which takes libtorch's fused attention kernel. `hidden` holds the rows of the queries
    /// (all tokens, or the first token only, `[B, 1, H]`).
    pub fn attend(
        &self,
        hidden: &Tensor,
        (q, k, v): (&Tensor, &Tensor, &Tensor),
        mask: Option<&Tensor>,
        scale: Option<f64>,
        train: bool,
    ) -> Tensor {
        let (batch, length, size) = hidden.size3().expect("hidden states are [B, L, H]");
        let dropout = if train { self.dropout } else { 0.0 };
        let context = if bf16() {
            let half = |t: &Tensor| t.to_kind(Kind::BFloat16);
            let mask = mask.map(|mask| if mask.kind() == Kind::Bool { mask.shallow_clone() } else { half(mask) });
            Tensor::scaled_dot_product_attention(
                &half(q),
                &half(k),
                &half(v),
                mask.as_ref(),
                dropout,
                false,
                scale,
                false,
            )
            .to_kind(Kind::Float)
        } else {
            Tensor::scaled_dot_product_attention(q, k, v, mask, dropout, false, scale, false)
        };
        let context = context.transpose(1, 2).reshape([batch, length, size]);
        let projected = linear(&self.output, &context).dropout(self.hidden_dropout, train);
        self.layer_norm.forward(&(projected + hidden))
    }
}

/// `LN(a + W₂ · gelu(W₁ a))`.
#[derive(Debug)]
pub struct FeedForward {
    intermediate: Dense,
    output: Dense,
    layer_norm: nn::LayerNorm,
    hidden_dropout: f64,
}

impl FeedForward {
    pub fn new(layer: &nn::Path, config: &EncoderConfig) -> FeedForward {
        let (size, inner) = (config.hidden_size, config.intermediate_size);
        FeedForward {
            intermediate: Dense::new(layer / "intermediate" / "dense", size, inner, true),
            output: Dense::new(layer / "output" / "dense", inner, size, true),
            layer_norm: layer_norm(&(layer / "output" / "LayerNorm"), config),
            hidden_dropout: config.hidden_dropout,
        }
    }

    /// Packs both layers for the int8 kernel.
    pub fn quantize(&mut self) -> Result<(), String> {
        self.intermediate.quantize()?;
        self.output.quantize()
    }

    pub fn forward(&self, attended: &Tensor, train: bool) -> Tensor {
        let inner = linear(&self.intermediate, attended).gelu("none");
        let out = linear(&self.output, &inner).dropout(self.hidden_dropout, train);
        self.layer_norm.forward(&(out + attended))
    }
}

/// The keys a query may attend to, `[B, 1, 1, L]` boolean, from a `[B, L]` mask (1 = token).
pub fn key_mask(mask: &Tensor) -> Tensor {
    mask.to_kind(Kind::Bool).unsqueeze(1).unsqueeze(1)
}
