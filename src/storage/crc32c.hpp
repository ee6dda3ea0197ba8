// CRC32C (Castagnoli), the checksum of every record, segment header, hard-state slot and
// snapshot in the storage module.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace coraft::storage {

// Extends `crc` (0 to start) over `data`. Uses the SSE4.2 instruction when the CPU has it and a
// table otherwise; both give the same values (RFC 3720 test vectors hold).
[[nodiscard]] std::uint32_t crc32c_extend(std::uint32_t crc,
                                          std::span<const std::byte> data) noexcept;

[[nodiscard]] inline std::uint32_t crc32c(std::span<const std::byte> data) noexcept {
  return crc32c_extend(0, data);
}

}  // namespace coraft::storage
