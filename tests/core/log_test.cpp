#include "core/config.hpp"
#include "core/progress.hpp"
#include "core/raft_log.hpp"

#include <doctest/doctest.h>

using namespace coraft;
using namespace coraft::core;

namespace {
std::vector<Entry> entries_with_terms(std::initializer_list<std::uint64_t> terms) {
  std::vector<Entry> v;
  std::uint64_t i = 1;
  for (auto t : terms) v.push_back(Entry{Index(i++), Term(t), EntryType::normal, {}});
  return v;
}
}  // namespace

TEST_CASE("a restored log counts as durable and knows its terms") {
  RaftLog log(entries_with_terms({1, 1, 2}));
  CHECK(log.last_index() == Index(3));
  CHECK(log.last_term() == Term(2));
  CHECK(log.persisted_index() == Index(3));
  CHECK(*log.term_at(Index(0)) == Term(0));
  CHECK(*log.term_at(Index(2)) == Term(1));
  CHECK_FALSE(log.term_at(Index(4)).has_value());
  CHECK_FALSE(log.has_unsaved());
}

TEST_CASE("the conflict search finds the last index at or below a term") {
  RaftLog log(entries_with_terms({1, 1, 3, 3, 3, 5}));
  CHECK(log.last_index_with_term_at_most(Index(6), Term(4)) == Index(5));
  CHECK(log.last_index_with_term_at_most(Index(4), Term(4)) == Index(4));
  CHECK(log.last_index_with_term_at_most(Index(6), Term(2)) == Index(2));
  CHECK(log.last_index_with_term_at_most(Index(6), Term(0)) == Index(0));
  CHECK(log.last_index_with_term_at_most(Index(99), Term(9)) == Index(6));
}

TEST_CASE("a truncation lowers the durable prefix and an old acknowledgement cannot raise it") {
  RaftLog log({});
  log.append(Entry{Index(1), Term(1), EntryType::normal, {}});
  log.append(Entry{Index(2), Term(1), EntryType::normal, {}});
  std::optional<Index> trunc;
  std::vector<Entry> out;
  const std::uint64_t first = log.take_unsaved(trunc, out, Term(1));
  CHECK(out.size() == 2);
  // Before that write completes, a new leader replaces index 2: the first write's
  // acknowledgement must count only up to index 1.
  log.truncate_from(Index(2));
  log.append(Entry{Index(2), Term(2), EntryType::normal, {}});
  const std::uint64_t second = log.take_unsaved(trunc, out, Term(2));
  REQUIRE(trunc.has_value());
  CHECK(*trunc == Index(2));
  CHECK(second == first + 1);
  CHECK(log.persisted(first) == true);
  CHECK(log.persisted_index() == Index(1));
  CHECK(log.durable_hard_term() == Term(1));
  CHECK(log.persisted(second) == true);
  CHECK(log.persisted_index() == Index(2));
  CHECK(log.durable_hard_term() == Term(2));
  CHECK(log.writes_in_flight() == 0);
}

TEST_CASE("one acknowledgement of the last of three writes ending at one index covers them all") {
  // Set up: writes ending at (2, t1), (2, t2) and (2, t1) again are in flight, as after two
  // leader changes (the third leader holds the first one's entry).
  RaftLog log({});
  std::optional<Index> trunc;
  std::vector<Entry> out;
  log.append(Entry{Index(1), Term(1), EntryType::normal, {}});
  log.append(Entry{Index(2), Term(1), EntryType::normal, {}});
  (void)log.take_unsaved(trunc, out, Term(1));
  log.truncate_from(Index(2));
  log.append(Entry{Index(2), Term(2), EntryType::normal, {}});
  (void)log.take_unsaved(trunc, out, Term(2));
  log.truncate_from(Index(2));
  log.append(Entry{Index(2), Term(1), EntryType::normal, {}});
  const std::uint64_t third = log.take_unsaved(trunc, out, Term(3));
  // Act: the caller coalesces the three acknowledgements into one naming the last write.
  CHECK(log.persisted(third) == true);
  // Check: every write is acknowledged and the whole log is durable.
  CHECK(log.persisted_index() == Index(2));
  CHECK(log.writes_in_flight() == 0);
  CHECK(log.durable_hard_term() == Term(3));
}

TEST_CASE("a truncation of entries never handed out is not handed out") {
  // Set up: entries 1-2 written; 3-4 appended, then 4 replaced before anything is taken.
  RaftLog log({});
  std::optional<Index> trunc;
  std::vector<Entry> out;
  log.append(Entry{Index(1), Term(1), EntryType::normal, {}});
  log.append(Entry{Index(2), Term(1), EntryType::normal, {}});
  (void)log.take_unsaved(trunc, out, Term(1));
  log.append(Entry{Index(3), Term(1), EntryType::normal, {}});
  log.append(Entry{Index(4), Term(1), EntryType::normal, {}});
  log.truncate_from(Index(4));
  log.append(Entry{Index(4), Term(2), EntryType::normal, {}});
  // Act
  out.clear();
  (void)log.take_unsaved(trunc, out, Term(2));
  // Check: the write appends 3 and the new 4; no truncation above its first entry.
  REQUIRE(out.size() == 2);
  CHECK(out.front().index == Index(3));
  CHECK_FALSE(trunc.has_value());
}

TEST_CASE(
    "a snapshot installed after a truncation in one batch hands out only the truncation above it") {
  // Set up: entries 1-4 written; then, before anything is taken, entry 3 is replaced by a
  // leader's (a truncation at 3) and a snapshot ending at 10 that the log does not hold comes.
  RaftLog log({});
  std::optional<Index> trunc;
  std::vector<Entry> out;
  for (std::uint64_t i = 1; i <= 4; ++i)
    log.append(Entry{Index(i), Term(1), EntryType::normal, {}});
  (void)log.take_unsaved(trunc, out, Term(1));
  log.truncate_from(Index(3));
  log.append(Entry{Index(3), Term(2), EntryType::normal, {}});
  // Act
  CHECK_FALSE(log.restore(Index(10), Term(2)));
  out.clear();
  (void)log.take_unsaved(trunc, out, Term(2));
  // Check: installing the snapshot deletes every stored entry up to 10 (output.hpp step 2), so
  // the write truncates only from 11; a truncation from 3 would leave the log ending at 2
  // behind a snapshot ending at 10.
  REQUIRE(trunc.has_value());
  CHECK(*trunc == Index(11));
  CHECK(out.empty());
}

TEST_CASE("an inflight window is full at its message count or its byte budget") {
  Inflights by_count(2, 1000);
  by_count.add(Index(1), 10);
  CHECK_FALSE(by_count.full());
  by_count.add(Index(2), 10);
  CHECK(by_count.full());
  by_count.free_to(Index(1));
  CHECK_FALSE(by_count.full());
  CHECK(by_count.count() == 1);

  Inflights by_bytes(100, 64);
  by_bytes.add(Index(5), 40);
  CHECK_FALSE(by_bytes.full());
  by_bytes.add(Index(9), 30);
  CHECK(by_bytes.full());
  by_bytes.free_to(Index(9));
  CHECK(by_bytes.bytes() == 0);
  CHECK_FALSE(by_bytes.full());
}

TEST_CASE("a configuration that cannot work is refused with a reason") {
  Config c;
  c.id = NodeId(1);
  c.voters = {NodeId(1), NodeId(2)};
  CHECK(c.validate().ok());
  c.heartbeat_ticks = c.election_ticks;
  CHECK(c.validate().error().is(Errc::invalid_argument));
  c.heartbeat_ticks = 1;
  c.voters = {NodeId(2)};
  CHECK_FALSE(c.validate().ok());
  c.voters = {NodeId(1), NodeId(1)};
  CHECK_FALSE(c.validate().ok());
}
