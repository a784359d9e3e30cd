# Every dependency, found from Debian 12's packages (scripts/install-deps installs them).
find_package(Threads REQUIRED)
find_package(Torch REQUIRED)
find_package(TBB REQUIRED)
find_package(Eigen3 3.3 REQUIRED NO_MODULE)
find_package(HDF5 REQUIRED COMPONENTS C)
find_package(fmt REQUIRED)
find_package(cereal REQUIRED)
find_package(CLI11 REQUIRED)
# The analysis calls CBLAS (syrk, gemm) through libblas.so: OpenBLAS via Debian's alternatives.
find_package(BLAS REQUIRED)

# Debian's LibTorch runs ~10x slower on the reference BLAS; OpenBLAS replaces it through Debian's
# alternatives (libblas.so.3), so nothing links it directly. Warn when it is missing.
find_library(NEURONMAP_OPENBLAS NAMES openblas)
if(NOT NEURONMAP_OPENBLAS)
  message(WARNING "OpenBLAS not found: LibTorch will use the slow reference BLAS. "
                  "Run scripts/install-deps (installs libopenblas0-pthread).")
endif()

if(NEURONMAP_BUILD_TESTS)
  find_package(GTest REQUIRED)
  include(GoogleTest)
endif()
if(NEURONMAP_BUILD_BENCH)
  find_package(benchmark REQUIRED)
endif()
