// Correlation from co-moments: r_ij = M_ij / sqrt(M_ii M_jj) (the 1/(n - ddof) factors cancel). The
// co-moment of a samples matrix is one BLAS syrk of the centred data (half the flops of a gemm);
// normalising and mirroring into the lower triangle is done tile by tile so both stay in cache.
#include "analysis/correlation.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "analysis/blas.hpp"
#include "analysis/moments.hpp"

namespace neuronmap::detail {

Precision resolve_precision(Precision requested, std::int64_t n_neurons) noexcept {
  if (requested != Precision::automatic) return requested;
  const double bytes = 8.0 * static_cast<double>(n_neurons) * static_cast<double>(n_neurons);
  return bytes > static_cast<double>(kMaxFloat64CorrelationBytes) ? Precision::f32 : Precision::f64;
}

CorrelationMatrix::CorrelationMatrix(std::int64_t n, Precision precision)
    : n_(n), single_(resolve_precision(precision, n) == Precision::f32) {
  if (single_) {
    f32_.reserve(static_cast<std::size_t>(n * n));
    advise_huge_pages(f32_.data(), f32_.capacity() * sizeof(float));
    f32_.resize(static_cast<std::size_t>(n * n));
  } else {
    f64_.resize(static_cast<std::size_t>(n * n));
  }
}

Eigen::Map<const Eigen::MatrixXd> CorrelationMatrix::f64() const {
  if (single_) throw std::logic_error("CorrelationMatrix::f64(): the matrix is stored as float32");
  return {f64_.data(), n_, n_};
}
Eigen::Map<Eigen::MatrixXd> CorrelationMatrix::f64() {
  if (single_) throw std::logic_error("CorrelationMatrix::f64(): the matrix is stored as float32");
  return {f64_.data(), n_, n_};
}
Eigen::Map<const Eigen::MatrixXf> CorrelationMatrix::f32() const {
  if (!single_) throw std::logic_error("CorrelationMatrix::f32(): the matrix is stored as float64");
  return {f32_.data(), n_, n_};
}
Eigen::Map<Eigen::MatrixXf> CorrelationMatrix::f32() {
  if (!single_) throw std::logic_error("CorrelationMatrix::f32(): the matrix is stored as float64");
  return {f32_.data(), n_, n_};
}

std::vector<float> CorrelationMatrix::take_float_values() {
  if (single_) {
    std::vector<float> out = std::move(f32_);
    f32_.clear();
    n_ = 0;
    return out;
  }
  return std::vector<float>(f64_.begin(), f64_.end());
}

namespace {

constexpr std::int64_t kTile = 64;

// Writes r (n x n, column-major, both triangles) from co-moments: `column(j)` points at M_0j..M_jj
// (contiguous). `inv_norm` is 1/sqrt(M_ii) for live neurons and 0 for dead ones. The source may be
// the upper triangle of r itself: a tile reads only upper entries before writing them, and writes
// lower entries, which no tile reads. The lower triangle is written from a transposed tile buffer,
// so both triangles are written in contiguous runs.
template <typename Scalar, typename Column>
void normalise_into(Scalar* r, std::int64_t n, const Column& column, const Eigen::VectorXd& inv_norm) {
  const std::int64_t blocks = (n + kTile - 1) / kTile;
  tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, blocks, 1), [&](const tbb::blocked_range<std::int64_t>& range) {
    Scalar tile[kTile][kTile];  // tile[j - j0][i - i0]
    for (std::int64_t bj = range.begin(); bj != range.end(); ++bj) {
      const std::int64_t j0 = bj * kTile, j1 = std::min(n, j0 + kTile);
      for (std::int64_t i0 = 0; i0 < j1; i0 += kTile) {
        const std::int64_t i1 = std::min(n, i0 + kTile);
        for (std::int64_t j = j0; j < j1; ++j) {
          const auto* source = column(j);
          const double scale_j = inv_norm(j);
          const std::int64_t i_end = std::min(i1, j);
          Scalar* out = r + j * n;
          Scalar* buffer = tile[j - j0] - i0;
          for (std::int64_t i = i0; i < i_end; ++i) {
            double v = static_cast<double>(source[i]) * inv_norm(i) * scale_j;
            v = std::abs(v) <= std::numeric_limits<double>::max() ? std::clamp(v, -1.0, 1.0) : 0.0;
            out[i] = buffer[i] = static_cast<Scalar>(v);
          }
          if (j >= i0 && j < i1) out[j] = Scalar(1);
        }
        for (std::int64_t i = i0; i < std::min(i1, j1); ++i) {
          Scalar* out = r + i * n;
          for (std::int64_t j = std::max(j0, i + 1); j < j1; ++j) out[j] = tile[j - j0][i - i0];
        }
      }
    }
  });
}

struct ColumnSummary {
  Eigen::VectorXd mean, min, max;
};

Correlation finish(CorrelationMatrix&& r, std::vector<std::uint8_t>&& dead, Eigen::VectorXd&& mean,
                   std::int64_t count, const Eigen::VectorXd& diagonal) {
  Correlation out;
  const std::int64_t n = r.rows();
  out.stddev = Eigen::VectorXd::Zero(n);
  for (std::int64_t i = 0; i < n; ++i) {
    if (!dead[static_cast<std::size_t>(i)] && diagonal(i) > 0)
      out.stddev(i) = std::sqrt(diagonal(i) / static_cast<double>(count));
  }
  out.r = std::move(r);
  out.dead = std::move(dead);
  out.mean = std::move(mean);
  out.n_samples = count;
  return out;
}

Eigen::VectorXd inverse_norms(const Eigen::VectorXd& diagonal, const std::vector<std::uint8_t>& dead) {
  Eigen::VectorXd inv = Eigen::VectorXd::Zero(diagonal.size());
  for (Eigen::Index i = 0; i < diagonal.size(); ++i) {
    if (!dead[static_cast<std::size_t>(i)] && diagonal(i) > 0) inv(i) = 1.0 / std::sqrt(diagonal(i));
  }
  return inv;
}

// Samples given by an accessor at(row, col) -> double, in either storage order.
template <typename At>
Correlation from_samples(std::int64_t rows, std::int64_t n, Precision precision, const At& at) {
  ColumnSummary summary{Eigen::VectorXd::Zero(n), Eigen::VectorXd::Zero(n), Eigen::VectorXd::Zero(n)};
  std::vector<std::uint8_t> dead(static_cast<std::size_t>(n), 1);
  // Column blocks of kTile, rows in the inner-outer loop: cache-friendly for either layout. Local
  // arrays (not the Eigen vectors, which the compiler must assume may alias) let the inner loop
  // vectorise; each column is still summed in row order.
  tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, n, kTile), [&](const tbb::blocked_range<std::int64_t>& cols) {
    const std::int64_t c0 = cols.begin(), width = cols.end() - cols.begin();
    double sum[kTile] = {}, lo[kTile], hi[kTile];
    for (std::int64_t c = 0; c < width; ++c) lo[c] = hi[c] = rows > 0 ? at(0, c0 + c) : 0.0;
    for (std::int64_t s = 0; s < rows; ++s) {
      for (std::int64_t c = 0; c < width; ++c) {
        const double v = at(s, c0 + c);
        sum[c] += v;
        lo[c] = std::min(lo[c], v);
        hi[c] = std::max(hi[c], v);
      }
    }
    for (std::int64_t c = 0; c < width; ++c) {
      summary.mean(c0 + c) = rows > 0 ? sum[c] / static_cast<double>(rows) : 0.0;
      summary.min(c0 + c) = lo[c];
      summary.max(c0 + c) = hi[c];
      dead[static_cast<std::size_t>(c0 + c)] = rows == 0 || !(hi[c] > lo[c]) ? 1 : 0;
    }
  });

  CorrelationMatrix r(n, precision);
  auto compute = [&](auto matrix) {
    using S = typename decltype(matrix)::Scalar;
    S* m = matrix.data();
    // Centred row chunks, each one syrk into the upper triangle of r's own storage. A chunk is kept
    // row-major (n x k column-major, syrk "A A^T"): centring row-major samples is then a contiguous
    // copy, and OpenBLAS's NoTrans syrk is ~8% faster than the Trans one. k >= 2048 keeps syrk at the
    // dgemm rate (k = 1024 lost ~15%); one reused buffer, since fresh memory costs more to touch than
    // to compute with on the project's VMs.
    constexpr std::int64_t kChunkBytes = std::int64_t{32} << 20;
    constexpr std::int64_t kMinChunkRows = 2048;
    const std::int64_t chunk_rows = std::min<std::int64_t>(
        std::max<std::int64_t>(kMinChunkRows,
                               kChunkBytes / (static_cast<std::int64_t>(sizeof(S)) * std::max<std::int64_t>(n, 1))),
        std::max<std::int64_t>(rows, 1));
    LargeVector<S> buffer(static_cast<std::size_t>(std::min(chunk_rows, rows) * n));
    bool first = true;
    for (std::int64_t r0 = 0; r0 < rows; r0 += chunk_rows) {
      const std::int64_t r1 = std::min(rows, r0 + chunk_rows);
      S* centred = buffer.data();  // centred[(s - r0) * n + c]
      // kTile x kTile tiles: contiguous writes, and reads that stay in cache for either input layout.
      const std::int64_t row_tiles = (r1 - r0 + kTile - 1) / kTile;
      tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, row_tiles, 1), [&](const tbb::blocked_range<std::int64_t>& tiles) {
        for (std::int64_t t = tiles.begin(); t != tiles.end(); ++t) {
          const std::int64_t s0 = r0 + t * kTile, s1 = std::min(r1, s0 + kTile);
          for (std::int64_t c0 = 0; c0 < n; c0 += kTile) {
            const std::int64_t c1 = std::min(n, c0 + kTile);
            for (std::int64_t s = s0; s < s1; ++s) {
              S* out = centred + (s - r0) * n;
              for (std::int64_t c = c0; c < c1; ++c) out[c] = static_cast<S>(at(s, c) - summary.mean(c));
            }
          }
        }
      });
      blas::syrk_upper_a_at(n, r1 - r0, S(1), centred, n, first ? S(0) : S(1), m, n);
      first = false;
    }
    if (first) std::fill(m, m + n * n, S(0));
    Eigen::VectorXd diagonal(n);
    for (std::int64_t i = 0; i < n; ++i) diagonal(i) = static_cast<double>(m[i * n + i]);
    const Eigen::VectorXd inv = inverse_norms(diagonal, dead);
    normalise_into(m, n, [m, n](std::int64_t j) { return m + j * n; }, inv);
    return diagonal;
  };
  Eigen::VectorXd diagonal = r.is_f32() ? compute(r.f32()) : compute(r.f64());
  return finish(std::move(r), std::move(dead), std::move(summary.mean), rows, diagonal);
}

}  // namespace

Correlation correlation_from_moments(const Moments& moments, Precision precision) {
  const std::int64_t n = moments.n_neurons();
  std::vector<std::uint8_t> dead(static_cast<std::size_t>(n), 0);
  Eigen::VectorXd diagonal(n);
  for (std::int64_t i = 0; i < n; ++i) {
    dead[static_cast<std::size_t>(i)] = moments.count() == 0 || !(moments.max()(i) > moments.min()(i)) ? 1 : 0;
    diagonal(i) = moments.comoment(i, i);
  }
  const Eigen::VectorXd inv = inverse_norms(diagonal, dead);
  CorrelationMatrix r(n, precision);
  const double* packed = moments.comoment_packed().data();
  auto source = [packed](std::int64_t j) { return packed + Moments::column_offset(j); };
  if (r.is_f32()) {
    normalise_into(r.f32().data(), n, source, inv);
  } else {
    normalise_into(r.f64().data(), n, source, inv);
  }
  Eigen::VectorXd mean = moments.mean();
  return finish(std::move(r), std::move(dead), std::move(mean), moments.count(), diagonal);
}

Correlation correlation_from_samples(const Eigen::Ref<const Eigen::MatrixXd>& samples, Precision precision) {
  return from_samples(samples.rows(), samples.cols(), precision,
                              [&samples](std::int64_t s, std::int64_t c) { return samples(s, c); });
}

Correlation correlation_from_rows(const float* data, std::int64_t rows, std::int64_t cols, Precision precision) {
  return from_samples(rows, cols, precision, [data, cols](std::int64_t s, std::int64_t c) {
    return static_cast<double>(data[s * cols + c]);
  });
}

Correlation correlation_from_rows(const double* data, std::int64_t rows, std::int64_t cols, Precision precision) {
  return from_samples(rows, cols, precision,
                              [data, cols](std::int64_t s, std::int64_t c) { return data[s * cols + c]; });
}

}  // namespace neuronmap::detail
