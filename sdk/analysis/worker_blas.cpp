// Loads the private single-threaded OpenBLAS once, on first use (see worker_blas.hpp for why).
#include "analysis/worker_blas.hpp"

#include <cblas.h>
#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <type_traits>

#include "analysis/blas.hpp"

#ifndef NEURONMAP_SERIAL_BLAS_PATH
#define NEURONMAP_SERIAL_BLAS_PATH "/usr/lib/x86_64-linux-gnu/openblas-serial/libopenblas.so.0"
#endif

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define NEURONMAP_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define NEURONMAP_SANITIZED 1
#endif
#endif

namespace neuronmap::detail::worker_blas {
namespace {

using Dsyrk = void (*)(CBLAS_ORDER, CBLAS_UPLO, CBLAS_TRANSPOSE, int, int, double, const double*, int, double,
                       double*, int);
using Ssyrk = void (*)(CBLAS_ORDER, CBLAS_UPLO, CBLAS_TRANSPOSE, int, int, float, const float*, int, float, float*,
                       int);
using Dgemm = void (*)(CBLAS_ORDER, CBLAS_TRANSPOSE, CBLAS_TRANSPOSE, int, int, int, double, const double*, int,
                       const double*, int, double, double*, int);
using Sgemm = void (*)(CBLAS_ORDER, CBLAS_TRANSPOSE, CBLAS_TRANSPOSE, int, int, int, float, const float*, int,
                       const float*, int, float, float*, int);

struct Library {
  Library();
  Dsyrk dsyrk = nullptr;
  Ssyrk ssyrk = nullptr;
  Dgemm dgemm = nullptr;
  Sgemm sgemm = nullptr;
  std::string description;
  // The serial OpenBLAS keeps unlocked buffer tables: with several workers, one product at a time.
  std::mutex calls;
};

Library::Library() {
  Library& lib = *this;
  const char* requested = std::getenv("NEURONMAP_WORKER_BLAS");
  const std::string path = requested != nullptr && *requested != '\0' ? requested : NEURONMAP_SERIAL_BLAS_PATH;
  if (path == "shared") {
    lib.description = "shared BLAS (NEURONMAP_WORKER_BLAS=shared)";
    return;
  }
#ifdef NEURONMAP_SANITIZED
  // A second libc in another link namespace is invisible to the sanitizers' interceptors.
  lib.description = "shared BLAS (sanitizer build)";
#else
  void* handle = dlmopen(LM_ID_NEWLM, path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    lib.description = "shared BLAS (" + path + " not loaded: " + (why != nullptr ? why : "unknown error") +
                      "; install libopenblas0-serial)";
    return;
  }
  lib.dsyrk = reinterpret_cast<Dsyrk>(dlsym(handle, "cblas_dsyrk"));
  lib.ssyrk = reinterpret_cast<Ssyrk>(dlsym(handle, "cblas_ssyrk"));
  lib.dgemm = reinterpret_cast<Dgemm>(dlsym(handle, "cblas_dgemm"));
  lib.sgemm = reinterpret_cast<Sgemm>(dlsym(handle, "cblas_sgemm"));
  if (lib.dsyrk == nullptr || lib.ssyrk == nullptr || lib.dgemm == nullptr || lib.sgemm == nullptr) {
    lib.dsyrk = nullptr;
    lib.ssyrk = nullptr;
    lib.dgemm = nullptr;
    lib.sgemm = nullptr;
    lib.description = "shared BLAS (" + path + " lacks CBLAS symbols)";
    return;
  }
  lib.description = "private single-threaded OpenBLAS (" + path + ")";
#endif
}

Library& library() {
  static Library lib;
  return lib;
}

// One product on the private library, or on the shared one where it is not loaded. The serial build's
// buffers are not locked: one product at a time.
template <typename Private, typename Shared>
void run(Private private_fn, Shared shared_fn) {
  auto& lib = library();
  if (lib.dsyrk == nullptr) return shared_fn();
  std::lock_guard<std::mutex> lock(lib.calls);
  private_fn(lib);
}

template <typename S>
void syrk(std::int64_t n, std::int64_t k, S alpha, const S* a, std::int64_t lda, S beta, S* c, std::int64_t ldc) {
  using blas::to_blas_int;
  if (n == 0) return;
  run([&](Library& lib) {
        const auto fn = [&] {
          if constexpr (std::is_same_v<S, double>) return lib.dsyrk; else return lib.ssyrk;
        }();
        fn(CblasColMajor, CblasUpper, CblasNoTrans, to_blas_int(n), to_blas_int(k), alpha, a, to_blas_int(lda), beta, c,
           to_blas_int(ldc));
      },
      [&] { blas::syrk_upper_a_at(n, k, alpha, a, lda, beta, c, ldc); });
}

template <typename S>
void gemm(std::int64_t m, std::int64_t n, std::int64_t k, S alpha, const S* a, std::int64_t lda, const S* b,
          std::int64_t ldb, S beta, S* c, std::int64_t ldc) {
  using blas::to_blas_int;
  if (m == 0 || n == 0) return;
  run([&](Library& lib) {
        const auto fn = [&] {
          if constexpr (std::is_same_v<S, double>) return lib.dgemm; else return lib.sgemm;
        }();
        fn(CblasColMajor, CblasNoTrans, CblasTrans, to_blas_int(m), to_blas_int(n), to_blas_int(k), alpha, a,
           to_blas_int(lda), b, to_blas_int(ldb), beta, c, to_blas_int(ldc));
      },
      [&] { blas::gemm_a_bt(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); });
}

}  // namespace

const std::string& description() { return library().description; }

void syrk_upper_a_at(std::int64_t n, std::int64_t k, double alpha, const double* a, std::int64_t lda, double beta,
                     double* c, std::int64_t ldc) {
  syrk(n, k, alpha, a, lda, beta, c, ldc);
}
void syrk_upper_a_at(std::int64_t n, std::int64_t k, float alpha, const float* a, std::int64_t lda, float beta,
                     float* c, std::int64_t ldc) {
  syrk(n, k, alpha, a, lda, beta, c, ldc);
}
void gemm_a_bt(std::int64_t m, std::int64_t n, std::int64_t k, double alpha, const double* a, std::int64_t lda,
               const double* b, std::int64_t ldb, double beta, double* c, std::int64_t ldc) {
  gemm(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
void gemm_a_bt(std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a, std::int64_t lda,
               const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
  gemm(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace neuronmap::detail::worker_blas
