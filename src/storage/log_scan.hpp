// A read-only check of a whole log directory, following the RECOVERY rules of format.hpp.
// Recovery acts on its findings; coraft-inspect reports them.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <coraft/result.hpp>

#include "storage/format.hpp"

namespace coraft::storage {

struct ScannedSegment {
  std::string name;
  SegmentName parsed;
  SegmentScan scan;
  bool tail_dirty = false;  // open segments: nonzero bytes follow the end of the data
  TailJudgement tail;       // when tail_dirty: whether the tail can be a torn batch

  [[nodiscard]] Index first() const { return parsed.open ? scan.header.first_index : parsed.first; }
  [[nodiscard]] Index last() const { return first() + scan.records.size() - 1; }
};

struct LogDirScan {
  std::vector<ScannedSegment> segments;  // holding data, by first index
  std::vector<std::string> unused;       // prepared, never written
  std::uint64_t max_seq = 0;             // highest open-N sequence number seen
  // The newest open segment's torn tail (file name, offset); a torn header is offset 0.
  std::optional<std::pair<std::string, std::uint64_t>> torn;
  bool torn_header = false;  // the torn segment's header is zero: drop the file
  Index torn_first;          // the index the first record cut off would have had
  // The first damage that is not a torn tail: the position in `segments` it is found at (equal
  // to segments.size() for a damaged header of a file not listed there), file, offset and why.
  struct Bad {
    std::size_t at = 0;
    std::string name;
    std::uint64_t offset = 0;
    std::string why;
    bool gap = false;  // segment `at` does not continue the one before it
  };
  std::optional<Bad> bad;
  std::optional<LogExtent> extent;  // the extent file, when present and valid
};

// Scans every segment in `dir` without changing anything. `tear_window_bytes` bounds a torn
// first batch of a segment whose header is zero when no other segment's header gives the
// writer's tear window.
// Damage found by the checks against the extent file (format.hpp, EXTENT FILE) is reported in
// `bad` unless `check_extent` is false.
[[nodiscard]] Result<LogDirScan> scan_log_dir(const std::string& dir,
                                              std::uint32_t tear_window_bytes = 16u << 20,
                                              bool check_extent = true);

// Replaces dir/extent durably (written as extent.tmp, synced, renamed, directory synced).
[[nodiscard]] Result<void> write_extent_file(const std::string& dir, const LogExtent& e);

}  // namespace coraft::storage
