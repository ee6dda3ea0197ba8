// The hard-state file: alternating CRC'd slots.
#include <doctest/doctest.h>

#include "storage/hard_state.hpp"
#include "storage_test_util.hpp"

using namespace coraft;
using namespace coraft::storage;
using namespace coraft::storage::test;

TEST_CASE("a fresh hard state is term 0 with no vote, and saves survive reopening") {
  TempDir dir;
  {
    auto hs = HardStateFile::open(dir.path());
    REQUIRE(hs.ok());
    CHECK(hs->current() == HardState{Term(0), no_node});
    REQUIRE(hs->save({Term(3), NodeId(2)}).ok());
    REQUIRE(hs->save({Term(4), NodeId(5)}).ok());
    REQUIRE(hs->save({Term(7), no_node}).ok());
  }
  auto hs = HardStateFile::open(dir.path());
  REQUIRE(hs.ok());
  CHECK(hs->current() == HardState{Term(7), no_node});
  CHECK_FALSE(hs->damaged_slot().has_value());
}

TEST_CASE("a damaged slot falls back to the other slot and is reported") {
  TempDir dir;
  {
    auto hs = HardStateFile::open(dir.path());
    REQUIRE(hs->save({Term(1), NodeId(1)}).ok());  // slot 0
    REQUIRE(hs->save({Term(2), NodeId(3)}).ok());  // slot 1
  }
  std::string path = dir.path() + "/hardstate";
  SUBCASE("the newer slot damaged (a torn save) gives the previous state") {
    flip_byte(path, HardStateFile::slot_bytes + 17);
    auto hs = HardStateFile::open(dir.path());
    REQUIRE(hs.ok());
    CHECK(hs->current() == HardState{Term(1), NodeId(1)});
    CHECK(hs->damaged_slot() == HardStateFile::slot_bytes);
    // The next save overwrites the damaged slot and keeps the good one.
    REQUIRE(hs->save({Term(5), NodeId(1)}).ok());
    auto again = HardStateFile::open(dir.path());
    CHECK(again->current() == HardState{Term(5), NodeId(1)});
  }
  SUBCASE("the older slot damaged keeps the newest state") {
    flip_byte(path, 3);
    auto hs = HardStateFile::open(dir.path());
    REQUIRE(hs.ok());
    CHECK(hs->current() == HardState{Term(2), NodeId(3)});
    CHECK(hs->damaged_slot() == 0u);
  }
}

TEST_CASE("both slots damaged refuses to open, naming the file and offset") {
  TempDir dir;
  {
    auto hs = HardStateFile::open(dir.path());
    REQUIRE(hs->save({Term(1), NodeId(1)}).ok());
    REQUIRE(hs->save({Term(2), NodeId(3)}).ok());
  }
  std::string path = dir.path() + "/hardstate";
  flip_byte(path, 20);
  flip_byte(path, HardStateFile::slot_bytes + 20);
  auto hs = HardStateFile::open(dir.path());
  REQUIRE_FALSE(hs.ok());
  CHECK(hs.error().is(Errc::storage_corrupt));
  CHECK(hs.error().detail.find(path + " offset 0") != std::string::npos);
}
