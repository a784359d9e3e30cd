// `neuronmap groups`: groups of co-activating neurons in a samples x neurons HDF5 dataset, through the
// same code as a session's snapshots (correlation_from_samples -> group_neurons).
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <hdf5.h>

#include "analysis/correlation.hpp"
#include "analysis/grouping.hpp"
#include "analysis/records.hpp"
#include "cli/verbs.hpp"
#include "detail/json_writer.hpp"
#include "neuronmap/errors.hpp"
#include "neuronmap/options.hpp"
#include "store/h5.hpp"

namespace neuronmap::cli {
namespace {

using detail::h5::Handle;

struct GroupsArgs {
  std::string file;
  std::string dataset;
  std::string method = "correlation";
  double threshold = 0.6;
  int min_group_size = 3;
  int n_groups = 0;
  int n_init = 10;
  std::uint64_t seed = 42;
  bool json = false;
};

// The dataset as row-major samples x neurons, float32 or float64 as stored.
struct Activations {
  std::int64_t rows = 0, cols = 0;
  std::vector<float> f32;
  std::vector<double> f64;
  bool single() const noexcept { return !f32.empty() || f64.empty(); }
};

Activations read_activations(const std::string& path, const std::string& name) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // errors become our messages, not HDF5's stack dumps
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw FileError("cannot open '" + path + "': no such file");
#if H5_VERSION_GE(1, 12, 0)
  const htri_t is_hdf5 = H5Fis_accessible(path.c_str(), H5P_DEFAULT);
#else
  const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
#endif
  if (is_hdf5 <= 0) {
    H5Eclear2(H5E_DEFAULT);
    throw FormatError("'" + path + "' is not an HDF5 file");
  }
  const Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!file.valid()) {
    H5Eclear2(H5E_DEFAULT);
    throw FileError("cannot open '" + path + "' for reading");
  }
  const Handle dataset(H5Dopen2(file.get(), name.c_str(), H5P_DEFAULT), H5Dclose);
  if (!dataset.valid()) {
    H5Eclear2(H5E_DEFAULT);
    throw FileError("no dataset '" + name + "' in '" + path + "' (use h5ls to list them)");
  }
  const Handle space(H5Dget_space(dataset.get()), H5Sclose);
  const int rank = space.valid() ? H5Sget_simple_extent_ndims(space.get()) : -1;
  if (rank != 2) {
    H5Eclear2(H5E_DEFAULT);
    throw FormatError("dataset '" + name + "' has rank " + std::to_string(rank) +
                      "; expected a 2-D samples x neurons matrix");
  }
  hsize_t dims[2] = {0, 0};
  H5Sget_simple_extent_dims(space.get(), dims, nullptr);
  const Handle type(H5Dget_type(dataset.get()), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_FLOAT) {
    H5Eclear2(H5E_DEFAULT);
    throw FormatError("dataset '" + name + "' is not floating point (float32 or float64 expected)");
  }
  Activations out;
  out.rows = static_cast<std::int64_t>(dims[0]);
  out.cols = static_cast<std::int64_t>(dims[1]);
  const auto count = static_cast<std::size_t>(out.rows * out.cols);
  herr_t status = 0;
  if (H5Tget_size(type.get()) <= 4) {
    out.f32.resize(count);
    if (count > 0) status = H5Dread(dataset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.f32.data());
  } else {
    out.f64.resize(count);
    if (count > 0) status = H5Dread(dataset.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.f64.data());
  }
  if (status < 0) {
    H5Eclear2(H5E_DEFAULT);
    throw FileError("cannot read dataset '" + name + "' from '" + path + "'");
  }
  auto check = [&](const auto& values) {
    for (const auto v : values) {
      if (!std::isfinite(v)) throw FormatError("dataset '" + name + "' contains NaN or Inf; the analysis needs finite values");
    }
  };
  if (out.single()) {
    check(out.f32);
  } else {
    check(out.f64);
  }
  return out;
}

GroupingMethod parse_method(const std::string& name) {
  if (name == "correlation") return GroupingMethod::correlation;
  if (name == "kmeans") return GroupingMethod::kmeans;
  if (name == "hierarchical") return GroupingMethod::hierarchical;
  if (name == "components") return GroupingMethod::components;
  throw UsageError("unknown method '" + name + "': use correlation, kmeans, hierarchical or components");
}

void run_groups(const GroupsArgs& args) {
  Grouping options;
  options.method = parse_method(args.method);
  options.threshold = args.threshold;
  options.min_group_size = args.min_group_size;
  options.n_groups = args.n_groups;
  options.n_init = args.n_init;
  options.seed = args.seed;
  if (!(args.threshold >= -1.0 && args.threshold <= 1.0)) throw UsageError("--threshold must be in [-1, 1]");
  if (args.min_group_size < 1) throw UsageError("--min-group-size must be >= 1");
  if (args.n_groups < 0) throw UsageError("--n-groups must be >= 0 (0 = automatic)");
  if (args.n_init < 1) throw UsageError("--n-init must be >= 1");

  const Activations x = read_activations(args.file, args.dataset);
  const detail::Correlation corr = x.single() ? detail::correlation_from_rows(x.f32.data(), x.rows, x.cols)
                                              : detail::correlation_from_rows(x.f64.data(), x.rows, x.cols);
  const detail::GroupingResult result = detail::group_neurons(corr, options);

  std::vector<double> mean_activation;
  for (const auto& members : result.groups) {
    const Eigen::VectorXd pattern = x.single() ? detail::activation_pattern(x.f32.data(), x.rows, x.cols, members)
                                               : detail::activation_pattern(x.f64.data(), x.rows, x.cols, members);
    mean_activation.push_back(detail::mean_activation(pattern));
  }
  std::vector<std::int32_t> dead, ungrouped;
  for (std::size_t i = 0; i < corr.dead.size(); ++i) {
    if (corr.dead[i]) dead.push_back(static_cast<std::int32_t>(i));
    if (result.labels[i] < 0) ungrouped.push_back(static_cast<std::int32_t>(i));
  }

  // A group looser than the threshold (k-means partitions every neuron) is marked as such; k-means has
  // no threshold of its own, so the --threshold value is the yardstick.
  auto is_loose = [&](std::size_t g) { return result.cohesion[g] < args.threshold; };

  if (args.json) {
    detail::JsonWriter w;
    w.begin_object();
    w.field("file", args.file).field("dataset", args.dataset).field("method", args.method);
    w.key("params").begin_object();
    w.field("min_group_size", args.min_group_size);
    const auto n_groups_or_null = [&] { args.n_groups > 0 ? w.value(args.n_groups) : w.null(); };
    switch (options.method) {
      case GroupingMethod::correlation:
        w.field("correlation_threshold", args.threshold).field("n_init", args.n_init).field("random_state", args.seed);
        break;
      case GroupingMethod::components:
        w.field("correlation_threshold", args.threshold);
        break;
      case GroupingMethod::hierarchical:
        w.field("correlation_threshold", args.threshold).key("n_groups");
        n_groups_or_null();
        w.field("linkage", "average").field("distance", "1-corr");
        break;
      case GroupingMethod::kmeans:
        w.key("n_groups");
        n_groups_or_null();
        w.field("n_init", args.n_init).field("random_state", args.seed);
        break;
    }
    w.end_object();
    w.field("n_samples", x.rows).field("n_neurons", x.cols);
    w.key("dead_neurons").array(dead);
    w.field("n_groups", result.groups.size());
    w.key("labels").array(result.labels);
    w.key("groups").begin_array();
    for (std::size_t g = 0; g < result.groups.size(); ++g) {
      w.begin_object();
      w.field("group_id", g);
      w.key("neuron_indices").array(result.groups[g]);
      w.field("group_size", result.groups[g].size()).field("cohesion_score", result.cohesion[g]);
      w.field("min_member_correlation", result.min_member_correlation[g]).field("loose", is_loose(g));
      w.field("mean_activation", mean_activation[g]);
      w.end_object();
    }
    w.end_array();
    w.key("ungrouped").array(ungrouped);
    w.key("diagnostics").begin_object();
    w.field("n_raw_clusters", result.n_raw_clusters);
    switch (options.method) {
      case GroupingMethod::correlation:
        w.field("n_edges", result.n_edges).field("quality", result.quality);
        w.key("quality_by_restart").array(result.quality_by_restart);
        w.field("sweeps", result.sweeps);
        break;
      case GroupingMethod::components:
        w.field("n_edges", result.n_edges);
        break;
      case GroupingMethod::hierarchical:
        w.field("cut_distance", 1.0 - args.threshold);
        break;
      case GroupingMethod::kmeans:
        w.field("chosen_k", result.chosen_k).field("inertia", result.inertia).field("n_iter", result.n_iter);
        w.key("silhouette_by_k").begin_object();
        for (const auto& [k, score] : result.silhouette_by_k) w.field(std::to_string(k), score);
        w.end_object();
        break;
    }
    w.end_object();
    w.end_object();
    fmt::print("{}\n", w.str());
    return;
  }

  fmt::print("{}:{}  {} samples x {} neurons, {} dead\n", args.file, args.dataset, x.rows, x.cols, dead.size());
  fmt::print("method {}", args.method);
  if (options.method != GroupingMethod::kmeans) fmt::print(", threshold {}", args.threshold);
  if (options.method == GroupingMethod::kmeans) fmt::print(", k = {}{}", result.chosen_k, args.n_groups > 0 ? "" : " (best silhouette)");
  fmt::print(", min group size {}: {} groups\n\n", args.min_group_size, result.groups.size());
  if (!result.groups.empty()) {
    fmt::print("{:>5}  {:>5}  {:>8}  {:>10}  {:>15}  {}\n", "group", "size", "cohesion", "min member", "mean_activation",
               "neurons");
    for (std::size_t g = 0; g < result.groups.size(); ++g) {
      fmt::print("{:>5}  {:>5}  {:>8.4f}  {:>10.4f}  {:>15.6g}  {}{}\n", g, result.groups[g].size(), result.cohesion[g],
                 result.min_member_correlation[g], mean_activation[g], fmt::join(result.groups[g], " "),
                 is_loose(g) ? fmt::format("  (loose: cohesion below {})", args.threshold) : "");
    }
    fmt::print("\n");
  }
  fmt::print("ungrouped: {} neurons{}{}\n", ungrouped.size(), ungrouped.empty() ? "" : ": ", fmt::join(ungrouped, " "));
}

}  // namespace

void add_groups(CLI::App& app) {
  auto args = std::make_shared<GroupsArgs>();
  CLI::App* verb = app.add_subcommand("groups", "Find groups of co-activating neurons in a samples x neurons HDF5 dataset");
  verb->add_option("file", args->file, "HDF5 file")->required();
  verb->add_option("--dataset", args->dataset, "Dataset path inside the file (2-D, float32 or float64, rows = samples)")
      ->required();
  verb->add_option("--method", args->method,
                   "correlation (clustering: every member's mean r with its group >= threshold) | kmeans | "
                   "hierarchical | components (connected components of r >= threshold; chains; for comparison)")
      ->check(CLI::IsMember({"correlation", "kmeans", "hierarchical", "components"}))
      ->capture_default_str();
  verb->add_option("--threshold", args->threshold, "Correlation joining two neurons (hierarchical: cut at 1 - T)")
      ->capture_default_str();
  verb->add_option("--min-group-size", args->min_group_size, "Smaller clusters are reported as ungrouped")
      ->capture_default_str();
  verb->add_option("--n-groups", args->n_groups, "kmeans/hierarchical: number of clusters (0 = automatic)")
      ->capture_default_str();
  verb->add_option("--n-init", args->n_init, "correlation/kmeans restarts")->capture_default_str();
  verb->add_option("--seed", args->seed, "correlation/kmeans seed")->capture_default_str();
  verb->add_flag("--json", args->json, "Print JSON instead of a table");
  verb->callback([args] {
    run_groups(*args);
    set_exit_code(0);
  });
}

}  // namespace neuronmap::cli
