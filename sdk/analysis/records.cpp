// Group records (activation pattern, centre, mean activation) and the seeded neuron subset.
#include "analysis/records.hpp"

#include <algorithm>
#include <numeric>

namespace neuronmap::detail {
namespace {

template <typename Matrix>
Eigen::VectorXd pattern_of(const Matrix& samples, const std::vector<std::int32_t>& members) {
  Eigen::VectorXd sum = Eigen::VectorXd::Zero(samples.rows());
  if (members.empty()) return sum;
  for (const auto m : members) sum += samples.col(m).template cast<double>();
  return sum / static_cast<double>(members.size());
}

std::uint64_t mix64(std::uint64_t x) noexcept {  // splitmix64's finaliser
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

template <typename T>
Eigen::VectorXd pattern_of_rows(const T* rows_major, std::int64_t rows, std::int64_t cols,
                                const std::vector<std::int32_t>& members) {
  Eigen::VectorXd out = Eigen::VectorXd::Zero(rows);
  if (members.empty()) return out;
  for (std::int64_t s = 0; s < rows; ++s) {
    const T* row = rows_major + s * cols;
    double sum = 0.0;
    for (const auto m : members) sum += static_cast<double>(row[m]);
    out(s) = sum / static_cast<double>(members.size());
  }
  return out;
}

}  // namespace

Eigen::VectorXd activation_pattern(const Eigen::Ref<const Eigen::MatrixXf>& samples,
                                   const std::vector<std::int32_t>& members) {
  return pattern_of(samples, members);
}

Eigen::VectorXd activation_pattern(const Eigen::Ref<const Eigen::MatrixXd>& samples,
                                   const std::vector<std::int32_t>& members) {
  return pattern_of(samples, members);
}

Eigen::VectorXd activation_pattern(const float* rows_major, std::int64_t rows, std::int64_t cols,
                                   const std::vector<std::int32_t>& members) {
  return pattern_of_rows(rows_major, rows, cols, members);
}

Eigen::VectorXd activation_pattern(const double* rows_major, std::int64_t rows, std::int64_t cols,
                                   const std::vector<std::int32_t>& members) {
  return pattern_of_rows(rows_major, rows, cols, members);
}

double mean_activation(const Eigen::VectorXd& pattern) { return pattern.size() == 0 ? 0.0 : pattern.mean(); }

double mean_activation(const Eigen::VectorXd& neuron_means, const std::vector<std::int32_t>& members) {
  if (members.empty()) return 0.0;
  double sum = 0.0;
  for (const auto m : members) sum += neuron_means(m);
  return sum / static_cast<double>(members.size());
}

std::vector<std::int64_t> choose_neuron_subset(std::int64_t n_neurons, std::int64_t cap, std::uint64_t seed) {
  std::vector<std::int64_t> all(static_cast<std::size_t>(std::max<std::int64_t>(n_neurons, 0)));
  std::iota(all.begin(), all.end(), 0);
  if (cap <= 0 || cap >= n_neurons) return all;
  auto key = [seed](std::int64_t i) { return mix64(seed ^ mix64(static_cast<std::uint64_t>(i))); };
  std::nth_element(all.begin(), all.begin() + cap, all.end(), [&](std::int64_t a, std::int64_t b) {
    const auto ka = key(a), kb = key(b);
    return ka != kb ? ka < kb : a < b;
  });
  all.resize(static_cast<std::size_t>(cap));
  std::sort(all.begin(), all.end());
  return all;
}

}  // namespace neuronmap::detail
