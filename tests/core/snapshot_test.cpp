// Snapshots and log compaction, each as set up / act / check.
#include <algorithm>

#include <doctest/doctest.h>

#include "harness.hpp"

using namespace coraft;
using namespace coraft::core;
using namespace coraft::core::test;

namespace {

DurableState log_with_terms(Term current, std::initializer_list<std::uint64_t> terms) {
  DurableState d{HardState{current, no_node}, {}, {}};
  std::uint64_t i = 1;
  for (auto t : terms) d.entries.push_back(Entry{Index(i++), Term(t), EntryType::normal, {}});
  return d;
}

SnapshotMeta meta_at(std::uint64_t index, std::uint64_t term, std::size_t voters = 3) {
  std::vector<NodeId> v;
  for (std::size_t i = 1; i <= voters; ++i) v.emplace_back(i);
  return SnapshotMeta{Index(index), Term(term), *Configuration::make(v)};
}

Message install(std::uint64_t term, SnapshotMeta meta) {
  return Message{NodeId(1), NodeId(2),
                 InstallSnapshot{Term(term), std::move(meta), 0, Bytes(), true}};
}

// Runs heartbeat rounds (and the probes they cause) until the leader puts `peer` in snapshot
// state; the snapshot request is left on the wire.
void wait_for_snapshot_state(Cluster& c, std::uint64_t peer) {
  auto in_snapshot = [&] {
    return c.core(1).progress(NodeId(peer))->state == Progress::State::snapshot;
  };
  for (int i = 0; i < 200 && !in_snapshot(); ++i) {
    if (c.wire().empty()) {
      c.tick(1);
    } else {
      c.deliver_if([](const Message&) { return true; });
    }
  }
}

void propose_n(Cluster& c, std::uint64_t id, int n) {
  for (int i = 0; i < n; ++i) REQUIRE(c.propose(id, "v").ok());
  c.deliver_all();
  c.tick(id);
  c.deliver_all();
}
}  // namespace

TEST_CASE("a snapshot compacts the log but keeps the configured trailing entries") {
  // Set up: a leader that applied 11 entries (its no-op and 10 proposals), keeping 3 trailing.
  Cluster c(3, [](Config& cfg) { cfg.snapshot_trailing_entries = 3; });
  c.elect(1);
  propose_n(c, 1, 10);
  REQUIRE(c.core(1).applied_index() == Index(11));
  // Act
  REQUIRE(c.take_snapshot(1).ok());
  // Check: entries up to 8 are gone, 9..11 stay, and the snapshot is remembered.
  CHECK(c.core(1).log().offset() == Index(8));
  CHECK(c.core(1).log().last_index() == Index(11));
  CHECK(c.core(1).snapshot().last_index == Index(11));
  CHECK(*c.core(1).log().term_at(Index(8)) == c.core(1).term());
  // Reference: §5.1
}

TEST_CASE(
    "a snapshot that is not applied, not newer, or of another term or configuration is refused") {
  Cluster c(3, [](Config& cfg) { cfg.snapshot_trailing_entries = 0; });
  c.elect(1);
  propose_n(c, 1, 3);
  Core& l = c.core(1);
  const Term t = l.term();
  // Act / check: beyond the applied index, then a mismatching term, then a good one twice.
  const Configuration conf = l.configuration();
  auto beyond = l.snapshot_taken(SnapshotMeta{l.applied_index() + 1, t, conf});
  CHECK(beyond.error().is(Errc::invalid_argument));
  auto wrong_term = l.snapshot_taken(SnapshotMeta{Index(2), t + 1, conf});
  CHECK(wrong_term.error().is(Errc::invalid_argument));
  auto wrong_conf = l.snapshot_taken(SnapshotMeta{Index(2), t, *Configuration::make({NodeId(1)})});
  CHECK(wrong_conf.error().is(Errc::invalid_argument));
  CHECK(l.log().offset() == Index(0));
  REQUIRE(l.snapshot_taken(SnapshotMeta{Index(3), t, conf}).ok());
  auto again = l.snapshot_taken(SnapshotMeta{Index(3), t, conf});
  CHECK(again.error().is(Errc::invalid_argument));
  CHECK(l.log().offset() == Index(3));
  // Reference: §5.1
}

TEST_CASE("a follower behind the leader's first index receives a snapshot and catches up") {
  // Set up: S3 is cut off while the leader commits 20 entries and compacts all of them.
  Cluster c(3, [](Config& cfg) { cfg.snapshot_trailing_entries = 0; });
  c.elect(1);
  c.isolate(3);
  propose_n(c, 1, 20);
  REQUIRE(c.take_snapshot(1).ok());
  const Index snap = c.core(1).snapshot().last_index;
  REQUIRE(c.core(1).log().offset() == snap);
  // Act: the link heals and the leader probes S3; the probe needs compacted entries.
  c.heal();
  wait_for_snapshot_state(c, 3);
  // Check: the leader switched S3 to snapshot state and asked for a snapshot to be sent.
  REQUIRE(c.core(1).progress(NodeId(3))->state == Progress::State::snapshot);
  CHECK(c.core(1).progress(NodeId(3))->pending_snapshot == snap);
  CHECK(std::count_if(c.wire().begin(), c.wire().end(), [](const Message& m) {
          return std::holds_alternative<InstallSnapshot>(m.body);
        }) == 1);
  // Act: the snapshot arrives; then more entries are written.
  c.deliver_all();
  REQUIRE(c.propose(1, "after").ok());
  c.deliver_all();
  c.tick(1);
  c.deliver_all();
  // Check: S3 installed the snapshot, then applied the rest, and matches the leader.
  CHECK(c.core(3).log().offset() == snap);
  CHECK(c.core(3).log().last_index() == c.core(1).log().last_index());
  CHECK(c.core(1).progress(NodeId(3))->match_index == c.core(1).log().last_index());
  CHECK(c.core(1).progress(NodeId(3))->state == Progress::State::replicate);
  REQUIRE(c.server(3).applied.size() == c.server(1).applied.size());
  CHECK(c.server(3).applied.back().payload.chars() == "after");
  CHECK(c.server(3).durable.snapshot->last_index == snap);
  // Reference: §5.3
}

TEST_CASE("a follower whose log covers the snapshot keeps the entries after it") {
  // Set up: a follower holding (1..5) of term 1, none known committed.
  Core f(test_config(2, 3), log_with_terms(Term(1), {1, 1, 1, 1, 1}));
  // Act: the leader of term 1 sends a snapshot ending at (3, 1).
  REQUIRE(f.step(install(1, meta_at(3, 1))).ok());
  Output out = f.take_output();
  // Check: the snapshot is installed, entries 4 and 5 stay, nothing is truncated, and the
  // answer (after the write) reports the snapshot's index.
  REQUIRE(out.install_snapshot.has_value());
  CHECK(out.install_snapshot->last_index == Index(3));
  CHECK_FALSE(out.truncate_from.has_value());
  CHECK(f.log().offset() == Index(3));
  CHECK(f.log().last_index() == Index(5));
  CHECK(f.log().commit_index() == Index(3));
  auto r = bodies<InstallSnapshotResponse>(out.messages_after_persist);
  REQUIRE(r.size() == 1);
  CHECK(r[0].success);
  CHECK(r[0].last_index == Index(3));
  // Reference: §5.3
}

TEST_CASE("a follower whose log conflicts with the snapshot discards its whole log") {
  // Set up: a follower holding (1,1) (2,1) (3,2) (4,2) (5,2).
  Core f(test_config(2, 3), log_with_terms(Term(2), {1, 1, 2, 2, 2}));
  // Act: the leader of term 3 sends a snapshot ending at (4, 3).
  REQUIRE(f.step(install(3, meta_at(4, 3))).ok());
  Output out = f.take_output();
  // Check: the log is empty after the snapshot, and storage is told to drop what followed.
  REQUIRE(out.install_snapshot.has_value());
  REQUIRE(out.truncate_from.has_value());
  CHECK(*out.truncate_from == Index(5));
  CHECK(f.log().offset() == Index(4));
  CHECK(f.log().last_index() == Index(4));
  CHECK(f.log().last_term() == Term(3));
  CHECK(f.leader() == NodeId(1));
  // Reference: §5.3
}

TEST_CASE("a snapshot the follower already committed past changes nothing") {
  // Set up: a follower that committed up to 4.
  Core f(test_config(2, 3), log_with_terms(Term(1), {1, 1, 1, 1, 1}));
  AppendRequest hb{Term(1), Index(5), Term(1), Index(4), {}};
  REQUIRE(f.step({NodeId(1), NodeId(2), hb}).ok());
  (void)f.take_output();
  // Act
  REQUIRE(f.step(install(1, meta_at(3, 1))).ok());
  Output out = f.take_output();
  // Check: no installation, the log is whole, and the leader still hears success.
  CHECK_FALSE(out.install_snapshot.has_value());
  CHECK(f.log().offset() == Index(0));
  CHECK(f.log().last_index() == Index(5));
  auto r = bodies<InstallSnapshotResponse>(out.messages_after_persist);
  REQUIRE(r.size() == 1);
  CHECK(r[0].success);
  // Reference: §5.3
}

TEST_CASE("snapshot chunks never reach the core and a snapshot from an older term is refused") {
  Core f(test_config(2, 3), log_with_terms(Term(2), {1, 2}));
  // Act / check: a chunk that is not the last is a protocol error and changes nothing.
  Message chunk = install(2, meta_at(2, 2));
  std::get<InstallSnapshot>(chunk.body).done = false;
  CHECK(f.step(chunk).error().is(Errc::protocol_error));
  // A snapshot from a stale leader is answered with the newer term and not installed.
  REQUIRE(f.step(install(1, meta_at(1, 1))).ok());
  Output out = f.take_output();
  CHECK_FALSE(out.install_snapshot.has_value());
  auto r = bodies<AppendResponse>(out.messages);
  REQUIRE(r.size() == 1);
  CHECK(r[0].term == Term(2));
  CHECK(f.log().last_index() == Index(2));
  // Reference: §5.3
}

TEST_CASE("a server restarts from its stored snapshot and the log after it") {
  // Set up: a snapshot at (5, 2) and a stored log holding 4..8 (4 and 5 are covered).
  DurableState d{HardState{Term(3), no_node}, {}, meta_at(5, 2)};
  for (std::uint64_t i = 4; i <= 8; ++i)
    d.entries.push_back(Entry{Index(i), Term(i <= 5 ? 2 : 3), EntryType::normal, {}});
  // Act
  Core f(test_config(2, 3), d);
  // Check: the log starts after the snapshot, which counts as committed and applied.
  CHECK(f.log().offset() == Index(5));
  CHECK(f.log().last_index() == Index(8));
  CHECK(f.log().commit_index() == Index(5));
  CHECK(f.applied_index() == Index(5));
  CHECK(f.snapshot().last_index == Index(5));
  // Reference: §5.1
}

TEST_CASE("a restart drops a stored log that a stored snapshot replaced") {
  // Set up: a crash after a received snapshot at (4, 3) became durable but before the old log
  // (whose index 4 has term 2) was deleted.
  DurableState d = log_with_terms(Term(3), {1, 1, 2, 2, 2});
  d.snapshot = meta_at(4, 3);
  // Act
  Core f(test_config(2, 3), d);
  // Check: nothing of the old log is kept.
  CHECK(f.log().offset() == Index(4));
  CHECK(f.log().last_index() == Index(4));
  CHECK(f.log().last_term() == Term(3));
  // Reference: §5.3
}

TEST_CASE("a failed snapshot transfer is retried and a reported success probes after it") {
  // Set up: S3 lags behind a compacted leader and is in snapshot state.
  Cluster c(3, [](Config& cfg) { cfg.snapshot_trailing_entries = 0; });
  c.elect(1);
  c.isolate(3);
  propose_n(c, 1, 5);
  REQUIRE(c.take_snapshot(1).ok());
  c.heal();
  wait_for_snapshot_state(c, 3);
  REQUIRE(c.core(1).progress(NodeId(3))->state == Progress::State::snapshot);
  c.wire().clear();  // the stream is lost
  // Act: the node layer reports the failure; the next heartbeat round probes again.
  const std::uint64_t first = c.core(1).progress(NodeId(3))->snapshot_stream;
  c.core(1).report_snapshot(NodeId(3), first, false);
  CHECK(c.core(1).progress(NodeId(3))->state == Progress::State::probe);
  wait_for_snapshot_state(c, 3);
  // Check: a new snapshot is requested.
  CHECK(c.core(1).progress(NodeId(3))->state == Progress::State::snapshot);
  REQUIRE(std::count_if(c.wire().begin(), c.wire().end(), [](const Message& m) {
            return std::holds_alternative<InstallSnapshot>(m.body);
          }) == 1);
  // Act: this time the stream succeeds but its answer is lost; the sender reports success.
  c.deliver_if([](const Message&) { return true; });
  c.wire().clear();
  // A late report of the first stream changes nothing.
  c.core(1).report_snapshot(NodeId(3), first, true);
  REQUIRE(c.core(1).progress(NodeId(3))->state == Progress::State::snapshot);
  c.core(1).report_snapshot(NodeId(3), c.core(1).progress(NodeId(3))->snapshot_stream, true);
  c.deliver_all();
  // Check: the leader probed right after the snapshot and S3 is replicating again.
  CHECK(c.core(1).progress(NodeId(3))->state == Progress::State::replicate);
  CHECK(c.core(1).progress(NodeId(3))->match_index == c.core(1).log().last_index());
  // Reference: §5.3
}

TEST_CASE("a snapshot stream neither reported nor answered is given up after its timeout") {
  Cluster c(3, [](Config& cfg) {
    cfg.snapshot_trailing_entries = 0;
    cfg.snapshot_timeout_ticks = 20;
    cfg.check_quorum = false;
  });
  c.elect(1);
  c.isolate(3);
  propose_n(c, 1, 5);
  REQUIRE(c.take_snapshot(1).ok());
  c.heal();
  wait_for_snapshot_state(c, 3);
  const std::uint64_t first = c.core(1).progress(NodeId(3))->snapshot_stream;
  // Act: the stream is lost and the node layer never reports it.
  c.wire().clear();
  c.tick(1, 19);
  // Check: still waiting just before the timeout.
  CHECK(c.core(1).progress(NodeId(3))->state == Progress::State::snapshot);
  CHECK(c.core(1).progress(NodeId(3))->snapshot_stream == first);
  // Act / check: at the timeout the leader probes again, which starts a new stream.
  c.tick(1, 1);
  CHECK(c.core(1).progress(NodeId(3))->state == Progress::State::snapshot);
  CHECK(c.core(1).progress(NodeId(3))->snapshot_stream != first);
  // A late report of the stream given up changes nothing.
  c.core(1).report_snapshot(NodeId(3), first, false);
  CHECK(c.core(1).progress(NodeId(3))->state == Progress::State::snapshot);
  // Reference: §5.3
}
