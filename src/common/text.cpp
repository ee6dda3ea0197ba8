#include <coraft/error.hpp>
#include <coraft/text.hpp>

#include <charconv>
#include <cstdio>

namespace coraft::detail {

Text& Text::add_signed(std::int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return add(std::string_view(buf, static_cast<std::size_t>(r.ptr - buf)));
}

Text& Text::add_unsigned(std::uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return add(std::string_view(buf, static_cast<std::size_t>(r.ptr - buf)));
}

Text& Text::add(double v) {
  char buf[32];
  int n = std::snprintf(buf, sizeof buf, "%.6g", v);
  return add(std::string_view(buf, n > 0 ? static_cast<std::size_t>(n) : 0));
}

Text& Text::add(const void* p) {
  char buf[24];
  int n = std::snprintf(buf, sizeof buf, "%p", p);
  return add(std::string_view(buf, n > 0 ? static_cast<std::size_t>(n) : 0));
}

Text& Text::add(const std::error_code& ec) {
  return add(ec.category().name()).add(':').add(ec.value()).add(" (").add(ec.message()).add(')');
}

Text& Text::add(const Error& e) {
  return add(e.message());
}

}  // namespace coraft::detail
