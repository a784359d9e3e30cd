# `npm ci` for the dashboard's charting library in BINARY_DIR. Never fails the build: without the
# library, `neuronmap report` writes everything but the dashboard and says why.
file(MAKE_DIRECTORY ${BINARY_DIR})
file(COPY ${SOURCE_DIR}/package.json ${SOURCE_DIR}/package-lock.json DESTINATION ${BINARY_DIR})
execute_process(
  COMMAND ${NPM} ci --no-audit --no-fund --ignore-scripts --loglevel=error
  WORKING_DIRECTORY ${BINARY_DIR}
  RESULT_VARIABLE result
  OUTPUT_VARIABLE output
  ERROR_VARIABLE output
  TIMEOUT 600)
if(NOT result EQUAL 0 OR NOT EXISTS ${BINARY_DIR}/node_modules/echarts/dist/echarts.min.js)
  message(WARNING "npm ci for the report dashboard failed (${result}); `neuronmap report` will write no dashboard. "
                  "Fix npm or the network, then delete ${BINARY_DIR}/npm-install.stamp and rebuild.\n${output}")
endif()
# Written either way, so that an offline build does not retry npm on every build.
file(TOUCH ${BINARY_DIR}/npm-install.stamp)
