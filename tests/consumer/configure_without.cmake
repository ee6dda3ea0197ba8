# cmake -P script: configures coraft afresh as if PACKAGE were not installed, and prints what
# CMake said, for the test to match.
file(REMOVE_RECURSE ${WORK_DIR})
execute_process(
  COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}
          -DCMAKE_DISABLE_FIND_PACKAGE_${PACKAGE}=ON -DCORAFT_BUILD_BENCH=OFF
          -DCORAFT_BUILD_APPS=OFF
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
file(REMOVE_RECURSE ${WORK_DIR})
message("exit code ${rc}\n${out}\n${err}")
if(rc EQUAL 0)
  message(FATAL_ERROR "configuring without ${PACKAGE} succeeded")
endif()
