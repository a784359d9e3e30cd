// Pearson correlation between neurons, with the reference's rules for dead neurons (see
// shared oracle semantics): a neuron that never varied (max == min) correlates 0 with every other.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "analysis/large_buffer.hpp"

namespace neuronmap::detail {

class Moments;

/// Storage precision of a correlation matrix. `automatic` keeps float64 unless the n x n matrix
/// would take more than kMaxFloat64CorrelationBytes (n > 11,585), then uses float32.
enum class Precision { automatic, f64, f32 };
inline constexpr std::int64_t kMaxFloat64CorrelationBytes = std::int64_t{1} << 30;
Precision resolve_precision(Precision requested, std::int64_t n_neurons) noexcept;

/// A symmetric n x n matrix held in float64 or float32. Column-major storage, which for a symmetric
/// matrix is also its row-major storage.
class CorrelationMatrix {
 public:
  CorrelationMatrix() = default;
  CorrelationMatrix(std::int64_t n, Precision precision);

  Eigen::Index rows() const noexcept { return n_; }
  Eigen::Index cols() const noexcept { return n_; }
  Eigen::Index size() const noexcept { return n_ * n_; }
  bool is_f32() const noexcept { return single_; }

  double operator()(Eigen::Index i, Eigen::Index j) const noexcept {
    const auto k = static_cast<std::size_t>(j * n_ + i);
    return single_ ? static_cast<double>(f32_[k]) : f64_[k];
  }

  /// The matrix as stored (throws std::logic_error when it is stored in the other precision).
  Eigen::Map<const Eigen::MatrixXd> f64() const;
  Eigen::Map<Eigen::MatrixXd> f64();
  Eigen::Map<const Eigen::MatrixXf> f32() const;
  Eigen::Map<Eigen::MatrixXf> f32();

  /// A copy in the requested scalar type (e.g. cast<float>() for the run file).
  template <typename Scalar>
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> cast() const {
    if (single_) return f32().template cast<Scalar>();
    return f64().template cast<Scalar>();
  }
  /// n*n float32 values, row-major (= column-major: symmetric). Moves the storage out when it is
  /// float32 already (the matrix is empty afterwards), so a wide layer is not held twice.
  std::vector<float> take_float_values();

  /// Calls f with the stored matrix (Eigen::Map of MatrixXd or MatrixXf).
  template <typename F>
  decltype(auto) visit(F&& f) const {
    if (single_) return f(f32());
    return f(f64());
  }

 private:
  std::int64_t n_ = 0;
  bool single_ = false;
  LargeVector<double> f64_;
  std::vector<float> f32_;  // the standard allocator, so take_float_values() can move it out
};

struct Correlation {
  CorrelationMatrix r;             ///< n x n, symmetric, diagonal 1, every entry finite and in [-1, 1]
  std::vector<std::uint8_t> dead;  ///< 1 where the neuron never varied (or saw no sample)
  Eigen::VectorXd stddev;          ///< population standard deviation (ddof = 0); 0 for dead neurons
  Eigen::VectorXd mean;            ///< per-neuron mean over every sample
  std::int64_t n_samples = 0;      ///< samples behind the statistics (the k-means embedding's scale)
};

/// From streaming moments (exact over every accumulated sample).
Correlation correlation_from_moments(const Moments& moments, Precision precision = Precision::automatic);

/// From a samples x neurons matrix (the `groups` verb; tests). Input must be finite.
Correlation correlation_from_samples(const Eigen::Ref<const Eigen::MatrixXd>& samples,
                                     Precision precision = Precision::automatic);
/// From row-major samples x neurons data (e.g. as read from HDF5), without a float64 copy of it.
Correlation correlation_from_rows(const float* data, std::int64_t rows, std::int64_t cols,
                                  Precision precision = Precision::automatic);
Correlation correlation_from_rows(const double* data, std::int64_t rows, std::int64_t cols,
                                  Precision precision = Precision::automatic);

}  // namespace neuronmap::detail
