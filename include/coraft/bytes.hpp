// An immutable, shared view of bytes: the one way entry payloads travel through coraft.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

namespace coraft {

// Bytes is a view of immutable memory together with a reference to whatever keeps that memory
// alive: a received network frame, a block read from disk, or a caller's buffer. Copying a Bytes
// or slicing it never copies the bytes, only the reference, so a payload can travel from a
// socket buffer through the protocol core to the log writer untouched.
//
// Invariant: data() points into memory kept alive by the owner for as long as any Bytes
// sharing that owner exists; an empty Bytes may have no owner.
class Bytes {
 public:
  Bytes() noexcept = default;

  // Copies `data` into a new buffer owned by the result. This is the one copying constructor.
  [[nodiscard]] static Bytes copy_of(std::span<const std::byte> data);
  [[nodiscard]] static Bytes copy_of(std::string_view text);

  // Shares memory owned by `owner` without copying it.
  // Precondition: `data` lies inside memory that `owner` keeps alive and unchanged.
  [[nodiscard]] static Bytes wrap(std::shared_ptr<const void> owner,
                                  std::span<const std::byte> data) noexcept;

  // Takes ownership of a whole buffer, for example a std::string or std::vector<std::byte>.
  template <class Container>
  [[nodiscard]] static Bytes adopt(Container&& c) {
    auto owner = std::make_shared<const std::remove_cvref_t<Container>>(std::forward<Container>(c));
    auto bytes = std::as_bytes(std::span(owner->data(), owner->size()));
    return wrap(std::move(owner), bytes);
  }

  [[nodiscard]] const std::byte* data() const noexcept { return data_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] std::span<const std::byte> span() const noexcept { return {data_, size_}; }
  [[nodiscard]] std::string_view chars() const noexcept {
    return {reinterpret_cast<const char*>(data_), size_};
  }
  [[nodiscard]] std::byte operator[](std::size_t i) const noexcept { return data_[i]; }

  // A view of [offset, offset + length) sharing this view's owner.
  // Precondition: offset + length <= size().
  [[nodiscard]] Bytes slice(std::size_t offset, std::size_t length) const;
  [[nodiscard]] Bytes slice(std::size_t offset) const;

  // True when both views keep the same memory alive (not a comparison of contents).
  [[nodiscard]] bool shares_owner_with(const Bytes& other) const noexcept {
    return owner_ && owner_ == other.owner_;
  }
  // How many Bytes (and other holders) share this view's owner; 0 when there is none.
  [[nodiscard]] long owner_use_count() const noexcept { return owner_.use_count(); }

  // Compares contents.
  friend bool operator==(const Bytes& a, const Bytes& b) noexcept;

 private:
  std::shared_ptr<const void> owner_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace coraft
