#include "bench_util.hpp"

#include <unistd.h>
#include <algorithm>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

namespace coraft::bench {

std::optional<std::uint64_t> parse_size(const std::string& s) {
  std::uint64_t v = 0;
  const char* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, v);
  if (ec != std::errc() || p == s.data()) return std::nullopt;
  int shift = 0;
  if (p + 1 == end) {
    switch (*p) {
      case 'k':
      case 'K': shift = 10; break;
      case 'm':
      case 'M': shift = 20; break;
      case 'g':
      case 'G': shift = 30; break;
      default: return std::nullopt;
    }
  } else if (p != end) {
    return std::nullopt;
  }
  if (shift > 0 && v > (UINT64_MAX >> shift)) return std::nullopt;
  return v << shift;
}

std::string self_path() {
  std::error_code ec;
  return std::filesystem::read_symlink("/proc/self/exe", ec).string();
}

int spawn_process(const std::vector<std::string>& args, int stdout_fd) {
  // The argument vector is built before fork: the child only redirects and execs.
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (stdout_fd >= 0) ::dup2(stdout_fd, 1);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

void Latencies::add(std::chrono::nanoseconds d) {
  ++seen_;
  sum_ns_ += static_cast<double>(d.count());
  sorted_ = false;
  if (ns_.size() < samples_max) {
    ns_.push_back(d.count());
    return;
  }
  // Reservoir sampling keeps a uniform sample in bounded memory.
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  std::uint64_t slot = rng_ % seen_;
  if (slot < samples_max) ns_[slot] = d.count();
}

double Latencies::percentile_us(double p) {
  if (ns_.empty()) return 0;
  if (!sorted_) {
    std::sort(ns_.begin(), ns_.end());
    sorted_ = true;
  }
  auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(ns_.size())));
  rank = std::clamp<std::size_t>(rank, 1, ns_.size());
  return static_cast<double>(ns_[rank - 1]) / 1000.0;
}

double Latencies::mean_us() const {
  return seen_ ? sum_ns_ / static_cast<double>(seen_) / 1000.0 : 0;
}

JsonLine::JsonLine()
    : j_(std::make_unique<nlohmann::ordered_json>(nlohmann::ordered_json::object())) {}
JsonLine::~JsonLine() = default;

JsonLine& JsonLine::num(std::string_view k, double v) {
  auto& slot = (*j_)[std::string(k)];
  if (!std::isfinite(v)) {
    slot = nullptr;
  } else if (v == std::floor(v) && std::fabs(v) < 9.0e15) {
    slot = static_cast<std::int64_t>(v);  // counts print as integers
  } else {
    slot = v;
  }
  return *this;
}

JsonLine& JsonLine::str(std::string_view k, std::string_view v) {
  (*j_)[std::string(k)] = std::string(v);
  return *this;
}

std::string JsonLine::text() const {
  return j_->dump();
}

void JsonLine::print() const {
  std::printf("%s\n", text().c_str());
}

}  // namespace coraft::bench
