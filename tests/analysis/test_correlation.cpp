// Correlation rules (dead neurons, precision), and the group-record and subset helpers.
#include <cmath>
#include <random>
#include <set>

#include <gtest/gtest.h>

#include "analysis/correlation.hpp"
#include "analysis/moments.hpp"
#include "analysis/records.hpp"
#include "analysis_test_util.hpp"

namespace {

using namespace neuronmap::detail;

Eigen::MatrixXd with_dead_columns(std::int64_t samples, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  Eigen::MatrixXd x(samples, 6);
  for (std::int64_t s = 0; s < samples; ++s) {
    const double f = normal(rng);
    x(s, 0) = f + 0.1 * normal(rng);
    x(s, 1) = 0.0;  // dead, mean exact
    x(s, 2) = 0.3;  // dead, mean not exact: naive Pearson gives +1 with column 4
    x(s, 3) = f + 0.1 * normal(rng);
    x(s, 4) = 0.3;
    x(s, 5) = normal(rng);
  }
  return x;
}

void expect_dead_rules(const Correlation& c) {
  ASSERT_EQ(c.r.rows(), 6);
  EXPECT_EQ(c.dead, (std::vector<std::uint8_t>{0, 1, 1, 0, 1, 0}));
  for (Eigen::Index i = 0; i < 6; ++i) {
    for (Eigen::Index j = 0; j < 6; ++j) {
      const double v = c.r(i, j);
      ASSERT_TRUE(std::isfinite(v));
      if (i == j) {
        EXPECT_EQ(v, 1.0);
      } else if (c.dead[static_cast<std::size_t>(i)] || c.dead[static_cast<std::size_t>(j)]) {
        EXPECT_EQ(v, 0.0) << i << "," << j;
      }
      EXPECT_EQ(v, c.r(j, i));
    }
  }
  EXPECT_GT(c.r(0, 3), 0.9);
  EXPECT_EQ(c.stddev(1), 0.0);
  EXPECT_EQ(c.stddev(2), 0.0);
}

TEST(Correlation, DeadNeuronsCorrelateZeroNeverNaN) {
  const Eigen::MatrixXd x = with_dead_columns(200, 4);
  expect_dead_rules(correlation_from_samples(x));
  expect_dead_rules(correlation_from_samples(x, Precision::f32));
  Moments m(6);
  const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rows = x.cast<float>();
  m.add(rows.data(), 120);
  m.add(rows.data() + 120 * 6, 80);
  expect_dead_rules(correlation_from_moments(m));
  expect_dead_rules(correlation_from_moments(m, Precision::f32));
}

TEST(Correlation, NoSamplesMeansAllDead) {
  Moments m(4);
  const Correlation c = correlation_from_moments(m);
  EXPECT_EQ(c.dead, (std::vector<std::uint8_t>{1, 1, 1, 1}));
  EXPECT_EQ(c.r(0, 1), 0.0);
  EXPECT_EQ(c.r(2, 2), 1.0);
}

TEST(Correlation, MomentsRowsAndSamplesAgree) {
  const auto planted = neuronmap::test::make_planted(500, {5, 7}, 10, 1, 1, 2, 0.5, 9);
  const Eigen::MatrixXd& x = planted.x;
  const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rows = x;
  const Correlation from_samples = correlation_from_samples(x);
  const Correlation from_rows = correlation_from_rows(rows.data(), rows.rows(), rows.cols());
  Moments m(x.cols());
  for (std::int64_t r0 = 0; r0 < x.rows(); r0 += 64) m.add(rows.data() + r0 * x.cols(), std::min<std::int64_t>(64, x.rows() - r0));
  const Correlation from_moments = correlation_from_moments(m);
  // Direct float64 reference.
  const Eigen::MatrixXd centred = x.rowwise() - x.colwise().mean();
  const Eigen::MatrixXd cov = centred.transpose() * centred;
  for (Eigen::Index j = 0; j < x.cols(); ++j) {
    for (Eigen::Index i = 0; i < x.cols(); ++i) {
      double expected = i == j ? 1.0 : 0.0;
      if (i != j && !from_samples.dead[static_cast<std::size_t>(i)] && !from_samples.dead[static_cast<std::size_t>(j)])
        expected = cov(i, j) / std::sqrt(cov(i, i) * cov(j, j));
      EXPECT_NEAR(from_samples.r(i, j), expected, 1e-12);
      EXPECT_NEAR(from_rows.r(i, j), expected, 1e-12);
      EXPECT_NEAR(from_moments.r(i, j), expected, 1e-12);
    }
  }
  EXPECT_EQ(from_samples.n_samples, 500);
  EXPECT_EQ(from_moments.n_samples, 500);
  EXPECT_NEAR((from_samples.mean - from_moments.mean).cwiseAbs().maxCoeff(), 0.0, 1e-9);
  EXPECT_NEAR((from_samples.stddev - from_moments.stddev).cwiseAbs().maxCoeff(), 0.0, 1e-9);
}

TEST(Correlation, Float32IsCloseToFloat64) {
  const auto planted = neuronmap::test::make_planted(400, {6, 6}, 20, 1, 1, 0, 0.7, 10);
  const Correlation d = correlation_from_samples(planted.x, Precision::f64);
  const Correlation s = correlation_from_samples(planted.x, Precision::f32);
  ASSERT_TRUE(s.r.is_f32());
  ASSERT_FALSE(d.r.is_f32());
  EXPECT_LE((d.r.cast<double>() - s.r.cast<double>()).cwiseAbs().maxCoeff(), 1e-5);
}

TEST(Correlation, PrecisionRule) {
  EXPECT_EQ(resolve_precision(Precision::automatic, 4096), Precision::f64);
  EXPECT_EQ(resolve_precision(Precision::automatic, 11585), Precision::f64);
  EXPECT_EQ(resolve_precision(Precision::automatic, 16384), Precision::f32);
  EXPECT_EQ(resolve_precision(Precision::f64, 16384), Precision::f64);
}

TEST(Correlation, TakeFloatValues) {
  const Eigen::MatrixXd x = with_dead_columns(50, 5);
  Correlation c = correlation_from_samples(x, Precision::f32);
  const Eigen::MatrixXf copy = c.r.f32();
  const std::vector<float> values = c.r.take_float_values();
  ASSERT_EQ(values.size(), 36u);
  EXPECT_EQ(values[1 * 6 + 0], copy(1, 0));
  EXPECT_EQ(c.r.rows(), 0);
  Correlation d = correlation_from_samples(x);
  EXPECT_EQ(d.r.take_float_values().size(), 36u);
}

TEST(Records, ActivationPatternCenterAndMeanActivation) {
  Eigen::MatrixXf samples(3, 4);
  samples << 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 1, 1;
  const std::vector<std::int32_t> members = {1, 3};
  const Eigen::VectorXd pattern = activation_pattern(samples, members);
  EXPECT_DOUBLE_EQ(pattern(0), 3.0);
  EXPECT_DOUBLE_EQ(pattern(1), 7.0);
  EXPECT_DOUBLE_EQ(pattern(2), 0.5);
  EXPECT_EQ(group_center(samples, members), pattern);
  const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rows = samples;
  EXPECT_EQ(activation_pattern(rows.data(), 3, 4, members), pattern);
  EXPECT_DOUBLE_EQ(mean_activation(pattern), 3.5);
  const Eigen::VectorXd means = samples.cast<double>().colwise().mean().transpose();
  EXPECT_DOUBLE_EQ(mean_activation(means, members), 3.5);
}

TEST(Subset, DeterministicSortedNested) {
  const auto a = choose_neuron_subset(16384, 4096, 7);
  const auto b = choose_neuron_subset(16384, 4096, 7);
  const auto c = choose_neuron_subset(16384, 4096, 8);
  const auto small = choose_neuron_subset(16384, 1000, 7);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  ASSERT_EQ(a.size(), 4096u);
  EXPECT_TRUE(std::is_sorted(a.begin(), a.end()));
  EXPECT_EQ(std::set<std::int64_t>(a.begin(), a.end()).size(), 4096u);
  EXPECT_TRUE(std::includes(a.begin(), a.end(), small.begin(), small.end()));
  EXPECT_EQ(choose_neuron_subset(10, 0, 1).size(), 10u);
  EXPECT_EQ(choose_neuron_subset(10, 20, 1).size(), 10u);
  // Spread over the whole layer, not a prefix.
  EXPECT_GT(a.back(), 16000);
  EXPECT_LT(a.front(), 100);
}

}  // namespace
