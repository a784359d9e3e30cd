// The shared RecordFunction callback of the C++ frontend probes: see op_callback.hpp. Compiled with
// NDEBUG in every build type (sdk/CMakeLists.txt): RecordFunction::inputs() asserts on a flag the
// Release-built LibTorch never sets.
#include "probe/op_callback.hpp"

#include <ATen/record_function.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "probe/attention_span.hpp"
#include "probe/call_site.hpp"

namespace neuronmap::detail {
namespace {

// What the callbacks read: an immutable table per probe set, republished on every enable(true).
struct Table {
  std::shared_ptr<ModuleProbeCore> core;
  std::shared_ptr<const std::vector<TrackedModule>> tracked;
  std::unordered_map<const void*, std::vector<int>> by_storage;
  std::unordered_map<const void*, int> attention_begin;  // a MultiheadAttention's own parameters
  std::unordered_map<const void*, int> attention_end;    // its out_proj's parameters
  std::vector<int> by_type;  // parameter-free modules found by their type's forward on the stack
};
// The tables of every enabled probe set, as one immutable list.
using EnabledTables = std::vector<std::shared_ptr<const Table>>;

// `modules[i]` is tracked module i when it is found by storage, else null.
std::shared_ptr<const Table> build_table(const std::shared_ptr<ModuleProbeCore>& core,
                                         const std::shared_ptr<const std::vector<TrackedModule>>& tracked,
                                         const std::vector<std::shared_ptr<torch::nn::Module>>& modules) {
  auto table = std::make_shared<Table>();
  table->core = core;
  table->tracked = tracked;
  for (std::size_t i = 0; i < tracked->size(); ++i) {
    if (!(*tracked)[i].caller_code.empty()) table->by_type.push_back(static_cast<int>(i));
    if (!modules[i]) continue;
    if ((*tracked)[i].attention_heads > 0) {
      for (const auto& tensor : own_tensors(*modules[i])) table->attention_begin[storage_of(tensor)] = static_cast<int>(i);
      for (const auto& child : modules[i]->named_children()) {
        if (child.key() != "out_proj") continue;
        for (const auto& tensor : own_tensors(*child.value())) table->attention_end[storage_of(tensor)] = static_cast<int>(i);
      }
      continue;
    }
    for (const auto& tensor : own_tensors(*modules[i])) {
      auto& list = table->by_storage[storage_of(tensor)];
      if (std::find(list.begin(), list.end(), static_cast<int>(i)) == list.end()) list.push_back(static_cast<int>(i));
    }
  }
  return table;
}

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
auto* const g_enabled_tables = new std::shared_ptr<const EnabledTables>(std::make_shared<EnabledTables>());
std::atomic<std::uint64_t> g_generation{1};

void publish_locked(Registry& r) {
  auto tables = std::make_shared<EnabledTables>();
  for (const auto& entry : r.enabled) tables->push_back(entry.second);
  std::atomic_store(g_enabled_tables, std::shared_ptr<const EnabledTables>(std::move(tables)));
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
  std::shared_ptr<const EnabledTables> tables;
  std::vector<Match> current;  // matches of the running outermost op
  std::vector<Pending> pending;
  std::vector<std::pair<std::uint64_t, int>> attention_open;  // (table id, tracked) spans without their softmax yet
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

// MultiheadAttention: an op on its own (in-projection) parameters opens its span on this thread, the
// first softmax after that is its per-head weights, an op on out_proj's parameters closes the span.
// Nothing else runs in between (its forward is one function), so the softmax is the module's own.
int match_attention(ThreadState& ts, const Table& table, const char* op, c10::ArrayRef<const c10::IValue> inputs) {
  const std::uint64_t id = table.core->id;
  auto& open = ts.attention_open;
  if (std::strcmp(op, "aten::softmax") == 0) {
    for (auto it = open.begin(); it != open.end(); ++it) {
      if (it->first != id) continue;
      const int tracked = it->second;
      open.erase(it);
      return tracked;
    }
    return -1;
  }
  int begin = -1;
  int end = -1;
  for_each_tensor(inputs, [&](const at::Tensor& t) {
    const void* storage = storage_of(t);
    if (auto b = table.attention_begin.find(storage); b != table.attention_begin.end()) begin = b->second;
    if (auto e = table.attention_end.find(storage); e != table.attention_end.end()) end = e->second;
    return false;
  });
  auto close = [&](int tracked) {
    open.erase(std::remove(open.begin(), open.end(), std::make_pair(id, tracked)), open.end());
  };
  if (end >= 0) close(end);
  if (begin < 0) return -1;
  if (fused_attention_op(op)) {
    close(begin);
    table.core->record_error(std::string("'") + (*table.tracked)[begin].name + "' ran PyTorch's fused attention (" +
                             op + "), which computes the weights inside one kernel: nothing captured for that call "
                             "(it is taken in inference without autograd; train, or run with autograd on)");
    return -1;
  }
  if (std::find(open.begin(), open.end(), std::make_pair(id, begin)) == open.end()) open.emplace_back(id, begin);
  return -1;
}

void match_op(ThreadState& ts, const std::shared_ptr<const Table>& table, const char* op,
              c10::ArrayRef<const c10::IValue> inputs) {
  const auto& tracked = *table->tracked;
  const std::uint64_t id = table->core->id;
  int found = -1;
  bool linear_matmul = false;

  if (!table->attention_begin.empty()) found = match_attention(ts, *table, op, inputs);

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
  // A module found by its type: an op of its kind whose call comes from the type's own forward (a
  // functional call of the same op has no such frame). The stack walk costs about 2 us (a functional
  // call's walks all kCallSiteMaxFrames frames), so it runs only for ops of such a module's kind.
  for (std::size_t i = 0; i < table->by_type.size() && found < 0; ++i) {
    const TrackedModule& candidate = tracked[table->by_type[i]];
    if (candidate.computed_by(op) && called_from(candidate.caller_code)) found = table->by_type[i];
  }
  if (found < 0 || !table->core->acquire()) return;
  ts.current.push_back(Match{table, found, linear_matmul});
}

void emit(ThreadState& ts, const Table& table, int index, const at::Tensor& out) {
  const TrackedModule& t = (*table.tracked)[index];
  ModuleProbeCore& core = *table.core;
  if (t.attention_heads > 0) {
    // softmax over [B*H, T, S]; detached: nothing downstream uses this view, so a gradient hook on it would never fire
    if (out.dim() != 3 || out.size(0) % t.attention_heads != 0) {
      throw std::runtime_error("the softmax of '" + t.name + "' is not [batch*heads, queries, keys]");
    }
    deliver_output(core, t.probe_indices, t.name,
                   out.detach().view({out.size(0) / t.attention_heads, t.attention_heads, out.size(1), out.size(2)}));
    return;
  }
  deliver_output(core, t.probe_indices, t.name, out);
  for (int successor : t.successors) add_pending(ts, core.id, out, successor, /*linear_add=*/false);
}

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  ThreadState* ts = thread_state();
  if (ts == nullptr || ts->depth++ != 0) return nullptr;
  try {
    const std::uint64_t generation = g_generation.load(std::memory_order_acquire);
    if (ts->generation != generation) {
      ts->tables = std::atomic_load(g_enabled_tables);
      ts->generation = generation;
    }
    if (!ts->tables || ts->tables->empty()) return nullptr;
    const char* op = fn.name();
    const auto inputs = fn.inputs();  // valid only here, not in the end callback
    for (const auto& table : *ts->tables) {
      try {
        match_op(*ts, table, op, inputs);
      } catch (const std::exception& e) {
        table->core->record_error(e.what());
      } catch (...) {
        table->core->record_error("unknown exception in probe start callback");
      }
    }
  } catch (...) {
    // Nothing to attribute it to (loading the tables); the op runs unprobed.
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
    ModuleProbeCore& core = *match.table->core;
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

}  // namespace

void add_callback_user(ModuleProbeCore& core) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  core.id = r.next_id++;
  if (r.instances++ == 0) {
    r.handle = at::addGlobalCallback(at::RecordFunctionCallback(&on_start, &on_end)
                                         .needsInputs(true)
                                         .needsOutputs(true)
                                         .scopes({at::RecordScope::FUNCTION}));
    at::disableCallback(*r.handle);
    r.callback_on = false;
  }
}

void remove_callback_user(const ModuleProbeCore& core) {
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

void publish_callback_table(const std::shared_ptr<ModuleProbeCore>& core,
                            const std::shared_ptr<const std::vector<TrackedModule>>& tracked,
                            const std::vector<std::shared_ptr<torch::nn::Module>>& modules, bool on) {
  std::shared_ptr<const Table> table = on ? build_table(core, tracked, modules) : nullptr;
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  if (on) {
    r.enabled[core->id] = std::move(table);
  } else {
    r.enabled.erase(core->id);
  }
  publish_locked(r);
}

bool inside_callback_of(const ModuleProbeCore& core) noexcept {
  bool inside = false;
  if (ThreadState* ts = t_state) {
    for (const auto& m : ts->current) inside |= (m.table->core.get() == &core);
  }
  return inside;
}

}  // namespace neuronmap::detail
