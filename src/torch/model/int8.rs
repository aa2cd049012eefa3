//! int8 dynamic quantization of a Linear layer, for inference: the weights int8 per output
//! channel (symmetric, as PyTorch's `per_channel_dynamic_qconfig`), the activations quantized per
//! call to uint8 with their own range (`reduce_range`, as `quantize_dynamic` does on x86), the
//! product in int32 and the result back in float32. The kernels are libtorch's own
//! (`quantized::linear_prepack` / `quantized::linear_dynamic`: fbgemm on x86), reached through
//! csrc/int8.cpp because tch binds ATen's native functions only.
//!
//!   W_q = round(W / s),  s_o = max_i |W_oi| / 127.5            (per output row o)
//!   y = dequant(quant(x) · W_qᵀ) + b

use std::ffi::{CStr, c_char, c_void};
use std::ptr::NonNull;

use tch::{Kind, Tensor, nn};
use torch_sys::C_tensor;

unsafe extern "C" {
    fn rdc_int8_prepack(
        weight: *const C_tensor,
        scales: *const C_tensor,
        zero_points: *const C_tensor,
        bias: *const C_tensor,
        error: *mut *mut c_char,
    ) -> *mut c_void;
    fn rdc_int8_linear(
        input: *const C_tensor,
        packed: *const c_void,
        reduce_range: bool,
        error: *mut *mut c_char,
    ) -> *mut C_tensor;
    fn rdc_int8_free_packed(packed: *mut c_void);
    fn rdc_int8_free_error(error: *mut c_char);
}

/// A Linear layer's weights packed for libtorch's int8 kernel.
#[derive(Debug)]
pub struct Int8Linear {
    packed: NonNull<c_void>,
}

// The packed weights are read-only after packing; libtorch's `linear_dynamic` takes them as a
// const object and keeps its per-call buffers on the caller's stack, so calls from several
// threads may share them.
unsafe impl Send for Int8Linear {}
unsafe impl Sync for Int8Linear {}

impl Int8Linear {
    /// Quantizes `layer`'s weights per output channel and packs them with its bias.
    pub fn pack(layer: &nn::Linear) -> Result<Int8Linear, String> {
        let weight = layer.ws.detach().to_kind(Kind::Float).contiguous();
        // s_o = max_i |W_oi| / 127.5: the symmetric range of PyTorch's per-channel weight
        // observer, (127 − (−128)) / 2, and its floor, float32's epsilon.
        let scales = tch::no_grad(|| {
            weight
                .abs()
                .amax([1i64].as_slice(), false)
                .to_kind(Kind::Double)
                .divide_scalar(127.5)
                .clamp_min(f64::from(f32::EPSILON))
        });
        let zero_points = scales.zeros_like().to_kind(Kind::Int64);
        let bias = layer.bs.as_ref().map(|bias| bias.detach().to_kind(Kind::Float));
        let mut error = std::ptr::null_mut();
        // Safety: the tensors are alive for the call; the shim copies what it keeps.
        let packed = unsafe {
            rdc_int8_prepack(
                weight.as_ptr(),
                scales.as_ptr(),
                zero_points.as_ptr(),
                bias.as_ref().map_or(std::ptr::null(), |b| b.as_ptr()),
                &mut error,
            )
        };
        NonNull::new(packed).map(|packed| Int8Linear { packed }).ok_or_else(|| take_error(error))
    }

    /// `x Wᵀ + b` through the int8 kernel, for float32 `x` of any leading shape.
    pub fn forward(&self, input: &Tensor) -> Tensor {
        let input = input.contiguous();
        let mut error = std::ptr::null_mut();
        // Safety: `packed` came from `rdc_int8_prepack` and lives as long as `self`; the result is
        // a new heap-allocated at::Tensor, which `Tensor::from_ptr` takes ownership of.
        let output = unsafe { rdc_int8_linear(input.as_ptr(), self.packed.as_ptr(), true, &mut error) };
        if output.is_null() {
            // Shapes and kinds are checked when the layer is packed and by the encoder's own
            // shapes, so a failure here is a libtorch bug, as a failing tch call would be.
            panic!("libtorch's int8 linear failed: {}", take_error(error));
        }
        unsafe { Tensor::from_ptr(output) }
    }
}

impl Drop for Int8Linear {
    fn drop(&mut self) {
        // Safety: made by `rdc_int8_prepack`, freed once.
        unsafe { rdc_int8_free_packed(self.packed.as_ptr()) }
    }
}

fn take_error(error: *mut c_char) -> String {
    if error.is_null() {
        return "unknown error".to_owned();
    }
    // Safety: a NUL-terminated string malloc'd by the shim, freed here once.
    let message = unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned();
    unsafe { rdc_int8_free_error(error) };
    message
}
