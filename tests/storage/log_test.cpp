// The segmented log: appends, reads, rollover, truncation, compaction, limits and errors.
#include <doctest/doctest.h>

#include <atomic>
#include <cerrno>
#include <filesystem>

#include <coraft/log.hpp>

#include "storage/segmented_log.hpp"
#include "storage_test_util.hpp"

using namespace coraft;
using namespace coraft::storage;
using namespace coraft::storage::test;

namespace {

std::unique_ptr<SegmentedLog> open_log(asio::io_context& io, const LogOptions& o) {
  auto log = SegmentedLog::open(io.get_executor(), o);
  REQUIRE_MESSAGE(log.ok(), (log.ok() ? "" : log.error().message()));
  return std::move(*log);
}

Result<void> append(asio::io_context& io, SegmentedLog& log, std::vector<Entry> es) {
  return run(io, log.append(std::move(es)));
}

void check_range(SegmentedLog& log, std::uint64_t first, std::uint64_t last, std::size_t size) {
  for (std::uint64_t i = first; i <= last; ++i) {
    auto e = log.read(Index(i));
    REQUIRE_MESSAGE(e.ok(), "index ", i, ": ", (e.ok() ? "" : e.error().message()));
    CHECK(e->index == Index(i));
    CHECK(payload_matches(*e, size));
  }
}

}  // namespace

TEST_CASE("appended entries are readable with the same bytes, before and after reopening") {
  TempDir dir;
  asio::io_context io;
  {
    auto log = open_log(io, small_options(dir.path()));
    CHECK(log->last_index() == Index(0));
    REQUIRE(append(io, *log, make_entries(1, 10, 1, 100)).ok());
    REQUIRE(append(io, *log, make_entries(11, 11, 2, 0)).ok());
    CHECK(log->first_index() == Index(1));
    CHECK(log->last_index() == Index(11));
    check_range(*log, 1, 10, 100);
    CHECK(log->term_at(Index(11)).value() == Term(2));
  }
  auto log = open_log(io, small_options(dir.path()));
  CHECK(log->last_index() == Index(11));
  check_range(*log, 1, 10, 100);
  auto noop = log->read(Index(11));
  REQUIRE(noop.ok());
  CHECK(noop->type == EntryType::noop);
  CHECK(noop->term == Term(2));
  CHECK(noop->payload.empty());
  CHECK_FALSE(log->recovery().torn_file.has_value());
}

TEST_CASE("the cache hands back the appended payload buffer itself, not a copy") {
  TempDir dir;
  asio::io_context io;
  auto log = open_log(io, small_options(dir.path()));
  auto es = make_entries(1, 3, 1, 64);
  Bytes original = es[1].payload;
  REQUIRE(append(io, *log, std::move(es)).ok());
  auto e = log->read(Index(2));
  REQUIRE(e.ok());
  CHECK(e->payload.shares_owner_with(original));
}

TEST_CASE("reads past the bounded cache come from disk with the right bytes") {
  TempDir dir;
  asio::io_context io;
  auto o = small_options(dir.path());
  o.cache_bytes_max = 4096;
  auto log = open_log(io, o);
  auto es = make_entries(1, 100, 1, 500);
  Bytes first = es[0].payload;
  REQUIRE(append(io, *log, std::move(es)).ok());
  auto e = log->read(Index(1));
  REQUIRE(e.ok());
  CHECK_FALSE(e->payload.shares_owner_with(first));
  CHECK(payload_matches(*e, 500));
  auto range = log->read_range(Index(1), Index(100), 10 * 500);
  REQUIRE(range.ok());
  CHECK(range->size() == 10);
}

TEST_CASE("segments roll over at the configured size and are named by first and last index") {
  TempDir dir;
  asio::io_context io;
  {
    auto log = open_log(io, small_options(dir.path()));
    for (std::uint64_t i = 1; i <= 300; i += 10) REQUIRE(append(io, *log, make_entries(i, i + 9, 1, 1000)).ok());
  }
  auto names = files_in(dir.path());
  std::size_t closed = 0;
  for (const auto& n : names) closed += n.rfind("open-", 0) == 0 ? 0 : 1;
  CHECK(closed >= 4);
  CHECK(names.front().rfind("00000000000000000001-", 0) == 0);
  for (const auto& n : names) CHECK(std::filesystem::file_size(dir.path() + "/" + n) <= (64u << 10));
  auto log = open_log(io, small_options(dir.path()));
  CHECK(log->last_index() == Index(300));
  check_range(*log, 1, 300, 1000);
}

TEST_CASE("concurrent appends are coalesced into fewer write batches") {
  TempDir dir;
  asio::io_context io;
  auto log = open_log(io, small_options(dir.path()));
  int done = 0;
  for (std::uint64_t i = 1; i <= 50; ++i) {
    asio::co_spawn(io, log->append(make_entries(i, i, 1, 100)), [&](std::exception_ptr, Result<void> r) {
      CHECK(r.ok());
      ++done;
    });
  }
  io.run();
  CHECK(done == 50);
  CHECK(log->last_index() == Index(50));
  CHECK(log->stats().entries == 50);
  CHECK(log->stats().batches < 10);
}

TEST_CASE("an append that does not continue the log is refused") {
  TempDir dir;
  asio::io_context io;
  auto log = open_log(io, small_options(dir.path()));
  REQUIRE(append(io, *log, make_entries(1, 5, 2, 10)).ok());
  SUBCASE("a gap") { CHECK(append(io, *log, make_entries(7, 8, 2, 10)).error().is(Errc::invalid_argument)); }
  SUBCASE("an overlap") { CHECK(append(io, *log, make_entries(5, 6, 2, 10)).error().is(Errc::invalid_argument)); }
  SUBCASE("a lower term") { CHECK(append(io, *log, make_entries(6, 6, 1, 10)).error().is(Errc::invalid_argument)); }
  SUBCASE("an entry over entry_bytes_max") {
    CHECK(append(io, *log, make_entries(6, 6, 2, (8 << 10) + 1)).error().is(Errc::too_large));
  }
  CHECK(log->last_index() == Index(5));
  CHECK(append(io, *log, make_entries(6, 6, 2, 10)).ok());
}

TEST_CASE("an empty log accepts any first index and keeps it across reopening") {
  TempDir dir;
  asio::io_context io;
  {
    auto log = open_log(io, small_options(dir.path()));
    REQUIRE(append(io, *log, make_entries(1000, 1004, 3, 10)).ok());
  }
  auto log = open_log(io, small_options(dir.path()));
  CHECK(log->first_index() == Index(1000));
  CHECK(log->last_index() == Index(1004));
  check_range(*log, 1000, 1004, 10);
}

TEST_CASE("truncate_suffix removes entries within the open segment durably") {
  TempDir dir;
  asio::io_context io;
  {
    auto log = open_log(io, small_options(dir.path()));
    REQUIRE(append(io, *log, make_entries(1, 10, 1, 100)).ok());
    REQUIRE(run(io, log->truncate_suffix(Index(6))).ok());
    CHECK(log->last_index() == Index(5));
    CHECK(log->read(Index(6)).error().is(Errc::invalid_argument));
    REQUIRE(append(io, *log, make_entries(6, 8, 2, 50)).ok());
  }
  auto log = open_log(io, small_options(dir.path()));
  CHECK(log->last_index() == Index(8));
  check_range(*log, 1, 5, 100);
  check_range(*log, 6, 8, 50);
  CHECK(log->term_at(Index(6)).value() == Term(2));
}

TEST_CASE("truncate_suffix across segment boundaries deletes later segments") {
  TempDir dir;
  asio::io_context io;
  {
    auto log = open_log(io, small_options(dir.path()));
    for (std::uint64_t i = 1; i <= 200; i += 10) REQUIRE(append(io, *log, make_entries(i, i + 9, 1, 1000)).ok());
    REQUIRE(run(io, log->truncate_suffix(Index(30))).ok());
    CHECK(log->last_index() == Index(29));
    REQUIRE(append(io, *log, make_entries(30, 40, 2, 10)).ok());
  }
  auto log = open_log(io, small_options(dir.path()));
  CHECK(log->last_index() == Index(40));
  check_range(*log, 1, 29, 1000);
  check_range(*log, 30, 40, 10);
}

TEST_CASE("truncating everything empties the log, which may restart at another index") {
  TempDir dir;
  asio::io_context io;
  {
    auto log = open_log(io, small_options(dir.path()));
    REQUIRE(append(io, *log, make_entries(1, 100, 1, 1000)).ok());
    REQUIRE(run(io, log->truncate_suffix(Index(1))).ok());
    CHECK(log->last_index() < log->first_index());
    REQUIRE(append(io, *log, make_entries(500, 501, 4, 10)).ok());
  }
  auto log = open_log(io, small_options(dir.path()));
  CHECK(log->first_index() == Index(500));
  CHECK(log->last_index() == Index(501));
}

TEST_CASE("compact_prefix deletes whole segments covered by the snapshot index") {
  TempDir dir;
  asio::io_context io;
  {
    auto log = open_log(io, small_options(dir.path()));
    for (std::uint64_t i = 1; i <= 300; i += 10) REQUIRE(append(io, *log, make_entries(i, i + 9, 1, 1000)).ok());
    auto before = files_in(dir.path()).size();
    REQUIRE(run(io, log->compact_prefix(Index(150))).ok());
    CHECK(files_in(dir.path()).size() < before);
    CHECK(log->first_index() > Index(1));
    CHECK(log->first_index() <= Index(151));
    CHECK(log->read(Index(1)).error().is(Errc::invalid_argument));
    check_range(*log, log->first_index().value(), 300, 1000);
  }
  auto log = open_log(io, small_options(dir.path()));
  CHECK(log->first_index() <= Index(151));
  CHECK(log->last_index() == Index(300));
  check_range(*log, 151, 300, 1000);
}

TEST_CASE("reading many segments keeps at most open_files_max of them open") {
  TempDir dir;
  asio::io_context io;
  {
    auto log = open_log(io, small_options(dir.path()));
    for (std::uint64_t i = 1; i <= 400; i += 10) REQUIRE(append(io, *log, make_entries(i, i + 9, 1, 1000)).ok());
  }
  auto o = small_options(dir.path());
  o.open_files_max = 3;
  o.cache_bytes_max = 0;
  auto log = open_log(io, o);
  // Closed segment files this process holds open.
  auto closed_segment_fds = [&] {
    std::size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
      std::error_code ec;
      auto target = std::filesystem::read_symlink(e.path(), ec).string();
      bool segment = target.size() > 4 && target.substr(target.size() - 4) == ".log";
      if (!ec && segment && target.rfind(dir.path(), 0) == 0 && target.find("open-") == std::string::npos) ++n;
    }
    return n;
  };
  std::size_t most = 0;
  for (std::uint64_t i = 1; i <= 400; ++i) {
    auto e = log->read(Index(i));
    REQUIRE(e.ok());
    CHECK(payload_matches(*e, 1000));
    most = std::max(most, closed_segment_fds());
  }
  CHECK(most >= 2);
  CHECK(most <= 3);
}

TEST_CASE("a full disk while preparing a segment fails the append with disk_full and loses nothing") {
  TempDir dir;
  asio::io_context io;
  auto o = small_options(dir.path());
  auto full = std::make_shared<std::atomic<bool>>(false);
  o.fault = [full](FaultPoint p) { return p == FaultPoint::prepare_segment && full->load() ? ENOSPC : 0; };
  {
    auto log = open_log(io, o);
    REQUIRE(append(io, *log, make_entries(1, 10, 1, 1000)).ok());
    full->store(true);
    Result<void> r;
    std::uint64_t next = 11;
    for (int k = 0; k < 20 && r.ok(); ++k, next += 10) r = append(io, *log, make_entries(next, next + 9, 1, 1000));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().is(Errc::disk_full));
    Index last = log->last_index();
    check_range(*log, 1, last.value(), 1000);
    full->store(false);
    REQUIRE(append(io, *log, make_entries(last.value() + 1, last.value() + 10, 1, 1000)).ok());
    CHECK(log->last_index() == last + 10);
  }
  auto log = open_log(io, small_options(dir.path()));
  check_range(*log, 1, log->last_index().value(), 1000);
}

TEST_CASE("a failed batch write reports disk_full, is not acknowledged, and the log continues") {
  TempDir dir;
  asio::io_context io;
  auto o = small_options(dir.path());
  auto fail_next = std::make_shared<std::atomic<bool>>(false);
  o.fault = [fail_next](FaultPoint p) {
    return p == FaultPoint::write_batch && fail_next->exchange(false) ? ENOSPC : 0;
  };
  {
    auto log = open_log(io, o);
    REQUIRE(append(io, *log, make_entries(1, 5, 1, 100)).ok());
    fail_next->store(true);
    auto r = append(io, *log, make_entries(6, 10, 1, 100));
    CHECK(r.error().is(Errc::disk_full));
    CHECK(log->last_index() == Index(5));
    check_range(*log, 1, 5, 100);
    REQUIRE(append(io, *log, make_entries(6, 7, 2, 30)).ok());
  }
  auto log = open_log(io, small_options(dir.path()));
  CHECK(log->last_index() == Index(7));
  check_range(*log, 1, 5, 100);
  check_range(*log, 6, 7, 30);
}

TEST_CASE("the backend option selects the fallback thread") {
  TempDir dir;
  asio::io_context io;
  auto o = small_options(dir.path());
  o.backend = BackendKind::thread;
  auto log = open_log(io, o);
  CHECK(log->backend_name() == "thread");
  REQUIRE(append(io, *log, make_entries(1, 3, 1, 10)).ok());
  check_range(*log, 1, 3, 10);
}

TEST_CASE("fallocated segments work like pre-written ones") {
  TempDir dir;
  asio::io_context io;
  auto o = small_options(dir.path());
  o.prepare = SegmentPrepare::fallocate;
  {
    auto log = open_log(io, o);
    for (std::uint64_t i = 1; i <= 200; i += 10) REQUIRE(append(io, *log, make_entries(i, i + 9, 1, 1000)).ok());
  }
  auto log = open_log(io, o);
  check_range(*log, 1, 200, 1000);
}

TEST_CASE("inconsistent options are refused") {
  TempDir dir;
  asio::io_context io;
  auto o = small_options(dir.path());
  o.batch_bytes_max = 100;
  auto log = SegmentedLog::open(io.get_executor(), o);
  CHECK(log.error().is(Errc::invalid_argument));
}

TEST_CASE("a restart writes into the segment prepared before it instead of preparing a new one") {
  TempDir dir;
  asio::io_context io;
  std::string prepared;
  {
    auto log = open_log(io, small_options(dir.path()));
    REQUIRE(append(io, *log, make_entries(1, 3, 1, 100)).ok());
  }
  for (const auto& n : files_in(dir.path())) {
    auto h = read_bytes(dir.path() + "/" + n, 0, 8);
    if (n.rfind("open-", 0) == 0 && h[0] == std::byte{0}) prepared = n;
  }
  REQUIRE_FALSE(prepared.empty());
  auto log = open_log(io, small_options(dir.path()));
  REQUIRE(append(io, *log, make_entries(4, 4, 1, 100)).ok());
  auto h = read_bytes(dir.path() + "/" + prepared, 0, 8);
  CHECK(h[0] == std::byte{'c'});
}

TEST_CASE("when io_uring cannot be set up the log runs on the fallback thread and says so once") {
  std::string saved = std::getenv("CORAFT_STORAGE_BACKEND") ? std::getenv("CORAFT_STORAGE_BACKEND") : "";
  ::unsetenv("CORAFT_STORAGE_BACKEND");
  std::vector<std::string> lines;
  set_log_sink([&](LogLevel, std::string_view line) { lines.emplace_back(line); });
  TempDir dir1;
  TempDir dir2;
  asio::io_context io;
  auto o1 = small_options(dir1.path());
  o1.fault = [](FaultPoint p) { return p == FaultPoint::uring_setup ? ENOSYS : 0; };
  auto o2 = o1;
  o2.dir = dir2.path();
  auto log1 = open_log(io, o1);
  auto log2 = open_log(io, o2);
  CHECK(log1->backend_name() == "thread");
  CHECK(log2->backend_name() == "thread");
  REQUIRE(append(io, *log1, make_entries(1, 2, 1, 10)).ok());
  check_range(*log1, 1, 2, 10);
  std::size_t said = 0;
  for (const auto& l : lines) said += l.find("pwritev + fdatasync") != std::string::npos ? 1 : 0;
  CHECK(said == 1);
  SUBCASE("an explicit io_uring request fails instead of falling back") {
    TempDir dir3;
    auto o3 = o1;
    o3.dir = dir3.path();
    o3.backend = BackendKind::uring;
    auto log3 = SegmentedLog::open(io.get_executor(), o3);
    REQUIRE_FALSE(log3.ok());
    CHECK(log3.error().detail.find("io_uring") != std::string::npos);
  }
  set_log_sink({});
  if (!saved.empty()) ::setenv("CORAFT_STORAGE_BACKEND", saved.c_str(), 1);
}

TEST_CASE("appends beyond queue_bytes_max are refused with overloaded and memory does not grow") {
  TempDir dir;
  asio::io_context io;
  auto o = small_options(dir.path());
  o.queue_bytes_max = 10 << 10;
  auto log = open_log(io, o);
  std::vector<Result<void>> results(3);
  for (std::uint64_t i = 1; i <= 3; ++i) {
    asio::co_spawn(io, log->append(make_entries(i, i, 1, 6000)),
                   [&, i](std::exception_ptr, Result<void> r) { results[i - 1] = std::move(r); });
  }
  io.run();
  CHECK(results[0].ok());
  CHECK(results[1].error().is(Errc::overloaded));
  CHECK(results[2].error().is(Errc::invalid_argument));  // index 3 no longer follows index 1
  CHECK(log->last_index() == Index(1));
  CHECK(append(io, *log, make_entries(2, 2, 1, 6000)).ok());
}
