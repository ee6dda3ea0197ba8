// Processes and ports for the tests that run coraft-counter as real processes.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace coraft::test {

// A free TCP port on 127.0.0.1 (free when asked; another process may take it after).
[[nodiscard]] std::uint16_t free_port();

struct Ran {
  int status = -1;  // the exit status, or -1 when it did not exit normally
  std::string out;  // what it printed on stdout
};
// Runs a shell command to completion.
[[nodiscard]] Ran run_command(const std::string& command);

// Starts `args` (args[0] is the program's path) with stdout and stderr appended to `log`, and
// with no other descriptor of this process: a child holding a copy of one of this process's
// sockets would keep that connection open after this process closed it. Returns the pid, or
// -1 when fork failed.
[[nodiscard]] pid_t spawn(const std::vector<std::string>& args, const std::string& log);

// The exit status of `pid` once it ends within `limit`; -1 if it had to be killed (SIGKILL) or
// did not exit normally.
int wait_for_exit(pid_t pid, std::chrono::milliseconds limit);

}  // namespace coraft::test
