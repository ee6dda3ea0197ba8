#include <coraft/log.hpp>

#include <atomic>
#include <cstdio>
#include <string>

namespace coraft {
namespace {

std::atomic<int> min_level{static_cast<int>(LogLevel::info)};

std::function<void(LogLevel, std::string_view)>& sink() {
  static std::function<void(LogLevel, std::string_view)> s;
  return s;
}

}  // namespace

void set_log_sink(std::function<void(LogLevel, std::string_view)> s) {
  sink() = std::move(s);
}

void set_log_level(LogLevel level) {
  min_level.store(static_cast<int>(level));
}

bool log_enabled(LogLevel level) noexcept {
  return level != LogLevel::off &&
         static_cast<int>(level) >= min_level.load(std::memory_order_relaxed);
}

std::string_view to_string(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warn: return "warn";
    case LogLevel::error: return "error";
    case LogLevel::off: return "off";
  }
  return "?";
}

namespace detail {

void emit_log(LogLevel level, std::string_view line) {
  if (auto& s = sink()) {
    s(level, line);
    return;
  }
  std::string out = "coraft ";
  out.append(to_string(level)).append(": ");
  // One line per call, whatever the text holds: control characters (a newline, an escape
  // sequence) are written as \xNN, so text from outside cannot forge or hide lines.
  for (char c : line) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      static constexpr char hex[] = "0123456789abcdef";
      out += "\\x";
      out.push_back(hex[u >> 4]);
      out.push_back(hex[u & 0xf]);
    } else {
      out.push_back(c);
    }
  }
  out.push_back('\n');
  std::fwrite(out.data(), 1, out.size(), stderr);
}

}  // namespace detail
}  // namespace coraft
