# coraft-bench core: a short run ends with a JSON line holding entries_per_s, and bad flags are
# refused with a message and exit status 2.
execute_process(COMMAND ${BENCH} core --payload 64 --seconds 0.2 --json
                OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "coraft-bench core failed (${rc}): ${out}")
endif()
string(STRIP "${out}" out)
string(REGEX MATCH "[^\n]*$" last "${out}")
if(NOT last MATCHES "^{.*\"entries_per_s\":[0-9.e+]+.*}$")
  message(FATAL_ERROR "the last line is not the JSON summary: ${last}")
endif()
foreach(bad "--payload;abc" "--payload;64;--nodes;0" "--payload;64;--bogus" "--nodes;3")
  execute_process(COMMAND ${BENCH} core ${bad} RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(NOT rc EQUAL 2 OR NOT err MATCHES "coraft-bench core: ")
    message(FATAL_ERROR "coraft-bench core ${bad}: expected exit 2 with a message, got ${rc}: ${err}")
  endif()
endforeach()
