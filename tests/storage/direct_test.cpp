// Small batches written with O_DIRECT from an aligned staging buffer: the block they share with
// earlier records is rewritten with the same bytes, larger batches stay buffered, and a file
// system that refuses O_DIRECT costs nothing but the speed.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <optional>

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

namespace {

// How many of `path`'s pages are in the page cache.
std::size_t resident_pages(const std::string& path, std::size_t& pages) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  struct stat st {};
  REQUIRE(::fstat(fd, &st) == 0);
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const auto bytes = static_cast<std::size_t>(st.st_size);
  pages = (bytes + page - 1) / page;
  void* map = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  REQUIRE(map != MAP_FAILED);
  std::vector<unsigned char> in(pages);
  REQUIRE(::mincore(map, bytes, in.data()) == 0);
  ::munmap(map, bytes);
  std::size_t n = 0;
  for (unsigned char c : in) n += c & 1;
  return n;
}

}  // namespace

TEST_CASE("a segment is prepared ahead through O_DIRECT, past the page cache") {
  TempDir dir;
  asio::io_context io;
  LogOptions o = options(dir.path(), 16384);
  o.segment_bytes = 1u << 20;
  auto log = SegmentedLog::open(io.get_executor(), o);
  REQUIRE(log.ok());
  // Fill the first segment: writing into the second has the third prepared ahead.
  std::string ahead;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (std::uint64_t i = 1; ahead.empty() && std::chrono::steady_clock::now() < deadline; ++i) {
    REQUIRE(run(io, (*log)->append(entries(i, i))).ok());
    for (const auto& f : std::filesystem::directory_iterator(dir.path())) {
      const std::string name = f.path().filename().string();
      if (name.rfind("open-", 0) == 0 && name > "open-00000000000000000002" &&
          f.file_size() == o.segment_bytes) {
        ahead = f.path().string();
      }
    }
  }
  REQUIRE(!ahead.empty());
  io.run_for(std::chrono::milliseconds(50));  // the prewrite's sync
  std::size_t pages = 0;
  const std::size_t resident = resident_pages(ahead, pages);
  CAPTURE(ahead);
  CAPTURE(resident);
  // A buffered prewrite leaves all 256 pages of zeros in the page cache.
  CHECK(pages == 256);
  CHECK(resident * 8 < pages);
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
  for (int refusal : {EINVAL, EOPNOTSUPP}) {
    CAPTURE(refusal);
    TempDir dir;
    {
      asio::io_context io;
      LogOptions o = options(dir.path(), 8192);
      int refusals = 0;
      // The refusal comes before anything is written: the first batch of a segment, header
      // included, reaches the file only if it is written again.
      o.fault = [&](FaultPoint p) {
        if (p != FaultPoint::direct_write || refusals > 0) return 0;
        ++refusals;
        return refusal;
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
}

namespace {

// Opens a log whose `point` always fails with `err` and checks that the first append fails with
// storage_io and leaves the log empty.
void check_failed_append(std::uint32_t direct_bytes_max, FaultPoint point, int err) {
  TempDir dir;
  asio::io_context io;
  LogOptions o = options(dir.path(), direct_bytes_max);
  o.fault = [point, err](FaultPoint p) { return p == point ? err : 0; };
  auto log = SegmentedLog::open(io.get_executor(), o);
  REQUIRE(log.ok());
  auto r = run(io, (*log)->append(entries(1, 1)));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().is(Errc::storage_io));
  CHECK((*log)->last_index() == Index(0));
}

}  // namespace

TEST_CASE("other errors of an O_DIRECT write fail the append like those of a buffered one") {
  check_failed_append(8192, FaultPoint::direct_write, EIO);
}

TEST_CASE("an EINVAL from a buffered batch still fails the append") {
  check_failed_append(0, FaultPoint::write_batch, EINVAL);
}

TEST_CASE("an open segment found on open is synced before its records are believed") {
  TempDir dir;
  {
    asio::io_context io;
    auto log = SegmentedLog::open(io.get_executor(), options(dir.path(), 8192));
    REQUIRE(log.ok());
    REQUIRE(run(io, (*log)->append(entries(1, 5))).ok());
  }  // the active segment keeps its open name, as after a crash
  {
    asio::io_context io;
    LogOptions o = options(dir.path(), 8192);
    int syncs = 0;
    o.fault = [&](FaultPoint p) {
      if (p != FaultPoint::recovery_sync) return 0;
      ++syncs;
      return EIO;
    };
    auto log = SegmentedLog::open(io.get_executor(), o);
    // Check: a segment that cannot be made durable is not believed.
    REQUIRE_FALSE(log.ok());
    CHECK(log.error().is(Errc::storage_io));
    CHECK(log.error().detail.find("open-") != std::string::npos);
    CHECK(syncs == 1);
  }
  check_reopened(dir.path(), 5);
}

namespace {

// Cache flushes completed by the disk holding `dir`, when this machine says: the disk must have
// a volatile write cache (else the kernel sends no flushes) and no FUA (else a RWF_DSYNC write
// may be made durable without one), and report flushes in its stat file.
std::optional<std::uint64_t> device_flushes(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return std::nullopt;
  std::error_code ec;
  auto dev = std::filesystem::canonical(
      "/sys/dev/block/" + std::to_string(major(st.st_dev)) + ":" + std::to_string(minor(st.st_dev)),
      ec);
  if (ec) return std::nullopt;
  if (!std::filesystem::exists(dev / "queue", ec)) dev = dev.parent_path();  // a partition
  std::ifstream cache(dev / "queue" / "write_cache");
  std::string mode;
  std::getline(cache, mode);
  if (mode != "write back") return std::nullopt;
  std::ifstream fua(dev / "queue" / "fua");
  int has_fua = 1;
  if (!(fua >> has_fua) || has_fua != 0) return std::nullopt;
  std::ifstream stat_file(dev / "stat");
  std::vector<std::uint64_t> fields;
  for (std::uint64_t v = 0; stat_file >> v;) fields.push_back(v);
  if (fields.size() < 16) return std::nullopt;
  return fields[15];  // flush requests completed
}

}  // namespace

TEST_CASE("every durable write reaches the disk as a cache flush, direct or buffered") {
  TempDir dir;
  if (!device_flushes(dir.path())) {
    MESSAGE(
        "the disk under ", dir.path(),
        " has no volatile write cache, has FUA or reports no flush count: nothing to check here");
    return;
  }
  struct Mode {
    const char* name;
    std::uint32_t direct_bytes_max;
    Sync how;
  };
  for (Mode m :
       {Mode{"RWF_DSYNC", 8192, Sync::dsync}, Mode{"linked fdatasync", 8192, Sync::fdatasync},
        Mode{"buffered", 0, Sync::fdatasync}}) {
    CAPTURE(m.name);
    TempDir d;
    asio::io_context io;
    LogOptions o = options(d.path(), m.direct_bytes_max);
    o.direct_sync = m.how;
    auto log = SegmentedLog::open(io.get_executor(), o);
    REQUIRE(log.ok());
    REQUIRE(run(io, (*log)->append(entries(1, 1))).ok());  // the segment is prepared by now
    constexpr std::uint64_t writes = 20;
    auto before = device_flushes(d.path());
    for (std::uint64_t i = 2; i < 2 + writes; ++i)
      REQUIRE(run(io, (*log)->append(entries(i, i))).ok());
    auto after = device_flushes(d.path());
    REQUIRE(before.has_value());
    REQUIRE(after.has_value());
    // Other processes' flushes only add to the count; fewer than one per write means some
    // write was acknowledged without one.
    CHECK(*after - *before >= writes);
    CHECK((*log)->stats().direct_batches == (m.direct_bytes_max > 0 ? writes + 1 : 0));
  }
}
