// What a snapshot reports per group beyond its members (the reference's group record), and the
// seeded neuron subset for capping very wide layers.
#pragma once

#include <cstdint>
#include <vector>

#include <Eigen/Core>

namespace neuronmap::detail {

/// The group's mean activation per sample: samples(:, members).mean over members (length = rows;
/// rows are samples, e.g. the reservoir). Accumulated in float64.
Eigen::VectorXd activation_pattern(const Eigen::Ref<const Eigen::MatrixXf>& samples,
                                   const std::vector<std::int32_t>& members);
Eigen::VectorXd activation_pattern(const Eigen::Ref<const Eigen::MatrixXd>& samples,
                                   const std::vector<std::int32_t>& members);
/// Row-major samples (rows x cols), as the reservoir hands them out.
Eigen::VectorXd activation_pattern(const float* rows_major, std::int64_t rows, std::int64_t cols,
                                   const std::vector<std::int32_t>& members);
Eigen::VectorXd activation_pattern(const double* rows_major, std::int64_t rows, std::int64_t cols,
                                   const std::vector<std::int32_t>& members);

/// The mean of the members' activation profiles: the same vector as activation_pattern (the
/// reference defines both; upstream's S x g sub-matrix is not what the brief asks for).
inline Eigen::VectorXd group_center(const Eigen::Ref<const Eigen::MatrixXf>& samples,
                                    const std::vector<std::int32_t>& members) {
  return activation_pattern(samples, members);
}

/// mean(activation_pattern): the group's mean activation over the samples it was computed from.
double mean_activation(const Eigen::VectorXd& pattern);
/// The same quantity over every accumulated sample, from the per-neuron means (Moments::mean()):
/// the mean over members of their means, which equals the mean of the full activation pattern.
double mean_activation(const Eigen::VectorXd& neuron_means, const std::vector<std::int32_t>& members);

/// A deterministic subset of `cap` neurons out of `n_neurons` (all of them when cap <= 0 or
/// cap >= n_neurons), ascending: the neurons with the smallest splitmix64(seed, index) keys. The
/// choice depends only on (n_neurons, cap, seed), and a smaller cap picks a subset of a larger one.
std::vector<std::int64_t> choose_neuron_subset(std::int64_t n_neurons, std::int64_t cap, std::uint64_t seed);

}  // namespace neuronmap::detail
