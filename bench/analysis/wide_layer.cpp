// A 16,384-neuron layer end to end (streaming moments -> float32 correlation -> each grouping
// method) with the process's peak memory after each step, to show it stays within 4 GB.
//   wide_layer [--neurons N] [--samples S] [--methods correlation,hierarchical,kmeans]
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "analysis/correlation.hpp"
#include "analysis/grouping.hpp"
#include "analysis/moments.hpp"

using namespace neuronmap::detail;

namespace {

double peak_mib() {  // VmHWM: the resident high-water mark
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return 0.0;
}

double since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::int64_t n = 16384, samples = 1024;
  std::string methods = "correlation,hierarchical,kmeans";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string arg = argv[i];
    if (arg == "--neurons") n = std::stoll(argv[i + 1]);
    if (arg == "--samples") samples = std::stoll(argv[i + 1]);
    if (arg == "--methods") methods = argv[i + 1];
  }
  std::printf("wide layer: %lld neurons, %lld samples (batches of 256), precision %s\n", static_cast<long long>(n),
              static_cast<long long>(samples), resolve_precision(Precision::automatic, n) == Precision::f32 ? "float32" : "float64");
  // 32 planted groups of 64 neurons driven by shared factors; the rest independent noise; 16 dead.
  std::mt19937_64 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const std::int64_t batch = 256;
  std::vector<float> rows(static_cast<std::size_t>(batch * n));
  auto t = std::chrono::steady_clock::now();
  Moments moments(n);
  for (std::int64_t done = 0; done < samples; done += batch) {
    const std::int64_t b = std::min(batch, samples - done);
    for (std::int64_t r = 0; r < b; ++r) {
      float factors[32];
      for (float& f : factors) f = normal(rng);
      for (std::int64_t c = 0; c < n; ++c) {
        float v = normal(rng);
        if (c < 32 * 64) v = factors[c / 64] + 0.5f * v;
        if (c >= n - 16) v = c % 2 ? 0.3f : 0.0f;
        rows[static_cast<std::size_t>(r * n + c)] = v;
      }
    }
    moments.add(rows.data(), b);
  }
  std::printf("%-34s %8.2f s   peak %7.0f MiB\n", "moments (packed float64)", since(t), peak_mib());
  t = std::chrono::steady_clock::now();
  const Correlation corr = correlation_from_moments(moments);
  std::printf("%-34s %8.2f s   peak %7.0f MiB\n", corr.r.is_f32() ? "correlation (float32)" : "correlation (float64)",
              since(t), peak_mib());
  std::stringstream list(methods);
  for (std::string method; std::getline(list, method, ',');) {
    neuronmap::Grouping options;
    options.method = method == "kmeans" ? neuronmap::GroupingMethod::kmeans
                     : method == "hierarchical" ? neuronmap::GroupingMethod::hierarchical
                                                : neuronmap::GroupingMethod::correlation;
    t = std::chrono::steady_clock::now();
    const GroupingResult g = group_neurons(corr, options);
    std::printf("%-34s %8.2f s   peak %7.0f MiB   %zu groups%s\n", (method + " groups").c_str(), since(t), peak_mib(),
                g.groups.size(), method == "kmeans" ? (" (k = " + std::to_string(g.chosen_k) + ")").c_str() : "");
  }
  return 0;
}
