//! AdamW written out as `torch.optim.AdamW` computes it (decoupled weight decay,
//! bias-corrected moments, ε added after the square root), with its state in tensors so that
//! `last.safetensors` keeps it: tch's own optimizer does not expose its state, and `--resume`
//! must continue exactly where the run stopped. `routerdc-torch adamw` runs it for the parity
//! test against `torch.optim.AdamW`.

use tch::{Device, Kind, Tensor, nn};

use routerdc::error::Result;

pub struct AdamW {
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Steps taken so far (t).
    pub step: i64,
    /// Every trainable variable with its moments and learning rate.
    slots: Vec<Slot>,
    /// Two flat buffers as long as the largest parameter, for a step's intermediate results: a
    /// new 47 MB tensor each (MiniLM's token embeddings) was mapped afresh from the OS, page by
    /// page, at every step.
    scratch: [Tensor; 2],
    /// One pass per parameter on the CPU ([`update`]); off, libtorch's ops (as on a GPU).
    fused: bool,
}

/// A parameter, its first and second moments, and its learning rate (the optimizer's unless
/// [`AdamW::set_learning_rate`] gave it its own, as a torch parameter group does).
struct Slot {
    name: String,
    p: Tensor,
    m: Tensor,
    v: Tensor,
    learning_rate: f64,
}

impl AdamW {
    /// AdamW over the variables of `store` that require gradients, with torch's defaults
    /// β = (0.9, 0.999), ε = 1e-8.
    pub fn new(store: &nn::VarStore, learning_rate: f64, weight_decay: f64) -> AdamW {
        let variables: Vec<(String, Tensor)> =
            store.variables().into_iter().filter(|(_, v)| v.requires_grad()).collect();
        AdamW::over(variables, learning_rate, weight_decay)
    }

    /// AdamW over the given parameters (sorted by name, so the state's order is fixed).
    pub fn over(mut variables: Vec<(String, Tensor)>, learning_rate: f64, weight_decay: f64) -> AdamW {
        variables.sort_by(|a, b| a.0.cmp(&b.0));
        let largest = variables.iter().map(|(_, p)| p.numel()).max().unwrap_or(0) as i64;
        let options = variables.first().map_or((Kind::Float, Device::Cpu), |(_, p)| (p.kind(), p.device()));
        let scratch = [(); 2].map(|()| Tensor::empty([largest], options));
        let slots = variables
            .into_iter()
            .map(|(name, p)| {
                let (m, v) = (p.zeros_like().detach(), p.zeros_like().detach());
                Slot { name, p, m, v, learning_rate }
            })
            .collect();
        AdamW { weight_decay, beta1: 0.9, beta2: 0.999, eps: 1e-8, step: 0, slots, scratch, fused: true }
    }

    /// Give the parameter `name` its own learning rate (torch: a parameter group of its own);
    /// false when no trainable parameter has that name.
    pub fn set_learning_rate(&mut self, name: &str, learning_rate: f64) -> bool {
        let slot = self.slots.iter_mut().find(|slot| slot.name == name);
        slot.map(|slot| slot.learning_rate = learning_rate).is_some()
    }

    pub fn zero_grad(&mut self) {
        for slot in &mut self.slots {
            slot.p.zero_grad();
        }
    }

    /// One update, for every parameter with a gradient:
    ///   θ ← θ (1 − lr λ);  m ← β₁ m + (1 − β₁) g;  v ← β₂ v + (1 − β₂) g²
    ///   θ ← θ − lr / (1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
    pub fn step(&mut self) {
        self.step += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let correction1 = 1.0 - b1.powi(self.step as i32);
        let correction2_sqrt = (1.0 - b2.powi(self.step as i32)).sqrt();
        tch::no_grad(|| {
            for Slot { p, m, v, learning_rate: lr, .. } in &mut self.slots {
                let lr = *lr;
                // The scalars as libtorch casts them for float32 tensors.
                let constants = Constants {
                    decay: (1.0 - lr * self.weight_decay) as f32,
                    weight1: (1.0 - b1) as f32,
                    beta2: b2 as f32,
                    weight2: (1.0 - b2) as f32,
                    correction2_sqrt: correction2_sqrt as f32,
                    eps: self.eps as f32,
                    step_size: (lr / correction1) as f32,
                };
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let shape = p.size();
                let [dense, work] = &self.scratch;
                let view = |buffer: &Tensor| buffer.narrow(0, 0, p.numel() as i64).view(shape.as_slice());
                let (dense, mut work) = (view(dense), view(work));
                // The token embeddings' gradient is sparse (the rows the step's passes used, see
                // `token_embedding`); torch's AdamW updates every row, as a dense one does here.
                let g = if g.is_sparse() {
                    let mut dense = dense;
                    let _ = dense.zero_().g_add_(&g);
                    dense
                } else {
                    g
                };
                if self.fused && [&*p, &g, &*m, &*v].iter().all(|t| on_cpu_f32(t)) {
                    // SAFETY: the four tensors are distinct contiguous float32 CPU tensors of
                    // `p.numel()` elements (a parameter, its gradient or the scratch buffer, and
                    // its two moments), and nothing else reads or writes them during the update:
                    // every worker waits for its next job while the step's thread runs AdamW.
                    unsafe {
                        let n = p.numel();
                        let slice = |t: &Tensor| std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, n);
                        update(slice(p), slice(&g), slice(m), slice(v), &constants);
                    }
                    continue;
                }
                // In place, in the order of torch's single-tensor AdamW (lerp_, addcmul_, then
                // addcdiv_'s m / denom scaled by the step size; tch binds addcdiv_ without its
                // value), the intermediate results in `work`.
                let _ = p.g_mul_scalar_(1.0 - lr * self.weight_decay);
                let _ = m.lerp_(&g, 1.0 - b1);
                let _ = g.mul_scalar_out(&work, 1.0 - b2);
                let _ = v.g_mul_scalar_(b2).addcmul_(&g, &work);
                let _ = v.sqrt_out(&work);
                let _ = work.g_div_scalar_(correction2_sqrt).g_add_scalar_(self.eps);
                let _ = m.div_out(&work, &work);
                let _ = work.g_mul_scalar_(lr / correction1);
                let _ = p.g_sub_(&work);
            }
        });
    }

    /// The moments as named tensors (`optimizer.m.<name>`, `optimizer.v.<name>`).
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut tensors = Vec::with_capacity(2 * self.slots.len());
        for Slot { name, m, v, .. } in &self.slots {
            tensors.push((format!("optimizer.m.{name}"), m.shallow_clone()));
            tensors.push((format!("optimizer.v.{name}"), v.shallow_clone()));
        }
        tensors
    }

    /// Copy the moments back from tensors named as [`AdamW::state_tensors`] names them.
    pub fn load_state<'a>(&mut self, mut saved: impl FnMut(&str) -> Result<&'a Tensor>) -> Result<()> {
        for Slot { name, m, v, .. } in &mut self.slots {
            m.copy_(saved(&format!("optimizer.m.{name}"))?);
            v.copy_(saved(&format!("optimizer.v.{name}"))?);
        }
        Ok(())
    }
}

/// The scalars of one AdamW update, in float32.
#[derive(Clone, Copy)]
struct Constants {
    decay: f32,
    weight1: f32,
    beta2: f32,
    weight2: f32,
    correction2_sqrt: f32,
    eps: f32,
    step_size: f32,
}

fn on_cpu_f32(t: &Tensor) -> bool {
    t.device() == Device::Cpu && t.kind() == Kind::Float && t.is_contiguous() && !t.is_sparse()
}

/// The update of [`AdamW::step`] in one pass over each parameter, its gradient and its moments,
/// the two halves on two threads.
///
/// Why not libtorch's ops: one in-place op per term is eleven passes over 22.7 million floats
/// (MiniLM) a step, while the encoder's workers wait (0.14–0.19 s a step timed by phase,
/// BENCHMARKS.md, "train", against 3.5–4.5 s for the whole step then, with MKL's AVX2 kernels); libtorch's fused
/// AdamW kernel (`_fused_adamw_`) is not bound by tch. The arithmetic is the ops' own, term by
/// term (lerp as libtorch computes it for a weight under ½, `addcmul_` of g and g·(1 − β₂), the
/// square root divided by √(1 − β₂ᵗ), then ε), so the results differ from theirs in rounding
/// alone (libtorch's vector kernels may fuse a multiply and an add, for one).
fn update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: &Constants) {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 16;
    let lerp_small = c.weight1.abs() < 0.5;
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| {
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                let decayed = *p * c.decay;
                *m = if lerp_small { *m + c.weight1 * (g - *m) } else { g - (g - *m) * (1.0 - c.weight1) };
                *v = *v * c.beta2 + g * (g * c.weight2);
                let denom = v.sqrt() / c.correction2_sqrt + c.eps;
                *p = decayed - (*m / denom) * c.step_size;
            }
        });
}

#[cfg(test)]
mod tests {
    use tch::{Kind, Tensor};

    use super::AdamW;

    /// The fused pass and libtorch's ops give the same parameters and moments over three steps.
    #[test]
    fn the_fused_update_equals_the_update_by_ops() {
        let start = Tensor::randn([300, 7], (Kind::Float, tch::Device::Cpu));
        let grads: Vec<Tensor> = (0..3).map(|_| Tensor::randn([300, 7], (Kind::Float, tch::Device::Cpu))).collect();
        let run = |fused: bool| {
            let table = start.copy().set_requires_grad(true);
            let mut optimizer = AdamW::over(vec![("table".into(), table.shallow_clone())], 0.05, 0.01);
            optimizer.fused = fused;
            for grad in &grads {
                optimizer.zero_grad();
                (&table * grad).sum(Kind::Float).backward();
                // The fused pass takes these tensors: otherwise both runs would be the ops'.
                assert!(super::on_cpu_f32(&table) && super::on_cpu_f32(&table.grad()));
                optimizer.step();
            }
            (table.detach(), optimizer.state_tensors())
        };
        let ((fused, fused_state), (ops, ops_state)) = (run(true), run(false));
        assert!(!fused.allclose(&start, 1e-3, 1e-3, false), "AdamW did not move the table");
        assert!(fused.allclose(&ops, 1e-6, 1e-6, false), "{fused} against {ops}");
        for ((name, a), (_, b)) in fused_state.iter().zip(&ops_state) {
            assert!(a.allclose(b, 1e-6, 1e-6, false), "{name}");
        }
    }

    /// Token embeddings get a sparse gradient (the rows a pass used, repeated rows and all); two
    /// steps of AdamW on it move every row as the same gradient made dense does.
    #[test]
    fn a_sparse_gradient_updates_as_its_dense_form() {
        let ids = Tensor::from_slice(&[3i64, 1, 3, 0, 5, 3]);
        let weights = Tensor::from_slice(&[0.5f32, -1.0, 2.0, 0.25, 1.5, -0.75]).view([6, 1]);
        let start = Tensor::randn([7, 4], (Kind::Float, tch::Device::Cpu));
        let run = |sparse: bool| {
            let table = start.copy().set_requires_grad(true);
            let mut optimizer = AdamW::over(vec![("table".into(), table.shallow_clone())], 0.1, 0.01);
            for _ in 0..2 {
                optimizer.zero_grad();
                (Tensor::embedding(&table, &ids, -1, false, sparse) * &weights).sum(Kind::Float).backward();
                assert_eq!(table.grad().is_sparse(), sparse);
                optimizer.step();
            }
            table.detach()
        };
        let (sparse, dense) = (run(true), run(false));
        assert!(sparse.allclose(&dense, 1e-6, 1e-6, false), "{sparse} against {dense}");
        assert!(!sparse.allclose(&start, 1e-3, 1e-3, false), "AdamW did not move the table");
        // Rows 2, 4 and 6 got no gradient: weight decay alone moves them.
        assert!(sparse.get(2).allclose(&(start.get(2) * (1.0 - 0.1 * 0.01) * (1.0 - 0.1 * 0.01)), 1e-6, 1e-6, false));
    }
}
