// CBLAS wrappers. The 64-bit sizes of the callers are checked against BLAS's 32-bit int here.
#include "analysis/blas.hpp"

#include <cblas.h>

#include <limits>
#include <stdexcept>

namespace neuronmap::detail::blas {
int to_blas_int(std::int64_t value) {
  if (value < 0 || value > std::numeric_limits<int>::max())
    throw std::length_error("BLAS dimension out of the 32-bit range");
  return static_cast<int>(value);
}

void syrk_upper_a_at(std::int64_t n, std::int64_t k, double alpha, const double* a, std::int64_t lda,
                     double beta, double* c, std::int64_t ldc) {
  if (n == 0) return;
  cblas_dsyrk(CblasColMajor, CblasUpper, CblasNoTrans, to_blas_int(n), to_blas_int(k), alpha, a, to_blas_int(lda), beta, c,
              to_blas_int(ldc));
}

void syrk_upper_a_at(std::int64_t n, std::int64_t k, float alpha, const float* a, std::int64_t lda,
                     float beta, float* c, std::int64_t ldc) {
  if (n == 0) return;
  cblas_ssyrk(CblasColMajor, CblasUpper, CblasNoTrans, to_blas_int(n), to_blas_int(k), alpha, a, to_blas_int(lda), beta, c,
              to_blas_int(ldc));
}

void gemm_a_bt(std::int64_t m, std::int64_t n, std::int64_t k, double alpha, const double* a, std::int64_t lda,
               const double* b, std::int64_t ldb, double beta, double* c, std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, to_blas_int(m), to_blas_int(n), to_blas_int(k), alpha, a, to_blas_int(lda), b,
              to_blas_int(ldb), beta, c, to_blas_int(ldc));
}

void gemm_a_bt(std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a, std::int64_t lda,
               const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasColMajor, CblasNoTrans, CblasTrans, to_blas_int(m), to_blas_int(n), to_blas_int(k), alpha, a, to_blas_int(lda), b,
              to_blas_int(ldb), beta, c, to_blas_int(ldc));
}

}  // namespace neuronmap::detail::blas
