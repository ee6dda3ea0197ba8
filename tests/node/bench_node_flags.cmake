# coraft-bench node: a short run of a real 3-node cluster ends with a JSON line holding
# entries_per_s and latencies, --help prints the usage, and bad flags are refused with exit 2.
execute_process(COMMAND ${BENCH} node --payload 64 --outstanding 8 --seconds 0.5 --json
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "coraft-bench node failed (${rc}): ${out} ${err}")
endif()
string(STRIP "${out}" out)
string(REGEX MATCH "[^\n]*$" last "${out}")
if(NOT last MATCHES "^{.*\"entries_per_s\":[0-9.e+]+.*\"p99_us\":[0-9.e+]+.*\"failed\":[0-9]+.*}$")
  message(FATAL_ERROR "the last line is not the JSON summary: ${last}")
endif()
execute_process(COMMAND ${BENCH} node --help OUTPUT_VARIABLE usage RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT usage MATCHES "usage: coraft-bench node")
  message(FATAL_ERROR "coraft-bench node --help: ${rc}: ${usage}")
endif()
foreach(bad "--payload;64" "--payload;64;--outstanding;0" "--payload;0;--outstanding;4"
            "--payload;64;--outstanding;4;--nodes;9" "--payload;64;--outstanding;4;--bogus")
  execute_process(COMMAND ${BENCH} node ${bad} RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(NOT rc EQUAL 2 OR NOT err MATCHES "coraft-bench node: ")
    message(FATAL_ERROR "coraft-bench node ${bad}: expected exit 2 with a message, got ${rc}: ${err}")
  endif()
endforeach()
