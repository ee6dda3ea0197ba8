// The hard state (current term and vote), stored durably and atomically.
//
// FILE FORMAT ("hardstate" in the log directory): two slots of 512 bytes, at offsets 0 and 512.
// A slot is:
//   0   8  magic "coraftHS"
//   8   8  version: one more than the version of the save before it
//   16  8  current term
//   24  8  voted for (0: nobody)
//   32  4  CRC32C of bytes 0..63 computed with this field zero
//   36 28  zero
//   ..     zero up to 512
// A save writes the slot not holding the newest version, then fdatasyncs. A crash during a save
// can only damage that slot, so the other still holds the previous state. On open the valid slot
// with the higher version wins; a damaged slot beside a valid one is reported; two all-zero slots
// mean a fresh node; no valid slot but a nonzero one is corruption, named with file and offset.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <coraft/result.hpp>
#include <coraft/types.hpp>

#include "storage/file_util.hpp"

namespace coraft::storage {

struct HardState {
  Term term;
  NodeId voted_for;
  friend bool operator==(const HardState&, const HardState&) = default;
};

class HardStateFile {
 public:
  static constexpr std::uint64_t slot_bytes = 512;

  // Opens dir/hardstate, creating it (durably) when missing unless `read_only`.
  [[nodiscard]] static Result<HardStateFile> open(const std::string& dir, bool read_only = false);

  [[nodiscard]] const HardState& current() const noexcept { return current_; }
  // The offset of a damaged slot found on open beside a valid one.
  [[nodiscard]] std::optional<std::uint64_t> damaged_slot() const noexcept { return damaged_; }
  [[nodiscard]] const std::string& path() const noexcept { return path_; }

  // Writes `hs` durably (pwrite + fdatasync; blocks for one sync).
  [[nodiscard]] Result<void> save(const HardState& hs);

 private:
  HardStateFile() = default;
  std::string path_;
  Fd fd_;
  HardState current_;
  std::uint64_t version_ = 0;
  std::uint64_t slot_ = 1;  // the slot holding `version_`
  std::optional<std::uint64_t> damaged_;
};

}  // namespace coraft::storage
