// Exact streaming statistics of a layer's activations: count, mean, co-moment matrix, min and max,
// in float64, mergeable (Chan et al.'s pairwise update), so workers can accumulate in parallel.
#pragma once

#include <cstdint>

#include <Eigen/Core>

namespace neuronmap::detail {

class Moments {
 public:
  explicit Moments(std::int64_t n_neurons = 0);

  /// Adds `rows` samples (row-major, rows x n_neurons). Rows holding NaN or Inf are skipped;
  /// returns how many were skipped.
  std::int64_t add(const float* data, std::int64_t rows);
  /// Adds the statistics of another accumulator of the same width (order does not matter).
  void merge(const Moments& other);

  std::int64_t n_neurons() const noexcept { return n_; }
  std::int64_t count() const noexcept { return count_; }
  const Eigen::VectorXd& mean() const noexcept { return mean_; }
  /// Sum over samples of (x - mean)(x - mean)^T. Only the upper triangle is maintained; call
  /// comoment() for the full symmetric matrix.
  const Eigen::MatrixXd& comoment_upper() const noexcept { return comoment_; }
  Eigen::MatrixXd comoment() const;
  const Eigen::VectorXd& min() const noexcept { return min_; }
  const Eigen::VectorXd& max() const noexcept { return max_; }

 private:
  void add_block(const Eigen::Ref<const Eigen::MatrixXd>& block);

  std::int64_t n_ = 0;
  std::int64_t count_ = 0;
  Eigen::VectorXd mean_;
  Eigen::MatrixXd comoment_;
  Eigen::VectorXd min_, max_;
};

}  // namespace neuronmap::detail
