//! `routerdc embed` on the libtorch side: load the encoder, run it over length-sorted batches
//! in worker threads (the library does the tokenising, caching and files), report speed. The
//! other commands that need vectors (`cluster`, `train --freeze-encoder`, `route`) take them
//! from [`embed_tables`].

use std::time::Instant;

use tch::{Device, Kind};

use routerdc::error::{Error, Result};
use routerdc::hf::{self, Pooling};
use routerdc::stages::embed::{self, Cache, DeviceChoice, EmbedConfig, EmbedStats, Embedder, EncoderOptions, Quantize};
use routerdc::table::LoadedTable;

use routerdc::hf::config::EncoderConfig;
use routerdc::hf::tokenize::{TextTokenizer, TruncationSide};

use crate::torch::model::network::{Encoder, pad_batch};

/// The device `choice` names; asking for CUDA without a GPU is an error.
pub fn device(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Auto => Ok(Device::cuda_if_available()),
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
        DeviceChoice::Cuda => {
            Err(Error::setting("device", "CUDA was asked for but libtorch sees no GPU (`routerdc doctor` tells why)"))
        }
    }
}

/// An [`Encoder`] behind the library's [`Embedder`] interface: worker threads share its weights
/// and each takes the next batch as it finishes one. The weights are read only when a batch is
/// to be embedded, so a run served wholly from the embedding cache never loads them.
pub struct TorchEmbedder {
    pub files: hf::EncoderFiles,
    config: EncoderConfig,
    /// The tokenizer with the length cut to what the encoder's positions allow.
    pub tokenizer: TextTokenizer,
    options: EncoderOptions,
    device: Device,
    /// How many worker threads run the encoder side by side.
    pub worker_count: usize,
    encoder: Option<Encoder>,
    /// Seconds spent loading the weights (0 until a batch needed them).
    pub load_seconds: f64,
}

impl TorchEmbedder {
    /// The encoder in `files`, to run in `worker_count` threads (0 in `options` = one per core,
    /// up to 4; 1 on a GPU), with libtorch's threads shared out among them.
    pub fn new(files: hf::EncoderFiles, options: &EncoderOptions, device: Device) -> Result<TorchEmbedder> {
        let (cpu_workers, threads) = cpu_workers(options.workers);
        let worker_count = if matches!(device, Device::Cuda(_)) { 1 } else { cpu_workers };
        if device == Device::Cpu {
            tch::set_num_threads(threads as i32);
        }
        let config = EncoderConfig::read(&files.config)?;
        let max_length = options.max_length.min(config.max_position_embeddings as usize);
        let tokenizer = TextTokenizer::load(&files, max_length, options.truncation)?;
        Ok(TorchEmbedder {
            files,
            config,
            tokenizer,
            options: options.clone(),
            device,
            worker_count,
            encoder: None,
            load_seconds: 0.0,
        })
    }

    /// Load the weights (once).
    fn load_encoder(&mut self) -> Result<&Encoder> {
        if self.encoder.is_none() {
            let started = Instant::now();
            let mut encoder =
                Encoder::load(self.files.clone(), self.device, self.options.max_length, self.options.truncation)?;
            encoder.quantize(self.options.quantize)?;
            self.load_seconds = started.elapsed().as_secs_f64();
            self.encoder = Some(encoder);
        }
        Ok(self.encoder.as_ref().expect("loaded just above"))
    }

    /// One padded batch's pooled vectors, `[batch × dim]` flat.
    pub fn embed_one(encoder: &Encoder, pooling: Pooling, batch: &[&[u32]]) -> Result<Vec<f32>> {
        let device = encoder.store.device();
        let (ids, mask) = pad_batch(batch, encoder.config.pad_token_id, device);
        let vectors = tch::no_grad(|| encoder.network.embed(&ids, &mask, pooling, false));
        let vectors = vectors.to_kind(Kind::Float).to_device(Device::Cpu).contiguous().view(-1);
        Vec::<f32>::try_from(&vectors).map_err(|source| Error::failed("Failed to read the embeddings back", source))
    }
}

/// Encoder workers on the CPU and libtorch threads for each: `requested` workers (0 = one per
/// core, up to 4), the cores shared out among them (at least one thread each).
pub fn cpu_workers(requested: usize) -> (usize, usize) {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let workers = if requested == 0 { cores.clamp(1, 4) } else { requested };
    (workers, (cores / workers).max(1))
}

/// `work(i)` for every `i < count`, shared out between `workers` scoped threads that each take
/// the next index when free (so items sorted longest first start longest first); the results in
/// index order. After a failure no further item starts. `threads`: the libtorch threads each
/// worker sets for itself (`None` leaves libtorch's setting as it is).
///
/// # Safety
/// `work` runs on several threads at once although it need not be `Sync`: it may only run
/// forward passes without gradients of shared encoder weights, reading them and writing tensors
/// of its own. libtorch's tensors may be read from several threads at once (atomic reference
/// counts; no-grad passes record no autograd state on the weights), as PyTorch's own
/// multi-threaded inference on one module does; int8 packed weights are read-only too.
pub unsafe fn on_workers<T: Send>(
    count: usize,
    workers: usize,
    threads: Option<usize>,
    work: impl Fn(usize) -> Result<T>,
) -> Result<Vec<T>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    struct Shared<F>(F);
    // SAFETY: the caller's promise above.
    unsafe impl<F> Sync for Shared<F> {}
    let (work, next) = (Shared(work), AtomicUsize::new(0));
    let mut done: Vec<Option<Result<T>>> = (0..count).map(|_| None).collect();
    std::thread::scope(|scope| {
        let running: Vec<_> = (0..workers.clamp(1, count.max(1)))
            .map(|_| {
                let (work, next) = (&work, &next);
                scope.spawn(move || {
                    if let Some(threads) = threads {
                        tch::set_num_threads(threads as i32);
                    }
                    let mut results = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        if index >= count {
                            break results;
                        }
                        let result = (work.0)(index);
                        if result.is_err() {
                            // Stop every worker after its current item.
                            next.store(count, Ordering::Relaxed);
                        }
                        results.push((index, result));
                    }
                })
            })
            .collect();
        for handle in running {
            // A worker that panicked is a failure, not an empty result.
            if let Ok(results) = handle.join() {
                results.into_iter().for_each(|(index, result)| done[index] = Some(result));
            }
        }
    });
    done.into_iter()
        .map(|result| result.unwrap_or_else(|| Err(Error::failed("An encoder worker failed", "an item was not run"))))
        .collect()
}

impl Embedder for TorchEmbedder {
    fn dim(&self) -> usize {
        self.config.hidden_size as usize
    }

    fn embed_batches(&mut self, batches: &[Vec<&[u32]>], done: &(dyn Fn(usize) + Sync)) -> Result<Vec<Vec<f32>>> {
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        let (workers, pooling) = (self.worker_count, self.options.pooling);
        let encoder = self.load_encoder()?;
        let embed = |index: usize| {
            let result = Self::embed_one(encoder, pooling, &batches[index]);
            done(batches[index].len());
            result
        };
        // SAFETY: `embed_one` is a forward pass without gradients (`on_workers`'s contract).
        unsafe { on_workers(batches.len(), workers, None, embed) }
    }
}

/// Vectors of every query of every table (`[rows × dim]` per table), the dimension, and counts.
pub fn embed_tables(
    tables: &[LoadedTable],
    options: &EncoderOptions,
    quiet: bool,
) -> Result<(Vec<Vec<f32>>, usize, EmbedStats, f64)> {
    for loaded in tables {
        embed::check_texts(loaded)?;
    }
    let texts: Vec<&str> = tables.iter().flat_map(|loaded| loaded.table.texts.iter().map(String::as_str)).collect();
    let (flat, dim, stats, seconds) = embed_texts(&texts, options, quiet)?;
    let mut per_table = Vec::with_capacity(tables.len());
    let mut at = 0;
    for loaded in tables {
        let rows = loaded.table.n_queries();
        per_table.push(flat[at * dim..(at + rows) * dim].to_vec());
        at += rows;
    }
    Ok((per_table, dim, stats, seconds))
}

/// Vectors of `texts` (`[texts × dim]`, flat), the dimension, counts and the embedding time;
/// the cache and the workers as [`embed_tables`].
pub fn embed_texts(
    texts: &[&str],
    options: &EncoderOptions,
    quiet: bool,
) -> Result<(Vec<f32>, usize, EmbedStats, f64)> {
    let files = hf::resolve(options.encoder.as_deref())?;
    let device = device(options.device)?;
    let mut embedder = TorchEmbedder::new(files, options, device)?;
    let mut cache = if options.no_cache {
        None
    } else {
        Some(Cache::open(&embed::encoder_key(&embedder.files, options, embedder.tokenizer.max_length)?)?)
    };
    for (shard, why) in cache.iter().flat_map(|cache| &cache.skipped) {
        if !quiet {
            eprintln!(
                "note: skipped the unreadable embedding cache shard `{}` ({why}); its vectors are embedded again",
                shard.display()
            );
        }
    }
    let tokenizer = embedder.tokenizer.clone();
    let workers = embedder.worker_count;
    let bar = routerdc::progress::rate_bar(texts.len() as u64, "embed", quiet);
    let started = Instant::now();
    let result = embed::embed_texts(
        texts,
        &tokenizer,
        &mut embedder,
        cache.as_mut(),
        (options.batch_size, options.batch_tokens()),
        &|done| bar.inc(done as u64),
    );
    bar.finish_and_clear();
    // The embedding pass alone: loading the weights (done on the first uncached batch) is not in it.
    let seconds = started.elapsed().as_secs_f64() - embedder.load_seconds;
    let (flat, stats) = result?;
    if let Some(cache) = cache.as_mut() {
        cache.save()?;
    }
    let dim = embedder.dim();
    if !quiet && stats.embedded == 0 {
        eprintln!("{} texts ({} distinct): every vector from the embedding cache", stats.texts, stats.unique);
    } else if !quiet {
        let rate = if seconds > 0.0 { stats.embedded as f64 / seconds } else { 0.0 };
        eprintln!(
            "embedded {} texts ({} distinct, {} from the cache) in {seconds:.1} s, {rate:.1} queries/s on {device:?} \
             ({workers} worker(s)); padding added {:.0}% tokens",
            stats.texts,
            stats.unique,
            stats.from_cache,
            if stats.tokens > 0 { 100.0 * (stats.padded_tokens as f64 / stats.tokens as f64 - 1.0) } else { 0.0 },
        );
    }
    Ok((flat, dim, stats, seconds))
}

pub fn run_embed(config: &EmbedConfig, quiet: bool) -> Result<()> {
    let tables = routerdc::io::read_tables(&config.tables)?;
    let (vectors, dim, _, _) = embed_tables(&tables, &config.encoder, quiet)?;
    // All files are staged and moved into `--out` together.
    let outputs = routerdc::io::Outputs::new(&config.out)?;
    for (loaded, vectors) in tables.iter().zip(vectors) {
        let path = outputs.final_path(&embed::write_embeddings(&loaded.table, vectors, dim, outputs.dir())?);
        if !quiet {
            eprintln!(
                "{:<28} {:>7} queries × {dim} → {}",
                loaded.table.dataset,
                loaded.table.n_queries(),
                path.display()
            );
        }
    }
    outputs.commit()?;
    Ok(())
}

/// `embed`'s settings for an encoder used inside a router: the router's pooling, length and
/// truncation, with the embedding cache and one worker per core.
pub fn router_options(
    encoder: Option<String>,
    pooling: Pooling,
    max_length: usize,
    truncation: TruncationSide,
    batch_size: usize,
    device: DeviceChoice,
) -> EncoderOptions {
    EncoderOptions {
        encoder,
        pooling,
        max_length,
        truncation,
        batch_size,
        batch_tokens: None,
        device,
        workers: 0,
        no_cache: false,
        quantize: Quantize::None,
    }
}

/// `embed`'s settings that give a frozen RouterDC encoder's h: the first token.
pub fn frozen_options(
    encoder: Option<String>,
    max_length: usize,
    truncation: TruncationSide,
    batch_size: usize,
    device: DeviceChoice,
) -> EncoderOptions {
    router_options(encoder, Pooling::First, max_length, truncation, batch_size, device)
}
