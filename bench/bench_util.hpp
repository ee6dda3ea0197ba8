// Shared pieces of coraft-bench: latency statistics, JSON output.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace coraft::bench {

// "4096", "64k", "1m", "2g" (x1024 each); nullopt when malformed or past 2^64.
[[nodiscard]] std::optional<std::uint64_t> parse_size(const std::string& s);

// The path of the running coraft-bench, for starting more of it.
[[nodiscard]] std::string self_path();

// Starts `args` (args[0] is the program's path) in a child process, its standard output sent to
// `stdout_fd` when that is not -1. Returns the child's pid, or -1 when fork failed.
int spawn_process(const std::vector<std::string>& args, int stdout_fd = -1);

// Collects latency samples up to a fixed count (later samples replace random earlier ones, so
// the memory stays bounded however long the run) and reports percentiles.
class Latencies {
 public:
  static constexpr std::size_t samples_max = 1u << 20;

  void add(std::chrono::nanoseconds d);
  [[nodiscard]] std::size_t count() const { return seen_; }
  // p in [0, 100]; microseconds. 0 when empty.
  [[nodiscard]] double percentile_us(double p);
  [[nodiscard]] double mean_us() const;

 private:
  std::vector<std::int64_t> ns_;
  std::uint64_t seen_ = 0;
  double sum_ns_ = 0;
  bool sorted_ = false;
  std::uint64_t rng_ = 0x9e3779b97f4a7c15ull;
};

// Builds one JSON object, printed as the last line of a --json run. Keys keep their order;
// whole numbers print as integers.
class JsonLine {
 public:
  JsonLine();
  ~JsonLine();
  JsonLine(const JsonLine&) = delete;
  JsonLine& operator=(const JsonLine&) = delete;
  JsonLine& num(std::string_view key, double v);
  JsonLine& str(std::string_view key, std::string_view v);
  [[nodiscard]] std::string text() const;
  // Prints text() and a newline on stdout.
  void print() const;

 private:
  std::unique_ptr<nlohmann::ordered_json> j_;
};

using Clock = std::chrono::steady_clock;

[[nodiscard]] inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace coraft::bench
