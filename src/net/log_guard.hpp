// Keeping the log readable and bounded when the network is hostile: peer-supplied text is
// escaped and cut short before it is logged, and lines a stranger can provoke at will are
// rate-limited with a count of what was left out.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace coraft::net {

// The longest peer-supplied text logged, in bytes of input (escapes make the output longer).
inline constexpr std::size_t logged_text_bytes_max = 200;
// The same for a whole error text that may quote peer-supplied parts.
inline constexpr std::size_t logged_line_text_max = 400;

// `text` with every byte outside printable ASCII written as \xNN (so it can neither break a
// line nor carry a terminal escape sequence), cut after `bytes_max` input bytes with
// "...(N more bytes)" appended. Applying it twice changes nothing more (backslashes stay).
[[nodiscard]] std::string printable(std::string_view text,
                                    std::size_t bytes_max = logged_text_bytes_max);

// At most `lines_max` lines per `window`; the rest are counted as suppressed.
class LogLimiter {
 public:
  LogLimiter(std::uint32_t lines_max, std::chrono::milliseconds window)
      : lines_max_(lines_max), window_(window) {}

  // True when a line may be logged at `now`; otherwise counts it as suppressed.
  [[nodiscard]] bool allow(std::chrono::steady_clock::time_point now);
  // The lines suppressed since this was last called, and resets the count.
  [[nodiscard]] std::uint64_t take_suppressed() noexcept;
  [[nodiscard]] std::uint64_t suppressed_total() const noexcept { return suppressed_total_; }

 private:
  std::uint32_t lines_max_;
  std::chrono::milliseconds window_;
  std::chrono::steady_clock::time_point window_start_{};
  std::uint32_t lines_in_window_ = 0;
  std::uint64_t suppressed_ = 0;
  std::uint64_t suppressed_total_ = 0;
};

// " (N similar lines suppressed)" when `n` is non-zero, else empty: for the end of a line.
[[nodiscard]] std::string suppressed_note(std::uint64_t n);

}  // namespace coraft::net
