// Pearson correlation between neurons, with the reference's rules for dead neurons (see
// shared oracle semantics): a neuron that never varied (max == min) correlates 0 with every other.
#pragma once

#include <cstdint>
#include <vector>

#include <Eigen/Core>

namespace neuronmap::detail {

class Moments;

struct Correlation {
  Eigen::MatrixXd r;               ///< n x n, symmetric, diagonal 1, every entry finite and in [-1, 1]
  std::vector<std::uint8_t> dead;  ///< 1 where the neuron never varied (or saw no sample)
  Eigen::VectorXd stddev;          ///< population standard deviation (ddof = 0)
};

/// From streaming moments (exact over every accumulated sample).
Correlation correlation_from_moments(const Moments& moments);

/// From a samples x neurons matrix (the `groups` verb; tests).
Correlation correlation_from_samples(const Eigen::Ref<const Eigen::MatrixXd>& samples);

}  // namespace neuronmap::detail
