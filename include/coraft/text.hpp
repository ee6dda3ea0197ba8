// A small text builder for assertion context and log lines, kept free of <iostream>.
#pragma once

#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

#include <coraft/types.hpp>

namespace coraft {
struct Error;
}

namespace coraft::detail {

class Text {
 public:
  Text& add(std::string_view s) {
    out_.append(s);
    return *this;
  }
  Text& add(const char* s) { return add(std::string_view(s ? s : "(null)")); }
  Text& add(const std::string& s) { return add(std::string_view(s)); }
  Text& add(char c) {
    out_.push_back(c);
    return *this;
  }
  Text& add(bool b) { return add(b ? std::string_view("true") : std::string_view("false")); }
  Text& add_signed(std::int64_t v);
  Text& add_unsigned(std::uint64_t v);
  Text& add(double v);
  Text& add(const void* p);
  Text& add(const std::error_code& ec);
  Text& add(const Error& e);

  template <class T>
  requires(std::integral<T> && !std::same_as<T, bool> && !std::same_as<T, char>) Text& add(T v) {
    if constexpr (std::is_signed_v<T>) {
      return add_signed(v);
    } else {
      return add_unsigned(v);
    }
  }
  template <class T>
  requires std::is_enum_v<T> Text& add(T v) {
    return add(static_cast<std::underlying_type_t<T>>(v));
  }
  template <class Tag, bool Counting>
  Text& add(Strong<Tag, Counting> v) {
    return add_unsigned(v.value());
  }

  [[nodiscard]] const std::string& str() const noexcept { return out_; }
  [[nodiscard]] std::string take() noexcept { return std::move(out_); }

 private:
  std::string out_;
};

// Concatenates the text forms of all arguments.
template <class... Args>
[[nodiscard]] std::string concat(const Args&... args) {
  Text t;
  (t.add(args), ...);
  return t.take();
}

}  // namespace coraft::detail
