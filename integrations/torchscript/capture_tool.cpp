// `neuronmap capture` and `neuronmap layers`: one probed forward pass, HDF5 in and out.
#include "capture_tool.hpp"

#include <filesystem>

#include <fmt/format.h>
#include <hdf5.h>
#include <torch/script.h>

#include "cli_support.hpp"
#include "neuronmap/errors.hpp"
#include "neuronmap/torchscript.hpp"
#include "store/h5.hpp"
#include "script_probes.hpp"

namespace neuronmap::detail {

using h5::Handle;

namespace {

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

// HDF5 prints its error stack by default; we report errors ourselves.
class H5ErrorsOff {
 public:
  H5ErrorsOff() {
    H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  ~H5ErrorsOff() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }
  H5ErrorsOff(const H5ErrorsOff&) = delete;
  H5ErrorsOff& operator=(const H5ErrorsOff&) = delete;

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
};

}  // namespace

void RecordingSink::on_output(int probe_index, const at::Tensor& output) noexcept {
  try {
    at::NoGradGuard no_grad;
    at::Tensor copy = output.detach().clone();
    std::lock_guard<std::mutex> lock(mutex_);
    outputs_.at(static_cast<std::size_t>(probe_index)).push_back(std::move(copy));
  } catch (...) {
  }
}

std::vector<std::vector<at::Tensor>> RecordingSink::take() {
  std::lock_guard<std::mutex> lock(mutex_);
  auto out = std::move(outputs_);
  outputs_.assign(out.size(), {});
  return out;
}

Capture capture_once(torch::jit::Module& model, const std::vector<std::string>& layers,
                     const std::vector<c10::IValue>& inputs, RunMode mode, bool autograd) {
  if (mode == RunMode::eval) model.eval();
  if (mode == RunMode::train) model.train();
  auto sink = std::make_shared<RecordingSink>(layers.size());
  Capture capture;
  capture.layers = layers;
  {
    // What forward hooks see: an attention module's output 0, not its per-head weights.
    ScriptProbes probes(model, layers, sink, /*gradients=*/false, /*attention_weights=*/false);
    probes.enable(true);
    try {
      torch::AutoGradMode grad_mode(autograd);
      capture.output = model.forward(inputs);
    } catch (const std::exception& e) {
      throw UsageError("the model failed on the input: " + first_line(e.what()));
    }
    capture.errors = probes.errors();
    capture.last_error = probes.last_error();
  }
  capture.outputs = sink->take();
  return capture;
}

at::Tensor read_h5_tensor(const std::string& path, const std::string& dataset) {
  H5ErrorsOff quiet;
  if (!std::filesystem::is_regular_file(path)) throw FileError(fmt::format("input file '{}' does not exist", path));
  if (H5Fis_hdf5(path.c_str()) <= 0) throw FileError(fmt::format("'{}' is not an HDF5 file", path));
  Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!file.valid()) throw FileError(fmt::format("cannot open '{}' (damaged or locked HDF5 file)", path));
  if (H5Lexists(file.get(), dataset.c_str(), H5P_DEFAULT) <= 0) {
    throw FileError(fmt::format("'{}' has no dataset {}", path, dataset));
  }
  Handle data(H5Dopen2(file.get(), dataset.c_str(), H5P_DEFAULT), H5Dclose);
  if (!data.valid()) throw FileError(fmt::format("{} in '{}' is not a dataset", dataset, path));
  Handle space(H5Dget_space(data.get()), H5Sclose);
  Handle type(H5Dget_type(data.get()), H5Tclose);
  const int rank = space.valid() ? H5Sget_simple_extent_ndims(space.get()) : -1;
  if (rank < 0 || !type.valid()) throw FileError(fmt::format("cannot read the shape of {} in '{}'", dataset, path));
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  if (rank > 0) H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  std::vector<std::int64_t> shape(dims.begin(), dims.end());
  const H5T_class_t type_class = H5Tget_class(type.get());
  const std::size_t size = H5Tget_size(type.get());
  at::ScalarType scalar;
  hid_t memory_type;
  if (type_class == H5T_FLOAT && size == 4) {
    scalar = at::kFloat;
    memory_type = H5T_NATIVE_FLOAT;
  } else if (type_class == H5T_INTEGER && size == 8 && H5Tget_sign(type.get()) == H5T_SGN_2) {
    scalar = at::kLong;
    memory_type = H5T_NATIVE_INT64;
  } else {
    throw FileError(fmt::format("{} in '{}' is a {}-byte {}: use float32 or int64", dataset, path, size,
                                type_class == H5T_FLOAT     ? "float"
                                : type_class == H5T_INTEGER ? "integer"
                                                            : "non-numeric type"));
  }
  at::Tensor tensor = at::empty(shape, at::TensorOptions().dtype(scalar));
  if (tensor.numel() > 0 &&
      H5Dread(data.get(), memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, tensor.data_ptr()) < 0) {
    throw FileError(fmt::format("cannot read {} from '{}' (truncated or damaged file?)", dataset, path));
  }
  return tensor;
}

void write_h5_tensors(const std::string& path, const std::vector<H5Item>& items) {
  H5ErrorsOff quiet;
  Handle file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
  if (!file.valid()) throw FileError(fmt::format("cannot create '{}'", path));
  for (const auto& item : items) {
    at::Tensor t = item.tensor.detach();
    if (t.is_complex()) t = at::real(t);
    t = t.to(at::kCPU, at::kFloat).contiguous();
    std::vector<hsize_t> dims(t.sizes().begin(), t.sizes().end());
    Handle space(dims.empty() ? H5Screate(H5S_SCALAR)
                            : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
               H5Sclose);
    Handle data(H5Dcreate2(file.get(), item.name.c_str(), H5T_IEEE_F32LE, space.get(), H5P_DEFAULT, H5P_DEFAULT,
                         H5P_DEFAULT),
              H5Dclose);
    if (!space.valid() || !data.valid()) throw FileError(fmt::format("cannot create dataset '{}' in '{}'", item.name, path));
    if (t.numel() > 0 && H5Dwrite(data.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()) < 0) {
      throw FileError(fmt::format("cannot write dataset '{}' to '{}' (disk full?)", item.name, path));
    }
    if (item.calls >= 0) {
      Handle attr_space(H5Screate(H5S_SCALAR), H5Sclose);
      Handle attr(H5Acreate2(data.get(), "calls", H5T_STD_I32LE, attr_space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
      if (!attr.valid() || H5Awrite(attr.get(), H5T_NATIVE_INT, &item.calls) < 0) {
        throw FileError(fmt::format("cannot write attribute 'calls' of '{}' in '{}'", item.name, path));
      }
    }
  }
  if (H5Fflush(file.get(), H5F_SCOPE_GLOBAL) < 0) throw FileError(fmt::format("cannot write '{}' (disk full?)", path));
}

torch::jit::Module load_script_model(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) throw FileError(fmt::format("model file '{}' does not exist", path));
  try {
    return torch::jit::load(path);
  } catch (const std::exception& e) {
    throw FileError(fmt::format("cannot load TorchScript model '{}': {}", path, first_line(e.what())));
  }
}

}  // namespace neuronmap::detail

namespace neuronmap::torchscript_cli {
namespace {

std::string shape_text(const std::vector<std::int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

std::string short_type(const std::string& type) {
  const auto dot = type.rfind('.');
  return dot == std::string::npos ? type : type.substr(dot + 1);
}

}  // namespace

std::string capture(const CaptureArgs& args) {
  if (args.eval && args.train) throw UsageError("capture: give --eval or --train, not both");
  if (args.layers.empty()) throw UsageError("capture: --layers needs at least one layer name");
  for (const auto& layer : args.layers) {
    if (layer == "output") {
      throw UsageError("capture: a layer named 'output' would collide with the model output dataset /output");
    }
  }
  torch::jit::Module model = detail::load_script_model(args.model);
  const at::Tensor input = detail::read_h5_tensor(args.input, "/input");
  const auto mode = args.eval ? detail::RunMode::eval : args.train ? detail::RunMode::train : detail::RunMode::as_saved;
  const detail::Capture result = detail::capture_once(model, args.layers, {input}, mode, args.autograd);

  std::vector<detail::H5Item> items;
  std::string summary;
  for (std::size_t i = 0; i < result.layers.size(); ++i) {
    const auto& calls = result.outputs[i];
    if (calls.empty()) {
      summary += fmt::format("{}: did not run (not written)\n", result.layers[i]);
      continue;
    }
    items.push_back({result.layers[i], calls.front(), static_cast<int>(calls.size())});
    summary += fmt::format("{}: {}{}\n", result.layers[i], shape_text(calls.front().sizes().vec()),
                           calls.size() > 1 ? fmt::format(" (ran {} times; the first call is written)", calls.size())
                                            : "");
  }
  const c10::IValue& out = result.output;
  const c10::IValue* first = &out;
  if (out.isTuple() && !out.toTupleRef().elements().empty()) first = &out.toTupleRef().elements()[0];
  if (out.isList() && !out.toListRef().empty()) first = &out.toListRef()[0];
  if (first->isTensor()) {
    items.push_back({"output", first->toTensor(), -1});
    summary += fmt::format("output: {}\n", shape_text(first->toTensor().sizes().vec()));
  } else {
    summary += fmt::format("output: {} (not a tensor, not written)\n", out.tagKind());
  }
  if (result.errors > 0) summary += fmt::format("probe errors: {} (last: {})\n", result.errors, result.last_error);
  detail::write_h5_tensors(args.out, items);
  summary += fmt::format("wrote {} datasets to {} ({}, autograd {})\n", items.size(), args.out,
                         args.eval ? "eval" : args.train ? "train" : "mode as saved", args.autograd ? "on" : "off");
  return summary;
}

std::string layers(const std::string& model_path, const std::string& input_path) {
  torch::jit::Module model = detail::load_script_model(model_path);
  std::vector<LayerDescription> rows;
  if (input_path.empty()) {
    rows = neuronmap::layers(model);
  } else {
    rows = neuronmap::layers(model, detail::read_h5_tensor(input_path, "/input"));
  }
  std::size_t name_width = 4, type_width = 4;
  for (const auto& r : rows) {
    name_width = std::max(name_width, r.name.size());
    type_width = std::max(type_width, short_type(r.module_type).size());
  }
  const bool shapes = !input_path.empty();
  std::string out = fmt::format("{:<{}}  {:<{}}  {:>10}  {:<14}  {}\n", "name", name_width, "type", type_width,
                                "params", "layout", shapes ? "output -> samples x neurons" : "neurons");
  for (const auto& r : rows) {
    const std::string tail = r.probeable ? r.neurons : "not probeable: never called by the model's compiled code";
    out += fmt::format("{:<{}}  {:<{}}  {:>10}  {:<14}  {}\n", r.name, name_width, short_type(r.module_type),
                       type_width, r.parameter_count, r.probeable ? to_string(r.layout) : "-", tail);
  }
  return out;
}

}  // namespace neuronmap::torchscript_cli
