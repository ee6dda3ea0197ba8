// Recovery of the segmented log on open: the rules are specified in format.hpp (RECOVERY).
#include <algorithm>

#include <coraft/log.hpp>

#include "storage/segmented_log_impl.hpp"

namespace coraft::storage {
namespace {

struct Found {
  std::string name;
  SegmentName parsed;
  SegmentScan scan;
  bool tail_dirty = false;  // nonzero bytes follow the end of the data

  [[nodiscard]] Index first() const { return parsed.open ? scan.header.first_index : parsed.first; }
};

bool zero_from(std::span<const std::byte> f, std::uint64_t from) {
  for (std::uint64_t i = from; i < f.size(); ++i) {
    if (f[i] != std::byte{0}) return false;
  }
  return true;
}

std::string where(const std::string& path, std::uint64_t offset) {
  return path + " offset " + std::to_string(offset);
}

}  // namespace

// Scans every segment file, orders and checks them, cuts a torn tail, applies repair if asked,
// closes the open segments and deletes unused prepared ones. Fills `segments`.
Result<void> SegmentedLog::Impl::recover() {
  auto names = list_dir(opt.dir);
  if (!names) return names.error();
  std::vector<Found> used;
  std::vector<std::string> unused;
  std::optional<std::pair<std::string, std::uint64_t>> headerless;  // open segment, bad header
  for (const std::string& name : *names) {
    auto parsed = parse_segment_name(name);
    if (!parsed) continue;
    if (parsed->open) next_seq = std::max(next_seq, parsed->seq + 1);
    auto file = MappedFile::open(path(name));
    if (!file) return file.error();
    Found f{name, *parsed,
            scan_segment(file->bytes(), parsed->open ? Index(0) : parsed->last,
                         record_payload_bytes_limit)};
    if (f.scan.unused) {
      unused.push_back(name);
      continue;
    }
    if (!f.scan.header_ok) {
      if (!parsed->open) {
        return Error(Errc::storage_corrupt, where(path(name), 0) + ": " + *f.scan.problem);
      }
      if (!headerless || headerless->second < parsed->seq) headerless.emplace(name, parsed->seq);
      continue;
    }
    if (parsed->open) {
      f.tail_dirty = f.scan.problem || !zero_from(file->bytes(), f.scan.end_offset);
      if (f.tail_dirty) scan_beyond_tear_window(file->bytes(), f.scan, record_payload_bytes_limit);
    } else if (f.scan.header.first_index != parsed->first) {
      return Error(Errc::storage_corrupt, where(path(name), 16) + ": header first index " +
                                              std::to_string(f.scan.header.first_index.value()) +
                                              " differs from the name");
    }
    used.push_back(std::move(f));
  }
  std::sort(used.begin(), used.end(), [](const Found& a, const Found& b) { return a.first() < b.first(); });
  std::uint64_t newest_open_seq = 0;
  for (const Found& f : used) {
    if (f.parsed.open) newest_open_seq = std::max(newest_open_seq, f.parsed.seq);
  }
  if (headerless) {
    if (headerless->second < newest_open_seq) {
      return Error(Errc::storage_corrupt, where(path(headerless->first), 0) + ": bad segment header");
    }
    report.torn_file = path(headerless->first);
    report.torn_offset = 0;
    log(LogLevel::warn, "storage: torn segment header cut off: ", where(*report.torn_file, 0));
    if (auto r = remove_file(*report.torn_file); !r) return r;
  }

  // Find the first damage that is not a torn tail.
  std::optional<std::size_t> bad_at;
  std::uint64_t bad_offset = 0;
  std::string bad_why;
  for (std::size_t k = 0; k < used.size() && !bad_at; ++k) {
    Found& f = used[k];
    bool last = k + 1 == used.size();
    if (k > 0) {
      Index expect = used[k - 1].first() + used[k - 1].scan.records.size();
      if (f.first() != expect) {
        bad_at = k;
        bad_why = "segment starts at index " + std::to_string(f.first().value()) + " but " +
                  std::to_string(expect.value()) + " was expected (a segment is missing or stale)";
        break;
      }
    }
    if (!f.parsed.open || !f.tail_dirty) {
      if (f.scan.problem) {
        bad_at = k;
        bad_offset = f.scan.problem_offset;
        bad_why = *f.scan.problem;
      }
      continue;
    }
    std::uint64_t x = f.scan.problem ? f.scan.problem_offset : f.scan.end_offset;
    std::string what = f.scan.problem ? *f.scan.problem : "nonzero bytes after the end of the data";
    if (!last) {
      bad_at = k;
      bad_offset = x;
      bad_why = what + " in a segment that is not the newest";
    } else if (f.scan.later_record_offset) {
      bad_at = k;
      bad_offset = x;
      bad_why = what + ", yet a valid later record follows at offset " +
                std::to_string(*f.scan.later_record_offset);
    } else {
      report.torn_file = path(f.name);
      report.torn_offset = x;
      log(LogLevel::warn, "storage: torn tail cut off: ", where(path(f.name), x), " (", what, ")");
      if (auto r = truncate_file(path(f.name), x); !r) return r;
    }
  }
  if (bad_at) {
    std::string msg = where(path(used[*bad_at].name), bad_offset) + ": " + bad_why;
    if (!opt.repair) return Error(Errc::storage_corrupt, msg);
    report.repaired = msg;
    log(LogLevel::warn, "storage: repair cuts the log at ", msg);
    std::size_t keep_upto = *bad_at;  // segments before this one are kept whole
    Found& f = used[keep_upto];
    bool gap = keep_upto > 0 && f.first() != used[keep_upto - 1].first() + used[keep_upto - 1].scan.records.size();
    for (std::size_t k = used.size(); k-- > keep_upto + (gap ? 0 : 1);) {
      if (auto r = remove_file(path(used[k].name)); !r) return r;
      used.pop_back();
    }
    if (!gap) {
      if (auto r = truncate_file(path(f.name), bad_offset); !r) return r;
      f.parsed.open = true;  // closed below under its true last index
    }
  }

  // Close every open segment under its real name; drop the empty and unused ones.
  for (Found& f : used) {
    if (!f.parsed.open && !(report.repaired && &f == &used.back())) continue;
    if (f.scan.records.empty()) {
      if (auto r = remove_file(path(f.name)); !r) return r;
      f.name.clear();
      continue;
    }
    std::string closed = closed_segment_name(f.first(), f.scan.records.back().index);
    if (closed != f.name) {
      if (auto r = rename_file(path(f.name), path(closed)); !r) return r;
      f.name = closed;
    }
  }
  for (const std::string& name : unused) {
    if (auto r = remove_file(path(name)); !r) return r;
  }
  if (auto r = fsync_dir(opt.dir); !r) return r;

  for (Found& f : used) {
    if (f.name.empty()) continue;
    Segment s;
    s.name = f.name;
    s.first = f.first();
    s.end = f.scan.end_offset;
    s.recs.reserve(f.scan.records.size());
    for (const RecordInfo& ri : f.scan.records) s.recs.push_back({ri.offset, ri.term, ri.length, ri.type});
    segments.push_back(std::move(s));
  }
  report.segments = segments.size();
  if (!segments.empty()) {
    first_index = segments.front().first;
    last_index = segments.back().last();
  }
  return {};
}

}  // namespace coraft::storage
