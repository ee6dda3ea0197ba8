// Every kind of damage at every place in a multi-segment data directory, checked through both
// the API (SegmentedLog, HardStateFile, SnapshotStore) and `coraft-inspect verify`: each ends in
// a refusal naming the file and offset, or in a cut of only the batch in flight at a crash.
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <functional>

#include "storage/format.hpp"
#include "storage/hard_state.hpp"
#include "storage/segmented_log.hpp"
#include "storage/snapshot_store.hpp"
#include "storage_test_util.hpp"

using namespace coraft;
using namespace coraft::storage;
using namespace coraft::storage::test;

namespace {

constexpr std::size_t payload_bytes = 1000;
constexpr std::uint64_t record_bytes = record_header_bytes + payload_bytes;  // 8-aligned
constexpr std::uint64_t entries_total = 300;

struct Outcome {
  int exit_code = -1;
  std::string output;
};

Outcome inspect_verify(const std::string& dir) {
  std::string cmd = std::string(CORAFT_INSPECT_PATH) + " verify " + dir + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  Outcome out;
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.output.append(buf, n);
  int status = ::pclose(p);
  out.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

// Entries 1..300 in batches of 10 (one append each): closed segments 1-63, 64-126, 127-189,
// 190-252, and an open one holding 253..300 (batches 253-260, 261-270, ..., 291-300).
void build_log(const std::string& dir) {
  asio::io_context io;
  auto log = SegmentedLog::open(io.get_executor(), small_options(dir));
  REQUIRE(log.ok());
  for (std::uint64_t i = 1; i <= entries_total; i += 10) {
    REQUIRE(run(io, (*log)->append(make_entries(i, i + 9, 1, payload_bytes))).ok());
  }
}

std::uint64_t record_offset(std::uint64_t k) {
  return segment_header_bytes + k * record_bytes;
}

enum class Place { first, middle, last_closed, last_open };

const char* place_name(Place p) {
  switch (p) {
    case Place::first: return "first";
    case Place::middle: return "middle";
    case Place::last_closed: return "last closed";
    case Place::last_open: return "last open";
  }
  return "?";
}

// The file at `p`; the open segment is the one whose header is not zero.
std::string segment_at(const std::string& dir, Place p) {
  std::vector<std::string> closed;
  std::string open;
  for (const auto& n : files_in(dir)) {
    if (n.rfind("open-", 0) != 0) {
      closed.push_back(n);
      continue;
    }
    auto h = read_bytes(dir + "/" + n, 0, segment_header_bytes);
    if (!std::all_of(h.begin(), h.end(), [](std::byte b) { return b == std::byte{0}; })) open = n;
  }
  REQUIRE(closed.size() == 4);
  REQUIRE_FALSE(open.empty());
  switch (p) {
    case Place::first: return dir + "/" + closed[0];
    case Place::middle: return dir + "/" + closed[2];
    case Place::last_closed: return dir + "/" + closed[3];
    case Place::last_open: return dir + "/" + open;
  }
  return {};
}

Place all_places[] = {Place::first, Place::middle, Place::last_closed, Place::last_open};

// Opening must fail with storage_corrupt naming `file` (and `offset`, when given), and
// coraft-inspect verify must exit 1 naming the same.
void expect_refusal(const std::string& dir, const std::string& file,
                    std::optional<std::uint64_t> offset) {
  std::string where = offset ? file + " offset " + std::to_string(*offset) : file;
  auto v = inspect_verify(dir);
  CHECK(v.exit_code == 1);
  CHECK_MESSAGE(v.output.find(where) != std::string::npos, v.output);
  asio::io_context io;
  auto log = SegmentedLog::open(io.get_executor(), small_options(dir));
  REQUIRE_FALSE(log.ok());
  CHECK(log.error().is(Errc::storage_corrupt));
  CHECK_MESSAGE(log.error().detail.find(where) != std::string::npos, log.error().detail);
}

// coraft-inspect verify must exit 1 saying what would be cut; opening must cut exactly the tail
// from `offset` of `file` and keep entries 1..last intact.
void expect_cut(const std::string& dir, const std::string& file, std::uint64_t offset,
                std::uint64_t last) {
  auto v = inspect_verify(dir);
  CHECK(v.exit_code == 1);
  CHECK_MESSAGE(v.output.find("torn tail") != std::string::npos, v.output);
  CHECK_MESSAGE(v.output.find(file + " offset " + std::to_string(offset)) != std::string::npos,
                v.output);
  CHECK_MESSAGE(v.output.find("from index " + std::to_string(last + 1)) != std::string::npos,
                v.output);
  asio::io_context io;
  auto log = SegmentedLog::open(io.get_executor(), small_options(dir));
  REQUIRE(log.ok());
  REQUIRE((*log)->recovery().torn_file.has_value());
  CHECK(*(*log)->recovery().torn_file == file);
  CHECK((*log)->recovery().torn_offset == offset);
  CHECK((*log)->last_index() == Index(last));
  for (std::uint64_t i = 1; i <= last; ++i) {
    auto e = (*log)->read(Index(i));
    REQUIRE(e.ok());
    CHECK(payload_matches(*e, payload_bytes));
  }
}

void zero_range(const std::string& file, std::uint64_t from, std::uint64_t n) {
  write_bytes(file, from, std::vector<std::byte>(n));
}

// Runs `damage` on a fresh log for each place.
void walk(
    const std::function<void(const std::string& dir, Place p, const std::string& file)>& damage) {
  for (Place p : all_places) {
    CAPTURE(place_name(p));
    TempDir dir;
    build_log(dir.path());
    damage(dir.path(), p, segment_at(dir.path(), p));
  }
}

}  // namespace

TEST_CASE("walk: a flipped byte in a record refuses to open wherever it is") {
  walk([](const std::string& dir, Place, const std::string& file) {
    flip_byte(file, record_offset(5) + record_header_bytes + 300);
    expect_refusal(dir, file, record_offset(5));
  });
}

TEST_CASE("walk: a flipped byte in the newest segment's last, acknowledged batch refuses to open") {
  // The open segment's records 38..47 are its last batch (entries 291..300).
  for (std::uint64_t k : {38u, 42u, 47u}) {
    CAPTURE(k);
    TempDir dir;
    build_log(dir.path());
    std::string file = segment_at(dir.path(), Place::last_open);
    flip_byte(file, record_offset(k) + 9);
    expect_refusal(dir.path(), file, record_offset(k));
  }
}

TEST_CASE("walk: a flipped byte in a segment header refuses to open wherever it is") {
  walk([](const std::string& dir, Place, const std::string& file) {
    flip_byte(file, 20);
    expect_refusal(dir, file, 0);
  });
}

TEST_CASE("walk: a zeroed segment header refuses to open wherever it is") {
  walk([](const std::string& dir, Place, const std::string& file) {
    zero_range(file, 0, segment_header_bytes);
    expect_refusal(dir, file, 0);
  });
}

TEST_CASE("walk: a zeroed first sector refuses to open when later batches follow") {
  walk([](const std::string& dir, Place, const std::string& file) {
    zero_range(file, 0, 512);
    expect_refusal(dir, file, 0);
  });
}

TEST_CASE("walk: a zeroed sector in an older batch of the newest segment refuses to open") {
  TempDir dir;
  build_log(dir.path());
  std::string file = segment_at(dir.path(), Place::last_open);
  // Record 20 is entry 273, in the batch 271..280; later batches follow.
  std::uint64_t sector = (record_offset(20) + 600) & ~std::uint64_t{511};
  zero_range(file, sector, 512);
  expect_refusal(dir.path(), file, record_offset(20));
}

TEST_CASE("walk: a torn last batch is cut at its first damaged record, and only there") {
  SUBCASE("the last record's sector did not reach the disk") {
    TempDir dir;
    build_log(dir.path());
    std::string file = segment_at(dir.path(), Place::last_open);
    zero_range(file, (record_offset(47) + 600) & ~std::uint64_t{511}, 512);
    expect_cut(dir.path(), file, record_offset(47), 299);
  }
  SUBCASE("a sector in the middle of the batch did not, later ones did") {
    TempDir dir;
    build_log(dir.path());
    std::string file = segment_at(dir.path(), Place::last_open);
    zero_range(file, (record_offset(42) + 600) & ~std::uint64_t{511}, 512);
    expect_cut(dir.path(), file, record_offset(42), 294);
  }
  SUBCASE("nothing from the batch's third record on did") {
    TempDir dir;
    build_log(dir.path());
    std::string file = segment_at(dir.path(), Place::last_open);
    std::uint64_t from = (record_offset(40) + 511) & ~std::uint64_t{511};
    zero_range(file, from, record_offset(48) - from);
    expect_cut(dir.path(), file, record_offset(40), 292);
  }
}

TEST_CASE("walk: a missing closed segment refuses to open, naming the segment after the gap") {
  for (Place p : {Place::middle, Place::last_closed}) {
    CAPTURE(place_name(p));
    TempDir dir;
    build_log(dir.path());
    std::string gone = segment_at(dir.path(), p);
    std::string after = p == Place::middle ? segment_at(dir.path(), Place::last_closed)
                                           : segment_at(dir.path(), Place::last_open);
    std::filesystem::remove(gone);
    expect_refusal(dir.path(), after, std::nullopt);
  }
}

TEST_CASE("walk: an empty closed segment refuses to open") {
  for (Place p : {Place::first, Place::middle, Place::last_closed}) {
    CAPTURE(place_name(p));
    TempDir dir;
    build_log(dir.path());
    std::string file = segment_at(dir.path(), p);
    std::filesystem::resize_file(file, 0);
    expect_refusal(dir.path(), file, 0);
  }
}

TEST_CASE("walk: a closed segment renamed to claim fewer entries refuses to open") {
  for (Place p : {Place::first, Place::middle, Place::last_closed}) {
    CAPTURE(place_name(p));
    TempDir dir;
    build_log(dir.path());
    std::string file = segment_at(dir.path(), p);
    auto name = parse_segment_name(std::filesystem::path(file).filename().string());
    REQUIRE(name.has_value());
    std::string renamed = dir.path() + "/" + closed_segment_name(name->first, name->last - 5);
    std::filesystem::rename(file, renamed);
    // The gap shows at the next segment.
    std::string next = p == Place::first    ? segment_at(dir.path(), Place::middle)
                       : p == Place::middle ? segment_at(dir.path(), Place::last_closed)
                                            : segment_at(dir.path(), Place::last_open);
    if (p == Place::first) {
      // segment_at(middle) is the third closed file; the second follows the renamed first.
      std::vector<std::string> closed;
      for (const auto& n : files_in(dir.path())) {
        if (n.rfind("open-", 0) != 0) closed.push_back(n);
      }
      next = dir.path() + "/" + closed[1];
    }
    expect_refusal(dir.path(), next, std::nullopt);
  }
}

namespace {

// The log of build_log (all in term 1, then entries 301..310 in term 2) with a hard state saved
// as term 1 (slot 0) and then term 2 (slot 512).
void build_with_hard_state(const std::string& dir) {
  build_log(dir);
  asio::io_context io;
  auto hs = HardStateFile::open(io.get_executor(), dir);
  REQUIRE(hs.ok());
  REQUIRE(run(io, hs->save({Term(1), NodeId(1)})).ok());
  REQUIRE(run(io, hs->save({Term(2), NodeId(3)})).ok());
  auto log = SegmentedLog::open(io.get_executor(), small_options(dir));
  REQUIRE(log.ok());
  REQUIRE(run(io, (*log)->append(make_entries(301, 310, 2, payload_bytes))).ok());
}

// HardStateFile::open and coraft-inspect verify both refuse, naming the file and offset.
void expect_hard_state_refusal(const std::string& dir, std::uint64_t offset) {
  std::string where = dir + "/hardstate offset " + std::to_string(offset);
  auto v = inspect_verify(dir);
  CHECK(v.exit_code == 1);
  CHECK_MESSAGE(v.output.find(where) != std::string::npos, v.output);
  asio::io_context io;
  auto hs = HardStateFile::open(io.get_executor(), dir);
  REQUIRE_FALSE(hs.ok());
  CHECK(hs.error().is(Errc::storage_corrupt));
  CHECK_MESSAGE(hs.error().detail.find(where) != std::string::npos, hs.error().detail);
}

}  // namespace

TEST_CASE("walk: hard-state damage never brings back an older term and vote the log contradicts") {
  TempDir dir;
  build_with_hard_state(dir.path());
  std::string path = dir.path() + "/hardstate";
  SUBCASE("the newest slot damaged, with entries of its term in the log") {
    flip_byte(path, HardStateFile::slot_bytes + 17);
    expect_hard_state_refusal(dir.path(), HardStateFile::slot_bytes);
  }
  SUBCASE("the whole file zeroed") {
    write_bytes(path, 0, std::vector<std::byte>(2 * HardStateFile::slot_bytes));
    expect_hard_state_refusal(dir.path(), 0);
  }
  SUBCASE("both slots damaged") {
    flip_byte(path, 17);
    flip_byte(path, HardStateFile::slot_bytes + 17);
    expect_hard_state_refusal(dir.path(), 0);
  }
  SUBCASE("the older slot damaged: the newest state is kept, and verify still reports it") {
    flip_byte(path, 17);
    auto v = inspect_verify(dir.path());
    CHECK(v.exit_code == 1);
    CHECK(v.output.find("damaged slot at " + path + " offset 0") != std::string::npos);
    asio::io_context io;
    auto hs = HardStateFile::open(io.get_executor(), dir.path());
    REQUIRE(hs.ok());
    CHECK(hs->current() == HardState{Term(2), NodeId(3)});
    CHECK(hs->damaged_slot() == 0u);
  }
}

TEST_CASE("walk: snapshot damage is refused by the store and by coraft-inspect verify") {
  TempDir dir;
  build_log(dir.path());
  auto store = SnapshotStore::open(dir.path());
  REQUIRE(store.ok());
  SnapshotMeta meta{Index(200), Term(1),
                    Configuration::make({NodeId(1), NodeId(2), NodeId(3)}).value()};
  auto w = store->begin(meta);
  REQUIRE(w.ok());
  std::vector<std::byte> data(5000, std::byte{7});
  REQUIRE(w->write(data).ok());
  auto info = w->finish();
  REQUIRE(info.ok());
  auto expect = [&](const std::string& path, std::uint64_t offset) {
    std::string where = path + " offset " + std::to_string(offset);
    auto v = inspect_verify(dir.path());
    CHECK(v.exit_code == 1);
    CHECK_MESSAGE(v.output.find(where) != std::string::npos, v.output);
    auto s = store->load_latest(1 << 20);
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().is(Errc::storage_corrupt));
    CHECK_MESSAGE(s.error().detail.find(where) != std::string::npos, s.error().detail);
  };
  SUBCASE("a name claiming a later index than the header") {
    std::string renamed =
        dir.path() + "/snapshots/snap-00000000000000000250-00000000000000000001.snap";
    std::filesystem::rename(info->path, renamed);
    expect(renamed, 16);
  }
  SUBCASE("a flipped header byte") {
    flip_byte(info->path, 17);
    expect(info->path, 0);
  }
  SUBCASE("a flipped data byte") {
    flip_byte(info->path, 4000);
    expect(info->path, 64);
  }
}

TEST_CASE("walk: a missing first segment refuses to open, found through the extent file") {
  TempDir dir;
  build_log(dir.path());
  std::filesystem::remove(segment_at(dir.path(), Place::first));
  expect_refusal(dir.path(), dir.path() + "/extent", 16);
}

TEST_CASE("walk: a missing, empty or renamed last open segment refuses to open") {
  SUBCASE("missing") {
    TempDir dir;
    build_log(dir.path());
    std::string file = segment_at(dir.path(), Place::last_open);
    std::filesystem::remove(file);
    expect_refusal(dir.path(), file, 0);
  }
  SUBCASE("empty") {
    TempDir dir;
    build_log(dir.path());
    std::string file = segment_at(dir.path(), Place::last_open);
    std::filesystem::resize_file(file, 0);
    expect_refusal(dir.path(), file, 0);
  }
  SUBCASE("cut short at a record boundary") {
    TempDir dir;
    build_log(dir.path());
    std::string file = segment_at(dir.path(), Place::last_open);
    std::filesystem::resize_file(file, record_offset(30));
    expect_refusal(dir.path(), file, record_offset(30));
  }
  SUBCASE("renamed to a closed name claiming fewer entries") {
    TempDir dir;
    build_log(dir.path());
    std::string file = segment_at(dir.path(), Place::last_open);
    std::string renamed = dir.path() + "/" + closed_segment_name(Index(253), Index(280));
    std::filesystem::rename(file, renamed);
    expect_refusal(dir.path(), renamed, record_offset(28));
  }
}

TEST_CASE("walk: a missing or damaged extent file refuses to open") {
  SUBCASE("missing") {
    TempDir dir;
    build_log(dir.path());
    std::filesystem::remove(dir.path() + "/extent");
    expect_refusal(dir.path(), dir.path() + "/extent", 0);
  }
  SUBCASE("a flipped byte") {
    TempDir dir;
    build_log(dir.path());
    flip_byte(dir.path() + "/extent", 26);
    expect_refusal(dir.path(), dir.path() + "/extent", 0);
  }
}

TEST_CASE("walk: the extent follows truncation and compaction, so neither looks like loss") {
  TempDir dir;
  build_log(dir.path());
  {
    asio::io_context io;
    auto log = SegmentedLog::open(io.get_executor(), small_options(dir.path()));
    REQUIRE(log.ok());
    REQUIRE(run(io, (*log)->truncate_suffix(Index(150))).ok());  // into the third segment
    REQUIRE(run(io, (*log)->compact_prefix(Index(100))).ok());   // the first segment goes
    CHECK((*log)->first_index() == Index(64));
  }
  auto v = inspect_verify(dir.path());
  CHECK_MESSAGE(v.exit_code == 0, v.output);
  asio::io_context io;
  auto log = SegmentedLog::open(io.get_executor(), small_options(dir.path()));
  REQUIRE(log.ok());
  CHECK((*log)->first_index() == Index(64));
  CHECK((*log)->last_index() == Index(149));
  // The extent now bounds the shorter log: losing its last segment is found.
  std::string last;
  for (const auto& n : files_in(dir.path())) {
    if (n.rfind("open-", 0) != 0) last = dir.path() + "/" + n;
  }
  log->reset();
  std::filesystem::remove(last);
  expect_refusal(dir.path(), dir.path() + "/extent", 24);
}
