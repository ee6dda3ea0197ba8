// The subcommands of coraft-bench: the options each takes, parsed and checked by main.cpp (the
// one file that includes the command-line library), and the function that runs it. Each run
// function lives in its own file and returns a process exit code.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace coraft::bench {

struct CoreOptions {
  std::uint64_t payload = 0;
  std::uint64_t nodes = 3;
  double seconds = 3;
  bool json = false;
};
int run_core(const CoreOptions& o);

struct NetOptions {
  std::uint64_t payload = 256;
  std::uint64_t entries = 64;
  double seconds = 5;
  bool json = false;
};
int run_net(const NetOptions& o);

struct LogOptions {
  std::uint64_t payload = 0;
  std::uint64_t inflight = 0;
  double seconds = 5;
  std::string dir = "coraft-bench-log";
  bool json = false;
  std::string prepare = "prewrite";  // prewrite | fallocate
  std::string backend = "auto";      // auto | uring | thread
  std::uint64_t segment_bytes = 64ull << 20;
  std::uint64_t direct_bytes = 16ull << 20;
  std::string direct_sync = "dsync";  // dsync | fdatasync
  bool all_floors = false;
};
int run_log(const LogOptions& o);

struct ClusterOptions {
  std::uint64_t nodes = 3;
  std::uint64_t payload = 256;
  std::uint64_t inflight = 64;
  double warmup = 2;
  double seconds = 8;
  std::string dir = "/tmp";  // the data directories go in a fresh directory under it
  bool json = false;
  bool processes = false;         // each server in its own process
  bool one_thread = false;        // all in-process servers on one io thread
  bool apply_inline = false;      // NodeConfig::apply_inline
  double disk_floor_seconds = 0;  // after the run, the shared-disk floor for this long (0: not)
};
int run_cluster(const ClusterOptions& o);

// One 4 KiB durable write (O_DIRECT, RWF_DSYNC) alone, and one per server started together
// until a majority is durable: what a commit waits for when the servers share one disk.
struct DiskFloor {
  double alone_p50_us = 0;
  double majority_p50_us = 0;
  double majority_p99_us = 0;
};
// Nullopt, with `why` set, when a file cannot be made or written.
std::optional<DiskFloor> measure_disk_floor(const std::string& dir, std::size_t servers,
                                            double seconds, std::string& why);

// One server of `cluster --processes`, run by it in a child process until SIGTERM.
struct ClusterServerOptions {
  std::uint64_t id = 0;
  std::string dir;
  std::uint16_t port = 0;
  std::uint32_t election_ticks = 10;
  bool apply_inline = false;
  std::vector<std::pair<std::uint64_t, std::uint16_t>> peers;  // id, port on 127.0.0.1
};
int run_cluster_server(const ClusterServerOptions& o);

// `cluster --matrix`: every cell of the peers' matrix, each in a child process.
struct MatrixOptions {
  ClusterOptions cell;  // warm-up, window, directory and process mode of every cell
  std::string out = "bench/results";
  bool quick = false;  // one size and one concurrency: a check that the matrix machinery works
};
int run_matrix(const MatrixOptions& o);

struct SnapshotOptions {
  std::uint64_t bytes = 64ull << 20;
  std::uint64_t chunk = 1ull << 20;  // NodeConfig::snapshot_chunk_bytes
  std::uint64_t window = 4;          // NodeConfig::snapshot_window_chunks
  std::string dir = "/tmp";          // the data directories go in a fresh directory under it
  bool json = false;
};
int run_snapshot(const SnapshotOptions& o);

}  // namespace coraft::bench
