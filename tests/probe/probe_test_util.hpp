// What the probe tests share: a sink that keeps every capture, the autograd modes every capture must
// survive, and struct models that record what each member returned, to compare with the captures.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "probe/module_probes.hpp"

namespace neuronmap::test {

namespace nm = neuronmap::detail;
namespace nn = torch::nn;

class RecordingSink : public nm::CaptureSink {
 public:
  void on_output(int probe, const at::Tensor& output) noexcept override {
    std::lock_guard<std::mutex> lock(mutex_);
    captures_[probe].push_back(output.detach().clone());
    threads_.insert(std::this_thread::get_id());
  }
  std::vector<at::Tensor> take(int probe) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto out = std::move(captures_[probe]);
    captures_.erase(probe);
    return out;
  }
  std::size_t total() {
    std::lock_guard<std::mutex> lock(mutex_);
    std::size_t n = 0;
    for (const auto& c : captures_) n += c.second.size();
    return n;
  }
  std::size_t thread_count() {
    std::lock_guard<std::mutex> lock(mutex_);
    return threads_.size();
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    captures_.clear();
    threads_.clear();
  }

 private:
  std::mutex mutex_;
  std::map<int, std::vector<at::Tensor>> captures_;
  std::set<std::thread::id> threads_;
};

enum class Mode { train_grad, train_no_grad, train_inference, eval_grad, eval_inference };
inline const Mode kModes[] = {Mode::train_grad, Mode::train_no_grad, Mode::train_inference, Mode::eval_grad,
                       Mode::eval_inference};

inline const char* mode_name(Mode m) {
  switch (m) {
    case Mode::train_grad: return "train + autograd";
    case Mode::train_no_grad: return "train + NoGradGuard";
    case Mode::train_inference: return "train + InferenceMode";
    case Mode::eval_grad: return "eval + autograd";
    case Mode::eval_inference: return "eval + InferenceMode";
  }
  return "?";
}
inline bool with_grad(Mode m) { return m == Mode::train_grad || m == Mode::eval_grad; }
inline bool training(Mode m) { return m == Mode::train_grad || m == Mode::train_no_grad || m == Mode::train_inference; }

// Runs `body` once per mode, with the model's train flag and the autograd guard of that mode.
inline void for_each_mode(nn::Module& model, const std::function<void(Mode)>& body) {
  for (Mode mode : kModes) {
    SCOPED_TRACE(mode_name(mode));
    model.train(training(mode));
    if (mode == Mode::train_inference || mode == Mode::eval_inference) {
      c10::InferenceMode guard;
      body(mode);
    } else if (mode == Mode::train_no_grad) {
      torch::NoGradGuard guard;
      body(mode);
    } else {
      body(mode);
    }
  }
}

inline void expect_same(const std::vector<at::Tensor>& got, const std::vector<at::Tensor>& want,
                        const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what << ": number of captures";
  for (std::size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].sizes(), want[i].sizes()) << what << " call " << i;
    EXPECT_TRUE(torch::equal(got[i], want[i])) << what << " call " << i << ": captured differs from forward's output";
  }
}

// Backward through whatever came out, and check that gradients reached the parameters.
inline void backward_and_check(nn::Module& model, const at::Tensor& out) {
  out.sum().backward();
  bool any_grad = false;
  for (const auto& p : model.parameters()) any_grad |= p.grad().defined();
  EXPECT_TRUE(any_grad);
  for (auto& p : model.parameters()) {
    if (p.grad().defined()) p.mutable_grad().zero_();
  }
}

// Base for struct models whose forward records what each member returned.
struct Recorder : nn::Module {
  std::map<std::string, std::vector<at::Tensor>> seen;
  at::Tensor keep(const std::string& name, at::Tensor t) {
    seen[name].push_back(t);
    return t;
  }
};

// Probes `names` on a struct model and compares, in every mode, what they captured with what the
// model's forward recorded for the same names in the same pass.
template <class Model>
void check_struct_model(const std::shared_ptr<Model>& model, const std::vector<std::string>& names,
                        const std::function<at::Tensor(Model&)>& forward) {
  auto sink = std::make_shared<RecordingSink>();
  nm::ModuleProbes probes(*model, names, sink);
  probes.enable(true);
  for_each_mode(*model, [&](Mode mode) {
    model->seen.clear();
    sink->clear();
    at::Tensor out = forward(*model);
    for (std::size_t i = 0; i < names.size(); ++i) {
      ASSERT_FALSE(model->seen[names[i]].empty()) << names[i];
      expect_same(sink->take(static_cast<int>(i)), model->seen[names[i]], names[i]);
    }
    if (with_grad(mode)) backward_and_check(*model, out);
  });
  EXPECT_EQ(probes.errors(), 0u) << probes.last_error();
}

// pytorch/examples' C++ MNIST network: a Dropout2d member called from the model's own forward. With
// kDropFirst the member is registered before conv1 (so it is found by its type, not after conv2), and
// a functional dropout2d (the same aten::feature_dropout) runs on another tensor beside it.
template <bool kDropFirst>
struct MnistNet : Recorder {
  nn::Conv2d conv1{nullptr}, conv2{nullptr};
  nn::Dropout2d conv2_drop{nullptr};
  nn::Linear fc1{nullptr}, fc2{nullptr};
  MnistNet() {
    if (kDropFirst) conv2_drop = register_module("conv2_drop", nn::Dropout2d());
    conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(1, 10, /*kernel_size=*/5)));
    conv2 = register_module("conv2", nn::Conv2d(nn::Conv2dOptions(10, 20, /*kernel_size=*/5)));
    if (!kDropFirst) conv2_drop = register_module("conv2_drop", nn::Dropout2d());
    fc1 = register_module("fc1", nn::Linear(320, 50));
    fc2 = register_module("fc2", nn::Linear(50, 10));
  }
  at::Tensor forward(at::Tensor x) {
    x = torch::relu(torch::max_pool2d(conv1->forward(x), 2));
    if (kDropFirst) {
      x = torch::nn::functional::dropout2d(
          x, torch::nn::functional::Dropout2dFuncOptions().p(0.2).training(is_training()));
    }
    x = torch::relu(torch::max_pool2d(keep("conv2_drop", conv2_drop->forward(conv2->forward(x))), 2));
    x = x.view({-1, 320});
    x = torch::relu(fc1->forward(x));
    x = torch::dropout(x, /*p=*/0.5, /*train=*/is_training());
    x = fc2->forward(x);
    return torch::log_softmax(x, /*dim=*/1);
  }
};

}  // namespace neuronmap::test
