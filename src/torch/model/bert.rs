//! BERT (Devlin et al. 2019) as HF transformers' `BertModel`, parameter names equal to its
//! checkpoint keys. Attention runs through libtorch's fused scaled-dot-product kernel.
//!
//!   e = LN(W_tok[x] + W_pos[0..L] + W_type[0])
//!   a = LN(h + O · softmax(Q Kᵀ / √d_h + mask) V)
//!   h' = LN(a + W₂ · gelu(W₁ a))

use tch::{Kind, Tensor, nn, nn::Module};

use routerdc::hf::EncoderConfig;

use super::layers::{Attention, FeedForward};

#[derive(Debug)]
pub struct Bert {
    word_embeddings: nn::Embedding,
    position_embeddings: nn::Embedding,
    token_type_embeddings: Option<nn::Embedding>,
    layer_norm: nn::LayerNorm,
    layers: Vec<(Attention, FeedForward)>,
    hidden_dropout: f64,
}

impl Bert {
    pub fn new(path: &nn::Path, config: &EncoderConfig) -> Bert {
        let embeddings = path / "embeddings";
        let hidden = config.hidden_size;
        let layers = (0..config.num_hidden_layers)
            .map(|index| {
                let layer = path / "encoder" / "layer" / index;
                let attention = Attention::new(
                    &(&layer / "attention" / "self"),
                    &(&layer / "attention" / "output"),
                    ["query", "key", "value"],
                    config,
                );
                (attention, FeedForward::new(&layer, config))
            })
            .collect();
        Bert {
            word_embeddings: super::layers::token_embedding(&embeddings / "word_embeddings", config.vocab_size, hidden),
            position_embeddings: nn::embedding(
                &embeddings / "position_embeddings",
                config.max_position_embeddings,
                hidden,
                Default::default(),
            ),
            token_type_embeddings: (config.type_vocab_size > 0).then(|| {
                nn::embedding(&embeddings / "token_type_embeddings", config.type_vocab_size, hidden, Default::default())
            }),
            layer_norm: super::layers::layer_norm(&(&embeddings / "LayerNorm"), config),
            layers,
            hidden_dropout: config.hidden_dropout,
        }
    }

    /// Packs every Linear layer for the int8 kernel (inference only), as `quantize_dynamic` does.
    pub fn quantize(&mut self) -> Result<(), String> {
        for (attention, feed_forward) in &mut self.layers {
            attention.quantize()?;
            feed_forward.quantize()?;
        }
        Ok(())
    }

    /// Last hidden states `[B, L, H]` of token ids `[B, L]` with attention mask `[B, L]` (1 = token);
    /// with `first_only`, the last layer computes the first token's row alone (`[B, 1, H]`), all
    /// that first-token pooling reads.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor, train: bool, first_only: bool) -> Tensor {
        let length = ids.size()[1];
        let positions = Tensor::arange(length, (Kind::Int64, ids.device())).unsqueeze(0);
        let mut embedded = self.word_embeddings.forward(ids) + self.position_embeddings.forward(&positions);
        if let Some(types) = &self.token_type_embeddings {
            embedded += types.forward(&ids.zeros_like());
        }
        let mut hidden = super::layers::dropout(&self.layer_norm.forward(&embedded), self.hidden_dropout, train);
        // Keys that are padding get no weight; a batch without padding needs no mask (and then
        // runs libtorch's fused attention, as HF's sdpa does for it).
        let padded = tch::no_grad(|| mask.eq(0).any()).int64_value(&[]) != 0;
        let keys = padded.then(|| super::layers::key_mask(mask));
        for (index, (attention, feed_forward)) in self.layers.iter().enumerate() {
            let attended = if first_only && index + 1 == self.layers.len() {
                let (q, k, v) = attention.project_first(&hidden);
                attention.attend(&hidden.narrow(1, 0, 1), (&q, &k, &v), keys.as_ref(), None, train)
            } else {
                attention.forward(&hidden, keys.as_ref(), train)
            };
            hidden = feed_forward.forward(&attended, train);
        }
        hidden
    }
}
