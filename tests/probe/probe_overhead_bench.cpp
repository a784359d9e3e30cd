// Measures what probes cost per op: none installed, installed but disabled, enabled, and capturing.
#include <ATen/record_function.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>

#include "probe/call_site.hpp"
#include "probe/module_probes.hpp"

namespace {

struct NullSink : neuronmap::detail::CaptureSink {
  void on_output(int, const at::Tensor&) noexcept override {}
};

// Nanoseconds per call of `f`, best of a few rounds.
template <class F>
double ns_per_call(F&& f, int calls) {
  double best = 1e30;
  for (int round = 0; round < 5; ++round) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i) f();
    const std::chrono::duration<double, std::nano> took = std::chrono::steady_clock::now() - start;
    best = std::min(best, took.count() / calls);
  }
  return best;
}

std::unique_ptr<at::ObserverContext> empty_start(const at::RecordFunction&) { return nullptr; }
void empty_end(const at::RecordFunction&, at::ObserverContext*) {}

// A ReLU member registered first: found by its type, so every outermost relu walks the stack.
struct ReluFirst : torch::nn::Module {
  torch::nn::ReLU act{nullptr};
  torch::nn::Linear fc{nullptr};
  ReluFirst() {
    act = register_module("act", torch::nn::ReLU());
    fc = register_module("fc", torch::nn::Linear(4, 4));
  }
};

// Runs `f` below `frames` more stack frames, as a training loop's op is: a functional relu's walk
// then goes the whole kCallSiteMaxFrames deep instead of ending at main.
template <class F>
__attribute__((noinline)) void nested(int frames, F& f) {
  if (frames == 0) {
    f();
  } else {
    nested(frames - 1, f);
  }
  asm volatile("" ::: "memory");  // no tail call: every level keeps its frame
}

}  // namespace

int main() {
  at::set_num_threads(1);
  torch::NoGradGuard no_grad;
  auto a = torch::ones({4});
  auto b = torch::ones({4});
  auto model = torch::nn::Sequential(torch::nn::Linear(64, 64), torch::nn::ReLU(), torch::nn::Linear(64, 10));
  auto x = torch::randn({32, 64});
  constexpr int kOps = 200000;
  constexpr int kSteps = 5000;
  auto op = [&] { return torch::add(a, b); };
  auto step = [&] { return model->forward(x); };

  const double op_plain = ns_per_call(op, kOps);
  const double step_plain = ns_per_call(step, kSteps);
  // RecordFunction's own price for a callback that wants inputs and outputs, whoever installs it.
  auto empty = at::addGlobalCallback(at::RecordFunctionCallback(&empty_start, &empty_end)
                                         .needsInputs(true)
                                         .needsOutputs(true)
                                         .scopes({at::RecordScope::FUNCTION}));
  const double op_empty = ns_per_call(op, kOps);
  const double step_empty = ns_per_call(step, kSteps);
  at::removeCallback(empty);
  auto sink = std::make_shared<NullSink>();
  neuronmap::detail::ModuleProbes probes(*model, {"0", "1", "2"}, sink);
  const double op_disabled = ns_per_call(op, kOps);
  const double step_disabled = ns_per_call(step, kSteps);
  probes.enable(true);
  const double op_enabled = ns_per_call(op, kOps);
  const double step_enabled = ns_per_call(step, kSteps);

  std::printf("tiny op (add of 4 floats): plain %.0f ns; empty callback +%.0f ns; probes disabled +%.0f ns, "
              "enabled (no match) +%.0f ns\n",
              op_plain, op_empty - op_plain, op_disabled - op_plain, op_enabled - op_plain);
  std::printf("MLP forward 32x64-64-10: plain %.2f us; empty callback +%.2f us; probes disabled +%.2f us, "
              "capturing 3 probes (null sink) +%.2f us\n",
              step_plain / 1e3, (step_empty - step_plain) / 1e3, (step_disabled - step_plain) / 1e3,
              (step_enabled - step_plain) / 1e3);

  // The stack walk of a parameter-free member found by its type, on each op of its kind.
  probes.enable(false);
  auto relu = [&] { return torch::relu(a); };
  auto relu_deep = [&] { nested(40, relu); };
  const double relu_plain = ns_per_call(relu, kOps);
  const double relu_deep_plain = ns_per_call(relu_deep, kOps);
  probes.enable(true);  // relu is tracked by chaining ("1"): no walk, callback only
  const double relu_chained = ns_per_call(relu, kOps);
  const double relu_deep_chained = ns_per_call(relu_deep, kOps);
  probes.enable(false);
  ReluFirst by_type_model;
  neuronmap::detail::ModuleProbes by_type(by_type_model, {"act"}, sink);
  by_type.enable(true);
  const double relu_walked = ns_per_call(relu, kOps);
  const double relu_deep_walked = ns_per_call(relu_deep, kOps);
  auto member = [&] { return by_type_model.act(a); };
  const double member_captured = ns_per_call(member, kOps);
  by_type.enable(false);
  const double member_plain = ns_per_call(member, kOps);
  std::printf("functional relu of 4 floats, a ReLU member found by type probed: plain %.0f ns; with the stack "
              "walk +%.0f ns (main's stack) / +%.0f ns (%d frames deep: walks all %d frames); probes without a "
              "by-type module +%.0f / +%.0f ns\n",
              relu_plain, relu_walked - relu_plain, relu_deep_walked - relu_deep_plain, 40,
              neuronmap::detail::kCallSiteMaxFrames, relu_chained - relu_plain, relu_deep_chained - relu_deep_plain);
  std::printf("the member's own relu: plain %.0f ns; walk until its forward + capture (null sink) +%.0f ns\n",
              member_plain, member_captured - member_plain);
  return 0;
}
