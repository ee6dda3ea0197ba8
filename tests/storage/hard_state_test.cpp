// The hard-state file: alternating CRC'd slots, saved through the disk backend (the fallback
// registration of these tests runs them on the thread backend).
#include <doctest/doctest.h>

#include <cerrno>
#include <cstring>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>

#include "storage/hard_state.hpp"
#include "storage/segmented_log.hpp"
#include "storage_test_util.hpp"

using namespace coraft;
using namespace coraft::storage;
using namespace coraft::storage::test;

namespace {

HardStateFile open_hs(asio::io_context& io, const std::string& dir, HardStateOptions o = {}) {
  auto hs = HardStateFile::open(io.get_executor(), dir, std::move(o));
  REQUIRE_MESSAGE(hs.ok(), (hs.ok() ? "" : hs.error().message()));
  return std::move(*hs);
}

Result<void> save(asio::io_context& io, HardStateFile& hs, HardState s) {
  return run(io, hs.save(s));
}

// Starts a save without waiting for it; its outcome lands in `out`.
void spawn_save(asio::io_context& io, HardStateFile& hs, HardState s,
                std::optional<Result<void>>& out) {
  asio::co_spawn(io, hs.save(s), [&out](std::exception_ptr e, Result<void> r) {
    REQUIRE_FALSE(e);
    out = std::move(r);
  });
}

}  // namespace

TEST_CASE("a fresh hard state is term 0 with no vote, and saves survive reopening") {
  TempDir dir;
  asio::io_context io;
  {
    auto hs = open_hs(io, dir.path());
    CHECK(hs.current() == HardState{Term(0), no_node});
    REQUIRE(save(io, hs, {Term(3), NodeId(2)}).ok());
    CHECK(hs.current() == HardState{Term(3), NodeId(2)});
    REQUIRE(save(io, hs, {Term(4), NodeId(5)}).ok());
    REQUIRE(save(io, hs, {Term(7), no_node}).ok());
  }
  auto hs = open_hs(io, dir.path());
  CHECK(hs.current() == HardState{Term(7), no_node});
  CHECK_FALSE(hs.damaged_slot().has_value());
  auto ro = HardStateFile::open_read_only(dir.path());
  REQUIRE(ro.ok());
  CHECK(ro->current() == HardState{Term(7), no_node});
}

TEST_CASE("saves started together are written one after another, in call order") {
  TempDir dir;
  asio::io_context io;
  auto hs = open_hs(io, dir.path());
  std::vector<std::optional<Result<void>>> out(5);
  for (std::uint64_t i = 0; i < out.size(); ++i)
    spawn_save(io, hs, {Term(10 + i), NodeId(i + 1)}, out[i]);
  io.run();
  for (auto& r : out) {
    REQUIRE(r.has_value());
    CHECK(r->ok());
  }
  CHECK(hs.current() == HardState{Term(14), NodeId(5)});
  auto again = HardStateFile::open_read_only(dir.path());  // hs holds the file's lock
  REQUIRE(again.ok());
  CHECK(again->current() == HardState{Term(14), NodeId(5)});
  // The fifth save went to slot 0 and the fourth to slot 1: damaging slot 0 gives the fourth.
  flip_byte(dir.path() + "/hardstate", 17);
  auto previous = HardStateFile::open_read_only(dir.path());
  REQUIRE(previous.ok());
  CHECK(previous->current() == HardState{Term(13), NodeId(4)});
}

TEST_CASE("a failed save keeps the previous state, on disk and in memory") {
  TempDir dir;
  asio::io_context io;
  int inject = 0;
  HardStateOptions o;
  o.fault = [&inject] { return inject; };
  auto hs = open_hs(io, dir.path(), o);
  REQUIRE(save(io, hs, {Term(2), NodeId(1)}).ok());
  inject = EIO;
  auto failed = save(io, hs, {Term(3), NodeId(3)});
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.error().is(Errc::storage_io));
  CHECK(hs.current() == HardState{Term(2), NodeId(1)});
  // Damage the slot the failed save wrote: the state saved before it is still on disk.
  flip_byte(dir.path() + "/hardstate", HardStateFile::slot_bytes + 17);
  {
    auto ro = HardStateFile::open_read_only(dir.path());
    REQUIRE(ro.ok());
    CHECK(ro->current() == HardState{Term(2), NodeId(1)});
  }
  inject = 0;
  REQUIRE(save(io, hs, {Term(4), NodeId(2)}).ok());
  auto ro = HardStateFile::open_read_only(dir.path());
  REQUIRE(ro.ok());
  CHECK(ro->current() == HardState{Term(4), NodeId(2)});
  CHECK_FALSE(ro->damaged_slot().has_value());
}

TEST_CASE("closing the hard state resolves the saves still queued with shutting_down") {
  TempDir dir;
  asio::io_context io;
  std::vector<std::optional<Result<void>>> out(8);
  {
    auto hs = open_hs(io, dir.path());
    for (std::uint64_t i = 0; i < out.size(); ++i)
      spawn_save(io, hs, {Term(1 + i), no_node}, out[i]);
    io.poll();  // the coroutines start: one save is in flight, the others wait
  }
  io.restart();
  io.run();
  // The saves that completed before closing form a prefix; every later one says shutting_down.
  std::uint64_t ok = 0;
  for (auto& r : out) {
    REQUIRE(r.has_value());
    if (r->ok()) {
      CHECK(ok == static_cast<std::uint64_t>(&r - out.data()));
      ++ok;
    } else {
      CHECK(r->error().is(Errc::shutting_down));
    }
  }
  CHECK(ok < out.size());
  auto ro = HardStateFile::open_read_only(dir.path());
  REQUIRE(ro.ok());
  // The save in flight when closing may or may not have reached the disk.
  std::uint64_t term = ro->current().term.value();
  CHECK((term == ok || term == ok + 1));
}

TEST_CASE("a hard state opened read-only refuses to save") {
  TempDir dir;
  asio::io_context io;
  { auto hs = open_hs(io, dir.path()); }
  auto ro = HardStateFile::open_read_only(dir.path());
  REQUIRE(ro.ok());
  auto r = run(io, ro->save({Term(1), no_node}));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().is(Errc::invalid_argument));
  CHECK_FALSE(HardStateFile::open_read_only(dir.path() + "/missing").ok());
}

TEST_CASE("a damaged slot falls back to the other slot and is reported") {
  TempDir dir;
  asio::io_context io;
  {
    auto hs = open_hs(io, dir.path());
    REQUIRE(save(io, hs, {Term(1), NodeId(1)}).ok());  // slot 0
    REQUIRE(save(io, hs, {Term(2), NodeId(3)}).ok());  // slot 1
  }
  std::string path = dir.path() + "/hardstate";
  SUBCASE("the newer slot damaged (a torn save) gives the previous state") {
    flip_byte(path, HardStateFile::slot_bytes + 17);
    auto hs = open_hs(io, dir.path());
    CHECK(hs.current() == HardState{Term(1), NodeId(1)});
    CHECK(hs.damaged_slot() == HardStateFile::slot_bytes);
    // The next save overwrites the damaged slot and keeps the good one.
    REQUIRE(save(io, hs, {Term(5), NodeId(1)}).ok());
    CHECK_FALSE(hs.damaged_slot().has_value());
    auto again = HardStateFile::open_read_only(dir.path());  // hs holds the file's lock
    REQUIRE(again.ok());
    CHECK(again->current() == HardState{Term(5), NodeId(1)});
  }
  SUBCASE("the older slot damaged keeps the newest state") {
    flip_byte(path, 3);
    auto hs = open_hs(io, dir.path());
    CHECK(hs.current() == HardState{Term(2), NodeId(3)});
    CHECK(hs.damaged_slot() == 0u);
  }
}

TEST_CASE("both slots damaged refuses to open, naming the file and offset") {
  TempDir dir;
  asio::io_context io;
  {
    auto hs = open_hs(io, dir.path());
    REQUIRE(save(io, hs, {Term(1), NodeId(1)}).ok());
    REQUIRE(save(io, hs, {Term(2), NodeId(3)}).ok());
  }
  std::string path = dir.path() + "/hardstate";
  flip_byte(path, 20);
  flip_byte(path, HardStateFile::slot_bytes + 20);
  for (bool read_only : {false, true}) {
    auto hs = read_only ? HardStateFile::open_read_only(dir.path())
                        : HardStateFile::open(io.get_executor(), dir.path());
    REQUIRE_FALSE(hs.ok());
    CHECK(hs.error().is(Errc::storage_corrupt));
    CHECK(hs.error().detail.find(path + " offset 0") != std::string::npos);
  }
}

TEST_CASE("an existing hard state file is synced on open before it is believed") {
  TempDir dir;
  asio::io_context io;
  int syncs = 0;
  HardStateOptions failing;
  failing.open_sync_fault = [&syncs] {
    ++syncs;
    return EIO;
  };
  {
    // A new file is created durably; there is nothing older to sync.
    auto hs = open_hs(io, dir.path(), failing);
    CHECK(syncs == 0);
    REQUIRE(save(io, hs, {Term(6), NodeId(2)}).ok());
  }
  auto refused = HardStateFile::open(io.get_executor(), dir.path(), failing);
  REQUIRE_FALSE(refused.ok());
  CHECK(syncs == 1);
  CHECK(refused.error().is(Errc::storage_io));
  CHECK(refused.error().detail.find(dir.path() + "/hardstate") != std::string::npos);
  auto hs = open_hs(io, dir.path());
  CHECK(hs.current() == HardState{Term(6), NodeId(2)});
}

TEST_CASE(
    "a new hard-state file holds a valid slot, so a zeroed file is not taken for a fresh node") {
  TempDir dir;
  asio::io_context io;
  std::string path = dir.path() + "/hardstate";
  {
    auto hs = open_hs(io, dir.path());
    CHECK(hs.current() == HardState{Term(0), no_node});
  }
  auto slot1 = read_bytes(path, HardStateFile::slot_bytes, 8);
  CHECK(std::memcmp(slot1.data(), "coraftHS", 8) == 0);
  {
    auto hs = open_hs(io, dir.path());
    REQUIRE(save(io, hs, {Term(4), NodeId(2)}).ok());
    REQUIRE(save(io, hs, {Term(5), NodeId(3)}).ok());
  }
  write_bytes(path, 0, std::vector<std::byte>(2 * HardStateFile::slot_bytes));
  for (bool read_only : {false, true}) {
    auto hs = read_only ? HardStateFile::open_read_only(dir.path())
                        : HardStateFile::open(io.get_executor(), dir.path());
    REQUIRE_FALSE(hs.ok());
    CHECK(hs.error().is(Errc::storage_corrupt));
    CHECK(hs.error().detail.find(path + " offset 0") != std::string::npos);
  }
}

TEST_CASE("a damaged newest slot is refused when the log holds a term above the other slot's") {
  TempDir dir;
  asio::io_context io;
  {
    auto log = SegmentedLog::open(io.get_executor(), small_options(dir.path()));
    REQUIRE(log.ok());
    auto hs = open_hs(io, dir.path());
    REQUIRE(save(io, hs, {Term(4), NodeId(1)}).ok());  // slot 0
    REQUIRE(run(io, (*log)->append(make_entries(1, 3, 4, 10))).ok());
    REQUIRE(save(io, hs, {Term(6), NodeId(2)}).ok());  // slot 1
    REQUIRE(run(io, (*log)->append(make_entries(4, 5, 6, 10))).ok());
  }
  std::string path = dir.path() + "/hardstate";
  flip_byte(path, HardStateFile::slot_bytes + 17);
  for (bool read_only : {false, true}) {
    auto hs = read_only ? HardStateFile::open_read_only(dir.path())
                        : HardStateFile::open(io.get_executor(), dir.path());
    REQUIRE_FALSE(hs.ok());
    CHECK(hs.error().is(Errc::storage_corrupt));
    CHECK(hs.error().detail.find(path + " offset 512") != std::string::npos);
    CHECK(hs.error().detail.find("log's term 6") != std::string::npos);
  }
}
