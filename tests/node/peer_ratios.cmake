# bench/peer_ratios.py over a fixed run-all.sh result: the ratio row of the one clean cell, the
# contaminated and failed results left out, and clear failures for a missing file and no file.
# -DPYTHON=python3 -DSCRIPT=bench/peer_ratios.py -DFIXTURE=tests/node/peer_ratios_fixture.jsonl
function(run_script expect_rc)
  execute_process(COMMAND ${PYTHON} ${SCRIPT} ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                  ERROR_VARIABLE err)
  if(NOT rc EQUAL expect_rc)
    message(FATAL_ERROR "peer_ratios.py ${ARGN}: exit ${rc}, expected ${expect_rc}\n${out}${err}")
  endif()
  set(out "${out}" PARENT_SCOPE)
  set(err "${err}" PARENT_SCOPE)
endfunction()

run_script(0 ${FIXTURE})
# etcd's cell is contaminated and so not the best peer; hashicorp spent the least CPU.
set(row "| 3 | 16 | 64 | 100,000 | canonical-raft-nosnap (40,000) | 2.50x | 400 / 900 | 8.0 | 10.0 (hashicorp-raft) |")
string(FIND "${out}" "${row}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "the ratio row is missing or wrong:\n${out}")
endif()
# The cell where coraft exited 127 has no row.
string(FIND "${out}" "| 3 | 256 | 1 |" failed_row)
if(NOT failed_row EQUAL -1)
  message(FATAL_ERROR "a failed cell got a row:\n${out}")
endif()
run_script(1 ${FIXTURE}.missing)
if(NOT err MATCHES "cannot read")
  message(FATAL_ERROR "no clear error for a missing file: ${err}")
endif()
run_script(2)
