// Linearizable reads (ReadIndex, leases, follower reads), each as set up / act / check.
#include <algorithm>

#include <doctest/doctest.h>

#include "harness.hpp"

using namespace coraft;
using namespace coraft::core;
using namespace coraft::core::test;

namespace {

std::size_t heartbeats_on_wire(Cluster& c) {
  return static_cast<std::size_t>(std::count_if(
      c.wire().begin(), c.wire().end(),
      [](const Message& m) { return std::holds_alternative<HeartbeatRequest>(m.body); }));
}

bool ready(Cluster& c, std::uint64_t server, std::uint64_t id) {
  const auto& r = c.server(server).reads_ready;
  return std::any_of(r.begin(), r.end(), [&](const ReadState& s) { return s.id == id; });
}

Cluster leased(std::size_t n) {
  return Cluster(n, [](Config& cfg) { cfg.lease_reads = true; });
}
}  // namespace

TEST_CASE("a leader answers a read at its commit index once a heartbeat round confirms it") {
  Cluster c(3);
  c.elect(1);
  settle(c, 1);
  REQUIRE(c.propose(1, "x").ok());
  settle(c, 1);
  const Index commit = c.core(1).log().commit_index();
  // Act
  REQUIRE(c.core(1).read_index(7).ok());
  c.flush(1);
  // Check: not answered before the round; a heartbeat to each follower carries the round.
  CHECK_FALSE(ready(c, 1, 7));
  CHECK(heartbeats_on_wire(c) == 2);
  c.deliver_all();
  REQUIRE(ready(c, 1, 7));
  CHECK(c.server(1).reads_ready.back().index == commit);
  CHECK(c.core(1).log().last_index() == commit);  // no log write was needed
  // Reference: §6.4
}

TEST_CASE("reads asked while a round is out share the next round") {
  Cluster c(3);
  c.elect(1);
  settle(c, 1);
  // Act: a first read starts a round; two more arrive while it is out.
  REQUIRE(c.core(1).read_index(1).ok());
  REQUIRE(c.core(1).read_index(2).ok());
  REQUIRE(c.core(1).read_index(3).ok());
  c.flush(1);
  // Check: one round only so far.
  CHECK(heartbeats_on_wire(c) == 2);
  // Act: the first round completes. Check: read 1 is served; one round goes out for 2 and 3.
  c.deliver_if([](const Message& m) { return std::holds_alternative<HeartbeatRequest>(m.body); });
  c.deliver_if([](const Message& m) { return std::holds_alternative<HeartbeatResponse>(m.body); });
  CHECK(ready(c, 1, 1));
  CHECK_FALSE(ready(c, 1, 2));
  CHECK(heartbeats_on_wire(c) == 2);
  c.deliver_all();
  CHECK(ready(c, 1, 2));
  CHECK(ready(c, 1, 3));
  // Reference: §6.4
}

TEST_CASE("a leader cut off from the majority never answers a read and drops it on stepping down") {
  Cluster c(3);
  c.elect(1);
  settle(c, 1);
  c.isolate(1);
  // Act
  REQUIRE(c.core(1).read_index(9).ok());
  for (int i = 0; i < 30 && c.core(1).role() == Role::leader; ++i) {
    c.tick(1);
    c.deliver_all();
  }
  // Check
  CHECK_FALSE(ready(c, 1, 9));
  CHECK(c.core(1).role() == Role::follower);
  CHECK(c.server(1).reads_dropped == std::vector<std::uint64_t>{9});
  // Reference: §6.4
}

namespace {

// Elects server 1 and stops before anything else moves: its no-op is appended, not committed.
void elect_uncommitted(Cluster& c) {
  auto votes = [](const Message& m) {
    return std::holds_alternative<VoteRequest>(m.body) ||
           std::holds_alternative<VoteResponse>(m.body);
  };
  while (c.core(1).role() == Role::follower) c.tick(1);
  for (int i = 0; i < 4 && c.core(1).role() != Role::leader; ++i) c.deliver_if(votes);
  REQUIRE(c.core(1).role() == Role::leader);
  REQUIRE(c.core(1).log().commit_index() < c.core(1).log().last_index());
}

}  // namespace

TEST_CASE(
    "a new leader holds reads until it commits an entry of its term, then answers them at that "
    "index") {
  Cluster c(3);
  elect_uncommitted(c);
  // Act: a local read and a follower's forwarded read arrive before the no-op commits.
  REQUIRE(c.core(1).read_index(1).ok());
  REQUIRE(c.core(1).step({NodeId(2), NodeId(1), ReadIndexRequest{c.core(1).term(), 2}}).ok());
  c.flush(1);
  // Check: neither is answered nor refused yet.
  CHECK_FALSE(ready(c, 1, 1));
  CHECK(c.server(1).reads_dropped.empty());
  // Act: the no-op commits and the heartbeat round completes.
  settle(c, 1);
  // Check: both are answered at the commit index of the new term, which covers the no-op.
  const Index noop = c.core(1).log().commit_index();
  REQUIRE(c.core(1).log().matches(noop, c.core(1).term()));
  REQUIRE(ready(c, 1, 1));
  CHECK(c.server(1).reads_ready.back().index == noop);
  REQUIRE(ready(c, 2, 2));
  CHECK(c.server(2).reads_ready.back().index == noop);
  // Reference: §6.4
}

TEST_CASE(
    "reads held by a new leader are dropped if it steps down before committing, and count toward "
    "the limit") {
  Cluster c(3, [](Config& cfg) { cfg.reads_pending_max = 2; });
  elect_uncommitted(c);
  REQUIRE(c.core(1).read_index(1).ok());
  REQUIRE(c.core(1).read_index(2).ok());
  // Check: the limit covers held reads.
  CHECK(c.core(1).read_index(3).error().is(Errc::overloaded));
  // Act: cut off, the leader steps down before its no-op commits.
  c.isolate(1);
  for (int i = 0; i < 30 && c.core(1).role() == Role::leader; ++i) {
    c.tick(1);
    c.deliver_all();
  }
  // Check
  REQUIRE(c.core(1).role() == Role::follower);
  CHECK(c.server(1).reads_dropped == std::vector<std::uint64_t>{1, 2});
  CHECK(c.server(1).reads_ready.empty());
  // Reference: §6.4
}

TEST_CASE("a follower's read gets its read index from the leader") {
  Cluster c(3);
  c.elect(1);
  settle(c, 1);
  REQUIRE(c.propose(1, "x").ok());
  settle(c, 1);
  // Act
  REQUIRE(c.core(2).read_index(5).ok());
  c.flush(2);
  // Check: the request goes to the leader; the answer carries the leader's commit index.
  REQUIRE(c.wire().size() == 1);
  CHECK(std::holds_alternative<ReadIndexRequest>(c.wire().front().body));
  c.deliver_all();
  REQUIRE(ready(c, 2, 5));
  CHECK(c.server(2).reads_ready.back().index == c.core(1).log().commit_index());
  // Check: a server that knows no leader refuses; a non-leader asked directly says no.
  Core lone(test_config(3, 3), {});
  CHECK(lone.read_index(1).error().is(Errc::not_leader));
  REQUIRE(c.core(3).step({NodeId(2), NodeId(3), ReadIndexRequest{c.core(3).term(), 4}}).ok());
  c.flush(3);
  c.deliver_all();
  CHECK(c.server(2).reads_dropped == std::vector<std::uint64_t>{4});
  // Reference: §6.4.1
}

TEST_CASE("a lease read is answered at once within the lease and needs a round after it") {
  Cluster c = leased(3);
  c.elect(1);
  settle(c, 1);
  // Act / check: a quorum answered a heartbeat just now, so the read needs no round.
  REQUIRE(c.core(1).read_index(1).ok());
  c.flush(1);
  CHECK(ready(c, 1, 1));
  CHECK(heartbeats_on_wire(c) == 0);
  // Act: no answers for election_ticks - 1 - drift ticks.
  c.isolate(1);
  const auto lease =
      c.core(1).config().election_ticks - 1 - c.core(1).config().lease_clock_drift_ticks;
  c.tick(1, static_cast<int>(lease));
  c.wire().clear();
  REQUIRE(c.core(1).read_index(2).ok());
  c.flush(1);
  // Check: the lease expired; the read waits for a round.
  CHECK_FALSE(ready(c, 1, 2));
  CHECK(heartbeats_on_wire(c) == 2);
  // Reference: §6.4.1
}

TEST_CASE("lease reads need CheckQuorum and a drift of at least one tick, below the timeout") {
  Config cfg = test_config(1, 3);
  cfg.lease_reads = true;
  CHECK(cfg.validate().ok());
  cfg.check_quorum = false;
  CHECK(cfg.validate().error().is(Errc::invalid_argument));
  cfg.check_quorum = true;
  cfg.lease_clock_drift_ticks = cfg.election_ticks - 1;
  CHECK(cfg.validate().error().is(Errc::invalid_argument));
  cfg.lease_clock_drift_ticks = cfg.election_ticks - 2;
  CHECK(cfg.validate().ok());
  // No two clocks run at exactly one rate: a drift of zero is refused.
  cfg.lease_clock_drift_ticks = 0;
  CHECK(cfg.validate().error().is(Errc::invalid_argument));
  // Reference: §6.4.1
}

TEST_CASE("a lease ends before a voter that answered its round may vote, with the drift allowed") {
  // Set up: drift of one tick; a quorum answers the round the leader sent at its last tick.
  Cluster c(3, [](Config& cfg) {
    cfg.lease_reads = true;
    cfg.lease_clock_drift_ticks = 1;
  });
  c.elect(1);
  settle(c, 1);
  const std::uint32_t election = c.core(1).config().election_ticks;
  const std::uint32_t drift = c.core(1).config().lease_clock_drift_ticks;
  c.isolate(1);
  // Act: voter 2 heard the round; its first tick comes right after, and its clock runs ahead
  // by the drift allowed, so its election_ticks ticks take election_ticks - 1 - drift of the
  // leader's tick periods. Then another server asks for its vote.
  c.tick(2, static_cast<int>(election));
  const Term next = c.core(2).term() + 1;
  REQUIRE(c.core(2)
              .step({NodeId(3), NodeId(2),
                     VoteRequest{next, c.core(2).log().last_index(), c.core(2).log().last_term(),
                                 false, false}})
              .ok());
  REQUIRE(c.core(2).vote() == NodeId(3));  // a new leader may now be elected
  c.tick(1, static_cast<int>(election - 1 - drift));
  c.wire().clear();
  REQUIRE(c.core(1).read_index(9).ok());
  c.flush(1);
  // Check: the old leader's lease is over; the read waits for a round.
  CHECK_FALSE(ready(c, 1, 9));
  // Reference: §6.4.1
}

TEST_CASE("a newer term learnt from a response keeps a follower refusing votes in a lease") {
  // Set up: follower 2 hears leader 1 of term 1.
  Cluster c = leased(3);
  c.elect(1);
  settle(c, 1);
  const Term t = c.core(2).term();
  REQUIRE(c.core(2).leader() == NodeId(1));
  // Act: a delayed response of a newer term reaches follower 2 (from a server that ran an
  // election meanwhile); then, a few ticks later, a candidate asks for its vote.
  REQUIRE(c.core(2)
              .step({NodeId(3), NodeId(2),
                     AppendResponse{t + 1, false, Index(), Index(), Term(), Index()}})
              .ok());
  REQUIRE(c.core(2).term() == t + 1);
  c.tick(2, 3);
  REQUIRE(c.core(2)
              .step({NodeId(3), NodeId(2),
                     VoteRequest{t + 2, c.core(2).log().last_index(), c.core(2).log().last_term(),
                                 false, false}})
              .ok());
  // Check: leader 1 may still hold its lease; follower 2 refuses.
  CHECK(c.core(2).vote() != NodeId(3));
  CHECK(c.core(2).term() == t + 1);
  // Act: a candidate asks in the term follower 2 just learnt, with and without PreVote.
  for (bool pre_vote : {true, false}) {
    const Term asked = pre_vote ? t + 2 : t + 1;
    REQUIRE(c.core(2)
                .step({NodeId(3), NodeId(2),
                       VoteRequest{asked, c.core(2).log().last_index(), c.core(2).log().last_term(),
                                   pre_vote, false}})
                .ok());
  }
  c.flush(2);
  // Check: refused too.
  CHECK(c.core(2).vote() != NodeId(3));
  for (const Message& m : c.wire()) {
    if (const auto* v = std::get_if<VoteResponse>(&m.body)) CHECK_FALSE(v->granted);
  }
  // Reference: §6.4.1, §4.2.3
}

TEST_CASE("with lease reads a restarted voter honours a leader lease for an election timeout") {
  Config cfg = test_config(2, 3);
  cfg.lease_reads = true;
  Core v(cfg, DurableState{HardState{Term(4), NodeId(1)}, {}});
  // Act: a candidate asks at once after the start, and again an election timeout later.
  REQUIRE(
      v.step({NodeId(3), NodeId(2), VoteRequest{Term(5), Index(0), Term(0), false, false}}).ok());
  CHECK(v.term() == Term(4));
  CHECK(v.vote() == NodeId(1));
  for (std::uint32_t i = 0; i < cfg.election_ticks; ++i) v.tick();
  (void)v.take_output();
  REQUIRE(
      v.step({NodeId(3), NodeId(2), VoteRequest{Term(5), Index(0), Term(0), false, false}}).ok());
  // Check
  CHECK(v.vote() == NodeId(3));
  // Check: a server that never saw a term cannot have supported a lease and votes at once.
  Core fresh(cfg, {});
  REQUIRE(fresh.step({NodeId(3), NodeId(2), VoteRequest{Term(5), Index(0), Term(0), false, false}})
              .ok());
  CHECK(fresh.vote() == NodeId(3));
  // Reference: §6.4.1
}

TEST_CASE("a leader that sent TimeoutNow serves no more lease reads") {
  Cluster c = leased(3);
  c.elect(1);
  settle(c, 1);
  // Act: the transfer goes out but TimeoutNow is lost; the transfer is given up.
  REQUIRE(c.core(1).transfer_leadership(NodeId(2)).ok());
  c.flush(1);
  c.wire().clear();
  c.tick(1, static_cast<int>(c.core(1).config().election_ticks) - 1);
  c.deliver_all();
  c.tick(1);
  c.wire().clear();
  REQUIRE(c.core(1).transfer_target() == no_node);
  REQUIRE(c.core(1).read_index(3).ok());
  c.flush(1);
  // Check: a round is needed.
  CHECK_FALSE(ready(c, 1, 3));
  CHECK(heartbeats_on_wire(c) == 2);
  // Reference: §3.10
}
