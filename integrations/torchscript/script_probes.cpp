// TorchScript probes: the graph rewrite, the neuronmap::capture op and the registry that routes its
// calls to the sessions' sinks. What they read of the model is in script_model.cpp. See
// script_probes.hpp and docs/TORCHSCRIPT.md.
#include "script_probes.hpp"

#include <algorithm>
#include <functional>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <unordered_map>

#include <fmt/format.h>
#include <ATen/record_function.h>
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/library.h>

#include "neuronmap/errors.hpp"
#include "probe/attention_span.hpp"
#include "probe/probe_core.hpp"
#include "script_model.hpp"

namespace neuronmap::detail {
namespace {

namespace jit = torch::jit;
using jit::Graph;
using jit::Node;
using jit::Value;

// What the op reads: per site, which module objects are probed by which probe set.
// The sink, counters and lifetime handshake (ProbeCore), the on/off switch the op reads, the names.
struct Core : ProbeCore {
  std::atomic<bool> enabled{false};
  std::vector<std::string> names;  // per probe index, for messages
};

struct Route {
  const c10::ivalue::Object* module = nullptr;  // the probed instance (a graph may serve several)
  std::shared_ptr<Core> core;
  std::vector<int> probes;  // its probe index (the one entry)
  int heads = 0;            // > 0: an nn.MultiheadAttention whose per-head weights are captured
};
using RouteTable = std::unordered_map<std::string, std::vector<Route>>;

// A CallMethod node we instrumented, shared by every probe set that needs it.
struct Instrumented {
  std::shared_ptr<Graph> graph;  // keeps the node alive while the entry exists
  std::string site;
  std::vector<Node*> added;      // in insertion order
  bool attention = false;        // a neuronmap::attention_begin precedes the call
  Value* original = nullptr;     // the call's output
  Value* replacement = nullptr;  // what the call's later uses read instead (null: observe only)
  int users = 0;
};

// The methods of a probed model's root type before the first probe set replaced them.
struct RootMethods {
  c10::ClassTypePtr type;  // keeps the key alive
  std::vector<jit::Function*> originals;
  int users = 0;
};

struct Registry {
  std::mutex mutex;  // attach and detach; the op never takes it
  std::shared_ptr<const RouteTable> routes = std::make_shared<RouteTable>();  // std::atomic_load/store
  std::map<Node*, Instrumented> instrumented;
  std::map<c10::ClassType*, RootMethods> roots;  // root types whose methods are replaced
  std::vector<std::unique_ptr<jit::GraphFunction>> replacements;  // never freed: see refresh_compiled_code
  std::uint64_t next_site = 0;
};

// Leaked on purpose: a forward may still run the op during static destruction.
Registry& registry() {
  static Registry* r = new Registry;
  return *r;
}
std::atomic<int> g_enabled_sets{0};

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

// The tensor a forward hook would keep: the output itself, or element 0 of a tuple or list.
const at::Tensor* hooked_tensor(const c10::IValue& output) {
  const c10::IValue* v = &output;
  if (v->isTuple()) {
    const auto& elements = v->toTupleRef().elements();
    if (elements.empty()) return nullptr;
    v = &elements[0];
  } else if (v->isList()) {
    const auto& list = v->toListRef();
    if (list.empty()) return nullptr;
    v = &list[0];
  }
  return v->isTensor() && v->toTensor().defined() ? &v->toTensor() : nullptr;
}

void deliver(const Route& route, const c10::IValue& output) noexcept {
  Core& core = *route.core;
  if (!core.enabled.load(std::memory_order_relaxed) || !core.acquire()) return;
  const std::string& name = core.names[static_cast<std::size_t>(route.probes.front())];
  try {
    const at::Tensor* tensor = hooked_tensor(output);
    if (tensor == nullptr) {
      core.record_error(fmt::format("probe '{}': the layer returned {}, not a tensor (or a tuple/list starting with one)",
                                    name, output.tagKind()));
    } else {
      at::RecordFunctionGuard no_recording(false);
      deliver_output(core, route.probes, name, *tensor);
    }
  } catch (const std::exception& e) {
    core.record_error(fmt::format("probe '{}': {}", name, first_line(e.what())));
  } catch (...) {
    core.record_error("probe: unknown error");
  }
  core.release();
}

void deliver_weights(const Route& route, const at::Tensor& weights) noexcept {
  Core& core = *route.core;
  if (!core.enabled.load(std::memory_order_relaxed) || !core.acquire()) return;
  try {
    deliver_output(core, route.probes, core.names[static_cast<std::size_t>(route.probes.front())], weights);
  } catch (const std::exception& e) {
    core.record_error(fmt::format("probe '{}': {}", core.names[static_cast<std::size_t>(route.probes.front())],
                                  first_line(e.what())));
  } catch (...) {
    core.record_error("probe: unknown error");
  }
  core.release();
}

// Closes the attention span of a call (probe/attention_span.hpp) and says so if a fused kernel kept
// the weights.
void end_span(const std::vector<const Route*>& attention_routes) noexcept {
  const std::string fused = end_attention_span();
  if (fused.empty()) return;
  for (const Route* route : attention_routes) {
    Core& core = *route->core;
    if (!core.enabled.load(std::memory_order_relaxed)) continue;
    core.record_error(fmt::format("probe '{}' ran PyTorch's fused attention ({}), which computes the weights inside "
                                  "one kernel: nothing captured for that call (it is taken in inference without "
                                  "autograd; train, or run with autograd on)",
                                  core.names[static_cast<std::size_t>(route->probes.front())], fused));
  }
}

void route_output(const c10::IValue& module, const c10::IValue& site, const c10::IValue& output) noexcept {
  try {
    const std::shared_ptr<const RouteTable> table = std::atomic_load(&registry().routes);
    const auto it = table->find(site.toStringRef());
    if (it == table->end()) return;
    const c10::ivalue::Object* object = module.isObject() ? &module.toObjectRef() : nullptr;
    std::vector<const Route*> attention_routes;
    for (const Route& route : it->second) {
      if (route.module != object) continue;
      if (route.heads > 0) {
        attention_routes.push_back(&route);
      } else {
        deliver(route, output);
      }
    }
    if (!attention_routes.empty()) end_span(attention_routes);
  } catch (...) {
    // Nothing here may reach the training step.
  }
}

}  // namespace

// neuronmap::capture(Any module, str site, Tensor output) -> Tensor: returns `output` itself, so that
// the call's later uses read it through the op (the gradient hook then sees every use's gradient).
void capture_kernel(const c10::OperatorHandle& /*op*/, torch::jit::Stack* stack) {
  auto& s = *stack;
  const auto n = s.size();
  if (g_enabled_sets.load(std::memory_order_relaxed) > 0) route_output(s[n - 3], s[n - 2], s[n - 1]);
  s.erase(s.end() - 3, s.end() - 1);
}

// neuronmap::attention_begin(Any module, str site) -> (): before the call of a probed attention module,
// opens the thread's span that takes its per-head weights.
void attention_begin_kernel(const c10::OperatorHandle& /*op*/, torch::jit::Stack* stack) {
  auto& s = *stack;
  const auto n = s.size();
  if (g_enabled_sets.load(std::memory_order_relaxed) > 0) {
    try {
      const std::shared_ptr<const RouteTable> table = std::atomic_load(&registry().routes);
      const auto it = table->find(s[n - 1].toStringRef());
      const c10::ivalue::Object* object = s[n - 2].isObject() ? &s[n - 2].toObjectRef() : nullptr;
      std::vector<Route> routes;
      if (it != table->end()) {
        for (const Route& route : it->second) {
          if (route.module == object && route.heads > 0 && route.core->enabled.load(std::memory_order_relaxed)) {
            routes.push_back(route);
          }
        }
      }
      if (!routes.empty()) {
        const int heads = routes.front().heads;
        begin_attention_span(heads, [routes = std::move(routes)](const at::Tensor& weights) {
          for (const Route& route : routes) deliver_weights(route, weights);
        });
      }
    } catch (...) {
      // Nothing here may reach the training step.
    }
  }
  s.resize(n - 2);
}

// neuronmap::observe(Any module, str site, Any output) -> (): for outputs that are not a tensor or a
// tuple starting with one (lists, optionals): captured, but without gradients.
void observe_kernel(const c10::OperatorHandle& /*op*/, torch::jit::Stack* stack) {
  auto& s = *stack;
  const auto n = s.size();
  if (g_enabled_sets.load(std::memory_order_relaxed) > 0) route_output(s[n - 3], s[n - 2], s[n - 1]);
  s.resize(n - 3);
}

namespace {

// Rewriting. All under registry().mutex.

const c10::Symbol& attention_begin_symbol() {
  static const c10::Symbol symbol = c10::Symbol::fromQualString("neuronmap::attention_begin");
  return symbol;
}

// Before an attention module's call: neuronmap::attention_begin(module, site).
void add_attention_begin(Instrumented& entry, Node* call) {
  if (entry.attention) return;
  Graph& g = *entry.graph;
  jit::WithInsertPoint insert_point(call);
  Value* site_value = g.insertConstant(entry.site);
  Node* begin = g.insertNode(g.create(attention_begin_symbol(), {call->input(0), site_value}, 0));
  entry.added.push_back(site_value->node());
  entry.added.push_back(begin);
  entry.attention = true;
}

Instrumented& instrument(Registry& reg, const CallSite& site, bool attention) {
  auto found = reg.instrumented.find(site.call);
  if (found != reg.instrumented.end()) {
    ++found->second.users;
    if (attention) add_attention_begin(found->second, site.call);
    return found->second;
  }
  Graph& g = *site.graph;
  Node* call = site.call;
  Instrumented entry;
  entry.graph = site.graph;
  entry.site = fmt::format("{}:{}#{}", site.method, site.callee, ++reg.next_site);
  entry.original = call->output();
  jit::WithInsertPoint insert_point(call->next());
  Value* module = call->input(0);
  Value* site_value = g.insertConstant(entry.site);
  entry.added.push_back(site_value->node());
  const c10::TypePtr& type = entry.original->type();
  const auto tuple = type->cast<c10::TupleType>();
  if (type->kind() == c10::TypeKind::TensorType) {
    Node* capture = g.insertNode(g.create(capture_symbol(), {module, site_value, entry.original}, 1));
    capture->output()->setType(type);
    entry.added.push_back(capture);
    entry.replacement = capture->output();
  } else if (tuple && !tuple->elements().empty() && tuple->elements()[0]->kind() == c10::TypeKind::TensorType) {
    // (out, state...) -> unpack, capture element 0, pack again: later uses read the captured tensor.
    Node* unpack = g.insertNode(g.createTupleUnpack(entry.original));
    entry.added.push_back(unpack);
    std::vector<Value*> elements(unpack->outputs().begin(), unpack->outputs().end());
    Node* capture = g.insertNode(g.create(capture_symbol(), {module, site_value, elements[0]}, 1));
    capture->output()->setType(elements[0]->type());
    entry.added.push_back(capture);
    elements[0] = capture->output();
    Node* pack = g.insertNode(g.createTuple(elements, tuple->schema() ? tuple : nullptr));
    pack->output()->setType(type);
    entry.added.push_back(pack);
    entry.replacement = pack->output();
  } else {
    Node* observe = g.insertNode(g.create(observe_symbol(), {module, site_value, entry.original}, 0));
    entry.added.push_back(observe);
  }
  if (entry.replacement != nullptr) {
    entry.original->replaceAllUsesAfterNodeWith(entry.replacement->node(), entry.replacement);
  }
  entry.users = 1;
  Instrumented& added = reg.instrumented.emplace(call, std::move(entry)).first->second;
  if (attention) add_attention_begin(added, call);
  return added;
}

void uninstrument(Registry& reg, Node* call) {
  auto found = reg.instrumented.find(call);
  if (found == reg.instrumented.end() || --found->second.users > 0) return;
  Instrumented& entry = found->second;
  if (entry.replacement != nullptr) entry.replacement->replaceAllUsesWith(entry.original);
  for (auto it = entry.added.rbegin(); it != entry.added.rend(); ++it) (*it)->destroy();
  reg.instrumented.erase(found);
}

void publish_routes(Registry& reg, const std::function<void(RouteTable&)>& change) {
  auto table = std::make_shared<RouteTable>(*std::atomic_load(&reg.routes));
  change(*table);
  for (auto it = table->begin(); it != table->end();) it = it->second.empty() ? table->erase(it) : std::next(it);
  std::atomic_store(&reg.routes, std::shared_ptr<const RouteTable>(std::move(table)));
}

// Compiled plans inline the callees' cached optimized graphs: drop those caches, and give the root's
// methods new functions on the same (rewritten) graphs, so that their executors start afresh even if
// the model already ran. The new functions carry the originals' qualified names (the serializer checks
// them) and live in the registry (a jit::Method fetched meanwhile may point to one); the originals stay
// in the model's compilation unit and are put back when the last probe set on the type detaches.
// `registered` is set once the type is counted, for release_compiled_code.
void refresh_compiled_code(Registry& reg, const jit::Module& model, const ModelIndex& index,
                           c10::ClassTypePtr& registered) {
  for (auto* function : index.functions) function->clear_optimized_graphs();
  const c10::ClassTypePtr type = model.type();
  RootMethods& root = reg.roots[type.get()];
  if (root.users++ == 0) {
    root.type = type;
    root.originals = type->methods();
  }
  registered = type;
  const std::vector<jit::Function*> methods = type->methods();
  for (jit::Function* method : methods) {
    auto* old_function = jit::tryToGraphFunction(*method);
    if (old_function == nullptr) continue;
    auto fresh = std::make_unique<jit::GraphFunction>(old_function->qualname(), old_function->graph(), nullptr);
    fresh->setSchema(old_function->getSchema());
    type->unsafeRemoveMethod(method->name());
    type->addMethod(fresh.get());
    reg.replacements.push_back(std::move(fresh));
  }
}

// The counterpart of refresh_compiled_code when a probe set detaches: the last one on the type puts
// the original functions back, in their original order.
void release_compiled_code(Registry& reg, const c10::ClassTypePtr& type) {
  const auto found = reg.roots.find(type.get());
  if (found == reg.roots.end() || --found->second.users > 0) return;
  for (jit::Function* original : found->second.originals) {
    if (type->findMethod(original->name()) != nullptr) type->unsafeRemoveMethod(original->name());
    type->addMethod(original);
    if (auto* function = jit::tryToGraphFunction(*original)) function->clear_optimized_graphs();
  }
  reg.roots.erase(found);
}

}  // namespace


struct ScriptProbes::State {
  std::shared_ptr<Core> core = std::make_shared<Core>();
  std::vector<ProbeTarget> targets;
  std::vector<std::string> resolved;
  std::vector<Node*> calls;  // instrumented calls this set holds a use of
  std::vector<std::string> sites;
  std::vector<int> heads;  // per probe: > 0 for an attention module
  std::vector<jit::GraphFunction*> functions;
  std::vector<std::shared_ptr<jit::CompilationUnit>> units;    // keep functions and graphs alive
  std::vector<c10::intrusive_ptr<c10::ivalue::Object>> objects;  // their addresses are route keys
  c10::ClassTypePtr root_type;  // set once its methods are replaced
};

ScriptProbes::ScriptProbes(torch::jit::Module& model, const std::vector<std::string>& names,
                           std::shared_ptr<CaptureSink> sink, bool gradients, bool attention_weights)
    : state_(std::make_unique<State>()) {
  if (!sink) throw UsageError("ScriptProbes: no sink");
  check_layer_names(names);
  State& st = *state_;
  st.core->sink = std::move(sink);
  st.core->gradients = gradients;
  counted_ = st.core;

  const ModelIndex index = index_model(model);
  std::set<std::string> seen;
  for (const auto& name : names) {
    const std::string resolved = resolve_name(index, name);
    if (!seen.insert(resolved).second) {
      throw UsageError(fmt::format("attach(): layer '{}' is listed twice (as '{}')", resolved, name));
    }
    if (index.calls_of.count(resolved) == 0) throw UnsupportedModule(never_called_message(index, resolved));
    st.resolved.push_back(resolved);
  }
  for (std::size_t i = 0; i < names.size(); ++i) {
    const auto& module = index.by_name.at(st.resolved[i]);
    ProbeTarget target;
    target.name = names[i];
    target.module_type = script_type_name(module.type()->name()->qualifiedName());
    target.layout = guess_layout(index, st.resolved[i]);
    if (attention_weights && target.module_type == "torch.nn.modules.activation.MultiheadAttention") {
      if (!module.hasattr("num_heads") || !module.attr("num_heads").isInt() || module.attr("num_heads").toInt() <= 0) {
        throw UnsupportedModule(fmt::format("'{}' ({}) cannot be probed: it has no num_heads attribute", names[i],
                                            target.module_type));
      }
      target.layout = LayerLayout::attention_heads;
      st.heads.push_back(static_cast<int>(module.attr("num_heads").toInt()));
    } else {
      st.heads.push_back(0);
    }
    st.targets.push_back(std::move(target));
    st.objects.push_back(module._ivalue());
    st.core->names.push_back(names[i]);
  }
  st.functions = index.functions;
  st.units = index.units;

  Registry& reg = registry();
  std::lock_guard<std::mutex> lock(reg.mutex);
  try {
    std::vector<Route> new_routes;
    std::vector<std::string> route_sites;
    for (std::size_t i = 0; i < st.resolved.size(); ++i) {
      for (const CallSite& site : index.calls_of.at(st.resolved[i])) {
        const Instrumented& entry = instrument(reg, site, st.heads[i] > 0);
        st.calls.push_back(site.call);
        route_sites.push_back(entry.site);
        new_routes.push_back(Route{st.objects[i].get(), st.core, {static_cast<int>(i)}, st.heads[i]});
      }
    }
    publish_routes(reg, [&](RouteTable& table) {
      for (std::size_t k = 0; k < new_routes.size(); ++k) table[route_sites[k]].push_back(new_routes[k]);
    });
    st.sites = route_sites;
    refresh_compiled_code(reg, model, index, st.root_type);
  } catch (...) {
    if (st.root_type) release_compiled_code(reg, st.root_type);
    for (Node* call : st.calls) uninstrument(reg, call);
    publish_routes(reg, [&](RouteTable& table) {
      for (auto& [site, routes] : table) {
        routes.erase(std::remove_if(routes.begin(), routes.end(),
                                    [&](const Route& r) { return r.core == st.core; }),
                     routes.end());
      }
    });
    throw;
  }
}

ScriptProbes::~ScriptProbes() {
  enable(false);
  State& st = *state_;
  st.core->live.store(false);
  {
    Registry& reg = registry();
    std::lock_guard<std::mutex> lock(reg.mutex);
    publish_routes(reg, [&](RouteTable& table) {
      for (const auto& site : st.sites) {
        auto it = table.find(site);
        if (it == table.end()) continue;
        auto& routes = it->second;
        routes.erase(std::remove_if(routes.begin(), routes.end(), [&](const Route& r) { return r.core == st.core; }),
                     routes.end());
      }
    });
    for (Node* call : st.calls) uninstrument(reg, call);
    for (auto* function : st.functions) function->clear_optimized_graphs();
    if (st.root_type) release_compiled_code(reg, st.root_type);
  }
  // An op or gradient hook that got past `live` finishes before the sink may go.
  st.core->wait_idle(std::nullopt);
}

const std::vector<ProbeTarget>& ScriptProbes::targets() const noexcept { return state_->targets; }

void ScriptProbes::enable(bool on) noexcept {
  if (state_->core->enabled.exchange(on) != on) g_enabled_sets.fetch_add(on ? 1 : -1);
}

bool ScriptProbes::enabled() const noexcept { return state_->core->enabled.load(); }
const std::vector<std::string>& ScriptProbes::resolved_names() const noexcept { return state_->resolved; }

std::string script_type_name(const std::string& qualified_name) {
  std::string out;
  std::size_t start = 0;
  while (start <= qualified_name.size()) {
    const auto dot = qualified_name.find('.', start);
    const std::string atom = qualified_name.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (atom != "__torch__" && atom.rfind("___torch_mangle_", 0) != 0) out = join_path(out, atom);
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return out;
}

std::vector<LayerDescription> describe_script_layers(torch::jit::Module& model) {
  const ModelIndex index = index_model(model);
  std::vector<LayerDescription> out;
  for (const auto& name : index.names) {
    const jit::Module& module = index.by_name.at(name);
    LayerDescription d;
    d.name = name;
    d.module_type = script_type_name(module.type()->name()->qualifiedName());
    for (const auto& p : module.parameters(/*recurse=*/true)) d.parameter_count += p.numel();
    d.probeable = index.calls_of.count(name) > 0;
    if (d.probeable) {
      d.layout = d.module_type == "torch.nn.modules.activation.MultiheadAttention" ? LayerLayout::attention_heads
                                                                                  : guess_layout(index, name);
      d.neurons = neuron_words(d.layout);
    } else {
      d.why_not = never_called_message(index, name);
    }
    out.push_back(std::move(d));
  }
  return out;
}

std::vector<std::string> instrumented_methods(torch::jit::Module& model) {
  const ModelIndex index = index_model(model);
  std::vector<std::string> out;
  for (auto* function : index.functions) {
    bool found = false;
    std::function<void(jit::Block*)> scan = [&](jit::Block* block) {
      for (Node* n : block->nodes()) {
        if (n->kind() == capture_symbol() || n->kind() == observe_symbol() || n->kind() == attention_begin_symbol()) {
          found = true;
        }
        for (jit::Block* b : n->blocks()) scan(b);
      }
    };
    scan(function->graph()->block());
    if (found) out.push_back(function->qualname().qualifiedName());
  }
  return out;
}

}  // namespace neuronmap::detail

TORCH_LIBRARY(neuronmap, m) {
  // CONSERVATIVE: the op has side effects, so dead-code elimination and CSE leave it alone.
  m.def(torch::schema("neuronmap::capture(Any module, str site, Tensor output) -> Tensor",
                      c10::AliasAnalysisKind::CONSERVATIVE),
        torch::CppFunction::makeFromBoxedFunction<&neuronmap::detail::capture_kernel>());
  m.def(torch::schema("neuronmap::observe(Any module, str site, Any output) -> ()",
                      c10::AliasAnalysisKind::CONSERVATIVE),
        torch::CppFunction::makeFromBoxedFunction<&neuronmap::detail::observe_kernel>());
  m.def(torch::schema("neuronmap::attention_begin(Any module, str site) -> ()", c10::AliasAnalysisKind::CONSERVATIVE),
        torch::CppFunction::makeFromBoxedFunction<&neuronmap::detail::attention_begin_kernel>());
}
