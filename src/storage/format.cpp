#include "storage/format.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>

#include "storage/crc32c.hpp"
#include "storage/le_bytes.hpp"

namespace coraft::storage {
namespace {

std::uint32_t record_crc_head(const std::byte* h, std::span<const std::byte> payload) noexcept {
  return crc32c_extend(crc32c_extend(0, {h, 4}), payload);
}

std::uint32_t record_crc_finish(std::uint32_t head, const std::byte* h) noexcept {
  return crc32c_extend(head, {h + 8, record_header_bytes - 8});
}

std::uint32_t header_crc(const std::byte* h) noexcept {
  std::byte copy[segment_header_bytes];
  std::memcpy(copy, h, segment_header_bytes);
  put32(copy + 12, 0);
  return crc32c(copy);
}

std::uint32_t record_crc(const std::byte* h, std::span<const std::byte> payload) noexcept {
  return record_crc_finish(record_crc_head(h, payload), h);
}

std::optional<SegmentHeader> decode_segment_header(const std::byte* h, std::string* why) {
  if (std::memcmp(h, segment_magic, sizeof segment_magic) != 0) {
    *why = "bad segment magic";
    return std::nullopt;
  }
  if (get32(h + 8) != format_version) {
    *why = "unknown segment format version " + std::to_string(get32(h + 8));
    return std::nullopt;
  }
  if (get32(h + 12) != header_crc(h)) {
    *why = "segment header CRC mismatch";
    return std::nullopt;
  }
  SegmentHeader out{Index(get64(h + 16)), get32(h + 24), get32(h + 28)};
  if (out.first_index == Index(0) || out.tear_window_bytes == 0) {
    *why = "segment header holds a zero first index or tear window";
    return std::nullopt;
  }
  return out;
}

std::optional<std::uint64_t> parse_u64(std::string_view s) {
  std::uint64_t v = 0;
  if (s.size() != 20) return std::nullopt;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::string pad20(std::uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%020llu", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

void encode_segment_header(const SegmentHeader& h, std::byte out[segment_header_bytes]) noexcept {
  std::memset(out, 0, segment_header_bytes);
  std::memcpy(out, segment_magic, sizeof segment_magic);
  put32(out + 8, format_version);
  put64(out + 16, h.first_index.value());
  put32(out + 24, h.tear_window_bytes);
  put32(out + 28, h.prepared_sectors);
  put32(out + 12, header_crc(out));
}

bool all_zero(std::span<const std::byte> bytes) noexcept {
  const std::byte* p = bytes.data();
  std::size_t n = bytes.size();
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    std::uint64_t w[4];
    std::memcpy(w, p + i, sizeof w);
    if ((w[0] | w[1] | w[2] | w[3]) != 0) return false;
  }
  for (; i < n; ++i) {
    if (p[i] != std::byte{0}) return false;
  }
  return true;
}

std::uint32_t encode_record_header(const Entry& e, std::uint32_t batch_pos,
                                   std::byte out[record_header_bytes]) noexcept {
  std::memset(out, 0, record_header_bytes);
  put32(out, static_cast<std::uint32_t>(e.payload.size()));
  put64(out + 8, e.term.value());
  put64(out + 16, e.index.value());
  out[24] = static_cast<std::byte>(e.type);
  put32(out + 28, batch_pos);
  std::uint32_t head = record_crc_head(out, e.payload.span());
  put32(out + 4, record_crc_finish(head, out));
  return head;
}

void mark_batch_end(std::byte header[record_header_bytes], std::uint32_t crc_head) noexcept {
  header[25] = std::byte{record_flag_batch_end};
  put32(header + 4, record_crc_finish(crc_head, header));
}

namespace {
constexpr char extent_magic[8] = {'c', 'o', 'r', 'a', 'f', 't', 'E', 'X'};
constexpr std::uint32_t extent_version = 1;

std::uint32_t extent_crc(const std::byte* b) noexcept {
  std::byte copy[extent_file_bytes];
  std::memcpy(copy, b, extent_file_bytes);
  put32(copy + 12, 0);
  return crc32c(copy);
}
}  // namespace

void encode_extent(const LogExtent& e, std::byte out[extent_file_bytes]) noexcept {
  std::memset(out, 0, extent_file_bytes);
  std::memcpy(out, extent_magic, sizeof extent_magic);
  put32(out + 8, extent_version);
  put64(out + 16, e.first.value());
  put64(out + 24, e.closed_last.value());
  put64(out + 32, e.active_seq);
  put64(out + 40, e.active_first.value());
  put32(out + 12, extent_crc(out));
}

std::optional<LogExtent> decode_extent(std::span<const std::byte> b, std::string* why) {
  if (b.size() != extent_file_bytes) {
    *why = "extent file is " + std::to_string(b.size()) + " bytes, not " +
           std::to_string(extent_file_bytes);
    return std::nullopt;
  }
  if (std::memcmp(b.data(), extent_magic, sizeof extent_magic) != 0 ||
      get32(b.data() + 8) != extent_version || get32(b.data() + 12) != extent_crc(b.data()) ||
      !all_zero(b.subspan(48))) {
    *why = "extent file has a bad magic, version or CRC";
    return std::nullopt;
  }
  return LogExtent{Index(get64(b.data() + 16)), Index(get64(b.data() + 24)), get64(b.data() + 32),
                   Index(get64(b.data() + 40))};
}

std::optional<SegmentName> parse_segment_name(std::string_view name) {
  if (name.size() < 4 || name.substr(name.size() - 4) != ".log") return std::nullopt;
  name.remove_suffix(4);
  SegmentName out;
  if (name.substr(0, 5) == "open-") {
    auto seq = parse_u64(name.substr(5));
    if (!seq) return std::nullopt;
    out.open = true;
    out.seq = *seq;
    return out;
  }
  if (name.size() != 41 || name[20] != '-') return std::nullopt;
  auto first = parse_u64(name.substr(0, 20));
  auto last = parse_u64(name.substr(21));
  if (!first || !last || *first == 0 || *last < *first) return std::nullopt;
  out.first = Index(*first);
  out.last = Index(*last);
  return out;
}

std::string open_segment_name(std::uint64_t seq) {
  return "open-" + pad20(seq) + ".log";
}

std::string closed_segment_name(Index first, Index last) {
  return pad20(first.value()) + "-" + pad20(last.value()) + ".log";
}

std::optional<RecordInfo> check_record(std::span<const std::byte> file, std::uint64_t offset,
                                       Index expected_index, std::uint32_t payload_bytes_max,
                                       std::string* why, bool* tear_like) {
  bool ignored = false;
  if (tear_like == nullptr) tear_like = &ignored;
  *tear_like = true;
  if (offset + record_header_bytes > file.size()) {
    *why = "record header cut off by the end of the file";
    return std::nullopt;
  }
  const std::byte* h = file.data() + offset;
  std::uint32_t length = get32(h);
  if (length > payload_bytes_max || length > record_payload_bytes_limit) {
    // The length shares its sector with the record's first bytes: a torn write leaves it zero
    // or whole, never wrong.
    *tear_like = false;
    *why = "record length " + std::to_string(length) + " exceeds the limit";
    return std::nullopt;
  }
  if (offset + record_header_bytes + length > file.size()) {
    *why = "record payload cut off by the end of the file";
    return std::nullopt;
  }
  std::span<const std::byte> payload(h + record_header_bytes, length);
  if (get32(h + 4) != record_crc(h, payload)) {
    *why = "record CRC mismatch";
    return std::nullopt;
  }
  *tear_like = false;  // the bytes are as written: what follows is wrong data, not a tear
  RecordInfo r{Index(get64(h + 16)), Term(get64(h + 8)), static_cast<EntryType>(h[24]), offset,
               length};
  r.batch_pos = get32(h + 28);
  r.batch_end = h[25] == std::byte{record_flag_batch_end};
  if (static_cast<std::uint8_t>(h[24]) > 2 ||
      static_cast<std::uint8_t>(h[25]) > record_flag_batch_end || !all_zero({h + 26, 2})) {
    *why = "record has an unknown type or flags, or nonzero reserved bytes";
    return std::nullopt;
  }
  if (r.term == Term(0) || r.index == Index(0) ||
      (expected_index != Index(0) && r.index != expected_index)) {
    *why = "record index " + std::to_string(r.index.value()) + " where " +
           std::to_string(expected_index.value()) + " was expected";
    return std::nullopt;
  }
  if (r.batch_pos >= r.index.value()) {
    *why = "record's place in its batch lies before index 1";
    return std::nullopt;
  }
  return r;
}

SegmentScan scan_segment(std::span<const std::byte> file, Index last_wanted,
                         std::uint32_t payload_bytes_max) {
  SegmentScan s;
  if (file.size() < segment_header_bytes || all_zero(file.first(segment_header_bytes))) {
    s.zero_header = true;
    s.unused = all_zero(file);
    if (!s.unused) {
      s.problem = file.size() < segment_header_bytes
                      ? "segment header cut off by the end of the file"
                      : "zero segment header, yet the file holds data";
      s.problem_offset = 0;
      s.hard_problem = true;
    }
    return s;
  }
  std::string why;
  auto header = decode_segment_header(file.data(), &why);
  if (!header) {
    // The header shares the first sector with the first record: a torn write leaves it zero.
    s.problem = why;
    s.hard_problem = true;
    return s;
  }
  s.header_ok = true;
  s.header = *header;
  std::uint64_t pos = segment_header_bytes;
  Index next = header->first_index;
  Term term_prev(0);
  s.end_offset = pos;
  while (last_wanted == Index(0) || next <= last_wanted) {
    if (pos >= file.size()) break;
    // A zero header ends the data; so do zero bytes too few to hold a header, the unused rest
    // of a segment whose last record left less than a header's room.
    if (all_zero(
            file.subspan(pos, std::min<std::uint64_t>(record_header_bytes, file.size() - pos)))) {
      break;
    }
    bool tear_like = false;
    auto r = check_record(file, pos, next, payload_bytes_max, &why, &tear_like);
    if (r && r->term < term_prev) {
      r.reset();
      why = "record term goes backwards";
    }
    // A batch never crosses a segment: the first record starts a batch, and each record is the
    // one after its predecessor in the same batch or the first of the next.
    std::uint32_t want_pos =
        s.records.empty() || s.records.back().batch_end ? 0 : s.records.back().batch_pos + 1;
    if (r && r->batch_pos != want_pos) {
      why = "record's place in its batch is " + std::to_string(r->batch_pos) + " where " +
            std::to_string(want_pos) + " was expected";
      r.reset();
    }
    if (!r) {
      s.problem = why;
      s.problem_offset = pos;
      s.hard_problem = !tear_like;
      break;
    }
    term_prev = r->term;
    s.records.push_back(*r);
    pos += record_disk_bytes(r->length);
    s.end_offset = pos;
    ++next;
  }
  if (!s.problem && last_wanted != Index(0) && next <= last_wanted) {
    s.problem = "data ends at index " + std::to_string(next.value() - 1) + ", the name says " +
                std::to_string(last_wanted.value());
    s.problem_offset = pos;
    s.hard_problem = true;
  }
  return s;
}

namespace {

// The first nonzero byte at or after `from`, or nullopt.
std::optional<std::uint64_t> first_nonzero(std::span<const std::byte> file, std::uint64_t from) {
  constexpr std::uint64_t chunk = 1u << 16;
  for (std::uint64_t at = from; at < file.size(); at += chunk) {
    auto part = file.subspan(at, std::min(chunk, file.size() - at));
    if (all_zero(part)) continue;
    for (std::uint64_t i = 0;; ++i) {
      if (part[i] != std::byte{0}) return at + i;
    }
  }
  return std::nullopt;
}

// Whether some sector of [from, to) reads as zeros over all of its bytes at or past `batch_start`
// (the bytes a torn batch had not written yet), or the range runs past the end of the file.
bool has_unwritten_sector(std::span<const std::byte> file, std::uint64_t from, std::uint64_t to,
                          std::uint64_t batch_start) {
  if (to > file.size()) return true;
  for (std::uint64_t s = from & ~(tear_sector_bytes - 1); s < to; s += tear_sector_bytes) {
    std::uint64_t lo = std::max(s, batch_start);
    std::uint64_t hi = std::min<std::uint64_t>(s + tear_sector_bytes, file.size());
    if (lo < hi && all_zero(file.subspan(lo, hi - lo))) return true;
  }
  return false;
}

// A valid record at `q` whose index lies in (after, after + max_count], or nullopt. Cheap tests
// of the header come before the CRC.
std::optional<RecordInfo> plausible_record(std::span<const std::byte> file, std::uint64_t q,
                                           Index after, std::uint64_t max_count,
                                           std::uint32_t payload_bytes_max) {
  const std::byte* h = file.data() + q;
  std::uint64_t index = get64(h + 16);
  if (index <= after.value() || index - after.value() > max_count || get64(h + 8) == 0 ||
      static_cast<std::uint8_t>(h[24]) > 2 ||
      static_cast<std::uint8_t>(h[25]) > record_flag_batch_end || get32(h + 28) >= index) {
    return std::nullopt;
  }
  std::string why;
  return check_record(file, q, Index(0), payload_bytes_max, &why, nullptr);
}

std::string at(std::uint64_t offset) {
  return "offset " + std::to_string(offset);
}

}  // namespace

TailJudgement judge_tail(std::span<const std::byte> file, const SegmentScan& scan,
                         std::uint32_t payload_bytes_max) {
  std::uint64_t x = scan.problem ? scan.problem_offset : scan.end_offset;
  std::string what = scan.problem ? *scan.problem : "nonzero bytes after the end of the data";
  TailJudgement out{false, x, Index(0), what};
  if (!scan.header_ok) return out;
  if (scan.problem && scan.hard_problem) return out;
  // The batch that was in flight: the one after the last record marking a batch's end.
  const Index first = scan.header.first_index;
  Index batch_first = first;
  std::uint64_t batch_start = 0;  // a segment's first batch writes its header too
  if (!scan.records.empty()) {
    const RecordInfo& r = scan.records.back();
    batch_first = r.batch_end ? r.index + 1 : r.index - r.batch_pos;
    if (batch_first == r.index + 1) {
      batch_start = scan.end_offset;
    } else if (batch_first > first) {
      batch_start = scan.records[batch_first - first].offset;
    }
  }
  out.first_cut = first + scan.records.size();
  std::uint64_t window_end = batch_start + scan.header.tear_window_bytes;
  if (auto nz = first_nonzero(file, std::max(window_end, x))) {
    out.why = what + "; nonzero bytes at " + at(*nz) +
              " lie past the tear window of the last batch (" +
              std::to_string(scan.header.tear_window_bytes) + " bytes from " + at(batch_start) +
              "): not a torn write";
    return out;
  }
  if (scan.problem) {
    std::uint64_t end = x + record_header_bytes;
    if (end <= file.size()) end += get32(file.data() + x);
    if (!has_unwritten_sector(file, x, end, batch_start)) {
      out.why = what + ", and no sector of the record reads as unwritten zeros: not a torn write";
      return out;
    }
  }
  Index last = out.first_cut - 1;
  std::uint64_t limit = std::min<std::uint64_t>(window_end, file.size());
  for (std::uint64_t q = pad8(x) + 8; q + record_header_bytes <= limit; q += 8) {
    auto r =
        plausible_record(file, q, last, (limit - x) / record_header_bytes + 1, payload_bytes_max);
    if (!r) continue;
    if (r->index - r->batch_pos != batch_first) {
      out.why = what + "; a valid record of a later batch (index " +
                std::to_string(r->index.value()) + ") follows at " + at(q) + ": not a torn write";
      return out;
    }
  }
  out.torn = true;
  return out;
}

TailJudgement judge_zero_header(std::span<const std::byte> file, std::uint32_t tear_window_bytes,
                                Index expected_first, std::uint32_t payload_bytes_max) {
  TailJudgement out{false, 0, expected_first, "zero segment header, yet the file holds data"};
  // The header shares its sector with the first record: a torn first batch zeroes both.
  if (!all_zero(file.first(std::min<std::uint64_t>(tear_sector_bytes, file.size())))) {
    out.why += " in the header's own sector: not a torn write";
    return out;
  }
  if (auto nz = first_nonzero(file, tear_window_bytes)) {
    out.why += "; nonzero bytes at " + at(*nz) +
               " lie past the tear window of the segment's first batch (" +
               std::to_string(tear_window_bytes) + " bytes): not a torn write";
    return out;
  }
  std::uint64_t limit = std::min<std::uint64_t>(tear_window_bytes, file.size());
  std::optional<Index> batch_first;
  if (expected_first != Index(0)) batch_first = expected_first;
  for (std::uint64_t q = tear_sector_bytes; q + record_header_bytes <= limit; q += 8) {
    auto r = plausible_record(file, q, Index(0), ~std::uint64_t{0} >> 1, payload_bytes_max);
    if (!r) continue;
    Index f = r->index - r->batch_pos;
    if (!batch_first) batch_first = f;
    out.first_cut = *batch_first;
    if (f != *batch_first) {
      out.why += "; a valid record outside the segment's first batch (index " +
                 std::to_string(r->index.value()) + ") lies at " + at(q) + ": not a torn write";
      return out;
    }
  }
  out.torn = true;
  return out;
}

}  // namespace coraft::storage
