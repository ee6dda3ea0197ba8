# cmake -P script: install, configure the consumer, build it, run it.
set(prefix ${WORK_DIR}/prefix)
file(REMOVE_RECURSE ${WORK_DIR})

function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

step(${CMAKE_COMMAND} --install ${CORAFT_BUILD_DIR} --prefix ${prefix})
foreach(f include/coraft/coraft.hpp lib/cmake/coraft/coraftConfig.cmake
          lib/cmake/coraft/coraftConfigVersion.cmake lib/pkgconfig/coraft.pc bin/coraft-inspect)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "the install tree lacks ${f}")
  endif()
endforeach()

set(flags "")
if(SANITIZE)
  set(flags "-fsanitize=${SANITIZE}")
endif()
step(${CMAKE_COMMAND} -S ${CONSUMER_SOURCE_DIR} -B ${WORK_DIR}/build
     -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=${BUILD_TYPE}
     -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_C_COMPILER=${C_COMPILER}
     "-DCMAKE_CXX_FLAGS=${flags}" "-DCMAKE_EXE_LINKER_FLAGS=${flags}")
step(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
step(${WORK_DIR}/build/consumer_app)
if(NOT step_output MATCHES "coraft 0\\.1\\.[0-9]+ ok")
  message(FATAL_ERROR "unexpected consumer output: ${step_output}")
endif()
message(STATUS "consumer printed: ${step_output}")

# The same program built with pkg-config instead of CMake.
find_program(PKG_CONFIG pkg-config REQUIRED)
set(ENV{PKG_CONFIG_PATH} ${prefix}/lib/pkgconfig)
step(${PKG_CONFIG} --cflags --libs --static coraft)
string(STRIP "${step_output}" pc_flags)
separate_arguments(pc_flags UNIX_COMMAND "${pc_flags}")
step(${CXX_COMPILER} -std=c++20 ${flags} ${CONSUMER_SOURCE_DIR}/main.cpp ${pc_flags}
     -o ${WORK_DIR}/consumer_app_pc)
step(${WORK_DIR}/consumer_app_pc)
if(NOT step_output MATCHES "coraft 0\\.1\\.[0-9]+ ok")
  message(FATAL_ERROR "unexpected output of the pkg-config build: ${step_output}")
endif()
