// Library logging: one process-wide sink the application may replace.
#pragma once

#include <functional>
#include <string_view>

#include <coraft/text.hpp>

namespace coraft {

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3, off = 4 };

// The sink receives complete lines without a trailing newline. The default writes
// "coraft LEVEL: line" to stderr, with control characters written as \xNN. Passing an empty
// function restores the default.
// Set these before starting nodes: they are not synchronised with running nodes.
void set_log_sink(std::function<void(LogLevel, std::string_view)> sink);
void set_log_level(LogLevel min_level);
[[nodiscard]] bool log_enabled(LogLevel level) noexcept;
[[nodiscard]] std::string_view to_string(LogLevel level) noexcept;

namespace detail {
void emit_log(LogLevel level, std::string_view line);
}

// log(LogLevel::warn, "segment ", path, " truncated at offset ", offset);
template <class... Args>
void log(LogLevel level, const Args&... args) {
  if (!log_enabled(level)) return;
  detail::emit_log(level, detail::concat(args...));
}

}  // namespace coraft
