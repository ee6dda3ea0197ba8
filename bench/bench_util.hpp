// Shared pieces of coraft-bench: flag parsing, latency statistics, JSON output.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace coraft::bench {

// Parses "--name value" and "--flag" arguments against a declared set. Unknown flags, missing
// values and malformed numbers are errors with a message naming the flag.
class Flags {
 public:
  // `spec` maps each accepted flag name (without "--") to whether it takes a value.
  Flags(std::map<std::string, bool, std::less<>> spec) : spec_(std::move(spec)) {}

  // Returns an error message, or an empty string on success.
  [[nodiscard]] std::string parse(int argc, char** argv);

  [[nodiscard]] bool has(std::string_view name) const { return values_.count(std::string(name)); }
  [[nodiscard]] std::string str(std::string_view name, std::string fallback) const;
  // Accepts plain integers and the suffixes k, m, g (×1024) for sizes: "64k", "1m".
  [[nodiscard]] std::uint64_t size(std::string_view name, std::uint64_t fallback) const;
  [[nodiscard]] double real(std::string_view name, double fallback) const;
  // Set when a size() or real() value was malformed; report it and exit.
  [[nodiscard]] const std::string& value_error() const { return value_error_; }

 private:
  std::map<std::string, bool, std::less<>> spec_;
  std::map<std::string, std::string> values_;
  mutable std::string value_error_;
};

// Reports a bad command line: prints "coraft-bench <command>: <message>" to stderr, then
// "usage: <usage>" when a usage line is given. Returns 2, the exit status for bad flags.
int flag_error(std::string_view command, std::string_view message, std::string_view usage = {});

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

// Builds one JSON object, printed as the last line of a --json run.
class JsonLine {
 public:
  JsonLine& num(std::string_view key, double v);
  JsonLine& str(std::string_view key, std::string_view v);
  [[nodiscard]] std::string text() const { return "{" + body_ + "}"; }
  // Prints text() and a newline on stdout.
  void print() const;

 private:
  void key(std::string_view k);
  std::string body_;
};

using Clock = std::chrono::steady_clock;

[[nodiscard]] inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace coraft::bench
