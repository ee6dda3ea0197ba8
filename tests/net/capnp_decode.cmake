# Records a real connection with net_capture, decodes it with `capnp decode` against the schema,
# and checks that every frame and the fields that matter came through.
execute_process(COMMAND ${CAPTURE} ${OUT} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "net_capture failed (${rc})")
endif()
execute_process(COMMAND ${CAPNP} decode --short ${SCHEMA} Frame
                INPUT_FILE ${OUT} OUTPUT_VARIABLE text ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "capnp decode failed (${rc}): ${err}")
endif()
# The tool wraps long lines; compare with every run of blanks as one space.
string(REGEX REPLACE "[ \n]+" " " text "${text}")
# The 64 KiB payload went out as external data; it must come back whole.
string(REPEAT "x" 65536 big)
set(expected
  "(handshake = (protocolVersion = 1, clusterId = 12648430, senderId = 1, receiverId = 2, groupId = 7))"
  "(appendRequest = (term = 5, prevLogIndex = 100, prevLogTerm = 4, leaderCommit = 90, entries = "
  "(index = 101, term = 5, type = normal, payload = \"hello coraft\")"
  "(index = 102, term = 5, type = normal, payload = \"${big}\")"
  "(voteRequest = (term = 6, lastLogIndex = 102, lastLogTerm = 5, preVote = true, leadershipTransfer = false))"
  "(heartbeatRequest = (term = 6, leaderCommit = 101, readContext = 4242))"
  "(keepalive = void)")
foreach(line IN LISTS expected)
  string(FIND "${text}" "${line}" at)
  if(at EQUAL -1)
    string(SUBSTRING "${line}" 0 120 shown)
    message(FATAL_ERROR "capnp decode output lacks:\n  ${shown}\noutput:\n${text}")
  endif()
endforeach()
message(STATUS "capnp decode read every frame of the capture")
