# cmake -P script: install → configure bench/consumer → build → run a few steps of it. Keeps the
# consumer benchmark building and running against the installed SDK; its timings are not checked.
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
include(${CMAKE_CURRENT_LIST_DIR}/run_step.cmake)
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/build -G ${GENERATOR} -DCMAKE_BUILD_TYPE=Release
    -DCMAKE_PREFIX_PATH=${prefix})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/alternating_mlp --blocks 2 --steps 3 --file ${WORK_DIR}/run.h5 --json ${WORK_DIR}/figures.json)
message(STATUS "alternating consumer built and ran against the installed SDK")
