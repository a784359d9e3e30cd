// neuronmap._analysis: the torch-free half of the Python module. It links the analysis, learning and
// report code (never LibTorch), so NumPy users group neurons, compute the original tool's per-sample
// events and draw pictures without importing torch. It also owns the package's exception types.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "analysis/correlation.hpp"
#include "analysis/grouping.hpp"
#include "analysis/records.hpp"
#include "detail/iso_time.hpp"
#include "learning/sample_events.hpp"
#include "neuronmap/errors.hpp"
#include "neuronmap/version.hpp"
#include "report/report.hpp"

namespace py = pybind11;
using namespace neuronmap;

namespace {

using FloatRows = py::array_t<float, py::array::c_style | py::array::forcecast>;
using DoubleRows = py::array_t<double, py::array::c_style | py::array::forcecast>;

template <typename T>
py::array_t<T> to_numpy(const std::vector<T>& v) {
  py::array_t<T> a(static_cast<py::ssize_t>(v.size()));
  if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(T));
  return a;
}

GroupingMethod parse_method(const std::string& m) {
  // The original tool calls the correlation method 'correlation_clustering'.
  if (m == "correlation" || m == "correlation_clustering") return GroupingMethod::correlation;
  if (m == "kmeans") return GroupingMethod::kmeans;
  if (m == "hierarchical") return GroupingMethod::hierarchical;
  if (m == "components") return GroupingMethod::components;
  throw UsageError("method='" + m + "': use one of correlation, correlation_clustering, kmeans, hierarchical, components");
}

FloatRows float_rows(const py::array& x, const char* what) {
  if (x.ndim() != 2) throw UsageError(std::string(what) + " must be 2-D (n_samples, n_neurons)");
  return FloatRows::ensure(x);
}

// The `groups` verb's computation on an in-memory samples x neurons matrix.
py::dict group_activations(py::array x, const std::string& method, double threshold, int min_group_size,
                           int n_groups, int n_init, std::uint64_t seed) {
  if (x.ndim() != 2) throw UsageError("activations must be 2-D (n_samples, n_neurons)");
  if (!(threshold >= -1.0 && threshold <= 1.0)) throw UsageError("correlation_threshold must be in [-1, 1]");
  if (min_group_size < 1) throw UsageError("min_group_size must be >= 1");
  if (n_groups < 0) throw UsageError("n_groups must be >= 0 (0 or None: automatic)");
  if (n_init < 1) throw UsageError("n_init must be >= 1");
  Grouping options;
  options.method = parse_method(method);
  options.threshold = threshold;
  options.min_group_size = min_group_size;
  options.n_groups = n_groups;
  options.n_init = n_init;
  options.seed = seed;

  const bool single = x.dtype().is(py::dtype::of<float>());
  FloatRows xf;
  DoubleRows xd;
  if (single) xf = FloatRows::ensure(x);
  else xd = DoubleRows::ensure(x);
  const std::int64_t rows = x.shape(0), cols = x.shape(1);
  if (rows < 2) throw UsageError("need at least 2 samples to correlate neurons");

  detail::GroupingResult result;
  std::vector<std::vector<double>> patterns;
  std::vector<double> mean_activation;
  std::vector<std::uint8_t> dead;
  std::vector<double> means;
  {
    py::gil_scoped_release release;
    const detail::Correlation corr = single ? detail::correlation_from_rows(xf.data(), rows, cols)
                                            : detail::correlation_from_rows(xd.data(), rows, cols);
    result = detail::group_neurons(corr, options);
    for (const auto& members : result.groups) {
      const Eigen::VectorXd p = single ? detail::activation_pattern(xf.data(), rows, cols, members)
                                       : detail::activation_pattern(xd.data(), rows, cols, members);
      patterns.emplace_back(p.data(), p.data() + p.size());
      mean_activation.push_back(detail::mean_activation(p));
    }
    dead = corr.dead;
    means.assign(corr.mean.data(), corr.mean.data() + corr.mean.size());
  }
  py::dict d;
  d["labels"] = to_numpy(result.labels);
  py::list groups, pats;
  for (const auto& g : result.groups) groups.append(to_numpy(g));
  for (const auto& p : patterns) pats.append(to_numpy(p));
  d["groups"] = groups;
  d["patterns"] = pats;
  d["cohesion"] = to_numpy(result.cohesion);
  d["min_member_correlation"] = to_numpy(result.min_member_correlation);
  // The engine's rule for Group::loose, with this call's threshold.
  std::vector<std::uint8_t> loose;
  for (double c : result.cohesion) loose.push_back(c < threshold ? 1 : 0);
  d["loose"] = to_numpy(loose).attr("astype")("bool");
  d["mean_activation"] = to_numpy(mean_activation);
  d["dead"] = to_numpy(dead);
  d["neuron_mean"] = to_numpy(means);
  d["chosen_k"] = result.chosen_k;
  d["n_raw_clusters"] = result.n_raw_clusters;
  return d;
}

// The original tool's per-sample events (sdk/learning/sample_events.hpp) of one layer.
py::dict sample_events(py::array x, const std::vector<std::vector<std::int32_t>>& groups, double sigma) {
  if (x.ndim() != 2) throw UsageError("activations must be 2-D (n_samples, n_neurons)");
  const bool single = x.dtype().is(py::dtype::of<float>());
  FloatRows xf;
  DoubleRows xd;
  if (single) xf = FloatRows::ensure(x);
  else xd = DoubleRows::ensure(x);
  detail::learning::SampleEvents e;
  {
    py::gil_scoped_release release;
    e = single ? detail::learning::sample_events(xf.data(), x.shape(0), x.shape(1), groups, sigma)
               : detail::learning::sample_events(xd.data(), x.shape(0), x.shape(1), groups, sigma);
  }
  py::dict d;
  d["samples"] = to_numpy(e.samples);
  py::list activated;
  for (const auto& a : e.activated) activated.append(to_numpy(a));
  d["activated"] = activated;
  d["strength"] = to_numpy(e.strength);
  return d;
}

// A one-snapshot run held in memory, for write_report.
class MemoryRun final : public report::RunSource {
 public:
  MemoryRun(RunInfo info, Snapshot snapshot) : info_(std::move(info)), snapshot_(std::move(snapshot)) {}
  const RunInfo& info() const override { return info_; }
  std::int64_t size() const override { return 1; }
  Snapshot snapshot(std::int64_t) const override { return snapshot_; }
  SnapshotSummary summary(std::int64_t) const override {
    SnapshotSummary out{snapshot_.epoch, snapshot_.loss, snapshot_.timestamp, {}};
    for (const auto& l : snapshot_.layers) {
      LayerSummary s;
      s.name = l.name;
      s.n_neurons = l.n_neurons;
      s.samples = l.samples;
      s.groups = static_cast<std::int64_t>(l.groups.size());
      s.mean_cohesion = l.mean_cohesion();
      s.dead = l.dead_count();
      s.counters = l.counters;
      for (const auto& g : l.groups)
        s.group_summaries.push_back({g.group_id, static_cast<std::int64_t>(g.group_size()), g.cohesion_score,
                                     g.min_member_correlation, g.loose});
      out.layers.push_back(std::move(s));
    }
    return out;
  }

 private:
  RunInfo info_;
  Snapshot snapshot_;
};

// One layer of given activations and given groups, as the engine would store it (every statistic from
// the rows; the sample rows kept are at most `max_rows`, evenly spaced).
LayerSnapshot layer_from(const std::string& name, const FloatRows& x, const py::list& groups, double threshold,
                         std::int64_t max_rows, const std::vector<std::int32_t>& tags, const std::vector<float>& losses) {
  const std::int64_t rows = x.shape(0), n = x.shape(1);
  const float* data = x.data();
  if (rows < 2 || n < 1) throw UsageError("layer '" + name + "': need at least 2 samples and 1 neuron");
  for (std::int64_t k = 0; k < rows * n; ++k)
    if (!std::isfinite(data[k])) throw UsageError("layer '" + name + "': the activations hold NaN or Inf");
  LayerSnapshot l;
  l.name = name;
  l.n_neurons = n;
  l.samples = rows;
  l.output_shape = {rows, n};
  const detail::Correlation corr = detail::correlation_from_rows(data, rows, n);
  l.mean.assign(corr.mean.data(), corr.mean.data() + n);
  l.stddev.assign(corr.stddev.data(), corr.stddev.data() + n);
  l.min.assign(static_cast<std::size_t>(n), std::numeric_limits<double>::infinity());
  l.max.assign(static_cast<std::size_t>(n), -std::numeric_limits<double>::infinity());
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t j = 0; j < n; ++j) {
      const auto k = static_cast<std::size_t>(j);
      l.min[k] = std::min<double>(l.min[k], data[r * n + j]);
      l.max[k] = std::max<double>(l.max[k], data[r * n + j]);
    }
  l.dead = corr.dead;
  l.correlation.resize(static_cast<std::size_t>(n * n));
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < n; ++j) l.correlation[static_cast<std::size_t>(i * n + j)] = static_cast<float>(corr.r(i, j));

  // The given groups: ids as given, members checked (in range, in one group only).
  std::vector<int> ids;
  std::vector<std::vector<std::int32_t>> clusters;
  std::set<int> seen_ids;
  l.labels.assign(static_cast<std::size_t>(n), -1);
  for (const auto& item : groups) {
    const auto g = item.cast<py::dict>();
    const int id = g["id"].cast<int>();
    auto members = g["members"].cast<std::vector<std::int32_t>>();
    if (!seen_ids.insert(id).second) throw UsageError("layer '" + name + "': group id " + std::to_string(id) + " given twice");
    if (members.empty()) throw UsageError("layer '" + name + "': group " + std::to_string(id) + " has no neurons");
    std::sort(members.begin(), members.end());
    for (auto i : members) {
      if (i < 0 || i >= n)
        throw UsageError("layer '" + name + "': group " + std::to_string(id) + " has neuron " + std::to_string(i) +
                         ", outside 0.." + std::to_string(n - 1));
      auto& label = l.labels[static_cast<std::size_t>(i)];
      if (label != -1)
        throw UsageError("layer '" + name + "': neuron " + std::to_string(i) + " is in groups " + std::to_string(label) +
                         " and " + std::to_string(id) + "; pictures need each neuron in one group at most");
      label = id;
    }
    ids.push_back(id);
    clusters.push_back(std::move(members));
  }
  const detail::GroupingResult stats = detail::finish_groups(corr, clusters, 1);
  std::map<std::vector<std::int32_t>, std::size_t> stats_of;
  for (std::size_t k = 0; k < stats.groups.size(); ++k) stats_of[stats.groups[k]] = k;

  // Sample rows kept: all, or `max_rows` evenly spaced ones.
  const std::int64_t kept = max_rows > 0 ? std::min(rows, max_rows) : rows;
  for (std::int64_t k = 0; k < kept; ++k) {
    const std::int64_t r = kept == rows ? k : k * (rows - 1) / std::max<std::int64_t>(kept - 1, 1);
    l.reservoir.insert(l.reservoir.end(), data + r * n, data + (r + 1) * n);
    l.reservoir_ids.push_back(r);
    l.reservoir_tags.push_back(static_cast<std::size_t>(r) < tags.size() ? tags[static_cast<std::size_t>(r)] : -1);
    l.reservoir_loss.push_back(static_cast<std::size_t>(r) < losses.size() ? losses[static_cast<std::size_t>(r)]
                                                                         : std::numeric_limits<float>::quiet_NaN());
  }
  for (std::size_t k = 0; k < clusters.size(); ++k) {
    Group group;
    group.group_id = ids[k];
    group.layer_name = name;
    group.neuron_indices = clusters[k];
    const std::size_t s = stats_of.at(clusters[k]);
    group.cohesion_score = stats.cohesion[s];
    group.min_member_correlation = stats.min_member_correlation[s];
    group.loose = group.cohesion_score < threshold;
    group.mean_activation = detail::mean_activation(corr.mean, clusters[k]);
    const Eigen::VectorXd p = detail::activation_pattern(l.reservoir.data(), kept, n, clusters[k]);
    group.activation_pattern.assign(p.data(), p.data() + p.size());
    l.groups.push_back(std::move(group));
  }
  l.counters.rows = rows;
  return l;
}

// Pictures (and the dashboard) of given activations and groups by the report code of `neuronmap report`.
py::dict render(const py::list& layers, const std::string& out_dir, std::int64_t epoch, double loss, bool dashboard,
                const std::vector<std::string>& tag_names, const std::vector<std::int32_t>& tags,
                const std::vector<float>& losses, const std::string& device, double threshold, std::int64_t max_rows,
                std::uint64_t seed) {
  if (layers.empty()) throw UsageError("render: no layers given");
  RunInfo info;
  info.format_version = 0;
  info.library_version = NEURONMAP_VERSION_STRING;
  info.device = device;
  info.created = detail::iso_utc_now();
  info.tag_names = tag_names;
  Snapshot snap;
  snap.epoch = epoch;
  snap.loss = loss;
  snap.timestamp = static_cast<double>(std::time(nullptr));
  std::vector<std::pair<std::string, FloatRows>> inputs;
  for (const auto& item : layers) {
    const auto layer = item.cast<py::dict>();
    const auto name = layer["name"].cast<std::string>();
    inputs.emplace_back(name, float_rows(layer["activations"].cast<py::array>(), "activations"));
    snap.layers.push_back(layer_from(name, inputs.back().second, layer["groups"].cast<py::list>(), threshold, max_rows,
                                     tags, losses));
    info.layers.push_back({name, "activations given from Python", "rows as samples"});
  }
  report::ReportOptions options;
  options.out_dir = out_dir;
  options.dashboard = dashboard;
  options.seed = seed;
  options.run_path = "(activations given from Python)";
  report::ReportResult result;
  {
    py::gil_scoped_release release;
    result = report::write_report(MemoryRun(std::move(info), std::move(snap)), options);
  }
  py::dict d;
  d["files"] = result.files;
  d["notes"] = result.notes;
  d["dashboard_written"] = result.dashboard_written;
  return d;
}

}  // namespace

PYBIND11_MODULE(_analysis, m) {
  m.doc() = "NeuronMap's torch-free analysis and pictures (use the `neuronmap` package, not this module)";
  m.attr("__version__") = NEURONMAP_VERSION_STRING;

  static py::exception<Error> error(m, "Error", PyExc_RuntimeError);
  static py::exception<LayerNotFound> layer_not_found(m, "LayerNotFound", error.ptr());
  static py::exception<UsageError> usage_error(m, "UsageError", error.ptr());
  static py::exception<FileError> file_error(m, "FileError", error.ptr());
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

  m.def("group_activations", &group_activations, py::arg("activations"), py::arg("method") = "correlation",
        py::arg("threshold") = 0.6, py::arg("min_group_size") = 3, py::arg("n_groups") = 0, py::arg("n_init") = 10,
        py::arg("seed") = 42,
        "Groups neurons of a samples x neurons matrix with the engine's grouping (as `neuronmap groups`).");
  m.def("sample_events", &sample_events, py::arg("activations"), py::arg("groups"), py::arg("sigma") = 0.5,
        "The original tool's per-sample events of one layer: rows on which a group's mean exceeds the row's "
        "mean + sigma x std. Returns samples, activated (positions in groups) and strength.");
  m.def("render", &render, py::arg("layers"), py::arg("out_dir"), py::arg("epoch") = 1,
        py::arg("loss") = std::numeric_limits<double>::quiet_NaN(), py::arg("dashboard") = false,
        py::arg("tag_names") = std::vector<std::string>{}, py::arg("tags") = std::vector<std::int32_t>{},
        py::arg("losses") = std::vector<float>{}, py::arg("device") = "cpu", py::arg("threshold") = 0.6,
        py::arg("max_rows") = 4096, py::arg("seed") = 42,
        "Writes `neuronmap report`'s pictures (and dashboard) of layers given as dicts {name, activations, "
        "groups: [{id, members}]} into out_dir.");
}
