// Measures over the reservoir and the neurons: loss correlation, class selectivity, linear CKA, dormant neurons.
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include <Eigen/Core>

#include "learning/learning.hpp"

namespace neuronmap::detail::learning {

namespace {

constexpr double nan_value = std::numeric_limits<double>::quiet_NaN();
constexpr double pi = 3.14159265358979323846;

template <typename T>
double linear_cka_impl(MatrixView<T> x, MatrixView<T> y) {
  if (x.rows != y.rows) throw std::invalid_argument("linear_cka: both representations need the same samples (rows)");
  if (x.rows < 0 || x.cols < 0 || y.cols < 0 || (x.rows * x.cols > 0 && !x.data) || (y.rows * y.cols > 0 && !y.data)) {
    throw std::invalid_argument("linear_cka: bad matrix view");
  }
  const std::int64_t p = x.cols, q = y.cols;
  std::vector<std::int64_t> kept;
  kept.reserve(static_cast<std::size_t>(x.rows));
  for (std::int64_t r = 0; r < x.rows; ++r) {
    bool finite = true;
    for (std::int64_t c = 0; c < p && finite; ++c) finite = std::isfinite(static_cast<double>(x.data[r * p + c]));
    for (std::int64_t c = 0; c < q && finite; ++c) finite = std::isfinite(static_cast<double>(y.data[r * q + c]));
    if (finite) kept.push_back(r);
  }
  const auto n = static_cast<Eigen::Index>(kept.size());
  if (n < 2 || p == 0 || q == 0) return nan_value;

  Eigen::MatrixXd X(n, p), Y(n, q);
  for (Eigen::Index k = 0; k < n; ++k) {
    const std::int64_t r = kept[static_cast<std::size_t>(k)];
    for (std::int64_t c = 0; c < p; ++c) X(k, c) = static_cast<double>(x.data[r * p + c]);
    for (std::int64_t c = 0; c < q; ++c) Y(k, c) = static_cast<double>(y.data[r * q + c]);
  }
  const double raw_x = X.squaredNorm(), raw_y = Y.squaredNorm();
  X.rowwise() -= X.colwise().mean();
  Y.rowwise() -= Y.colwise().mean();
  // Centring leaves rounding residue (~1e-32 relative) on constant columns: that is no variance.
  // Undefined (NaN) when ||X_centred||_F^2 <= 1e-20 ||X||_F^2 (same for Y).
  const double relative_floor = 1e-20;
  if (X.squaredNorm() <= relative_floor * raw_x || Y.squaredNorm() <= relative_floor * raw_y) return nan_value;

  // Feature form: ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F), cost ~ n (pq + p^2 + q^2).
  // Gram form with K = X X^T, L = Y Y^T: tr(K L) / (||K||_F ||L||_F), the same value, cost ~ n^2 (p + q).
  const double nd = static_cast<double>(n), pd = static_cast<double>(p), qd = static_cast<double>(q);
  const double feature_cost = nd * (pd * qd + pd * pd + qd * qd);
  const double gram_cost = nd * nd * (pd + qd);
  double cross = 0.0, norm_x = 0.0, norm_y = 0.0;
  if (gram_cost < feature_cost) {
    Eigen::MatrixXd K(n, n), L(n, n);
    K.noalias() = X * X.transpose();
    L.noalias() = Y * Y.transpose();
    cross = K.cwiseProduct(L).sum();  // tr(K L) with K, L symmetric
    norm_x = K.norm();
    norm_y = L.norm();
  } else {
    Eigen::MatrixXd cross_matrix(q, p), xx(p, p), yy(q, q);
    cross_matrix.noalias() = Y.transpose() * X;
    xx.noalias() = X.transpose() * X;
    yy.noalias() = Y.transpose() * Y;
    cross = cross_matrix.squaredNorm();
    norm_x = xx.norm();
    norm_y = yy.norm();
  }
  if (!(norm_x > 0.0) || !(norm_y > 0.0)) return nan_value;
  return std::min(1.0, std::max(0.0, cross / (norm_x * norm_y)));  // clipped to [0, 1]
}

}  // namespace

namespace {

template <typename Loss>
double loss_correlation_impl(const std::vector<float>& activation_pattern, const std::vector<Loss>& sample_loss) {
  if (activation_pattern.size() != sample_loss.size()) {
    throw std::invalid_argument("loss_correlation: one loss per reservoir sample of the activation pattern is needed");
  }
  // Pearson r = sum (a - mean a)(l - mean l) / sqrt(sum (a - mean a)^2 * sum (l - mean l)^2), in two
  // passes in float64 over the pairs where both values are finite; 0 when undefined.
  double sum_a = 0.0, sum_l = 0.0;
  std::size_t n = 0;
  for (std::size_t k = 0; k < sample_loss.size(); ++k) {
    const double a = activation_pattern[k], l = static_cast<double>(sample_loss[k]);
    if (!std::isfinite(a) || !std::isfinite(l)) continue;
    sum_a += a, sum_l += l, ++n;
  }
  if (n < 2) return 0.0;
  const double mean_a = sum_a / static_cast<double>(n), mean_l = sum_l / static_cast<double>(n);
  double saa = 0.0, sll = 0.0, sal = 0.0;
  for (std::size_t k = 0; k < sample_loss.size(); ++k) {
    const double a = activation_pattern[k], l = static_cast<double>(sample_loss[k]);
    if (!std::isfinite(a) || !std::isfinite(l)) continue;
    saa += (a - mean_a) * (a - mean_a);
    sll += (l - mean_l) * (l - mean_l);
    sal += (a - mean_a) * (l - mean_l);
  }
  if (!(saa > 0.0) || !(sll > 0.0)) return 0.0;
  const double r = sal / std::sqrt(saa * sll);
  return std::isfinite(r) ? std::min(1.0, std::max(-1.0, r)) : 0.0;
}

}  // namespace

double loss_correlation(const std::vector<float>& activation_pattern, const std::vector<double>& sample_loss) {
  return loss_correlation_impl(activation_pattern, sample_loss);
}
double loss_correlation(const std::vector<float>& activation_pattern, const std::vector<float>& sample_loss) {
  return loss_correlation_impl(activation_pattern, sample_loss);
}

Selectivity class_selectivity(const std::vector<float>& activation_pattern, const std::vector<std::int32_t>& sample_tags,
                              const std::vector<std::string>& tag_names, const LearningOptions& options) {
  if (activation_pattern.size() != sample_tags.size()) {
    throw std::invalid_argument("class_selectivity: one tag per reservoir sample of the activation pattern is needed");
  }
  const auto n_tags = static_cast<std::int32_t>(tag_names.size());
  Selectivity out;
  out.tag_means.assign(tag_names.size(), nan_value);
  std::vector<double> sums(tag_names.size(), 0.0);
  std::vector<std::int64_t> counts(tag_names.size(), 0);
  double minimum = std::numeric_limits<double>::infinity();
  for (std::size_t k = 0; k < sample_tags.size(); ++k) {
    const std::int32_t tag = sample_tags[k];
    if (tag < 0) continue;
    if (tag >= n_tags) throw std::invalid_argument("class_selectivity: tag id " + std::to_string(tag) + " has no name");
    const double a = activation_pattern[k];
    if (!std::isfinite(a)) continue;
    sums[tag] += a;
    ++counts[tag];
    minimum = std::min(minimum, a);
  }
  std::vector<std::int32_t> present;
  for (std::int32_t t = 0; t < n_tags; ++t) {
    if (counts[t] == 0) continue;
    out.tag_means[t] = sums[t] / static_cast<double>(counts[t]);
    present.push_back(t);
  }
  if (present.empty()) {
    out.category = "untagged";
    return out;
  }
  // SI is defined for non-negative responses. A signed pattern is shifted by its smallest tagged sample so
  // that it becomes non-negative (ReLU patterns, min >= 0, are used as they are): SI then does not change
  // when a constant is added to a signed layer, and unlike a shift by the smallest tag mean it does not
  // make every two-tag group perfectly selective.
  const double shift = std::min(minimum, 0.0);
  out.top_tag = present.front();
  for (auto t : present) {
    if (out.tag_means[t] > out.tag_means[out.top_tag]) out.top_tag = t;
  }
  if (present.size() < 2) {  // selectivity needs something to compare with
    out.category = "mixed";
    return out;
  }
  // SI = (mu_max - mu_rest) / (mu_max + mu_rest): mu_k the (shifted) mean over the samples tagged k,
  // mu_max the largest, mu_rest the mean of the other tags' means; category = top tag if SI >= threshold.
  const double mu_max = out.tag_means[out.top_tag] - shift;
  double rest = 0.0;
  for (auto t : present) {
    if (t != out.top_tag) rest += out.tag_means[t] - shift;
  }
  rest /= static_cast<double>(present.size() - 1);
  const double denominator = mu_max + rest;
  out.index = denominator > 0.0 ? std::min(1.0, std::max(0.0, (mu_max - rest) / denominator)) : 0.0;
  out.category = out.index >= options.selectivity_threshold ? tag_names[out.top_tag] : "mixed";
  return out;
}

double linear_cka(MatrixView<float> x, MatrixView<float> y) { return linear_cka_impl(x, y); }
double linear_cka(MatrixView<double> x, MatrixView<double> y) { return linear_cka_impl(x, y); }

DormantNeurons dormant_neurons(const std::vector<double>& mean_abs_activation, const LearningOptions& options) {
  DormantNeurons out;
  out.scores.assign(mean_abs_activation.size(), nan_value);
  double sum = 0.0;
  for (double v : mean_abs_activation) {
    if (!std::isfinite(v)) continue;
    if (v < 0.0) throw std::invalid_argument("dormant_neurons: E|h| cannot be negative");
    sum += v;
    ++out.counted;
  }
  if (out.counted == 0) {
    out.dead_rate = out.dormant_rate = nan_value;
    return out;
  }
  // s_i = E|h_i| / ((1/H) sum_k E|h_k|); a layer that is silent everywhere scores 0 (all dead).
  const double layer_mean = sum / static_cast<double>(out.counted);
  for (std::size_t i = 0; i < mean_abs_activation.size(); ++i) {
    const double v = mean_abs_activation[i];
    if (!std::isfinite(v)) continue;
    const double score = layer_mean > 0.0 ? v / layer_mean : 0.0;
    out.scores[i] = score;
    out.dead_count += score <= 0.0;  // tau-dormant: s_i <= tau (dead: tau = 0)
    out.dormant_count += score <= options.dormant_tau;
  }
  out.dead_rate = static_cast<double>(out.dead_count) / static_cast<double>(out.counted);
  out.dormant_rate = static_cast<double>(out.dormant_count) / static_cast<double>(out.counted);
  return out;
}

std::vector<double> mean_abs_from_moments(const LayerSnapshot& layer) {
  const std::size_t n = layer.mean.size();
  const bool have_range = layer.min.size() == n && layer.max.size() == n;
  const bool have_std = layer.stddev.size() == n;
  std::vector<double> out(n, nan_value);
  for (std::size_t i = 0; i < n; ++i) {
    const double mu = layer.mean[i];
    if (!std::isfinite(mu)) continue;
    if (have_range && layer.min[i] >= 0.0) {
      out[i] = mu;  // never negative: |h| = h
    } else if (have_range && layer.max[i] <= 0.0) {
      out[i] = -mu;  // never positive: |h| = -h
    } else if (!have_std || !(layer.stddev[i] > 0.0)) {
      out[i] = std::abs(mu);
    } else {
      // Folded normal: E|h| = s sqrt(2/pi) exp(-mu^2 / 2s^2) + mu erf(mu / (s sqrt 2)), kept within
      // [|mu|, max(|min|, |max|)], the bounds every distribution with these moments and range obeys.
      const double s = layer.stddev[i];
      double folded = s * std::sqrt(2.0 / pi) * std::exp(-mu * mu / (2.0 * s * s)) + mu * std::erf(mu / (s * std::sqrt(2.0)));
      folded = std::max(folded, std::abs(mu));
      if (have_range) folded = std::min(folded, std::max(std::abs(layer.min[i]), std::abs(layer.max[i])));
      out[i] = folded;
    }
  }
  return out;
}

}  // namespace neuronmap::detail::learning
