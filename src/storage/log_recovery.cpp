// Recovery of the segmented log on open: the rules are specified in format.hpp (RECOVERY).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>

#include <coraft/log.hpp>

#include "storage/log_scan.hpp"
#include "storage/segmented_log_impl.hpp"

namespace coraft::storage {
namespace {

bool zero_from(std::span<const std::byte> f, std::uint64_t from) {
  return from >= f.size() || all_zero(f.subspan(from));
}

std::string where(const std::string& path, std::uint64_t offset) {
  return path + " offset " + std::to_string(offset);
}

// Reads every segment file in `dir`; fills segments (unordered), unused, max_seq and the open
// segments whose header is zero but which hold data (name, sequence number).
Result<void> read_segments(const std::string& dir, LogDirScan& out,
                           std::vector<std::pair<std::string, std::uint64_t>>& zeroed) {
  auto names = list_dir(dir);
  if (!names) return names.error();
  std::sort(names->begin(), names->end());
  for (const std::string& name : *names) {
    auto parsed = parse_segment_name(name);
    if (!parsed) continue;
    if (parsed->open) out.max_seq = std::max(out.max_seq, parsed->seq);
    auto file = MappedFile::open(join_path(dir, name));
    if (!file) return file.error();
    ScannedSegment f{name,
                     *parsed,
                     scan_segment(file->bytes(), parsed->open ? Index(0) : parsed->last,
                                  record_payload_bytes_limit),
                     false,
                     {}};
    if (f.scan.unused && parsed->open) {
      out.unused.push_back(name);
      continue;
    }
    if (f.scan.zero_header && parsed->open) {
      zeroed.emplace_back(name, parsed->seq);
      continue;
    }
    if (!f.scan.header_ok) {
      std::string why = f.scan.problem ? *f.scan.problem : "zero segment header";
      // Listed as a gap at its place: repair deletes it with every later segment.
      if (!out.bad)
        out.bad = LogDirScan::Bad{out.segments.size(), name, 0, why + " in a closed segment", true};
      continue;
    }
    std::uint64_t prepared = std::uint64_t{f.scan.header.prepared_sectors} * 512;
    if (parsed->open && file->bytes().size() < prepared) {
      // Open segments never change size (recovery cuts a tail only once a segment is closed).
      f.scan.problem = "the file is " + std::to_string(file->bytes().size()) +
                       " bytes, shorter than the " + std::to_string(prepared) +
                       " it was prepared at: truncated";
      f.scan.problem_offset = file->bytes().size();
      f.scan.hard_problem = true;
    }
    if (parsed->open) {
      f.tail_dirty = f.scan.problem || !zero_from(file->bytes(), f.scan.end_offset);
      if (f.tail_dirty) f.tail = judge_tail(file->bytes(), f.scan, record_payload_bytes_limit);
    } else if (f.scan.header.first_index != parsed->first && !out.bad) {
      out.bad = LogDirScan::Bad{out.segments.size(), name, 16,
                                "header first index differs from the name"};
    }
    out.segments.push_back(std::move(f));
  }
  return {};
}

// Applies the rules to one segment at position k of the ordered list; sets out.bad or out.torn.
void judge(LogDirScan& out, std::size_t k) {
  ScannedSegment& f = out.segments[k];
  bool last = k + 1 == out.segments.size();
  if (k > 0) {
    Index expect = out.segments[k - 1].last() + 1;
    if (f.first() != expect) {
      out.bad = LogDirScan::Bad{k, f.name, 0,
                                "segment starts at index " + std::to_string(f.first().value()) +
                                    " but " + std::to_string(expect.value()) +
                                    " was expected (a segment is missing or stale)",
                                true};
      return;
    }
  }
  if (!f.parsed.open || !f.tail_dirty) {
    if (f.scan.problem)
      out.bad = LogDirScan::Bad{k, f.name, f.scan.problem_offset, *f.scan.problem};
    return;
  }
  if (!last) {
    out.bad = LogDirScan::Bad{k, f.name, f.tail.offset,
                              f.tail.why + " in a segment that is not the newest"};
  } else if (!f.tail.torn) {
    out.bad = LogDirScan::Bad{k, f.name, f.tail.offset, f.tail.why};
  } else {
    out.torn.emplace(f.name, f.tail.offset);
    out.torn_first = f.tail.first_cut;
  }
}

// An open segment with a zero header but data: its torn first batch if it is the newest and
// its data can be that, else corruption.
Result<void> judge_zeroed(const std::string& dir, LogDirScan& out, const std::string& name,
                          std::uint64_t seq, std::uint32_t tear_window_bytes) {
  bool newest = true;
  for (const ScannedSegment& f : out.segments) {
    if (f.parsed.open && f.parsed.seq > seq) newest = false;
    tear_window_bytes = std::max(tear_window_bytes, f.scan.header.tear_window_bytes);
  }
  auto file = MappedFile::open(join_path(dir, name));
  if (!file) return file.error();
  Index expect = out.segments.empty() ? Index(0) : out.segments.back().last() + 1;
  TailJudgement t =
      judge_zero_header(file->bytes(), tear_window_bytes, expect, record_payload_bytes_limit);
  if (newest && t.torn && !out.torn) {
    out.torn.emplace(name, 0);
    out.torn_header = true;
    out.torn_first = t.first_cut;
  } else {
    out.bad = LogDirScan::Bad{out.segments.size(), name, 0,
                              newest ? t.why
                                     : "zero segment header, yet the file holds data, in a segment "
                                       "that is not the newest"};
  }
  return {};
}

// Reads dir/extent: nullopt when missing; an error when unreadable; a Bad when damaged.
Result<std::optional<LogExtent>> read_extent(const std::string& dir, LogDirScan& out) {
  std::string p = join_path(dir, extent_file_name);
  if (::access(p.c_str(), F_OK) != 0 && errno == ENOENT) return std::optional<LogExtent>{};
  auto file = MappedFile::open(p);
  if (!file) return file.error();
  std::string why;
  auto e = decode_extent(file->bytes(), &why);
  if (!e) out.bad = LogDirScan::Bad{out.segments.size(), extent_file_name, 0, why};
  return e;
}

// The checks of format.hpp (EXTENT FILE) on a scan without other damage.
Result<void> check_extent(const std::string& dir, LogDirScan& out) {
  auto read = read_extent(dir, out);
  if (!read) return read.error();
  if (out.bad) return {};
  auto bad = [&](std::string name, std::uint64_t offset, std::string why) {
    out.bad = LogDirScan::Bad{out.segments.size(), std::move(name), offset, std::move(why)};
  };
  if (!*read) {
    if (!out.segments.empty() || out.torn) {
      bad(extent_file_name, 0, "the extent file is missing, yet segments hold data");
    }
    return {};
  }
  const LogExtent& e = **read;
  out.extent = e;
  bool empty = out.segments.empty();
  Index first = empty ? Index(0) : out.segments.front().first();
  Index last = empty ? Index(0) : out.segments.back().last();
  if (e.first != Index(0) && !empty && first > e.first) {
    bad(extent_file_name, 16,
        "the log starts at index " + std::to_string(first.value()) + " but holds entries from " +
            std::to_string(e.first.value()) + " (a first segment is missing)");
    return {};
  }
  if (e.closed_last != Index(0) && (empty || last < e.closed_last)) {
    bad(extent_file_name, 24,
        "the log ends at index " + std::to_string(empty ? 0 : last.value()) +
            " but entries through " + std::to_string(e.closed_last.value()) +
            " were written (a last segment is missing, empty or renamed)");
    return {};
  }
  if (e.active_seq == 0) return {};
  std::string active = open_segment_name(e.active_seq);
  std::string active_path = join_path(dir, active);
  struct stat st {};
  if (::stat(active_path.c_str(), &st) == 0) {
    if (static_cast<std::uint64_t>(st.st_size) < segment_header_bytes) {
      bad(active, 0,
          "the segment being written is " + std::to_string(st.st_size) +
              " bytes long: it was prepared at full size");
    }
    return {};
  }
  // Closed since: by a rollover (only zeros past its last entry) or by an open (cut there).
  for (const ScannedSegment& f : out.segments) {
    if (f.parsed.open || f.first() != e.active_first) continue;
    auto file = MappedFile::open(join_path(dir, f.name));
    if (!file) return file.error();
    if (!zero_from(file->bytes(), f.scan.end_offset)) {
      bad(f.name, f.scan.end_offset,
          "data follows the last entry the name gives, in the segment the extent file names as "
          "being written (" +
              active + "): renamed to claim fewer entries");
    }
    return {};
  }
  bad(active, 0,
      "the segment being written (entries from " + std::to_string(e.active_first.value()) +
          " on) is missing");
  return {};
}

}  // namespace

Result<void> write_extent_file(const std::string& dir, const LogExtent& e) {
  std::string p = join_path(dir, extent_file_name);
  std::string tmp = p + ".tmp";
  auto fd = open_file(tmp, O_RDWR | O_CREAT | O_TRUNC);
  if (!fd) return fd.error();
  std::byte b[extent_file_bytes];
  encode_extent(e, b);
  if (auto r = pwrite_all(fd->get(), b, 0, tmp); !r) return r;
  if (auto r = sync_file(fd->get(), tmp); !r) return r;
  if (auto r = rename_file(tmp, p); !r) return r;
  return fsync_dir(dir);
}

Result<LogDirScan> scan_log_dir(const std::string& dir, std::uint32_t tear_window_bytes,
                                bool check_extent_file) {
  LogDirScan out;
  std::vector<std::pair<std::string, std::uint64_t>> zeroed;
  if (auto r = read_segments(dir, out, zeroed); !r) return r.error();
  if (out.bad) return out;
  std::sort(out.segments.begin(), out.segments.end(),
            [](const ScannedSegment& a, const ScannedSegment& b) { return a.first() < b.first(); });
  for (std::size_t k = 0; k < out.segments.size() && !out.bad; ++k) judge(out, k);
  for (const auto& [name, seq] : zeroed) {
    if (out.bad) break;
    if (auto r = judge_zeroed(dir, out, name, seq, tear_window_bytes); !r) return r.error();
  }
  if (check_extent_file && !out.bad) {
    if (auto r = check_extent(dir, out); !r) return r.error();
  }
  return out;
}

Result<void> SegmentedLog::Impl::sync_segment(const std::string& p) {
  if (int injected = opt.fault ? opt.fault(FaultPoint::recovery_sync) : 0; injected != 0) {
    return errno_error(injected, "fsync " + p);
  }
  auto fd = open_file(p, O_RDONLY);
  if (!fd) return fd.error();
  return sync_file(fd->get(), p);
}

// Keeps the newest unused prepared segment of the configured size as the next one to write
// (sparing a restart the work of preparing it again) and deletes the others.
Result<void> SegmentedLog::Impl::reuse_prepared(const std::vector<std::string>& unused) {
  std::optional<std::size_t> keep;
  for (std::size_t k = unused.size(); k-- > 0 && !keep;) {
    auto fd = open_file(path(unused[k]), O_RDWR);
    if (!fd) return fd.error();
    auto size = file_size(fd->get(), path(unused[k]));
    if (!size) return size.error();
    if (*size != opt.segment_bytes) continue;
    keep = k;
    Fd direct_fd;
    if (direct_wanted()) {
      std::string why;
      int err = 0;
      direct_fd = open_direct(path(unused[k]), err, why);
      if (!direct_fd.valid()) no_direct_fd(err, why);
    }
    prepared = Prepared{unused[k], std::move(*fd), std::move(direct_fd)};
  }
  for (std::size_t k = 0; k < unused.size(); ++k) {
    if (keep && *keep == k) continue;
    if (auto r = remove_file(path(unused[k])); !r) return r;
  }
  return {};
}

// Cuts the log at `bad` (LogOptions::repair): later segments are deleted, the damaged one is
// truncated at the bad record and renamed under its new last index below.
Result<void> SegmentedLog::Impl::recover() {
  auto scanned = scan_log_dir(opt.dir, opt.batch_bytes_max, !opt.repair);
  if (!scanned) return scanned.error();
  LogDirScan& s = *scanned;
  next_seq = std::max(next_seq, s.max_seq + 1);
  if (!s.bad) {
    // The extent after recovery, written before any file changes: a crash during them leaves
    // an extent whose claims the files still meet (the cuts below only remove what is past
    // the last valid entry, and the files deleted hold no entries).
    std::optional<Index> first;
    Index last(0);
    for (const ScannedSegment& f : s.segments) {
      if (f.scan.records.empty()) continue;
      if (!first) first = f.first();
      last = f.last();
    }
    if (auto r = write_extent_file(opt.dir, LogExtent{first.value_or(Index(0)), last, 0, Index(0)});
        !r) {
      return r;
    }
  }
  // The torn tail is cut off once its segment is closed (below), so that an open segment never
  // shrinks: a crash in between leaves the tail past the closed segment's last entry, unread.
  std::optional<std::pair<std::string, std::uint64_t>> cut_tail;
  if (s.torn && !(s.bad && s.bad->at < s.segments.size())) {
    report.torn_file = path(s.torn->first);
    report.torn_offset = s.torn->second;
    log(LogLevel::warn, "storage: torn tail cut off: ", where(*report.torn_file, s.torn->second),
        " (the batch in flight at a crash, never acknowledged; entries from index ",
        s.torn_first.value(), " on)");
    if (s.torn_header) {
      if (auto r = remove_file(*report.torn_file); !r) return r;
    } else {
      cut_tail = *s.torn;
    }
  }
  if (s.bad) {
    std::string msg = where(path(s.bad->name), s.bad->offset) + ": " + s.bad->why;
    if (!opt.repair || s.bad->at >= s.segments.size()) return Error(Errc::storage_corrupt, msg);
    report.repaired = msg;
    log(LogLevel::warn, "storage: repair cuts the log at ", msg);
    std::size_t keep = s.bad->at + (s.bad->gap ? 0 : 1);
    while (s.segments.size() > keep) {
      if (auto r = remove_file(path(s.segments.back().name)); !r) return r;
      s.segments.pop_back();
    }
    if (s.bad->gap && ::access(path(s.bad->name).c_str(), F_OK) == 0) {
      if (auto r = remove_file(path(s.bad->name)); !r) return r;
    }
    if (!s.bad->gap) {
      ScannedSegment& f = s.segments.back();
      if (auto r = truncate_file(path(f.name), s.bad->offset); !r) return r;
      f.parsed.open = true;  // renamed below under its true last index
    }
  }
  // Close every open segment under its real name; drop the empty and unused ones. A writer
  // killed mid-batch may have left records in the page cache only: each open segment is synced
  // before its records are believed, and before its closed name says they are all there.
  for (ScannedSegment& f : s.segments) {
    if (!f.parsed.open) continue;
    if (f.scan.records.empty()) {
      if (auto r = remove_file(path(f.name)); !r) return r;
      f.name.clear();
      continue;
    }
    if (auto r = sync_segment(path(f.name)); !r) return r;
    std::string closed = closed_segment_name(f.first(), f.last());
    bool torn_here = cut_tail && cut_tail->first == f.name;
    if (closed != f.name) {
      if (auto r = rename_file(path(f.name), path(closed)); !r) return r;
      f.name = closed;
    }
    if (torn_here) {
      if (auto r = truncate_file(path(f.name), cut_tail->second); !r) return r;
      cut_tail.reset();
    }
  }
  if (auto r = reuse_prepared(s.unused); !r) return r;
  if (auto r = fsync_dir(opt.dir); !r) return r;
  for (ScannedSegment& f : s.segments) {
    if (f.name.empty()) continue;
    Segment seg;
    seg.name = f.name;
    seg.first = f.first();
    seg.end = f.scan.end_offset;
    seg.recs.reserve(f.scan.records.size());
    for (const RecordInfo& ri : f.scan.records)
      seg.recs.push_back({ri.offset, ri.term, ri.length, ri.type});
    segments.push_back(std::move(seg));
  }
  report.segments = segments.size();
  if (!segments.empty()) {
    first_index = segments.front().first;
    last_index = segments.back().last();
  }
  extent = LogExtent{segments.empty() ? Index(0) : first_index, last_index, 0, Index(0)};
  return write_extent_file(opt.dir, extent);
}

}  // namespace coraft::storage
