// The subcommands of coraft-bench. Each lives in its own file and returns a process exit code.
#pragma once

namespace coraft::bench {

struct Command {
  const char* name;
  const char* usage;
  int (*run)(int argc, char** argv);  // argv excludes the program and command names
};

}  // namespace coraft::bench
