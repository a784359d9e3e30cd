# cmake -P script: configure a project that add_subdirectory()s the source tree, build only what its
# executable needs, run it, check the run file it wrote.
file(REMOVE_RECURSE ${WORK_DIR})
include(${CMAKE_CURRENT_LIST_DIR}/run_step.cmake)
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/build -G ${GENERATOR} -DCMAKE_BUILD_TYPE=Release
    -DNEURONMAP_SOURCE=${NEURONMAP_SOURCE})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build --target consumer)
run(${WORK_DIR}/build/consumer ${WORK_DIR}/run.h5)
if(NOT EXISTS ${WORK_DIR}/run.h5)
  message(FATAL_ERROR "the consumer wrote no run file")
endif()
message(STATUS "add_subdirectory consumer built and ran")
