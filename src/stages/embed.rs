//! `routerdc embed`: one fixed-size vector per query, from an HF encoder.
//!
//! This side holds everything but the network: tokenising, the cache, batching and the files.
//! Texts already in the cache (keyed by the encoder's content and settings and by the text's
//! hash) are not embedded again; the rest are tokenised once, sorted by length and cut into
//! batches, so each batch is padded only to its own longest query. The network itself
//! ([`Embedder`]) is libtorch code in `routerdc-torch`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::hf::tokenize::{TextTokenizer, TruncationSide};
use crate::hf::{EncoderFiles, Pooling};
use crate::table::{LoadedTable, ScoredTable};

pub use crate::hf::Quantize;

/// Where the network runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA when libtorch sees a GPU, else the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
}

/// The encoder settings every stage that embeds shares (`embed`, `cluster`, later `train`).
#[derive(Debug, Clone, clap::Args, PartialEq)]
pub struct EncoderOptions {
    /// HF model directory or hub id (found offline in the HF cache). Default: the bundled all-MiniLM-L6-v2.
    #[arg(long, value_name = "PATH|HUB_ID")]
    pub encoder: Option<String>,
    /// How hidden states become one vector: the first token's (as the reference) or the mean.
    #[arg(long, value_enum, default_value_t = Pooling::First)]
    pub pooling: Pooling,
    /// Longest query in tokens (special tokens included); longer ones are cut.
    #[arg(long, default_value_t = 512)]
    pub max_length: usize,
    /// Which end of a too-long query is cut: `left` keeps its end (the reference).
    #[arg(long, value_enum, default_value_t = TruncationSide::Left)]
    pub truncation: TruncationSide,
    /// Queries per forward pass.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Also cap a forward pass at this many tokens after padding (rows × its longest query), so
    /// that batches of long queries hold fewer rows; 0: rows only (`--batch-size`), the float32
    /// default (its vectors stay bit for bit what they were); int8's default is 4096.
    #[arg(long, value_name = "TOKENS")]
    pub batch_tokens: Option<usize>,
    /// Where the encoder runs.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Worker threads running the encoder side by side on the CPU (one copy of the weights),
    /// each on its share of the cores (0 = automatic: one per core up to 4; always 1 on a GPU).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Embed every text again instead of reading and extending the embedding cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Run the encoder's Linear layers in int8 (weights per channel, activations per batch, as
    /// PyTorch's `quantize_dynamic`): faster on a CPU, vectors close to but not equal to float32.
    #[arg(long, value_enum, default_value_t = Quantize::None)]
    pub quantize: Quantize,
}

impl EncoderOptions {
    /// The token cap of a forward pass (0: none). On 2 cores, 4,096 tokens embedded the paper's
    /// 5,935 training queries 14% faster than 64 rows alone in int8, 5% in float32
    /// (BENCHMARKS.md, "embed").
    pub fn batch_tokens(&self) -> usize {
        self.batch_tokens.unwrap_or(match self.quantize {
            Quantize::None => 0,
            Quantize::Int8 => 4096,
        })
    }
}

/// Settings of `routerdc embed`.
#[derive(Debug, Clone, clap::Args)]
pub struct EmbedConfig {
    /// Folder of scored tables (`*.parquet`).
    #[arg(long, value_name = "DIR")]
    pub tables: PathBuf,
    /// Folder for one `<table>.parquet` of `query_id`, `text`, `embedding` (float32 list) per table.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub encoder: EncoderOptions,
}

/// The network: token-id batches in, `[batch × dim]` float32 vectors out (row-major).
pub trait Embedder {
    fn dim(&self) -> usize;
    /// The vectors of each batch, in order; `done(n)` is called as each batch of `n` finishes
    /// (batches may run in parallel).
    fn embed_batches(&mut self, batches: &[Vec<&[u32]>], done: &(dyn Fn(usize) + Sync)) -> Result<Vec<Vec<f32>>>;
}

/// A content key of the encoder and the settings that change its vectors: the same key means
/// the same vector for the same text.
pub fn encoder_key(files: &EncoderFiles, options: &EncoderOptions, max_length: usize) -> Result<String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"routerdc-embed-v1\0");
    for path in [&files.config, &files.tokenizer, &files.weights] {
        let mapped = crate::io::map_file(path)?;
        hasher.update(&(mapped.len() as u64).to_le_bytes());
        hasher.update(&mapped);
    }
    let mut settings = format!("{:?}|{}|{:?}", options.pooling, max_length, options.truncation);
    if options.quantize != Quantize::None {
        // Keys of float32 vectors stay what they were, so existing caches stay valid.
        settings.push_str(&format!("|{:?}", options.quantize));
    }
    hasher.update(settings.as_bytes());
    Ok(hasher.finalize().to_hex()[..32].to_owned())
}

/// Embeddings already computed for one encoder key: `$ROUTERDC_CACHE/embeddings/<key>/*.parquet`,
/// each file a `text_hash`, `embedding` table written atomically by one run.
pub struct Cache {
    /// Shards that could not be read (empty, cut short, not a shard): skipped, renamed to
    /// `*.parquet.bad`, with why.
    pub skipped: Vec<(PathBuf, String)>,
    dir: PathBuf,
    vectors: HashMap<[u8; 32], Vec<f32>>,
    /// The texts this run added, to be saved (their vectors are in `vectors`).
    added: Vec<[u8; 32]>,
}

/// The (text hash, vector) rows of one cache shard.
fn read_shard(shard: &Path) -> Result<Vec<([u8; 32], Vec<f32>)>> {
    let frame = crate::io::read_parquet(shard)?;
    let hashes = frame.column("text_hash").and_then(|c| c.binary().cloned());
    let hashes = hashes.map_err(Error::polars(format!("reading cache shard {}", shard.display())))?;
    let rows = list_rows(&frame, "embedding", shard)?;
    Ok(hashes.iter().zip(rows).filter_map(|(hash, row)| Some((<[u8; 32]>::try_from(hash?).ok()?, row))).collect())
}

impl Cache {
    pub fn open(key: &str) -> Result<Cache> {
        let dir = crate::hf::cache_dir()
            .ok_or_else(|| {
                Error::setting("--no-cache", "no cache folder: set ROUTERDC_CACHE or HOME, or pass --no-cache")
            })?
            .join("embeddings")
            .join(key);
        let mut vectors = HashMap::new();
        let mut skipped = Vec::new();
        if dir.is_dir() {
            let entries = std::fs::read_dir(&dir).map_err(|source| Error::Read { path: dir.clone(), source })?;
            let mut shards: Vec<PathBuf> = entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == "parquet"))
                .collect();
            shards.sort();
            for shard in shards {
                // A shard that cannot be read (a run killed mid-write on a filesystem without
                // atomic renames, a damaged disk) costs only its vectors: they are embedded again.
                match read_shard(&shard) {
                    Ok(rows) => vectors.extend(rows),
                    Err(error) => {
                        // Renamed aside so that it is reported once, not on every run; kept for a
                        // look. Best effort: an aside that fails leaves it to be skipped again.
                        let _ = std::fs::rename(&shard, shard.with_extension("parquet.bad"));
                        skipped.push((shard, error.to_string()));
                    }
                }
            }
        }
        Ok(Cache { dir, vectors, added: Vec::new(), skipped })
    }

    pub fn get(&self, hash: &[u8; 32]) -> Option<&Vec<f32>> {
        self.vectors.get(hash)
    }

    pub fn insert(&mut self, hash: [u8; 32], vector: Vec<f32>) {
        self.vectors.insert(hash, vector);
        self.added.push(hash);
    }

    pub fn len(&self) -> usize {
        self.vectors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vectors.is_empty()
    }

    /// Write what this run added as one new shard.
    pub fn save(&mut self) -> Result<()> {
        if self.added.is_empty() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir).map_err(|source| Error::Write { path: self.dir.clone(), source })?;
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let path = self.dir.join(format!("{stamp:032}-{}.parquet", std::process::id()));
        let dim = self.vectors[&self.added[0]].len();
        let hashes: Vec<&[u8]> = self.added.iter().map(|hash| hash.as_slice()).collect();
        let flat: Vec<f32> = self.added.iter().flat_map(|hash| self.vectors[hash].iter().copied()).collect();
        let mut frame = DataFrame::new_infer_height(vec![
            Column::new("text_hash".into(), hashes),
            list_column("embedding", flat, dim)?,
        ])
        .map_err(Error::polars("building a cache shard"))?;
        crate::io::write_parquet(&mut frame, &path)?;
        self.added.clear();
        Ok(())
    }
}

/// A `[n × dim]` row-major buffer as a list column of float32 vectors.
pub fn list_column(name: &str, flat: Vec<f32>, dim: usize) -> Result<Column> {
    let values = Float32Chunked::from_vec(name.into(), flat).into_series();
    let list = values
        .reshape_list(&[ReshapeDimension::new(-1), ReshapeDimension::new(dim as i64)])
        .map_err(Error::polars("shaping embeddings"))?;
    // reshape_list makes a fixed-size array; a plain list is what pandas and DuckDB read best.
    let list = list.cast(&DataType::List(Box::new(DataType::Float32))).map_err(Error::polars("shaping embeddings"))?;
    Ok(list.into_column())
}

/// The float32 vectors of list column `name`.
pub fn list_rows(frame: &DataFrame, name: &str, path: &Path) -> Result<Vec<Vec<f32>>> {
    let column = frame.column(name).map_err(|_| Error::table(path, format!("no `{name}` column")))?;
    let list = column.list().map_err(|_| Error::table(path, format!("`{name}` is not a list column")))?;
    let mut rows = Vec::with_capacity(list.len());
    for row in 0..list.len() {
        let series =
            list.get_as_series(row).ok_or_else(|| Error::table(path, format!("a null in `{name}`, row {row}")))?;
        let series = series.cast(&DataType::Float32).map_err(Error::polars(format!("reading `{name}`")))?;
        let values = series.f32().map_err(Error::polars(format!("reading `{name}`")))?;
        rows.push(values.into_no_null_iter().collect());
    }
    Ok(rows)
}

fn text_hash(text: &str) -> [u8; 32] {
    *blake3::hash(text.as_bytes()).as_bytes()
}

/// Every table's queries must have text to embed.
pub fn check_texts(loaded: &LoadedTable) -> Result<()> {
    let table = &loaded.table;
    if let Some(row) = table.texts.iter().position(|text| text.trim().is_empty()) {
        return Err(Error::input(
            format!(
                "`{}`: query `{}` (row {row}) has an empty text; there is nothing to embed",
                loaded.path.display(),
                table.query_ids[row]
            ),
            "drop the query from the table or give it its text (ingest and import keep the harness's query text)",
        ));
    }
    Ok(())
}

/// Counts of one embedding run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EmbedStats {
    pub texts: usize,
    pub unique: usize,
    pub from_cache: usize,
    pub embedded: usize,
    /// Real tokens and tokens after padding, over the embedded batches.
    pub tokens: usize,
    pub padded_tokens: usize,
}

/// Vectors of `texts` (`[n × dim]`, row-major): from the cache where present, else embedded
/// in length-sorted batches. `progress` is called with numbers of texts done.
pub fn embed_texts(
    texts: &[&str],
    tokenizer: &TextTokenizer,
    embedder: &mut dyn Embedder,
    mut cache: Option<&mut Cache>,
    (batch_size, batch_tokens): (usize, usize),
    progress: &(dyn Fn(usize) + Sync),
) -> Result<(Vec<f32>, EmbedStats)> {
    let dim = embedder.dim();
    let hashes: Vec<[u8; 32]> = texts.iter().map(|text| text_hash(text)).collect();
    let mut stats = EmbedStats { texts: texts.len(), ..EmbedStats::default() };
    // One entry per distinct text: index of its first occurrence.
    let mut first: HashMap<[u8; 32], usize> = HashMap::new();
    for (index, hash) in hashes.iter().enumerate() {
        first.entry(*hash).or_insert(index);
    }
    stats.unique = first.len();
    let mut vectors: HashMap<[u8; 32], Vec<f32>> = HashMap::with_capacity(first.len());
    let mut missing: Vec<usize> = Vec::new();
    for (hash, &index) in &first {
        match cache.as_deref().and_then(|cache| cache.get(hash)) {
            Some(vector) if vector.len() == dim => {
                vectors.insert(*hash, vector.clone());
            }
            _ => missing.push(index),
        }
    }
    stats.from_cache = first.len() - missing.len();
    progress(hashes.iter().filter(|hash| vectors.contains_key(*hash)).count());
    missing.sort_unstable();
    let missing_texts: Vec<&str> = missing.iter().map(|&index| texts[index]).collect();
    let ids = tokenizer.encode(&missing_texts)?;
    // Longest first: the slowest batches start first, and each batch pads to little.
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
    let copies: HashMap<[u8; 32], usize> = hashes.iter().fold(HashMap::new(), |mut counts, hash| {
        *counts.entry(*hash).or_default() += 1;
        counts
    });
    let lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
    let chunks = batches(&order, &lengths, batch_size, batch_tokens);
    let batches: Vec<Vec<&[u32]>> =
        chunks.iter().map(|chunk| chunk.iter().map(|&i| ids[i].as_slice()).collect()).collect();
    for batch in &batches {
        let longest = batch.iter().map(|ids| ids.len()).max().unwrap_or(0);
        stats.tokens += batch.iter().map(|ids| ids.len()).sum::<usize>();
        stats.padded_tokens += longest * batch.len();
    }
    let results = embedder.embed_batches(&batches, progress)?;
    for (chunk, flat) in chunks.iter().zip(results) {
        if flat.len() != chunk.len() * dim {
            return Err(Error::input(
                format!("the encoder returned {} values for {} texts of {dim}", flat.len(), chunk.len()),
                "",
            ));
        }
        for (&i, vector) in chunk.iter().zip(flat.chunks(dim)) {
            let hash = hashes[missing[i]];
            if let Some(cache) = cache.as_deref_mut() {
                cache.insert(hash, vector.to_vec());
            }
            vectors.insert(hash, vector.to_vec());
            // Repeats of a text were not counted by the batch that embedded it.
            progress(copies[&hash] - 1);
        }
        stats.embedded += chunk.len();
    }
    let mut out = Vec::with_capacity(texts.len() * dim);
    for hash in &hashes {
        out.extend_from_slice(&vectors[hash]);
    }
    Ok((out, stats))
}

/// `order` (indices of texts sorted longest first) cut into batches of at most `max_rows` texts
/// and, when `max_tokens` is not 0, at most `max_tokens` tokens after padding (rows × the
/// batch's first, longest text); a text longer than `max_tokens` makes a batch of its own.
pub fn batches<'a>(order: &'a [usize], lengths: &[usize], max_rows: usize, max_tokens: usize) -> Vec<&'a [usize]> {
    let max_rows = max_rows.max(1);
    let mut cut = Vec::new();
    let mut rest = order;
    while let Some(&first) = rest.first() {
        let rows = match max_tokens {
            0 => max_rows,
            tokens => (tokens / lengths[first].max(1)).clamp(1, max_rows),
        };
        let (batch, tail) = rest.split_at(rows.min(rest.len()));
        cut.push(batch);
        rest = tail;
    }
    cut
}

/// Write `<out>/<dataset>.parquet` with `query_id`, `text`, `embedding`.
pub fn write_embeddings(table: &ScoredTable, vectors: Vec<f32>, dim: usize, out: &Path) -> Result<PathBuf> {
    let path = crate::io::named_file(out, &table.dataset, ".parquet")?;
    let mut frame = DataFrame::new_infer_height(vec![
        Column::new("query_id".into(), &table.query_ids),
        Column::new("text".into(), &table.texts),
        list_column("embedding", vectors, dim)?,
    ])
    .map_err(Error::polars("building the embeddings table"))?;
    crate::io::write_parquet(&mut frame, &path)?;
    Ok(path)
}

/// Query ids and vectors of an embeddings file written by [`write_embeddings`].
pub fn read_embeddings(path: &Path) -> Result<(Vec<String>, Vec<Vec<f32>>)> {
    let frame = crate::io::read_parquet(path)?;
    let ids = frame.column("query_id").and_then(|c| c.str().cloned());
    let ids = ids.map_err(|_| Error::table(path, "no string column `query_id` (is it an embeddings file?)"))?;
    let ids: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(row, id)| {
            id.map(str::to_owned).ok_or_else(|| Error::table(path, format!("row {row} has no `query_id`")))
        })
        .collect::<Result<_>>()?;
    Ok((ids, list_rows(&frame, "embedding", path)?))
}

#[cfg(test)]
mod tests {
    use super::batches;

    #[test]
    fn batches_cap_rows_and_padded_tokens_and_keep_the_order() {
        // Sorted longest first, as `embed_texts` sorts them.
        let lengths = [512, 300, 300, 100, 100, 100, 100, 20, 20, 20];
        let order: Vec<usize> = (0..lengths.len()).collect();
        let rows_only = batches(&order, &lengths, 4, 0);
        assert_eq!(rows_only, vec![&order[0..4], &order[4..8], &order[8..10]]);
        let by_tokens = batches(&order, &lengths, 4, 600);
        // 512 alone (600 / 512 = 1 row), then 300 × 2, then 100 × 4 (the rows cap), then 20 × 3.
        assert_eq!(by_tokens, vec![&order[0..1], &order[1..3], &order[3..7], &order[7..10]]);
        for batch in &by_tokens {
            assert!(batch.len() * lengths[batch[0]] <= 600);
        }
        // A text longer than the token cap still gets a batch.
        assert_eq!(batches(&order, &lengths, 4, 100)[0], &order[0..1]);
        assert_eq!(batches(&order, &lengths, 4, 100).concat(), order);
    }
}
