// The streaming co-moment update of a worker beside a plain single-thread syrk of the same shape, in
// one run: N = 512 with 128-row batches (the MLP's hidden layers) and N = 4096 with 512-row batches.
// `syrk` is the private serial OpenBLAS's dsyrk/ssyrk (worker_blas.hpp) on an already centred
// float64/float32 batch: the floor of the update's cost. `moments` is Moments::add on the probe's
// float32 rows (finite check, sums, min/max, centring, the products, Chan's merge into the packed
// float64 totals); `accumulator` adds what a worker does besides (reservoir, |a| sums).
// bench/worker/run.sh prints update rate / syrk rate per shape.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "analysis/moments.hpp"
#include "analysis/worker_blas.hpp"
#include "stream/accumulator.hpp"

using namespace neuronmap::detail;

namespace {

std::vector<float> batch_rows(std::int64_t n, std::int64_t k) {
  std::mt19937 rng(static_cast<unsigned>(n * 7 + k));
  std::normal_distribution<float> normal;
  std::vector<float> rows(static_cast<std::size_t>(n * k));
  for (auto& v : rows) v = normal(rng);
  return rows;
}

// Rate in units of N^2 * k multiply-adds per second: the same work count for every variant.
void set_rate(benchmark::State& state, std::int64_t n, std::int64_t k) {
  state.counters["GFLOPS"] = benchmark::Counter(static_cast<double>(n) * static_cast<double>(n + 1) * static_cast<double>(k) / 1e9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

template <typename S>
void syrk(benchmark::State& state) {
  const std::int64_t n = state.range(0), k = state.range(1);
  const auto rows = batch_rows(n, k);
  std::vector<S> a(rows.begin(), rows.end()), c(static_cast<std::size_t>(n * n));
  for (auto _ : state) {
    worker_blas::syrk_upper_a_at(n, k, S(1), a.data(), n, S(1), c.data(), n);
    benchmark::DoNotOptimize(c.data());
  }
  set_rate(state, n, k);
  state.SetLabel(worker_blas::description());
}

void moments(benchmark::State& state, ProductPrecision products) {
  const std::int64_t n = state.range(0), k = state.range(1);
  const auto rows = batch_rows(n, k);
  Moments m(n, products);
  for (auto _ : state) benchmark::DoNotOptimize(m.add(rows.data(), k));
  set_rate(state, n, k);
}

void accumulator(benchmark::State& state, ProductPrecision products) {
  const std::int64_t n = state.range(0), k = state.range(1);
  const auto rows = batch_rows(n, k);
  LayerAccumulator acc;
  std::int64_t ordinal = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(acc.add_batch(rows.data(), k, n, ordinal, ordinal, 2048, 42, products));
    ++ordinal;
  }
  set_rate(state, n, k);
}

void shapes(benchmark::internal::Benchmark* b) {
  b->Args({512, 128})->Args({4096, 512})->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace

BENCHMARK_TEMPLATE(syrk, double)->Apply(shapes);
BENCHMARK_CAPTURE(moments, f64, ProductPrecision::f64)->Apply(shapes);
BENCHMARK_CAPTURE(accumulator, f64, ProductPrecision::f64)->Apply(shapes);
BENCHMARK_TEMPLATE(syrk, float)->Apply(shapes);
BENCHMARK_CAPTURE(moments, f32, ProductPrecision::f32)->Apply(shapes);
BENCHMARK_CAPTURE(accumulator, f32, ProductPrecision::f32)->Apply(shapes);
BENCHMARK_MAIN();
