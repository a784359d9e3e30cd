// Shared by the analysis benchmarks: timing, the BLAS dgemm rate, planted data, .npy reading.
#pragma once

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <Eigen/Core>

namespace neuronmap::bench {

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

struct Timing {
  double wall = 0, cpu = 0;  ///< seconds; cpu = process CPU time, all threads
};

/// The run with the median wall time out of `reps`.
template <typename F>
Timing median_timing(int reps, F&& f) {
  std::vector<Timing> runs;
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    const std::clock_t cpu_start = std::clock();
    f();
    runs.push_back({seconds_since(start), static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC});
  }
  std::sort(runs.begin(), runs.end(), [](const Timing& a, const Timing& b) { return a.wall < b.wall; });
  return runs[runs.size() / 2];
}

/// The machine's dgemm rate on square n x n float64 matrices, best of `reps`: GFLOP per wall second
/// and GFLOP per CPU second (all threads; the second is what a loaded machine cannot distort much).
struct Rate {
  double wall = 0, cpu = 0;
};
inline Rate dgemm_rate(int n = 2048, int reps = 3) {
  std::vector<double> a(static_cast<std::size_t>(n) * n, 1.0 / n), b(a), c(a.size());
  Rate best;
  const double flops = 2.0 * n * static_cast<double>(n) * n;
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    const std::clock_t cpu_start = std::clock();
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, a.data(), n, b.data(), n, 0.0, c.data(), n);
    const double cpu = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
    best.wall = std::max(best.wall, flops / seconds_since(start) / 1e9);
    best.cpu = std::max(best.cpu, flops / std::max(cpu, 1e-9) / 1e9);
  }
  return best;
}
inline double dgemm_gflops(int n = 2048, int reps = 3) { return dgemm_rate(n, reps).wall; }

/// Planted groups (k factors + noise), background neurons, a few dead ones; samples x neurons.
inline Eigen::MatrixXd planted(std::int64_t n, std::int64_t s, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  const int k = 8;
  Eigen::MatrixXd factors(s, k);
  for (auto& v : factors.reshaped()) v = normal(rng);
  Eigen::MatrixXd x(s, n);
  const std::int64_t dead = std::max<std::int64_t>(3, n / 32), background = n / 8;
  for (std::int64_t j = 0; j < n; ++j) {
    if (j < dead) {
      x.col(j).setConstant(j % 2 ? 0.3 : 0.0);
    } else if (j < dead + background) {
      for (auto& v : x.col(j)) v = normal(rng);
    } else {
      const auto f = static_cast<Eigen::Index>(j % k);
      for (std::int64_t r = 0; r < s; ++r) x(r, j) = factors(r, f) + 0.5 * normal(rng);
    }
  }
  return x;
}

/// A 2-D '<f4' or '<f8' .npy (C or Fortran order) as float64, row-major (samples x neurons).
inline std::vector<double> read_npy_rows(const std::string& path, std::int64_t& rows, std::int64_t& cols) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string bytes = buffer.str();
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) throw std::runtime_error(path + ": not a .npy file");
  const std::size_t header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
  const std::string header = bytes.substr(10, header_len);
  const bool f4 = header.find("'<f4'") != std::string::npos;
  if (!f4 && header.find("'<f8'") == std::string::npos) throw std::runtime_error(path + ": expected <f4 or <f8");
  const bool fortran = header.find("'fortran_order': True") != std::string::npos;
  const auto open = header.find('(');
  std::stringstream dims(header.substr(open + 1, header.find(')') - open - 1));
  std::string part;
  std::getline(dims, part, ',');
  rows = std::stoll(part);
  std::getline(dims, part, ',');
  cols = std::stoll(part);
  std::vector<double> out(static_cast<std::size_t>(rows * cols));
  const char* data = bytes.data() + 10 + header_len;
  for (std::size_t i = 0; i < out.size(); ++i) {
    double v;
    if (f4) {
      float f;
      std::memcpy(&f, data + 4 * i, 4);
      v = f;
    } else {
      std::memcpy(&v, data + 8 * i, 8);
    }
    // Fortran order: element i is (i % rows, i / rows).
    const std::size_t target = fortran ? (i % static_cast<std::size_t>(rows)) * static_cast<std::size_t>(cols) + i / static_cast<std::size_t>(rows) : i;
    out[target] = v;
  }
  return out;
}

}  // namespace neuronmap::bench
