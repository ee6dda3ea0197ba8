// The record format, CRC32C and segment names.
#include <doctest/doctest.h>

#include <cstring>

#include "storage/crc32c.hpp"
#include "storage/format.hpp"
#include "storage_test_util.hpp"

using namespace coraft;
using namespace coraft::storage;

namespace {

// A segment image: header, then records for `entries`, then `zeros` zero bytes.
std::vector<std::byte> segment_image(const std::vector<Entry>& entries, std::size_t zeros) {
  std::vector<std::byte> f(segment_header_bytes);
  encode_segment_header({entries.front().index, 4096}, f.data());
  for (const Entry& e : entries) {
    std::size_t at = f.size();
    f.resize(at + record_disk_bytes(e.payload.size()));
    encode_record_header(e, f.data() + at);
    std::memcpy(f.data() + at + record_header_bytes, e.payload.data(), e.payload.size());
  }
  f.resize(f.size() + zeros);
  return f;
}

}  // namespace

TEST_CASE("crc32c matches the RFC 3720 check value") {
  const char* s = "123456789";
  CHECK(crc32c(std::as_bytes(std::span(s, 9))) == 0xE3069283u);
  std::byte zeros[32] = {};
  CHECK(crc32c(zeros) == 0x8A9136AAu);
  CHECK(crc32c_extend(crc32c(std::as_bytes(std::span(s, 4))), std::as_bytes(std::span(s + 4, 5))) ==
        0xE3069283u);
}

TEST_CASE("segment names round-trip and reject malformed names") {
  auto closed = closed_segment_name(Index(5), Index(1024));
  CHECK(closed == "00000000000000000005-00000000000000001024.log");
  auto p = parse_segment_name(closed);
  REQUIRE(p.has_value());
  CHECK_FALSE(p->open);
  CHECK(p->first == Index(5));
  CHECK(p->last == Index(1024));
  auto o = parse_segment_name(open_segment_name(7));
  REQUIRE(o.has_value());
  CHECK(o->open);
  CHECK(o->seq == 7);
  CHECK_FALSE(parse_segment_name("00000000000000000009-00000000000000000001.log"));
  CHECK_FALSE(parse_segment_name("open-12.log"));
  CHECK_FALSE(parse_segment_name("hardstate"));
}

TEST_CASE("records are 8-byte aligned and scan back with index, term, type and length") {
  auto es = coraft::storage::test::make_entries(3, 6, 2, 13);
  es[1].type = EntryType::config;
  auto f = segment_image(es, 64);
  auto s = scan_segment(f, Index(0), 1 << 20);
  CHECK_FALSE(s.problem.has_value());
  REQUIRE(s.records.size() == 4);
  CHECK(s.records[0].offset == segment_header_bytes);
  CHECK(s.records[1].offset == segment_header_bytes + record_header_bytes + 16);
  CHECK(s.records[1].type == EntryType::config);
  CHECK(s.records[3].index == Index(6));
  CHECK(s.records[3].term == Term(2));
  CHECK(s.records[3].length == 13);
  CHECK(s.end_offset == f.size() - 64);
}

TEST_CASE("a flipped payload byte is found at its record's offset") {
  auto es = coraft::storage::test::make_entries(1, 4, 1, 40);
  auto f = segment_image(es, 0);
  std::uint64_t third = segment_header_bytes + 2 * record_disk_bytes(40);
  f[third + record_header_bytes + 5] ^= std::byte{1};
  auto s = scan_segment(f, Index(0), 1 << 20);
  REQUIRE(s.problem.has_value());
  CHECK(s.problem_offset == third);
  CHECK(s.records.size() == 2);
}

TEST_CASE("a valid record past the tear window is detected behind damage") {
  auto es = coraft::storage::test::make_entries(1, 200, 1, 100);
  auto f = segment_image(es, 0);
  std::uint64_t second = segment_header_bytes + record_disk_bytes(100);
  f[second + 1] ^= std::byte{1};
  auto s = scan_segment(f, Index(0), 1 << 20);
  scan_beyond_tear_window(f, s, 1 << 20);
  REQUIRE(s.later_record_offset.has_value());
  CHECK(*s.later_record_offset >= second + 4096);
  // Damage within one tear window of the end is indistinguishable from a torn batch.
  auto g = segment_image(coraft::storage::test::make_entries(1, 10, 1, 100), 0);
  g[second + 1] ^= std::byte{1};
  auto t = scan_segment(g, Index(0), 1 << 20);
  scan_beyond_tear_window(g, t, 1 << 20);
  CHECK_FALSE(t.later_record_offset.has_value());
}

TEST_CASE("a zero header is a prepared, unused segment") {
  std::vector<std::byte> f(4096);
  auto s = scan_segment(f, Index(0), 1 << 20);
  CHECK(s.unused);
  CHECK_FALSE(s.problem.has_value());
}

TEST_CASE("a full segment may end in zero bytes too few to hold a record header") {
  auto es = coraft::storage::test::make_entries(1, 5, 1, 40);
  for (std::size_t slack : {8u, 24u}) {
    auto f = segment_image(es, slack);
    auto s = scan_segment(f, Index(0), 1 << 20);
    CHECK_FALSE(s.problem.has_value());
    CHECK(s.records.size() == 5);
    CHECK(s.end_offset == f.size() - slack);
    // Nonzero bytes in that slack are damage, found where the slack starts.
    f[f.size() - 3] = std::byte{7};
    auto d = scan_segment(f, Index(0), 1 << 20);
    REQUIRE(d.problem.has_value());
    CHECK(d.problem_offset == f.size() - slack);
    CHECK(d.records.size() == 5);
  }
}
