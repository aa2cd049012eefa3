//! DeBERTa-v2/v3 (He et al. 2021) as HF transformers' `DebertaV2Model`, parameter names equal
//! to its checkpoint keys. Disentangled attention adds content-to-position and
//! position-to-content terms to the content scores:
//!
//!   A_ij = (q_i·k_j + q_i·k^r_{δ(i,j)} + k_j·q^r_{δ(j,i)}) / √(d_h · s)
//!
//! where δ is the (log-bucketed) relative distance, k^r / q^r are the relative embeddings
//! projected by the key / query projections (`share_att_key`), and s = 1 + #terms. The bias
//! terms and the padding mask go into the fused attention kernel as one additive mask.

// `a = a + b` on tensors on purpose: tch's `a += b` is an in-place add, which neither
// broadcasts `a` to a larger shape nor leaves autograd an out-of-place graph.
#![allow(clippy::assign_op_pattern)]

use tch::{Kind, Tensor, nn, nn::Module};

use routerdc::hf::EncoderConfig;
use routerdc::hf::config::RelativeAttention;

use super::layers::{Attention, Dense, FeedForward, dropout};

#[derive(Debug)]
pub struct Deberta {
    word_embeddings: nn::Embedding,
    position_embeddings: Option<nn::Embedding>,
    token_type_embeddings: Option<nn::Embedding>,
    embed_proj: Option<Dense>,
    layer_norm: nn::LayerNorm,
    layers: Vec<(Attention, Option<RelativeProjections>, FeedForward)>,
    relative: Option<Relative>,
    /// 1/√(d_h · s): the content and the relative terms share it.
    scale: f64,
    hidden_dropout: f64,
}

/// The relative-embedding table, its LayerNorm, and the settings.
#[derive(Debug)]
struct Relative {
    settings: RelativeAttention,
    embeddings: nn::Embedding,
    layer_norm: Option<nn::LayerNorm>,
}

/// Separate position projections, for checkpoints without `share_att_key`.
#[derive(Debug)]
struct RelativeProjections {
    key: Option<Dense>,
    query: Option<Dense>,
}

impl Deberta {
    pub fn new(path: &nn::Path, config: &EncoderConfig) -> Deberta {
        let embeddings = path / "embeddings";
        let encoder = path / "encoder";
        let (hidden, width) = (config.hidden_size, config.embedding_size);
        let embedding = |name: &str, rows: i64| nn::embedding(&embeddings / name, rows, width, Default::default());
        let relative = config.relative.as_ref();
        let layers = (0..config.num_hidden_layers)
            .map(|index| {
                let layer = &encoder / "layer" / index;
                let projections = &layer / "attention" / "self";
                let attention = Attention::new(
                    &projections,
                    &(&layer / "attention" / "output"),
                    ["query_proj", "key_proj", "value_proj"],
                    config,
                );
                let separate = relative.filter(|settings| !settings.share_att_key).map(|settings| {
                    let linear = |name: &str| Dense::new(&projections / name, hidden, hidden, true);
                    RelativeProjections {
                        key: settings.c2p.then(|| linear("pos_key_proj")),
                        query: settings.p2c.then(|| linear("pos_query_proj")),
                    }
                });
                (attention, separate, FeedForward::new(&layer, config))
            })
            .collect();
        Deberta {
            word_embeddings: super::layers::token_embedding(&embeddings / "word_embeddings", config.vocab_size, width),
            position_embeddings: config
                .position_biased_input
                .then(|| embedding("position_embeddings", config.max_position_embeddings)),
            token_type_embeddings: (config.type_vocab_size > 0)
                .then(|| embedding("token_type_embeddings", config.type_vocab_size)),
            embed_proj: (width != hidden).then(|| Dense::new(&embeddings / "embed_proj", width, hidden, false)),
            layer_norm: super::layers::layer_norm(&(&embeddings / "LayerNorm"), config),
            layers,
            relative: relative.map(|settings| Relative {
                settings: settings.clone(),
                embeddings: nn::embedding(&encoder / "rel_embeddings", settings.span() * 2, hidden, Default::default()),
                layer_norm: settings.norm_rel_ebd.then(|| super::layers::layer_norm(&(&encoder / "LayerNorm"), config)),
            }),
            scale: 1.0
                / ((config.head_size() * (1 + relative.map_or(0, |r| i64::from(r.c2p) + i64::from(r.p2c)))) as f64)
                    .sqrt(),
            hidden_dropout: config.hidden_dropout,
        }
    }

    /// Packs every Linear layer for the int8 kernel (inference only), as `quantize_dynamic` does.
    pub fn quantize(&mut self) -> Result<(), String> {
        if let Some(projection) = &mut self.embed_proj {
            projection.quantize()?;
        }
        for (attention, separate, feed_forward) in &mut self.layers {
            attention.quantize()?;
            if let Some(separate) = separate {
                for dense in [&mut separate.key, &mut separate.query].into_iter().flatten() {
                    dense.quantize()?;
                }
            }
            feed_forward.quantize()?;
        }
        Ok(())
    }

    /// Last hidden states `[B, L, H]` of token ids `[B, L]` with attention mask `[B, L]` (1 = token);
    /// with `first_only`, the last layer computes the first token's row alone (`[B, 1, H]`).
    pub fn forward(&self, ids: &Tensor, mask: &Tensor, train: bool, first_only: bool) -> Tensor {
        let length = ids.size()[1];
        let device = ids.device();
        let mut embedded = self.word_embeddings.forward(ids);
        if let Some(positions) = &self.position_embeddings {
            embedded += positions.forward(&Tensor::arange(length, (Kind::Int64, device)).unsqueeze(0));
        }
        if let Some(types) = &self.token_type_embeddings {
            embedded += types.forward(&ids.zeros_like());
        }
        if let Some(projection) = &self.embed_proj {
            embedded = super::layers::linear(projection, &embedded);
        }
        let tokens = mask.to_kind(Kind::Float).unsqueeze(-1);
        let mut hidden = dropout(&(self.layer_norm.forward(&embedded) * &tokens), self.hidden_dropout, train);

        // Padding keys are masked. (HF masks padding queries too; their rows are never read,
        // and masking only keys keeps every row finite for the fused kernel.)
        // What is masked, `[B, 1, L, L]`: padding keys, and every key of a padding query (whose
        // row is then uniform over the keys), as HF's 2-D mask. Real tokens' states do not depend
        // on the second part; padding rows equal HF's, which int8 needs: their values are part of
        // the range each Linear layer's input is quantized with.
        let padding_query = mask.eq(0).unsqueeze(1).unsqueeze(-1);
        let padding = super::layers::key_mask(mask).logical_not().logical_or(&padding_query);
        let relative = self.relative.as_ref().map(|relative| {
            let table = relative.embeddings.ws.shallow_clone();
            let table = match &relative.layer_norm {
                Some(norm) => norm.forward(&table),
                None => table,
            };
            let positions = relative_positions(length, &relative.settings, device);
            (relative, table, positions)
        });
        let scale = self.scale;
        for (index, (attention, separate, feed_forward)) in self.layers.iter().enumerate() {
            let first = first_only && index + 1 == self.layers.len();
            let (q, k, v) = if first { attention.project_first(&hidden) } else { attention.project(&hidden) };
            let mut bias = Tensor::zeros([1, 1, 1, 1], (Kind::Float, device));
            if let Some((relative, table, positions)) = &relative {
                // Each layer drops out its own copy of the table (HF's `pos_dropout`).
                let table = dropout(table, self.hidden_dropout, train);
                bias = bias
                    + disentangled_bias(attention, separate.as_ref(), relative, &table, positions, (&q, &k), scale);
            }
            let padding = if first { padding.narrow(2, 0, 1) } else { padding.shallow_clone() };
            let bias = bias.masked_fill(&padding, f64::from(f32::MIN));
            let rows = if first { hidden.narrow(1, 0, 1) } else { hidden.shallow_clone() };
            let attended = attention.attend(&rows, (&q, &k, &v), Some(&bias), Some(scale), train);
            hidden = feed_forward.forward(&attended, train);
        }
        hidden
    }
}

/// `c2p` and `p2c` terms, already divided by √(d_h · s): `[B, heads, L_q, L]`, where the
/// queries are the first `L_q` tokens (all of them, or the first alone).
fn disentangled_bias(
    attention: &Attention,
    separate: Option<&RelativeProjections>,
    relative: &Relative,
    table: &Tensor,
    positions: &Tensor,
    (q, k): (&Tensor, &Tensor),
    scale: f64,
) -> Tensor {
    let settings = &relative.settings;
    let span = settings.span();
    let table = table.narrow(0, 0, span * 2).unsqueeze(0);
    // [1, 2·span, H] → [1, heads, 2·span, d_h]
    let project = |linear: &Dense| attention.split_heads(&super::layers::linear(linear, &table));
    let (batch, heads, queries, _) = q.size4().expect("queries are [B, heads, L_q, d_h]");
    let expand = |index: Tensor| {
        let (rows, columns) = (index.size()[0], index.size()[1]);
        index.unsqueeze(0).unsqueeze(0).expand([batch, heads, rows, columns], false)
    };
    let mut bias = Tensor::zeros([1, 1, 1, 1], (Kind::Float, q.device()));
    if settings.c2p {
        let position_keys = match separate.and_then(|s| s.key.as_ref()) {
            Some(linear) => project(linear),
            None => project(&attention.key),
        };
        let scores = q.matmul(&position_keys.transpose(-1, -2));
        let index = (positions.narrow(0, 0, queries) + span).clamp(0, span * 2 - 1);
        bias = bias + scores.gather(-1, &expand(index), false) * scale;
    }
    if settings.p2c {
        let position_queries = match separate.and_then(|s| s.query.as_ref()) {
            Some(linear) => project(linear),
            None => project(&attention.query),
        };
        let scores = k.matmul(&position_queries.transpose(-1, -2));
        // Row j (a key), column i (a query): the distance j − i seen from the key.
        let index = (-positions.narrow(1, 0, queries) + span).clamp(0, span * 2 - 1);
        debug_assert_eq!(index.size(), [k.size()[2], queries]);
        bias = bias + scores.gather(-1, &expand(index), false).transpose(-1, -2) * scale;
    }
    bias
}

/// Relative distances i − j, `[L, L]` int64, log-bucketed as HF's `make_log_bucket_position`
/// (float32 arithmetic in the same order, so the buckets are the same).
fn relative_positions(length: i64, settings: &RelativeAttention, device: tch::Device) -> Tensor {
    let ids = Tensor::arange(length, (Kind::Int64, device));
    let relative = ids.unsqueeze(1) - ids.unsqueeze(0);
    let (buckets, max_position) = (settings.position_buckets, settings.max_relative_positions);
    if buckets <= 0 || max_position <= 0 {
        return relative;
    }
    let mid = buckets / 2;
    let sign = relative.sign();
    let inside = relative.lt(mid).logical_and(&relative.gt(-mid));
    let abs = relative.abs().masked_fill(&inside, mid - 1);
    let ratio = Tensor::from(((max_position - 1) as f64 / mid as f64) as f32).to_device(device).log();
    let log_position = ((abs.to_kind(Kind::Float) / mid as f64).log() / ratio * (mid - 1) as f64).ceil() + mid as f64;
    let bucketed = relative.to_kind(Kind::Float).where_self(&abs.le(mid), &(log_position * sign));
    bucketed.to_kind(Kind::Int64)
}
