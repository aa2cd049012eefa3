//! The RouterDC router and its losses (`docs/method.md`, "Model" and "Losses").
//!
//!   h = E(x)[first token]                       query embedding (the encoder's last layer)
//!   s_t(x) = sim(h, k_t) / τ                    one logit per LLM, K ∈ R^{T×d} learned
//!   route(x) = argmax_t s_t(x)
//!
//! Parameter names are the reference's state-dict keys: `backbone.*` (the HF encoder) and
//! `embeddings.weight` (K).

// `a = a + b` on tensors on purpose: tch's `a += b` is an in-place add, which neither
// broadcasts `a` to a larger shape nor leaves autograd an out-of-place graph.
#![allow(clippy::assign_op_pattern)]

use tch::{Kind, Tensor, nn};

use routerdc::hf::tokenize::{QUARTER_PADDING, length_passes};
use routerdc::hf::{EncoderConfig, Pooling};
use routerdc::routing::{LlmChoice, PairChoice, Similarity};

use super::network::{Network, pad_batch};

/// K's name in the variable store and the checkpoint.
pub const LLM_EMBEDDINGS: &str = "embeddings.weight";

#[derive(Debug)]
pub struct Router {
    pub backbone: Network,
    /// K: one row per candidate LLM, initialised from N(0, 0.78²).
    pub llm_embeddings: Tensor,
    pub similarity: Similarity,
    pub temperature: f64,
}

impl Router {
    pub fn new(root: &nn::Path, config: &EncoderConfig, llms: i64, similarity: Similarity, temperature: f64) -> Router {
        let backbone = Network::new(&(root / "backbone"), config);
        let init = nn::Init::Randn { mean: 0.0, stdev: 0.78 };
        let llm_embeddings = (root / "embeddings").var("weight", &[llms, config.hidden_size], init);
        Router { backbone, llm_embeddings, similarity, temperature }
    }

    /// h = E(x)[first token], `[B, d]`.
    pub fn encode(&self, ids: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        self.backbone.embed(ids, mask, Pooling::First, train)
    }

    /// h for every query of `ids`, without gradients, eval mode; rows in the order of `ids`. The
    /// queries go through in [`encoding_passes`] of at most `batch_size` queries and
    /// `max_tokens` padded tokens (0: no cap): a few queries of mixed lengths (an evaluation
    /// sample's share of a table) are not all padded to the longest.
    pub fn encode_all(
        &self,
        ids: &[Vec<u32>],
        (batch_size, max_tokens): (usize, usize),
        pad: i64,
        device: tch::Device,
    ) -> Tensor {
        let lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
        let passes = encoding_passes(&lengths, batch_size, max_tokens);
        let parts: Vec<Tensor> = passes
            .iter()
            .map(|pass| {
                let batch: Vec<&[u32]> = pass.iter().map(|&i| ids[i].as_slice()).collect();
                let (input, mask) = pad_batch(&batch, pad, device);
                tch::no_grad(|| self.encode(&input, &mask, false))
            })
            .collect();
        unsort(&Tensor::cat(&parts, 0), &passes.concat())
    }

    /// route(x) = argmax_t s_t(x) for every row of h (the first LLM on ties).
    pub fn choose(&self, h: &Tensor) -> Result<Vec<usize>, tch::TchError> {
        let choices = tch::no_grad(|| self.logits(h).argmax(1, false)).to_device(tch::Device::Cpu);
        Ok(Vec::<i64>::try_from(&choices)?.into_iter().map(|c| c as usize).collect())
    }

    /// s(x) = sim(h, K) / τ, `[B, T]`.
    pub fn logits(&self, h: &Tensor) -> Tensor {
        let similarity = match self.similarity {
            Similarity::Cosine => cosine_matrix(h, &self.llm_embeddings),
            Similarity::Inner => h.matmul(&self.llm_embeddings.tr()),
        };
        similarity / self.temperature
    }
}

/// Passes over queries of `lengths` tokens: [`length_passes`] (longest first, similar lengths,
/// at most `max_rows` queries, at most a quarter of padding), each cut further to at most
/// `max_tokens` padded tokens (0: no cap; at least one query), so that a pass of long queries
/// does not hold `max_rows` of them.
pub fn encoding_passes(lengths: &[usize], max_rows: usize, max_tokens: usize) -> Vec<Vec<usize>> {
    length_passes(lengths, max_rows, QUARTER_PADDING)
        .into_iter()
        .flat_map(|pass| {
            let rows = match max_tokens {
                0 => pass.len(),
                tokens => (tokens / lengths[pass[0]].max(1)).max(1),
            };
            pass.chunks(rows.max(1)).map(<[usize]>::to_vec).collect::<Vec<_>>()
        })
        .collect()
}

/// The rows of `sorted` (row i is query `order[i]`'s) back in query order; differentiable.
pub fn unsort(sorted: &Tensor, order: &[usize]) -> Tensor {
    let mut position = vec![0i64; order.len()];
    for (sorted_row, &row) in order.iter().enumerate() {
        position[row] = sorted_row as i64;
    }
    sorted.index_select(0, &Tensor::from_slice(&position).to(sorted.device()))
}

/// cos(a_i, b_j) for every pair, `[A, B]`.
pub fn cosine_matrix(a: &Tensor, b: &Tensor) -> Tensor {
    Tensor::cosine_similarity(&a.unsqueeze(1), &b.unsqueeze(0), 2, 1e-8)
}

fn long(values: &[i64], shape: &[i64], device: tch::Device) -> Tensor {
    Tensor::from_slice(values).view(shape).to(device)
}

/// Sample-LLM contrastive loss: Σ_i mean_b −m_i(b) · log softmax([s_{p_i}, s_{N}])[0], with
/// negatives that scored > 0.5 left out (logit −∞).
pub fn sample_llm_loss(logits: &Tensor, choice: &LlmChoice, top_k: i64, last_k: i64) -> Tensor {
    let device = logits.device();
    let batch = logits.size()[0];
    let positives = long(&choice.positives, &[batch, top_k], device);
    let mask = Tensor::from_slice(&choice.positive_mask).view([batch, top_k]).to(device);
    let negatives = long(&choice.negatives, &[batch, last_k], device);
    let excluded = Tensor::from_slice(&choice.negative_excluded).view([batch, last_k]).to(device);
    let negative_logits = logits.gather(1, &negatives, false).masked_fill(&excluded, f64::NEG_INFINITY);
    let mut loss = Tensor::zeros([], (Kind::Float, device));
    for i in 0..top_k {
        let positive = logits.gather(1, &positives.narrow(1, i, 1), false);
        let log_p =
            Tensor::cat(&[positive, negative_logits.shallow_clone()], 1).log_softmax(1, Kind::Float).select(1, 0);
        loss = loss + (-(log_p * mask.select(1, i))).mean(Kind::Float);
    }
    loss
}

/// Sample-sample contrastive loss: S = cos(h, h) / τ; mean over the kept anchors q of
/// −log softmax([S_{q,pos}, S_{q,neg_1..H}])[0]. Zero when no anchor was kept.
pub fn sample_sample_loss(h: &Tensor, pairs: &PairChoice, negatives: i64, temperature: f64) -> Tensor {
    let device = h.device();
    let kept = pairs.anchors.len() as i64;
    if kept == 0 {
        return Tensor::zeros([], (Kind::Float, device));
    }
    let similarity = cosine_matrix(h, h) / temperature;
    let rows = similarity.index_select(0, &long(&pairs.anchors, &[kept], device));
    let columns = Tensor::cat(
        &[long(&pairs.positives, &[kept, 1], device), long(&pairs.negatives, &[kept, negatives], device)],
        1,
    );
    -rows.gather(1, &columns, false).log_softmax(1, Kind::Float).select(1, 0).mean(Kind::Float)
}

/// ‖cos(K, K) − I‖_F.
pub fn orthogonality_loss(llm_embeddings: &Tensor) -> Tensor {
    let t = llm_embeddings.size()[0];
    let identity = Tensor::eye(t, (Kind::Float, llm_embeddings.device()));
    (cosine_matrix(llm_embeddings, llm_embeddings) - identity).square().sum(Kind::Float).sqrt()
}
