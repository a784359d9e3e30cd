// The BLAS that the streaming statistics call on worker threads.
//
// LibTorch's matrix products go through the process's OpenBLAS, and Debian's OpenBLAS is the pthread
// build: one thread server for the whole process. A worker's dsyrk there makes the training thread's
// sgemm wait for a free server slot (both spin in exec_blas), and adds OpenBLAS's threads to the
// process's busy ones (docs/PERFORMANCE.md has the profile). So the workers use a private copy of
// Debian's single-threaded OpenBLAS (libopenblas0-serial), loaded with dlmopen into a link namespace
// of its own: its products run on the calling thread alone and share no state with LibTorch's.
// Where that copy cannot be loaded (package missing, sanitizer builds, no static TLS left), the
// shared BLAS is used and worker_blas::description() says why.
#pragma once

#include <cstdint>
#include <string>

namespace neuronmap::detail::worker_blas {

/// Upper triangle of C (n x n, leading dimension ldc) = alpha * A A^T + beta * C; A is n x k
/// column-major with leading dimension lda, i.e. k row-major samples of n values. On the private BLAS.
void syrk_upper_a_at(std::int64_t n, std::int64_t k, double alpha, const double* a, std::int64_t lda,
                     double beta, double* c, std::int64_t ldc);
void syrk_upper_a_at(std::int64_t n, std::int64_t k, float alpha, const float* a, std::int64_t lda,
                     float beta, float* c, std::int64_t ldc);

/// C (m x n) = alpha * A B^T + beta * C with A m x k and B n x k, column-major, on the private BLAS.
void gemm_a_bt(std::int64_t m, std::int64_t n, std::int64_t k, double alpha, const double* a, std::int64_t lda,
               const double* b, std::int64_t ldb, double beta, double* c, std::int64_t ldc);
void gemm_a_bt(std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a, std::int64_t lda,
               const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc);

/// "private single-threaded OpenBLAS (PATH)", or "shared BLAS (REASON)".
const std::string& description();

}  // namespace neuronmap::detail::worker_blas
