// Streaming moments: each batch is centred on its own mean, its co-moment formed with BLAS products
// (a column panel at a time, straight into the packed upper triangle), then merged with the running
// totals (Chan, Golub & LeVeque 1979), which keeps the float64 result within ~1e-12 of a two-pass
// computation over all samples.
#include "analysis/moments.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "analysis/blas.hpp"

namespace neuronmap::detail {
namespace {

// Column panels of the packed update: wide enough for an efficient product, small enough that the
// panel buffer (n x width float64) stays modest at 16,384 neurons (32 MiB).
constexpr std::int64_t kPanelWidth = 256;
// Rows per block copied to float64 and centred (bounds the block to ~64 MiB).
constexpr std::int64_t kBlockBytes = std::int64_t{64} << 20;

}  // namespace

Moments::Moments(std::int64_t n_neurons)
    : n_(n_neurons),
      mean_(Eigen::VectorXd::Zero(n_neurons)),
      packed_(static_cast<std::size_t>(column_offset(n_neurons)), 0.0),
      min_(Eigen::VectorXd::Constant(n_neurons, std::numeric_limits<double>::infinity())),
      max_(Eigen::VectorXd::Constant(n_neurons, -std::numeric_limits<double>::infinity())) {}

std::int64_t Moments::add(const float* data, std::int64_t rows) { return add_rows(data, rows); }
std::int64_t Moments::add(const double* data, std::int64_t rows) { return add_rows(data, rows); }

template <typename T>
std::int64_t Moments::add_rows(const T* data, std::int64_t rows) {
  if (rows <= 0 || n_ == 0) return 0;
  // Per-thread scratch, kept between calls: workers add many batches, and fresh buffers would page
  // fault every time.
  thread_local LargeVector<double> centred;
  thread_local std::vector<std::int64_t> kept;
  const std::int64_t block_rows = std::max<std::int64_t>(64, kBlockBytes / (8 * n_));
  std::int64_t skipped = 0;
  for (std::int64_t r0 = 0; r0 < rows; r0 += block_rows) {
    const std::int64_t r1 = std::min(rows, r0 + block_rows);
    kept.clear();
    Eigen::VectorXd sum = Eigen::VectorXd::Zero(n_);
    Eigen::VectorXd lo = min_, hi = max_;
    for (std::int64_t r = r0; r < r1; ++r) {
      const T* row = data + r * n_;
      bool finite = true;
      for (std::int64_t c = 0; c < n_; ++c) finite &= std::isfinite(row[c]);
      if (!finite) {
        ++skipped;
        continue;
      }
      kept.push_back(r);
      for (std::int64_t c = 0; c < n_; ++c) {
        const auto v = static_cast<double>(row[c]);
        sum(c) += v;
        lo(c) = std::min(lo(c), v);
        hi(c) = std::max(hi(c), v);
      }
    }
    const auto b = static_cast<std::int64_t>(kept.size());
    if (b == 0) continue;
    min_ = lo;
    max_ = hi;
    const Eigen::VectorXd block_mean = sum / static_cast<double>(b);
    if (static_cast<std::int64_t>(centred.size()) < b * n_) centred = LargeVector<double>(static_cast<std::size_t>(b * n_));
    // Column-major b x n, centred on the block mean; column blocks keep the transpose in cache.
    // thread_local names resolve per thread inside the lambda: pass the pointers.
    double* out = centred.data();
    const std::int64_t* kept_rows = kept.data();
    tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, n_, 64), [&](const tbb::blocked_range<std::int64_t>& cols) {
      for (std::int64_t i = 0; i < b; ++i) {
        const T* row = data + kept_rows[i] * n_;
        for (std::int64_t c = cols.begin(); c != cols.end(); ++c) out[c * b + i] = static_cast<double>(row[c]) - block_mean(c);
      }
    });
    add_centred(out, b, block_mean);
  }
  return skipped;
}

void Moments::add_centred(const double* centred, std::int64_t b, const Eigen::VectorXd& block_mean) {
  const auto a = static_cast<double>(count_);
  const double total = a + static_cast<double>(b);
  const Eigen::VectorXd delta = block_mean - mean_;
  const double weight = a * static_cast<double>(b) / total;

  // Panel [j0, j1): rows 0..j0 by gemm, the diagonal block by syrk, into `panel` (j1 x width), then
  // added with the rank-one correction of Chan's update into the packed columns.
  thread_local LargeVector<double> panel;
  if (static_cast<std::int64_t>(panel.size()) < n_ * kPanelWidth)
    panel = LargeVector<double>(static_cast<std::size_t>(n_ * kPanelWidth));
  for (std::int64_t j0 = 0; j0 < n_; j0 += kPanelWidth) {
    const std::int64_t j1 = std::min(n_, j0 + kPanelWidth);
    const std::int64_t width = j1 - j0;
    double* panel_data = panel.data();  // not `panel` inside the lambda: thread_local
    if (j0 > 0) blas::gemm_at_b(j0, width, b, 1.0, centred, b, centred + j0 * b, b, 0.0, panel_data, j1);
    blas::syrk_upper_at_a(width, b, 1.0, centred + j0 * b, b, 0.0, panel_data + j0, j1);
    tbb::parallel_for(j0, j1, [&](std::int64_t j) {
      double* column = packed_.data() + column_offset(j);
      const double* source = panel_data + (j - j0) * j1;
      const double scaled = weight * delta(j);
      for (std::int64_t i = 0; i <= j; ++i) column[i] += source[i] + scaled * delta(i);
    });
  }
  mean_ += delta * (static_cast<double>(b) / total);
  count_ += b;
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
  const double weight = a * b / total;
  tbb::parallel_for(std::int64_t{0}, n_, [&](std::int64_t j) {
    double* column = packed_.data() + column_offset(j);
    const double* source = other.packed_.data() + column_offset(j);
    const double scaled = weight * delta(j);
    for (std::int64_t i = 0; i <= j; ++i) column[i] += source[i] + scaled * delta(i);
  });
  mean_ += delta * (b / total);
  count_ += other.count_;
  min_ = min_.cwiseMin(other.min_);
  max_ = max_.cwiseMax(other.max_);
}

Eigen::MatrixXd Moments::comoment() const {
  Eigen::MatrixXd full(n_, n_);
  for (std::int64_t j = 0; j < n_; ++j) {
    for (std::int64_t i = 0; i <= j; ++i) full(i, j) = full(j, i) = packed_[static_cast<std::size_t>(column_offset(j) + i)];
  }
  return full;
}

}  // namespace neuronmap::detail
