// Exact streaming statistics of a layer's activations: count, mean, co-moment matrix, min and max,
// in float64, mergeable (Chan et al.'s pairwise update), so workers can accumulate in parallel.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "analysis/large_buffer.hpp"

namespace neuronmap::detail {

/// The precision of each batch's centred product before it joins the float64 totals.
enum class ProductPrecision { f64, f32 };

class Moments {
 public:
  explicit Moments(std::int64_t n_neurons = 0, ProductPrecision products = ProductPrecision::f64);

  /// Adds `rows` samples (row-major, rows x n_neurons). Rows holding NaN or Inf are skipped;
  /// returns how many were skipped.
  std::int64_t add(const float* data, std::int64_t rows);
  std::int64_t add(const double* data, std::int64_t rows);
  /// Adds the statistics of another accumulator of the same width (order does not matter).
  /// `parallel`: split the columns over TBB's threads; a worker thread passes false, so that it stays
  /// the one busy thread it is (docs/PERFORMANCE.md).
  void merge(const Moments& other, bool parallel = true);

  std::int64_t n_neurons() const noexcept { return n_; }
  std::int64_t count() const noexcept { return count_; }
  const Eigen::VectorXd& mean() const noexcept { return mean_; }
  const Eigen::VectorXd& min() const noexcept { return min_; }
  const Eigen::VectorXd& max() const noexcept { return max_; }

  /// Sum over samples of (x_i - mean_i)(x_j - mean_j), for any i, j.
  double comoment(std::int64_t i, std::int64_t j) const noexcept {
    return i <= j ? packed_[static_cast<std::size_t>(column_offset(j) + i)]
                  : packed_[static_cast<std::size_t>(column_offset(i) + j)];
  }
  /// The full symmetric co-moment matrix (n x n float64: tests and small layers only).
  Eigen::MatrixXd comoment() const;
  /// The upper triangle packed by columns (column j holds rows 0..j at offset j(j+1)/2): half the
  /// memory of a square matrix, which is what lets a 16,384-neuron layer fit (docs/ANALYSIS.md).
  const LargeVector<double>& comoment_packed() const noexcept { return packed_; }
  static std::int64_t column_offset(std::int64_t j) noexcept { return j * (j + 1) / 2; }

  /// An accumulator rebuilt from its state (another process's, received by stream/exchange.cpp).
  static Moments from_state(std::int64_t count, Eigen::VectorXd mean, LargeVector<double> packed, Eigen::VectorXd min,
                            Eigen::VectorXd max) {
    Moments m;
    m.n_ = mean.size();
    m.count_ = count;
    m.mean_ = std::move(mean);
    m.packed_ = std::move(packed);
    m.min_ = std::move(min);
    m.max_ = std::move(max);
    return m;
  }

 private:
  template <typename T>
  std::int64_t add_rows(const T* data, std::int64_t rows);
  template <typename S, typename T>
  void add_block(const T* data, const std::int64_t* kept, std::int64_t b, const Eigen::VectorXd& block_mean);

  std::int64_t n_ = 0;
  ProductPrecision products_ = ProductPrecision::f64;
  std::int64_t count_ = 0;
  Eigen::VectorXd mean_;
  LargeVector<double> packed_;
  Eigen::VectorXd min_, max_;
};

}  // namespace neuronmap::detail
