// Google Benchmark grid for the analysis: the dgemm rate, correlation (from samples and from
// streaming moments) and each grouping step. Quick by default (N in {256, 1024}, S = 2000);
// --full runs N in {256, 1024, 4096} x S in {2000, 10000}.
#include <benchmark/benchmark.h>

#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "analysis/correlation.hpp"
#include "analysis/grouping.hpp"
#include "analysis/moments.hpp"
#include "bench_util.hpp"

using namespace neuronmap::detail;
namespace b = neuronmap::bench;

namespace {

struct Data {
  Eigen::MatrixXd x;
  std::vector<float> rows;  // row-major float32, as the probes deliver
  Correlation corr;
};

// One planted matrix and its correlation per (N, S), made on first use.
const Data& data(std::int64_t n, std::int64_t s) {
  static std::map<std::pair<std::int64_t, std::int64_t>, std::unique_ptr<Data>> cache;
  auto& slot = cache[{n, s}];
  if (!slot) {
    slot = std::make_unique<Data>();
    slot->x = b::planted(n, s, static_cast<std::uint64_t>(n + s));
    const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rows = slot->x.cast<float>();
    slot->rows.assign(rows.data(), rows.data() + rows.size());
    slot->corr = correlation_from_samples(slot->x);
  }
  return *slot;
}

void dgemm(benchmark::State& state) {
  const auto n = static_cast<int>(state.range(0));
  double gflops = 0;
  for (auto _ : state) gflops = b::dgemm_gflops(n, 1);
  state.counters["GFLOPS"] = gflops;
}

void correlation_samples(benchmark::State& state) {
  const auto& d = data(state.range(0), state.range(1));
  for (auto _ : state) benchmark::DoNotOptimize(correlation_from_samples(d.x));
  // Useful flops: the symmetric product N^2 S (a syrk), reported beside the dgemm rate.
  state.counters["GFLOPS"] = benchmark::Counter(static_cast<double>(state.range(0) * state.range(0) * state.range(1)) / 1e9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

void correlation_moments(benchmark::State& state) {
  const auto& d = data(state.range(0), state.range(1));
  const std::int64_t n = state.range(0), s = state.range(1);
  for (auto _ : state) {
    Moments m(n);
    for (std::int64_t r0 = 0; r0 < s; r0 += 256) m.add(d.rows.data() + r0 * n, std::min<std::int64_t>(256, s - r0));
    benchmark::DoNotOptimize(correlation_from_moments(m));
  }
  state.counters["GFLOPS"] = benchmark::Counter(static_cast<double>(n * n * s) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

void correlation_clustering(benchmark::State& state) {
  const auto& d = data(state.range(0), state.range(1));
  int sweeps = 0;
  for (auto _ : state) sweeps = correlation_groups(d.corr, 0.6, 3).sweeps;
  state.counters["sweeps"] = sweeps;
}

void components(benchmark::State& state) {
  const auto& d = data(state.range(0), state.range(1));
  for (auto _ : state) benchmark::DoNotOptimize(threshold_components(d.corr, 0.6, 3));
}

void hierarchical(benchmark::State& state) {
  const auto& d = data(state.range(0), state.range(1));
  for (auto _ : state) benchmark::DoNotOptimize(hierarchical_groups(d.corr, 0.6, 0, 3));
}

void kmeans8(benchmark::State& state) {
  const auto& d = data(state.range(0), state.range(1));
  for (auto _ : state) benchmark::DoNotOptimize(kmeans_fit(d.corr, 8, 10, 42));
}

void kmeans_auto(benchmark::State& state) {
  const auto& d = data(state.range(0), state.range(1));
  int k = 0;
  for (auto _ : state) k = kmeans_groups(d.corr, 0, 10, 42, 3).chosen_k;
  state.counters["chosen_k"] = k;
}

}  // namespace

int main(int argc, char** argv) {
  bool full = false;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::string(argv[i]) == "--full") {
      full = true;
    } else {
      args.push_back(argv[i]);
    }
  }
  const std::vector<std::int64_t> ns = full ? std::vector<std::int64_t>{256, 1024, 4096} : std::vector<std::int64_t>{256, 1024};
  const std::vector<std::int64_t> ss = full ? std::vector<std::int64_t>{2000, 10000} : std::vector<std::int64_t>{2000};
  benchmark::RegisterBenchmark("dgemm", dgemm)->Arg(2048)->Unit(benchmark::kMillisecond)->Iterations(3);
  const std::vector<std::tuple<const char*, void (*)(benchmark::State&)>> steps = {
      {"correlation_from_samples", correlation_samples}, {"correlation_from_moments", correlation_moments},
      {"correlation_clustering", correlation_clustering}, {"components", components},
      {"hierarchical", hierarchical}, {"kmeans_k8", kmeans8}, {"kmeans_auto", kmeans_auto}};
  for (const auto& [name, fn] : steps) {
    auto* bench = benchmark::RegisterBenchmark(name, fn)->Unit(benchmark::kMillisecond)->UseRealTime();
    for (const auto n : ns)
      for (const auto s : ss) bench->Args({n, s});
    if (std::string(name) == "kmeans_auto" || std::string(name) == "correlation_from_moments") bench->Iterations(1);
  }
  int count = static_cast<int>(args.size());
  benchmark::Initialize(&count, args.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
