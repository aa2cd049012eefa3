//! The pieces BERT and DeBERTa share: multi-head attention with a residual LayerNorm, and the
//! feed-forward block. Names follow HF's modules so that `VarStore` keys equal checkpoint keys.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

use rand_xoshiro::rand_core::RngCore;
use tch::{Device, Kind, Tensor, nn, nn::Module};

use routerdc::hf::EncoderConfig;
use routerdc::routing::rng;

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

thread_local! {
    /// This thread's dropout seed, and how many masks it has drawn since it was set. Per thread:
    /// the workers of a training step each draw their own passes' masks.
    static DROPOUT: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// Dropout masks this thread draws from here on depend on `seed` and on their order alone (a
/// training run seeds each pass of each step, so a resumed run draws what the uninterrupted one
/// did, whichever thread runs the pass).
pub fn seed_dropout(seed: u64) {
    DROPOUT.set((seed, 0));
}

/// Inverted dropout, `x · m / (1 − p)` with `m ~ Bernoulli(1 − p)`, in training only.
///
/// Why not libtorch's `dropout` on the CPU: its Bernoulli draws run serially through the mt19937
/// generator on processors other than Intel's (`bernoulli_scalar_kernel` keeps the parallel MKL
/// path for Intel), and the other core waits meanwhile: in 8 fine-tuning steps on a 2-core AMD
/// machine, 6.8% of the CPU samples, with 13% in OpenMP waits (`perf record`). Here one xoshiro256++
/// stream per mask (seeded by [`seed_dropout`] and the mask's index) gives two draws per 64-bit
/// word, the scale folded into the mask, and the product is one multiplication that autograd
/// differentiates as usual. Other devices keep libtorch's kernel.
pub fn dropout(x: &Tensor, p: f64, train: bool) -> Tensor {
    if !train || p <= 0.0 || x.device() != Device::Cpu || x.kind() != Kind::Float || x.numel() == 0 {
        return x.dropout(p, train);
    }
    let (seed, draw) = DROPOUT.get();
    DROPOUT.set((seed, draw + 1));
    let mut generator = rng::rng(seed ^ draw.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    // A draw below `threshold` (of 2³²) drops its element: probability p to within 2⁻³².
    // (With p ≥ 1 every element becomes 0 whatever its draw.)
    let threshold = (p.min(1.0) * 4_294_967_296.0).round().min(f64::from(u32::MAX)) as u32;
    let keep = if p >= 1.0 { 0.0f32 } else { (1.0 / (1.0 - p)) as f32 }.to_bits();
    let mask = Tensor::empty(x.size(), (Kind::Float, Device::Cpu));
    // SAFETY: `mask` is a new contiguous float32 tensor of `x.numel()` elements on the CPU that
    // nothing else references; every element is written below before it is read, as the bits
    // of a draw and then of a float32. Written in place: `Tensor::from_slice` would zero a new
    // tensor and copy a Vec into it, three passes over fresh memory (an attention mask is
    // B × heads × L × L floats).
    let values = unsafe { std::slice::from_raw_parts_mut(mask.data_ptr() as *mut u32, x.numel()) };
    // Two passes, the draws (the low half of each 64-bit word for the even element, the high
    // half for the odd one), then the mask from them: the second loop is branch-free and
    // vectorises, where testing each draw as it came was a branch per element.
    let mut pairs = values.chunks_exact_mut(2);
    for pair in &mut pairs {
        let word = generator.next_u64();
        pair[0] = word as u32;
        pair[1] = (word >> 32) as u32;
    }
    if let [last] = pairs.into_remainder() {
        *last = generator.next_u64() as u32;
    }
    for value in values.iter_mut() {
        *value = if *value >= threshold { keep } else { 0 };
    }
    x * mask
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

/// The token embeddings `W_tok` (`rows` tokens × `width`), with a sparse gradient: the rows of
/// the tokens a pass used. A dense one is a zero tensor of the whole vocabulary per pass, and
/// another to add it: 47 MB each for MiniLM (30,522 × 384), 768 MB for mdeberta-v3-base
/// (250,102 × 768); a fine-tuning step runs six or so passes. Training's AdamW makes it dense
/// once a step (BENCHMARKS.md, "train": the page faults this saved).
pub fn token_embedding(path: nn::Path, rows: i64, width: i64) -> nn::Embedding {
    nn::embedding(path, rows, width, nn::EmbeddingConfig { sparse: true, ..Default::default() })
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
        let context = if dropout > 0.0 && q.device() == Device::Cpu && !bf16() {
            // Training on the CPU: libtorch's attention would take its math path here anyway (its
            // fused CPU kernel has no dropout); written out so that [`dropout`] draws the mask.
            attention_with_dropout((q, k, v), mask, scale, dropout)
        } else if bf16() {
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
        let projected = self::dropout(&linear(&self.output, &context), self.hidden_dropout, train);
        self.layer_norm.forward(&(projected + hidden))
    }
}

/// `dropout(softmax(q kᵀ · scale + mask)) v`, libtorch's math path of scaled-dot-product
/// attention; `mask` as [`Attention::attend`] takes it, `scale` 1/√d_h unless given.
///
/// Two passes over the `[B, heads, L, L]` scores fewer than the formula read literally, forward
/// and backward alike: the scale multiplies q (`L × d_h` per head) before the product, and the
/// mask is added in place as a bias of 0 and −∞, whose backward passes the gradient through (a
/// `masked_fill` would run again on the gradient; the softmax's backward already gives the
/// masked keys a zero gradient).
fn attention_with_dropout(
    (q, k, v): (&Tensor, &Tensor, &Tensor),
    mask: Option<&Tensor>,
    scale: Option<f64>,
    p: f64,
) -> Tensor {
    let scale = scale.unwrap_or(1.0 / (q.size()[3] as f64).sqrt());
    let mut scores = (q * scale).matmul(&k.transpose(-2, -1));
    if let Some(mask) = mask {
        if mask.kind() == Kind::Bool {
            let bias = mask.zeros_like().to_kind(Kind::Float).masked_fill(&mask.logical_not(), f64::NEG_INFINITY);
            let _ = scores.g_add_(&bias);
        } else {
            let _ = scores.g_add_(mask);
        }
    }
    dropout(&scores.softmax(-1, Kind::Float), p, true).matmul(v)
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
        let out = dropout(&linear(&self.output, &inner), self.hidden_dropout, train);
        self.layer_norm.forward(&(out + attended))
    }
}

/// The keys a query may attend to, `[B, 1, 1, L]` boolean, from a `[B, L]` mask (1 = token).
pub fn key_mask(mask: &Tensor) -> Tensor {
    mask.to_kind(Kind::Bool).unsqueeze(1).unsqueeze(1)
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind, Tensor};

    use super::{attention_with_dropout, dropout, seed_dropout};

    #[test]
    fn dropout_drops_p_and_scales_the_rest_the_same_for_a_seed() {
        let x = Tensor::ones([1000, 1000], (Kind::Float, Device::Cpu));
        seed_dropout(7);
        let first = dropout(&x, 0.1, true);
        let second = dropout(&x, 0.1, true);
        let dropped = f64::try_from(first.eq(0.0).to_kind(Kind::Float).mean(Kind::Float)).unwrap();
        assert!((dropped - 0.1).abs() < 0.002, "dropped {dropped} of the elements, not 0.1");
        let kept = first.masked_select(&first.ne(0.0));
        let (low, high) = (f64::try_from(kept.min()).unwrap(), f64::try_from(kept.max()).unwrap());
        assert!((low - 1.0 / 0.9).abs() < 1e-6 && (high - 1.0 / 0.9).abs() < 1e-6, "kept {low}..{high}");
        assert!(!first.equal(&second), "two masks of a step were the same");
        seed_dropout(7);
        assert!(dropout(&x, 0.1, true).equal(&first), "the seed did not fix the mask");
        assert!(dropout(&x, 0.1, false).equal(&x), "evaluation dropped something");
        // The gradient flows through the kept elements, scaled as they were.
        let leaf = x.copy().set_requires_grad(true);
        seed_dropout(7);
        dropout(&leaf, 0.1, true).sum(Kind::Float).backward();
        assert!(leaf.grad().equal(&first));
    }

    #[test]
    fn attention_written_out_equals_libtorchs_without_dropout_values_and_gradients() {
        tch::manual_seed(3);
        let shape = [2, 4, 5, 8];
        let (q, k, v) = (
            Tensor::randn(shape, (Kind::Float, Device::Cpu)),
            Tensor::randn(shape, (Kind::Float, Device::Cpu)),
            Tensor::randn(shape, (Kind::Float, Device::Cpu)),
        );
        let keys = Tensor::from_slice(&[1i64, 1, 1, 0, 0, 1, 1, 1, 1, 1]).view([2, 5]);
        let boolean = super::key_mask(&keys);
        let bias = Tensor::randn([2, 4, 5, 5], (Kind::Float, Device::Cpu));
        // A bias of one row per head and key, broadcast over the queries, as DeBERTa's padding is.
        let narrow_bias = Tensor::randn([2, 1, 1, 5], (Kind::Float, Device::Cpu));
        let worst = |a: &Tensor, b: &Tensor| f64::try_from((a - b).abs().max()).unwrap();
        for (mask, scale) in
            [(None, None), (Some(&boolean), None), (Some(&bias), Some(0.2)), (Some(&narrow_bias), Some(0.3))]
        {
            // The values and the gradients of q, k, v (and of a float bias) under the same upstream gradient.
            let run = |ours: bool| {
                let leaves: Vec<Tensor> = [&q, &k, &v].iter().map(|t| t.copy().set_requires_grad(true)).collect();
                let mask = mask
                    .map(|m| if m.kind() == Kind::Bool { m.shallow_clone() } else { m.copy().set_requires_grad(true) });
                let (a, b, c) = (&leaves[0], &leaves[1], &leaves[2]);
                let out = if ours {
                    attention_with_dropout((a, b, c), mask.as_ref(), scale, 0.0)
                } else {
                    Tensor::scaled_dot_product_attention(a, b, c, mask.as_ref(), 0.0, false, scale, false)
                };
                (&out * Tensor::linspace(-1.0, 1.0, 8, (Kind::Float, Device::Cpu))).sum(Kind::Float).backward();
                let mut grads: Vec<Tensor> = leaves.iter().map(Tensor::grad).collect();
                grads.extend(mask.filter(|m| m.requires_grad()).map(|m| m.grad()));
                (out.detach(), grads)
            };
            let ((ours, our_grads), (theirs, their_grads)) = (run(true), run(false));
            assert!(worst(&ours, &theirs) < 1e-5, "differs by {}", worst(&ours, &theirs));
            assert_eq!(our_grads.len(), their_grads.len());
            for (a, b) in our_grads.iter().zip(&their_grads) {
                assert!(worst(a, b) < 1e-5, "a gradient differs by {}", worst(a, b));
            }
        }
    }
}
