# Every dependency, found from Debian 12's packages (scripts/install-deps installs them).
find_package(Threads REQUIRED)
find_package(Torch REQUIRED)
find_package(TBB REQUIRED)
find_package(Eigen3 3.3 REQUIRED NO_MODULE)
find_package(HDF5 REQUIRED COMPONENTS C)
find_package(fmt REQUIRED)
# RapidJSON writes every JSON document (header-only). Debian's config sets RAPIDJSON_INCLUDE_DIRS only.
find_package(RapidJSON REQUIRED)
if(NOT TARGET RapidJSON::RapidJSON)
  add_library(RapidJSON::RapidJSON INTERFACE IMPORTED)
  set_target_properties(RapidJSON::RapidJSON PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${RAPIDJSON_INCLUDE_DIRS}")
endif()
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

# Built inside another project (add_subdirectory): the targets that find_package imported here are
# visible only in this directory, but NeuronMap::neuronmap names torch and Threads::Threads in its
# interface, which the parent project's targets must resolve. Promote them to global.
if(NOT PROJECT_IS_TOP_LEVEL)
  get_directory_property(neuronmap_imported IMPORTED_TARGETS)
  foreach(target IN LISTS neuronmap_imported)
    set_property(TARGET ${target} PROPERTY IMPORTED_GLOBAL TRUE)
  endforeach()
endif()

if(NEURONMAP_BUILD_TESTS)
  find_package(GTest REQUIRED)
  include(GoogleTest)
endif()
if(NEURONMAP_BUILD_BENCH)
  find_package(benchmark REQUIRED)
endif()
