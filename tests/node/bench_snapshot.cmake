# coraft-bench snapshot: one snapshot streamed to a new learner arrives whole (the learner's
# state machine restored every byte), with no stream failed, and the process's peak RSS grew by
# little more than the stream's window while it ran (skipped under sanitizers, whose allocators
# keep freed memory). BYTES is the snapshot's size; CORAFT_SNAPSHOT_BENCH_BYTES overrides it
# (1g for the full-size run).
if(DEFINED ENV{CORAFT_SNAPSHOT_BENCH_BYTES})
  set(BYTES "$ENV{CORAFT_SNAPSHOT_BENCH_BYTES}")
endif()
file(REMOVE_RECURSE "${DIR}")
file(MAKE_DIRECTORY "${DIR}")
execute_process(COMMAND ${BENCH} snapshot --bytes ${BYTES} --chunk 1m --window 4 --dir ${DIR} --json
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
file(GLOB left "${DIR}/*")
file(REMOVE_RECURSE "${DIR}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "coraft-bench snapshot failed (${rc}): ${out} ${err}")
endif()
if(left)
  message(FATAL_ERROR "coraft-bench snapshot left files behind: ${left}")
endif()
if(NOT out MATCHES "leader: [0-9]+ bytes sent in 1 stream\\(s\\), 0 failed")
  message(FATAL_ERROR "not one stream without failures: ${out}")
endif()
string(REGEX MATCH "\"peak_rss_growth_bytes\":([0-9]+)" _ "${out}")
set(growth "${CMAKE_MATCH_1}")
string(REGEX MATCH "\"window_bytes\":([0-9]+)" _ "${out}")
set(window "${CMAKE_MATCH_1}")
if(growth STREQUAL "" OR window STREQUAL "")
  message(FATAL_ERROR "no JSON figures: ${out}")
endif()
# Sender and receiver each hold at most the window; allow both, their buffers and 16 MiB.
math(EXPR bound "3 * ${window} + 16 * 1048576")
if(NOT SANITIZED AND growth GREATER bound)
  message(FATAL_ERROR "peak RSS grew by ${growth} bytes during the stream, over ${bound}: ${out}")
endif()
message(STATUS "snapshot of ${BYTES}: peak RSS growth ${growth} bytes (window ${window})")
