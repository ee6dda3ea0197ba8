// The record format, CRC32C and segment names.
#include <doctest/doctest.h>

#include <cstring>

#include "storage/crc32c.hpp"
#include "storage/format.hpp"
#include "storage_test_util.hpp"

using namespace coraft;
using namespace coraft::storage;

namespace {

// A segment image: header, then records for `entries` in write batches of `batch` records,
// then `zeros` zero bytes.
std::vector<std::byte> segment_image(const std::vector<Entry>& entries, std::size_t zeros,
                                     std::size_t batch = 1000, std::uint32_t tear_window = 4096) {
  std::vector<std::byte> f(segment_header_bytes);
  encode_segment_header({entries.front().index, tear_window}, f.data());
  for (std::size_t k = 0; k < entries.size(); ++k) {
    const Entry& e = entries[k];
    std::size_t at = f.size();
    f.resize(at + record_disk_bytes(e.payload.size()));
    std::memcpy(f.data() + at + record_header_bytes, e.payload.data(), e.payload.size());
    std::uint32_t head =
        encode_record_header(e, static_cast<std::uint32_t>(k % batch), f.data() + at);
    if (k % batch == batch - 1 || k + 1 == entries.size()) mark_batch_end(f.data() + at, head);
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

TEST_CASE("records carry their place in the write batch and the batch's last is flagged") {
  auto f = segment_image(coraft::storage::test::make_entries(1, 7, 1, 20), 0, 3);
  auto s = scan_segment(f, Index(0), 1 << 20);
  CHECK_FALSE(s.problem.has_value());
  REQUIRE(s.records.size() == 7);
  std::vector<std::uint32_t> places;
  std::vector<bool> ends;
  for (const RecordInfo& r : s.records) {
    places.push_back(r.batch_pos);
    ends.push_back(r.batch_end);
  }
  CHECK(places == std::vector<std::uint32_t>{0, 1, 2, 0, 1, 2, 0});
  CHECK(ends == std::vector<bool>{false, false, true, false, false, true, true});
}

TEST_CASE("a record out of place in its batch is damage no tear explains") {
  auto es = coraft::storage::test::make_entries(1, 4, 1, 20);
  std::vector<std::byte> f(segment_header_bytes);
  encode_segment_header({Index(1), 4096}, f.data());
  for (std::size_t k = 0; k < es.size(); ++k) {
    std::size_t at = f.size();
    f.resize(at + record_disk_bytes(20));
    std::memcpy(f.data() + at + record_header_bytes, es[k].payload.data(), 20);
    // The third record claims to start a batch although the second did not end one.
    encode_record_header(es[k], k == 2 ? 0 : static_cast<std::uint32_t>(k), f.data() + at);
  }
  auto s = scan_segment(f, Index(0), 1 << 20);
  REQUIRE(s.problem.has_value());
  CHECK(s.hard_problem);
  CHECK(s.problem_offset == segment_header_bytes + 2 * record_disk_bytes(20));
  CHECK_FALSE(judge_tail(f, s, 1 << 20).torn);
}

namespace {

constexpr std::size_t big = 1000;  // payload bytes: records span sectors
std::uint64_t rec_at(std::size_t k) {
  return segment_header_bytes + k * record_disk_bytes(big);
}

}  // namespace

TEST_CASE("a sector of the last batch reading as zeros is a torn tail") {
  // Batches of 4: records 0..3, 4..7, 8..11 (the last, in flight).
  auto f = segment_image(coraft::storage::test::make_entries(1, 12, 1, big), 8192, 4, 16384);
  std::uint64_t sector = (rec_at(9) + 600) & ~std::uint64_t{511};
  std::fill(f.begin() + static_cast<std::ptrdiff_t>(sector),
            f.begin() + static_cast<std::ptrdiff_t>(sector + 512), std::byte{0});
  auto s = scan_segment(f, Index(0), 1 << 20);
  REQUIRE(s.problem.has_value());
  auto t = judge_tail(f, s, 1 << 20);
  CHECK(t.torn);
  CHECK(t.offset == s.problem_offset);
  CHECK(t.first_cut == Index(s.records.size() + 1));
  CHECK(s.records.size() >= 8);  // the earlier batches are kept whole
}

TEST_CASE("a flipped byte in the last batch, with no sector reading as zeros, is not a tear") {
  auto f = segment_image(coraft::storage::test::make_entries(1, 12, 1, big), 8192, 4, 16384);
  f[rec_at(11) + record_header_bytes + 300] ^= std::byte{1};
  auto s = scan_segment(f, Index(0), 1 << 20);
  REQUIRE(s.problem.has_value());
  CHECK(s.problem_offset == rec_at(11));
  auto t = judge_tail(f, s, 1 << 20);
  CHECK_FALSE(t.torn);
  CHECK(t.offset == rec_at(11));
}

TEST_CASE(
    "damage in an older batch is not a tear, even with a zeroed sector, when a later batch is "
    "valid") {
  auto f = segment_image(coraft::storage::test::make_entries(1, 12, 1, big), 8192, 4, 1 << 20);
  std::uint64_t sector = (rec_at(5) + 600) & ~std::uint64_t{511};
  std::fill(f.begin() + static_cast<std::ptrdiff_t>(sector),
            f.begin() + static_cast<std::ptrdiff_t>(sector + 512), std::byte{0});
  auto s = scan_segment(f, Index(0), 1 << 20);
  REQUIRE(s.problem.has_value());
  auto t = judge_tail(f, s, 1 << 20);
  CHECK_FALSE(t.torn);
  CHECK(t.why.find("later batch") != std::string::npos);
}

TEST_CASE("nonzero bytes past the last batch's tear window are not a tear") {
  // One record per batch, a tear window of 4 KiB: the zeroed record at 2 is followed by
  // records 3.. more than a window away from its batch's start.
  auto f = segment_image(coraft::storage::test::make_entries(1, 12, 1, big), 8192, 1, 4096);
  std::fill(f.begin() + static_cast<std::ptrdiff_t>(rec_at(2)),
            f.begin() + static_cast<std::ptrdiff_t>(rec_at(3)), std::byte{0});
  auto s = scan_segment(f, Index(0), 1 << 20);
  CHECK_FALSE(s.problem.has_value());  // the data ends at a zero header
  auto t = judge_tail(f, s, 1 << 20);
  CHECK_FALSE(t.torn);
  CHECK(t.offset == rec_at(2));
}

TEST_CASE("a zero header with the first batch's sectors partly written is a torn first batch") {
  auto f = segment_image(coraft::storage::test::make_entries(5, 8, 1, big), 8192, 4, 16384);
  std::fill(f.begin(), f.begin() + 512, std::byte{0});
  auto s = scan_segment(f, Index(0), 1 << 20);
  CHECK(s.zero_header);
  CHECK_FALSE(s.unused);
  auto t = judge_zero_header(f, 16384, Index(5), 1 << 20);
  CHECK(t.torn);
  // A later batch in the same file is not.
  auto g = segment_image(coraft::storage::test::make_entries(5, 12, 1, big), 8192, 4, 16384);
  std::fill(g.begin(), g.begin() + 32, std::byte{0});
  CHECK_FALSE(judge_zero_header(g, 16384, Index(5), 1 << 20).torn);
  std::fill(g.begin(), g.begin() + 512, std::byte{0});
  auto u = judge_zero_header(g, 16384, Index(5), 1 << 20);
  CHECK_FALSE(u.torn);
  CHECK(u.why.find("first batch") != std::string::npos);
}

TEST_CASE("a file of zeros is a prepared, unused segment; a zero header before data is not") {
  std::vector<std::byte> f(4096);
  auto s = scan_segment(f, Index(0), 1 << 20);
  CHECK(s.unused);
  CHECK_FALSE(s.problem.has_value());
  f[3000] = std::byte{1};
  auto d = scan_segment(f, Index(0), 1 << 20);
  CHECK(d.zero_header);
  CHECK_FALSE(d.unused);
  CHECK(d.problem.has_value());
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
