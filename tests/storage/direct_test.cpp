// Small batches written with O_DIRECT from an aligned staging buffer: the block they share with
// earlier records is rewritten with the same bytes, larger batches stay buffered, and a file
// system that refuses O_DIRECT costs nothing but the speed.
#include <doctest/doctest.h>

#include <cerrno>

#include "storage/segmented_log.hpp"
#include "storage_test_util.hpp"

using namespace coraft;
using namespace coraft::storage;
using namespace coraft::storage::test;

namespace {

// Payload sizes that put record ends at many different offsets within a 4 KiB block.
std::size_t size_of(std::uint64_t index) {
  return (index * 977) % 2500;
}

std::vector<Entry> entries(std::uint64_t first, std::uint64_t last) {
  std::vector<Entry> out;
  for (std::uint64_t i = first; i <= last; ++i) out.push_back(make_entry(i, 1, size_of(i)));
  return out;
}

LogOptions options(const std::string& dir, std::uint32_t direct_bytes_max) {
  LogOptions o = small_options(dir);
  o.direct_bytes_max = direct_bytes_max;
  o.cache_bytes_max = 0;  // every read comes from the file
  return o;
}

// Reopens the log and checks that it recovered cleanly with entries 1..last intact.
void check_reopened(const std::string& dir, std::uint64_t last) {
  asio::io_context io;
  auto log = SegmentedLog::open(io.get_executor(), options(dir, 0));
  REQUIRE(log.ok());
  CHECK_FALSE((*log)->recovery().torn_file.has_value());
  REQUIRE((*log)->last_index() == Index(last));
  for (std::uint64_t i = 1; i <= last; ++i) {
    auto e = (*log)->read(Index(i));
    REQUIRE(e.ok());
    CHECK(payload_matches(*e, size_of(i)));
  }
}

}  // namespace

TEST_CASE(
    "small batches are written with O_DIRECT and read back the same, before and after reopening") {
  for (Sync how : {Sync::dsync, Sync::fdatasync}) {
    CAPTURE(how == Sync::dsync ? "RWF_DSYNC" : "linked fdatasync");
    TempDir dir;
    std::uint64_t last = 0;
    {
      asio::io_context io;
      // No batch below (three entries of at most 2.5 KiB) spans more than 12 KiB of blocks.
      LogOptions o = options(dir.path(), 16384);
      o.direct_sync = how;
      auto log = SegmentedLog::open(io.get_executor(), o);
      REQUIRE(log.ok());
      // Enough small batches to fill several 64 KiB segments.
      for (std::uint64_t n = 1; last < 200; n = n % 3 + 1) {
        REQUIRE(run(io, (*log)->append(entries(last + 1, last + n))).ok());
        last += n;
      }
      LogStats st = (*log)->stats();
      CHECK(st.batches > 0);
      CHECK(st.direct_batches == st.batches);
      for (std::uint64_t i = 1; i <= last; ++i) {
        auto e = (*log)->read(Index(i));
        REQUIRE(e.ok());
        CHECK(payload_matches(*e, size_of(i)));
      }
    }
    CHECK(files_in(dir.path()).size() > 2);
    check_reopened(dir.path(), last);
  }
}

TEST_CASE(
    "a batch too large for the staging buffer goes buffered, and the next direct batch keeps its "
    "bytes") {
  TempDir dir;
  {
    asio::io_context io;
    auto log = SegmentedLog::open(io.get_executor(), options(dir.path(), 4096));
    REQUIRE(log.ok());
    REQUIRE(run(io, (*log)->append(entries(1, 1))).ok());  // 1009 B: direct
    CHECK((*log)->stats().direct_batches == 1);
    REQUIRE(run(io, (*log)->append(entries(2, 6))).ok());  // about 7 KiB: buffered
    CHECK((*log)->stats().direct_batches == 1);
    // This one starts inside the block the buffered batch ended in, and rewrites that block.
    REQUIRE(run(io, (*log)->append(entries(7, 7))).ok());
    CHECK((*log)->stats().direct_batches == 2);
    REQUIRE(run(io, (*log)->append(entries(8, 8))).ok());
    LogStats st = (*log)->stats();
    CHECK(st.batches == 4);
    CHECK(st.direct_batches == 3);
  }
  check_reopened(dir.path(), 8);
}

TEST_CASE("direct_bytes_max 0 writes every batch buffered") {
  TempDir dir;
  {
    asio::io_context io;
    auto log = SegmentedLog::open(io.get_executor(), options(dir.path(), 0));
    REQUIRE(log.ok());
    for (std::uint64_t i = 1; i <= 20; ++i) REQUIRE(run(io, (*log)->append(entries(i, i))).ok());
    CHECK((*log)->stats().batches == 20);
    CHECK((*log)->stats().direct_batches == 0);
  }
  check_reopened(dir.path(), 20);
}

TEST_CASE("direct_bytes_max must be a multiple of 4096") {
  TempDir dir;
  asio::io_context io;
  auto log = SegmentedLog::open(io.get_executor(), options(dir.path(), 5000));
  REQUIRE_FALSE(log.ok());
  CHECK(log.error().is(Errc::invalid_argument));
  CHECK(log.error().detail.find("direct_bytes_max") != std::string::npos);
}

TEST_CASE(
    "an O_DIRECT write the file system refuses is written again buffered, and later batches stay "
    "buffered") {
  TempDir dir;
  {
    asio::io_context io;
    LogOptions o = options(dir.path(), 8192);
    int refusals = 0;
    o.fault = [&](FaultPoint p) {
      if (p != FaultPoint::write_batch || refusals > 0) return 0;
      ++refusals;
      return EINVAL;
    };
    auto log = SegmentedLog::open(io.get_executor(), o);
    REQUIRE(log.ok());
    for (std::uint64_t i = 1; i <= 10; ++i) REQUIRE(run(io, (*log)->append(entries(i, i))).ok());
    CHECK(refusals == 1);
    LogStats st = (*log)->stats();
    CHECK(st.batches == 10);
    CHECK(st.direct_batches == 0);
  }
  check_reopened(dir.path(), 10);
}

TEST_CASE("an EINVAL from a buffered batch still fails the append") {
  TempDir dir;
  asio::io_context io;
  LogOptions o = options(dir.path(), 0);
  o.fault = [](FaultPoint p) { return p == FaultPoint::write_batch ? EINVAL : 0; };
  auto log = SegmentedLog::open(io.get_executor(), o);
  REQUIRE(log.ok());
  auto r = run(io, (*log)->append(entries(1, 1)));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().is(Errc::storage_io));
  CHECK((*log)->last_index() == Index(0));
}
