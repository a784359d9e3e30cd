// attach() and Session: wires the probes (torch side) to the engine (torch-free). The sink turns each
// captured output into samples x neurons on the tensor's own device and copies it into a pooled buffer.
#include "neuronmap/session.hpp"

#include <chrono>
#include <ctime>
#include <mutex>
#include <optional>

#include <fmt/format.h>
#include <ATen/record_function.h>
#include <torch/torch.h>
#include <torch/version.h>  // TORCH_VERSION

#include "detail/json_writer.hpp"
#include "neuronmap/errors.hpp"
#include "neuronmap/version.hpp"
#include "probe/module_probes.hpp"
#include "probe/probe_core.hpp"
#include "probe/rows.hpp"
#include "session/device_reduction.hpp"
#include "session/make_session.hpp"
#include "session/testing.hpp"
#include "store/run_file.hpp"
#include "store/run_lock.hpp"
#include "detail/iso_time.hpp"
#include "stream/accumulator.hpp"
#include "stream/engine.hpp"

namespace neuronmap {
namespace detail {
namespace {

// The session's options as the run file's options_json attribute (a distributed run adds its size).
std::string options_json(const Options& o) {
  const auto& g = o.grouping();
  JsonWriter w(JsonLayout::compact);
  w.begin_object();
  w.field("every", o.every()).field("file", o.file()).field("overwrite", o.overwrite());
  w.field("queue_capacity", o.queue_capacity()).field("overflow", to_string(o.overflow()));
  w.field("workers", o.workers()).field("analysis_threads", o.analysis_threads());
  w.field("worker_priority", to_string(o.worker_priority()));
  w.field("products", to_string(o.products())).field("overhead_budget", o.overhead_budget());
  w.field("reduce_on_device", o.reduce_on_device());
  w.field("max_batches", o.max_batches()).field("spatial", to_string(o.spatial()));
  w.field("sequence", to_string(o.sequence())).field("reservoir_size", o.reservoir_size()).field("seed", o.seed());
  w.field("store_correlation", o.store_correlation()).field("transform", static_cast<bool>(o.transform()));
  w.key("grouping").begin_object();
  w.field("method", to_string(g.method)).field("threshold", g.threshold).field("min_group_size", g.min_group_size);
  w.field("n_groups", g.n_groups).field("n_init", g.n_init).field("seed", g.seed);
  w.end_object();
  if (o.communicator()) w.key("process_group").begin_object().field("size", o.communicator()->size()).end_object();
  w.end_object();
  return w.take();
}

class EngineSink final : public CaptureSink {
 public:
  void bind(Engine* engine, std::vector<ProbeTarget> targets) {
    const auto& options = engine->options();
    DeviceReduction::Settings settings;
    settings.reservoir_size = options.reservoir_size();
    settings.seed = options.seed();
    settings.float32_products = options.products() == Products::float32;
    if (const auto& communicator = options.communicator()) {
      settings.world = communicator->size();
      settings.rank = communicator->rank();
    }
    for (std::size_t i = 0; i < targets.size(); ++i) device_.push_back(std::make_unique<OnDevice>(settings));
    targets_ = std::move(targets);
    engine_ = engine;
  }

  // Hands every layer's device totals to the workers: before the window they belong to is sealed.
  void flush_device_totals() noexcept {
    for (std::size_t i = 0; i < device_.size(); ++i) {
      std::lock_guard<std::mutex> lock(device_[i]->mutex);
      if (device_[i]->reduction.pending_batches() > 0) hand_over(static_cast<int>(i), *device_[i]);
    }
  }

  // Per sample and neuron: mean |dL/da| and mean a * dL/da, side by side in one batch.
  void on_gradient(int probe_index, const at::Tensor& output, const at::Tensor& gradient) noexcept override {
    Engine* engine = engine_;
    if (engine == nullptr) return;
    try {
      const auto& target = targets_[static_cast<std::size_t>(probe_index)];
      const auto& options = engine->options();
      const bool on_device = reduce_here(target, output, options);
      BatchTicket ticket =
          engine->begin_batch(probe_index, /*gradient=*/true, on_device ? Engine::Route::probe : Engine::Route::queue);
      if (!ticket) return;
      at::RecordFunctionGuard no_recording(false);
      at::NoGradGuard no_grad;
      const auto layout = target.layout;
      const at::Tensor g = gradient.detach().to(at::kFloat);
      const at::Tensor a = output.detach().to(at::kFloat);
      if (on_device) {
        auto& device = *device_[static_cast<std::size_t>(probe_index)];
        std::lock_guard<std::mutex> lock(device.mutex);
        if (device.reduction.window() != ticket.window() && device.reduction.pending_batches() > 0)
          hand_over(probe_index, device);
        device.reduction.add_gradient(to_rows(g.abs(), layout, options, true), to_rows(a * g, layout, options, true),
                                      ticket.window());
        engine->consume(std::move(ticket));
        if (device.reduction.pending_batches() >= DeviceReduction::kFlushBatches) hand_over(probe_index, device);
        return;
      }
      const at::Tensor rows = at::cat({to_rows(g.abs(), layout, options, true), to_rows(a * g, layout, options, true)}, 1);
      float* dest = ticket.reserve_values(rows.size(0), rows.size(1));
      at::from_blob(dest, {rows.size(0), rows.size(1)}, at::TensorOptions().dtype(at::kFloat)).copy_(rows);
      engine->submit(std::move(ticket));
    } catch (const std::exception& e) {
      engine->report_probe_error(probe_index, fmt::format("gradient probe '{}': {}",
                                                          targets_[static_cast<std::size_t>(probe_index)].name,
                                                          e.what()));
    } catch (...) {
      engine->report_probe_error(probe_index, "gradient probe: unknown error");
    }
  }

  void on_output(int probe_index, const at::Tensor& output) noexcept override {
    Engine* engine = engine_;
    if (engine == nullptr) return;
    try {
      if (engine->reference_mode()) {
        at::RecordFunctionGuard no_recording(false);
        at::NoGradGuard no_grad;
        const auto& target = targets_[static_cast<std::size_t>(probe_index)];
        const at::Tensor rows = to_rows(output, target.layout, engine->options()).to(at::kCPU, at::kFloat).contiguous();
        engine->add_reference_rows(probe_index, rows.data_ptr<float>(), rows.size(0), rows.size(1));
        return;
      }
      const auto& target = targets_[static_cast<std::size_t>(probe_index)];
      const bool on_device = reduce_here(target, output, engine->options());
      const bool attention = target.layout == LayerLayout::attention_heads && output.dim() == 4;
      const auto route = on_device ? Engine::Route::probe : attention ? Engine::Route::queue_large : Engine::Route::queue;
      BatchTicket ticket = engine->begin_batch(probe_index, /*gradient=*/false, route);
      if (!ticket) return;
      at::RecordFunctionGuard no_recording(false);
      at::NoGradGuard no_grad;
      const at::Tensor rows = to_rows(output, target.layout, engine->options());
      if (on_device) {
        auto& device = *device_[static_cast<std::size_t>(probe_index)];
        std::lock_guard<std::mutex> lock(device.mutex);
        if (device.reduction.window() != ticket.window() && device.reduction.pending_batches() > 0)
          hand_over(probe_index, device);
        device.reduction.add(rows, ticket.batch()->ordinal,
                             std::vector<std::int64_t>(output.sizes().begin(), output.sizes().end()), ticket.window());
        engine->consume(std::move(ticket));
        // Also when the reservoir's candidate rows pile up (its threshold is exact again after a hand-over).
        if (device.reduction.pending_batches() >= DeviceReduction::kFlushBatches ||
            device.reduction.pending_candidate_rows() > 2 * engine->options().reservoir_size())
          hand_over(probe_index, device);
        return;
      }
      float* dest = ticket.reserve_values(rows.size(0), rows.size(1));
      // One copy: converts dtype, leaves the device and makes the layout contiguous at once.
      at::from_blob(dest, {rows.size(0), rows.size(1)}, at::TensorOptions().dtype(at::kFloat)).copy_(rows);
      auto& shape = ticket.batch()->output_shape;
      shape.assign(output.sizes().begin(), output.sizes().end());
      ticket.batch()->attention = attention;
      engine->submit(std::move(ticket));
    } catch (const std::exception& e) {
      engine->report_probe_error(probe_index, fmt::format("probe '{}': {}",
                                                          targets_[static_cast<std::size_t>(probe_index)].name,
                                                          e.what()));
    } catch (...) {
      engine->report_probe_error(probe_index, "probe: unknown error");
    }
  }

 private:
  struct OnDevice {
    explicit OnDevice(DeviceReduction::Settings settings) : reduction(settings) {}
    std::mutex mutex;  // forward passes on several threads may reach one layer
    DeviceReduction reduction;
  };

  // Outputs on an accelerator are reduced where they are; CPU ones with Options::reduce_on_device.
  // Attention weights keep the worker path (the head statistics read every weight), and so does a
  // transform (it edits host rows).
  // Layers wider than DeviceReduction::kMaxNeurons too: their totals would take the device's memory.
  static bool reduce_here(const ProbeTarget& target, const at::Tensor& output, const Options& options) {
    if (target.layout == LayerLayout::attention_heads || options.transform()) return false;
    if (!options.reduce_on_device() && output.device().is_cpu()) return false;
    // The neurons to_rows will give: channels for channels-first outputs, else the last dimension.
    const auto dims = output.dim();
    const std::int64_t neurons = dims < 2                                      ? 1
                                 : target.layout == LayerLayout::channels_first ? output.size(1)
                                                                                : output.size(dims - 1);
    return neurons <= DeviceReduction::kMaxNeurons;
  }

  // Moves `device`'s totals to the host and queues them for a worker, in the window they belong to.
  void hand_over(int probe_index, OnDevice& device) noexcept {
    Engine* engine = engine_;
    try {
      BatchTicket ticket = engine->begin_partial(probe_index);
      if (!ticket || ticket.window() != device.reduction.window()) {
        device.reduction.discard();
        engine->report_probe_error(probe_index,
                                   fmt::format("probe '{}': statistics reduced on the device were dropped: their "
                                               "capture window closed before they were handed over",
                                               targets_[static_cast<std::size_t>(probe_index)].name));
        return;
      }
      Batch* batch = ticket.batch();
      batch->partial = device.reduction.take();
      batch->gradient = !batch->partial->moments;  // a gradient-only partial has no width to check
      batch->cols = batch->partial->moments ? batch->partial->moments->n_neurons() : 0;
      engine->submit(std::move(ticket));
    } catch (const std::exception& e) {
      device.reduction.discard();
      engine->report_probe_error(probe_index, fmt::format("probe '{}': handing over the device totals: {}",
                                                          targets_[static_cast<std::size_t>(probe_index)].name,
                                                          e.what()));
    } catch (...) {
      device.reduction.discard();
      engine->report_probe_error(probe_index, "probe: handing over the device totals: unknown error");
    }
  }

  std::atomic<Engine*> engine_{nullptr};
  std::vector<ProbeTarget> targets_;
  std::vector<std::unique_ptr<OnDevice>> device_;
};

}  // namespace

std::string model_device(torch::nn::Module& model) {
  for (const auto& p : model.parameters()) return p.device().str();
  for (const auto& b : model.buffers()) return b.device().str();
  return "cpu";
}

class SessionImpl {
 public:
  SessionImpl(const ProbeFactory& make_probes, const std::string& device, Options options)
      : sink_(std::make_shared<EngineSink>()) {
    options.validate();
    // A distributed session's other ranks never touch the run file: rank 0 writes it.
    if (!options.communicator() || options.communicator()->rank() == 0) {
      // A file another live session writes is refused, even with overwrite(true), naming that process;
      // otherwise the path's own problems (exists, not writable, ...) are reported first, then locked.
      if (RunLock::probe(options.file()).held) lock_.emplace(options.file());
      RunWriter::check_path(options.file(), options.overwrite());
      lock_.emplace(options.file());
    }
    probes_ = make_probes(sink_);

    RunInfo info;
    info.format_version = kFormatVersion;
    info.library_version = NEURONMAP_VERSION_STRING;
    info.torch_version = TORCH_VERSION;
    info.device = device;
    info.created = iso_utc_now();
    info.options_json = options_json(options);
    info.tag_names = options.tag_names();
    std::vector<neuronmap::LayerInfo> layer_infos;
    for (const auto& target : probes_->targets()) {
      layer_infos.push_back(neuronmap::LayerInfo{target.name, target.module_type, reduction_words(target.layout, options)});
    }
    info.layers = layer_infos;

    ProbeSet* probes = probes_.get();
    Engine::Hooks hooks;
    hooks.set_capture = [probes](bool on) { probes->enable(on); };
    engine_ = std::make_unique<Engine>(std::move(layer_infos), std::move(options), std::move(info), std::move(hooks));
    sink_->bind(engine_.get(), probes_->targets());
  }

  ~SessionImpl() { close(); }

  void close() noexcept {
    std::lock_guard<std::mutex> lock(close_mutex_);
    if (probes_) probes_->enable(false);
    if (engine_) engine_->close();
    // Probes go after the engine has drained: a forward still running captures into a closed window.
    probes_.reset();
    lock_.reset();  // the file is closed: another session may write it now
  }

  Engine& engine() { return *engine_; }

  // Session::end_epoch: the device totals join the window before the engine seals it.
  void end_epoch(std::int64_t epoch, double loss) {
    sink_->flush_device_totals();
    engine_->end_epoch(epoch, loss);
  }

 private:
  std::optional<RunLock> lock_;  // first member: released after everything else
  std::shared_ptr<EngineSink> sink_;
  std::unique_ptr<ProbeSet> probes_;
  std::unique_ptr<Engine> engine_;
  std::mutex close_mutex_;
};

// Session's one friend: the only code that constructs a Session or reaches its implementation.
struct SessionAccess {
  static Session make(std::unique_ptr<SessionImpl> impl) noexcept { return Session(std::move(impl)); }
  static SessionImpl& impl(Session& session) { return *session.impl_; }
};

Session make_session(const ProbeFactory& make_probes, const std::string& device, Options options) {
  return SessionAccess::make(std::make_unique<SessionImpl>(make_probes, device, std::move(options)));
}

void set_worker_delay(Session& session, double seconds) {
  SessionAccess::impl(session).engine().set_worker_delay(seconds);
}

}  // namespace detail

Session::Session(std::unique_ptr<detail::SessionImpl> impl) noexcept : impl_(std::move(impl)) {}
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;
Session::~Session() = default;

void Session::end_epoch(std::int64_t epoch, double loss) { impl_->end_epoch(epoch, loss); }
void Session::flush() { impl_->engine().flush(); }

void Session::observe(const at::Tensor& per_sample_loss, const std::vector<std::int32_t>& tags) {
  if (!impl_->engine().capturing()) return;
  std::vector<float> loss;
  if (per_sample_loss.defined() && per_sample_loss.numel() > 0) {
    at::NoGradGuard no_grad;
    const auto cpu = per_sample_loss.detach().reshape({-1}).to(at::kCPU, at::kFloat).contiguous();
    loss.assign(cpu.data_ptr<float>(), cpu.data_ptr<float>() + cpu.numel());
  }
  impl_->engine().observe(std::move(loss), tags);
}

void Session::observe(std::vector<float> per_sample_loss, std::vector<std::int32_t> tags) {
  impl_->engine().observe(std::move(per_sample_loss), std::move(tags));
}

void Session::set_reference(std::function<void()> forward) {
  impl_->engine().set_reference_source([forward = std::move(forward)] {
    at::NoGradGuard no_grad;
    forward();
  });
}
void Session::close() noexcept {
  if (impl_) impl_->close();
}
Counters Session::counters() const { return impl_->engine().counters(); }
std::int64_t Session::snapshots_written() const { return impl_->engine().snapshots_written(); }
std::string Session::last_error() const { return impl_->engine().last_error(); }
std::vector<std::string> Session::layers() const {
  std::vector<std::string> names;
  for (const auto& l : impl_->engine().layers()) names.push_back(l.name);
  return names;
}
std::string Session::file() const { return impl_->engine().options().file(); }
bool Session::capturing() const { return impl_->engine().capturing(); }

Session attach(torch::nn::Module& model, const std::vector<std::string>& layers, Options options) {
  detail::check_layer_names(layers);
  const bool gradients = options.gradients();
  auto make_probes = [&](std::shared_ptr<detail::CaptureSink> sink) -> std::unique_ptr<detail::ProbeSet> {
    return std::make_unique<detail::ProbeSetOf<detail::ModuleProbes>>(model, layers, std::move(sink), gradients);
  };
  return detail::make_session(make_probes, detail::model_device(model), std::move(options));
}

}  // namespace neuronmap
