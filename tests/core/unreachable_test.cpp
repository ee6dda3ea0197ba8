// The driver's report that a peer could not be sent to (its queue refused a message).
#include <doctest/doctest.h>

#include "harness.hpp"

using namespace coraft;
using namespace coraft::core;
using namespace coraft::core::test;

TEST_CASE("an unreachable follower in replicate state is probed again instead of waiting") {
  Cluster c(3);
  c.elect(1);
  REQUIRE(c.propose(1, "a").ok());
  c.deliver_all();
  const Progress* pr = c.core(1).progress(NodeId(2));
  REQUIRE(pr != nullptr);
  REQUIRE(pr->state == Progress::State::replicate);
  // Act: the message carrying the next entry is lost, and the driver says so.
  REQUIRE(c.propose(1, "b").ok());
  c.flush(1);
  c.deliver_if([](const Message& m) { return m.to != NodeId(2); });
  c.core(1).report_unreachable(NodeId(2));
  // Check: the follower is probed from what it is known to hold; the next heartbeat round
  // brings it the lost entry without a stall timeout.
  pr = c.core(1).progress(NodeId(2));
  CHECK(pr->state == Progress::State::probe);
  c.tick(1, 2);
  c.deliver_all();
  CHECK(c.core(2).log().last_index() == c.core(1).log().last_index());
  // A report about a follower in probe state, a stranger or on a follower changes nothing.
  c.core(1).report_unreachable(NodeId(9));
  c.core(2).report_unreachable(NodeId(3));
  CHECK(c.core(1).role() == Role::leader);
}
// Reference: etcd raft's ReportUnreachable; thesis §3.5 (retrying AppendEntries).
