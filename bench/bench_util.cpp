#include "bench_util.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace coraft::bench {

std::string Flags::parse(int argc, char** argv) {
  for (int i = 0; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a.substr(0, 2) != "--") return "unexpected argument '" + std::string(a) + "'";
    std::string name(a.substr(2));
    std::string value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
      auto it = spec_.find(name);
      if (it == spec_.end()) return "unknown flag --" + name;
      if (!it->second) return "flag --" + name + " takes no value";
    } else {
      auto it = spec_.find(name);
      if (it == spec_.end()) return "unknown flag --" + name;
      if (it->second) {
        if (i + 1 >= argc) return "flag --" + name + " needs a value";
        value = argv[++i];
      }
    }
    values_[name] = value;
  }
  return {};
}

std::string Flags::str(std::string_view name, std::string fallback) const {
  auto it = values_.find(std::string(name));
  return it == values_.end() ? fallback : it->second;
}

std::uint64_t Flags::size(std::string_view name, std::uint64_t fallback) const {
  auto it = values_.find(std::string(name));
  if (it == values_.end()) return fallback;
  const std::string& s = it->second;
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  std::uint64_t mult = 1;
  if (ec == std::errc() && p != s.data() + s.size() && p + 1 == s.data() + s.size()) {
    switch (*p) {
      case 'k':
      case 'K':
        mult = 1ull << 10;
        ++p;
        break;
      case 'm':
      case 'M':
        mult = 1ull << 20;
        ++p;
        break;
      case 'g':
      case 'G':
        mult = 1ull << 30;
        ++p;
        break;
      default: break;
    }
  }
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) {
    value_error_ = "flag --" + std::string(name) + ": '" + s + "' is not a size";
    return fallback;
  }
  return v * mult;
}

double Flags::real(std::string_view name, double fallback) const {
  auto it = values_.find(std::string(name));
  if (it == values_.end()) return fallback;
  char* end = nullptr;
  double v = std::strtod(it->second.c_str(), &end);
  if (it->second.empty() || *end != '\0' || !std::isfinite(v) || v < 0) {
    value_error_ = "flag --" + std::string(name) + ": '" + it->second + "' is not a number";
    return fallback;
  }
  return v;
}

int flag_error(std::string_view command, std::string_view message, std::string_view usage) {
  std::string text = "coraft-bench " + std::string(command) + ": " + std::string(message) + "\n";
  if (!usage.empty()) text += "usage: " + std::string(usage) + "\n";
  std::fputs(text.c_str(), stderr);
  return 2;
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

void JsonLine::key(std::string_view k) {
  if (!body_.empty()) body_ += ',';
  body_ += '"';
  body_ += k;
  body_ += "\":";
}

JsonLine& JsonLine::num(std::string_view k, double v) {
  key(k);
  char buf[40];
  int n = std::isfinite(v) ? std::snprintf(buf, sizeof buf, "%.6g", v)
                           : std::snprintf(buf, sizeof buf, "null");
  body_.append(buf, static_cast<std::size_t>(n));
  return *this;
}

void JsonLine::print() const {
  std::printf("%s\n", text().c_str());
}

JsonLine& JsonLine::str(std::string_view k, std::string_view v) {
  key(k);
  body_ += '"';
  for (char c : v) {
    if (c == '"' || c == '\\') body_ += '\\';
    body_ += c;
  }
  body_ += '"';
  return *this;
}

}  // namespace coraft::bench
