// What a TorchScript model's compiled graphs say before anything is rewritten: its submodules, the
// prim::CallMethod nodes that run each one's forward, and how each one's output is laid out.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/ir/ir.h>

#include "neuronmap/layers.hpp"  // LayerLayout

namespace neuronmap::detail {

/// The ops the probes insert after a call (registered in script_probes.cpp): neuronmap::capture
/// returns the output it is given, neuronmap::observe returns nothing.
const c10::Symbol& capture_symbol();
const c10::Symbol& observe_symbol();

/// "forward", or "forward__N" (e.g. a scripted nn.LSTM's overloads).
bool is_forward_name(const std::string& name);

/// "a.b" from "a" and "b"; either may be empty.
std::string join_path(const std::string& a, const std::string& b);

/// One call of a submodule's forward, in the graph of a method of the module that makes it.
struct CallSite {
  std::shared_ptr<torch::jit::Graph> graph;
  torch::jit::Node* call = nullptr;
  std::string owner;   ///< instance path of the module whose method makes the call
  std::string method;  ///< "<owner type>.<method>", for site names
  std::string callee;  ///< the callee's path relative to the owner
};

struct ModelIndex {
  std::vector<std::string> names;                               ///< named_modules() order, root excluded
  std::unordered_map<std::string, torch::jit::Module> by_name;  ///< root included as ""
  std::map<std::string, std::vector<CallSite>> calls_of;        ///< by callee instance path
  std::vector<torch::jit::GraphFunction*> functions;            ///< every method of every module type
  std::vector<std::shared_ptr<torch::jit::CompilationUnit>> units;
};

/// Every prim::CallMethod "forward"/"forward__N" in every method of every module type of `model`,
/// mapped to the module instances it runs.
ModelIndex index_model(const torch::jit::Module& model);

/// How the output of the submodule at `path` is laid out: by its type where that says, else by what
/// feeds it (a ReLU after a Conv2d is channels-first) or what it returns (a block ending in Linear);
/// features-last when nothing says.
LayerLayout guess_layout(const ModelIndex& index, const std::string& path);

/// The submodule `name` refers to; a DataParallel save ("module." prefix) answers with or without it.
/// Throws LayerNotFound with the closest and the valid names.
std::string resolve_name(const ModelIndex& index, const std::string& name);

/// Why `name`, which no compiled method calls, cannot be probed.
std::string never_called_message(const ModelIndex& index, const std::string& name);

}  // namespace neuronmap::detail
