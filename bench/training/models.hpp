// The networks and attached variants that bench/training measures (bench_training_step, Google
// Benchmark; bench_paired_step, paired blocks): one definition, so both measure the same steps.
#pragma once

#include <torch/torch.h>

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "analysis/worker_blas.hpp"
#include "neuronmap/neuronmap.hpp"

namespace bench {

struct MlpImpl : torch::nn::Module {
  MlpImpl()
      : fc1(register_module("fc1", torch::nn::Linear(784, 512))),
        fc2(register_module("fc2", torch::nn::Linear(512, 512))),
        fc3(register_module("fc3", torch::nn::Linear(512, 10))) {}
  torch::Tensor forward(const torch::Tensor& x) { return fc3(torch::relu(fc2(torch::relu(fc1(x))))); }
  torch::nn::Linear fc1, fc2, fc3;
};
TORCH_MODULE(Mlp);

struct CnnImpl : torch::nn::Module {
  CnnImpl()
      : conv1(register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 16, 3).padding(1)))),
        conv2(register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(16, 32, 3).padding(1)))),
        fc1(register_module("fc1", torch::nn::Linear(32 * 8 * 8, 128))),
        fc2(register_module("fc2", torch::nn::Linear(128, 10))) {}
  torch::Tensor forward(const torch::Tensor& x) {
    auto h = torch::max_pool2d(torch::relu(conv1(x)), 2);
    h = torch::max_pool2d(torch::relu(conv2(h)), 2);
    return fc2(torch::relu(fc1(h.flatten(1))));
  }
  torch::nn::Conv2d conv1, conv2;
  torch::nn::Linear fc1, fc2;
};
TORCH_MODULE(Cnn);

// pytorch/examples' MNIST network: conv 1->10->20 (5x5), fc 320->50->10, batch 64.
struct MnistImpl : torch::nn::Module {
  MnistImpl()
      : conv1(register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 10, 5)))),
        conv2(register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(10, 20, 5)))),
        fc1(register_module("fc1", torch::nn::Linear(320, 50))),
        fc2(register_module("fc2", torch::nn::Linear(50, 10))) {}
  torch::Tensor forward(const torch::Tensor& x) {
    auto h = torch::relu(torch::max_pool2d(conv1(x), 2));
    h = torch::relu(torch::max_pool2d(conv2(h), 2));
    h = torch::relu(fc1(h.view({-1, 320})));
    return torch::log_softmax(fc2(h), 1);
  }
  torch::nn::Conv2d conv1, conv2;
  torch::nn::Linear fc1, fc2;
};
TORCH_MODULE(Mnist);

enum Mode {
  kPlain = 0,
  kCaptured = 1,
  kUncaptured = 2,
  kCapturedFloat32 = 3,
  kCapturedBudget5 = 4,
  kCapturedOnDevice = 5,  // reduce_on_device(true): the ATen reduction a CUDA output gets, here on the CPU
  kCallbacksOnly = 6,     // max_batches(1): the op callbacks run on every op, but nothing is copied
  kPlainCoRunner = 7,     // not attached; another thread runs the worker's float64 products per step
};

// Options of each attached mode: captured epochs use every(1), the uncaptured one every(1000000)
// (the probes stay switched off); 3 = float32 products, 4 = overhead_budget(0.05), 5 = reduce_on_device,
// 6 = max_batches(1) (the cost of the op callbacks alone: after the first batch nothing is copied).
inline neuronmap::Options mode_options(Mode mode, const std::string& path) {
  auto options = neuronmap::Options{}.every(mode == kUncaptured ? 1000000 : 1).file(path).overwrite(true);
  if (mode == kCapturedFloat32) options.products(neuronmap::Products::float32);
  if (mode == kCapturedBudget5) options.overhead_budget(0.05);
  if (mode == kCapturedOnDevice) options.reduce_on_device(true);
  if (mode == kCallbacksOnly) options.max_batches(1);
  return options;
}

inline const char* mode_label(Mode mode) {
  switch (mode) {
    case kPlain: return "plain";
    case kCaptured: return "attached_captured";
    case kUncaptured: return "attached_uncaptured";
    case kCapturedFloat32: return "attached_captured_float32";
    case kCapturedBudget5: return "attached_captured_budget_0.05";
    case kCapturedOnDevice: return "attached_captured_reduce_on_device";
    case kCallbacksOnly: return "attached_captured_callbacks_only";
    case kPlainCoRunner: return "plain_with_worker_products_beside";
  }
  return "";
}


// What a captured step cannot avoid on a machine whose cores share caches and memory: the workers'
// products running beside the training. Per step, on its own thread and the workers' private BLAS,
// the float64 co-moment products of a batch of `rows` for each width in `widths` (the MLP's: two
// dsyrk of 512 x 128 and one of 10 x 128). The training thread only signals it: no copy, no callback.
class CoRunner {
 public:
  CoRunner(std::vector<std::int64_t> widths, std::int64_t rows) : widths_(std::move(widths)), rows_(rows) {
    for (auto n : widths_) {
      inputs_.emplace_back(static_cast<std::size_t>(n * rows_), 0.5);
      totals_.emplace_back(static_cast<std::size_t>(n * n), 0.0);
    }
    thread_ = std::thread([this] { run(); });
  }
  ~CoRunner() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    changed_.notify_one();
    thread_.join();
  }
  void step() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++requested_;
    }
    changed_.notify_one();
  }

 private:
  void run() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      changed_.wait(lock, [&] { return stop_ || done_ < requested_; });
      if (stop_) return;
      ++done_;
      lock.unlock();
      for (std::size_t i = 0; i < widths_.size(); ++i) {
        neuronmap::detail::worker_blas::syrk_upper_a_at(widths_[i], rows_, 1.0, inputs_[i].data(), widths_[i], 1.0,
                                                       totals_[i].data(), widths_[i]);
      }
      lock.lock();
    }
  }
  std::vector<std::int64_t> widths_;
  std::int64_t rows_;
  std::vector<std::vector<double>> inputs_, totals_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::int64_t requested_ = 0, done_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace bench
