// coraft-bench: latency and throughput figures, each printed beside the machine's own limits
// measured in the same run.
#include <cstdio>
#include <cstring>

#include "commands.hpp"

namespace coraft::bench {
// Defined by each subcommand's file; listed in `commands` below.
int run_core(int argc, char** argv);
int run_net(int argc, char** argv);
int run_log(int argc, char** argv);
int run_node(int argc, char** argv);
}  // namespace coraft::bench

using coraft::bench::Command;

namespace {

const Command commands[] = {
    {"core", "core --payload BYTES [--nodes N] [--seconds T] [--json]", coraft::bench::run_core},
    {"net", "net --payload BYTES --entries N [--seconds T] [--json]", coraft::bench::run_net},
    {"log", "log --payload BYTES --inflight C [--seconds T] [--dir DIR] [--json]",
     coraft::bench::run_log},
    {"node", "node --payload BYTES --outstanding N [--nodes N] [--seconds T] [--dir DIR] [--json]",
     coraft::bench::run_node},
    {nullptr, nullptr, nullptr},
};

int usage(FILE* out) {
  std::fprintf(out, "usage: coraft-bench COMMAND [flags]\n\ncommands:\n");
  for (const Command& c : commands) {
    if (c.name) std::fprintf(out, "  %s\n", c.usage);
  }
  return out == stderr ? 2 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage(stderr);
  if (!std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) return usage(stdout);
  for (const Command& c : commands) {
    if (c.name && !std::strcmp(c.name, argv[1])) return c.run(argc - 2, argv + 2);
  }
  std::fprintf(stderr, "coraft-bench: unknown command '%s'\n", argv[1]);
  return usage(stderr);
}
