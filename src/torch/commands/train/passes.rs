//! The encoder's side of a training step, and of the evaluations: queries in passes of similar
//! lengths, and on a CPU with several cores those passes shared out between worker threads.
//!
//! Why workers: on a CPU, libtorch runs one pass at a time on all cores, and its matrix
//! products and elementwise kernels on small tensors (a pass is at most `--batch-tokens` padded
//! tokens) spend much of their time splitting work and waiting for each other. Workers with one
//! core each run whole passes side by side instead, as `embed` does for inference. A step:
//!
//!   1. each worker encodes its passes (forward, with gradients) and keeps their graphs;
//!   2. the step's thread builds h from detached copies of the passes' rows, computes the losses
//!      and their gradient with respect to those rows (∂L/∂h, a small backward pass);
//!   3. each worker back-propagates its passes' share of ∂L/∂h through its graphs (the backward
//!      of Σ ⟨h_pass, ∂L/∂h_pass⟩), the workers at once. libtorch adds the workers' gradients of
//!      the shared weights under a lock (its autograd supports concurrent backward calls).
//!
//! The passes go to the workers in a fixed order and each pass seeds its dropout masks itself,
//! so a run draws the same masks whatever the number of workers, and a resumed run the same as
//! an uninterrupted one. Gradients differ from one pass at a time only in the order floats are
//! added.

use std::cell::RefCell;
use std::sync::mpsc;

use rand_xoshiro::rand_core::RngCore;
use tch::{Device, Kind, Tensor};

use routerdc::error::{Error, Result};
use routerdc::routing::rng;
use routerdc::stages::embed as stage_embed;

use crate::torch::model::layers::seed_dropout;
use crate::torch::model::network::pad_batch;
use crate::torch::model::router::{Router, encoding_passes, unsort};

/// Keeps the memory that a step frees for the next step, in this process (glibc's malloc only).
///
/// Why: a step allocates and frees the same activations, hundreds of megabytes, in every pass.
/// glibc hands memory above its trim threshold back to the OS when it is freed (for the worker
/// threads' arenas too), and the next pass has it mapped again page by page, each page zeroed
/// by the kernel: in 11 steps of the paper's configuration about 1.3 million page faults. With
/// the thresholds raised (blocks under 32 MiB, the most glibc allows, from the heap; nothing
/// trimmed under 2 GiB) the same run took 0.96 million (`perf stat`, BENCHMARKS.md). The cost
/// is that the process keeps its peak memory until it ends.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's parameters; it is called before the workers start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}

/// The seed of one pass's dropout masks: the step's seed and the pass's index, mixed.
fn pass_seed(step_seed: u64, pass: usize) -> u64 {
    rng::rng(step_seed ^ (pass as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)).next_u64()
}

/// The passes of a training batch: its queries sorted longest first, at most `max_tokens`
/// padded tokens each (0 = one pass, in the batch's order).
fn training_passes(ids: &[&[u32]], max_tokens: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
    let lengths: Vec<usize> = ids.iter().map(|ids| ids.len()).collect();
    let passes = stage_embed::batches(&order, &lengths, ids.len(), max_tokens);
    if passes.len() == 1 {
        // In the batch's own order, so `--batch-tokens 0` computes what one pass always did.
        return vec![(0..ids.len()).collect()];
    }
    passes.iter().map(|pass| pass.to_vec()).collect()
}

/// Which worker runs each pass: the next pass (longest first) to the worker with the fewest
/// padded tokens so far, the first such worker on ties. A fixed rule, so runs repeat.
fn assign(passes: &[Vec<usize>], ids: &[&[u32]], workers: usize) -> Vec<usize> {
    let mut load = vec![0usize; workers];
    passes
        .iter()
        .map(|pass| {
            let tokens = pass.len() * pass.iter().map(|&i| ids[i].len()).max().unwrap_or(0);
            let worker = (0..workers).min_by_key(|&w| load[w]).unwrap_or(0);
            load[worker] += tokens;
            worker
        })
        .collect()
}

enum Job {
    /// Encode these passes (seed, token ids) with gradients; keep their graphs.
    Forward(Vec<(u64, Vec<Vec<u32>>)>),
    /// Back-propagate ∂L/∂h of the kept passes, in their order.
    Backward(Vec<Tensor>),
    /// Encode these passes without gradients, in evaluation mode.
    Encode(Vec<Vec<Vec<u32>>>),
}

struct Worker {
    jobs: mpsc::Sender<Job>,
    /// The passes' h (detached) after `Forward` and `Encode`, nothing after `Backward`.
    replies: mpsc::Receiver<Vec<Tensor>>,
}

/// One router that the workers run at once.
struct Shared<'a>(&'a Router);

// SAFETY: the workers run the router's forward pass (with and without gradients) and the
// backward pass of their own graphs. libtorch supports that from several threads on shared
// weights: reference counts are atomic, a weight's gradient accumulator is created and run
// under a lock, and concurrent backward calls on the CPU run on their calling threads
// (PyTorch's "Autograd mechanics", multithreading). The step's thread reads or changes the
// weights (the losses, AdamW) only while every worker waits for its next job.
unsafe impl Sync for Shared<'_> {}
// SAFETY: as above; each worker holds the shared reference.
unsafe impl Send for Shared<'_> {}

/// Runs the encoder for the training loop: here, or in workers of one core each.
pub struct StepEncoder<'a> {
    router: &'a Router,
    pad: i64,
    device: Device,
    max_tokens: usize,
    workers: Vec<Worker>,
    /// Per worker, the leaves (detached h rows of its passes) of the last forward, for `backward`.
    leaves: RefCell<Vec<Vec<Tensor>>>,
}

impl<'a> StepEncoder<'a> {
    /// `workers` threads (0 or 1: none, every pass on this thread), started in `scope`, each with
    /// `threads` libtorch threads.
    pub fn start<'scope>(
        scope: &'scope std::thread::Scope<'scope, '_>,
        router: &'a Router,
        (pad, device, max_tokens): (i64, Device, usize),
        (workers, threads): (usize, usize),
    ) -> StepEncoder<'a>
    where
        'a: 'scope,
    {
        let workers = if workers < 2 { 0 } else { workers };
        let workers = (0..workers)
            .map(|_| {
                let (jobs, job_queue) = mpsc::channel::<Job>();
                let (reply, replies) = mpsc::channel();
                let shared = Shared(router);
                scope.spawn(move || {
                    let router = &shared;
                    tch::set_num_threads(threads.max(1) as i32);
                    let mut kept: Vec<Tensor> = Vec::new();
                    for job in job_queue {
                        let answer = match job {
                            Job::Forward(passes) => {
                                kept = passes
                                    .iter()
                                    .map(|(seed, ids)| {
                                        seed_dropout(*seed);
                                        let ids: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
                                        let (input, mask) = pad_batch(&ids, pad, device);
                                        router.0.encode(&input, &mask, true)
                                    })
                                    .collect();
                                kept.iter().map(Tensor::detach).collect()
                            }
                            Job::Backward(grads) => {
                                let surrogate = kept
                                    .iter()
                                    .zip(&grads)
                                    .map(|(h, grad)| (h * grad).sum(Kind::Float))
                                    .reduce(|sum, term| sum + term);
                                if let Some(surrogate) = surrogate {
                                    surrogate.backward();
                                }
                                kept.clear();
                                Vec::new()
                            }
                            Job::Encode(passes) => passes
                                .iter()
                                .map(|ids| {
                                    let ids: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
                                    let (input, mask) = pad_batch(&ids, pad, device);
                                    tch::no_grad(|| router.0.encode(&input, &mask, false))
                                })
                                .collect(),
                        };
                        if reply.send(answer).is_err() {
                            break;
                        }
                    }
                });
                Worker { jobs, replies }
            })
            .collect();
        StepEncoder { router, pad, device, max_tokens, workers, leaves: RefCell::new(Vec::new()) }
    }

    /// h of a training batch, `[B, d]`, rows in the batch's order, ready for the losses; call
    /// [`StepEncoder::backward`] after `loss.backward()`. The queries are sorted longest first
    /// and encoded in passes of at most `--batch-tokens` padded tokens, each padded to its own
    /// longest query: the encoder reads each query alone (the mask keeps padding out of
    /// attention), so the passes give the one-pass h, and one long query no longer pads a
    /// batch of short ones to its length.
    pub fn forward(&self, ids: &[&[u32]], step_seed: u64) -> Result<Tensor> {
        let passes = training_passes(ids, self.max_tokens);
        let order: Vec<usize> = passes.concat();
        if self.workers.is_empty() {
            let parts: Vec<Tensor> = passes
                .iter()
                .enumerate()
                .map(|(index, pass)| {
                    seed_dropout(pass_seed(step_seed, index));
                    let pass_ids: Vec<&[u32]> = pass.iter().map(|&i| ids[i]).collect();
                    let (input, mask) = pad_batch(&pass_ids, self.pad, self.device);
                    self.router.encode(&input, &mask, true)
                })
                .collect();
            return Ok(unsort(&Tensor::cat(&parts, 0), &order));
        }
        let owner = assign(&passes, ids, self.workers.len());
        for (w, worker) in self.workers.iter().enumerate() {
            let jobs: Vec<(u64, Vec<Vec<u32>>)> = (0..passes.len())
                .filter(|&p| owner[p] == w)
                .map(|p| (pass_seed(step_seed, p), passes[p].iter().map(|&i| ids[i].to_vec()).collect()))
                .collect();
            worker.jobs.send(Job::Forward(jobs)).map_err(|_| stopped())?;
        }
        let by_worker: Vec<Vec<Tensor>> = self
            .replies()?
            .into_iter()
            .map(|parts| parts.iter().map(|h| h.set_requires_grad(true)).collect())
            .collect();
        let parts = in_pass_order(&owner, &by_worker);
        *self.leaves.borrow_mut() = by_worker;
        Ok(unsort(&Tensor::cat(&parts, 0), &order))
    }

    /// After `loss.backward()`: the workers back-propagate ∂L/∂h through their passes. Nothing
    /// to do when the passes ran here (the loss's backward went through them).
    pub fn backward(&self) -> Result<()> {
        let leaves = std::mem::take(&mut *self.leaves.borrow_mut());
        if leaves.is_empty() {
            return Ok(());
        }
        for (worker, leaves) in self.workers.iter().zip(&leaves) {
            let grads: Vec<Tensor> = leaves
                .iter()
                .map(|leaf| {
                    let grad = leaf.grad();
                    if grad.defined() { grad } else { leaf.zeros_like() }
                })
                .collect();
            worker.jobs.send(Job::Backward(grads)).map_err(|_| stopped())?;
        }
        self.replies().map(drop)
    }

    /// h of every query of `ids` without gradients, evaluation mode, rows in the order of `ids`,
    /// in [`encoding_passes`] of at most 4,096 padded tokens, shared out between the workers when
    /// there are any.
    pub fn encode_all(&self, ids: &[Vec<u32>], batch_size: usize) -> Result<Tensor> {
        if ids.is_empty() {
            let dim = self.router.llm_embeddings.size()[1];
            return Ok(Tensor::zeros([0, dim], (Kind::Float, self.device)));
        }
        if self.workers.is_empty() {
            return Ok(self.router.encode_all(ids, (batch_size, EVALUATION_TOKENS), self.pad, self.device));
        }
        let lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
        let passes = encoding_passes(&lengths, batch_size, EVALUATION_TOKENS);
        let rows: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        let owner = assign(&passes, &rows, self.workers.len());
        for (w, worker) in self.workers.iter().enumerate() {
            let jobs: Vec<Vec<Vec<u32>>> = (0..passes.len())
                .filter(|&p| owner[p] == w)
                .map(|p| passes[p].iter().map(|&i| ids[i].clone()).collect())
                .collect();
            worker.jobs.send(Job::Encode(jobs)).map_err(|_| stopped())?;
        }
        let parts = in_pass_order(&owner, &self.replies()?);
        Ok(unsort(&Tensor::cat(&parts, 0), &passes.concat()))
    }

    /// Every worker's reply to its last job, worker by worker.
    fn replies(&self) -> Result<Vec<Vec<Tensor>>> {
        self.workers.iter().map(|worker| worker.replies.recv().map_err(|_| stopped())).collect()
    }
}

/// The passes' tensors in pass order (`owner[p]` ran pass p; each worker answers its passes in
/// their order).
fn in_pass_order(owner: &[usize], by_worker: &[Vec<Tensor>]) -> Vec<Tensor> {
    let mut next = vec![0usize; by_worker.len()];
    owner
        .iter()
        .map(|&w| {
            next[w] += 1;
            by_worker[w][next[w] - 1].shallow_clone()
        })
        .collect()
}

/// The most padded tokens of an evaluation pass: without a cap, a pass could hold 64 queries of
/// ~500 tokens, and two such passes at once ran slower than one at a time (BENCHMARKS.md).
const EVALUATION_TOKENS: usize = 4096;

fn stopped() -> Error {
    Error::failed("An encoder worker of the training run stopped", "its thread ended (see the message above)")
}

#[cfg(test)]
mod tests {
    use super::{assign, pass_seed, training_passes};
    use crate::torch::model::router::encoding_passes;

    #[test]
    fn passes_sort_longest_first_and_workers_share_the_tokens() {
        let ids: Vec<Vec<u32>> = [3usize, 9, 1, 9, 4, 2].iter().map(|&n| vec![7; n]).collect();
        let rows: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        let passes = training_passes(&rows, 10);
        assert_eq!(passes, vec![vec![1], vec![3], vec![4, 0], vec![5, 2]]);
        // 9, 9, 8 and 4 padded tokens: each pass to the worker with fewer so far (the first on ties).
        assert_eq!(assign(&passes, &rows, 2), vec![0, 1, 0, 1]);
        assert_eq!(assign(&passes, &rows, 3), vec![0, 1, 2, 2]);
        assert_eq!(training_passes(&rows, 0), vec![vec![0, 1, 2, 3, 4, 5]]);
        assert_ne!(pass_seed(5, 0), pass_seed(5, 1));
        assert_ne!(pass_seed(5, 1), pass_seed(6, 0));
    }

    #[test]
    fn encoding_passes_are_capped_by_padded_tokens() {
        // Similar lengths together (at most a quarter of padding), then at most 1,200 padded tokens.
        assert_eq!(encoding_passes(&[600, 10, 590, 580, 10], 64, 1200), vec![vec![0, 2], vec![3], vec![1, 4]]);
        assert_eq!(encoding_passes(&[600, 10, 590, 580, 10], 64, 100_000), vec![vec![0, 2, 3], vec![1, 4]]);
        assert_eq!(encoding_passes(&[600, 10, 590, 580, 10], 64, 0), vec![vec![0, 2, 3], vec![1, 4]]);
        assert_eq!(encoding_passes(&[900], 64, 100), vec![vec![0]]);
    }
}
