# The analysis code calls CBLAS (syrk/gemm). Debian's libblas.so follows the alternatives system, so
# it is OpenBLAS when installed and the reference BLAS otherwise. This belongs in sdk/CMakeLists.txt
# (target_link_libraries(neuronmap PRIVATE BLAS::BLAS)); until it is there, the analysis test and
# bench folders add it to the library (CMake >= 3.13 allows linking a target from another directory).
find_package(BLAS REQUIRED)
get_target_property(_neuronmap_links neuronmap LINK_LIBRARIES)
if(NOT _neuronmap_links MATCHES "BLAS::BLAS|blas")
  target_link_libraries(neuronmap PRIVATE ${BLAS_LIBRARIES})
endif()
