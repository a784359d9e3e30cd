# `cmake --install`: headers, the library, the CLI, and a CMake package giving NeuronMap::neuronmap.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/neuronmap DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS neuronmap EXPORT NeuronMapTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS neuronmap_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

set(NEURONMAP_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/NeuronMap)
install(EXPORT NeuronMapTargets NAMESPACE NeuronMap:: DESTINATION ${NEURONMAP_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/NeuronMapConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/NeuronMapConfig.cmake INSTALL_DESTINATION ${NEURONMAP_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/NeuronMapConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/NeuronMapConfig.cmake ${PROJECT_BINARY_DIR}/NeuronMapConfigVersion.cmake
        DESTINATION ${NEURONMAP_CMAKE_DIR})

# pkg-config: the same package for projects without CMake. LibTorch has no .pc file of its own, so its
# include directories and libraries (as find_package(Torch) found them) go straight into ours. The file
# finds its prefix from its own location (${pcfiledir}), so `cmake --install --prefix` anywhere works.
set(NEURONMAP_PC_TORCH_CFLAGS "")
foreach(dir IN LISTS TORCH_INCLUDE_DIRS)
  # -isystem: LibTorch's headers warn under -Wall; /usr/include is searched anyway (and -isystem on it
  # would break the C++ library's #include_next).
  if(NOT dir STREQUAL "/usr/include")
    string(APPEND NEURONMAP_PC_TORCH_CFLAGS " -isystem ${dir}")
  endif()
endforeach()
string(APPEND NEURONMAP_PC_TORCH_CFLAGS " ${TORCH_CXX_FLAGS}")
string(STRIP "${NEURONMAP_PC_TORCH_CFLAGS}" NEURONMAP_PC_TORCH_CFLAGS)
get_filename_component(NEURONMAP_PC_TORCH_LIBDIR "${TORCH_LIBRARY}" DIRECTORY)
set(NEURONMAP_PC_TORCH_LIBS "-L${NEURONMAP_PC_TORCH_LIBDIR} -ltorch -ltorch_cpu -lc10")
file(RELATIVE_PATH NEURONMAP_PC_UP /pkgroot/${CMAKE_INSTALL_LIBDIR}/pkgconfig /pkgroot)
string(REGEX REPLACE "/$" "" NEURONMAP_PC_UP "${NEURONMAP_PC_UP}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/neuronmap.pc.in ${PROJECT_BINARY_DIR}/neuronmap.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/neuronmap.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
