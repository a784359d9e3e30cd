// Helpers of the TorchScript tests: reading Python-saved references, a sink that keeps clones and
// gradients, the BLAS the process runs on, running the CLI.
#pragma once

#include <gtest/gtest.h>

#include <torch/script.h>

#include <dlfcn.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "probe/sink.hpp"

namespace nm_test {

inline std::string data_dir() { return NEURONMAP_TS_DATA_DIR; }
inline std::string oracle_dir() { return std::string(NEURONMAP_SHARED_DIR) + "/oracle/cases/models"; }

inline std::vector<char> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

/// A tensor saved by Python's torch.save(tensor).
inline at::Tensor load_tensor(const std::string& path) { return torch::jit::pickle_load(read_bytes(path)).toTensor(); }

/// A dict saved by Python's torch.save({...}).
inline std::map<std::string, c10::IValue> load_dict(const std::string& path) {
  std::map<std::string, c10::IValue> out;
  for (const auto& item : torch::jit::pickle_load(read_bytes(path)).toGenericDict()) {
    out.emplace(item.key().toStringRef(), item.value());
  }
  return out;
}

/// Whether this process computes with the reference BLAS the Python references were made with
/// (tests/torchscript/CMakeLists.txt pins it when it is installed).
inline bool reference_blas_loaded() {
  // Where the sgemm_ that LibTorch calls resolves to (OpenBLAS exports one too).
  Dl_info info{};
  void* sgemm = dlsym(RTLD_DEFAULT, "sgemm_");
  return sgemm != nullptr && dladdr(sgemm, &info) != 0 && info.dli_fname != nullptr &&
         std::string(info.dli_fname).find("/blas/libblas.so") != std::string::npos;
}

/// Bitwise equal when on the reference BLAS, else within 1e-5 (the references' BLAS differs).
inline ::testing::AssertionResult same_values(const at::Tensor& got, const at::Tensor& want) {
  if (!got.defined() || !want.defined()) return ::testing::AssertionFailure() << "undefined tensor";
  if (got.sizes() != want.sizes()) {
    return ::testing::AssertionFailure() << "shape " << got.sizes() << " vs " << want.sizes();
  }
  if (got.scalar_type() != want.scalar_type()) return ::testing::AssertionFailure() << "dtype differs";
  const double diff = got.numel() == 0 ? 0.0 : (got.to(at::kDouble) - want.to(at::kDouble)).abs().max().item<double>();
  const bool exact = reference_blas_loaded();
  if (exact ? got.equal(want) : diff <= 1e-5) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "max |diff| = " << diff << (exact ? " (bitwise required)" : "");
}

/// Keeps a clone of every output and, matched by storage, the gradient that came back for it.
class RecordingSink final : public neuronmap::detail::CaptureSink {
 public:
  struct Call {
    at::Tensor output;
    at::Tensor grad;
    const void* data = nullptr;
  };
  explicit RecordingSink(std::size_t n) : calls(n) {}
  void on_output(int i, const at::Tensor& t) noexcept override {
    std::lock_guard<std::mutex> lock(mutex);
    calls[static_cast<std::size_t>(i)].push_back({t.detach().clone(), {}, t.data_ptr()});
  }
  void on_gradient(int i, const at::Tensor& output, const at::Tensor& grad) noexcept override {
    std::lock_guard<std::mutex> lock(mutex);
    ++gradients;
    for (auto& c : calls[static_cast<std::size_t>(i)]) {
      if (c.data == output.data_ptr() && !c.grad.defined()) {
        c.grad = grad.clone();
        return;
      }
    }
    ++unmatched_gradients;
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mutex);
    for (auto& c : calls) c.clear();
  }
  std::mutex mutex;
  std::vector<std::vector<Call>> calls;
  int gradients = 0;
  int unmatched_gradients = 0;
};

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

/// Runs a shell command line, optionally on the reference BLAS (preloaded: the CLI also links OpenBLAS,
/// whose sgemm_ would otherwise win).
inline CommandResult run_command(const std::string& command, bool reference_blas = false) {
  std::string line = command + " 2>&1";
#ifdef NEURONMAP_REFERENCE_BLAS
  if (reference_blas) line = "LD_PRELOAD=" NEURONMAP_REFERENCE_BLAS " " + line;
#if defined(__SANITIZE_ADDRESS__)
  // ASan insists that its runtime be the first library, and a preloaded one comes before it. The
  // reference BLAS is uninstrumented and allocates nothing at load time: the check is off for this
  // command only (the CLI's own code stays fully checked).
  if (reference_blas) line = "ASAN_OPTIONS=${ASAN_OPTIONS}:verify_asan_link_order=0 " + line;
#endif
#else
  (void)reference_blas;
#endif
  CommandResult result;
  FILE* pipe = popen(line.c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  std::size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) result.output.append(buffer, n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

inline std::string temp_path(const std::string& name) {
  return std::string(NEURONMAP_TEST_BINARY_DIR) + "/" + name;
}

}  // namespace nm_test
