// Small helpers over iovec arrays shared by the disk backends.
#pragma once

#include <sys/uio.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
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

// Copies `len` bytes of what `iov` describes, starting `skip` bytes in, to `out`.
// Precondition: skip + len <= iov_bytes(iov).
inline void copy_from_iov(std::span<const iovec> iov, std::size_t skip, std::byte* out,
                          std::size_t len) noexcept {
  for (const iovec& v : iov) {
    if (len == 0) return;
    if (skip >= v.iov_len) {
      skip -= v.iov_len;
      continue;
    }
    std::size_t n = std::min(v.iov_len - skip, len);
    std::memcpy(out, static_cast<const std::byte*>(v.iov_base) + skip, n);
    out += n;
    len -= n;
    skip = 0;
  }
}

}  // namespace coraft::storage
