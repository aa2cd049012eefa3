//! Query text → token ids, as the reference tokenises: special tokens added, truncated to at
//! most `max_length` tokens on the LEFT by default (the end of a long query is kept), no padding
//! (batches are padded later, to their own longest query).

use std::path::Path;

use serde::{Deserialize, Serialize};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::EncoderFiles;
use super::spm::{SpmModel, SpmOptions};
use crate::error::{Error, Result};

/// Which end of a too-long query is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TruncationSide {
    /// Keep the end of the query (the reference's `truncation_side='left'`).
    #[default]
    Left,
    /// Keep the start.
    Right,
}

/// A tokenizer set up for routerdc: truncation to `max_length` on `side`, no padding.
#[derive(Clone)]
pub struct TextTokenizer {
    tokenizer: Tokenizer,
    pub max_length: usize,
}

impl TextTokenizer {
    pub fn load(files: &EncoderFiles, max_length: usize, side: TruncationSide) -> Result<TextTokenizer> {
        let path = &files.tokenizer;
        let mut tokenizer = if path.extension().is_some_and(|ext| ext == "model") {
            let bytes = crate::io::read_bytes(path)?;
            SpmModel::parse(&bytes, path)?.deberta_tokenizer(spm_options(&files.dir), path)?
        } else {
            Tokenizer::from_file(path).map_err(|error| {
                Error::encoder_from(
                    path,
                    "unreadable tokenizer.json",
                    "tokenizer.json must be an HF `tokenizers` file",
                    error,
                )
            })?
        };
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: match side {
                    TruncationSide::Left => TruncationDirection::Left,
                    TruncationSide::Right => TruncationDirection::Right,
                },
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|error| Error::encoder_from(path, format!("cannot truncate to {max_length} tokens"), "", error))?;
        Ok(TextTokenizer { tokenizer, max_length })
    }

    /// Token ids of each text, special tokens included.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let encodings = self
            .tokenizer
            .encode_batch_fast(texts.to_vec(), true)
            .map_err(|error| Error::input_from("tokenising failed", "", error))?;
        Ok(encodings.into_iter().map(|encoding| encoding.get_ids().to_vec()).collect())
    }

    pub fn inner(&self) -> &Tokenizer {
        &self.tokenizer
    }
}

/// `do_lower_case` and `split_by_punct` from `tokenizer_config.json`, when present.
fn spm_options(dir: &Path) -> SpmOptions {
    let Ok(bytes) = std::fs::read(dir.join("tokenizer_config.json")) else { return SpmOptions::default() };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else { return SpmOptions::default() };
    let flag = |key: &str| value.get(key).and_then(serde_json::Value::as_bool).unwrap_or(false);
    SpmOptions { do_lower_case: flag("do_lower_case"), split_by_punct: flag("split_by_punct") }
}
