//! `routerdc serve` on the libtorch side: the routers behind the service's [`Decide`]. The
//! service itself (HTTP, batching, upstreams) is the library's [`routerdc::serve`].
//!
//! How a batch of texts goes through the encoder on the CPU ([`run_passes`]): texts of the same
//! token length share a pass and no text is padded, so attention never needs a mask. One pass
//! (a single query) runs on this thread on every core, which is the fastest way to answer one
//! query. Several passes are shared out between worker threads of one core each, side by side,
//! as `embed` does: the service's passes are small (a query is about 70 tokens), and on small
//! tensors libtorch loses much of a second core to splitting and waiting (bench/serve).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ndarray::Array2;
use tch::Device;

use routerdc::error::{Error, Result};
use routerdc::hf::tokenize::length_passes;
use routerdc::hf::{self, Pooling, Quantize};
use routerdc::serve::{Decide, RouterInfo, ServeConfig};
use routerdc::stages::embed::DeviceChoice;
use routerdc::stages::train::folder;

use super::embed::{TorchEmbedder, cpu_workers, on_workers};
use super::route::{FolderRouter, folder_encoder, load_folder};
use super::train::checkpoint::{LoadedRouter, load_router};
use crate::torch::model::network::Encoder;

/// Most texts in one encoder pass.
const PASS: usize = 32;

/// A batch's passes: texts of one token length together, longest first, nothing padded.
fn exact_passes(lengths: &[usize]) -> Vec<Vec<usize>> {
    length_passes(lengths, PASS, 0)
}

pub fn run_serve(config: &ServeConfig, quiet: bool) -> Result<()> {
    // oneDNN keeps a compiled primitive per tensor shape, up to 1,024 of them; a service sees
    // every text length, so its memory grew by ~95 MB in 90 s of load and kept growing (bench/
    // serve soak: 520 → 746 MB in 5 minutes). 64 kept the same latency (16 ms for 80 tokens)
    // and grew 21 MB in the same 90 s; 0 was flat but cost 30% latency. A value in the
    // environment wins.
    if std::env::var_os("ONEDNN_PRIMITIVE_CACHE_CAPACITY").is_none() {
        // SAFETY: nothing has started a thread yet (libtorch's pools, the runtime and the
        // batching thread start later), so no other thread reads the environment now.
        unsafe { std::env::set_var("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64") };
    }
    // glibc moves its mmap threshold up to the largest block freed (up to 32 MiB) and its trim
    // threshold with it, and under a service's mix of batch shapes the heap kept growing. A
    // fixed threshold stops both from moving: 32 MiB kept RSS flat at the full throughput
    // (bench/serve); 1 MiB was flat too but cost a fifth of the throughput at concurrency 32
    // (every large tensor a fresh mmap, page-faulted in).
    // glibc's own MALLOC_MMAP_THRESHOLD_ in the environment wins.
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only sets an allocator parameter.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) };
    }
    let loader: routerdc::serve::Loader = Arc::new(|path: &Path, precision: Quantize| load(path, precision));
    routerdc::serve::run(config, loader, quiet)
}

/// `encode` of every pass, in the passes' order: one pass on this thread with every core; more
/// shared out between one-core workers ([`cpu_workers`]), each taking the next pass (longest
/// first) when it is free.
///
/// # Safety
/// As [`on_workers`]: `encode` may only run forward passes without gradients of one encoder
/// (and the router's similarities).
unsafe fn run_passes<T: Send>(passes: &[Vec<usize>], encode: impl Fn(&[usize]) -> Result<T>) -> Result<Vec<T>> {
    thread_local! {
        /// Whether libtorch (and MKL, whose setting is global) is set to every core for this
        /// thread. A thread count set on the main thread does not reach the batching thread
        /// (it scored on one core: 80-token decisions took 24 ms instead of 16.5), and the
        /// workers set one.
        static ON_ALL_CORES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    static CPU: std::sync::OnceLock<(usize, (usize, usize))> = std::sync::OnceLock::new();
    let (cores, (workers, threads)) =
        *CPU.get_or_init(|| (std::thread::available_parallelism().map_or(1, std::num::NonZero::get), cpu_workers(0)));
    if passes.len() < 2 || workers < 2 {
        if !ON_ALL_CORES.get() {
            tch::set_num_threads(cores as i32);
            ON_ALL_CORES.set(true);
        }
        return passes.iter().map(|pass| encode(pass)).collect();
    }
    ON_ALL_CORES.set(false);
    // SAFETY: the caller's promise, passed on.
    unsafe { on_workers(passes.len(), workers, Some(threads), |index| encode(&passes[index])) }
}

/// The router at `path`: a router folder (`router.json`), or a RouterDC checkpoint (a folder
/// holding `best.safetensors`, or the file itself).
fn load(path: &Path, precision: Quantize) -> Result<Box<dyn Decide>> {
    if let Some(dir) = folder::router_folder(path) {
        return Ok(Box::new(FolderDecider::load(dir, precision)?));
    }
    let checkpoint: PathBuf = if path.is_dir() { path.join("best.safetensors") } else { path.to_path_buf() };
    if !checkpoint.is_file() {
        return Err(Error::bad_file(
            path,
            "holds no router: neither `router.json` nor `best.safetensors`",
            "give the folder `routerdc train --out DIR` wrote",
            None,
        ));
    }
    let mut loaded = load_router(&checkpoint, Device::Cpu)?;
    loaded.quantize(precision)?;
    let info = RouterInfo {
        kind: "routerdc".into(),
        models: loaded.sidecar.models.clone(),
        costs: loaded.sidecar.costs.clone(),
        probabilities: true,
        cost_rate: 0.0,
    };
    Ok(Box::new(RouterdcDecider { loaded, info }))
}

/// A RouterDC checkpoint: the softmax of its similarities.
struct RouterdcDecider {
    loaded: LoadedRouter,
    info: RouterInfo,
}

impl Decide for RouterdcDecider {
    fn info(&self) -> &RouterInfo {
        &self.info
    }

    fn scores(&mut self, texts: &[&str]) -> Result<Vec<Vec<f64>>> {
        let ids = self.loaded.tokenizer.encode(texts)?;
        let lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
        let passes = exact_passes(&lengths);
        let loaded = &self.loaded;
        let encode = |pass: &[usize]| {
            let batch: Vec<Vec<u32>> = pass.iter().map(|&i| ids[i].clone()).collect();
            loaded.probabilities_of(&loaded.router.encode_all(&batch, (pass.len(), 0), loaded.pad, loaded.device))
        };
        // SAFETY: `encode_all` runs without gradients, then the router's similarities.
        let probabilities = unsafe { run_passes(&passes, encode) }?;
        let mut scores = vec![Vec::new(); texts.len()];
        for (pass, probabilities) in passes.iter().zip(probabilities) {
            for (&row, probabilities) in pass.iter().zip(probabilities) {
                scores[row] = probabilities;
            }
        }
        Ok(scores)
    }
}

/// A kNN, cluster or MLP router over its encoder's pooled vectors.
struct FolderDecider {
    encoder: Encoder,
    pooling: Pooling,
    router: FolderRouter,
    k: usize,
    info: RouterInfo,
}

impl FolderDecider {
    fn load(dir: &Path, precision: Quantize) -> Result<FolderDecider> {
        let file = folder::read_router_file(dir)?;
        let options = folder_encoder(dir, &file, PASS, DeviceChoice::Cpu)?;
        let files = hf::resolve(options.encoder.as_deref())?;
        let mut encoder = Encoder::load(files, Device::Cpu, options.max_length, options.truncation)?;
        encoder.quantize(precision)?;
        let (router, data_path) = load_folder(dir, &file)?;
        // Checked once: every batch's vectors have the encoder's width.
        router.check_width(encoder.config.hidden_size as usize, &data_path)?;
        let info = RouterInfo {
            kind: file.kind.clone(),
            models: file.models.clone(),
            costs: file.costs.clone(),
            probabilities: false,
            cost_rate: 0.0,
        };
        Ok(FolderDecider { encoder, pooling: options.pooling, router, k: file.k, info })
    }

    /// `[texts × dim]`: the texts in passes of one length.
    fn embed(&self, texts: &[&str]) -> Result<Array2<f32>> {
        let ids = self.encoder.tokenizer.encode(texts)?;
        let dim = self.encoder.config.hidden_size as usize;
        let lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
        let passes = exact_passes(&lengths);
        let (encoder, pooling) = (&self.encoder, self.pooling);
        let embed = |pass: &[usize]| {
            let batch: Vec<&[u32]> = pass.iter().map(|&i| ids[i].as_slice()).collect();
            TorchEmbedder::embed_one(encoder, pooling, &batch)
        };
        // SAFETY: `embed_one` is a forward pass without gradients.
        let flat = unsafe { run_passes(&passes, embed) }?;
        let mut vectors = Array2::<f32>::zeros((texts.len(), dim));
        for (pass, flat) in passes.iter().zip(flat) {
            for (&row, vector) in pass.iter().zip(flat.chunks(dim)) {
                vectors.row_mut(row).assign(&ndarray::ArrayView1::from(vector));
            }
        }
        Ok(vectors)
    }
}

impl Decide for FolderDecider {
    fn info(&self) -> &RouterInfo {
        &self.info
    }

    fn scores(&mut self, texts: &[&str]) -> Result<Vec<Vec<f64>>> {
        self.router.scores(self.embed(texts)?, self.k)
    }
}
