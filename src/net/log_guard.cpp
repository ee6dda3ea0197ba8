#include "net/log_guard.hpp"

#include <coraft/text.hpp>

namespace coraft::net {

std::string printable(std::string_view text, std::size_t bytes_max) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  std::size_t n = text.size() < bytes_max ? text.size() : bytes_max;
  out.reserve(n + 16);
  for (std::size_t i = 0; i < n; ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 0xf]);
    }
  }
  if (n < text.size()) out += detail::concat("...(", text.size() - n, " more bytes)");
  return out;
}

bool LogLimiter::allow(std::chrono::steady_clock::time_point now) {
  if (now - window_start_ >= window_) {
    window_start_ = now;
    lines_in_window_ = 0;
  }
  if (lines_in_window_ < lines_max_) {
    ++lines_in_window_;
    return true;
  }
  ++suppressed_;
  ++suppressed_total_;
  return false;
}

std::uint64_t LogLimiter::take_suppressed() noexcept {
  std::uint64_t n = suppressed_;
  suppressed_ = 0;
  return n;
}

std::string suppressed_note(std::uint64_t n) {
  if (n == 0) return {};
  return detail::concat(" (", n, " similar line", n == 1 ? "" : "s",
                        " suppressed before this one)");
}

}  // namespace coraft::net
