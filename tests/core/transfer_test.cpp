// Leadership transfer, each as set up / act / check.
#include <algorithm>

#include <doctest/doctest.h>

#include "harness.hpp"

using namespace coraft;
using namespace coraft::core;
using namespace coraft::core::test;

namespace {

bool timeout_now_on_wire(Cluster& c, std::uint64_t to) {
  return std::any_of(c.wire().begin(), c.wire().end(), [&](const Message& m) {
    return m.to == NodeId(to) && std::holds_alternative<TimeoutNow>(m.body);
  });
}
}  // namespace

TEST_CASE("a transfer to an up-to-date voter sends TimeoutNow and the target takes over") {
  Cluster c(3);
  c.elect(1);
  settle(c, 1);
  const Term before = c.core(1).term();
  // Act
  REQUIRE(c.core(1).transfer_leadership(NodeId(2)).ok());
  c.flush(1);
  // Check: TimeoutNow goes out at once; once delivered, 2 wins the next term and 1 follows.
  CHECK(timeout_now_on_wire(c, 2));
  c.deliver_all();
  CHECK(c.core(2).role() == Role::leader);
  CHECK(c.core(2).term() == before + 1);
  CHECK(c.core(1).role() == Role::follower);
  CHECK(c.core(1).leader() == NodeId(2));
  // Reference: §3.10
}

TEST_CASE("a transfer brings a lagging target up to date first and refuses proposals meanwhile") {
  // Set up: 3 misses two entries.
  Cluster c(3);
  c.elect(1);
  settle(c, 1);
  c.isolate(3);
  REQUIRE(c.propose(1, "a").ok());
  REQUIRE(c.propose(1, "b").ok());
  settle(c, 1);
  // Act
  REQUIRE(c.core(1).transfer_leadership(NodeId(3)).ok());
  c.flush(1);
  // Check: no TimeoutNow yet, and proposals and membership changes are refused.
  CHECK_FALSE(timeout_now_on_wire(c, 3));
  CHECK(c.propose(1, "c").error().is(Errc::transfer_in_progress));
  CHECK(c.core(1)
            .change_membership({{NodeId(1), NodeId(2)}, {}, {}})
            .error()
            .is(Errc::transfer_in_progress));
  CHECK(c.core(1).transfer_target() == NodeId(3));
  // Act: 3 comes back and catches up.
  c.heal();
  settle(c, 1, 2);
  // Check: 3 leads and holds both entries.
  CHECK(c.core(3).role() == Role::leader);
  CHECK(c.core(1).role() == Role::follower);
  CHECK(c.core(3).log().last_index() >= Index(3));
  // Reference: §3.10
}

TEST_CASE("a transfer that does not finish within an election timeout is given up") {
  Cluster c(3, [](Config& cfg) { cfg.check_quorum = false; });
  c.elect(1);
  settle(c, 1);
  c.isolate(2);
  // Act
  REQUIRE(c.core(1).transfer_leadership(NodeId(2)).ok());
  c.tick(1, 9);
  CHECK(c.propose(1, "x").error().is(Errc::transfer_in_progress));
  c.tick(1, 1);
  // Check: after election_ticks the leader leads on and accepts proposals again.
  CHECK(c.core(1).role() == Role::leader);
  CHECK(c.core(1).transfer_target() == no_node);
  CHECK(c.propose(1, "x").ok());
  // Reference: §3.10
}

TEST_CASE("TimeoutNow makes a voter campaign at once, skipping PreVote and the lease check") {
  // Set up: a follower of leader 1 in term 2 that heard from it just now.
  Core f(test_config(2, 3), {});
  REQUIRE(f.step({NodeId(1), NodeId(2), HeartbeatRequest{Term(2), Index(0), 0}}).ok());
  (void)f.take_output();
  // Act
  REQUIRE(f.step({NodeId(1), NodeId(2), TimeoutNow{Term(2)}}).ok());
  Output out = f.take_output();
  // Check: a real candidate of term 3 whose requests say they follow a transfer.
  CHECK(f.role() == Role::candidate);
  CHECK(f.term() == Term(3));
  int requests = 0;
  for (const Message& m : out.messages_after_persist) {
    if (const auto* v = std::get_if<VoteRequest>(&m.body)) {
      CHECK(v->leadership_transfer);
      CHECK_FALSE(v->pre_vote);
      ++requests;
    }
  }
  CHECK(requests == 2);
  // Check: a voter inside its leader lease still grants such a request.
  Core v(test_config(3, 3), {});
  REQUIRE(v.step({NodeId(1), NodeId(3), HeartbeatRequest{Term(2), Index(0), 0}}).ok());
  REQUIRE(
      v.step({NodeId(2), NodeId(3), VoteRequest{Term(3), Index(0), Term(0), false, true}}).ok());
  CHECK(v.vote() == NodeId(2));
  // Reference: §3.10
}

TEST_CASE("a transfer needs another voter as its target, and a leader to make it") {
  Cluster c(3, [](Config& cfg) {
    cfg.voters = {NodeId(1), NodeId(2)};
    cfg.learners = {NodeId(3)};
  });
  c.elect(1);
  CHECK(c.core(1).transfer_leadership(NodeId(1)).error().is(Errc::invalid_argument));
  CHECK(c.core(1).transfer_leadership(NodeId(3)).error().is(Errc::invalid_argument));
  CHECK(c.core(1).transfer_leadership(NodeId(9)).error().is(Errc::invalid_argument));
  CHECK(c.core(2).transfer_leadership(NodeId(1)).error().is(Errc::not_leader));
  CHECK(c.core(1).transfer_target() == no_node);
  // Reference: §3.10
}
