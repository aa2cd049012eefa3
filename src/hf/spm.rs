//! SentencePiece `spm.model` files (a `ModelProto` protobuf) turned into an HF `tokenizers`
//! tokenizer, for checkpoints such as mdeberta-v3-base that ship no `tokenizer.json`.
//!
//! The result is what HF transformers' `DebertaV2Converter` builds (its "fast" tokenizer):
//! a Unigram model over the pieces and scores, the normaliser `[Lowercase?] Strip Precompiled
//! Replace(" {2,}" → " ")` with the model's precompiled charsmap, the pre-tokeniser
//! `[Punctuation?] Metaspace("▁", always)`, and `[CLS] $A [SEP]`.
//! The protobuf is read by hand: only the fields used here, every length checked.

use std::path::Path;

use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::{Lowercase, Precompiled, Replace, Sequence, Strip};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::punctuation::Punctuation;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use crate::error::{BoxError, Error, Result};

/// The parts of a SentencePiece `ModelProto` a Unigram tokenizer needs.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SpmModel {
    /// (piece, score, type); type 1 normal, 2 unknown, 3 control, 4 user-defined, 6 byte.
    pub pieces: Vec<(String, f32, i32)>,
    /// `trainer_spec.model_type`: 1 unigram (the default), 2 BPE, ...
    pub model_type: i32,
    pub unk_id: i32,
    pub byte_fallback: bool,
    pub precompiled_charsmap: Vec<u8>,
}

/// Settings of the original tokenizer (`tokenizer_config.json`) that change the pipeline.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SpmOptions {
    pub do_lower_case: bool,
    pub split_by_punct: bool,
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.at)?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.bytes.len())?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Some(slice)
    }

    /// The next (field number, value) pair; `None` at the end, `Err` when malformed.
    fn field(&mut self) -> Option<std::result::Result<(u64, Value<'a>), ()>> {
        if self.at >= self.bytes.len() {
            return None;
        }
        let parse = |reader: &mut Self| -> Option<(u64, Value<'a>)> {
            let key = reader.varint()?;
            let value = match key & 7 {
                0 => Value::Varint(reader.varint()?),
                1 => Value::Fixed(reader.take(8)?),
                2 => {
                    let len = usize::try_from(reader.varint()?).ok()?;
                    Value::Bytes(reader.take(len)?)
                }
                5 => Value::Fixed(reader.take(4)?),
                _ => return None,
            };
            Some((key >> 3, value))
        };
        Some(parse(self).ok_or(()))
    }
}

enum Value<'a> {
    Varint(u64),
    Fixed(&'a [u8]),
    Bytes(&'a [u8]),
}

fn fields(bytes: &[u8]) -> impl Iterator<Item = std::result::Result<(u64, Value<'_>), ()>> {
    let mut reader = Reader { bytes, at: 0 };
    std::iter::from_fn(move || reader.field())
}

impl SpmModel {
    pub fn parse(bytes: &[u8], path: &Path) -> Result<SpmModel> {
        let bad = |what: &str| {
            Error::encoder(
                path,
                format!("spm.model: {what}"),
                "spm.model must be a SentencePiece model file (ModelProto), as shipped with the checkpoint",
            )
        };
        let mut model = SpmModel { model_type: 1, ..SpmModel::default() };
        for field in fields(bytes) {
            let (number, value) = field.map_err(|()| bad("truncated or not a protobuf"))?;
            match (number, value) {
                (1, Value::Bytes(piece)) => {
                    let (mut text, mut score, mut kind) = (None, 0f32, 1i32);
                    for field in fields(piece) {
                        match field.map_err(|()| bad("a malformed piece"))? {
                            (1, Value::Bytes(raw)) => {
                                text = Some(
                                    String::from_utf8(raw.to_vec()).map_err(|_| bad("a piece that is not UTF-8"))?,
                                )
                            }
                            (2, Value::Fixed(raw)) if raw.len() == 4 => {
                                score = f32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]])
                            }
                            (3, Value::Varint(value)) => kind = value as i32,
                            _ => {}
                        }
                    }
                    model.pieces.push((text.ok_or_else(|| bad("a piece without text"))?, score, kind));
                }
                (2, Value::Bytes(trainer)) => {
                    for field in fields(trainer) {
                        match field.map_err(|()| bad("a malformed trainer_spec"))? {
                            (3, Value::Varint(value)) => model.model_type = value as i32,
                            (35, Value::Varint(value)) => model.byte_fallback = value != 0,
                            (40, Value::Varint(value)) => model.unk_id = value as i32,
                            _ => {}
                        }
                    }
                }
                (3, Value::Bytes(normalizer)) => {
                    for field in fields(normalizer) {
                        if let (2, Value::Bytes(map)) = field.map_err(|()| bad("a malformed normalizer_spec"))? {
                            model.precompiled_charsmap = map.to_vec();
                        }
                    }
                }
                _ => {}
            }
        }
        if model.pieces.is_empty() {
            return Err(bad("no pieces"));
        }
        if model.model_type != 1 {
            return Err(bad(&format!(
                "model type {} is not Unigram (1); only Unigram models are supported",
                model.model_type
            )));
        }
        if model.unk_id < 0 || model.unk_id as usize >= model.pieces.len() {
            return Err(bad(&format!("unk_id {} is outside the {} pieces", model.unk_id, model.pieces.len())));
        }
        Ok(model)
    }

    /// The tokenizer HF transformers' `DebertaV2Converter` builds from this model.
    pub fn deberta_tokenizer(&self, options: SpmOptions, path: &Path) -> Result<Tokenizer> {
        let fail_from =
            |what: &str, error: BoxError| Error::encoder_from(path, format!("spm.model: {what}"), "", error);
        let fail = |what: String| Error::encoder(path, format!("spm.model: {what}"), "");
        let vocab = self.pieces.iter().map(|(piece, score, _)| (piece.clone(), f64::from(*score))).collect();
        let unigram = Unigram::from(vocab, Some(self.unk_id as usize), self.byte_fallback)
            .map_err(|error| fail_from("cannot build the Unigram model", error))?;
        let mut tokenizer = Tokenizer::new(unigram);

        let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
        if options.do_lower_case {
            normalizers.push(Lowercase.into());
        }
        normalizers.push(Strip::new(true, true).into());
        if !self.precompiled_charsmap.is_empty() {
            let precompiled = Precompiled::from(&self.precompiled_charsmap)
                .map_err(|error| fail_from("unreadable precompiled_charsmap", error.into()))?;
            normalizers.push(precompiled.into());
        }
        let spaces = Replace::new(tokenizers::normalizers::replace::ReplacePattern::Regex(" {2,}".into()), " ")
            .map_err(|error| fail_from("cannot build the whitespace normaliser", error))?;
        normalizers.push(spaces.into());
        tokenizer
            .with_normalizer(Some(Sequence::new(normalizers)))
            .map_err(|error| fail_from("cannot set the normaliser", error))?;

        let mut pre: Vec<PreTokenizerWrapper> = Vec::new();
        if options.split_by_punct {
            pre.push(Punctuation::new(SplitDelimiterBehavior::Isolated).into());
        }
        pre.push(Metaspace::new('▁', PrependScheme::Always, true).into());
        tokenizer.with_pre_tokenizer(Some(PreSequence::new(pre)));

        let id = |token: &str| {
            self.pieces
                .iter()
                .position(|(piece, _, _)| piece == token)
                .map(|id| id as u32)
                .ok_or_else(|| fail(format!("no `{token}` piece, which DeBERTa's template needs")))
        };
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        let template = TemplateProcessing::builder()
            .try_single("[CLS]:0 $A:0 [SEP]:0")
            .and_then(|builder| builder.try_pair("[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1"))
            .map_err(|error| fail_from("cannot build the tokenizer", error.into()))?
            .special_tokens(vec![("[CLS]", cls), ("[SEP]", sep)])
            .build()
            .map_err(|error| fail_from("cannot build the tokenizer", error.into()))?;
        tokenizer.with_post_processor(Some(template));
        // As HF loads them: the control pieces are special tokens, matched whole in the input.
        let specials: Vec<AddedToken> = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
            .into_iter()
            .filter(|token| self.pieces.iter().any(|(piece, _, _)| piece == token))
            .map(|token| AddedToken::from(token, true))
            .collect();
        tokenizer.add_special_tokens(specials).map_err(|error| fail_from("cannot build the tokenizer", error))?;
        Ok(tokenizer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(text: &str, score: f32, kind: u8) -> Vec<u8> {
        let mut out = vec![0x0a, text.len() as u8];
        out.extend_from_slice(text.as_bytes());
        out.push(0x15);
        out.extend_from_slice(&score.to_le_bytes());
        out.extend_from_slice(&[0x18, kind]);
        let mut field = vec![0x0a, out.len() as u8];
        field.extend(out);
        field
    }

    #[test]
    fn parses_pieces_and_rejects_truncation() {
        let mut bytes = Vec::new();
        for (text, score, kind) in
            [("[PAD]", 0.0, 3), ("[UNK]", 0.0, 2), ("[CLS]", 0.0, 3), ("[SEP]", 0.0, 3), ("▁a", -1.5, 1)]
        {
            bytes.extend(piece(text, score, kind));
        }
        // trainer_spec { unk_id: 1 }
        bytes.extend_from_slice(&[0x12, 0x03, 0xc0, 0x02, 0x01]);
        let model = SpmModel::parse(&bytes, Path::new("spm.model")).unwrap();
        assert_eq!(model.pieces.len(), 5);
        assert_eq!(model.pieces[4], ("▁a".to_owned(), -1.5, 1));
        assert_eq!(model.unk_id, 1);
        let tokenizer = model.deberta_tokenizer(SpmOptions::default(), Path::new("spm.model")).unwrap();
        let encoding = tokenizer.encode("a  a", true).unwrap();
        assert_eq!(encoding.get_ids(), &[2, 4, 4, 3]);
        let error = SpmModel::parse(&bytes[..bytes.len() - 2], Path::new("spm.model")).unwrap_err();
        assert!(error.to_string().contains("truncated"), "{error}");
    }
}
