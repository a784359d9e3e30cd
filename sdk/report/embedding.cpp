// PCA with Eigen (exact or randomised subspace iteration) and a small exact t-SNE.
#include "report/embedding.hpp"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include <fmt/format.h>

namespace neuronmap::report {
namespace {

using RowMatrixF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Above this many rows and columns the exact eigen-decomposition gets slow; randomise instead.
constexpr std::int64_t kExactPcaLimit = 320;

Eigen::MatrixXf orthonormal_basis(const Eigen::MatrixXf& a) {
  Eigen::HouseholderQR<Eigen::MatrixXf> qr(a);
  return qr.householderQ() * Eigen::MatrixXf::Identity(a.rows(), a.cols());
}

/// Flip each component so that its largest score is positive: the same input always looks the same.
void fix_signs(Pca& pca) {
  for (auto& s : pca.scores) {
    double best = 0;
    for (double v : s)
      if (std::fabs(v) > std::fabs(best)) best = v;
    if (best < 0)
      for (auto& v : s) v = -v;
  }
}

}  // namespace

Pca principal_components(const float* data, std::int64_t rows, std::int64_t cols, int k, std::uint64_t seed) {
  Pca out;
  k = static_cast<int>(std::min<std::int64_t>({k, rows, cols}));
  if (k <= 0) return out;
  std::vector<float> cleaned;
  if (!std::all_of(data, data + rows * cols, [](float v) { return std::isfinite(v); })) {
    cleaned.assign(data, data + rows * cols);
    for (auto& v : cleaned)
      if (!std::isfinite(v)) v = 0.0f;
    data = cleaned.data();
  }
  const Eigen::Map<const RowMatrixF> x(data, rows, cols);
  Eigen::VectorXd mean = Eigen::VectorXd::Zero(cols);
  double sum_squares = 0;
  for (std::int64_t i = 0; i < rows; ++i) {
    mean += x.row(i).transpose().cast<double>();
    sum_squares += x.row(i).cast<double>().squaredNorm();
  }
  mean /= static_cast<double>(rows);
  const double total = std::max(sum_squares - static_cast<double>(rows) * mean.squaredNorm(), 1e-300);

  out.scores.assign(static_cast<std::size_t>(k), std::vector<double>(static_cast<std::size_t>(rows)));
  if (std::min(rows, cols) <= kExactPcaLimit) {
    Eigen::MatrixXd centered = x.cast<double>();
    centered.rowwise() -= mean.transpose();
    const bool by_columns = cols <= rows;
    const Eigen::MatrixXd gram =
        by_columns ? Eigen::MatrixXd(centered.transpose() * centered) : Eigen::MatrixXd(centered * centered.transpose());
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(gram);
    const auto m = gram.rows();
    for (int c = 0; c < k; ++c) {
      const double lambda = std::max(0.0, eig.eigenvalues()(m - 1 - c));
      const Eigen::VectorXd v = eig.eigenvectors().col(m - 1 - c);
      const Eigen::VectorXd s = by_columns ? Eigen::VectorXd(centered * v) : Eigen::VectorXd(v * std::sqrt(lambda));
      for (std::int64_t i = 0; i < rows; ++i) out.scores[static_cast<std::size_t>(c)][static_cast<std::size_t>(i)] = s(i);
      out.explained.push_back(lambda / total);
    }
  } else {
    // Randomised range finder with power iterations (Halko, Martinsson & Tropp 2011). The centring is
    // applied implicitly so the (possibly huge) matrix is never copied.
    const Eigen::VectorXf mean_f = mean.cast<float>();
    const auto right = [&](const Eigen::MatrixXf& b) {  // (X - 1 mean^T) b
      Eigen::MatrixXf y = x * b;
      y.rowwise() -= (mean_f.transpose() * b);
      return y;
    };
    const auto left = [&](const Eigen::MatrixXf& q) {  // (X - 1 mean^T)^T q
      Eigen::MatrixXf z = x.transpose() * q;
      z -= mean_f * q.colwise().sum();
      return z;
    };
    const auto width = std::min<std::int64_t>({k + 10, rows, cols});
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal;
    Eigen::MatrixXf omega(cols, width);
    for (std::int64_t j = 0; j < width; ++j)
      for (std::int64_t i = 0; i < cols; ++i) omega(i, j) = normal(rng);
    Eigen::MatrixXf q = orthonormal_basis(right(omega));
    for (int it = 0; it < 4; ++it) q = orthonormal_basis(right(orthonormal_basis(left(q))));
    const Eigen::MatrixXd b = left(q).transpose().cast<double>();  // width x cols = Q^T (X - 1 mean^T)
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(b * b.transpose());
    const Eigen::MatrixXd qd = q.cast<double>();
    for (int c = 0; c < k; ++c) {
      const double lambda = std::max(0.0, eig.eigenvalues()(width - 1 - c));
      const Eigen::VectorXd s = qd * eig.eigenvectors().col(width - 1 - c) * std::sqrt(lambda);
      for (std::int64_t i = 0; i < rows; ++i) out.scores[static_cast<std::size_t>(c)][static_cast<std::size_t>(i)] = s(i);
      out.explained.push_back(lambda / total);
    }
  }
  fix_signs(out);
  return out;
}

std::vector<std::array<double, 2>> tsne(const std::vector<double>& points, std::int64_t rows, std::int64_t dims,
                                        std::uint64_t seed) {
  const auto n = static_cast<std::size_t>(rows);
  std::vector<std::array<double, 2>> y(n, {0.0, 0.0});
  if (n == 0) return y;
  for (std::size_t i = 0; i < n; ++i) {
    y[i][0] = dims > 0 ? points[i * static_cast<std::size_t>(dims)] : 0.0;
    y[i][1] = dims > 1 ? points[i * static_cast<std::size_t>(dims) + 1] : 0.0;
  }
  if (n < 4) return y;

  // Input affinities: Gaussian kernels whose widths match the perplexity (binary search on beta).
  std::vector<double> d2(n * n, 0.0);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = i + 1; j < n; ++j) {
      double s = 0;
      for (std::int64_t k = 0; k < dims; ++k) {
        const double d = points[i * static_cast<std::size_t>(dims) + static_cast<std::size_t>(k)] -
                         points[j * static_cast<std::size_t>(dims) + static_cast<std::size_t>(k)];
        s += d * d;
      }
      d2[i * n + j] = d2[j * n + i] = s;
    }
  const double perplexity = std::min(30.0, (static_cast<double>(n) - 1.0) / 3.0);
  const double target_entropy = std::log(perplexity);
  std::vector<double> p(n * n, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    double beta = 1.0, lo = 0.0, hi = INFINITY;
    double min_d = INFINITY;
    for (std::size_t j = 0; j < n; ++j)
      if (j != i) min_d = std::min(min_d, d2[i * n + j]);
    for (int it = 0; it < 100; ++it) {
      double sum = 0, weighted = 0;
      for (std::size_t j = 0; j < n; ++j) {
        if (j == i) continue;
        const double w = std::exp(-beta * (d2[i * n + j] - min_d));  // shifted for stability
        p[i * n + j] = w;
        sum += w;
        weighted += w * (d2[i * n + j] - min_d);
      }
      const double entropy = std::log(sum) + beta * weighted / sum;
      for (std::size_t j = 0; j < n; ++j) p[i * n + j] /= sum;
      if (std::fabs(entropy - target_entropy) < 1e-5) break;
      if (entropy > target_entropy) {
        lo = beta;
        beta = std::isinf(hi) ? beta * 2 : (beta + hi) / 2;
      } else {
        hi = beta;
        beta = (beta + lo) / 2;
      }
    }
  }
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = i + 1; j < n; ++j) {
      const double s = std::max((p[i * n + j] + p[j * n + i]) / (2.0 * static_cast<double>(n)), 1e-12);
      p[i * n + j] = p[j * n + i] = s;
    }

  // PCA initialisation scaled to a tiny spread, with a seeded jitter that separates coincident points.
  double mean0 = 0, mean1 = 0;
  for (const auto& v : y) mean0 += v[0], mean1 += v[1];
  mean0 /= static_cast<double>(n);
  mean1 /= static_cast<double>(n);
  double var0 = 0;
  for (const auto& v : y) var0 += (v[0] - mean0) * (v[0] - mean0);
  const double scale = var0 > 0 ? 1e-4 / std::sqrt(var0 / static_cast<double>(n)) : 1.0;
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> jitter(0.0, 1e-6);
  for (auto& v : y) {
    v[0] = (v[0] - mean0) * scale + jitter(rng);
    v[1] = (v[1] - mean1) * scale + jitter(rng);
  }

  const int iterations = 750, exaggerated = 250;
  const double learning_rate = std::max(static_cast<double>(n) / 12.0 / 4.0, 50.0);
  std::vector<std::array<double, 2>> velocity(n, {0.0, 0.0}), gains(n, {1.0, 1.0});
  std::vector<double> num(n * n, 0.0);
  for (int it = 0; it < iterations; ++it) {
    const double exaggeration = it < exaggerated ? 12.0 : 1.0;
    const double momentum = it < exaggerated ? 0.5 : 0.8;
    double z = 0;
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = i + 1; j < n; ++j) {
        const double dx = y[i][0] - y[j][0], dy = y[i][1] - y[j][1];
        const double q = 1.0 / (1.0 + dx * dx + dy * dy);
        num[i * n + j] = num[j * n + i] = q;
        z += 2 * q;
      }
    for (std::size_t i = 0; i < n; ++i) {
      double gx = 0, gy = 0;
      for (std::size_t j = 0; j < n; ++j) {
        if (j == i) continue;
        const double q = num[i * n + j];
        const double m = (exaggeration * p[i * n + j] - q / z) * q;
        gx += m * (y[i][0] - y[j][0]);
        gy += m * (y[i][1] - y[j][1]);
      }
      const double g[2] = {4 * gx, 4 * gy};
      for (int d = 0; d < 2; ++d) {
        auto& gain = gains[i][static_cast<std::size_t>(d)];
        auto& vel = velocity[i][static_cast<std::size_t>(d)];
        gain = (g[d] > 0) != (vel > 0) ? gain + 0.2 : std::max(gain * 0.8, 0.01);
        vel = momentum * vel - learning_rate * gain * g[d];
      }
    }
    for (std::size_t i = 0; i < n; ++i) {
      y[i][0] += velocity[i][0];
      y[i][1] += velocity[i][1];
    }
  }
  return y;
}

std::optional<Embedding> embed_layer(const LayerSnapshot& layer, bool use_tsne, std::uint64_t seed) {
  const std::int64_t n = layer.n_neurons;
  if (n < 2) return std::nullopt;
  Embedding e;
  const bool has_matrix = static_cast<std::int64_t>(layer.correlation.size()) == n * n;
  if (has_matrix && use_tsne) {
    std::vector<std::int32_t> sample(static_cast<std::size_t>(n));
    std::iota(sample.begin(), sample.end(), 0);
    if (n > kTsneMaxPoints) {
      std::mt19937_64 rng(seed);
      std::shuffle(sample.begin(), sample.end(), rng);
      sample.resize(static_cast<std::size_t>(kTsneMaxPoints));
      std::sort(sample.begin(), sample.end());
      e.note = fmt::format("t-SNE placed a seeded sample of {} of the {} neurons", kTsneMaxPoints, n);
    }
    const auto m = static_cast<std::int64_t>(sample.size());
    std::vector<float> rows(static_cast<std::size_t>(m * n));
    for (std::int64_t i = 0; i < m; ++i)
      std::copy_n(layer.correlation.data() + static_cast<std::int64_t>(sample[static_cast<std::size_t>(i)]) * n, n,
                  rows.data() + i * n);
    // t-SNE on the first (up to) 50 principal components, as is usual: same neighbours, far less work.
    const auto reduced = principal_components(rows.data(), m, n, 50, seed);
    const auto dims = static_cast<std::int64_t>(reduced.scores.size());
    std::vector<double> points(static_cast<std::size_t>(m * dims));
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t d = 0; d < dims; ++d)
        points[static_cast<std::size_t>(i * dims + d)] =
            reduced.scores[static_cast<std::size_t>(d)][static_cast<std::size_t>(i)];
    const auto placed = tsne(points, m, dims, seed);
    e.method = fmt::format("t-SNE of correlation rows (seed {})", seed);
    e.x_label = "t-SNE 1";
    e.y_label = "t-SNE 2";
    e.neurons = sample;
    for (const auto& p : placed) {
      e.x.push_back(p[0]);
      e.y.push_back(p[1]);
    }
    return e;
  }

  Pca pca;
  if (has_matrix) {
    pca = principal_components(layer.correlation.data(), n, n, 2, seed);
    e.method = "PCA of correlation rows";
  } else {
    // No matrix stored: place neurons by their standardised statistics instead.
    const std::vector<const std::vector<double>*> columns = {&layer.mean, &layer.stddev, &layer.min, &layer.max};
    std::vector<float> features(static_cast<std::size_t>(n * 4), 0.0f);
    for (std::size_t c = 0; c < columns.size(); ++c) {
      const auto& col = *columns[c];
      if (static_cast<std::int64_t>(col.size()) != n) continue;
      double sum = 0, sum_sq = 0;
      std::int64_t count = 0;
      for (double v : col)
        if (std::isfinite(v)) sum += v, sum_sq += v * v, ++count;
      if (count == 0) continue;
      const double mean = sum / static_cast<double>(count);
      const double sd = std::sqrt(std::max(0.0, sum_sq / static_cast<double>(count) - mean * mean));
      for (std::int64_t i = 0; i < n; ++i) {
        const double v = col[static_cast<std::size_t>(i)];
        features[static_cast<std::size_t>(i * 4) + c] =
            std::isfinite(v) && sd > 0 ? static_cast<float>((v - mean) / sd) : 0.0f;
      }
    }
    pca = principal_components(features.data(), n, 4, 2, seed);
    e.method = "PCA of neuron statistics (no correlation matrix stored)";
    if (use_tsne) e.note = "t-SNE needs the correlation matrix, which this layer does not store";
  }
  e.neurons.resize(static_cast<std::size_t>(n));
  std::iota(e.neurons.begin(), e.neurons.end(), 0);
  e.x = pca.scores.size() > 0 ? pca.scores[0] : std::vector<double>(static_cast<std::size_t>(n), 0.0);
  e.y = pca.scores.size() > 1 ? pca.scores[1] : std::vector<double>(static_cast<std::size_t>(n), 0.0);
  const auto share = [&](std::size_t c) {
    return c < pca.explained.size() ? fmt::format(" ({:.1f}% of variance)", 100.0 * pca.explained[c]) : std::string();
  };
  e.x_label = "PC1" + share(0);
  e.y_label = "PC2" + share(1);
  return e;
}

}  // namespace neuronmap::report
