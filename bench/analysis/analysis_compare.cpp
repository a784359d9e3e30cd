// Times each analysis step on one .npy matrix and prints JSON (timings, labels) for
// compare_python.py, which runs the Python reference on the same matrix in the same run.
//   analysis_compare X.npy [--reps R] [--no-autok]
//   analysis_compare X.npy --kmeans-seeds A:B [--k K]   k-means inertia per seed in [A, B) (n_init 10),
//                                                       Lloyd alone and with Hartigan's moves
#include <algorithm>
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
  std::string seeds;
  int k = 8;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--reps" && i + 1 < argc) reps = std::stoi(argv[++i]);
    if (arg == "--no-autok") autok = false;
    if (arg == "--kmeans-seeds" && i + 1 < argc) seeds = argv[++i];
    if (arg == "--k" && i + 1 < argc) k = std::stoi(argv[++i]);
  }
  std::int64_t rows = 0, cols = 0;
  const std::vector<double> x = b::read_npy_rows(argv[1], rows, cols);
  if (!seeds.empty()) {
    const auto colon = seeds.find(':');
    const std::uint64_t first = std::stoull(seeds.substr(0, colon)), last = std::stoull(seeds.substr(colon + 1));
    const Correlation c = correlation_from_rows(x.data(), rows, cols);
    std::vector<std::string> lloyd, refined, moves;
    for (std::uint64_t seed = first; seed < last; ++seed) {
      lloyd.push_back(fmt::format("{}", kmeans_fit(c, k, 10, seed, false).inertia));
      const KMeansFit fit = kmeans_fit(c, k, 10, seed);
      refined.push_back(fmt::format("{}", fit.inertia));
      moves.push_back(fmt::format("{}", fit.n_moves));
    }
    fmt::print("{{\"n\": {}, \"s\": {}, \"k\": {}, \"first_seed\": {}, \"lloyd\": [{}], \"refined\": [{}], \"moves\": [{}]}}\n",
               cols, rows, k, first, fmt::join(lloyd, ", "), fmt::join(refined, ", "), fmt::join(moves, ", "));
    return 0;
  }

  // The dgemm rate is measured right before each correlation run and compared run by run: on a
  // shared machine the load changes between minutes, not within a few seconds.
  const double corr_flops = static_cast<double>(cols) * static_cast<double>(cols) * static_cast<double>(rows);
  Correlation corr;
  std::vector<b::Timing> corr_runs;
  std::vector<double> gemm_wall, gemm_cpu, ratio_wall, ratio_cpu;
  for (int r = 0; r < reps; ++r) {
    const b::Rate gemm = b::dgemm_rate(2048, 2);
    const b::Timing t = b::median_timing(1, [&] { corr = correlation_from_rows(x.data(), rows, cols); });
    corr_runs.push_back(t);
    gemm_wall.push_back(gemm.wall);
    gemm_cpu.push_back(gemm.cpu);
    ratio_wall.push_back(corr_flops / t.wall / 1e9 / gemm.wall);
    ratio_cpu.push_back(corr_flops / std::max(t.cpu, 1e-9) / 1e9 / gemm.cpu);
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::sort(corr_runs.begin(), corr_runs.end(), [](const b::Timing& p, const b::Timing& q) { return p.wall < q.wall; });
  const b::Timing t_corr = corr_runs[corr_runs.size() / 2];
  const double gflops = median(gemm_wall);
  Correlation streamed;
  const std::vector<float> x32(x.begin(), x.end());
  const b::Timing t_moments = b::median_timing(1, [&] {
    Moments m(cols);
    for (std::int64_t r0 = 0; r0 < rows; r0 += 256) m.add(x32.data() + r0 * cols, std::min<std::int64_t>(256, rows - r0));
    streamed = correlation_from_moments(m);
  });
  GroupingResult graph, components, hier, automatic;
  double sink = 0.0;
  // Correlation clustering from the given correlation matrix, with the defaults (10 restarts, seed 42).
  const b::Timing t_graph = b::median_timing(reps, [&] {
    graph = correlation_groups(corr, 0.6, 3);
    sink += group_stats(x, rows, cols, graph);
  });
  const b::Timing t_components = b::median_timing(reps, [&] {
    components = threshold_components(corr, 0.6, 3);
    sink += group_stats(x, rows, cols, components);
  });
  const b::Timing t_hier = b::median_timing(reps, [&] {
    hier = hierarchical_groups(corr, 0.6, 0, 3);
    sink += group_stats(x, rows, cols, hier);
  });
  KMeansFit k8;
  const b::Timing t_k8 = b::median_timing(reps, [&] { k8 = kmeans_fit(corr, 8, 10, 42); });
  b::Timing t_auto{-1, -1};
  if (autok) t_auto = b::median_timing(1, [&] { automatic = kmeans_groups(corr, 0, 10, 42, 3); });

  fmt::print("{{\"n\": {}, \"s\": {}, \"dgemm_gflops\": {}, \"dgemm_cpu_gflops\": {}, \"corr_gflops\": {}, "
             "\"corr_cpu_gflops\": {}, \"corr_vs_dgemm_wall\": {}, \"corr_vs_dgemm_cpu\": {}, \"sink\": {},\n",
             cols, rows, gflops, median(gemm_cpu), corr_flops / t_corr.wall / 1e9,
             corr_flops / std::max(t_corr.cpu, 1e-9) / 1e9, median(ratio_wall), median(ratio_cpu), sink);
  const std::vector<std::pair<const char*, b::Timing>> steps = {
      {"correlation", t_corr}, {"correlation_from_moments", t_moments}, {"graph", t_graph},
      {"components", t_components}, {"hierarchical", t_hier}, {"kmeans8", t_k8}, {"autok", t_auto}};
  std::vector<std::string> wall, cpu;
  for (const auto& [name, t] : steps) {
    wall.push_back(fmt::format("\"{}\": {}", name, t.wall));
    cpu.push_back(fmt::format("\"{}\": {}", name, t.cpu));
  }
  fmt::print(" \"seconds\": {{{}}},\n \"cpu_seconds\": {{{}}},\n", fmt::join(wall, ", "), fmt::join(cpu, ", "));
  fmt::print(" \"kmeans8_inertia\": {}, \"chosen_k\": {}, \"autok_inertia\": {},\n", k8.inertia, automatic.chosen_k,
             automatic.inertia);
  fmt::print(" \"correlation_quality\": {}, \"correlation_sweeps\": {},\n", graph.quality, graph.sweeps);
  fmt::print(" \"labels\": {{\"correlation_clustering\": [{}], \"components\": [{}], \"hierarchical\": [{}], "
             "\"kmeans8\": [{}], \"kmeans\": [{}]}}}}\n",
             fmt::join(graph.labels, ","), fmt::join(components.labels, ","), fmt::join(hier.labels, ","),
             fmt::join(k8.labels, ","),
             fmt::join(automatic.labels, ","));
  return 0;
}
