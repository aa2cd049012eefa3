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

/// At most a quarter more tokens padded than held: what evaluations and routing allow a pass.
pub const QUARTER_PADDING: usize = 25;

/// Encoder passes over texts of `lengths` tokens: indices sorted longest first and cut so that a
/// pass holds at most `max_rows` texts and pads at most `padding_percent` more tokens than it
/// holds (a pass costs as much as its longest text times its rows). Texts of mixed lengths become
/// a few passes of similar lengths instead of one padded to the longest; with 0, only texts of
/// one length share a pass and nothing is padded.
pub fn length_passes(lengths: &[usize], max_rows: usize, padding_percent: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    let mut passes: Vec<Vec<usize>> = Vec::new();
    let mut tokens = 0;
    for index in order {
        let fits = passes.last().is_some_and(|pass| {
            let longest = lengths[pass[0]];
            pass.len() < max_rows.max(1)
                && 100 * longest * (pass.len() + 1) <= (100 + padding_percent) * (tokens + lengths[index])
        });
        if fits {
            tokens += lengths[index];
            if let Some(pass) = passes.last_mut() {
                pass.push(index);
            }
        } else {
            tokens = lengths[index];
            passes.push(vec![index]);
        }
    }
    passes
}

#[cfg(test)]
mod tests {
    use super::{QUARTER_PADDING, length_passes};

    #[test]
    fn passes_group_similar_lengths_and_cover_every_text_once() {
        let lengths = [10, 500, 12, 11, 480, 9, 200, 10];
        let passes = length_passes(&lengths, 3, QUARTER_PADDING);
        let mut seen: Vec<usize> = passes.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
        for pass in &passes {
            let longest = pass.iter().map(|&i| lengths[i]).max().unwrap();
            let held: usize = pass.iter().map(|&i| lengths[i]).sum();
            assert!(pass.len() <= 3 && 4 * longest * pass.len() <= 5 * held, "{pass:?}");
        }
        // 500 and 480 together (200 would pad 27% more); 200 alone; the short ones in threes.
        assert_eq!(passes[0], [1, 4]);
        assert_eq!(passes[1], [6]);
        assert_eq!(passes.len(), 4);
        assert!(length_passes(&[], 8, QUARTER_PADDING).is_empty());
        // No padding: only equal lengths together (10 and 10, in their order), at most 3 a pass.
        let exact = length_passes(&[10, 500, 10, 11, 10, 10, 9], 3, 0);
        assert_eq!(exact, vec![vec![1], vec![3], vec![0, 2, 4], vec![5], vec![6]]);
    }
}
