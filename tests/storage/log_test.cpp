// The segmented log: appends, reads, rollover, truncation, compaction, limits and errors.
#include <doctest/doctest.h>

#include <sys/file.h>
#include <sys/resource.h>

#include <atomic>
#include <cerrno>
#include <filesystem>

#include <asio/detached.hpp>

#include <coraft/log.hpp>

#include "storage/file_util.hpp"
#include "storage/hard_state.hpp"
#include "storage/segmented_log.hpp"
#include "storage_test_util.hpp"

using namespace coraft;
using namespace coraft::storage;
using namespace coraft::storage::test;

namespace {

void check_range(SegmentedLog& log, std::uint64_t first, std::uint64_t last, std::size_t size) {
  for (std::uint64_t i = first; i <= last; ++i) {
    auto e = log.read(Index(i));
    REQUIRE_MESSAGE(e.ok(), "index ", i, ": ", (e.ok() ? "" : e.error().message()));
    CHECK(e->index == Index(i));
    CHECK(payload_matches(*e, size));
  }
}

// A fresh log directory and the io_context its logs run on.
struct LogTest {
  TempDir dir;
  asio::io_context io;

  [[nodiscard]] LogOptions options() const { return small_options(dir.path()); }

  std::unique_ptr<SegmentedLog> open_log(const LogOptions& o) {
    auto log = SegmentedLog::open(io.get_executor(), o);
    REQUIRE_MESSAGE(log.ok(), (log.ok() ? "" : log.error().message()));
    return std::move(*log);
  }
  std::unique_ptr<SegmentedLog> open_log() { return open_log(options()); }

  Result<void> append(SegmentedLog& log, std::vector<Entry> es) {
    return run(io, log.append(std::move(es)));
  }

  // Appends entries 1..last (a multiple of ten) ten at a time, 1000 bytes each, in term 1: enough
  // to fill several small segments.
  void fill(SegmentedLog& log, std::uint64_t last) {
    for (std::uint64_t i = 1; i <= last; i += 10) {
      REQUIRE(append(log, make_entries(i, i + 9, 1, 1000)).ok());
    }
  }

  // An entry as read back, and the payload buffer it was appended with.
  struct ReadBack {
    Entry entry;
    Bytes appended;
  };
  // Appends entries 1..last of `size` bytes in term 1, then reads entry `index` back.
  ReadBack append_and_read(SegmentedLog& log, std::uint64_t last, std::size_t size,
                           std::uint64_t index) {
    auto es = make_entries(1, last, 1, size);
    Bytes appended = es[index - 1].payload;
    REQUIRE(append(log, std::move(es)).ok());
    auto e = log.read(Index(index));
    REQUIRE(e.ok());
    return {std::move(*e), appended};
  }
};

}  // namespace

TEST_CASE_FIXTURE(LogTest,
                  "appended entries are readable with the same bytes, before and after reopening") {
  {
    auto log = open_log();
    CHECK(log->last_index() == Index(0));
    REQUIRE(append(*log, make_entries(1, 10, 1, 100)).ok());
    REQUIRE(append(*log, make_entries(11, 11, 2, 0)).ok());
    CHECK(log->first_index() == Index(1));
    CHECK(log->last_index() == Index(11));
    check_range(*log, 1, 10, 100);
    CHECK(log->term_at(Index(11)).value() == Term(2));
  }
  auto log = open_log();
  CHECK(log->last_index() == Index(11));
  check_range(*log, 1, 10, 100);
  auto noop = log->read(Index(11));
  REQUIRE(noop.ok());
  CHECK(noop->type == EntryType::noop);
  CHECK(noop->term == Term(2));
  CHECK(noop->payload.empty());
  CHECK_FALSE(log->recovery().torn_file.has_value());
}

TEST_CASE_FIXTURE(LogTest, "the cache hands back the appended payload buffer itself, not a copy") {
  auto log = open_log();
  auto r = append_and_read(*log, 3, 64, 2);
  CHECK(r.entry.payload.shares_owner_with(r.appended));
}

TEST_CASE_FIXTURE(LogTest, "reads past the bounded cache come from disk with the right bytes") {
  auto o = options();
  o.cache_bytes_max = 4096;
  auto log = open_log(o);
  auto r = append_and_read(*log, 100, 500, 1);
  CHECK_FALSE(r.entry.payload.shares_owner_with(r.appended));
  CHECK(payload_matches(r.entry, 500));
  auto range = log->read_range(Index(1), Index(100), 10 * 500);
  REQUIRE(range.ok());
  CHECK(range->size() == 10);
}

TEST_CASE_FIXTURE(
    LogTest, "segments roll over at the configured size and are named by first and last index") {
  {
    auto log = open_log();
    fill(*log, 300);
  }
  auto names = files_in(dir.path());
  std::size_t closed = 0;
  for (const auto& n : names) closed += n.rfind("open-", 0) == 0 ? 0 : 1;
  CHECK(closed >= 4);
  CHECK(names.front().rfind("00000000000000000001-", 0) == 0);
  for (const auto& n : names)
    CHECK(std::filesystem::file_size(dir.path() + "/" + n) <= (64u << 10));
  auto log = open_log();
  CHECK(log->last_index() == Index(300));
  check_range(*log, 1, 300, 1000);
}

TEST_CASE_FIXTURE(LogTest, "concurrent appends are coalesced into fewer write batches") {
  auto log = open_log();
  int done = 0;
  for (std::uint64_t i = 1; i <= 50; ++i) {
    asio::co_spawn(io, log->append(make_entries(i, i, 1, 100)),
                   [&](std::exception_ptr, Result<void> r) {
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

TEST_CASE_FIXTURE(LogTest, "an append that does not continue the log is refused") {
  auto log = open_log();
  REQUIRE(append(*log, make_entries(1, 5, 2, 10)).ok());
  SUBCASE("a gap") {
    CHECK(append(*log, make_entries(7, 8, 2, 10)).error().is(Errc::invalid_argument));
  }
  SUBCASE("an overlap") {
    CHECK(append(*log, make_entries(5, 6, 2, 10)).error().is(Errc::invalid_argument));
  }
  SUBCASE("a lower term") {
    CHECK(append(*log, make_entries(6, 6, 1, 10)).error().is(Errc::invalid_argument));
  }
  SUBCASE("an entry over entry_bytes_max") {
    CHECK(append(*log, make_entries(6, 6, 2, (8 << 10) + 1)).error().is(Errc::too_large));
  }
  CHECK(log->last_index() == Index(5));
  CHECK(append(*log, make_entries(6, 6, 2, 10)).ok());
}

TEST_CASE_FIXTURE(LogTest, "an empty log accepts any first index and keeps it across reopening") {
  {
    auto log = open_log();
    REQUIRE(append(*log, make_entries(1000, 1004, 3, 10)).ok());
  }
  auto log = open_log();
  CHECK(log->first_index() == Index(1000));
  CHECK(log->last_index() == Index(1004));
  check_range(*log, 1000, 1004, 10);
}

TEST_CASE_FIXTURE(LogTest, "truncate_suffix removes entries within the open segment durably") {
  {
    auto log = open_log();
    REQUIRE(append(*log, make_entries(1, 10, 1, 100)).ok());
    REQUIRE(run(io, log->truncate_suffix(Index(6))).ok());
    CHECK(log->last_index() == Index(5));
    CHECK(log->read(Index(6)).error().is(Errc::invalid_argument));
    REQUIRE(append(*log, make_entries(6, 8, 2, 50)).ok());
  }
  auto log = open_log();
  CHECK(log->last_index() == Index(8));
  check_range(*log, 1, 5, 100);
  check_range(*log, 6, 8, 50);
  CHECK(log->term_at(Index(6)).value() == Term(2));
}

TEST_CASE_FIXTURE(LogTest, "truncate_suffix across segment boundaries deletes later segments") {
  {
    auto log = open_log();
    fill(*log, 200);
    REQUIRE(run(io, log->truncate_suffix(Index(30))).ok());
    CHECK(log->last_index() == Index(29));
    REQUIRE(append(*log, make_entries(30, 40, 2, 10)).ok());
  }
  auto log = open_log();
  CHECK(log->last_index() == Index(40));
  check_range(*log, 1, 29, 1000);
  check_range(*log, 30, 40, 10);
}

TEST_CASE_FIXTURE(LogTest,
                  "truncating everything empties the log, which may restart at another index") {
  {
    auto log = open_log();
    REQUIRE(append(*log, make_entries(1, 100, 1, 1000)).ok());
    REQUIRE(run(io, log->truncate_suffix(Index(1))).ok());
    CHECK(log->last_index() < log->first_index());
    REQUIRE(append(*log, make_entries(500, 501, 4, 10)).ok());
  }
  auto log = open_log();
  CHECK(log->first_index() == Index(500));
  CHECK(log->last_index() == Index(501));
}

TEST_CASE_FIXTURE(LogTest, "compact_prefix deletes whole segments covered by the snapshot index") {
  {
    auto log = open_log();
    fill(*log, 300);
    auto before = files_in(dir.path()).size();
    REQUIRE(run(io, log->compact_prefix(Index(150))).ok());
    CHECK(files_in(dir.path()).size() < before);
    CHECK(log->first_index() > Index(1));
    CHECK(log->first_index() <= Index(151));
    CHECK(log->read(Index(1)).error().is(Errc::invalid_argument));
    check_range(*log, log->first_index().value(), 300, 1000);
  }
  auto log = open_log();
  CHECK(log->first_index() <= Index(151));
  CHECK(log->last_index() == Index(300));
  check_range(*log, 151, 300, 1000);
}

TEST_CASE_FIXTURE(LogTest, "reading many segments keeps at most open_files_max of them open") {
  {
    auto log = open_log();
    fill(*log, 400);
  }
  auto o = options();
  o.open_files_max = 3;
  o.cache_bytes_max = 0;
  auto log = open_log(o);
  // Closed segment files this process holds open.
  auto closed_segment_fds = [&] {
    std::size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
      std::error_code ec;
      auto target = std::filesystem::read_symlink(e.path(), ec).string();
      bool segment = target.size() > 4 && target.substr(target.size() - 4) == ".log";
      if (!ec && segment && target.rfind(dir.path(), 0) == 0 &&
          target.find("open-") == std::string::npos)
        ++n;
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

TEST_CASE_FIXTURE(
    LogTest,
    "a full disk while preparing a segment fails the append with disk_full and loses nothing") {
  auto o = options();
  auto full = std::make_shared<std::atomic<bool>>(false);
  o.fault = [full](FaultPoint p) {
    return p == FaultPoint::prepare_segment && full->load() ? ENOSPC : 0;
  };
  {
    auto log = open_log(o);
    REQUIRE(append(*log, make_entries(1, 10, 1, 1000)).ok());
    full->store(true);
    Result<void> r;
    std::uint64_t next = 11;
    for (int k = 0; k < 20 && r.ok(); ++k, next += 10)
      r = append(*log, make_entries(next, next + 9, 1, 1000));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().is(Errc::disk_full));
    Index last = log->last_index();
    check_range(*log, 1, last.value(), 1000);
    full->store(false);
    REQUIRE(append(*log, make_entries(last.value() + 1, last.value() + 10, 1, 1000)).ok());
    CHECK(log->last_index() == last + 10);
  }
  auto log = open_log();
  check_range(*log, 1, log->last_index().value(), 1000);
}

TEST_CASE_FIXTURE(
    LogTest, "a failed batch write reports disk_full, is not acknowledged, and the log continues") {
  auto o = options();
  auto fail_next = std::make_shared<std::atomic<bool>>(false);
  o.fault = [fail_next](FaultPoint p) {
    return p == FaultPoint::write_batch && fail_next->exchange(false) ? ENOSPC : 0;
  };
  {
    auto log = open_log(o);
    REQUIRE(append(*log, make_entries(1, 5, 1, 100)).ok());
    fail_next->store(true);
    auto r = append(*log, make_entries(6, 10, 1, 100));
    CHECK(r.error().is(Errc::disk_full));
    CHECK(log->last_index() == Index(5));
    check_range(*log, 1, 5, 100);
    REQUIRE(append(*log, make_entries(6, 7, 2, 30)).ok());
  }
  auto log = open_log();
  CHECK(log->last_index() == Index(7));
  check_range(*log, 1, 5, 100);
  check_range(*log, 6, 7, 30);
}

namespace {

// Whether any open-N segment in `dir` holds a nonzero byte (an open segment holding data).
bool open_segment_with_data(const std::string& dir) {
  for (const auto& n : files_in(dir)) {
    if (n.rfind("open-", 0) != 0) continue;
    auto size = std::filesystem::file_size(dir + "/" + n);
    auto b = read_bytes(dir + "/" + n, 0, size);
    if (std::any_of(b.begin(), b.end(), [](std::byte x) { return x != std::byte{0}; })) return true;
  }
  return false;
}

}  // namespace

TEST_CASE_FIXTURE(LogTest,
                  "an append failing with disk_full after some of its batches were written leaves "
                  "none of its entries, durably, and the same append succeeds when retried") {
  auto o = options();
  o.batch_entries_max = 4;  // an append of 10 entries takes three batches
  auto batches = std::make_shared<std::atomic<int>>(0);
  auto fail_at = std::make_shared<std::atomic<int>>(-1);
  o.fault = [batches, fail_at](FaultPoint p) {
    if (p != FaultPoint::write_batch) return 0;
    return batches->fetch_add(1) + 1 == fail_at->load() ? ENOSPC : 0;
  };
  std::string copy;
  TempDir snapshot_dir;
  {
    auto log = open_log(o);
    REQUIRE(append(*log, make_entries(1, 5, 1, 100)).ok());
    SUBCASE("the second batch fails") {
      fail_at->store(batches->load() + 2);
    }
    SUBCASE("the third batch fails") {
      fail_at->store(batches->load() + 3);
    }
    auto r = append(*log, make_entries(6, 15, 1, 100));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().is(Errc::disk_full));
    CHECK(log->last_index() == Index(5));
    check_range(*log, 1, 5, 100);
    CHECK_FALSE(log->read(Index(6)).ok());
    // By the time the failure is returned the cut is durable and the segment that took the
    // failed batch is closed: a crash now (a copy of the directory) reopens to entry 5.
    CHECK_FALSE(open_segment_with_data(dir.path()));
    std::filesystem::copy(dir.path(), snapshot_dir.path(),
                          std::filesystem::copy_options::recursive |
                              std::filesystem::copy_options::overwrite_existing);
    std::filesystem::remove(snapshot_dir.path() + "/lock");
    REQUIRE(append(*log, make_entries(6, 15, 1, 100)).ok());
    CHECK(log->last_index() == Index(15));
  }
  {
    asio::io_context io2;
    auto crashed = SegmentedLog::open(io2.get_executor(), small_options(snapshot_dir.path()));
    REQUIRE(crashed.ok());
    CHECK((*crashed)->last_index() == Index(5));
  }
  auto log = open_log();
  CHECK(log->last_index() == Index(15));
  check_range(*log, 1, 15, 100);
}

TEST_CASE_FIXTURE(LogTest,
                  "a full disk while preparing the next segment fails a spanning append whole") {
  auto o = options();
  auto full = std::make_shared<std::atomic<bool>>(false);
  o.fault = [full](FaultPoint p) {
    return p == FaultPoint::prepare_segment && full->load() ? ENOSPC : 0;
  };
  {
    auto log = open_log(o);
    REQUIRE(append(*log, make_entries(1, 50, 1, 1000)).ok());  // most of the first segment
    full->store(true);
    // 51..63 fill the first segment and 64..126 the second (prepared at open); 127.. need a
    // third, which cannot be prepared.
    auto r = append(*log, make_entries(51, 140, 1, 1000));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().is(Errc::disk_full));
    CHECK(log->last_index() == Index(50));
    CHECK_FALSE(log->read(Index(51)).ok());
    full->store(false);
    REQUIRE(append(*log, make_entries(51, 140, 1, 1000)).ok());
  }
  auto log = open_log();
  CHECK(log->last_index() == Index(140));
  check_range(*log, 1, 140, 1000);
}

TEST_CASE_FIXTURE(LogTest, "the backend option selects the fallback thread") {
  auto o = options();
  o.backend = BackendKind::thread;
  auto log = open_log(o);
  CHECK(log->backend_name() == "thread");
  REQUIRE(append(*log, make_entries(1, 3, 1, 10)).ok());
  check_range(*log, 1, 3, 10);
}

TEST_CASE_FIXTURE(LogTest, "fallocated segments work like pre-written ones") {
  auto o = options();
  o.prepare = SegmentPrepare::fallocate;
  {
    auto log = open_log(o);
    fill(*log, 200);
  }
  auto log = open_log(o);
  check_range(*log, 1, 200, 1000);
}

TEST_CASE_FIXTURE(LogTest, "inconsistent options are refused") {
  auto o = options();
  o.batch_bytes_max = 100;
  auto log = SegmentedLog::open(io.get_executor(), o);
  CHECK(log.error().is(Errc::invalid_argument));
}

TEST_CASE_FIXTURE(
    LogTest,
    "a restart writes into the segment prepared before it instead of preparing a new one") {
  std::string prepared;
  {
    auto log = open_log();
    REQUIRE(append(*log, make_entries(1, 3, 1, 100)).ok());
  }
  for (const auto& n : files_in(dir.path())) {
    auto h = read_bytes(dir.path() + "/" + n, 0, 8);
    if (n.rfind("open-", 0) == 0 && h[0] == std::byte{0}) prepared = n;
  }
  REQUIRE_FALSE(prepared.empty());
  auto log = open_log();
  REQUIRE(append(*log, make_entries(4, 4, 1, 100)).ok());
  auto h = read_bytes(dir.path() + "/" + prepared, 0, 8);
  CHECK(h[0] == std::byte{'c'});
}

TEST_CASE_FIXTURE(
    LogTest,
    "when io_uring cannot be set up the log runs on the fallback thread and says so once") {
  std::string saved =
      std::getenv("CORAFT_STORAGE_BACKEND") ? std::getenv("CORAFT_STORAGE_BACKEND") : "";
  ::unsetenv("CORAFT_STORAGE_BACKEND");
  std::vector<std::string> lines;
  set_log_sink([&](LogLevel, std::string_view line) { lines.emplace_back(line); });
  TempDir dir2;
  auto o1 = options();
  o1.fault = [](FaultPoint p) { return p == FaultPoint::uring_setup ? ENOSYS : 0; };
  auto o2 = o1;
  o2.dir = dir2.path();
  auto log1 = open_log(o1);
  auto log2 = open_log(o2);
  CHECK(log1->backend_name() == "thread");
  CHECK(log2->backend_name() == "thread");
  REQUIRE(append(*log1, make_entries(1, 2, 1, 10)).ok());
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

TEST_CASE_FIXTURE(
    LogTest,
    "appends beyond queue_bytes_max are refused with overloaded and memory does not grow") {
  auto o = options();
  o.queue_bytes_max = 10 << 10;
  auto log = open_log(o);
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
  CHECK(append(*log, make_entries(2, 2, 1, 6000)).ok());
}

TEST_CASE("a second log on the same directory is refused while the first is open") {
  TempDir dir;
  asio::io_context io;
  auto first = SegmentedLog::open(io.get_executor(), small_options(dir.path()));
  REQUIRE(first.ok());
  REQUIRE(run(io, (*first)->append(make_entries(1, 3, 1, 100))).ok());
  auto second = SegmentedLog::open(io.get_executor(), small_options(dir.path()));
  REQUIRE_FALSE(second.ok());
  CHECK(second.error().is(Errc::storage_io));
  CHECK(second.error().detail.find(dir.path() + "/lock") != std::string::npos);
  // The first log is untouched and keeps working; once it closes, the directory opens again.
  REQUIRE(run(io, (*first)->append(make_entries(4, 4, 1, 100))).ok());
  first->reset();
  auto third = SegmentedLog::open(io.get_executor(), small_options(dir.path()));
  REQUIRE(third.ok());
  CHECK((*third)->last_index() == Index(4));
}

namespace {

// Whether another open file description can take an exclusive flock on `path` now.
bool lockable(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR);
  REQUIRE(fd >= 0);
  bool ok = ::flock(fd, LOCK_EX | LOCK_NB) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

TEST_CASE_FIXTURE(LogTest,
                  "with io_uring a lock stays held after its descriptor is closed, until the ring "
                  "is gone") {
  // A killed process's descriptors close at once while its ring's writes may still be landing:
  // the lock registered with the ring must outlive the descriptor.
  auto ring = make_uring_backend(io.get_executor());
  if (!ring.ok()) {
    MESSAGE("io_uring cannot be set up here: ", ring.error().message());
    return;
  }
  std::string path = dir.path() + "/lock";
  auto held = lock_file(path);
  REQUIRE(held.ok());
  const auto owner = (*ring)->open_owner();
  REQUIRE((*ring)->hold_until_gone(owner, held->get()).ok());
  held->reset();
  CHECK_FALSE(lockable(path));
  ring->reset();
  CHECK(lockable(path));
  // The thread backend's writes end with the process: closing the descriptor frees the lock.
  auto thread = make_thread_backend(io.get_executor());
  auto again = lock_file(path);
  REQUIRE(again.ok());
  REQUIRE(thread->hold_until_gone(thread->open_owner(), again->get()).ok());
  again->reset();
  CHECK(lockable(path));
}

TEST_CASE_FIXTURE(LogTest, "an owner closed on a shared ring lets go of its held files at once") {
  auto ring = make_uring_backend(io.get_executor());
  if (!ring.ok()) {
    MESSAGE("io_uring cannot be set up here: ", ring.error().message());
    return;
  }
  std::string first_path = dir.path() + "/first";
  std::string second_path = dir.path() + "/second";
  auto first = lock_file(first_path);
  auto second = lock_file(second_path);
  REQUIRE(first.ok());
  REQUIRE(second.ok());
  const auto a = (*ring)->open_owner();
  const auto b = (*ring)->open_owner();
  REQUIRE((*ring)->hold_until_gone(a, first->get()).ok());
  REQUIRE((*ring)->hold_until_gone(b, second->get()).ok());
  first->reset();
  second->reset();
  CHECK_FALSE(lockable(first_path));
  (*ring)->close_owner(a);
  CHECK(lockable(first_path));
  CHECK_FALSE(lockable(second_path));  // the other owner still holds its own
  (*ring)->close_owner(b);
  CHECK(lockable(second_path));
}

TEST_CASE_FIXTURE(LogTest, "a hard state file is held by one opener at a time") {
  auto first = HardStateFile::open(io.get_executor(), dir.path());
  REQUIRE(first.ok());
  auto second = HardStateFile::open(io.get_executor(), dir.path());
  REQUIRE_FALSE(second.ok());
  CHECK(second.error().is(Errc::storage_io));
  CHECK(second.error().detail.find("locked") != std::string::npos);
}

namespace {

std::size_t thread_count() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

}  // namespace

TEST_CASE_FIXTURE(LogTest,
                  "logs and hard states on one io_context share one writer thread and one file "
                  "worker") {
  auto a_options = small_options(dir.path() + "/a");
  a_options.backend = BackendKind::thread;
  auto b_options = small_options(dir.path() + "/b");
  b_options.backend = BackendKind::thread;
  HardStateOptions hs_options;
  hs_options.backend = BackendKind::thread;
  // The first log and hard state start the writer thread and the file worker...
  auto a = open_log(a_options);
  auto hs_a = HardStateFile::open(io.get_executor(), dir.path() + "/a", hs_options);
  REQUIRE(hs_a.ok());
  const std::size_t after_first = thread_count();
  // ...and the second pair uses the same two (each would bring two threads of its own).
  auto b = open_log(b_options);
  auto hs_b = HardStateFile::open(io.get_executor(), dir.path() + "/b", hs_options);
  REQUIRE(hs_b.ok());
  CHECK(thread_count() == after_first);
  CHECK(a->backend_name() == "thread");

  // Writes of all four owners in flight together complete, each with its own outcome.
  int done = 0;
  auto spawn = [&](asio::awaitable<Result<void>> op) {
    asio::co_spawn(
        io,
        [&, op = std::move(op)]() mutable -> asio::awaitable<void> {
          auto r = co_await std::move(op);
          CHECK(r.ok());
          ++done;
        },
        asio::detached);
  };
  spawn(a->append(make_entries(1, 10, 1, 1000)));
  spawn(b->append(make_entries(1, 20, 1, 1000)));
  spawn(hs_a->save(HardState{Term(3), NodeId(1)}));
  spawn(hs_b->save(HardState{Term(4), NodeId(2)}));
  io.run();
  io.restart();
  CHECK(done == 4);
  CHECK(a->last_index() == Index(10));
  CHECK(b->last_index() == Index(20));
  CHECK(hs_b->current().term == Term(4));
}

TEST_CASE_FIXTURE(LogTest,
                  "closing one log leaves another's writes on the shared backend to complete") {
  for (BackendKind kind : {BackendKind::uring, BackendKind::thread}) {
    CAPTURE(static_cast<int>(kind));
    if (kind == BackendKind::uring && !make_uring_backend(io.get_executor()).ok()) continue;
    const std::string sub = dir.path() + "/" + std::to_string(static_cast<int>(kind));
    auto a_options = small_options(sub + "/a");
    a_options.backend = kind;
    auto b_options = small_options(sub + "/b");
    b_options.backend = kind;
    auto a = open_log(a_options);
    auto b = open_log(b_options);
    std::optional<Result<void>> a_result;
    std::optional<Result<void>> b_result;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          a_result = co_await a->append(make_entries(1, 50, 1, 4000));
        },
        asio::detached);
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          b_result = co_await b->append(make_entries(1, 50, 1, 4000));
        },
        asio::detached);
    // Both batches reach the backend; then the first log closes with its write in flight.
    io.poll();
    a.reset();
    io.run();
    io.restart();
    REQUIRE(b_result.has_value());
    CHECK(b_result->ok());
    CHECK(b->last_index() == Index(50));
    // The closed log's append either finished before it closed or was told it is closing.
    if (a_result) CHECK((a_result->ok() || a_result->error().code == Errc::shutting_down));
    // What it wrote before it closed is a prefix of its append, and the log opens again.
    auto reopened = open_log(a_options);
    CHECK(reopened->last_index() <= Index(50));
  }
}

TEST_CASE_FIXTURE(LogTest, "io_uring holds files under a low open-file limit") {
  rlimit saved{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved) == 0);
  rlimit low = saved;
  low.rlim_cur = std::min<rlim_t>(saved.rlim_cur, 200);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
  auto ring = make_uring_backend(io.get_executor());
  if (ring.ok()) {
    auto held = lock_file(dir.path() + "/lock");
    REQUIRE(held.ok());
    // A table as large as the default would be refused above the limit.
    CHECK((*ring)->hold_until_gone((*ring)->open_owner(), held->get()).ok());
  } else {
    MESSAGE("io_uring cannot be set up here: ", ring.error().message());
  }
  ring = make_uring_backend(io.get_executor());  // releases the first ring
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &saved) == 0);
}
