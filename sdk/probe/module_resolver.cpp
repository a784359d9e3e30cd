// Recognising a C++ frontend module's outermost op: the table of module kinds, and the resolution of
// names to tracked modules. See module_resolver.hpp.
#include "probe/module_resolver.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <mutex>
#include <sstream>
#include <unordered_set>

#include "neuronmap/errors.hpp"
#include "probe/probe_core.hpp"

namespace neuronmap::detail {

using torch::nn::Module;

struct ModuleKind {
  // How a module kind's output is found among the ops it runs.
  enum class Role {
    linear,                 // addmm(b, x, w.t()), or matmul(x, w.t()) then add_(out, b)
    parametric,             // its outermost op takes one of its parameters or buffers
    parametric_or_chained,  // parametric when it has parameters (affine norms), else chained
    chained,                // parameter-free: the op consuming the previous Sequential sibling's output
    alias_input,            // Identity: its output is its input
    alias_last_child,       // Sequential: its output is its last child's output
    attention,              // MultiheadAttention: the softmax within the span of its parameters' ops
  };
  enum class LayoutRule { features_last, channels_first, attention_heads, inherit };

  Role role;
  std::vector<std::string> ops;  // outermost op names that compute the output (output 0)
  LayoutRule layout;
  // Entry of the type's own forward where LibTorch defines it out of line (libtorch_cpu.so), so that
  // a frame of it marks the type's calls of its ops; null where the forward is a header template
  // compiled into the caller (BatchNorm, InstanceNorm) or the kind is never found by its type.
  const void* forward = nullptr;
};

namespace {

using Role = ModuleKind::Role;
using LayoutRule = ModuleKind::LayoutRule;

template <class T>
bool is(const Module& m) {
  return dynamic_cast<const T*>(&m) != nullptr;
}

using KindTest = bool (*)(const Module&);

// A parameter-free kind whose forward LibTorch defines out of line: it can be found by its type.
template <class Impl>
std::pair<KindTest, ModuleKind> with_own_forward(Role role, std::vector<std::string> ops, LayoutRule layout) {
  return {&is<Impl>, ModuleKind{role, std::move(ops), layout, member_function_entry(&Impl::forward)}};
}

const ModuleKind* kind_of(const Module& m) {
  using namespace torch::nn;
  constexpr auto F = LayoutRule::features_last;
  constexpr auto C = LayoutRule::channels_first;
  constexpr auto I = LayoutRule::inherit;
  static const std::vector<std::pair<KindTest, ModuleKind>> kinds = {
      {&is<MultiheadAttentionImpl>, {Role::attention, {"aten::softmax"}, LayoutRule::attention_heads}},
      {&is<LinearImpl>, {Role::linear, {"aten::addmm", "aten::matmul"}, F}},
      {&is<Conv1dImpl>, {Role::parametric, {"aten::conv1d"}, C}},
      {&is<Conv2dImpl>, {Role::parametric, {"aten::conv2d"}, C}},
      {&is<Conv3dImpl>, {Role::parametric, {"aten::conv3d"}, C}},
      {&is<ConvTranspose1dImpl>, {Role::parametric, {"aten::conv_transpose1d"}, C}},
      {&is<ConvTranspose2dImpl>, {Role::parametric, {"aten::conv_transpose2d"}, C}},
      {&is<ConvTranspose3dImpl>, {Role::parametric, {"aten::conv_transpose3d"}, C}},
      {&is<EmbeddingImpl>, {Role::parametric, {"aten::embedding"}, F}},
      {&is<EmbeddingBagImpl>, {Role::parametric, {"aten::embedding_bag"}, F}},
      {&is<LSTMImpl>, {Role::parametric, {"aten::lstm"}, F}},
      {&is<GRUImpl>, {Role::parametric, {"aten::gru"}, F}},
      {&is<RNNImpl>, {Role::parametric, {"aten::rnn_tanh", "aten::rnn_relu"}, F}},
      with_own_forward<LayerNormImpl>(Role::parametric_or_chained, {"aten::layer_norm"}, F),
      with_own_forward<GroupNormImpl>(Role::parametric_or_chained, {"aten::group_norm"}, C),
      {&is<BatchNorm1dImpl>, {Role::parametric_or_chained, {"aten::batch_norm"}, C}},
      {&is<BatchNorm2dImpl>, {Role::parametric_or_chained, {"aten::batch_norm"}, C}},
      {&is<BatchNorm3dImpl>, {Role::parametric_or_chained, {"aten::batch_norm"}, C}},
      {&is<InstanceNorm1dImpl>, {Role::parametric_or_chained, {"aten::instance_norm"}, C}},
      {&is<InstanceNorm2dImpl>, {Role::parametric_or_chained, {"aten::instance_norm"}, C}},
      {&is<InstanceNorm3dImpl>, {Role::parametric_or_chained, {"aten::instance_norm"}, C}},
      with_own_forward<ReLUImpl>(Role::chained, {"aten::relu", "aten::relu_"}, I),
      with_own_forward<ReLU6Impl>(Role::chained, {"aten::relu6", "aten::relu6_"}, I),
      with_own_forward<LeakyReLUImpl>(Role::chained, {"aten::leaky_relu", "aten::leaky_relu_"}, I),
      with_own_forward<ELUImpl>(Role::chained, {"aten::elu", "aten::elu_"}, I),
      with_own_forward<SELUImpl>(Role::chained, {"aten::selu", "aten::selu_"}, I),
      with_own_forward<CELUImpl>(Role::chained, {"aten::celu", "aten::celu_"}, I),
      with_own_forward<HardtanhImpl>(Role::chained, {"aten::hardtanh", "aten::hardtanh_"}, I),
      with_own_forward<GELUImpl>(Role::chained, {"aten::gelu"}, I),
      with_own_forward<SiLUImpl>(Role::chained, {"aten::silu"}, I),
      with_own_forward<MishImpl>(Role::chained, {"aten::mish"}, I),
      with_own_forward<SigmoidImpl>(Role::chained, {"aten::sigmoid"}, I),
      with_own_forward<TanhImpl>(Role::chained, {"aten::tanh"}, I),
      with_own_forward<SoftplusImpl>(Role::chained, {"aten::softplus"}, I),
      with_own_forward<SoftmaxImpl>(Role::chained, {"aten::softmax"}, I),
      with_own_forward<LogSoftmaxImpl>(Role::chained, {"aten::log_softmax"}, I),
      with_own_forward<DropoutImpl>(Role::chained, {"aten::dropout", "aten::dropout_"}, I),
      with_own_forward<AlphaDropoutImpl>(Role::chained, {"aten::alpha_dropout", "aten::alpha_dropout_"}, I),
      with_own_forward<Dropout2dImpl>(Role::chained, {"aten::feature_dropout", "aten::feature_dropout_"}, C),
      with_own_forward<Dropout3dImpl>(Role::chained, {"aten::feature_dropout", "aten::feature_dropout_"}, C),
      with_own_forward<FeatureAlphaDropoutImpl>(Role::chained,
                                                {"aten::feature_alpha_dropout", "aten::feature_alpha_dropout_"}, C),
      with_own_forward<MaxPool1dImpl>(Role::chained, {"aten::max_pool1d"}, C),
      with_own_forward<MaxPool2dImpl>(Role::chained, {"aten::max_pool2d"}, C),
      with_own_forward<MaxPool3dImpl>(Role::chained, {"aten::max_pool3d"}, C),
      with_own_forward<AvgPool1dImpl>(Role::chained, {"aten::avg_pool1d"}, C),
      with_own_forward<AvgPool2dImpl>(Role::chained, {"aten::avg_pool2d"}, C),
      with_own_forward<AvgPool3dImpl>(Role::chained, {"aten::avg_pool3d"}, C),
      with_own_forward<AdaptiveAvgPool1dImpl>(Role::chained, {"aten::adaptive_avg_pool1d"}, C),
      with_own_forward<AdaptiveAvgPool2dImpl>(Role::chained, {"aten::adaptive_avg_pool2d"}, C),
      with_own_forward<AdaptiveAvgPool3dImpl>(Role::chained, {"aten::adaptive_avg_pool3d"}, C),
      with_own_forward<AdaptiveMaxPool1dImpl>(Role::chained, {"aten::adaptive_max_pool1d"}, C),
      with_own_forward<AdaptiveMaxPool2dImpl>(Role::chained, {"aten::adaptive_max_pool2d"}, C),
      with_own_forward<AdaptiveMaxPool3dImpl>(Role::chained, {"aten::adaptive_max_pool3d"}, C),
      with_own_forward<FlattenImpl>(Role::chained, {"aten::flatten"}, F),
      {&is<IdentityImpl>, {Role::alias_input, {}, I}},
      {&is<SequentialImpl>, {Role::alias_last_child, {}, I}},
  };
  for (const auto& [matches, kind] : kinds) {
    if (matches(m)) return &kind;
  }
  return nullptr;
}

std::string join(const std::vector<std::string>& items, std::size_t max_items) {
  std::string out;
  for (std::size_t i = 0; i < items.size() && i < max_items; ++i) {
    if (i > 0) out += ", ";
    out += "'" + items[i] + "'";
  }
  if (items.size() > max_items) out += ", ... (" + std::to_string(items.size() - max_items) + " more)";
  return out;
}

std::string parent_of(const std::string& name) {
  const auto dot = name.rfind('.');
  return dot == std::string::npos ? std::string() : name.substr(0, dot);
}
std::string child_key(const std::string& name) {
  const auto dot = name.rfind('.');
  return dot == std::string::npos ? name : name.substr(dot + 1);
}
std::string join_name(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

LayerLayout fixed_layout(LayoutRule rule) {
  if (rule == LayoutRule::attention_heads) return LayerLayout::attention_heads;
  return rule == LayoutRule::channels_first ? LayerLayout::channels_first : LayerLayout::features_last;
}

// The code of a kind's own forward, looked up once per process: dladdr1 scans LibTorch's symbol
// table, and the code does not move while LibTorch is loaded.
const CodeRange& forward_code(const ModuleKind& kind) {
  static std::mutex mutex;
  static auto* const codes = new std::map<const void*, CodeRange>();  // never destroyed, like the table
  std::lock_guard<std::mutex> lock(mutex);
  auto it = codes->find(kind.forward);
  if (it == codes->end()) it = codes->emplace(kind.forward, exported_function_code(kind.forward)).first;
  return it->second;
}

std::string slash_list(const std::vector<std::string>& items) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) out += (i == 0 ? "" : "/") + items[i];
  return out;
}

}  // namespace

const void* storage_of(const at::Tensor& t) {
  if (!t.defined() || !t.has_storage()) return nullptr;
  return t.storage().unsafeGetStorageImpl();
}

std::vector<at::Tensor> own_tensors(const Module& m) {
  std::vector<at::Tensor> out = m.parameters(/*recurse=*/false);
  for (auto& b : m.buffers(/*recurse=*/false)) out.push_back(std::move(b));
  out.erase(std::remove_if(out.begin(), out.end(), [](const at::Tensor& t) { return storage_of(t) == nullptr; }),
            out.end());
  return out;
}

ModuleResolver::ModuleResolver(Module& root) : root_(root) {
  for (const auto& item : root.named_modules(/*name_prefix=*/"", /*include_self=*/false)) {
    modules_.emplace(item.key(), item.value());
    names_.push_back(item.key());
    if (!first_name_.count(item.value().get())) first_name_.emplace(item.value().get(), item.key());
  }
  auto note_owner = [this](const Module* m) {
    for (const auto& t : own_tensors(*m)) {
      auto& owners = owners_[storage_of(t)];
      if (std::find(owners.begin(), owners.end(), m) == owners.end()) owners.push_back(m);
    }
  };
  note_owner(&root_);
  for (const auto& item : modules_) note_owner(item.second.get());
}

std::shared_ptr<Module> ModuleResolver::find(const std::string& name) const {
  auto it = modules_.find(name);
  if (it != modules_.end()) return it->second;
  std::vector<std::pair<std::size_t, std::string>> scored;
  for (const auto& n : names_) scored.emplace_back(edit_distance(name, n), n);
  std::stable_sort(scored.begin(), scored.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string> closest;
  for (std::size_t i = 0; i < scored.size() && i < 3; ++i) closest.push_back(scored[i].second);
  std::ostringstream msg;
  msg << "no submodule named '" << name << "' in " << root_.name() << ".";
  if (names_.empty()) {
    msg << " The model has no submodules.";
  } else {
    msg << " Closest: " << join(closest, 3) << ". Valid names (" << names_.size() << "): " << join(names_, 60)
        << ". neuronmap::layers(model) lists them with their types and whether each can be probed.";
  }
  throw LayerNotFound(msg.str());
}

ResolvedModule ModuleResolver::resolve(const std::string& name) {
  if (auto it = done_.find(name); it != done_.end()) return it->second;
  if (auto it = failed_.find(name); it != failed_.end()) throw UnsupportedModule(it->second);
  if (!in_progress_.insert(name).second) throw UnsupportedModule("'" + name + "' is its own predecessor");
  try {
    ResolvedModule r = resolve_uncached(name);
    in_progress_.erase(name);
    done_.emplace(name, r);
    return r;
  } catch (const UnsupportedModule& e) {
    in_progress_.erase(name);
    failed_.emplace(name, e.what());
    throw;
  }
}

std::string ModuleResolver::describe(const std::string& name) const {
  return "'" + name + "' (" + modules_.at(name)->name() + ")";
}

ResolvedModule ModuleResolver::resolve_uncached(const std::string& name) {
  const std::shared_ptr<Module>& module = modules_.at(name);
  const ModuleKind* kind = kind_of(*module);
  if (kind == nullptr) throw UnsupportedModule(unknown_kind_message(name));
  switch (kind->role) {
    case Role::alias_last_child: {
      auto children = module->named_children();
      if (children.is_empty()) throw UnsupportedModule(describe(name) + " cannot be probed: it is empty.");
      try {
        return resolve(join_name(name, children.keys().back()));
      } catch (const UnsupportedModule& e) {
        throw UnsupportedModule(describe(name) + " cannot be probed: its output is its last child's, and " +
                                e.what());
      }
    }
    case Role::alias_input:
      return producer_of_input(name, "its output is its input");
    case Role::attention:
      return track_attention(name, module, *kind);
    case Role::linear:
    case Role::parametric:
    case Role::parametric_or_chained:
      if (!own_tensors(*module).empty()) return track_parametric(name, module, *kind);
      if (kind->role != Role::parametric_or_chained) {
        throw UnsupportedModule(describe(name) + " cannot be probed: it has no parameters to recognise its op by.");
      }
      [[fallthrough]];
    case Role::chained:
      return track_chained(name, module, *kind);
  }
  throw UnsupportedModule(describe(name) + " cannot be probed.");
}

ResolvedModule ModuleResolver::track_parametric(const std::string& name, const std::shared_ptr<Module>& module,
                                                const ModuleKind& kind) {
  check_not_shared(name, *module, kind);
  ResolvedModule r;
  r.layout = fixed_layout(kind.layout);
  for (std::size_t i = 0; i < tracked_.size(); ++i) {
    if (tracked_[i].by_storage && tracked_[i].module == module) {
      r.tracked = static_cast<int>(i);
      return r;
    }
  }
  TrackedModule t;
  t.name = name;
  t.module_type = module->name();
  t.module = module;
  t.ops = &kind.ops;
  t.by_storage = true;
  if (kind.role == Role::linear) {
    t.linear_bias = dynamic_cast<torch::nn::LinearImpl&>(*module).bias.defined();
  }
  t.layout = r.layout;
  tracked_.push_back(std::move(t));
  r.tracked = static_cast<int>(tracked_.size()) - 1;
  return r;
}

ResolvedModule ModuleResolver::track_attention(const std::string& name, const std::shared_ptr<Module>& module,
                                              const ModuleKind& kind) {
  const auto& attention = dynamic_cast<torch::nn::MultiheadAttentionImpl&>(*module);
  if (own_tensors(*module).empty() || !attention.out_proj) {
    throw UnsupportedModule(describe(name) + " cannot be probed: it has no in-projection parameters to recognise "
                            "its ops by.");
  }
  check_not_shared(name, *module, kind);
  for (std::size_t i = 0; i < tracked_.size(); ++i) {
    if (tracked_[i].attention_heads > 0 && tracked_[i].module == module) {
      return ResolvedModule{static_cast<int>(i), LayerLayout::attention_heads};
    }
  }
  TrackedModule t;
  t.name = name;
  t.module_type = module->name();
  t.module = module;
  t.ops = &kind.ops;
  t.attention_heads = static_cast<int>(attention.options.num_heads());
  t.layout = LayerLayout::attention_heads;
  tracked_.push_back(std::move(t));
  return ResolvedModule{static_cast<int>(tracked_.size()) - 1, LayerLayout::attention_heads};
}

// A parameter-free module: the next op of its kind on the output of the sibling registered before it
// (producer_of_input); failing that, by its type (track_by_type).
ResolvedModule ModuleResolver::track_chained(const std::string& name, const std::shared_ptr<Module>& module,
                                             const ModuleKind& kind) {
  ResolvedModule producer;
  try {
    producer = producer_of_input(
        name, "it has no parameters, so its " + kind.ops.front() + " cannot be told apart from any other",
        /*members_too=*/true);
    if (tracked_[producer.tracked].attention_heads > 0) {
      throw UnsupportedModule(describe(name) + " cannot be probed: the sibling registered before it is a "
                              "MultiheadAttention, whose probe sees attention weights, not the tensor this "
                              "module consumes. Probe the layer after it.");
    }
  } catch (const UnsupportedModule& after_sibling) {
    const std::string why_not = why_not_by_type(*module, kind);
    if (why_not.empty()) return track_by_type(name, module, kind);
    throw UnsupportedModule(std::string(after_sibling.what()) +
                            " Nor is it found by its type (as an op of its kind called from its type's own "
                            "forward, when it is the only module of the model that computes " +
                            slash_list(kind.ops) + "): " + why_not + ".");
  }
  TrackedModule t;
  t.name = name;
  t.module_type = module->name();
  t.ops = &kind.ops;
  t.layout = kind.layout == LayoutRule::inherit ? producer.layout : fixed_layout(kind.layout);
  tracked_.push_back(std::move(t));
  const int index = static_cast<int>(tracked_.size()) - 1;
  tracked_[producer.tracked].successors.push_back(index);
  return ResolvedModule{index, tracked_[index].layout};
}

// Empty when `module` can be found by its type: LibTorch defines the type's forward out of line (its
// frame marks the module's calls of the op) and no other module of the model computes any of the
// kind's ops (with two, the frame could be either's). Else why not.
std::string ModuleResolver::why_not_by_type(const Module& module, const ModuleKind& kind) const {
  if (kind.forward == nullptr) {
    return "LibTorch compiles " + module.name() + "::forward into its caller (a template in its headers), so no "
           "stack frame marks that module's calls";
  }
  if (forward_code(kind).empty()) {
    return module.name() + "::forward was not found in LibTorch's symbol table";
  }
  std::unordered_set<const Module*> seen;  // a module registered under two names counts once
  auto other_of_that_kind = [&](const Module& other) {
    if (&other == &module || !seen.insert(&other).second) return false;
    const ModuleKind* other_kind = kind_of(other);
    return other_kind != nullptr && std::any_of(other_kind->ops.begin(), other_kind->ops.end(), [&](const auto& op) {
             return std::find(kind.ops.begin(), kind.ops.end(), op) != kind.ops.end();
           });
  };
  if (other_of_that_kind(root_)) return "the model itself (" + root_.name() + ") is of that op kind";
  for (const auto& name : names_) {
    if (other_of_that_kind(*modules_.at(name))) return "another module of that op kind: " + describe(name);
  }
  return "";
}

// Found by type: an op of its kind is its output when its type's own forward is on the calling stack.
// Its input is unknown, so a layout inherited from the input is taken as features_last.
ResolvedModule ModuleResolver::track_by_type(const std::string& name, const std::shared_ptr<Module>& module,
                                             const ModuleKind& kind) {
  const LayerLayout layout =
      kind.layout == LayoutRule::inherit ? LayerLayout::features_last : fixed_layout(kind.layout);
  for (std::size_t i = 0; i < tracked_.size(); ++i) {
    if (!tracked_[i].caller_code.empty() && tracked_[i].module == module) {
      return ResolvedModule{static_cast<int>(i), layout};
    }
  }
  TrackedModule t;
  t.name = name;
  t.module_type = module->name();
  t.module = module;  // only to find it again under another name
  t.ops = &kind.ops;
  t.caller_code = forward_code(kind);
  t.layout = layout;
  tracked_.push_back(std::move(t));
  return ResolvedModule{static_cast<int>(tracked_.size()) - 1, layout};
}

// The tracked module whose output is `name`'s input: its previous sibling in a Sequential (or, for a
// first child, whatever feeds that Sequential). With `members_too`, also a member that a custom forward
// calls directly: its input is taken to be the output of the sibling registered just before it (the
// Sequential rule generalised; models register members in the order their forward calls them).
ResolvedModule ModuleResolver::producer_of_input(const std::string& name, const std::string& why_needed,
                                                 bool members_too) {
  const std::string parent_name = parent_of(name);
  Module& parent = parent_name.empty() ? root_ : *modules_.at(parent_name);
  const std::string parent_label = parent_name.empty() ? "the model" : "'" + parent_name + "'";
  const bool sequential = is<torch::nn::SequentialImpl>(parent);
  auto fail = [&](const std::string& reason) -> UnsupportedModule {
    return UnsupportedModule(describe(name) + " cannot be probed: " + why_needed + ", so it is " +
                             (members_too ? "looked for first" : "found only") +
                             " as the next op on the output of the sibling registered just before it (in a "
                             "torch::nn::Sequential, or in a custom forward that calls its members in the order "
                             "they were registered), and " +
                             reason);
  };
  if (!sequential && !members_too) {
    throw fail(parent_label + " (" + parent.name() +
               ") is not a Sequential: its forward calls it directly and nothing marks that call. "
               "Probe the layer that feeds it instead, or put both in a torch::nn::Sequential.");
  }
  const auto keys = parent.named_children().keys();
  const auto it = std::find(keys.begin(), keys.end(), child_key(name));
  if (it == keys.end()) throw fail("it is not a child of " + parent_label + ".");
  if (it != keys.begin()) {
    const std::string previous = join_name(parent_name, *(it - 1));
    try {
      return resolve(previous);
    } catch (const UnsupportedModule& e) {
      throw fail("the sibling before it cannot be probed either: " + std::string(e.what()));
    }
  }
  if (!sequential) {
    throw fail("it is the first member of " + parent_label + " (" + parent.name() +
               "), whose forward calls it directly: nothing ties its op to it. Probe the layer that feeds it "
               "instead, register it after that layer, or put both in a torch::nn::Sequential.");
  }
  if (parent_name.empty()) {
    throw fail("it is the first module of the model, so its input is the model's input. Probe a later layer.");
  }
  return producer_of_input(parent_name, why_needed, members_too);
}

void ModuleResolver::check_not_shared(const std::string& name, const Module& module, const ModuleKind& kind) const {
  for (const auto& t : own_tensors(module)) {
    for (const Module* other : owners_.at(storage_of(t))) {
      if (other == &module) continue;
      const ModuleKind* other_kind = kind_of(*other);
      const bool same_ops =
          other_kind != nullptr &&
          std::any_of(other_kind->ops.begin(), other_kind->ops.end(), [&](const std::string& op) {
            return std::find(kind.ops.begin(), kind.ops.end(), op) != kind.ops.end();
          });
      if (!same_ops) continue;  // e.g. an Embedding tied to a Linear: their ops differ
      auto on = first_name_.find(other);
      const std::string other_name = on == first_name_.end() ? std::string("the model itself") : on->second;
      throw UnsupportedModule(describe(name) + " cannot be probed: it shares a parameter with '" + other_name +
                              "' (" + other->name() +
                              "), so their ops cannot be told apart. Untie the parameters, or probe a layer "
                              "next to them.");
    }
  }
}

std::string ModuleResolver::unknown_kind_message(const std::string& name) const {
  const Module& module = *modules_.at(name);
  std::vector<std::string> children;
  for (const auto& item : module.named_children()) children.push_back(join_name(name, item.key()));
  if (!children.empty()) {
    return describe(name) +
           " cannot be probed: its forward is code NeuronMap cannot see the end of (only the ops of known "
           "torch::nn layers are recognised). Probe one of its submodules instead: " +
           join(children, 12) + ".";
  }
  return describe(name) +
         " cannot be probed: NeuronMap does not know which op computes this module type's output. Supported: "
         "Linear, Conv1d/2d/3d, ConvTranspose1d/2d/3d, Embedding, EmbeddingBag, LayerNorm, GroupNorm, "
         "BatchNorm1d/2d/3d, InstanceNorm1d/2d/3d, LSTM, GRU, RNN, MultiheadAttention, Sequential, Identity "
         "inside a Sequential, and activations, dropout, pooling and Flatten after the sibling registered before "
         "them, or as the only module of the model that computes their op.";
}

}  // namespace neuronmap::detail
