// Streaming moments: each batch is centred on its own mean, its co-moment formed with BLAS products
// (a column panel at a time, straight into the packed upper triangle), then merged with the running
// totals (Chan, Golub & LeVeque 1979), which keeps the float64 result within ~1e-12 of a two-pass
// computation over all samples. With float32 products only the batch's own product is formed in
// float32 (ssyrk, twice the rate); the merge and the totals stay float64 (docs/PERFORMANCE.md).
#include "analysis/moments.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include <tbb/parallel_for.h>

#include "analysis/worker_blas.hpp"

namespace neuronmap::detail {
namespace {

// Column panels of the packed update: wide enough for an efficient product, small enough that the
// panel buffer (n x width float64) stays modest at 16,384 neurons (32 MiB).
constexpr std::int64_t kPanelWidth = 256;
// Rows per block copied to float64 and centred (bounds the block to ~64 MiB).
constexpr std::int64_t kBlockBytes = std::int64_t{64} << 20;
// Widths up to which the whole product is one syrk into an n x n scratch (8 MiB in float64).
constexpr std::int64_t kWholeWidth = 1024;

}  // namespace

Moments::Moments(std::int64_t n_neurons, ProductPrecision products)
    : n_(n_neurons),
      products_(products),
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
    if (products_ == ProductPrecision::f32) {
      add_block<float>(data, kept.data(), b, block_mean);
    } else {
      add_block<double>(data, kept.data(), b, block_mean);
    }
  }
  return skipped;
}

template <typename S, typename T>
void Moments::add_block(const T* data, const std::int64_t* kept, std::int64_t b, const Eigen::VectorXd& block_mean) {
  // Everything here runs on the calling (worker) thread alone: a parallel loop would wake the TBB
  // arena's threads beside the training's, and the products go to the private serial BLAS
  // (worker_blas.hpp), so a batch costs one core and never waits for LibTorch's BLAS calls.
  thread_local LargeVector<S> centred;
  thread_local LargeVector<S> panel;
  if (static_cast<std::int64_t>(centred.size()) < b * n_) centred = LargeVector<S>(static_cast<std::size_t>(b * n_));
  // Up to kWholeWidth neurons the product is one syrk (its best rate), beyond in column panels.
  const std::int64_t panel_width = n_ <= kWholeWidth ? n_ : kPanelWidth;
  if (static_cast<std::int64_t>(panel.size()) < n_ * panel_width)
    panel = LargeVector<S>(static_cast<std::size_t>(n_ * panel_width));
  // The kept rows, centred on the block mean in float64 (then rounded to S), stay row-major: as a
  // column-major n x b matrix A they give the co-moment as A A^T, so centring is a contiguous pass
  // (a transposed copy cost a quarter of the update at N = 512, B = 128).
  S* out = centred.data();
  const double* mean = block_mean.data();
  for (std::int64_t i = 0; i < b; ++i) {
    const T* row = data + kept[i] * n_;
    S* centred_row = out + i * n_;
    for (std::int64_t c = 0; c < n_; ++c) centred_row[c] = static_cast<S>(static_cast<double>(row[c]) - mean[c]);
  }

  const auto a = static_cast<double>(count_);
  const double total = a + static_cast<double>(b);
  const Eigen::VectorXd delta = block_mean - mean_;
  const double weight = a * static_cast<double>(b) / total;
  // Panel [j0, j1): rows 0..j0 by gemm, the diagonal block by syrk, into `panel` (j1 x width), then
  // added in float64 with the rank-one correction of Chan's update into the packed columns.
  for (std::int64_t j0 = 0; j0 < n_; j0 += panel_width) {
    const std::int64_t j1 = std::min(n_, j0 + panel_width);
    const std::int64_t width = j1 - j0;
    S* panel_data = panel.data();
    if (j0 > 0) worker_blas::gemm_a_bt(j0, width, b, S(1), out, n_, out + j0, n_, S(0), panel_data, j1);
    worker_blas::syrk_upper_a_at(width, b, S(1), out + j0, n_, S(0), panel_data + j0, j1);
    for (std::int64_t j = j0; j < j1; ++j) {
      double* column = packed_.data() + column_offset(j);
      const S* source = panel_data + (j - j0) * j1;
      const double scaled = weight * delta(j);
      for (std::int64_t i = 0; i <= j; ++i) column[i] += static_cast<double>(source[i]) + scaled * delta(i);
    }
  }
  mean_ += delta * (static_cast<double>(b) / total);
  count_ += b;
}

void Moments::merge(const Moments& other, bool parallel) {
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
  auto merge_column = [&](std::int64_t j) {
    double* column = packed_.data() + column_offset(j);
    const double* source = other.packed_.data() + column_offset(j);
    const double scaled = weight * delta(j);
    for (std::int64_t i = 0; i <= j; ++i) column[i] += source[i] + scaled * delta(i);
  };
  if (parallel) {
    tbb::parallel_for(std::int64_t{0}, n_, merge_column);
  } else {
    for (std::int64_t j = 0; j < n_; ++j) merge_column(j);
  }
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
