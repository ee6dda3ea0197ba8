// Small helpers over iovec arrays shared by the disk backends.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <span>
#include <vector>

namespace coraft::storage {

[[nodiscard]] inline std::size_t iov_bytes(std::span<const iovec> iov) noexcept {
  std::size_t n = 0;
  for (const iovec& v : iov) n += v.iov_len;
  return n;
}

// Drops the first `n` bytes from `iov`. Precondition: n <= iov_bytes(iov).
inline void advance_iov(std::vector<iovec>& iov, std::size_t n) {
  std::size_t i = 0;
  while (i < iov.size() && n >= iov[i].iov_len) n -= iov[i++].iov_len;
  iov.erase(iov.begin(), iov.begin() + static_cast<std::ptrdiff_t>(i));
  if (!iov.empty() && n > 0) {
    iov[0].iov_base = static_cast<char*>(iov[0].iov_base) + n;
    iov[0].iov_len -= n;
  }
}

}  // namespace coraft::storage
