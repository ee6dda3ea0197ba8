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

  [[nodiscard]] Index first() const { return parsed.open ? scan.header.first_index : parsed.first; }
  [[nodiscard]] Index last() const { return first() + scan.records.size() - 1; }
};

struct LogDirScan {
  std::vector<ScannedSegment> segments;  // holding data, by first index
  std::vector<std::string> unused;       // prepared, never written
  std::uint64_t max_seq = 0;             // highest open-N sequence number seen
  // The newest open segment's torn tail (file name, offset); a torn header is offset 0.
  std::optional<std::pair<std::string, std::uint64_t>> torn;
  bool torn_header = false;  // the torn segment's header itself is damaged: drop the file
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
};

// Scans every segment in `dir` without changing anything.
[[nodiscard]] Result<LogDirScan> scan_log_dir(const std::string& dir);

}  // namespace coraft::storage
