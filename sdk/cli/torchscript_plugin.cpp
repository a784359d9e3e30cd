// The `capture` and `layers` verbs' code lives in a module that links LibTorch
// (libneuronmap_cli_torchscript.so, integrations/torchscript/cli_plugin.cpp); it is loaded here, the first
// time one of them runs. Every other verb starts without loading LibTorch (~1 s and 160 MB less).
#include <dlfcn.h>
#include <unistd.h>

#include <climits>
#include <stdexcept>
#include <string>

#include "cli_support.hpp"
#include "neuronmap/errors.hpp"

namespace neuronmap {
namespace {

std::string executable_dir() {
  char path[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", path, sizeof path - 1);
  if (n <= 0) return ".";
  const std::string exe(path, static_cast<std::size_t>(n));
  const auto slash = exe.rfind('/');
  return slash == std::string::npos ? "." : exe.substr(0, slash);
}

/// The module's handle, loaded once and kept (LibTorch does not support being unloaded).
void* plugin() {
#ifndef NEURONMAP_CLI_TORCHSCRIPT_PLUGIN
  throw Error("this build of neuronmap has no TorchScript support (it was configured without LibTorch's "
              "TorchScript integration)");
#else
  static void* handle = nullptr;
  if (handle != nullptr) return handle;
  // Relative to the executable, the same in the build tree and an installed prefix: ../<libdir>/neuronmap/.
  const std::string path = executable_dir() + "/" + NEURONMAP_CLI_TORCHSCRIPT_PLUGIN;
  handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    throw Error("cannot load the TorchScript verbs (they need LibTorch): " + std::string(why ? why : path));
  }
  return handle;
#endif
}

template <typename Function>
Function* entry(const char* name) {
  ::dlerror();
  void* symbol = ::dlsym(plugin(), name);
  if (symbol == nullptr)
    throw Error(std::string("the TorchScript module is from another neuronmap build (no ") + name +
                "): reinstall neuronmap");
  return reinterpret_cast<Function*>(symbol);
}

std::string result(int status, std::string out) {
  if (status == 1) throw Error(out);
  if (status != 0) throw std::runtime_error(out);
  return out;
}

}  // namespace

std::string torchscript_cli::capture(const CaptureArgs& args) {
  std::string out;
  const int status = entry<decltype(neuronmap_cli_capture_v1)>("neuronmap_cli_capture_v1")(&args, &out);
  return result(status, std::move(out));
}

std::string torchscript_cli::layers(const std::string& model, const std::string& input) {
  std::string out;
  const int status = entry<decltype(neuronmap_cli_layers_v1)>("neuronmap_cli_layers_v1")(&model, &input, &out);
  return result(status, std::move(out));
}

}  // namespace neuronmap
