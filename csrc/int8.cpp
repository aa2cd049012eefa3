// int8 dynamic quantization for the encoder's Linear layers, through libtorch's own operators
// `quantized::linear_prepack` and `quantized::linear_dynamic` (fbgemm on x86: the kernels that
// `torch.ao.quantization.quantize_dynamic` runs). tch's generated bindings cover ATen's native
// functions only, and these operators live in the `quantized` namespace of the dispatcher, so
// this file calls them through the dispatcher, boxed: the packed weights stay an opaque IValue
// and no private header (LinearPackedParamsBase) is needed.
//
// Every function catches C++ exceptions and returns the message as a malloc'd string through
// `error` (freed by the caller with rdc_int8_free_error); nothing throws across the C ABI.

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/ivalue.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <vector>

namespace {

char* copy_message(const char* message) {
  char* copy = static_cast<char*>(std::malloc(std::strlen(message) + 1));
  if (copy != nullptr) {
    std::strcpy(copy, message);
  }
  return copy;
}

c10::OperatorHandle op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
}

// Drops libtorch's warnings while it is installed.
class Silent : public c10::WarningHandler {
 public:
  void process(const c10::Warning&) override {}
};
Silent silent;

}  // namespace

extern "C" {

// Quantizes a float weight `[out, in]` to int8 per output channel with `scales` (double) and
// `zero_points` (int64), and packs it with an optional float bias. Returns an owned handle
// (free with rdc_int8_free_packed), or null.
void* rdc_int8_prepack(const at::Tensor* weight, const at::Tensor* scales, const at::Tensor* zero_points,
                       const at::Tensor* bias, char** error) {
  try {
    // libtorch warns that quantized tensors are deprecated (in favour of torchao, a Python
    // library); the kernels used here are the ones quantize_dynamic runs. Not a user's concern.
    c10::WarningUtils::WarningHandlerGuard quiet(&silent);
    static const c10::OperatorHandle prepack = op("quantized::linear_prepack");
    std::vector<c10::IValue> stack;
    stack.emplace_back(at::quantize_per_channel(*weight, *scales, *zero_points, 0, at::kQInt8));
    if (bias != nullptr) {
      stack.emplace_back(*bias);
    } else {
      stack.emplace_back(c10::IValue());
    }
    prepack.callBoxed(&stack);
    return new c10::IValue(std::move(stack.at(0)));
  } catch (const std::exception& e) {
    *error = copy_message(e.what());
    return nullptr;
  }
}

// `x Wᵀ + b` with the activations quantized per call (per tensor, uint8) and int8 weights.
// Returns an owned at::Tensor (what tch's Tensor::from_ptr takes), or null.
at::Tensor* rdc_int8_linear(const at::Tensor* input, const void* packed, bool reduce_range, char** error) {
  try {
    static const c10::OperatorHandle linear = op("quantized::linear_dynamic");
    std::vector<c10::IValue> stack;
    stack.emplace_back(*input);
    stack.emplace_back(*static_cast<const c10::IValue*>(packed));
    stack.emplace_back(reduce_range);
    linear.callBoxed(&stack);
    return new at::Tensor(stack.at(0).toTensor());
  } catch (const std::exception& e) {
    *error = copy_message(e.what());
    return nullptr;
  }
}

void rdc_int8_free_packed(void* packed) {
  delete static_cast<c10::IValue*>(packed);
}

void rdc_int8_free_error(char* error) {
  std::free(error);
}

}  // extern "C"
