// The thread's attention span: see attention_span.hpp. Compiled with NDEBUG (sdk/CMakeLists.txt), like
// op_callback.cpp: RecordFunction's debug assertions do not hold against the Release-built LibTorch.
#include "probe/attention_span.hpp"

#include <ATen/record_function.h>
#include <torch/torch.h>

#include <cstring>

namespace neuronmap::detail {
namespace {

struct Span {
  int heads = 0;
  int depth = 0;  // nesting of FUNCTION-scope ops; the module's own ops are at depth 0
  bool taking = false;
  bool taken = false;
  std::string fused;
  TakeAttention take;
  at::CallbackHandle handle = 0;
};
thread_local Span t_span;

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  if (t_span.depth++ != 0 || t_span.taken) return nullptr;
  if (std::strcmp(fn.name(), "aten::softmax") == 0) {
    t_span.taking = true;
  } else if (fused_attention_op(fn.name())) {
    t_span.fused = fn.name();
  }
  return nullptr;
}

void on_end(const at::RecordFunction& fn, at::ObserverContext* /*ctx*/) {
  if (--t_span.depth > 0 || !t_span.taking) return;
  t_span.depth = 0;
  t_span.taking = false;
  t_span.taken = true;
  const auto& outputs = fn.outputs();
  if (outputs.empty() || !outputs[0].isTensor() || !t_span.take) return;
  const at::Tensor& softmax = outputs[0].toTensor();
  const int heads = t_span.heads;
  if (softmax.dim() != 3 || softmax.size(0) % heads != 0) return;
  at::RecordFunctionGuard no_recording(false);
  try {
    t_span.take(softmax.detach().view({softmax.size(0) / heads, heads, softmax.size(1), softmax.size(2)}));
  } catch (...) {
    // TakeAttention must not throw; nothing here may reach the training step.
  }
}

}  // namespace

bool fused_attention_op(const char* op) noexcept {
  return std::strstr(op, "multi_head_attention") != nullptr || std::strstr(op, "aten::_transformer_") != nullptr ||
         std::strstr(op, "scaled_dot_product") != nullptr;
}

void begin_attention_span(int heads, TakeAttention take) {
  end_attention_span();
  Span span;
  span.heads = heads;
  span.take = std::move(take);
  span.handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback(&on_start, &on_end).needsOutputs(true).scopes({at::RecordScope::FUNCTION}));
  t_span = std::move(span);
}

std::string end_attention_span() noexcept {
  if (t_span.handle == 0) return {};
  at::removeCallback(t_span.handle);
  std::string fused = t_span.taken ? std::string() : std::move(t_span.fused);
  t_span = Span{};
  return fused;
}

}  // namespace neuronmap::detail
