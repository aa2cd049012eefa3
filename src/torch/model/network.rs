//! A loaded encoder: the network (BERT or DeBERTa-v2) in a `VarStore` whose keys are the HF
//! checkpoint keys, filled from `model.safetensors` or `pytorch_model.bin`, plus its tokenizer.

use std::collections::HashMap;
use std::path::Path;

use tch::{Device, Kind, Tensor, nn};

use routerdc::error::{Error, Result};
use routerdc::hf::checkpoint::{self, DType};
use routerdc::hf::tokenize::{TextTokenizer, TruncationSide};
use routerdc::hf::{Architecture, EncoderConfig, EncoderFiles, Pooling, Quantize};

use super::bert::Bert;
use super::deberta::Deberta;

#[derive(Debug)]
// One network per encoder, built once: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Network {
    Bert(Bert),
    Deberta(Deberta),
}

impl Network {
    pub fn new(path: &nn::Path, config: &EncoderConfig) -> Network {
        match config.architecture {
            Architecture::Bert => Network::Bert(Bert::new(path, config)),
            Architecture::DebertaV2 => Network::Deberta(Deberta::new(path, config)),
        }
    }

    /// Runs the Linear layers of a float32 network in `precision` from now on. int8 is for
    /// inference on the CPU: its kernel has no gradient and no GPU version.
    pub fn quantize_to(&mut self, precision: Quantize, device: Device) -> Result<()> {
        if precision == Quantize::None {
            return Ok(());
        }
        if device != Device::Cpu {
            return Err(Error::setting(
                "quantize",
                "int8 runs on the CPU only; pass `--device cpu` with `--quantize int8`",
            ));
        }
        match self {
            Network::Bert(bert) => bert.quantize(),
            Network::Deberta(deberta) => deberta.quantize(),
        }
        .map_err(|message| Error::failed("Failed to quantize the encoder to int8", message))
    }

    /// Last hidden states `[B, L, H]`.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        self.forward_rows(ids, mask, train, false)
    }

    fn forward_rows(&self, ids: &Tensor, mask: &Tensor, train: bool, first_only: bool) -> Tensor {
        match self {
            Network::Bert(bert) => bert.forward(ids, mask, train, first_only),
            Network::Deberta(deberta) => deberta.forward(ids, mask, train, first_only),
        }
    }

    /// One vector per query, `[B, H]`. First-token pooling skips the last layer's other rows.
    pub fn embed(&self, ids: &Tensor, mask: &Tensor, pooling: Pooling, train: bool) -> Tensor {
        let first_only = pooling == Pooling::First;
        pool(&self.forward_rows(ids, mask, train, first_only), mask, pooling)
    }
}

pub fn pool(hidden: &Tensor, mask: &Tensor, pooling: Pooling) -> Tensor {
    match pooling {
        Pooling::First => hidden.select(1, 0),
        Pooling::Mean => {
            let weights = mask.to_kind(hidden.kind()).unsqueeze(-1);
            (hidden * &weights).sum_dim_intlist(1, false, hidden.kind())
                / weights.sum_dim_intlist(1, false, hidden.kind())
        }
    }
}

/// An encoder ready to embed: config, tokenizer, weights.
pub struct Encoder {
    pub config: EncoderConfig,
    pub tokenizer: TextTokenizer,
    pub store: nn::VarStore,
    pub network: Network,
    /// The precision of the Linear layers at inference.
    pub quantize: Quantize,
}

impl Encoder {
    pub fn load(files: EncoderFiles, device: Device, max_length: usize, side: TruncationSide) -> Result<Encoder> {
        let config = EncoderConfig::read(&files.config)?;
        let max_length = max_length.min(config.max_position_embeddings as usize);
        let tokenizer = TextTokenizer::load(&files, max_length, side)?;
        let mut store = nn::VarStore::new(device);
        let network = Network::new(&store.root(), &config);
        load_weights(&mut store, "", &files.weights)?;
        store.freeze();
        Ok(Encoder { config, tokenizer, store, network, quantize: Quantize::None })
    }

    /// Runs the Linear layers in `precision` from now on (see [`Network::quantize_to`]).
    pub fn quantize(&mut self, precision: Quantize) -> Result<()> {
        match (self.quantize, precision) {
            (current, wanted) if current == wanted => {}
            (Quantize::None, wanted) => {
                self.network.quantize_to(wanted, self.store.device())?;
                self.quantize = wanted;
            }
            (_, _) => {
                return Err(Error::setting("quantize", "an int8 encoder cannot go back to float32: load it again"));
            }
        }
        Ok(())
    }
}

/// The tensors of a weights file, by name, on the CPU.
pub fn read_weights(path: &Path) -> Result<Vec<(String, Tensor)>> {
    if path.extension().is_some_and(|ext| ext == "bin") {
        return checkpoint::read_torch_bin(path)?
            .into_iter()
            .map(|raw| {
                let kind = match raw.dtype {
                    DType::F32 => Kind::Float,
                    DType::F64 => Kind::Double,
                    DType::F16 => Kind::Half,
                    DType::BF16 => Kind::BFloat16,
                    DType::I64 => Kind::Int64,
                    DType::I32 => Kind::Int,
                    DType::I16 => Kind::Int16,
                    DType::I8 => Kind::Int8,
                    DType::U8 => Kind::Uint8,
                    DType::Bool => Kind::Bool,
                };
                let tensor = Tensor::f_from_data_size(&raw.data, &raw.shape, kind).map_err(|error| {
                    Error::encoder_from(path, format!("tensor `{}` cannot be built", raw.name), "", error)
                })?;
                Ok((raw.name, tensor))
            })
            .collect();
    }
    Tensor::read_safetensors(path).map_err(|error| {
        Error::encoder_from(path, "unreadable safetensors file", "re-download or re-save the weights", error)
    })
}

/// Copy the weights in `path` into the variables of `store` under `prefix` (`""` or
/// `"backbone."`). Checkpoint keys may carry a model prefix (`bert.`, `deberta.`, `model.`,
/// `backbone.`) that is dropped; keys the network does not use (heads, pooler) are ignored;
/// a variable without a weight, or with a weight of another shape, is an error naming the key.
pub fn load_weights(store: &mut nn::VarStore, prefix: &str, path: &Path) -> Result<()> {
    let weights: HashMap<String, Tensor> = read_weights(path)?.into_iter().collect();
    let lookup = |key: &str| -> Option<&Tensor> {
        weights.get(key).or_else(|| {
            ["bert.", "deberta.", "model.", "backbone.", "encoder_model."]
                .iter()
                .find_map(|model_prefix| weights.get(&format!("{model_prefix}{key}")))
        })
    };
    let mut variables: Vec<(String, Tensor)> = store.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, mut variable) in variables {
        let Some(key) = name.strip_prefix(prefix) else { continue };
        let Some(weight) = lookup(key) else {
            return Err(Error::encoder(
                path,
                format!("no weight `{key}`, which config.json's architecture needs"),
                "the weights and config.json must come from the same checkpoint",
            ));
        };
        if weight.size() != variable.size() {
            return Err(Error::encoder(
                path,
                format!("weight `{key}` has shape {:?} but config.json implies {:?}", weight.size(), variable.size()),
                "the weights and config.json must come from the same checkpoint",
            ));
        }
        tch::no_grad(|| variable.copy_(&weight.to_kind(variable.kind())));
    }
    Ok(())
}

/// Token-id lists as a right-padded `[B, L]` id tensor and its mask, `L` = the longest list.
pub fn pad_batch(ids: &[&[u32]], pad_id: i64, device: Device) -> (Tensor, Tensor) {
    let length = ids.iter().map(|ids| ids.len()).max().unwrap_or(0);
    let mut flat = vec![pad_id; ids.len() * length];
    let mut mask = vec![0i64; ids.len() * length];
    for (row, ids) in ids.iter().enumerate() {
        for (column, &id) in ids.iter().enumerate() {
            flat[row * length + column] = i64::from(id);
            mask[row * length + column] = 1;
        }
    }
    let shape = [ids.len() as i64, length as i64];
    (Tensor::from_slice(&flat).view(shape).to(device), Tensor::from_slice(&mask).view(shape).to(device))
}
