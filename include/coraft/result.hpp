// Result<T>: a value or an Error, for operations whose failure is a normal outcome.
#pragma once

#include <type_traits>
#include <utility>
#include <variant>

#include <coraft/assert.hpp>
#include <coraft/error.hpp>

namespace coraft {

template <class T>
class [[nodiscard]] Result {
  static_assert(!std::is_reference_v<T>, "Result holds values");
  static_assert(!std::is_same_v<std::remove_cv_t<T>, Error>, "Result<Error> is ambiguous");

 public:
  Result(const T& v) : v_(std::in_place_index<0>, v) {}          // NOLINT: implicit
  Result(T&& v) : v_(std::in_place_index<0>, std::move(v)) {}    // NOLINT: implicit
  Result(Error e) : v_(std::in_place_index<1>, std::move(e)) {}  // NOLINT: implicit
  Result(Errc e) : v_(std::in_place_index<1>, Error(e)) {}       // NOLINT: implicit

  [[nodiscard]] bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  // Precondition: ok().
  [[nodiscard]] T& value() & {
    require_ok();
    return *std::get_if<0>(&v_);
  }
  [[nodiscard]] const T& value() const& {
    require_ok();
    return *std::get_if<0>(&v_);
  }
  [[nodiscard]] T&& value() && {
    require_ok();
    return std::move(*std::get_if<0>(&v_));
  }
  [[nodiscard]] T& operator*() & { return value(); }
  [[nodiscard]] const T& operator*() const& { return value(); }
  [[nodiscard]] T* operator->() { return &value(); }
  [[nodiscard]] const T* operator->() const { return &value(); }

  template <class U>
  [[nodiscard]] T value_or(U&& fallback) const& {
    return ok() ? *std::get_if<0>(&v_) : static_cast<T>(std::forward<U>(fallback));
  }

  // Precondition: !ok().
  [[nodiscard]] const Error& error() const& {
    CORAFT_REQUIRE(!ok(), "error() called on a Result holding a value");
    return *std::get_if<1>(&v_);
  }
  [[nodiscard]] Error&& error() && {
    CORAFT_REQUIRE(!ok(), "error() called on a Result holding a value");
    return std::move(*std::get_if<1>(&v_));
  }

 private:
  void require_ok() const {
    if (!ok()) detail::fail_on_error(*std::get_if<1>(&v_));
  }
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error e) : err_(std::move(e)), failed_(true) {}  // NOLINT: implicit
  Result(Errc e) : err_(e), failed_(true) {}              // NOLINT: implicit

  [[nodiscard]] bool ok() const noexcept { return !failed_; }
  explicit operator bool() const noexcept { return ok(); }
  void value() const {
    if (failed_) detail::fail_on_error(err_);
  }
  [[nodiscard]] const Error& error() const& {
    CORAFT_REQUIRE(failed_, "error() called on a successful Result");
    return err_;
  }

 private:
  Error err_;
  bool failed_ = false;
};

}  // namespace coraft
