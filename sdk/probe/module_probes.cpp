// Probes on the submodules of a live C++ frontend model, through one global RecordFunction callback
// shared by every probe set: a module's outermost op is recognised by the storage of its parameters
// (or, for parameter-free children of a Sequential, by consuming the previous sibling's output).
#include "probe/module_probes.hpp"

#include <ATen/record_function.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <unordered_map>

#include "neuronmap/errors.hpp"
#include "probe/probe_core.hpp"

namespace neuronmap::detail {
namespace {

using torch::nn::Module;

// How a module kind's output is found among the ops it runs.
enum class Role {
  linear,                 // addmm(b, x, w.t()), or matmul(x, w.t()) then add_(out, b)
  parametric,             // its outermost op takes one of its parameters or buffers
  parametric_or_chained,  // parametric when it has parameters (affine norms), else chained
  chained,                // parameter-free: the op consuming the previous Sequential sibling's output
  alias_input,            // Identity: its output is its input
  alias_last_child,       // Sequential: its output is its last child's output
};
enum class LayoutRule { features_last, channels_first, inherit };

struct KindSpec {
  Role role;
  std::vector<std::string> ops;  // outermost op names that compute the output (output 0)
  LayoutRule layout;
};

template <class T>
bool is(const Module& m) {
  return dynamic_cast<const T*>(&m) != nullptr;
}

const KindSpec* kind_of(const Module& m) {
  using namespace torch::nn;
  using P = bool (*)(const Module&);
  constexpr auto F = LayoutRule::features_last;
  constexpr auto C = LayoutRule::channels_first;
  constexpr auto I = LayoutRule::inherit;
  static const std::vector<std::pair<P, KindSpec>> specs = {
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
      {&is<LayerNormImpl>, {Role::parametric_or_chained, {"aten::layer_norm"}, F}},
      {&is<GroupNormImpl>, {Role::parametric_or_chained, {"aten::group_norm"}, C}},
      {&is<BatchNorm1dImpl>, {Role::parametric_or_chained, {"aten::batch_norm"}, C}},
      {&is<BatchNorm2dImpl>, {Role::parametric_or_chained, {"aten::batch_norm"}, C}},
      {&is<BatchNorm3dImpl>, {Role::parametric_or_chained, {"aten::batch_norm"}, C}},
      {&is<InstanceNorm1dImpl>, {Role::parametric_or_chained, {"aten::instance_norm"}, C}},
      {&is<InstanceNorm2dImpl>, {Role::parametric_or_chained, {"aten::instance_norm"}, C}},
      {&is<InstanceNorm3dImpl>, {Role::parametric_or_chained, {"aten::instance_norm"}, C}},
      {&is<ReLUImpl>, {Role::chained, {"aten::relu", "aten::relu_"}, I}},
      {&is<ReLU6Impl>, {Role::chained, {"aten::relu6", "aten::relu6_"}, I}},
      {&is<LeakyReLUImpl>, {Role::chained, {"aten::leaky_relu", "aten::leaky_relu_"}, I}},
      {&is<ELUImpl>, {Role::chained, {"aten::elu", "aten::elu_"}, I}},
      {&is<SELUImpl>, {Role::chained, {"aten::selu", "aten::selu_"}, I}},
      {&is<CELUImpl>, {Role::chained, {"aten::celu", "aten::celu_"}, I}},
      {&is<HardtanhImpl>, {Role::chained, {"aten::hardtanh", "aten::hardtanh_"}, I}},
      {&is<GELUImpl>, {Role::chained, {"aten::gelu"}, I}},
      {&is<SiLUImpl>, {Role::chained, {"aten::silu"}, I}},
      {&is<MishImpl>, {Role::chained, {"aten::mish"}, I}},
      {&is<SigmoidImpl>, {Role::chained, {"aten::sigmoid"}, I}},
      {&is<TanhImpl>, {Role::chained, {"aten::tanh"}, I}},
      {&is<SoftplusImpl>, {Role::chained, {"aten::softplus"}, I}},
      {&is<SoftmaxImpl>, {Role::chained, {"aten::softmax"}, I}},
      {&is<LogSoftmaxImpl>, {Role::chained, {"aten::log_softmax"}, I}},
      {&is<DropoutImpl>, {Role::chained, {"aten::dropout", "aten::dropout_"}, I}},
      {&is<AlphaDropoutImpl>, {Role::chained, {"aten::alpha_dropout", "aten::alpha_dropout_"}, I}},
      {&is<Dropout2dImpl>, {Role::chained, {"aten::feature_dropout", "aten::feature_dropout_"}, C}},
      {&is<Dropout3dImpl>, {Role::chained, {"aten::feature_dropout", "aten::feature_dropout_"}, C}},
      {&is<FeatureAlphaDropoutImpl>,
       {Role::chained, {"aten::feature_alpha_dropout", "aten::feature_alpha_dropout_"}, C}},
      {&is<MaxPool1dImpl>, {Role::chained, {"aten::max_pool1d"}, C}},
      {&is<MaxPool2dImpl>, {Role::chained, {"aten::max_pool2d"}, C}},
      {&is<MaxPool3dImpl>, {Role::chained, {"aten::max_pool3d"}, C}},
      {&is<AvgPool1dImpl>, {Role::chained, {"aten::avg_pool1d"}, C}},
      {&is<AvgPool2dImpl>, {Role::chained, {"aten::avg_pool2d"}, C}},
      {&is<AvgPool3dImpl>, {Role::chained, {"aten::avg_pool3d"}, C}},
      {&is<AdaptiveAvgPool1dImpl>, {Role::chained, {"aten::adaptive_avg_pool1d"}, C}},
      {&is<AdaptiveAvgPool2dImpl>, {Role::chained, {"aten::adaptive_avg_pool2d"}, C}},
      {&is<AdaptiveAvgPool3dImpl>, {Role::chained, {"aten::adaptive_avg_pool3d"}, C}},
      {&is<AdaptiveMaxPool1dImpl>, {Role::chained, {"aten::adaptive_max_pool1d"}, C}},
      {&is<AdaptiveMaxPool2dImpl>, {Role::chained, {"aten::adaptive_max_pool2d"}, C}},
      {&is<AdaptiveMaxPool3dImpl>, {Role::chained, {"aten::adaptive_max_pool3d"}, C}},
      {&is<FlattenImpl>, {Role::chained, {"aten::flatten"}, F}},
      {&is<IdentityImpl>, {Role::alias_input, {}, I}},
      {&is<SequentialImpl>, {Role::alias_last_child, {}, I}},
  };
  for (const auto& [matches, spec] : specs) {
    if (matches(m)) return &spec;
  }
  return nullptr;
}

const void* storage_of(const at::Tensor& t) {
  if (!t.defined() || !t.has_storage()) return nullptr;
  return t.storage().unsafeGetStorageImpl();
}

// Direct parameters and buffers (not those of submodules).
std::vector<at::Tensor> own_tensors(const Module& m) {
  std::vector<at::Tensor> out = m.parameters(/*recurse=*/false);
  for (auto& b : m.buffers(/*recurse=*/false)) out.push_back(std::move(b));
  out.erase(std::remove_if(out.begin(), out.end(), [](const at::Tensor& t) { return storage_of(t) == nullptr; }),
            out.end());
  return out;
}

// ---------------------------------------------------------------------------------------------
// What the callbacks read: an immutable table per probe set, republished on every enable(true).

struct Tracked {
  std::string name;
  std::string module_type;
  std::shared_ptr<Module> module;  // while resolving only: tables must not keep a model alive
  const KindSpec* spec = nullptr;
  bool by_storage = false;         // else found by chaining from a predecessor
  bool linear_bias = false;        // Linear whose matmul path ends with add_(out, bias)
  std::vector<int> probe_indices;  // empty: tracked only so that a successor can be found
  std::vector<int> successors;     // chained modules consuming this one's output
  OutputLayout layout = OutputLayout::features_last;

  bool computed_by(const char* op) const {
    for (const auto& name : spec->ops) {
      if (std::strcmp(name.c_str(), op) == 0) return true;
    }
    return false;
  }
};

// What outlives table versions: identity, and the sink, counters and lifetime handshake (ProbeCore).
struct Core : ProbeCore {
  std::uint64_t id = 0;
};

struct Table {
  std::shared_ptr<Core> core;
  std::shared_ptr<const std::vector<Tracked>> tracked;
  std::unordered_map<const void*, std::vector<int>> by_storage;
};
using Snapshot = std::vector<std::shared_ptr<const Table>>;

// `modules[i]` is tracked module i when it is found by storage, else null.
std::shared_ptr<const Table> build_table(const std::shared_ptr<Core>& core,
                                         const std::shared_ptr<const std::vector<Tracked>>& tracked,
                                         const std::vector<std::shared_ptr<Module>>& modules) {
  auto table = std::make_shared<Table>();
  table->core = core;
  table->tracked = tracked;
  for (std::size_t i = 0; i < tracked->size(); ++i) {
    if (!modules[i]) continue;
    for (const auto& tensor : own_tensors(*modules[i])) {
      auto& list = table->by_storage[storage_of(tensor)];
      if (std::find(list.begin(), list.end(), static_cast<int>(i)) == list.end()) list.push_back(static_cast<int>(i));
    }
  }
  return table;
}

// ---------------------------------------------------------------------------------------------
// Process-wide registry: one callback for every probe set, disabled while none is enabled.

struct Registry {
  std::mutex mutex;
  std::map<std::uint64_t, std::shared_ptr<const Table>> enabled;
  int instances = 0;
  std::optional<at::CallbackHandle> handle;
  bool callback_on = false;
  std::uint64_t next_id = 1;
};
Registry& registry() {
  static auto* r = new Registry();  // never destroyed: callbacks may run during static destruction
  return *r;
}
auto* const g_snapshot = new std::shared_ptr<const Snapshot>(std::make_shared<Snapshot>());
std::atomic<std::uint64_t> g_generation{1};

void publish_locked(Registry& r) {
  auto snapshot = std::make_shared<Snapshot>();
  for (const auto& entry : r.enabled) snapshot->push_back(entry.second);
  std::atomic_store(g_snapshot, std::shared_ptr<const Snapshot>(std::move(snapshot)));
  g_generation.fetch_add(1, std::memory_order_acq_rel);
  const bool want = !r.enabled.empty();
  if (r.handle && want != r.callback_on) {
    if (want) {
      at::reenableCallback(*r.handle);
    } else {
      at::disableCallback(*r.handle);
    }
    r.callback_on = want;
  }
}

// ---------------------------------------------------------------------------------------------
// Per-thread state of the callbacks.

using WeakTensor = c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>;

struct Match {
  std::shared_ptr<const Table> table;
  int tracked;
  bool linear_matmul;  // not the output yet: wait for add_(out, bias)
};

// A tensor whose next consumer (on this thread) computes a tracked module's output.
struct Pending {
  std::uint64_t table_id;
  WeakTensor tensor;  // weak: never keeps an activation alive, and its address cannot be reused
  int tracked;
  bool linear_add;
};

struct ThreadState {
  int depth = 0;  // nesting of FUNCTION-scope ops; only depth-0 ops are a module's own
  std::uint64_t generation = 0;
  std::shared_ptr<const Snapshot> snapshot;
  std::vector<Match> current;  // matches of the running outermost op
  std::vector<Pending> pending;
};

// Trivially destructible thread_locals stay readable until the thread ends, even after the owner
// below is destroyed, so a callback during thread exit finds nullptr instead of a dead object.
thread_local ThreadState* t_state = nullptr;
thread_local bool t_state_gone = false;
struct ThreadStateOwner {
  ~ThreadStateOwner() {
    delete t_state;
    t_state = nullptr;
    t_state_gone = true;
  }
};
ThreadState* thread_state() noexcept {
  if (t_state != nullptr) return t_state;
  if (t_state_gone) return nullptr;
  try {
    thread_local ThreadStateOwner owner;
    t_state = new ThreadState();
  } catch (...) {
    return nullptr;  // out of memory: this op runs unprobed
  }
  return t_state;
}

template <class F>
void for_each_tensor(c10::ArrayRef<const c10::IValue> inputs, F&& f) {
  for (const auto& v : inputs) {
    if (v.isTensor()) {
      if (f(v.toTensor())) return;
    } else if (v.isList()) {
      for (const auto& e : v.toListRef()) {
        if (e.isTensor() && f(e.toTensor())) return;
      }
    }
  }
}

bool consumes(c10::ArrayRef<const c10::IValue> inputs, const c10::TensorImpl* impl) {
  bool found = false;
  for_each_tensor(inputs, [&](const at::Tensor& t) { return found = (t.unsafeGetTensorImpl() == impl); });
  return found;
}

void add_pending(ThreadState& ts, std::uint64_t table_id, const at::Tensor& tensor, int tracked, bool linear_add) {
  constexpr std::size_t kMaxPending = 64;
  auto& p = ts.pending;
  p.erase(std::remove_if(p.begin(), p.end(),
                         [&](const Pending& e) {
                           return e.tensor.expired() ||
                                  (e.table_id == table_id && e.tracked == tracked && e.linear_add == linear_add);
                         }),
          p.end());
  if (p.size() >= kMaxPending) p.erase(p.begin());
  p.push_back(Pending{table_id, WeakTensor(tensor.getIntrusivePtr()), tracked, linear_add});
}

void match_op(ThreadState& ts, const std::shared_ptr<const Table>& table, const char* op,
              c10::ArrayRef<const c10::IValue> inputs) {
  const auto& tracked = *table->tracked;
  const std::uint64_t id = table->core->id;
  int found = -1;
  bool linear_matmul = false;

  // An op consuming a tensor this thread waits on: a chained module, or Linear's bias add_.
  for (std::size_t i = 0; i < ts.pending.size() && found < 0;) {
    Pending& p = ts.pending[i];
    if (p.table_id != id) {
      ++i;
      continue;
    }
    if (p.tensor.expired()) {
      ts.pending.erase(ts.pending.begin() + static_cast<std::ptrdiff_t>(i));
      continue;
    }
    const c10::TensorImpl* impl = p.tensor._unsafe_get_target();
    if (!consumes(inputs, impl)) {
      ++i;
      continue;
    }
    if (p.linear_add) {
      // F::linear runs `output += bias` right after the matmul; anything else ends that chain.
      if (std::strcmp(op, "aten::add_") == 0 && inputs[0].isTensor() &&
          inputs[0].toTensor().unsafeGetTensorImpl() == impl) {
        found = p.tracked;
      }
      ts.pending.erase(ts.pending.begin() + static_cast<std::ptrdiff_t>(i));
    } else if (tracked[p.tracked].computed_by(op)) {
      found = p.tracked;
      ts.pending.erase(ts.pending.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;  // e.g. a user's clone() of the tensor between two children: keep waiting
    }
  }

  if (found < 0 && !table->by_storage.empty()) {
    for_each_tensor(inputs, [&](const at::Tensor& t) {
      auto it = table->by_storage.find(storage_of(t));
      if (it == table->by_storage.end()) return false;
      for (int candidate : it->second) {
        if (tracked[candidate].computed_by(op)) {
          found = candidate;
          linear_matmul = tracked[candidate].linear_bias && std::strcmp(op, "aten::matmul") == 0;
          return true;
        }
      }
      return false;
    });
  }
  if (found < 0 || !table->core->acquire()) return;
  ts.current.push_back(Match{table, found, linear_matmul});
}

void emit(ThreadState& ts, const Table& table, int index, const at::Tensor& out) {
  const Tracked& t = (*table.tracked)[index];
  Core& core = *table.core;
  deliver_output(core, t.probe_indices, t.name, out);
  for (int successor : t.successors) add_pending(ts, core.id, out, successor, /*linear_add=*/false);
}

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  ThreadState* ts = thread_state();
  if (ts == nullptr || ts->depth++ != 0) return nullptr;
  try {
    const std::uint64_t generation = g_generation.load(std::memory_order_acquire);
    if (ts->generation != generation) {
      ts->snapshot = std::atomic_load(g_snapshot);
      ts->generation = generation;
    }
    if (!ts->snapshot || ts->snapshot->empty()) return nullptr;
    const char* op = fn.name();
    const auto inputs = fn.inputs();  // valid only here, not in the end callback
    for (const auto& table : *ts->snapshot) {
      try {
        match_op(*ts, table, op, inputs);
      } catch (const std::exception& e) {
        table->core->record_error(e.what());
      } catch (...) {
        table->core->record_error("unknown exception in probe start callback");
      }
    }
  } catch (...) {
    // Nothing to attribute it to (snapshot load); the op runs unprobed.
  }
  return nullptr;
}

void on_end(const at::RecordFunction& fn, at::ObserverContext* /*ctx*/) {
  ThreadState* ts = thread_state();
  if (ts == nullptr) return;
  if (--ts->depth > 0) return;
  ts->depth = 0;
  if (ts->current.empty()) return;
  at::RecordFunctionGuard no_recording(false);  // the sink's own ops must not re-enter
  const auto& outputs = fn.outputs();
  for (auto& match : ts->current) {
    Core& core = *match.table->core;
    try {
      if (outputs.empty() || !outputs[0].isTensor()) {
        throw std::runtime_error(std::string("op ") + fn.name() + " of '" +
                                 (*match.table->tracked)[match.tracked].name + "' returned no tensor");
      }
      const at::Tensor& out = outputs[0].toTensor();
      if (match.linear_matmul) {
        add_pending(*ts, core.id, out, match.tracked, /*linear_add=*/true);
      } else {
        emit(*ts, *match.table, match.tracked, out);
      }
    } catch (const std::exception& e) {
      core.record_error(e.what());
    } catch (...) {
      core.record_error("unknown exception in probe end callback");
    }
    core.release();
  }
  ts->current.clear();
}

// ---------------------------------------------------------------------------------------------
// Resolving names to tracked modules, with the reasons when that is impossible.

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

struct Resolved {
  int tracked = -1;
  OutputLayout layout = OutputLayout::features_last;
};

class Resolver {
 public:
  explicit Resolver(Module& root) : root_(root) {
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

  const std::vector<std::string>& names() const { return names_; }
  std::vector<Tracked>& tracked() { return tracked_; }

  std::shared_ptr<Module> find(const std::string& name) const {
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

  /// The tracked module whose output is `name`'s output; throws UnsupportedModule saying why not.
  Resolved resolve(const std::string& name) {
    if (auto it = done_.find(name); it != done_.end()) return it->second;
    if (auto it = failed_.find(name); it != failed_.end()) throw UnsupportedModule(it->second);
    if (!in_progress_.insert(name).second) throw UnsupportedModule("'" + name + "' is its own predecessor");
    try {
      Resolved r = resolve_uncached(name);
      in_progress_.erase(name);
      done_.emplace(name, r);
      return r;
    } catch (const UnsupportedModule& e) {
      in_progress_.erase(name);
      failed_.emplace(name, e.what());
      throw;
    }
  }

 private:
  std::string describe(const std::string& name) const {
    return "'" + name + "' (" + modules_.at(name)->name() + ")";
  }

  Resolved resolve_uncached(const std::string& name) {
    const std::shared_ptr<Module>& module = modules_.at(name);
    const KindSpec* spec = kind_of(*module);
    if (spec == nullptr) throw UnsupportedModule(unknown_kind_message(name));
    switch (spec->role) {
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
      case Role::linear:
      case Role::parametric:
      case Role::parametric_or_chained:
        if (!own_tensors(*module).empty()) return track_parametric(name, module, spec);
        if (spec->role != Role::parametric_or_chained) {
          throw UnsupportedModule(describe(name) + " cannot be probed: it has no parameters to recognise its op by.");
        }
        [[fallthrough]];
      case Role::chained:
        return track_chained(name, module, spec);
    }
    throw UnsupportedModule(describe(name) + " cannot be probed.");
  }

  Resolved track_parametric(const std::string& name, const std::shared_ptr<Module>& module, const KindSpec* spec) {
    check_not_shared(name, *module, spec);
    Resolved r;
    r.layout = spec->layout == LayoutRule::channels_first ? OutputLayout::channels_first : OutputLayout::features_last;
    for (std::size_t i = 0; i < tracked_.size(); ++i) {
      if (tracked_[i].by_storage && tracked_[i].module == module) {
        r.tracked = static_cast<int>(i);
        return r;
      }
    }
    Tracked t;
    t.name = name;
    t.module_type = module->name();
    t.module = module;
    t.spec = spec;
    t.by_storage = true;
    if (spec->role == Role::linear) {
      t.linear_bias = dynamic_cast<torch::nn::LinearImpl&>(*module).bias.defined();
    }
    t.layout = r.layout;
    tracked_.push_back(std::move(t));
    r.tracked = static_cast<int>(tracked_.size()) - 1;
    return r;
  }

  Resolved track_chained(const std::string& name, const std::shared_ptr<Module>& module, const KindSpec* spec) {
    const Resolved producer = producer_of_input(
        name, "it has no parameters, so its " + spec->ops.front() + " cannot be told apart from any other");
    Tracked t;
    t.name = name;
    t.module_type = module->name();
    t.spec = spec;
    t.layout = spec->layout == LayoutRule::inherit          ? producer.layout
               : spec->layout == LayoutRule::channels_first ? OutputLayout::channels_first
                                                            : OutputLayout::features_last;
    tracked_.push_back(std::move(t));
    const int index = static_cast<int>(tracked_.size()) - 1;
    tracked_[producer.tracked].successors.push_back(index);
    return Resolved{index, tracked_[index].layout};
  }

  // The tracked module whose output is `name`'s input: its previous sibling in a Sequential (or,
  // for a first child, whatever feeds that Sequential).
  Resolved producer_of_input(const std::string& name, const std::string& why_needed) {
    const std::string parent_name = parent_of(name);
    Module& parent = parent_name.empty() ? root_ : *modules_.at(parent_name);
    const std::string parent_label = parent_name.empty() ? "the model" : "'" + parent_name + "'";
    auto fail = [&](const std::string& reason) -> UnsupportedModule {
      return UnsupportedModule(describe(name) + " cannot be probed: " + why_needed + ", so it is found only as the "
                               "next op on its previous sibling's output inside a torch::nn::Sequential, and " +
                               reason);
    };
    if (!is<torch::nn::SequentialImpl>(parent)) {
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
    if (parent_name.empty()) {
      throw fail("it is the first module of the model, so its input is the model's input. Probe a later layer.");
    }
    return producer_of_input(parent_name, why_needed);
  }

  void check_not_shared(const std::string& name, const Module& module, const KindSpec* spec) const {
    for (const auto& t : own_tensors(module)) {
      for (const Module* other : owners_.at(storage_of(t))) {
        if (other == &module) continue;
        const KindSpec* other_spec = kind_of(*other);
        const bool same_ops =
            other_spec != nullptr &&
            std::any_of(other_spec->ops.begin(), other_spec->ops.end(), [&](const std::string& op) {
              return std::find(spec->ops.begin(), spec->ops.end(), op) != spec->ops.end();
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

  std::string unknown_kind_message(const std::string& name) const {
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
           "BatchNorm1d/2d/3d, InstanceNorm1d/2d/3d, LSTM, GRU, RNN, Sequential, and activations, dropout, "
           "pooling, Flatten and Identity inside a Sequential.";
  }

  Module& root_;
  std::map<std::string, std::shared_ptr<Module>> modules_;
  std::vector<std::string> names_;
  std::unordered_map<const Module*, std::string> first_name_;
  std::unordered_map<const void*, std::vector<const Module*>> owners_;
  std::vector<Tracked> tracked_;
  std::map<std::string, Resolved> done_;
  std::map<std::string, std::string> failed_;
  std::set<std::string> in_progress_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------

struct ModuleProbes::State {
  std::shared_ptr<Core> core;
  std::shared_ptr<const std::vector<Tracked>> tracked;
  std::vector<std::shared_ptr<Module>> modules;  // parallel to tracked: those found by storage
  std::vector<ProbeTarget> targets;
  std::atomic<bool> on{false};
  std::mutex enable_mutex;  // one enable() at a time per probe set
};

ModuleProbes::ModuleProbes(torch::nn::Module& model, const std::vector<std::string>& names,
                           std::shared_ptr<CaptureSink> sink, bool gradients)
    : state_(std::make_unique<State>()) {
  if (!sink) throw UsageError("ModuleProbes needs a sink");
  Resolver resolver(model);
  for (std::size_t i = 0; i < names.size(); ++i) {
    const auto module = resolver.find(names[i]);
    const Resolved r = resolver.resolve(names[i]);
    resolver.tracked()[r.tracked].probe_indices.push_back(static_cast<int>(i));
    state_->targets.push_back(ProbeTarget{names[i], module->name(), r.layout});
  }
  for (auto& t : resolver.tracked()) state_->modules.push_back(t.by_storage ? std::move(t.module) : nullptr);
  state_->tracked = std::make_shared<const std::vector<Tracked>>(std::move(resolver.tracked()));
  state_->core = std::make_shared<Core>();
  state_->core->sink = std::move(sink);
  state_->core->gradients = gradients;
  counted_ = state_->core;

  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  state_->core->id = r.next_id++;
  if (r.instances++ == 0) {
    r.handle = at::addGlobalCallback(at::RecordFunctionCallback(&on_start, &on_end)
                                         .needsInputs(true)
                                         .needsOutputs(true)
                                         .scopes({at::RecordScope::FUNCTION}));
    at::disableCallback(*r.handle);
    r.callback_on = false;
  }
}

ModuleProbes::~ModuleProbes() {
  Core& core = *state_->core;
  core.live.store(false);
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    r.enabled.erase(core.id);
    publish_locked(r);
    if (--r.instances == 0 && r.handle) {
      at::removeCallback(*r.handle);
      r.handle.reset();
      r.callback_on = false;
    }
  }
  // Wait for ops already matched on other threads, so that the sink is never called after this
  // returns; skip it when called from inside one of our own callbacks (it would wait for itself).
  bool inside_own_callback = false;
  if (ThreadState* ts = t_state) {
    for (const auto& m : ts->current) inside_own_callback |= (m.table->core.get() == &core);
  }
  if (!inside_own_callback) core.wait_idle(std::chrono::seconds(10));
  if (core.in_flight.load() == 0) core.sink.reset();  // stale per-thread snapshots keep only the table
}

const std::vector<ProbeTarget>& ModuleProbes::targets() const noexcept { return state_->targets; }

void ModuleProbes::enable(bool on) noexcept {
  try {
    std::lock_guard<std::mutex> enable_lock(state_->enable_mutex);
    // Re-read parameter storages on every enable: model.to(...) after attach replaces them.
    std::shared_ptr<const Table> table = on ? build_table(state_->core, state_->tracked, state_->modules) : nullptr;
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    if (on) {
      r.enabled[state_->core->id] = std::move(table);
    } else {
      r.enabled.erase(state_->core->id);
    }
    publish_locked(r);
    state_->on.store(on);
  } catch (const std::exception& e) {
    state_->core->record_error(e.what());
  } catch (...) {
    state_->core->record_error("unknown exception in ModuleProbes::enable");
  }
}

bool ModuleProbes::enabled() const noexcept { return state_->on.load(); }

std::vector<std::string> module_names(torch::nn::Module& model) {
  return model.named_modules(/*name_prefix=*/"", /*include_self=*/false).keys();
}

std::vector<LayerInfo> describe_layers(torch::nn::Module& model) {
  Resolver resolver(model);
  std::vector<LayerInfo> out;
  for (const auto& item : model.named_modules(/*name_prefix=*/"", /*include_self=*/false)) {
    LayerInfo info;
    info.name = item.key();
    info.module_type = item.value()->name();
    for (const auto& p : item.value()->parameters(/*recurse=*/true)) info.parameter_count += p.numel();
    try {
      info.layout = resolver.resolve(item.key()).layout;
      info.probeable = true;
    } catch (const UnsupportedModule& e) {
      info.why_not = e.what();
    }
    out.push_back(std::move(info));
  }
  return out;
}

}  // namespace neuronmap::detail
