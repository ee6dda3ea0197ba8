// The snapshot store: atomic complete snapshots, pruning, damage detection.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "storage/snapshot_store.hpp"
#include "storage_test_util.hpp"

using namespace coraft;
using namespace coraft::storage;
using namespace coraft::storage::test;

namespace {

SnapshotMeta meta(std::uint64_t index, std::uint64_t term) {
  return SnapshotMeta{Index(index), Term(term),
                      Configuration::make({NodeId(1), NodeId(2), NodeId(3)}).value()};
}

std::vector<std::byte> data_of(std::size_t n, int seed) {
  std::vector<std::byte> d(n);
  for (std::size_t i = 0; i < n; ++i) d[i] = static_cast<std::byte>((i * 13 + seed) & 0xff);
  return d;
}

Result<SnapshotInfo> write_snapshot(SnapshotStore& s, const SnapshotMeta& m,
                                    const std::vector<std::byte>& d) {
  auto w = s.begin(m);
  if (!w) return w.error();
  std::span<const std::byte> rest(d);
  while (!rest.empty()) {  // in chunks, as a received snapshot arrives
    auto n = std::min<std::size_t>(rest.size(), 1000);
    if (auto r = w->write(rest.first(n)); !r) return r.error();
    rest = rest.subspan(n);
  }
  return w->finish();
}

}  // namespace

TEST_CASE("a finished snapshot loads back with its metadata and data") {
  TempDir dir;
  auto store = SnapshotStore::open(dir.path());
  REQUIRE(store.ok());
  auto d = data_of(5000, 1);
  REQUIRE(write_snapshot(*store, meta(100, 3), d).ok());
  auto s = store->load_latest(1 << 20);
  REQUIRE(s.ok());
  REQUIRE(s->has_value());
  CHECK((*s)->meta == meta(100, 3));
  CHECK((*s)->data == Bytes::copy_of(d));
}

TEST_CASE("an unfinished snapshot is never listed and is deleted on open") {
  TempDir dir;
  auto store = SnapshotStore::open(dir.path());
  {
    auto w = store->begin(meta(50, 1));
    REQUIRE(w.ok());
    REQUIRE(w->write(data_of(100, 2)).ok());
    // Simulate a crash: the temporary file stays behind.
    std::filesystem::copy_file(
        dir.path() + "/snapshots/snap-00000000000000000050-00000000000000000001.snap.tmp",
        dir.path() + "/snapshots/left-behind.snap.tmp");
  }
  CHECK(store->list()->empty());
  CHECK(store->load_latest(1 << 20)->has_value() == false);
  auto again = SnapshotStore::open(dir.path());
  REQUIRE(again.ok());
  CHECK(files_in(dir.path() + "/snapshots", ".tmp").empty());
}

TEST_CASE("old snapshots are pruned to the newest kept") {
  TempDir dir;
  auto store = SnapshotStore::open(dir.path(), 2);
  for (std::uint64_t i = 1; i <= 4; ++i)
    REQUIRE(write_snapshot(*store, meta(i * 10, 1), data_of(10, 0)).ok());
  auto all = store->list();
  REQUIRE(all->size() == 2);
  CHECK((*all)[0].meta.last_index == Index(40));
  CHECK((*all)[1].meta.last_index == Index(30));
}

TEST_CASE("a truncated or damaged snapshot is reported with file and offset") {
  TempDir dir;
  auto store = SnapshotStore::open(dir.path());
  auto info = write_snapshot(*store, meta(70, 2), data_of(3000, 5));
  REQUIRE(info.ok());
  SUBCASE("truncated") {
    std::filesystem::resize_file(info->path, 2000);
    auto s = store->load_latest(1 << 20);
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().is(Errc::storage_corrupt));
    CHECK(s.error().detail.find(info->path + " offset 2000") != std::string::npos);
  }
  SUBCASE("a flipped data byte") {
    flip_byte(info->path, 1500);
    auto s = store->load_latest(1 << 20);
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().is(Errc::storage_corrupt));
    CHECK(s.error().detail.find(info->path) != std::string::npos);
  }
  SUBCASE("larger than the caller's limit") {
    CHECK(store->load_latest(100).error().is(Errc::too_large));
  }
}

TEST_CASE("a snapshot whose name disagrees with its header is reported with file and offset") {
  TempDir dir;
  auto store = SnapshotStore::open(dir.path());
  auto info = write_snapshot(*store, meta(70, 2), data_of(3000, 5));
  REQUIRE(info.ok());
  for (std::pair<int, int> name : {std::pair{90, 2}, std::pair{70, 3}}) {
    int index = name.first;
    int term = name.second;
    CAPTURE(index);
    CAPTURE(term);
    std::string renamed =
        dir.path() + "/snapshots/snap-" + std::string(20 - std::to_string(index).size(), '0') +
        std::to_string(index) + "-" + std::string(20 - std::to_string(term).size(), '0') +
        std::to_string(term) + ".snap";
    std::filesystem::rename(info->path, renamed);
    auto all = store->list();
    REQUIRE(all.ok());
    REQUIRE(all->size() == 1);
    CHECK(all->front().meta.last_index == Index(index));
    auto s = store->load_latest(1 << 20);
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().is(Errc::storage_corrupt));
    CHECK(s.error().detail.find(renamed + " offset 16") != std::string::npos);
    CHECK(s.error().detail.find("the name says index " + std::to_string(index)) !=
          std::string::npos);
    std::filesystem::rename(renamed, info->path);
  }
  CHECK(store->load_latest(1 << 20).ok());
}

namespace {

std::vector<std::byte> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(c.size());
  std::memcpy(out.data(), c.data(), c.size());
  return out;
}

}  // namespace

TEST_CASE("a snapshot file received in pieces is checked, then adopted as the store's") {
  TempDir from_dir;
  TempDir to_dir;
  auto from = SnapshotStore::open(from_dir.path());
  auto to = SnapshotStore::open(to_dir.path());
  REQUIRE(from.ok());
  REQUIRE(to.ok());
  auto sent = write_snapshot(*from, meta(300, 4), data_of(20000, 3));
  REQUIRE(sent.ok());
  const auto bytes = file_bytes(sent->path);

  auto r = to->receive(Index(300), Term(4));
  REQUIRE(r.ok());
  // Pieces must come in order.
  CHECK_FALSE(r->write(10, std::span(bytes).subspan(10, 10)).ok());
  for (std::size_t at = 0; at < bytes.size(); at += 4096) {
    const std::size_t n = std::min<std::size_t>(4096, bytes.size() - at);
    REQUIRE(r->write(at, std::span(bytes).subspan(at, n)).ok());
  }
  REQUIRE(r->sync().ok());
  CHECK(r->received() == bytes.size());
  auto checked = r->check(1 << 20);
  REQUIRE_MESSAGE(checked.ok(), checked.error().message());
  CHECK(checked->meta == meta(300, 4));
  CHECK(checked->data_bytes == 20000);
  // Not visible before it is adopted.
  CHECK(to->list()->empty());
  REQUIRE(r->adopt().ok());
  auto loaded = to->load_latest(1 << 20);
  REQUIRE(loaded.ok());
  REQUIRE(loaded->has_value());
  CHECK((*loaded)->meta == meta(300, 4));
  CHECK((*loaded)->data == Bytes::copy_of(data_of(20000, 3)));
}

TEST_CASE("a received snapshot with a flipped bit, or of another index, fails its check") {
  TempDir from_dir;
  TempDir to_dir;
  auto from = SnapshotStore::open(from_dir.path());
  auto to = SnapshotStore::open(to_dir.path());
  auto sent = write_snapshot(*from, meta(300, 4), data_of(20000, 3));
  REQUIRE(sent.ok());
  auto bytes = file_bytes(sent->path);
  bytes[9000] ^= std::byte{1};
  {
    auto r = to->receive(Index(300), Term(4));
    REQUIRE(r->write(0, bytes).ok());
    auto checked = r->check(1 << 20);
    REQUIRE_FALSE(checked.ok());
    CHECK(checked.error().is(Errc::storage_corrupt));
  }
  bytes[9000] ^= std::byte{1};
  {
    auto r = to->receive(Index(301), Term(4));  // the stream named another snapshot
    REQUIRE(r->write(0, bytes).ok());
    CHECK_FALSE(r->check(1 << 20).ok());
  }
  // A receiver that goes without adopt() leaves nothing behind.
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& e :
       std::filesystem::directory_iterator(to_dir.path() + "/snapshots")) {
    ++files;
  }
  CHECK(files == 0);
}

TEST_CASE("two receivers of the same snapshot stage in files of their own") {
  TempDir dir;
  auto store = SnapshotStore::open(dir.path());
  REQUIRE(store.ok());
  auto count_staged = [&] {
    std::size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir.path() + "/snapshots")) {
      n += e.path().string().ends_with(".recv.tmp");
    }
    return n;
  };
  auto first = store->receive(Index(300), Term(4));
  REQUIRE(first.ok());
  REQUIRE(first->write(0, data_of(100, 1)).ok());
  {
    auto second = store->receive(Index(300), Term(4));
    REQUIRE(second.ok());
    CHECK(count_staged() == 2);
    // The second truncates nothing of the first, and its end deletes only its own file.
  }
  CHECK(count_staged() == 1);
  REQUIRE(first->write(100, data_of(50, 2)).ok());
  CHECK(first->received() == 150);
}
