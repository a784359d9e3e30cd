// One forward pass of a TorchScript model through the same probes attach() uses, keeping each layer's
// raw output (what `neuronmap capture` writes), plus the HDF5 reading and writing the verbs need.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/ivalue.h>

#include "probe/sink.hpp"

namespace torch::jit {
struct Module;
}

namespace neuronmap::detail {

/// Keeps a detached clone of every captured output, per probe, in call order.
class RecordingSink final : public CaptureSink {
 public:
  explicit RecordingSink(std::size_t probes) : outputs_(probes) {}
  void on_output(int probe_index, const at::Tensor& output) noexcept override;
  std::vector<std::vector<at::Tensor>> take();

 private:
  std::mutex mutex_;
  std::vector<std::vector<at::Tensor>> outputs_;
};

enum class RunMode { as_saved, eval, train };

struct Capture {
  std::vector<std::string> layers;               ///< as given
  std::vector<std::vector<at::Tensor>> outputs;  ///< per layer, one tensor per call (empty: did not run)
  c10::IValue output;                            ///< what forward returned
  std::uint64_t errors = 0;
  std::string last_error;
};

/// Runs model.forward(inputs) once with probes on `layers`; autograd on or off as asked.
/// Throws LayerNotFound/UnsupportedModule, or UsageError when the forward pass fails.
Capture capture_once(torch::jit::Module& model, const std::vector<std::string>& layers,
                     const std::vector<c10::IValue>& inputs, RunMode mode, bool autograd);

/// Reads a float32 or int64 dataset (any rank). Throws FileError saying what is wrong with the file.
at::Tensor read_h5_tensor(const std::string& path, const std::string& dataset);

/// Writes each tensor as a float32 dataset of its full shape (truncating the file), with an int
/// attribute "calls" where given (>= 0). Throws FileError.
struct H5Item {
  std::string name;
  at::Tensor tensor;
  int calls = -1;
};
void write_h5_tensors(const std::string& path, const std::vector<H5Item>& items);

/// Loads a TorchScript model; FileError with a one-line reason if it cannot.
torch::jit::Module load_script_model(const std::string& path);

}  // namespace neuronmap::detail
