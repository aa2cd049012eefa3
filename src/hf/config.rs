//! An encoder's `config.json`, read with HF transformers' defaults for the two supported
//! architectures (BERT and DeBERTa-v2/v3), and checked before any weight is touched.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

/// The network families routerdc builds natively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// BERT and its distillations (all-MiniLM-L6-v2, bert-base-*, ...): `model_type` "bert".
    Bert,
    /// DeBERTa-v2 and v3 (mdeberta-v3-base, deberta-v3-*): `model_type` "deberta-v2".
    DebertaV2,
}

impl Architecture {
    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::Bert => "bert",
            Architecture::DebertaV2 => "deberta-v2",
        }
    }
}

/// Sizes and switches of an encoder, as HF transformers reads them (its defaults filled in).
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderConfig {
    pub architecture: Architecture,
    pub vocab_size: i64,
    pub hidden_size: i64,
    /// Width of the token embeddings (DeBERTa's `embedding_size`; projected to `hidden_size`).
    pub embedding_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub intermediate_size: i64,
    pub max_position_embeddings: i64,
    /// 0 when the model has no token-type embeddings (DeBERTa-v3).
    pub type_vocab_size: i64,
    pub layer_norm_eps: f64,
    pub pad_token_id: i64,
    /// Whether absolute position embeddings are added to the input (BERT: always).
    pub position_biased_input: bool,
    /// DeBERTa's disentangled attention; `None` for BERT or `relative_attention: false`.
    pub relative: Option<RelativeAttention>,
    /// Dropout on hidden states and on attention probabilities (training only).
    pub hidden_dropout: f64,
    pub attention_dropout: f64,
}

/// DeBERTa's relative-position settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RelativeAttention {
    /// Content-to-position term (`c2p` in `pos_att_type`).
    pub c2p: bool,
    /// Position-to-content term (`p2c`).
    pub p2c: bool,
    /// Log-bucket count (`position_buckets`), or -1 for plain clipped distances.
    pub position_buckets: i64,
    /// `max_relative_positions`, with HF's fallback to `max_position_embeddings`.
    pub max_relative_positions: i64,
    /// Project positions with the content query/key projections (`share_att_key`).
    pub share_att_key: bool,
    /// LayerNorm on the relative embeddings (`norm_rel_ebd` contains "layer_norm").
    pub norm_rel_ebd: bool,
}

impl RelativeAttention {
    /// Rows of the relative-embedding table each side of zero (`att_span` in HF).
    pub fn span(&self) -> i64 {
        if self.position_buckets > 0 { self.position_buckets } else { self.max_relative_positions }
    }
}

#[derive(Debug, Deserialize)]
struct Raw {
    model_type: Option<String>,
    vocab_size: i64,
    hidden_size: i64,
    num_hidden_layers: i64,
    num_attention_heads: i64,
    intermediate_size: i64,
    max_position_embeddings: i64,
    type_vocab_size: Option<i64>,
    layer_norm_eps: Option<f64>,
    pad_token_id: Option<i64>,
    hidden_act: Option<String>,
    position_embedding_type: Option<String>,
    embedding_size: Option<i64>,
    position_biased_input: Option<bool>,
    relative_attention: Option<bool>,
    pos_att_type: Option<PosAttType>,
    position_buckets: Option<i64>,
    max_relative_positions: Option<i64>,
    share_att_key: Option<bool>,
    norm_rel_ebd: Option<String>,
    conv_kernel_size: Option<i64>,
    attention_head_size: Option<i64>,
    hidden_dropout_prob: Option<f64>,
    attention_probs_dropout_prob: Option<f64>,
}

/// `pos_att_type` is a list in new configs and a `"p2c|c2p"` string in old ones.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PosAttType {
    List(Vec<String>),
    Joined(String),
}

impl PosAttType {
    fn contains(&self, kind: &str) -> bool {
        match self {
            PosAttType::List(kinds) => kinds.iter().any(|k| k.trim().eq_ignore_ascii_case(kind)),
            PosAttType::Joined(kinds) => kinds.split('|').any(|k| k.trim().eq_ignore_ascii_case(kind)),
        }
    }
}

impl EncoderConfig {
    /// Read and check `config.json`.
    pub fn read(path: &Path) -> Result<EncoderConfig> {
        let bytes = crate::io::read_bytes(path)?;
        Self::parse(&bytes, path)
    }

    pub fn parse(bytes: &[u8], path: &Path) -> Result<EncoderConfig> {
        let raw: Raw = serde_json::from_slice(bytes).map_err(|error| {
            Error::encoder_from(
                path,
                "config.json is not an HF model config",
                "config.json must be an HF model config with the BERT or DeBERTa-v2 keys",
                error,
            )
        })?;
        let bad = |key: &str, message: String| {
            Error::encoder(
                path,
                format!("config.json: `{key}` {message}"),
                "routerdc builds BERT and DeBERTa-v2/v3 encoders as HF transformers does",
            )
        };
        let architecture = match raw.model_type.as_deref() {
            Some("bert") => Architecture::Bert,
            Some("deberta-v2") => Architecture::DebertaV2,
            Some(other) => {
                return Err(bad(
                    "model_type",
                    format!("is \"{other}\"; supported: \"bert\", \"deberta-v2\" (DeBERTa v2 and v3)"),
                ));
            }
            None => return Err(bad("model_type", "is missing".into())),
        };
        for (key, value) in [
            ("vocab_size", raw.vocab_size),
            ("hidden_size", raw.hidden_size),
            ("num_hidden_layers", raw.num_hidden_layers),
            ("num_attention_heads", raw.num_attention_heads),
            ("intermediate_size", raw.intermediate_size),
            ("max_position_embeddings", raw.max_position_embeddings),
        ] {
            if value <= 0 {
                return Err(bad(key, format!("is {value}; it must be positive")));
            }
        }
        if raw.hidden_size % raw.num_attention_heads != 0 {
            return Err(bad(
                "num_attention_heads",
                format!("({}) does not divide hidden_size ({})", raw.num_attention_heads, raw.hidden_size),
            ));
        }
        if let Some(size) = raw.attention_head_size.filter(|&size| size * raw.num_attention_heads != raw.hidden_size) {
            return Err(bad(
                "attention_head_size",
                format!("({size}) × heads differs from hidden_size; not supported"),
            ));
        }
        let act = raw.hidden_act.as_deref().unwrap_or("gelu");
        if act != "gelu" {
            return Err(bad("hidden_act", format!("is \"{act}\"; only \"gelu\" (exact, erf) is supported")));
        }
        if raw.conv_kernel_size.unwrap_or(0) > 0 {
            return Err(bad(
                "conv_kernel_size",
                "is set: DeBERTa-v2's convolution layer (xlarge/xxlarge) is not supported".into(),
            ));
        }
        let relative = match architecture {
            Architecture::Bert => {
                let kind = raw.position_embedding_type.as_deref().unwrap_or("absolute");
                if kind != "absolute" {
                    return Err(bad(
                        "position_embedding_type",
                        format!("is \"{kind}\"; only \"absolute\" is supported"),
                    ));
                }
                None
            }
            Architecture::DebertaV2 if raw.relative_attention.unwrap_or(false) => {
                let kinds = raw.pos_att_type.as_ref();
                let max = raw.max_relative_positions.unwrap_or(-1);
                Some(RelativeAttention {
                    c2p: kinds.is_some_and(|k| k.contains("c2p")),
                    p2c: kinds.is_some_and(|k| k.contains("p2c")),
                    position_buckets: raw.position_buckets.unwrap_or(-1),
                    max_relative_positions: if max < 1 { raw.max_position_embeddings } else { max },
                    share_att_key: raw.share_att_key.unwrap_or(false),
                    norm_rel_ebd: raw
                        .norm_rel_ebd
                        .as_deref()
                        .unwrap_or("none")
                        .to_lowercase()
                        .split('|')
                        .any(|part| part.trim() == "layer_norm"),
                })
            }
            Architecture::DebertaV2 => None,
        };
        let (default_types, default_eps) = match architecture {
            Architecture::Bert => (2, 1e-12),
            Architecture::DebertaV2 => (0, 1e-7),
        };
        Ok(EncoderConfig {
            architecture,
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            embedding_size: match architecture {
                Architecture::Bert => raw.hidden_size,
                Architecture::DebertaV2 => raw.embedding_size.unwrap_or(raw.hidden_size),
            },
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            intermediate_size: raw.intermediate_size,
            max_position_embeddings: raw.max_position_embeddings,
            type_vocab_size: raw.type_vocab_size.unwrap_or(default_types),
            layer_norm_eps: raw.layer_norm_eps.unwrap_or(default_eps),
            pad_token_id: raw.pad_token_id.unwrap_or(0),
            position_biased_input: match architecture {
                Architecture::Bert => true,
                Architecture::DebertaV2 => raw.position_biased_input.unwrap_or(true),
            },
            relative,
            hidden_dropout: raw.hidden_dropout_prob.unwrap_or(0.1),
            attention_dropout: raw.attention_probs_dropout_prob.unwrap_or(0.1),
        })
    }

    pub fn head_size(&self) -> i64 {
        self.hidden_size / self.num_attention_heads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<EncoderConfig> {
        EncoderConfig::parse(json.as_bytes(), Path::new("config.json"))
    }

    const MDEBERTA: &str = r#"{"model_type": "deberta-v2", "vocab_size": 251000, "hidden_size": 768,
        "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
        "max_position_embeddings": 512, "relative_attention": true, "position_buckets": 256,
        "norm_rel_ebd": "layer_norm", "share_att_key": true, "pos_att_type": "p2c|c2p",
        "layer_norm_eps": 1e-7, "max_relative_positions": -1, "position_biased_input": false,
        "type_vocab_size": 0, "hidden_act": "gelu"}"#;

    #[test]
    fn reads_mdeberta_as_hf_does() {
        let config = parse(MDEBERTA).unwrap();
        assert_eq!(config.architecture, Architecture::DebertaV2);
        assert!(!config.position_biased_input);
        assert_eq!(config.type_vocab_size, 0);
        let relative = config.relative.unwrap();
        assert!(relative.c2p && relative.p2c && relative.share_att_key && relative.norm_rel_ebd);
        assert_eq!((relative.max_relative_positions, relative.span()), (512, 256));
    }

    #[test]
    fn bert_defaults_and_rejections_name_the_key() {
        let bert = r#"{"model_type": "bert", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 16, "max_position_embeddings": 32}"#;
        let config = parse(bert).unwrap();
        assert_eq!((config.type_vocab_size, config.layer_norm_eps), (2, 1e-12));
        let roberta = bert.replace("\"bert\"", "\"roberta\"");
        assert!(parse(&roberta).unwrap_err().to_string().contains("`model_type` is \"roberta\""));
        let heads = bert.replace("\"num_attention_heads\": 2", "\"num_attention_heads\": 3");
        assert!(parse(&heads).unwrap_err().to_string().contains("num_attention_heads"));
        let act = bert.replace("\"bert\",", "\"bert\", \"hidden_act\": \"relu\",");
        assert!(parse(&act).unwrap_err().to_string().contains("hidden_act"));
    }
}
