#include <coraft/assert.hpp>
#include <coraft/bytes.hpp>

#include <cstring>

namespace coraft {

Bytes Bytes::copy_of(std::span<const std::byte> data) {
  if (data.empty()) return {};
  // One allocation holds the bytes; the shared_ptr's control block is the only other one.
  std::shared_ptr<std::byte[]> buf(new std::byte[data.size()]);
  std::memcpy(buf.get(), data.data(), data.size());
  const std::byte* p = buf.get();
  return wrap(std::move(buf), {p, data.size()});
}

Bytes Bytes::copy_of(std::string_view text) {
  return copy_of(std::as_bytes(std::span(text.data(), text.size())));
}

Bytes Bytes::wrap(std::shared_ptr<const void> owner, std::span<const std::byte> data) noexcept {
  Bytes b;
  b.owner_ = std::move(owner);
  b.data_ = data.data();
  b.size_ = data.size();
  return b;
}

Bytes Bytes::slice(std::size_t offset, std::size_t length) const {
  CORAFT_REQUIRE(offset <= size_ && length <= size_ - offset, "slice out of range", offset, length,
                 size_);
  Bytes b;
  b.owner_ = owner_;
  b.data_ = data_ + offset;
  b.size_ = length;
  return b;
}

Bytes Bytes::slice(std::size_t offset) const {
  CORAFT_REQUIRE(offset <= size_, "slice out of range", offset, size_);
  return slice(offset, size_ - offset);
}

bool operator==(const Bytes& a, const Bytes& b) noexcept {
  if (a.size_ != b.size_) return false;
  if (a.data_ == b.data_ || a.size_ == 0) return true;
  return std::memcmp(a.data_, b.data_, a.size_) == 0;
}

}  // namespace coraft
