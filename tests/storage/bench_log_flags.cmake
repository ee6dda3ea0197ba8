# coraft-bench log: a short run ends with a JSON line holding ops_per_s, floor_p50_us and
# direct_share, bad flags (sizes past 2^64 included) are refused with a message and exit
# status 2, and --help prints the usage.
execute_process(COMMAND ${BENCH} log --help OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT out MATCHES "Usage: coraft-bench log \\[OPTIONS\\]" OR NOT out MATCHES "--payload SIZE REQUIRED")
  message(FATAL_ERROR "coraft-bench log --help: expected exit 0 and the usage, got ${rc}: ${out}")
endif()
file(REMOVE_RECURSE "${DIR}")
execute_process(COMMAND ${BENCH} log --payload 4096 --inflight 2 --seconds 0.3 --dir ${DIR} --json
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
file(REMOVE_RECURSE "${DIR}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "coraft-bench log failed (${rc}): ${out} ${err}")
endif()
string(STRIP "${out}" out)
string(REGEX MATCH "[^\n]*$" last "${out}")
if(NOT last MATCHES "^{.*\"ops_per_s\":[0-9.e+]+.*\"direct_share\":[0-9.e+]+.*\"floor_p50_us\":[0-9.e+]+.*}$")
  message(FATAL_ERROR "the last line is not the JSON summary: ${last}")
endif()
foreach(bad "--payload;abc;--inflight;1" "--inflight;1" "--payload;4096;--inflight;0"
            "--payload;4096;--inflight;1;--direct;5000" "--payload;4096;--inflight;1;--direct-sync;maybe"
            "--payload;4096;--inflight;1;--backend;disk" "--payload;4096;--inflight;1;--bogus"
            "--payload;17179869184g;--inflight;1" "--payload;4096;--inflight;1;--segment;18014398509481984k")
  execute_process(COMMAND ${BENCH} log ${bad} --dir ${DIR} RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(NOT rc EQUAL 2 OR NOT err MATCHES "coraft-bench log: ")
    message(FATAL_ERROR "coraft-bench log ${bad}: expected exit 2 with a message, got ${rc}: ${err}")
  endif()
endforeach()
file(REMOVE_RECURSE "${DIR}")
