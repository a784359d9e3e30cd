// Times each analysis step on one .npy matrix and prints JSON (timings, labels) for
// compare_python.py, which runs the Python reference on the same matrix in the same run.
//   analysis_compare X.npy [--reps R] [--no-autok]
#include <cstdio>
#include <string>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "analysis/correlation.hpp"
#include "analysis/grouping.hpp"
#include "analysis/moments.hpp"
#include "analysis/records.hpp"
#include "bench_util.hpp"

using namespace neuronmap::detail;
namespace b = neuronmap::bench;

namespace {

// The reference's "+stats": each group's activation pattern over X, its mean, cohesion (in finish_groups).
double group_stats(const std::vector<double>& x, std::int64_t rows, std::int64_t cols, const GroupingResult& g) {
  double total = 0.0;
  for (const auto& members : g.groups) total += mean_activation(activation_pattern(x.data(), rows, cols, members));
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s X.npy [--reps R] [--no-autok]\n", argv[0]);
    return 2;
  }
  int reps = 3;
  bool autok = true;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--reps" && i + 1 < argc) reps = std::stoi(argv[++i]);
    if (arg == "--no-autok") autok = false;
  }
  std::int64_t rows = 0, cols = 0;
  const std::vector<double> x = b::read_npy_rows(argv[1], rows, cols);

  const double gflops = b::dgemm_gflops();
  Correlation corr;
  const double t_corr = b::median_seconds(reps, [&] { corr = correlation_from_rows(x.data(), rows, cols); });
  Correlation streamed;
  const std::vector<float> x32(x.begin(), x.end());
  const double t_moments = b::median_seconds(1, [&] {
    Moments m(cols);
    for (std::int64_t r0 = 0; r0 < rows; r0 += 256) m.add(x32.data() + r0 * cols, std::min<std::int64_t>(256, rows - r0));
    streamed = correlation_from_moments(m);
  });
  GroupingResult graph, hier, automatic;
  double sink = 0.0;
  const double t_graph = b::median_seconds(reps, [&] {
    graph = correlation_groups(corr, 0.6, 3);
    sink += group_stats(x, rows, cols, graph);
  });
  const double t_hier = b::median_seconds(reps, [&] {
    hier = hierarchical_groups(corr, 0.6, 0, 3);
    sink += group_stats(x, rows, cols, hier);
  });
  KMeansFit k8;
  const double t_k8 = b::median_seconds(reps, [&] { k8 = kmeans_fit(corr, 8, 10, 42); });
  double t_auto = -1;
  if (autok) t_auto = b::median_seconds(1, [&] { automatic = kmeans_groups(corr, 0, 10, 42, 3); });

  const double corr_flops = static_cast<double>(cols) * static_cast<double>(cols) * static_cast<double>(rows);
  fmt::print("{{\"n\": {}, \"s\": {}, \"dgemm_gflops\": {}, \"corr_gflops\": {}, \"sink\": {},\n", cols, rows, gflops,
             corr_flops / t_corr / 1e9, sink);
  fmt::print(" \"seconds\": {{\"correlation\": {}, \"correlation_from_moments\": {}, \"graph\": {}, \"hierarchical\": {}, "
             "\"kmeans8\": {}, \"autok\": {}}},\n",
             t_corr, t_moments, t_graph, t_hier, t_k8, t_auto);
  fmt::print(" \"kmeans8_inertia\": {}, \"chosen_k\": {}, \"autok_inertia\": {},\n", k8.inertia, automatic.chosen_k,
             automatic.inertia);
  fmt::print(" \"labels\": {{\"correlation_clustering\": [{}], \"hierarchical\": [{}], \"kmeans8\": [{}], \"kmeans\": [{}]}}}}\n",
             fmt::join(graph.labels, ","), fmt::join(hier.labels, ","), fmt::join(k8.labels, ","),
             fmt::join(automatic.labels, ","));
  return 0;
}
