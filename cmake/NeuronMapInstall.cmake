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
