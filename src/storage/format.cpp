#include "storage/format.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>

#include "storage/crc32c.hpp"
#include "storage/le_bytes.hpp"

namespace coraft::storage {
namespace {

bool all_zero(const std::byte* p, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    if (p[i] != std::byte{0}) return false;
  }
  return true;
}

std::uint32_t header_crc(const std::byte* h) noexcept {
  std::byte copy[segment_header_bytes];
  std::memcpy(copy, h, segment_header_bytes);
  put32(copy + 12, 0);
  return crc32c(copy);
}

std::uint32_t record_crc(const std::byte* h, std::span<const std::byte> payload) noexcept {
  std::uint32_t c = crc32c_extend(0, {h, 4});
  c = crc32c_extend(c, {h + 8, record_header_bytes - 8});
  return crc32c_extend(c, payload);
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
  if (get32(h + 12) != header_crc(h) || get32(h + 28) != 0) {
    *why = "segment header CRC mismatch";
    return std::nullopt;
  }
  SegmentHeader out{Index(get64(h + 16)), get32(h + 24)};
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
  put32(out + 12, header_crc(out));
}

void encode_record_header(const Entry& e, std::byte out[record_header_bytes]) noexcept {
  std::memset(out, 0, record_header_bytes);
  put32(out, static_cast<std::uint32_t>(e.payload.size()));
  put64(out + 8, e.term.value());
  put64(out + 16, e.index.value());
  out[24] = static_cast<std::byte>(e.type);
  put32(out + 4, record_crc(out, e.payload.span()));
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
                                       std::string* why) {
  if (offset + record_header_bytes > file.size()) {
    *why = "record header cut off by the end of the file";
    return std::nullopt;
  }
  const std::byte* h = file.data() + offset;
  std::uint32_t length = get32(h);
  if (length > payload_bytes_max || length > record_payload_bytes_limit) {
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
  RecordInfo r{Index(get64(h + 16)), Term(get64(h + 8)), static_cast<EntryType>(h[24]), offset,
               length};
  if (static_cast<std::uint8_t>(h[24]) > 2 || !all_zero(h + 25, 7)) {
    *why = "record has an unknown type or nonzero reserved bytes";
    return std::nullopt;
  }
  if (r.term == Term(0) || r.index == Index(0) ||
      (expected_index != Index(0) && r.index != expected_index)) {
    *why = "record index " + std::to_string(r.index.value()) + " where " +
           std::to_string(expected_index.value()) + " was expected";
    return std::nullopt;
  }
  return r;
}

SegmentScan scan_segment(std::span<const std::byte> file, Index last_wanted,
                         std::uint32_t payload_bytes_max) {
  SegmentScan s;
  if (file.size() < segment_header_bytes) {
    s.unused = all_zero(file.data(), file.size());
    if (!s.unused) {
      s.problem = "segment header cut off by the end of the file";
      s.problem_offset = 0;
    }
    return s;
  }
  if (all_zero(file.data(), segment_header_bytes)) {
    s.unused = true;
    return s;
  }
  std::string why;
  auto header = decode_segment_header(file.data(), &why);
  if (!header) {
    s.problem = why;
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
    if (all_zero(file.data() + pos,
                 std::min<std::uint64_t>(record_header_bytes, file.size() - pos))) {
      break;
    }
    auto r = check_record(file, pos, next, payload_bytes_max, &why);
    if (r && r->term < term_prev) {
      r.reset();
      why = "record term goes backwards";
    }
    if (!r) {
      s.problem = why;
      s.problem_offset = pos;
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
  }
  return s;
}

void scan_beyond_tear_window(std::span<const std::byte> file, SegmentScan& scan,
                             std::uint32_t payload_bytes_max) {
  if (!scan.header_ok) return;
  Index last = scan.records.empty() ? scan.header.first_index - 1 : scan.records.back().index;
  std::uint64_t from = pad8(scan.end_offset + scan.header.tear_window_bytes);
  std::string why;
  for (std::uint64_t q = from; q + record_header_bytes <= file.size(); q += 8) {
    const std::byte* h = file.data() + q;
    if (get64(h) == 0 && get64(h + 8) == 0) continue;  // cheap skip of zero stretches
    auto r = check_record(file, q, Index(0), payload_bytes_max, &why);
    if (r && r->index > last) {
      scan.later_record_offset = q;
      return;
    }
  }
}

}  // namespace coraft::storage
