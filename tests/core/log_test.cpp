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
  log.take_unsaved(trunc, out);
  CHECK(out.size() == 2);
  // Before that write completes, a new leader replaces index 2, then the same (index, term)
  // pair reappears: the first write's acknowledgement must count only up to index 1.
  log.truncate_from(Index(2));
  log.append(Entry{Index(2), Term(2), EntryType::normal, {}});
  log.take_unsaved(trunc, out);
  REQUIRE(trunc.has_value());
  CHECK(*trunc == Index(2));
  CHECK(log.persisted(Term(1), Index(2)) == true);
  CHECK(log.persisted_index() == Index(1));
  CHECK(log.persisted(Term(2), Index(2)) == true);
  CHECK(log.persisted_index() == Index(2));
  CHECK(log.writes_in_flight() == 0);
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
