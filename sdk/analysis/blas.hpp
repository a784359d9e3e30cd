// The few BLAS calls the analysis needs (CBLAS through Debian's libblas.so.3, which the
// alternatives system points at OpenBLAS when it is installed), in column-major terms.
#pragma once

#include <cstdint>

namespace neuronmap::detail::blas {

/// A dimension as BLAS's 32-bit int; std::length_error beyond it.
int to_blas_int(std::int64_t value);

/// Upper triangle of C (n x n) = alpha * A A^T + beta * C, where A is n x k column-major with leading
/// dimension lda (i.e. k rows of n values, row-major). The strictly lower triangle is not touched.
void syrk_upper_a_at(std::int64_t n, std::int64_t k, double alpha, const double* a, std::int64_t lda,
                     double beta, double* c, std::int64_t ldc);
void syrk_upper_a_at(std::int64_t n, std::int64_t k, float alpha, const float* a, std::int64_t lda,
                     float beta, float* c, std::int64_t ldc);

/// C (m x n) = alpha * A B^T + beta * C with A m x k and B n x k, all column-major.
void gemm_a_bt(std::int64_t m, std::int64_t n, std::int64_t k, double alpha, const double* a, std::int64_t lda,
               const double* b, std::int64_t ldb, double beta, double* c, std::int64_t ldc);
void gemm_a_bt(std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a, std::int64_t lda,
               const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc);

}  // namespace neuronmap::detail::blas
