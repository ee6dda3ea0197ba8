// Assertions that stay on in release builds and print the values they were given.
//
//   CORAFT_ASSERT(cond, context...)   a broken invariant: a bug in coraft itself.
//   CORAFT_REQUIRE(cond, context...)  a broken precondition: a bug in the caller.
//
// Both print the condition, the source location and each context expression with its value,
// then abort. Context arguments may be integers, strings, enums, coraft ids or error values.
// A string literal among them is printed as a plain message.
#pragma once

#include <coraft/text.hpp>

namespace coraft::detail {

class Failure {
 public:
  Failure(const char* kind, const char* condition, const char* file, int line,
          const char* context_names) noexcept;

  template <class... Args>
  Failure& values(const Args&... args) {
    (value_text_.emplace_back(Text().add(args).take()), ...);
    return *this;
  }

  [[noreturn]] void abort() noexcept;

 private:
  const char* kind_;
  const char* condition_;
  const char* file_;
  int line_;
  const char* context_names_;
  struct Values {
    std::string items[8];
    int count = 0;
    void emplace_back(std::string s) {
      if (count < 8) items[count++] = std::move(s);
    }
  } value_text_;
};

// Called by Result<T>::value() on an error: a caller's bug, reported with the error's text.
[[noreturn]] void fail_on_error(const Error& e) noexcept;

}  // namespace coraft::detail

#define CORAFT_DETAIL_CHECK(kind, cond, ...)                                                    \
  do {                                                                                          \
    if (!(cond)) [[unlikely]] {                                                                 \
      ::coraft::detail::Failure coraft_failure_(kind, #cond, __FILE__, __LINE__, #__VA_ARGS__); \
      __VA_OPT__(coraft_failure_.values(__VA_ARGS__);)                                          \
      coraft_failure_.abort();                                                                  \
    }                                                                                           \
  } while (false)

#define CORAFT_ASSERT(cond, ...) CORAFT_DETAIL_CHECK("assertion failed", cond, __VA_ARGS__)
#define CORAFT_REQUIRE(cond, ...) CORAFT_DETAIL_CHECK("precondition violated", cond, __VA_ARGS__)
