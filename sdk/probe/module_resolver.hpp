// Which op of a C++ frontend model computes a named submodule's output, and how to recognise it: by
// the storage of the module's own parameters, or, for parameter-free modules, as the next op of their
// kind on the output of the sibling registered before them (in a Sequential or a custom forward), or,
// failing that, as an op of their kind called from their type's own forward when no other module of
// the model computes that op kind (call_site.hpp; a module of the same type outside the model, called
// on the same thread while capturing, is taken for it). Says why when a module cannot be recognised.
#pragma once

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "neuronmap/fwd.hpp"
#include "neuronmap/layers.hpp"  // LayerLayout
#include "probe/call_site.hpp"

namespace at {
class Tensor;
}

namespace neuronmap::detail {

struct ModuleKind;

/// A module whose output the op callbacks look for: a probed one, or one tracked only because a
/// probed module is found by consuming its output.
struct TrackedModule {
  std::string name;
  std::string module_type;
  std::shared_ptr<torch::nn::Module> module;  ///< while resolving only: callbacks must not keep a model alive
  const std::vector<std::string>* ops = nullptr;  ///< outermost op names that compute its output (output 0)
  bool by_storage = false;         ///< else found by chaining from a predecessor, or by type
  /// Found by type: an op of its kind is its output only when called from this code, its type's own
  /// forward (no other module of the model computes that op kind). Empty for every other module.
  CodeRange caller_code;
  bool linear_bias = false;        ///< Linear whose matmul path ends with add_(out, bias)
  /// > 0: a MultiheadAttention with this many heads. Its output is its per-head weights [B, H, T, S]: the
  /// first softmax after an op on its own (in-projection) parameters, before one on out_proj's.
  int attention_heads = 0;
  std::vector<int> probe_indices;  ///< empty: tracked only so that a successor can be found
  std::vector<int> successors;     ///< chained modules consuming this one's output
  LayerLayout layout = LayerLayout::features_last;

  bool computed_by(const char* op) const {
    for (const auto& name : *ops) {
      if (std::strcmp(name.c_str(), op) == 0) return true;
    }
    return false;
  }
};

/// The identity of a tensor's storage, shared by a parameter and every view or detached copy of it.
const void* storage_of(const at::Tensor& t);

/// Direct parameters and buffers of `m` (not those of submodules) that have storage.
std::vector<at::Tensor> own_tensors(const torch::nn::Module& m);

/// A name resolved to the module whose output it is, and how that output is laid out.
struct ResolvedModule {
  int tracked = -1;  ///< index into ModuleResolver::tracked()
  LayerLayout layout = LayerLayout::features_last;
};

/// Resolves names of one model's submodules to tracked modules, adding each only once.
class ModuleResolver {
 public:
  explicit ModuleResolver(torch::nn::Module& root);

  const std::vector<std::string>& names() const { return names_; }
  std::vector<TrackedModule>& tracked() { return tracked_; }

  /// The submodule called `name`; throws LayerNotFound with the closest and the valid names.
  std::shared_ptr<torch::nn::Module> find(const std::string& name) const;

  /// The tracked module whose output is `name`'s output; throws UnsupportedModule saying why not.
  ResolvedModule resolve(const std::string& name);

 private:
  std::string describe(const std::string& name) const;
  ResolvedModule resolve_uncached(const std::string& name);
  ResolvedModule track_parametric(const std::string& name, const std::shared_ptr<torch::nn::Module>& module,
                                  const ModuleKind& kind);
  ResolvedModule track_attention(const std::string& name, const std::shared_ptr<torch::nn::Module>& module,
                                 const ModuleKind& kind);
  ResolvedModule track_chained(const std::string& name, const std::shared_ptr<torch::nn::Module>& module,
                               const ModuleKind& kind);
  ResolvedModule track_by_type(const std::string& name, const std::shared_ptr<torch::nn::Module>& module,
                               const ModuleKind& kind);
  std::string why_not_by_type(const torch::nn::Module& module, const ModuleKind& kind) const;
  ResolvedModule producer_of_input(const std::string& name, const std::string& why_needed, bool members_too = false);
  void check_not_shared(const std::string& name, const torch::nn::Module& module, const ModuleKind& kind) const;
  std::string unknown_kind_message(const std::string& name) const;

  torch::nn::Module& root_;
  std::map<std::string, std::shared_ptr<torch::nn::Module>> modules_;
  std::vector<std::string> names_;
  std::unordered_map<const torch::nn::Module*, std::string> first_name_;
  std::unordered_map<const void*, std::vector<const torch::nn::Module*>> owners_;
  std::vector<TrackedModule> tracked_;
  std::map<std::string, ResolvedModule> done_;
  std::map<std::string, std::string> failed_;
  std::set<std::string> in_progress_;
};

}  // namespace neuronmap::detail
