// Damage to segment files: each kind is detected as format.hpp specifies, never returned as data.
#include <doctest/doctest.h>

#include <filesystem>

#include "storage/format.hpp"
#include "storage/segmented_log.hpp"
#include "storage_test_util.hpp"

using namespace coraft;
using namespace coraft::storage;
using namespace coraft::storage::test;

namespace {

constexpr std::size_t payload_bytes = 1000;
constexpr std::uint64_t record_bytes = record_header_bytes + payload_bytes;  // already 8-aligned
constexpr std::uint64_t entries_total = 300;

// Writes entries 1..300 in batches of 10 and closes the log: four full closed segments of 63
// entries and an open one holding the last 48.
void build_log(const std::string& dir) {
  asio::io_context io;
  auto log = SegmentedLog::open(io.get_executor(), small_options(dir));
  REQUIRE(log.ok());
  for (std::uint64_t i = 1; i <= entries_total; i += 10) {
    REQUIRE(run(io, (*log)->append(make_entries(i, i + 9, 1, payload_bytes))).ok());
  }
}

// The open segment holding data (its header is not zero).
std::string newest_segment(const std::string& dir) {
  std::string best;
  for (const auto& n : files_in(dir)) {
    if (n.rfind("open-", 0) != 0) continue;
    auto h = read_bytes(dir + "/" + n, 0, segment_header_bytes);
    bool zero = std::all_of(h.begin(), h.end(), [](std::byte b) { return b == std::byte{0}; });
    if (!zero) best = n;
  }
  REQUIRE_FALSE(best.empty());
  return dir + "/" + best;
}

std::string closed_segment(const std::string& dir, std::size_t k) {
  std::vector<std::string> closed;
  for (const auto& n : files_in(dir)) {
    if (n.rfind("open-", 0) != 0) closed.push_back(n);
  }
  REQUIRE(closed.size() > k);
  return dir + "/" + closed[k];
}

std::uint64_t record_offset(std::uint64_t k) {
  return segment_header_bytes + k * record_bytes;
}

Result<std::unique_ptr<SegmentedLog>> reopen(asio::io_context& io, const std::string& dir,
                                             bool repair = false) {
  auto o = small_options(dir);
  o.repair = repair;
  return SegmentedLog::open(io.get_executor(), o);
}

void check_entries(SegmentedLog& log, std::uint64_t last) {
  CHECK(log.last_index() == Index(last));
  for (std::uint64_t i = 1; i <= last; ++i) {
    auto e = log.read(Index(i));
    REQUIRE(e.ok());
    CHECK(payload_matches(*e, payload_bytes));
  }
}

}  // namespace

TEST_CASE("a flipped byte in a closed segment refuses to open, naming file and offset") {
  TempDir dir;
  build_log(dir.path());
  std::string seg = closed_segment(dir.path(), 1);
  flip_byte(seg, record_offset(5) + record_header_bytes + 17);
  asio::io_context io;
  auto log = reopen(io, dir.path());
  REQUIRE_FALSE(log.ok());
  CHECK(log.error().is(Errc::storage_corrupt));
  CHECK(log.error().detail.find(seg + " offset " + std::to_string(record_offset(5))) !=
        std::string::npos);
}

TEST_CASE("a flipped byte in the newest segment with later records behind it is corruption") {
  TempDir dir;
  build_log(dir.path());
  std::string seg = newest_segment(dir.path());
  flip_byte(seg, record_offset(2) + 9);  // the term of the third record
  asio::io_context io;
  auto log = reopen(io, dir.path());
  REQUIRE_FALSE(log.ok());
  CHECK(log.error().is(Errc::storage_corrupt));
  CHECK(log.error().detail.find(seg + " offset " + std::to_string(record_offset(2))) !=
        std::string::npos);
}

TEST_CASE("a zeroed tail of the newest segment is cut off and reported") {
  TempDir dir;
  build_log(dir.path());
  std::string seg = newest_segment(dir.path());
  std::uint64_t from = record_offset(45) + 100;  // inside the fourth-to-last record's payload
  write_bytes(seg, from, std::vector<std::byte>(std::filesystem::file_size(seg) - from));
  asio::io_context io;
  auto log = reopen(io, dir.path());
  REQUIRE(log.ok());
  REQUIRE((*log)->recovery().torn_file.has_value());
  CHECK(*(*log)->recovery().torn_file == seg);
  CHECK((*log)->recovery().torn_offset == record_offset(45));
  check_entries(**log, entries_total - 3);
}

TEST_CASE("a newest segment shorter than it was prepared at refuses to open, wherever it ends") {
  // Segments are prepared at full size and an open one never shrinks: a crash cannot cut one.
  for (std::uint64_t end : {record_offset(47) + 500, record_offset(40)}) {
    CAPTURE(end);
    TempDir dir;
    build_log(dir.path());
    std::string seg = newest_segment(dir.path());
    std::filesystem::resize_file(seg, end);
    asio::io_context io;
    auto log = reopen(io, dir.path());
    REQUIRE_FALSE(log.ok());
    CHECK(log.error().is(Errc::storage_corrupt));
    CHECK(log.error().detail.find(seg + " offset " + std::to_string(end)) != std::string::npos);
    CHECK(log.error().detail.find("truncated") != std::string::npos);
  }
}

TEST_CASE(
    "a torn tail is cut only after its segment is closed, and the log takes appends after it") {
  TempDir dir;
  build_log(dir.path());
  std::string seg = newest_segment(dir.path());
  // The last record's last sector never reached the disk.
  write_bytes(seg, (record_offset(47) + 600) & ~std::uint64_t{511}, std::vector<std::byte>(512));
  asio::io_context io;
  {
    auto log = reopen(io, dir.path());
    REQUIRE(log.ok());
    CHECK((*log)->recovery().torn_offset == record_offset(47));
    check_entries(**log, entries_total - 1);
    std::string closed = dir.path() + "/" + closed_segment_name(Index(253), Index(299));
    REQUIRE(std::filesystem::exists(closed));
    CHECK(std::filesystem::file_size(closed) == record_offset(47));
    REQUIRE(run(io, (*log)->append(make_entries(300, 305, 1, payload_bytes))).ok());
  }
  auto log = reopen(io, dir.path());
  REQUIRE(log.ok());
  CHECK_FALSE((*log)->recovery().torn_file.has_value());
  check_entries(**log, 305);
}

TEST_CASE("a missing segment refuses to open, naming the segment after the gap") {
  TempDir dir;
  build_log(dir.path());
  std::string gone = closed_segment(dir.path(), 1);
  std::string after = closed_segment(dir.path(), 2);
  std::filesystem::remove(gone);
  asio::io_context io;
  auto log = reopen(io, dir.path());
  REQUIRE_FALSE(log.ok());
  CHECK(log.error().is(Errc::storage_corrupt));
  CHECK(log.error().detail.find(after) != std::string::npos);
  CHECK(log.error().detail.find("missing") != std::string::npos);
}

TEST_CASE("a damaged segment header refuses to open") {
  TempDir dir;
  build_log(dir.path());
  std::string seg = closed_segment(dir.path(), 0);
  flip_byte(seg, 3);
  asio::io_context io;
  auto log = reopen(io, dir.path());
  REQUIRE_FALSE(log.ok());
  CHECK(log.error().detail.find(seg + " offset 0") != std::string::npos);
}

TEST_CASE("the repair option cuts the log at the first damaged record") {
  TempDir dir;
  build_log(dir.path());
  std::string seg = closed_segment(dir.path(), 1);  // entries 64..126
  flip_byte(seg, record_offset(10) + 40);
  asio::io_context io;
  {
    auto log = reopen(io, dir.path(), true);
    REQUIRE(log.ok());
    REQUIRE((*log)->recovery().repaired.has_value());
    CHECK((*log)->recovery().repaired->find(seg) != std::string::npos);
    check_entries(**log, 63 + 10);
  }
  auto log = reopen(io, dir.path());
  REQUIRE(log.ok());
  check_entries(**log, 63 + 10);
}

TEST_CASE(
    "a full segment left open by a crash during rollover reopens, even with under a header of room "
    "left") {
  // 62 records of 1032 bytes and one of 1496 after the 32-byte header leave 24 bytes of a
  // 64 KiB segment: too few for another record header, so the next append rolls over.
  TempDir dir;
  {
    asio::io_context io;
    auto log = SegmentedLog::open(io.get_executor(), small_options(dir.path()));
    REQUIRE(log.ok());
    REQUIRE(run(io, (*log)->append(make_entries(1, 62, 1, payload_bytes))).ok());
    REQUIRE(run(io, (*log)->append(make_entries(63, 63, 1, 1464))).ok());
    REQUIRE(run(io, (*log)->append(make_entries(64, 70, 1, payload_bytes))).ok());
  }
  std::string full = closed_segment(dir.path(), 0);
  REQUIRE(std::filesystem::path(full).filename() == closed_segment_name(Index(1), Index(63)));
  REQUIRE(std::filesystem::file_size(full) - (segment_header_bytes + 62 * record_bytes + 1496) ==
          24);
  // The crash came before the rename: the full segment still has an open name, older than the next.
  std::filesystem::rename(full, dir.path() + "/" + open_segment_name(0));
  asio::io_context io;
  auto log = reopen(io, dir.path());
  REQUIRE(log.ok());
  CHECK_FALSE((*log)->recovery().torn_file.has_value());
  CHECK((*log)->last_index() == Index(70));
  auto e = (*log)->read(Index(63));
  REQUIRE(e.ok());
  CHECK(payload_matches(*e, 1464));
  CHECK(payload_matches(*(*log)->read(Index(70)), payload_bytes));
}
