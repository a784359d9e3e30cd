// neuronmap._core: the C++ side of the Python module. Python forward hooks (registered by the pure
// Python package on eager nn.Modules) hand each output tensor to Session.capture, which feeds the
// same EngineSink -> queue -> workers path as the C++ probes: a ProbeSet whose outputs arrive from
// outside. Also binds Run (reading run files); grouping, events and pictures are in _analysis.
#include <atomic>
#include <cstring>
#include <stdexcept>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <torch/csrc/utils/pybind.h>  // at::Tensor <-> torch.Tensor (libtorch_python)
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "learning/sample_events.hpp"
#include "neuronmap/errors.hpp"
#include "neuronmap/run.hpp"
#include "neuronmap/session.hpp"
#include "neuronmap/version.hpp"
#include "probe/attention_span.hpp"
#include "probe/probe_set.hpp"
#include "probe/sink.hpp"
#include "session/make_session.hpp"
#include "session/testing.hpp"

namespace py = pybind11;
using namespace neuronmap;

namespace {

// The probes of a Python session: the targets Python resolved, and a switch the hooks read.
class PythonProbes final : public detail::ProbeSet {
 public:
  PythonProbes(std::vector<detail::ProbeTarget> targets, std::shared_ptr<std::atomic<bool>> enabled)
      : targets_(std::move(targets)), enabled_(std::move(enabled)) {}
  ~PythonProbes() override { enabled_->store(false); }
  const std::vector<detail::ProbeTarget>& targets() const noexcept override { return targets_; }
  void enable(bool on) noexcept override { enabled_->store(on); }

 private:
  std::vector<detail::ProbeTarget> targets_;
  std::shared_ptr<std::atomic<bool>> enabled_;
};

template <typename T>
py::array_t<T> to_numpy(const std::vector<T>& v) {
  py::array_t<T> a(static_cast<py::ssize_t>(v.size()));
  if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(T));
  return a;
}

template <typename T>
py::array_t<T> to_numpy(const std::vector<T>& v, std::int64_t rows, std::int64_t cols) {
  if (static_cast<std::int64_t>(v.size()) != rows * cols) {
    rows = 0;
    cols = 0;
  }
  py::array_t<T> a({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(cols)});
  if (rows * cols > 0) std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(T));
  return a;
}

template <typename E>
E parse_enum(const std::string& option, const std::string& value, std::initializer_list<std::pair<const char*, E>> values) {
  std::string valid;
  for (const auto& [name, e] : values) {
    if (value == name) return e;
    valid += valid.empty() ? "" : ", ";
    valid += name;
  }
  throw UsageError(option + "='" + value + "': use one of " + valid);
}

GroupingMethod parse_method(const std::string& m) {
  // The original tool calls the correlation method 'correlation_clustering'.
  return parse_enum<GroupingMethod>("method", m,
                                    {{"correlation", GroupingMethod::correlation},
                                     {"correlation_clustering", GroupingMethod::correlation},
                                     {"kmeans", GroupingMethod::kmeans},
                                     {"hierarchical", GroupingMethod::hierarchical},
                                     {"components", GroupingMethod::components}});
}

Options options_from(const py::dict& kw) {
  Options o;
  Grouping g;
  for (const auto& item : kw) {
    const auto key = py::cast<std::string>(item.first);
    const py::handle v = item.second;
    if (key == "every") o.every(v.cast<int>());
    else if (key == "file") o.file(py::str(v).cast<std::string>());
    else if (key == "overwrite") o.overwrite(v.cast<bool>());
    else if (key == "queue_capacity") o.queue_capacity(v.cast<std::int64_t>());
    else if (key == "overflow")
      o.overflow(parse_enum<Overflow>("overflow", v.cast<std::string>(),
                                      {{"block", Overflow::block}, {"drop_newest", Overflow::drop_newest}}));
    else if (key == "workers") o.workers(v.cast<int>());
    else if (key == "worker_priority")
      o.worker_priority(parse_enum<WorkerPriority>("worker_priority", v.cast<std::string>(),
                                                   {{"idle", WorkerPriority::idle}, {"normal", WorkerPriority::normal}}));
    else if (key == "products")
      o.products(parse_enum<Products>("products", v.cast<std::string>(),
                                      {{"float64", Products::float64}, {"float32", Products::float32}}));
    else if (key == "overhead_budget") o.overhead_budget(v.is_none() ? 0.0 : v.cast<double>());
    else if (key == "reduce_on_device") o.reduce_on_device(v.cast<bool>());
    else if (key == "analysis_threads") o.analysis_threads(v.cast<int>());
    else if (key == "max_batches") o.max_batches(v.is_none() ? 0 : v.cast<std::int64_t>());
    else if (key == "spatial")
      o.spatial(parse_enum<SpatialReduction>("spatial", v.cast<std::string>(),
                                             {{"mean", SpatialReduction::mean}, {"max", SpatialReduction::max}}));
    else if (key == "sequence")
      o.sequence(parse_enum<SequenceReduction>(
          "sequence", v.cast<std::string>(),
          {{"per_token", SequenceReduction::per_token}, {"mean_over_time", SequenceReduction::mean_over_time}}));
    else if (key == "reservoir_size") o.reservoir_size(v.cast<std::int64_t>());
    else if (key == "seed") o.seed(v.cast<std::uint64_t>());
    else if (key == "tag_names") o.tag_names(v.cast<std::vector<std::string>>());
    else if (key == "gradients") o.gradients(v.cast<bool>());
    else if (key == "store_correlation") o.store_correlation(v.cast<bool>());
    else if (key == "method") g.method = parse_method(v.cast<std::string>());
    else if (key == "threshold" || key == "correlation_threshold") g.threshold = v.cast<double>();
    else if (key == "min_group_size") g.min_group_size = v.cast<int>();
    else if (key == "n_groups") g.n_groups = v.is_none() ? 0 : v.cast<int>();
    else if (key == "n_init") g.n_init = v.cast<int>();
    else if (key == "grouping_seed") g.seed = v.cast<std::uint64_t>();
    else
      throw UsageError("unknown option '" + key +
                       "' (known: every, file, overwrite, queue_capacity, overflow, workers, worker_priority, products, "
                       "overhead_budget, reduce_on_device, analysis_threads, "
                       "max_batches, spatial, sequence, reservoir_size, seed, tag_names, gradients, "
                       "store_correlation, method, threshold, min_group_size, n_groups, n_init, grouping_seed)");
  }
  o.grouping(g);
  return o;
}

// One session of a Python model. Python owns the hooks; this owns the engine.
class PySession {
 public:
  PySession(const std::vector<std::string>& names, const std::vector<std::string>& module_types,
            const std::vector<std::string>& layouts, const std::string& device, const py::dict& options)
      : enabled_(std::make_shared<std::atomic<bool>>(false)) {
    if (names.size() != module_types.size() || names.size() != layouts.size())
      throw UsageError("names, module_types and layouts differ in length");
    std::vector<detail::ProbeTarget> targets;
    for (std::size_t i = 0; i < names.size(); ++i) {
      detail::ProbeTarget t;
      t.name = names[i];
      t.module_type = module_types[i];
      t.layout = parse_enum<LayerLayout>(
          "layout of '" + names[i] + "'", layouts[i],
          {{"features_last", LayerLayout::features_last},
           {"channels_first", LayerLayout::channels_first},
           {"attention_heads", LayerLayout::attention_heads}});
      targets.push_back(std::move(t));
    }
    Options o = options_from(options);
    auto enabled = enabled_;
    auto make_probes = [&](std::shared_ptr<detail::CaptureSink> sink) -> std::unique_ptr<detail::ProbeSet> {
      sink_ = std::move(sink);
      return std::make_unique<PythonProbes>(targets, enabled);
    };
    n_ = static_cast<int>(targets.size());
    session_ = std::make_unique<Session>(detail::make_session(make_probes, device, std::move(o)));
  }

  ~PySession() {
    py::gil_scoped_release release;
    close();
  }

  bool capturing() const noexcept { return enabled_->load(std::memory_order_relaxed); }

  // Called by the forward hook with the GIL held; the copy and queueing run without it.
  void capture(int index, const at::Tensor& output) {
    if (!enabled_->load(std::memory_order_relaxed)) return;
    check_index(index);
    if (!output.defined()) return;
    py::gil_scoped_release release;
    sink_->on_output(index, output);
  }

  // Forward pre-hook of a probed nn.MultiheadAttention: its per-head weights go to the sink as [B, H, T, S]
  // (probe/attention_span.hpp).
  void attention_begin(int index, int heads) {
    attention_end();
    if (!enabled_->load(std::memory_order_relaxed)) return;
    check_index(index);
    if (heads <= 0) throw UsageError("attention_begin: heads must be positive");
    detail::begin_attention_span(heads, [this, index](const at::Tensor& weights) {
      if (keep_attention_) {
        std::lock_guard<std::mutex> lock(attention_mutex_);
        kept_attention_.push_back(weights.clone());
      }
      sink_->on_output(index, weights);
    });
    span_index_ = index;
  }

  // Its forward hook (also safe without a span).
  void attention_end() {
    if (span_index_ < 0) return;
    const std::string fused = detail::end_attention_span();
    if (!fused.empty()) {
      attention_fused_.fetch_add(1);
      std::lock_guard<std::mutex> lock(attention_mutex_);
      attention_error_ = "'" + session_->layers()[static_cast<std::size_t>(span_index_)] +
                         "' ran PyTorch's fused attention (" + fused +
                         "), which computes the weights inside one kernel: nothing captured for that call (it is "
                         "taken in inference without autograd; train, or run with autograd on)";
    }
    span_index_ = -1;
  }

  std::uint64_t attention_fused() const noexcept { return attention_fused_.load(); }
  std::string attention_error() const {
    std::lock_guard<std::mutex> lock(attention_mutex_);
    return attention_error_;
  }
  void keep_attention_for_testing(bool on) { keep_attention_ = on; }
  std::vector<at::Tensor> take_kept_attention() {
    std::lock_guard<std::mutex> lock(attention_mutex_);
    return std::move(kept_attention_);
  }

  void capture_gradient(int index, const at::Tensor& output, const at::Tensor& gradient) {
    if (!enabled_->load(std::memory_order_relaxed)) return;
    check_index(index);
    if (!output.defined() || !gradient.defined()) return;
    py::gil_scoped_release release;
    sink_->on_gradient(index, output, gradient);
  }

  void end_epoch(std::int64_t epoch, double loss) {
    Session& s = live();
    py::gil_scoped_release release;  // a reference forward re-acquires it (set_reference)
    s.end_epoch(epoch, loss);
  }

  void observe(const at::Tensor& per_sample_loss, const std::vector<std::int32_t>& tags) {
    Session& s = live();
    py::gil_scoped_release release;
    s.observe(per_sample_loss, tags);
  }

  void set_reference(py::function forward) {
    auto fn = std::make_shared<py::function>(std::move(forward));
    live().set_reference([fn] {
      py::gil_scoped_acquire acquire;
      try {
        (*fn)();
      } catch (py::error_already_set& e) {
        throw std::runtime_error(e.what());  // the Python error must not outlive the GIL
      }
    });
  }

  void flush() {
    Session& s = live();
    py::gil_scoped_release release;
    s.flush();
  }

  void close() noexcept {
    enabled_->store(false);
    if (span_index_ >= 0) {
      detail::end_attention_span();
      span_index_ = -1;
    }
    if (session_) session_->close();
    closed_ = true;
  }

  bool closed() const noexcept { return closed_; }
  Session& session() const { return *session_; }

 private:
  Session& live() {
    if (closed_) throw UsageError("the session is closed");
    return *session_;
  }
  void check_index(int index) const {
    if (index < 0 || index >= n_) throw UsageError("probe index out of range");
  }

  std::shared_ptr<std::atomic<bool>> enabled_;
  std::shared_ptr<detail::CaptureSink> sink_;
  std::unique_ptr<Session> session_;
  int n_ = 0;
  bool closed_ = false;
  std::atomic<std::uint64_t> attention_fused_{0};
  mutable std::mutex attention_mutex_;
  std::string attention_error_;
  bool keep_attention_ = false;
  int span_index_ = -1;  // the probe whose span is open on the thread that opened it
  std::vector<at::Tensor> kept_attention_;
};


py::dict counters_dict(const Counters& c) {
  py::dict d;
  d["captured_batches"] = c.captured_batches;
  d["dropped_batches"] = c.dropped_batches;
  d["skipped_batches"] = c.skipped_batches;
  d["budget_skipped_batches"] = c.budget_skipped_batches;
  d["rows"] = c.rows;
  d["nonfinite_rows"] = c.nonfinite_rows;
  d["errors"] = c.errors;
  return d;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "NeuronMap's C++ engine (use the `neuronmap` package, not this module)";
  m.attr("__version__") = NEURONMAP_VERSION_STRING;

  // The exception types live in the torch-free half (_analysis), so that both halves raise the same ones.
  const py::module_ analysis = py::module_::import("neuronmap._analysis");
  static const py::object error = analysis.attr("Error");
  static const py::object layer_not_found = analysis.attr("LayerNotFound");
  static const py::object usage_error = analysis.attr("UsageError");
  static const py::object file_error = analysis.attr("FileError");
  m.attr("Error") = error;
  m.attr("LayerNotFound") = layer_not_found;
  m.attr("UsageError") = usage_error;
  m.attr("FileError") = file_error;
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const LayerNotFound& e) {
      PyErr_SetString(layer_not_found.ptr(), e.what());
    } catch (const UsageError& e) {
      PyErr_SetString(usage_error.ptr(), e.what());
    } catch (const FileError& e) {
      PyErr_SetString(file_error.ptr(), e.what());
    } catch (const Error& e) {
      PyErr_SetString(error.ptr(), e.what());
    }
  });

  py::class_<PySession>(m, "Session")
      .def(py::init<const std::vector<std::string>&, const std::vector<std::string>&, const std::vector<std::string>&,
                    const std::string&, const py::dict&>(),
           py::arg("names"), py::arg("module_types"), py::arg("layouts"), py::arg("device"), py::arg("options"))
      .def_property_readonly("capturing", &PySession::capturing)
      .def("capture", &PySession::capture, py::arg("index"), py::arg("output"))
      .def("attention_begin", &PySession::attention_begin, py::arg("index"), py::arg("heads"))
      .def("attention_end", &PySession::attention_end)
      .def_property_readonly("attention_fused", &PySession::attention_fused)
      .def("attention_error", &PySession::attention_error)
      .def("_keep_attention_for_testing", &PySession::keep_attention_for_testing)
      .def("_take_kept_attention", &PySession::take_kept_attention)
      .def("capture_gradient", &PySession::capture_gradient, py::arg("index"), py::arg("output"), py::arg("gradient"))
      .def("end_epoch", &PySession::end_epoch, py::arg("epoch"), py::arg("loss"))
      .def("observe", &PySession::observe, py::arg("per_sample_loss"), py::arg("tags"))
      .def("set_reference", &PySession::set_reference, py::arg("forward"))
      .def("flush", &PySession::flush)
      .def("close", [](PySession& s) {
        py::gil_scoped_release release;
        s.close();
      })
      .def_property_readonly("closed", &PySession::closed)
      .def("counters",
           [](const PySession& s) {
             py::dict d = counters_dict(s.session().counters());
             d["attention_fused"] = s.attention_fused();  // attention calls whose weights a fused kernel kept
             return d;
           })
      .def("snapshots_written", [](const PySession& s) { return s.session().snapshots_written(); })
      .def("last_error",
           [](const PySession& s) {
             std::string e = s.session().last_error();
             return e.empty() ? s.attention_error() : e;
           })
      .def("layers", [](const PySession& s) { return s.session().layers(); })
      .def("file", [](const PySession& s) { return s.session().file(); })
      // Test-only (underscore: not part of the Python API): a deliberately slow consumer.
      .def("_set_worker_delay_for_testing",
           [](PySession& s, double seconds) { detail::set_worker_delay(s.session(), seconds); });

  py::class_<Group>(m, "Group")
      .def_readonly("group_id", &Group::group_id)
      .def_readonly("layer_name", &Group::layer_name)
      .def_property_readonly("neuron_indices", [](const Group& g) { return to_numpy(g.neuron_indices); })
      .def_property_readonly("group_size", &Group::group_size)
      .def_readonly("cohesion_score", &Group::cohesion_score)
      .def_readonly("min_member_correlation", &Group::min_member_correlation)
      .def_readonly("loose", &Group::loose)
      .def_readonly("mean_activation", &Group::mean_activation)
      .def_property_readonly("activation_pattern", [](const Group& g) { return to_numpy(g.activation_pattern); })
      .def_readonly("importance", &Group::importance)
      .def_readonly("lineage_id", &Group::lineage_id)
      .def_readonly("selectivity", &Group::selectivity)
      .def_readonly("loss_correlation", &Group::loss_correlation)
      .def_readonly("learning_phase", &Group::learning_phase)
      .def_readonly("skill_category", &Group::skill_category)
      .def("__repr__", [](const Group& g) {
        return "<Group " + std::to_string(g.group_id) + " of '" + g.layer_name + "': " +
               std::to_string(g.group_size()) + " neurons, cohesion " + std::to_string(g.cohesion_score) +
               (g.loose ? ", loose" : "") + ">";
      });

  py::class_<HeadStatistics>(m, "HeadStatistics", "One attention head over a snapshot's window (docs/HEADS.md)")
      .def_readonly("queries", &HeadStatistics::queries)
      .def_readonly("entropy_mean", &HeadStatistics::entropy_mean)
      .def_readonly("entropy_std", &HeadStatistics::entropy_std)
      .def_readonly("distance_mean", &HeadStatistics::distance_mean)
      .def_property_readonly("offset_weight", [](const HeadStatistics& h) { return to_numpy(h.offset_weight); })
      .def_property_readonly("previous_token", &HeadStatistics::previous_token)
      .def_readonly("concentration", &HeadStatistics::concentration)
      .def_readonly("collapsed_fraction", &HeadStatistics::collapsed_fraction)
      .def_readonly("uniform", &HeadStatistics::uniform)
      .def_readonly("collapsed", &HeadStatistics::collapsed)
      .def_readonly("role", &HeadStatistics::role)
      .def("__repr__", [](const HeadStatistics& h) {
        return "<HeadStatistics " + h.role + " entropy " + std::to_string(h.entropy_mean) + " previous-token " +
               std::to_string(h.previous_token()) + ">";
      });
  py::class_<LayerSnapshot>(m, "LayerSnapshot")
      .def_readonly("name", &LayerSnapshot::name)
      .def_readonly("output_shape", &LayerSnapshot::output_shape)
      .def_readonly("n_neurons", &LayerSnapshot::n_neurons)
      .def_readonly("samples", &LayerSnapshot::samples)
      .def_property_readonly("mean", [](const LayerSnapshot& l) { return to_numpy(l.mean); })
      .def_property_readonly("std", [](const LayerSnapshot& l) { return to_numpy(l.stddev); })
      .def_property_readonly("min", [](const LayerSnapshot& l) { return to_numpy(l.min); })
      .def_property_readonly("max", [](const LayerSnapshot& l) { return to_numpy(l.max); })
      .def_property_readonly("dead", [](const LayerSnapshot& l) { return to_numpy(l.dead).attr("astype")("bool"); })
      .def_property_readonly("correlation",
                             [](const LayerSnapshot& l) { return to_numpy(l.correlation, l.n_neurons, l.n_neurons); })
      .def_readonly("gradient_samples", &LayerSnapshot::gradient_samples)
      .def_property_readonly("grad_mean_abs", [](const LayerSnapshot& l) { return to_numpy(l.grad_mean_abs); })
      .def_property_readonly("taylor", [](const LayerSnapshot& l) { return to_numpy(l.taylor); })
      .def_property_readonly("mean_abs", [](const LayerSnapshot& l) { return to_numpy(l.mean_abs); })
      .def_readonly("dead_rate", &LayerSnapshot::dead_rate)
      .def_readonly("dormant_rate", &LayerSnapshot::dormant_rate)
      .def_readonly("cka_previous", &LayerSnapshot::cka_previous)
      .def_property_readonly("reservoir", [](const LayerSnapshot& l) {
        return to_numpy(l.reservoir, static_cast<std::int64_t>(l.reservoir_ids.size()), l.n_neurons);
      })
      .def_property_readonly("reservoir_ids", [](const LayerSnapshot& l) { return to_numpy(l.reservoir_ids); })
      .def_property_readonly("reservoir_tags", [](const LayerSnapshot& l) { return to_numpy(l.reservoir_tags); })
      .def_property_readonly("reservoir_loss", [](const LayerSnapshot& l) { return to_numpy(l.reservoir_loss); })
      .def_property_readonly("reference",
                             [](const LayerSnapshot& l) { return to_numpy(l.reference, l.reference_rows, l.n_neurons); })
      .def_property_readonly("labels", [](const LayerSnapshot& l) { return to_numpy(l.labels); })
      .def_readonly("groups", &LayerSnapshot::groups)
      .def_property_readonly("counters", [](const LayerSnapshot& l) { return counters_dict(l.counters); })
      .def("sample_events", [](const LayerSnapshot& l, double sigma) {
        // The original tool's per-sample events on what the snapshot keeps: its sample rows and groups.
        const auto e = detail::learning::sample_events(l, sigma);
        py::dict d;
        d["samples"] = to_numpy(e.samples);
        std::vector<std::int64_t> ids;
        for (auto r : e.samples)
          ids.push_back(static_cast<std::size_t>(r) < l.reservoir_ids.size() ? l.reservoir_ids[static_cast<std::size_t>(r)] : r);
        d["sample_ids"] = to_numpy(ids);
        py::list activated;
        for (const auto& a : e.activated) {
          std::vector<std::int32_t> group_ids;
          for (auto k : a) group_ids.push_back(l.groups[static_cast<std::size_t>(k)].group_id);
          activated.append(to_numpy(group_ids));
        }
        d["activated"] = activated;
        d["strength"] = to_numpy(e.strength);
        return d;
      }, py::arg("sigma") = 0.5,
         "The original tool's per-sample events on the stored sample rows (reservoir) and groups: samples "
         "(row positions), sample_ids, activated (group ids), strength.")
      .def_readonly("heads", &LayerSnapshot::heads)
      .def("__repr__", [](const LayerSnapshot& l) {
        return "<LayerSnapshot '" + l.name + "': " + std::to_string(l.n_neurons) + " neurons, " +
               std::to_string(l.samples) + " samples, " + std::to_string(l.groups.size()) + " groups>";
      });

  py::class_<Event>(m, "Event")
      .def_readonly("epoch", &Event::epoch)
      .def_readonly("layer", &Event::layer)
      .def_readonly("kind", &Event::kind)
      .def_readonly("lineages", &Event::lineages)
      .def_readonly("strength", &Event::strength)
      .def_readonly("skill_category", &Event::skill_category)
      .def_readonly("loss_change", &Event::loss_change);

  py::class_<Snapshot>(m, "Snapshot")
      .def_readonly("epoch", &Snapshot::epoch)
      .def_readonly("loss", &Snapshot::loss)
      .def_readonly("timestamp", &Snapshot::timestamp)
      .def_readonly("layers", &Snapshot::layers)
      .def_readonly("phase", &Snapshot::phase)
      .def_readonly("events", &Snapshot::events)
      .def_property_readonly("layer_cka",
                             [](const Snapshot& s) {
                               const auto n = static_cast<std::int64_t>(s.layers.size());
                               return to_numpy(s.layer_cka, n, n);
                             })
      .def_readonly("loss_epochs", &Snapshot::loss_epochs)
      .def_readonly("losses", &Snapshot::losses)
      .def("layer", [](const Snapshot& s, const std::string& name) -> const LayerSnapshot& {
        std::string valid;
        for (const auto& l : s.layers) {
          if (l.name == name) return l;
          valid += (valid.empty() ? "" : ", ") + l.name;
        }
        throw py::key_error("no layer '" + name + "' in this snapshot (layers: " + valid + ")");
      }, py::return_value_policy::reference_internal)
      .def("__repr__", [](const Snapshot& s) {
        return "<Snapshot epoch " + std::to_string(s.epoch) + ", " + std::to_string(s.layers.size()) + " layers>";
      });

  py::class_<Run>(m, "Run")
      .def_static("open", &Run::open, py::arg("path"))
      .def_property_readonly("info", [](const Run& r) {
        const RunInfo& i = r.info();
        py::dict d;
        d["format_version"] = i.format_version;
        d["library_version"] = i.library_version;
        d["torch_version"] = i.torch_version;
        d["device"] = i.device;
        d["created"] = i.created;
        d["options_json"] = i.options_json;
        d["tag_names"] = i.tag_names;
        py::list layers;
        for (const auto& l : i.layers) {
          py::dict ld;
          ld["name"] = l.name;
          ld["module_type"] = l.module_type;
          ld["reduction"] = l.reduction;
          layers.append(ld);
        }
        d["layers"] = layers;
        return d;
      })
      .def("__len__", [](const Run& r) { return r.size(); })
      .def("refresh", &Run::refresh)
      .def("snapshot", [](const Run& r, std::int64_t i) {
        if (i < 0) i += r.size();
        if (i < 0 || i >= r.size()) throw py::index_error("snapshot index out of range");
        py::gil_scoped_release release;
        return r.snapshot(i);
      }, py::arg("index"));
}
