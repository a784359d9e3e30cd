#include "analysis/correlation.hpp"

#include <algorithm>
#include <cmath>

#include "analysis/moments.hpp"

namespace neuronmap::detail {
namespace {

// r_ij = M_ij / sqrt(M_ii M_jj) on the co-moment matrix M; the 1/(n - ddof) factors cancel.
Correlation normalise(const Eigen::MatrixXd& comoment, const std::vector<std::uint8_t>& dead,
                      std::int64_t count) {
  const Eigen::Index n = comoment.rows();
  Correlation out;
  out.dead = dead;
  out.stddev = Eigen::VectorXd::Zero(n);
  Eigen::VectorXd inv_norm = Eigen::VectorXd::Zero(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    const double m = comoment(i, i);
    if (count > 0 && m > 0) out.stddev(i) = std::sqrt(m / static_cast<double>(count));
    if (!dead[static_cast<std::size_t>(i)] && m > 0) inv_norm(i) = 1.0 / std::sqrt(m);
  }
  out.r = inv_norm.asDiagonal() * comoment * inv_norm.asDiagonal();
  for (Eigen::Index j = 0; j < n; ++j) {
    for (Eigen::Index i = 0; i < n; ++i) {
      double& v = out.r(i, j);
      v = std::isfinite(v) ? std::clamp(v, -1.0, 1.0) : 0.0;
    }
    out.r(j, j) = 1.0;
  }
  return out;
}

}  // namespace

Correlation correlation_from_moments(const Moments& moments) {
  const auto n = moments.n_neurons();
  std::vector<std::uint8_t> dead(static_cast<std::size_t>(n), 0);
  for (std::int64_t i = 0; i < n; ++i) {
    dead[static_cast<std::size_t>(i)] =
        moments.count() == 0 || !(moments.max()(i) > moments.min()(i)) ? 1 : 0;
  }
  return normalise(moments.comoment(), dead, moments.count());
}

Correlation correlation_from_samples(const Eigen::Ref<const Eigen::MatrixXd>& samples) {
  const Eigen::Index n = samples.cols();
  std::vector<std::uint8_t> dead(static_cast<std::size_t>(n), 0);
  for (Eigen::Index i = 0; i < n; ++i) {
    dead[static_cast<std::size_t>(i)] =
        samples.rows() == 0 || !(samples.col(i).maxCoeff() > samples.col(i).minCoeff()) ? 1 : 0;
  }
  const Eigen::MatrixXd centred = samples.rowwise() - samples.colwise().mean();
  Eigen::MatrixXd comoment = Eigen::MatrixXd::Zero(n, n);
  comoment.selfadjointView<Eigen::Upper>().rankUpdate(centred.transpose());
  comoment = comoment.selfadjointView<Eigen::Upper>();
  return normalise(comoment, dead, samples.rows());
}

}  // namespace neuronmap::detail
