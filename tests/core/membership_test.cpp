// Membership changes, joint consensus and learners, each as set up / act / check.
#include <doctest/doctest.h>

#include "harness.hpp"

using namespace coraft;
using namespace coraft::core;
using namespace coraft::core::test;

namespace {
std::vector<NodeId> ids(std::initializer_list<std::uint64_t> list) {
  std::vector<NodeId> v;
  for (auto i : list) v.emplace_back(i);
  return v;
}

// `n` servers of which the first `voters` form the cluster; the rest wait to be added.
Cluster cluster_of(std::size_t n, std::size_t voters) {
  return Cluster(n, [voters](Config& cfg) {
    cfg.voters.clear();
    if (cfg.id.value() > voters) return;
    for (std::size_t i = 1; i <= voters; ++i) cfg.voters.emplace_back(i);
  });
}

// Heartbeat rounds until everything sent is answered.

Entry config_entry(std::uint64_t index, std::uint64_t term, std::vector<NodeId> voters) {
  return Entry{Index(index), Term(term), EntryType::config,
               encode_configuration(*Configuration::make(std::move(voters)))};
}
}  // namespace

TEST_CASE("a single-server change takes effect when appended, before it commits") {
  Cluster c = cluster_of(4, 3);
  c.elect(1);
  settle(c, 1);
  // Act: add server 4 as a voter.
  auto at = c.core(1).change_membership({ids({1, 2, 3, 4}), {}, {}});
  REQUIRE(at.ok());
  // Check: the leader uses the new configuration at once, without a joint phase, and already
  // tracks the new server; the entry is not committed yet.
  CHECK(c.core(1).configuration().voters == ids({1, 2, 3, 4}));
  CHECK_FALSE(c.core(1).configuration().joint());
  CHECK(c.core(1).configuration_index() == *at);
  CHECK(c.core(1).progress(NodeId(4)) != nullptr);
  CHECK(c.core(1).log().commit_index() < *at);
  // Act: replicate. Check: every server, the new one included, uses it.
  settle(c, 1);
  for (std::uint64_t id = 1; id <= 4; ++id) {
    CHECK(c.core(id).configuration().voters == ids({1, 2, 3, 4}));
  }
  CHECK(c.core(1).log().commit_index() >= *at);
  // Reference: §4.1
}

TEST_CASE("adding several voters at once passes through a joint configuration the leader leaves") {
  Cluster c = cluster_of(5, 3);
  c.elect(1);
  settle(c, 1);
  // Act: grow from 3 to 5 voters in one change.
  auto at = c.core(1).change_membership({ids({1, 2, 3, 4, 5}), {}, {}});
  REQUIRE(at.ok());
  // Check: a joint configuration of old and new voters is in force first.
  CHECK(c.core(1).configuration().joint());
  CHECK(c.core(1).configuration().outgoing_voters == ids({1, 2, 3}));
  // Act: replicate until it commits.
  settle(c, 1);
  // Check: the leader appended the new configuration alone, and everyone has it committed.
  CHECK_FALSE(c.core(1).configuration().joint());
  CHECK(c.core(1).configuration_index() > *at);
  CHECK(c.core(1).log().commit_index() >= c.core(1).configuration_index());
  for (std::uint64_t id = 1; id <= 5; ++id) {
    CHECK(c.core(id).configuration().voters == ids({1, 2, 3, 4, 5}));
  }
  // Reference: §4.3
}

TEST_CASE("a joint configuration commits only with a majority of both voter sets") {
  // Set up: voters {1,2,3} become {1,4,5}; the old voters 2 and 3 are cut off.
  Cluster c = cluster_of(5, 3);
  c.elect(1);
  settle(c, 1);
  c.isolate(2);
  c.isolate(3);
  // Act
  auto at = c.core(1).change_membership({ids({1, 4, 5}), {}, {}});
  REQUIRE(at.ok());
  settle(c, 1);
  // Check: 1, 4 and 5 hold the joint entry, a majority of the new set, but not of the old one.
  CHECK(c.core(4).log().last_index() >= *at);
  CHECK(c.core(1).log().commit_index() < *at);
  // Act: server 2 comes back. Check: now both majorities hold it, and the joint phase ends.
  c.heal();
  c.isolate(3);
  settle(c, 1, 15);
  CHECK(c.core(1).log().commit_index() >= *at);
  CHECK(c.core(1).configuration().voters == ids({1, 4, 5}));
  CHECK_FALSE(c.core(1).configuration().joint());
  // Reference: §4.3
}

TEST_CASE("a configuration whose entry is truncated is undone") {
  // Set up: a follower of {1,2,3} that appended an uncommitted change adding server 4.
  Core f(test_config(2, 3), {});
  AppendRequest add{Term(1), Index(0), Term(0), Index(0), {config_entry(1, 1, ids({1, 2, 3, 4}))}};
  REQUIRE(f.step({NodeId(1), NodeId(2), add}).ok());
  REQUIRE(f.configuration().voters == ids({1, 2, 3, 4}));
  // Act: the leader of term 2 overwrites index 1 with an ordinary entry.
  AppendRequest other{
      Term(2), Index(0), Term(0), Index(0), {Entry{Index(1), Term(2), EntryType::normal, {}}}};
  REQUIRE(f.step({NodeId(3), NodeId(2), other}).ok());
  // Check: the configuration is the one before the change again.
  CHECK(f.configuration().voters == ids({1, 2, 3}));
  CHECK(f.configuration_index() == Index(0));
  // Reference: §4.1
}

TEST_CASE("a leader removed from the configuration steps down once the change commits") {
  Cluster c(3);
  c.elect(1);
  settle(c, 1);
  // Act: the leader removes itself.
  REQUIRE(c.core(1).change_membership({ids({2, 3}), {}, {}}).ok());
  // Check: it keeps leading (without counting itself) until the change commits.
  CHECK(c.core(1).role() == Role::leader);
  settle(c, 1, 1);
  CHECK(c.core(1).role() == Role::follower);
  CHECK(c.core(2).configuration().voters == ids({2, 3}));
  // Act: time passes. Check: the removed server never campaigns; the others elect a leader.
  c.tick(1, 100);
  CHECK(c.core(1).role() == Role::follower);
  c.wire().clear();
  for (int i = 0; i < 100 && !c.leader(); ++i) {
    c.tick(2);
    c.tick(3);
    c.deliver_all();
  }
  CHECK((c.leader() == 2u || c.leader() == 3u));
  // Reference: §4.2.2
}

TEST_CASE("a learner receives the log but never votes or counts toward a commit") {
  // Set up: voters {1,2,3} and learner 4.
  Cluster c(4, [](Config& cfg) {
    cfg.voters = ids({1, 2, 3});
    cfg.learners = ids({4});
  });
  c.elect(1);
  settle(c, 1);
  // Act: with voters 2 and 3 cut off, the leader writes an entry.
  c.isolate(2);
  c.isolate(3);
  auto at = c.propose(1, "x");
  REQUIRE(at.ok());
  settle(c, 1);
  // Check: the learner holds it, but the leader and the learner make no majority.
  CHECK(c.core(4).log().last_index() >= *at);
  CHECK(c.core(1).log().commit_index() < *at);
  // Check: a learner never starts an election, however long it waits.
  c.heal();
  c.isolate(1);
  c.tick(4, 100);
  CHECK(c.core(4).role() == Role::follower);
  CHECK(c.core(4).term() == c.core(1).term());
  // Reference: §4.2.1
}

TEST_CASE("a learner added with promotion becomes a voter once caught up for an election timeout") {
  Cluster c = cluster_of(4, 3);
  c.elect(1);
  settle(c, 1);
  // Act: add server 4 as a learner to be promoted.
  REQUIRE(c.core(1).change_membership({ids({1, 2, 3}), ids({4}), ids({4})}).ok());
  settle(c, 1, 3);
  // Check: not yet promoted, as it has not been close for a full election timeout.
  CHECK(c.core(1).configuration().learners == ids({4}));
  // Act: more heartbeat rounds than an election timeout.
  settle(c, 1, 15);
  // Check: promoted on every server.
  for (std::uint64_t id = 1; id <= 4; ++id) {
    CHECK(c.core(id).configuration().voters == ids({1, 2, 3, 4}));
    CHECK(c.core(id).configuration().learners.empty());
  }
  // Reference: §4.2.1
}

TEST_CASE("a promotion due during a leadership transfer waits for the transfer to end") {
  // Set up: learner 4 to be promoted, caught up; TimeoutNow to server 2 will be lost.
  Cluster c = cluster_of(4, 3);
  c.elect(1);
  settle(c, 1);
  REQUIRE(c.core(1).change_membership({ids({1, 2, 3}), ids({4}), ids({4})}).ok());
  settle(c, 1, 3);
  const Index conf_index = c.core(1).configuration_index();
  REQUIRE(c.core(1).transfer_leadership(NodeId(2)).ok());
  c.flush(1);
  c.wire().clear();
  // Act: the promotion falls due while the transfer is in progress.
  settle(c, 1, 9);
  // Check: no configuration entry during the transfer.
  REQUIRE(c.core(1).transfer_target() == NodeId(2));
  CHECK(c.core(1).configuration_index() == conf_index);
  CHECK(c.core(1).configuration().learners == ids({4}));
  // Act: the transfer is given up; the promotion follows.
  settle(c, 1, 3);
  // Check
  CHECK(c.core(1).transfer_target() == no_node);
  CHECK(c.core(1).configuration().voters == ids({1, 2, 3, 4}));
  // Reference: §3.10, §4.2.1
}

TEST_CASE("a transfer is refused while a membership change is unfinished") {
  Cluster c = cluster_of(4, 3);
  c.elect(1);
  settle(c, 1);
  REQUIRE(c.core(1).change_membership({ids({1, 2, 3}), ids({4}), {}}).ok());
  // Act / check: refused until the change commits.
  CHECK(c.core(1).transfer_leadership(NodeId(2)).error().is(Errc::config_change_pending));
  settle(c, 1);
  CHECK(c.core(1).transfer_leadership(NodeId(2)).ok());
  // Reference: §3.10, §4.1
}

TEST_CASE("a learner that stays behind is not promoted") {
  Cluster c = cluster_of(4, 3);
  c.elect(1);
  settle(c, 1);
  // Act: add learner 4 for promotion, but it never hears from the leader.
  c.isolate(4);
  REQUIRE(c.core(1).change_membership({ids({1, 2, 3}), ids({4}), ids({4})}).ok());
  for (int i = 0; i < 5; ++i) REQUIRE(c.propose(1, "x").ok());
  settle(c, 1, 30);
  // Check
  CHECK(c.core(1).configuration().learners == ids({4}));
  CHECK(c.core(1).configuration().voters == ids({1, 2, 3}));
  // Reference: §4.2.1
}

TEST_CASE("a change is refused while another is unfinished, or when it cannot be made safely") {
  Cluster c = cluster_of(5, 3);
  // Set up: 1 wins an election, but nobody has acknowledged its first entry yet.
  auto votes = [](const Message& m) {
    return std::holds_alternative<VoteRequest>(m.body) ||
           std::holds_alternative<VoteResponse>(m.body);
  };
  while (c.core(1).role() == Role::follower) c.tick(1);
  for (int i = 0; i < 4 && c.core(1).role() != Role::leader; ++i) c.deliver_if(votes);
  REQUIRE(c.core(1).role() == Role::leader);
  // Check: before the leader commits an entry of its term, no change.
  CHECK(c.core(1).change_membership({ids({1, 2, 3, 4}), {}, {}}).error().is(Errc::overloaded));
  c.wire().clear();
  settle(c, 1, 12);
  // Act: one change; then a second one before the first commits.
  REQUIRE(c.core(1).change_membership({ids({1, 2, 3, 4}), {}, {}}).ok());
  CHECK(c.core(1)
            .change_membership({ids({1, 2, 3, 4, 5}), {}, {}})
            .error()
            .is(Errc::config_change_pending));
  settle(c, 1);
  // Check: a voter cannot become a learner in one step; promotion needs a learner; a follower
  // cannot change anything.
  CHECK(c.core(1)
            .change_membership({ids({1, 2, 3}), ids({4}), {}})
            .error()
            .is(Errc::invalid_argument));
  CHECK(c.core(1)
            .change_membership({ids({1, 2, 3, 4}), {}, ids({4})})
            .error()
            .is(Errc::invalid_argument));
  CHECK(c.core(1).change_membership({{}, {}, {}}).error().is(Errc::invalid_argument));
  CHECK(c.core(2).change_membership({ids({1, 2}), {}, {}}).error().is(Errc::not_leader));
  CHECK(c.core(1).configuration().voters == ids({1, 2, 3, 4}));
  // Reference: §4.1
}

TEST_CASE("a removed server that missed its removal cannot disrupt the cluster") {
  // Set up: 3 is cut off while {1,2,3} shrinks to {1,2}.
  Cluster c(3);
  c.elect(1);
  settle(c, 1);
  c.isolate(3);
  REQUIRE(c.core(1).change_membership({ids({1, 2}), {}, {}}).ok());
  settle(c, 1);
  REQUIRE(c.core(1).configuration().voters == ids({1, 2}));
  const Term term = c.core(1).term();
  // Act: 3 comes back and times out again and again, still believing it is a voter.
  c.heal();
  for (int i = 0; i < 60; ++i) {
    c.tick(3);
    c.tick(1);
    c.deliver_all();
  }
  // Check: the leader and its term are untouched.
  CHECK(c.core(1).role() == Role::leader);
  CHECK(c.core(1).term() == term);
  CHECK(c.core(2).term() == term);
  // Reference: §4.2.3
}

TEST_CASE("a snapshot records the configuration and a restart from it uses it") {
  // Set up: {1,2,3} grows to {1,2,3,4}, then the leader snapshots and compacts everything.
  Cluster c = cluster_of(4, 3);
  for (std::uint64_t id = 1; id <= 4; ++id) c.server(id).config.snapshot_trailing_entries = 0;
  for (std::uint64_t id = 1; id <= 4; ++id) c.restart(id);
  c.elect(1);
  settle(c, 1);
  REQUIRE(c.core(1).change_membership({ids({1, 2, 3, 4}), {}, {}}).ok());
  settle(c, 1);
  REQUIRE(c.take_snapshot(1).ok());
  CHECK(c.core(1).snapshot().configuration.voters == ids({1, 2, 3, 4}));
  // Act: restart the leader; its bootstrap configuration still names three voters.
  c.crash(1);
  c.restart(1);
  // Check: it uses the snapshot's configuration.
  CHECK(c.core(1).log().offset() == c.core(1).snapshot().last_index);
  CHECK(c.core(1).configuration().voters == ids({1, 2, 3, 4}));
  // Reference: §5.1
}

TEST_CASE("a leader cut off as it leaves a joint configuration without it is elected again") {
  // Set up: voters {1,3} with learner 2; leader 3 swaps itself for 2 through a joint
  // configuration (new {1,2}, old {1,3}).
  Cluster c(3, [](Config& cfg) {
    cfg.voters = ids({1, 3});
    cfg.learners = ids({2});
  });
  c.elect(3);
  settle(c, 3);
  auto at = c.core(3).change_membership({ids({1, 2}), {}, {}});
  REQUIRE(at.ok());
  REQUIRE(c.core(3).configuration().joint());
  // Act: 1 and 2 store the joint entry; 3 hears their answers, commits it and appends the final
  // configuration, but nothing it sends from then on arrives.
  c.flush(3);
  c.deliver_if([](const Message& m) { return std::holds_alternative<AppendRequest>(m.body); });
  c.flush(1);
  c.flush(2);
  c.cut(3, 1);
  c.cut(3, 2);
  c.deliver_all();
  REQUIRE(c.core(3).log().commit_index() >= *at);
  REQUIRE(c.core(3).configuration().voters == ids({1, 2}));
  REQUIRE_FALSE(c.core(3).configuration().joint());
  REQUIRE(c.core(1).configuration().joint());
  REQUIRE(c.core(1).log().commit_index() < *at);
  // Act: 3 restarts, a follower; the links come back and time passes. 1 and 2 need 3's vote
  // (old set {1,3}), and 3 refuses them: its log is longer.
  c.crash(3);
  c.restart(3);
  c.heal();
  std::optional<std::uint64_t> leader;
  for (int i = 0; i < 400 && !(leader == 1u || leader == 2u); ++i) {
    for (std::uint64_t id = 1; id <= 3; ++id) c.tick(id);
    c.deliver_all();
    leader = c.leader();
  }
  // Check: 3 campaigned, committed the final configuration and stepped down; 1 or 2 leads it.
  REQUIRE((leader == 1u || leader == 2u));
  CHECK(c.core(*leader).configuration().voters == ids({1, 2}));
  CHECK_FALSE(c.core(*leader).configuration().joint());
  CHECK(c.core(3).role() == Role::follower);
  // Reference: §4.2.2, §4.3
}
