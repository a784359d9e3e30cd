// Reading a TorchScript model's graphs: see script_model.hpp.
#include "script_model.hpp"

#include <algorithm>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "neuronmap/errors.hpp"
#include "probe/probe_core.hpp"  // edit_distance
#include "script_probes.hpp"     // script_type_name

namespace neuronmap::detail {

namespace jit = torch::jit;
using jit::Graph;
using jit::Node;
using jit::Value;

const c10::Symbol& capture_symbol() {
  static const c10::Symbol s = c10::Symbol::fromQualString("neuronmap::capture");
  return s;
}
const c10::Symbol& observe_symbol() {
  static const c10::Symbol s = c10::Symbol::fromQualString("neuronmap::observe");
  return s;
}

bool is_forward_name(const std::string& name) { return name == "forward" || name.rfind("forward__", 0) == 0; }

std::string join_path(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  return a + "." + b;
}

namespace {

// The attribute path from the method's `self` to the module the call runs, if it is one.
std::optional<std::string> callee_path(Node* call) {
  Value* v = call->input(0);
  std::vector<std::string> attrs;
  while (v->node()->kind() == c10::prim::GetAttr) {
    attrs.push_back(v->node()->s(c10::attr::name));
    v = v->node()->input(0);
  }
  if (v != call->owningGraph()->inputs().at(0)) return std::nullopt;
  std::string path;
  for (auto it = attrs.rbegin(); it != attrs.rend(); ++it) path = join_path(path, *it);
  return path;
}

void collect_forward_calls(jit::Block* block, std::vector<Node*>& out) {
  for (Node* n : block->nodes()) {
    if (n->kind() == c10::prim::CallMethod && is_forward_name(n->s(c10::attr::name))) out.push_back(n);
    for (jit::Block* b : n->blocks()) collect_forward_calls(b, out);
  }
}

std::string short_type(const c10::ClassType& type) { return type.name() ? type.name()->name() : "?"; }

}  // namespace

ModelIndex index_model(const jit::Module& model) {
  ModelIndex index;
  std::vector<c10::ClassType*> types;
  std::unordered_map<c10::ClassType*, std::vector<std::string>> instances;
  std::set<jit::CompilationUnit*> seen_units;
  for (const auto& item : model.named_modules()) {
    if (!item.name.empty()) index.names.push_back(item.name);
    index.by_name.emplace(item.name, item.value);
    c10::ClassType* type = item.value.type().get();
    if (instances.find(type) == instances.end()) types.push_back(type);
    instances[type].push_back(item.name);
    auto unit = item.value._ivalue()->compilation_unit();
    if (unit && seen_units.insert(unit.get()).second) index.units.push_back(std::move(unit));
  }
  for (c10::ClassType* type : types) {
    for (jit::Function* method : type->methods()) {
      auto* function = jit::tryToGraphFunction(*method);
      if (function == nullptr) continue;
      index.functions.push_back(function);
      std::shared_ptr<Graph> graph = function->graph();
      std::vector<Node*> calls;
      collect_forward_calls(graph->block(), calls);
      for (Node* call : calls) {
        const auto relative = callee_path(call);
        if (!relative || relative->empty()) continue;
        for (const auto& owner : instances[type]) {
          const std::string target = join_path(owner, *relative);
          if (index.by_name.count(target) == 0) continue;
          index.calls_of[target].push_back(
              CallSite{graph, call, owner, short_type(*type) + "." + method->name(), *relative});
        }
      }
    }
  }
  return index;
}

namespace {

std::optional<LayerLayout> layout_of_type(const std::string& type_name) {
  static const std::set<std::string> channels_first = {
      "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "BatchNorm1d",
      "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d",
      "GroupNorm", "LocalResponseNorm", "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d",
      "AvgPool3d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "AdaptiveMaxPool1d",
      "AdaptiveMaxPool2d", "AdaptiveMaxPool3d", "LPPool1d", "LPPool2d", "FractionalMaxPool2d",
      "FractionalMaxPool3d", "Dropout1d", "Dropout2d", "Dropout3d", "Upsample", "UpsamplingNearest2d",
      "UpsamplingBilinear2d", "PixelShuffle", "PixelUnshuffle", "ZeroPad2d", "ConstantPad1d", "ConstantPad2d",
      "ConstantPad3d", "ReflectionPad1d", "ReflectionPad2d", "ReflectionPad3d", "ReplicationPad1d",
      "ReplicationPad2d", "ReplicationPad3d"};
  static const std::set<std::string> features_last = {
      "Linear", "Bilinear", "Embedding", "EmbeddingBag", "LayerNorm", "LSTM", "GRU", "RNN", "LSTMCell",
      "GRUCell", "RNNCell", "MultiheadAttention", "TransformerEncoderLayer", "TransformerDecoderLayer",
      "TransformerEncoder", "TransformerDecoder", "Transformer", "Flatten"};
  if (channels_first.count(type_name)) return LayerLayout::channels_first;
  if (features_last.count(type_name)) return LayerLayout::features_last;
  return std::nullopt;
}

class LayoutGuesser {
 public:
  explicit LayoutGuesser(const ModelIndex& index) : index_(index) {}

  LayerLayout of_module(const std::string& path) {
    return module_layout(path, 0).value_or(LayerLayout::features_last);
  }

 private:
  static constexpr int kMaxDepth = 48;

  std::optional<LayerLayout> module_layout(const std::string& path, int depth) {
    const auto it = index_.by_name.find(path);
    if (it == index_.by_name.end() || depth > kMaxDepth) return std::nullopt;
    if (auto by_type = layout_of_type(short_type(*it->second.type()))) return by_type;
    // What its forward returns.
    for (jit::Function* method : it->second.type()->methods()) {
      if (!is_forward_name(method->name())) continue;
      auto* function = jit::tryToGraphFunction(*method);
      if (function == nullptr || function->graph()->outputs().empty()) continue;
      Value* out = function->graph()->outputs()[0];
      if (out->node()->kind() == c10::prim::TupleConstruct && out->node()->inputs().size() > 0) {
        out = out->node()->input(0);
      }
      if (auto r = value_layout(out, path, depth + 1)) return r;
    }
    return std::nullopt;
  }

  std::optional<LayerLayout> value_layout(Value* v, const std::string& owner, int depth) {
    if (depth > kMaxDepth) return std::nullopt;
    Node* n = v->node();
    if (n == n->owningGraph()->param_node()) {
      // An argument: what the callers pass.
      const auto offset = v->offset();
      if (offset == 0) return std::nullopt;
      const auto calls = index_.calls_of.find(owner);
      if (calls == index_.calls_of.end()) return std::nullopt;
      for (const auto& site : calls->second) {
        if (offset < site.call->inputs().size()) {
          if (auto r = value_layout(site.call->input(offset), site.owner, depth + 1)) return r;
        }
      }
      return std::nullopt;
    }
    if (n->kind() == c10::prim::CallMethod && is_forward_name(n->s(c10::attr::name))) {
      if (const auto relative = callee_path(n)) return module_layout(join_path(owner, *relative), depth + 1);
      return std::nullopt;
    }
    if (n->kind() == capture_symbol()) return value_layout(n->input(2), owner, depth + 1);
    if (n->kind() == c10::prim::If && v->offset() < n->blocks()[0]->outputs().size()) {
      return value_layout(n->blocks()[0]->outputs()[v->offset()], owner, depth + 1);
    }
    for (Value* input : n->inputs()) {
      const auto kind = input->type()->kind();
      if (kind == c10::TypeKind::TensorType || kind == c10::TypeKind::TupleType) {
        return value_layout(input, owner, depth + 1);
      }
    }
    return std::nullopt;
  }

  const ModelIndex& index_;
};

std::string quoted_list(const std::vector<std::string>& names, std::size_t max_names) {
  std::string out;
  for (std::size_t i = 0; i < names.size() && i < max_names; ++i) out += (i ? ", '" : "'") + names[i] + "'";
  if (names.size() > max_names) out += fmt::format(", ... ({} in all)", names.size());
  return out;
}

std::string not_found_message(const ModelIndex& index, const std::string& name) {
  std::vector<std::string> closest = index.names;
  std::stable_sort(closest.begin(), closest.end(), [&](const std::string& a, const std::string& b) {
    return edit_distance(name, a) < edit_distance(name, b);
  });
  if (closest.size() > 3) closest.resize(3);
  if (index.names.empty()) {
    return fmt::format("layer '{}' not found: the TorchScript model has no submodules", name);
  }
  return fmt::format("layer '{}' is not a submodule of the TorchScript model; closest: {}. Valid names: {}. "
                     "neuronmap::layers(model) (or `neuronmap layers MODEL.pt`) lists them with types and shapes.",
                     name, quoted_list(closest, 3), quoted_list(index.names, 60));
}

}  // namespace

LayerLayout guess_layout(const ModelIndex& index, const std::string& path) {
  return LayoutGuesser(index).of_module(path);
}

std::string resolve_name(const ModelIndex& index, const std::string& name) {
  const auto has = [&](const std::string& n) { return !n.empty() && index.by_name.count(n) > 0; };
  if (has(name)) return name;
  const std::string prefix = "module.";
  if (name.rfind(prefix, 0) == 0 && has(name.substr(prefix.size()))) return name.substr(prefix.size());
  if (has(prefix + name)) return prefix + name;
  throw LayerNotFound(not_found_message(index, name));
}

std::string never_called_message(const ModelIndex& index, const std::string& name) {
  return fmt::format("'{}' ({}) cannot be probed: no compiled method of the model calls its forward, so it never "
                     "runs (a Python forward hook on it would never fire either). neuronmap::layers(model) shows "
                     "which submodules run.",
                     name, script_type_name(index.by_name.at(name).type()->name()->qualifiedName()));
}

}  // namespace neuronmap::detail
