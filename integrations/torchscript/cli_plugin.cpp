// libneuronmap_cli_torchscript.so: the `capture` and `layers` verbs, loaded by the CLI on demand so that
// the CLI's other verbs never load LibTorch (see cli_support.hpp).
#include <exception>
#include <string>

#include "cli_support.hpp"
#include "neuronmap/errors.hpp"

namespace {

template <typename Verb>
int run_verb(std::string* out, Verb&& verb) noexcept {
  try {
    *out = verb();
    return 0;
  } catch (const neuronmap::Error& e) {  // the verb's own one-line message
    *out = e.what();
    return 1;
  } catch (const std::exception& e) {  // anything else is an internal error, as in the CLI itself
    *out = e.what();
  } catch (...) {
    *out = "unknown exception";
  }
  return 2;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) int neuronmap_cli_capture_v1(
    const neuronmap::torchscript_cli::CaptureArgs* args, std::string* out) noexcept {
  return run_verb(out, [&] { return neuronmap::torchscript_cli::capture(*args); });
}

extern "C" __attribute__((visibility("default"))) int neuronmap_cli_layers_v1(const std::string* model,
                                                                              const std::string* input,
                                                                              std::string* out) noexcept {
  return run_verb(out, [&] { return neuronmap::torchscript_cli::layers(*model, *input); });
}
