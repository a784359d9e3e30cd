// Linear CKA against a direct computation and its invariances; class selectivity; loss correlation; dormant neurons.
#include <cmath>
#include <limits>
#include <random>

#include <Eigen/Dense>
#include <gtest/gtest.h>

#include "learning/learning.hpp"

namespace nl = neuronmap::detail::learning;

namespace {

using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
constexpr double nan_value = std::numeric_limits<double>::quiet_NaN();

RowMatrix random_matrix(Eigen::Index rows, Eigen::Index cols, std::mt19937& rng) {
  std::normal_distribution<double> normal;
  RowMatrix m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = normal(rng);
  return m;
}

nl::MatrixView<double> view(const RowMatrix& m) { return {m.data(), m.rows(), m.cols()}; }

// The formula written out with loops: centre, then ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F).
double naive_cka(const RowMatrix& x_in, const RowMatrix& y_in) {
  const auto n = x_in.rows(), p = x_in.cols(), q = y_in.cols();
  RowMatrix x = x_in, y = y_in;
  for (Eigen::Index c = 0; c < p; ++c) {
    double mean = 0.0;
    for (Eigen::Index r = 0; r < n; ++r) mean += x(r, c);
    mean /= static_cast<double>(n);
    for (Eigen::Index r = 0; r < n; ++r) x(r, c) -= mean;
  }
  for (Eigen::Index c = 0; c < q; ++c) {
    double mean = 0.0;
    for (Eigen::Index r = 0; r < n; ++r) mean += y(r, c);
    mean /= static_cast<double>(n);
    for (Eigen::Index r = 0; r < n; ++r) y(r, c) -= mean;
  }
  auto frobenius_of_product = [n](const RowMatrix& a, const RowMatrix& b) {  // ||A^T B||_F^2
    double sum = 0.0;
    for (Eigen::Index i = 0; i < a.cols(); ++i) {
      for (Eigen::Index j = 0; j < b.cols(); ++j) {
        double dot = 0.0;
        for (Eigen::Index r = 0; r < n; ++r) dot += a(r, i) * b(r, j);
        sum += dot * dot;
      }
    }
    return sum;
  };
  return frobenius_of_product(y, x) / (std::sqrt(frobenius_of_product(x, x)) * std::sqrt(frobenius_of_product(y, y)));
}

}  // namespace

TEST(LinearCka, MatchesDirectComputationInBothForms) {
  std::mt19937 rng(11);
  struct Shape {
    Eigen::Index n, p, q;
  };
  // n > p, q: the feature form; n < p, q: the Gram form.
  for (const Shape s : {Shape{60, 8, 5}, Shape{50, 12, 12}, Shape{16, 70, 90}, Shape{10, 200, 3}}) {
    const RowMatrix x = random_matrix(s.n, s.p, rng);
    RowMatrix y = random_matrix(s.n, s.q, rng);
    y.col(0) += 2.0 * x.col(0);  // some shared structure, so CKA is not near 0
    const double expected = naive_cka(x, y);
    EXPECT_NEAR(nl::linear_cka(view(x), view(y)), expected, 1e-6) << s.n << "x" << s.p << " vs " << s.q;
    EXPECT_NEAR(nl::linear_cka(view(y), view(x)), expected, 1e-6) << "symmetric";
    // Float views give the float data's value.
    const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> xf = x.cast<float>(), yf = y.cast<float>();
    const double from_float = nl::linear_cka(nl::MatrixView<float>{xf.data(), xf.rows(), xf.cols()},
                                             nl::MatrixView<float>{yf.data(), yf.rows(), yf.cols()});
    EXPECT_NEAR(from_float, naive_cka(xf.cast<double>(), yf.cast<double>()), 1e-6);
  }
}

TEST(LinearCka, InvariantToOrthogonalTransformIsotropicScalingAndOffsets) {
  std::mt19937 rng(5);
  for (const Eigen::Index p : {6, 40}) {  // n = 30: both forms
    const RowMatrix x = random_matrix(30, p, rng);
    const Eigen::MatrixXd q = Eigen::HouseholderQR<Eigen::MatrixXd>(random_matrix(p, p, rng)).householderQ();
    const RowMatrix rotated = x * q;
    EXPECT_NEAR(nl::linear_cka(view(x), view(rotated)), 1.0, 1e-6);
    const RowMatrix scaled = (3.7 * x).rowwise() + Eigen::RowVectorXd::Constant(p, 5.0);
    EXPECT_NEAR(nl::linear_cka(view(x), view(scaled)), 1.0, 1e-6);
    EXPECT_NEAR(nl::linear_cka(view(x), view(x)), 1.0, 1e-12);
    // Not invariant to anisotropic scaling.
    RowMatrix stretched = x;
    stretched.col(0) *= 10.0;
    EXPECT_LT(nl::linear_cka(view(x), view(stretched)), 0.9);
  }
}

TEST(LinearCka, IndependentRepresentationsScoreLow) {
  std::mt19937 rng(9);
  const RowMatrix x = random_matrix(2000, 5, rng), y = random_matrix(2000, 5, rng);
  EXPECT_LT(nl::linear_cka(view(x), view(y)), 0.05);
}

TEST(LinearCka, DropsNonFiniteRowsAndIsNanWhenUndefined) {
  std::mt19937 rng(2);
  RowMatrix x = random_matrix(20, 4, rng), y = random_matrix(20, 3, rng);
  const double clean = nl::linear_cka(nl::MatrixView<double>{x.data(), 19, 4}, nl::MatrixView<double>{y.data(), 19, 3});
  y(19, 1) = nan_value;
  EXPECT_NEAR(nl::linear_cka(view(x), view(y)), clean, 1e-12);

  const RowMatrix constant = RowMatrix::Constant(20, 3, 0.1);
  EXPECT_TRUE(std::isnan(nl::linear_cka(view(x), view(constant))));
  EXPECT_TRUE(std::isnan(nl::linear_cka(nl::MatrixView<double>{x.data(), 1, 4}, nl::MatrixView<double>{y.data(), 1, 3})));
  EXPECT_THROW(nl::linear_cka(nl::MatrixView<double>{x.data(), 20, 4}, nl::MatrixView<double>{y.data(), 19, 3}),
               std::invalid_argument);
}

namespace {

const std::vector<std::string> tag_names{"mathematical", "linguistic", "logical", "memory"};

// 80 samples, tags 0..3 in turn; the activation is response(tag) + |noise| * scale.
std::vector<float> tagged_pattern(const std::vector<std::int32_t>& tags, const std::vector<double>& response,
                                  double noise_scale, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal;
  std::vector<float> pattern;
  for (auto t : tags) pattern.push_back(static_cast<float>(response[t] + noise_scale * std::abs(normal(rng))));
  return pattern;
}

std::vector<std::int32_t> round_robin_tags(int n) {
  std::vector<std::int32_t> tags;
  for (int k = 0; k < n; ++k) tags.push_back(k % 4);
  return tags;
}

}  // namespace

TEST(Selectivity, GroupAnsweringOneTagTakesItsName) {
  const auto tags = round_robin_tags(80);
  const auto pattern = tagged_pattern(tags, {0.0, 0.0, 1.0, 0.0}, 0.01, 1);
  const auto s = nl::class_selectivity(pattern, tags, tag_names, {});
  EXPECT_GT(s.index, 0.95);
  EXPECT_EQ(s.top_tag, 2);
  EXPECT_EQ(s.category, "logical");
  EXPECT_NEAR(s.tag_means[2], 1.0, 0.02);
}

TEST(Selectivity, EvenResponseIsMixed) {
  const auto tags = round_robin_tags(80);
  const auto pattern = tagged_pattern(tags, {1.0, 1.0, 1.0, 1.0}, 0.1, 2);
  const auto s = nl::class_selectivity(pattern, tags, tag_names, {});
  EXPECT_LT(s.index, 0.1);
  EXPECT_EQ(s.category, "mixed");
}

TEST(Selectivity, ExactMorcosValueAndThreshold) {
  // Non-negative means 2, 1, 1, 1: SI = (2 - 1) / (2 + 1) = 1/3, just above the default 0.3.
  const auto tags = round_robin_tags(8);
  const auto pattern = tagged_pattern(tags, {2.0, 1.0, 1.0, 1.0}, 0.0, 3);
  auto s = nl::class_selectivity(pattern, tags, tag_names, {});
  EXPECT_NEAR(s.index, 1.0 / 3.0, 1e-12);
  EXPECT_EQ(s.category, "mathematical");
  nl::LearningOptions strict;
  strict.selectivity_threshold = 0.5;
  EXPECT_EQ(nl::class_selectivity(pattern, tags, tag_names, strict).category, "mixed");
}

TEST(Selectivity, SignedPatternIsShiftedByItsMinimum) {
  // tanh-like: +0.8 for tag 1, -0.8 otherwise. Shifted by the minimum (-0.8): 1.6 against 0, SI = 1.
  const auto tags = round_robin_tags(40);
  const auto pattern = tagged_pattern(tags, {-0.8, 0.8, -0.8, -0.8}, 0.0, 4);
  const auto s = nl::class_selectivity(pattern, tags, tag_names, {});
  EXPECT_NEAR(s.index, 1.0, 1e-6);
  EXPECT_EQ(s.category, "linguistic");
  EXPECT_NEAR(s.tag_means[0], -0.8, 1e-6);  // reported unshifted
  // Adding a constant that keeps the pattern signed does not change SI.
  auto offset = pattern;
  for (auto& v : offset) v += 0.5f;
  EXPECT_NEAR(nl::class_selectivity(offset, tags, tag_names, {}).index, s.index, 1e-6);
}

TEST(Selectivity, UntaggedAndEdgeCases) {
  const std::vector<float> pattern{1.0f, 2.0f, 3.0f, 4.0f};
  EXPECT_EQ(nl::class_selectivity(pattern, {-1, -1, -1, -1}, tag_names, {}).category, "untagged");
  EXPECT_EQ(nl::class_selectivity(pattern, {-1, -1, -1, -1}, {}, {}).category, "untagged");
  const auto one_tag = nl::class_selectivity(pattern, {0, 0, -1, -1}, tag_names, {});
  EXPECT_EQ(one_tag.category, "mixed");  // nothing to compare with
  EXPECT_TRUE(std::isnan(one_tag.tag_means[1]));
  const auto zeros = nl::class_selectivity({0.0f, 0.0f, 0.0f, 0.0f}, {0, 1, 2, 3}, tag_names, {});
  EXPECT_EQ(zeros.index, 0.0);
  EXPECT_EQ(zeros.category, "mixed");
  EXPECT_THROW(nl::class_selectivity(pattern, {0, 1, 2, 7}, tag_names, {}), std::invalid_argument);
  EXPECT_THROW(nl::class_selectivity(pattern, {0, 1}, tag_names, {}), std::invalid_argument);
}

TEST(LossCorrelation, PearsonNanSafe) {
  std::vector<double> loss{0.1, 0.5, 0.3, 0.9, 0.2, 0.7};
  std::vector<float> pattern, opposite;
  for (double l : loss) pattern.push_back(static_cast<float>(2.0 * l + 1.0)), opposite.push_back(static_cast<float>(-l));
  EXPECT_NEAR(nl::loss_correlation(pattern, loss), 1.0, 1e-6);
  EXPECT_NEAR(nl::loss_correlation(opposite, loss), -1.0, 1e-6);
  pattern[2] = std::numeric_limits<float>::quiet_NaN();
  loss[4] = std::numeric_limits<double>::infinity();
  EXPECT_NEAR(nl::loss_correlation(pattern, loss), 1.0, 1e-6);  // the pairs left still lie on a line
  EXPECT_EQ(nl::loss_correlation(std::vector<float>(6, 1.0f), loss), 0.0);  // no variance
  EXPECT_EQ(nl::loss_correlation({1.0f}, std::vector<double>{2.0}), 0.0);
  EXPECT_EQ(nl::loss_correlation({}, std::vector<double>{}), 0.0);
  EXPECT_THROW(nl::loss_correlation({1.0f, 2.0f}, std::vector<double>{1.0}), std::invalid_argument);
  EXPECT_THROW(nl::loss_correlation({1.0f, 2.0f}, std::vector<float>{1.0f}), std::invalid_argument);
}

TEST(Dormant, ScoresAndRates) {
  // Layer mean E|h| = (4 + 0 + 0.02 + 2) / 7 = 0.86: the 0 is dead, 0.02 (score 0.023) is 0.025-dormant.
  const std::vector<double> mean_abs{1.0, 1.0, 1.0, 1.0, 0.0, 0.02, 2.0, nan_value};
  const auto d = nl::dormant_neurons(mean_abs, {});
  EXPECT_EQ(d.counted, 7);
  EXPECT_NEAR(d.scores[0], 1.0 / (6.02 / 7.0), 1e-12);
  EXPECT_NEAR(d.scores[5], 0.02 / (6.02 / 7.0), 1e-12);
  EXPECT_TRUE(std::isnan(d.scores[7]));
  EXPECT_EQ(d.dead_count, 1);
  EXPECT_EQ(d.dormant_count, 2);
  EXPECT_NEAR(d.dead_rate, 1.0 / 7.0, 1e-12);
  EXPECT_NEAR(d.dormant_rate, 2.0 / 7.0, 1e-12);

  const auto silent = nl::dormant_neurons({0.0, 0.0, 0.0}, {});
  EXPECT_DOUBLE_EQ(silent.dead_rate, 1.0);
  EXPECT_TRUE(std::isnan(nl::dormant_neurons({}, {}).dormant_rate));
  EXPECT_THROW(nl::dormant_neurons({-1.0}, {}), std::invalid_argument);
}

TEST(Dormant, MeanAbsFromMoments) {
  neuronmap::LayerSnapshot layer;
  layer.mean = {0.5, -0.3, 0.0, 0.0};
  layer.stddev = {0.2, 0.1, 1.0, 0.0};
  layer.min = {0.0, -1.0, -5.0, 0.0};
  layer.max = {2.0, 0.0, 5.0, 0.0};
  const auto e = nl::mean_abs_from_moments(layer);
  EXPECT_DOUBLE_EQ(e[0], 0.5);   // never negative: the mean
  EXPECT_DOUBLE_EQ(e[1], 0.3);   // never positive: minus the mean
  EXPECT_NEAR(e[2], std::sqrt(2.0 / 3.14159265358979323846), 1e-12);  // N(0, 1) folded
  EXPECT_DOUBLE_EQ(e[3], 0.0);   // dead
}
