# cmake -P script: install → configure consumer → build → run it.
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
include(${CMAKE_CURRENT_LIST_DIR}/run_step.cmake)
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
foreach(expected include/neuronmap/neuronmap.hpp bin/neuronmap lib/cmake/NeuronMap/NeuronMapConfig.cmake
                 lib/pkgconfig/neuronmap.pc)
  if(NOT EXISTS ${prefix}/${expected})
    message(FATAL_ERROR "install did not produce ${expected}")
  endif()
endforeach()
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/build -G ${GENERATOR} -DCMAKE_BUILD_TYPE=Release
    -DCMAKE_PREFIX_PATH=${prefix})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/consumer ${WORK_DIR}/run.h5)
run(${prefix}/bin/neuronmap inspect ${WORK_DIR}/run.h5)
# The TorchScript verbs come from a module the installed CLI finds relative to itself
# (<prefix>/<libdir>/neuronmap), which loads the installed libneuronmap_torchscript and libneuronmap.
run(${prefix}/bin/neuronmap layers ${MODEL})

# The same program built without CMake, from pkg-config's flags alone (a Makefile user's view).
find_program(PKG_CONFIG pkg-config REQUIRED)
execute_process(COMMAND ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${prefix}/lib/pkgconfig ${PKG_CONFIG} --cflags --libs neuronmap
                RESULT_VARIABLE rc OUTPUT_VARIABLE pc_flags OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config --cflags --libs neuronmap failed (${rc})")
endif()
separate_arguments(pc_flags UNIX_COMMAND "${pc_flags}")
run(${CXX} ${SOURCE_DIR}/main.cpp -o ${WORK_DIR}/consumer_pc ${pc_flags})
run(${WORK_DIR}/consumer_pc ${WORK_DIR}/run_pc.h5)
run(${prefix}/bin/neuronmap inspect ${WORK_DIR}/run_pc.h5)
message(STATUS "consumer project built and ran against the installed SDK (CMake package and pkg-config)")
