// Streaming moments equal a direct two-pass computation over the concatenated data.
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "analysis/moments.hpp"

namespace {

using neuronmap::detail::Moments;

// Rows with a large common offset and unequal scales: the case where a one-pass sum of products fails.
std::vector<float> sample_rows(std::int64_t rows, std::int64_t cols, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> out(static_cast<std::size_t>(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r) {
    const float shared = normal(rng);
    for (std::int64_t c = 0; c < cols; ++c)
      out[static_cast<std::size_t>(r * cols + c)] = 1000.0f + static_cast<float>(c % 5 + 1) * normal(rng) + 0.5f * shared;
  }
  return out;
}

struct TwoPass {
  Eigen::VectorXd mean;
  Eigen::MatrixXd comoment;
};

TwoPass two_pass(const std::vector<float>& rows, std::int64_t cols) {
  const auto n = static_cast<std::int64_t>(rows.size()) / cols;
  Eigen::MatrixXd x(n, cols);
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t c = 0; c < cols; ++c) x(r, c) = rows[static_cast<std::size_t>(r * cols + c)];
  TwoPass out;
  out.mean = x.colwise().mean().transpose();
  const Eigen::MatrixXd centred = x.rowwise() - out.mean.transpose();
  out.comoment = centred.transpose() * centred;
  return out;
}

double max_relative_error(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) {
  return (a - b).cwiseAbs().maxCoeff() / b.cwiseAbs().maxCoeff();
}

TEST(Moments, StreamingEqualsTwoPassIncludingMerge) {
  const std::int64_t cols = 37;
  const std::vector<float> data = sample_rows(1000, cols, 1);
  Moments first(cols), second(cols);
  // Unequal batches into two accumulators, then merged.
  std::int64_t offset = 0;
  for (const std::int64_t batch : {1, 7, 64, 128, 300}) {
    first.add(data.data() + offset * cols, batch);
    offset += batch;
  }
  while (offset < 1000) {
    const std::int64_t batch = std::min<std::int64_t>(33, 1000 - offset);
    second.add(data.data() + offset * cols, batch);
    offset += batch;
  }
  first.merge(second);
  const TwoPass reference = two_pass(data, cols);
  EXPECT_EQ(first.count(), 1000);
  EXPECT_LE((first.mean() - reference.mean).cwiseAbs().maxCoeff() / reference.mean.cwiseAbs().maxCoeff(), 1e-12);
  EXPECT_LE(max_relative_error(first.comoment(), reference.comoment), 1e-9);
  for (std::int64_t c = 0; c < cols; ++c) {
    EXPECT_NEAR(first.comoment(c, c), reference.comoment(c, c), 1e-9 * reference.comoment(c, c));
    EXPECT_EQ(first.comoment(0, c), first.comoment(c, 0));
  }
}

TEST(Moments, MergeOrderDoesNotMatter) {
  const std::int64_t cols = 9;
  const std::vector<float> data = sample_rows(300, cols, 2);
  Moments a(cols), b(cols), c(cols);
  a.add(data.data(), 100);
  b.add(data.data() + 100 * cols, 100);
  c.add(data.data() + 200 * cols, 100);
  Moments left = a, right = c;
  left.merge(b);
  left.merge(c);
  right.merge(b);
  right.merge(a);
  EXPECT_LE(max_relative_error(left.comoment(), right.comoment()), 1e-12);
  EXPECT_LE((left.mean() - right.mean()).cwiseAbs().maxCoeff(), 1e-9);
  Moments empty(cols);
  empty.merge(left);
  EXPECT_EQ(empty.count(), 300);
  left.merge(Moments(cols));
  EXPECT_EQ(left.count(), 300);
}

TEST(Moments, NonFiniteRowsAreSkippedAndCounted) {
  const std::int64_t cols = 5;
  std::vector<float> data = sample_rows(50, cols, 3);
  std::vector<float> clean;
  for (std::int64_t r = 0; r < 50; ++r) {
    if (r % 10 == 3) {
      data[static_cast<std::size_t>(r * cols + r % cols)] =
          r % 20 == 3 ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
    } else {
      clean.insert(clean.end(), data.begin() + r * cols, data.begin() + (r + 1) * cols);
    }
  }
  Moments m(cols);
  EXPECT_EQ(m.add(data.data(), 25), 3);
  EXPECT_EQ(m.add(data.data() + 25 * cols, 25), 2);
  EXPECT_EQ(m.count(), 45);
  const TwoPass reference = two_pass(clean, cols);
  EXPECT_LE(max_relative_error(m.comoment(), reference.comoment), 1e-9);
  for (std::int64_t c = 0; c < cols; ++c) {
    EXPECT_TRUE(std::isfinite(m.min()(c)));
    EXPECT_TRUE(std::isfinite(m.max()(c)));
  }
}

TEST(Moments, MinMaxAndDoubleInput) {
  const std::vector<double> rows = {1, 2, 0.3, -1, 5, 0.3, 4, 0, 0.3};
  Moments m(3);
  EXPECT_EQ(m.add(rows.data(), 3), 0);
  EXPECT_DOUBLE_EQ(m.min()(0), -1);
  EXPECT_DOUBLE_EQ(m.max()(1), 5);
  EXPECT_DOUBLE_EQ(m.min()(2), 0.3);
  EXPECT_DOUBLE_EQ(m.max()(2), 0.3);
  EXPECT_DOUBLE_EQ(m.mean()(0), 4.0 / 3.0);
}

TEST(Moments, WideLayerUsesPackedStorage) {
  Moments m(2000);
  EXPECT_EQ(m.comoment_packed().size(), 2000u * 2001u / 2);
}

}  // namespace
