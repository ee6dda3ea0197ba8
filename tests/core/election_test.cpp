// Leader election rules, each as set up / act / check with the thesis section it follows.
#include <doctest/doctest.h>

#include <algorithm>

#include "harness.hpp"

using namespace coraft;
using namespace coraft::core;
using namespace coraft::core::test;

namespace {
void no_pre_vote(Config& c) {
  c.pre_vote = false;
}
}  // namespace

TEST_CASE("a follower that hears from no leader starts an election after its timeout") {
  // Set up: one server of three, PreVote off so that the election itself is visible.
  Cluster c(3, no_pre_vote);
  // Act: tick just below the minimum timeout, then up to the maximum.
  c.tick(1, 9);
  const Role before = c.core(1).role();
  for (int i = 0; i < 10 && c.core(1).role() == Role::follower; ++i) c.tick(1);
  // Check: no election before election_ticks; a candidate of term 1 voting for itself after.
  CHECK(before == Role::follower);
  CHECK(c.core(1).role() == Role::candidate);
  CHECK(c.core(1).term() == Term(1));
  CHECK(c.core(1).vote() == NodeId(1));
  // Reference: §3.4
}

TEST_CASE("election timeouts are randomized within one to two election timeouts per seed") {
  // Set up: the same server with many seeds.
  std::vector<int> seen;
  for (std::uint64_t seed = 1; seed <= 40; ++seed) {
    Config cfg = test_config(1, 3);
    cfg.pre_vote = false;
    cfg.rng_seed = seed;
    Core core(cfg, {});
    // Act: count ticks until it campaigns.
    int ticks = 0;
    while (core.role() == Role::follower) {
      core.tick();
      ++ticks;
    }
    seen.push_back(ticks);
  }
  // Check: every timeout lies in [10, 20), and they are not all equal.
  CHECK(*std::min_element(seen.begin(), seen.end()) >= 10);
  CHECK(*std::max_element(seen.begin(), seen.end()) < 20);
  CHECK(std::adjacent_find(seen.begin(), seen.end(), std::not_equal_to<>()) != seen.end());
  // Reference: §3.4
}

TEST_CASE("a candidate with votes from a majority becomes leader") {
  Cluster c(3, no_pre_vote);
  // Act: server 1 campaigns and every message is delivered.
  c.elect(1);
  // Check: it leads term 1 and both others follow it.
  CHECK(c.core(1).role() == Role::leader);
  CHECK(c.core(2).leader() == NodeId(1));
  CHECK(c.core(3).leader() == NodeId(1));
  CHECK(c.core(2).term() == Term(1));
  // Reference: §3.4
}

TEST_CASE("a server grants at most one vote in a term") {
  // Set up: server 3 receives requests from two candidates of the same term.
  Core voter(test_config(3, 3), {});
  auto request = [](std::uint64_t from) {
    return Message{NodeId(from), NodeId(3), VoteRequest{Term(1), Index(0), Term(0), false, false}};
  };
  // Act
  REQUIRE(voter.step(request(1)).ok());
  REQUIRE(voter.step(request(2)).ok());
  Output out = voter.take_output();
  // Check: the first is granted, the second rejected; the vote is in the hard state.
  auto replies = bodies<VoteResponse>(out.messages_after_persist);
  REQUIRE(replies.size() == 2);
  CHECK(replies[0].granted);
  CHECK_FALSE(replies[1].granted);
  REQUIRE(out.hard_state.has_value());
  CHECK(out.hard_state->vote == NodeId(1));
  // Reference: §3.4
}

TEST_CASE("a voter refuses a candidate whose log is less up to date") {
  // Set up: a voter whose log ends at (index 2, term 2).
  DurableState d;
  d.hard_state = HardState{Term(2), no_node};
  d.entries = {Entry{Index(1), Term(1), EntryType::normal, {}},
               Entry{Index(2), Term(2), EntryType::normal, {}}};
  Core voter(test_config(3, 3), d);
  // Act: a candidate with a longer log of an older term, then one with an equal log.
  REQUIRE(voter.step({NodeId(1), NodeId(3), VoteRequest{Term(3), Index(5), Term(1)}}).ok());
  REQUIRE(voter.step({NodeId(2), NodeId(3), VoteRequest{Term(4), Index(2), Term(2)}}).ok());
  auto replies = bodies<VoteResponse>(voter.take_output().messages_after_persist);
  // Check
  REQUIRE(replies.size() == 2);
  CHECK_FALSE(replies[0].granted);
  CHECK(replies[1].granted);
  // Reference: §3.6.1
}

TEST_CASE("a vote leaves only after it is durable") {
  // Set up: a fresh voter.
  Core voter(test_config(2, 3), {});
  // Act
  REQUIRE(voter.step({NodeId(1), NodeId(2), VoteRequest{Term(1), Index(0), Term(0)}}).ok());
  Output out = voter.take_output();
  // Check: the grant is an after-persist message, in the same output as the hard state.
  CHECK(bodies<VoteResponse>(out.messages).empty());
  CHECK(bodies<VoteResponse>(out.messages_after_persist).size() == 1);
  REQUIRE(out.hard_state.has_value());
  CHECK(*out.hard_state == HardState{Term(1), NodeId(1)});
  // Reference: §3.8
}

TEST_CASE("a candidate's own vote is durable before it asks for votes") {
  Config cfg = test_config(1, 3);
  cfg.pre_vote = false;
  Core real(cfg, {});
  // Act
  while (real.role() == Role::follower) real.tick();
  Output out = real.take_output();
  // Check
  CHECK(bodies<VoteRequest>(out.messages).empty());
  CHECK(bodies<VoteRequest>(out.messages_after_persist).size() == 2);
  CHECK(out.hard_state->vote == NodeId(1));
  // Reference: §3.8
}

TEST_CASE("a leader that sees a higher term steps down") {
  Cluster c(3);
  c.elect(1);
  REQUIRE(c.core(1).role() == Role::leader);
  // Act: a response from a higher term arrives.
  REQUIRE(c.core(1).step({NodeId(2), NodeId(1), HeartbeatResponse{Term(7), 0}}).ok());
  // Check
  CHECK(c.core(1).role() == Role::follower);
  CHECK(c.core(1).term() == Term(7));
  CHECK(c.core(1).vote() == no_node);
  // Reference: §3.3
}

TEST_CASE("a server answers a stale leader with its newer term") {
  // Set up: a follower at term 5.
  Core f(test_config(2, 3), DurableState{HardState{Term(5), no_node}, {}});
  // Act: an AppendEntries of term 3.
  REQUIRE(
      f.step({NodeId(1), NodeId(2), AppendRequest{Term(3), Index(0), Term(0), Index(0), {}}}).ok());
  auto replies = bodies<AppendResponse>(f.take_output().messages);
  // Check: rejected with term 5, and the follower's term is unchanged.
  REQUIRE(replies.size() == 1);
  CHECK_FALSE(replies[0].success);
  CHECK(replies[0].term == Term(5));
  CHECK(f.term() == Term(5));
  // Reference: §3.3
}

TEST_CASE("a pre-candidate does not raise its term") {
  // Set up: PreVote on (the default).
  Core pre(test_config(1, 3), {});
  // Act: time out.
  while (pre.role() == Role::follower) pre.tick();
  Output out = pre.take_output();
  // Check: a pre-candidate still at term 0, asking for term 1 without a durable change.
  CHECK(pre.role() == Role::pre_candidate);
  CHECK(pre.term() == Term(0));
  CHECK_FALSE(out.hard_state.has_value());
  auto reqs = bodies<VoteRequest>(out.messages);
  REQUIRE(reqs.size() == 2);
  CHECK(reqs[0].pre_vote);
  CHECK(reqs[0].term == Term(1));
  // Reference: §9.6
}

TEST_CASE("a pre-candidate that wins the pre-vote campaigns for real") {
  Cluster c(3);
  c.elect(1);
  CHECK(c.core(1).role() == Role::leader);
  CHECK(c.core(1).term() == Term(1));
  // Reference: §9.6
}

TEST_CASE("a rejoining server does not disrupt a stable leader") {
  // Set up: a three-server cluster led by 1; server 3 is cut off.
  Cluster c(3);
  c.elect(1);
  REQUIRE(c.core(1).role() == Role::leader);
  c.isolate(3);
  // Act: server 3 times out many times while cut off, then rejoins.
  for (int i = 0; i < 200; ++i) {
    c.tick(3);
    c.tick(1);
    c.tick(2);
    c.deliver_all();
  }
  const Term cut_off_term = c.core(3).term();
  c.heal();
  for (int i = 0; i < 30; ++i) {
    c.tick(3);
    c.tick(1);
    c.tick(2);
    c.deliver_all();
  }
  // Check: server 3 never raised its term, and 1 still leads term 1 with 3 following.
  CHECK(cut_off_term == Term(1));
  CHECK(c.core(1).role() == Role::leader);
  CHECK(c.core(1).term() == Term(1));
  CHECK(c.core(3).leader() == NodeId(1));
  // Reference: §9.6
}

TEST_CASE("without PreVote a rejoining server forces a new term") {
  // The contrast to the test above: the same story without PreVote disrupts the leader.
  Cluster c(3, [](Config& cfg) {
    cfg.pre_vote = false;
    cfg.check_quorum = false;
  });
  c.elect(1);
  c.isolate(3);
  for (int i = 0; i < 50; ++i) c.tick(3);
  c.deliver_all();
  c.heal();
  c.tick(1);
  c.deliver_all();
  CHECK(c.core(1).term() > Term(1));
  // Reference: §9.6
}

TEST_CASE("a leader that hears from no quorum within an election timeout steps down") {
  // Set up
  Cluster c(3);
  c.elect(1);
  c.isolate(1);
  // Act: two election timeouts of silence.
  c.tick(1, 20);
  c.deliver_all();
  // Check
  CHECK(c.core(1).role() == Role::follower);
  CHECK(c.core(1).leader() == no_node);
  // Reference: §6.2
}

TEST_CASE("a leader that hears from a quorum stays leader") {
  Cluster c(3);
  c.elect(1);
  for (int i = 0; i < 40; ++i) {
    c.tick(1);
    c.deliver_all();
  }
  CHECK(c.core(1).role() == Role::leader);
  // Reference: §6.2
}

TEST_CASE("a follower that heard from its leader recently ignores vote requests") {
  // Set up: 2 follows leader 1 and heard from it just now.
  Cluster c(3);
  c.elect(1);
  c.tick(1);
  c.deliver_all();
  // Act: a vote request and a pre-vote request of a higher term from 3.
  const Index last = c.core(3).log().last_index();
  const Term last_term = c.core(3).log().last_term();
  REQUIRE(
      c.core(2).step({NodeId(3), NodeId(2), VoteRequest{Term(5), last, last_term, false}}).ok());
  REQUIRE(c.core(2).step({NodeId(3), NodeId(2), VoteRequest{Term(5), last, last_term, true}}).ok());
  Output out = c.core(2).take_output();
  // Check: both ignored: no reply, no term change.
  CHECK(bodies<VoteResponse>(out.messages).empty());
  CHECK(bodies<VoteResponse>(out.messages_after_persist).empty());
  CHECK(c.core(2).term() == Term(1));
  // Reference: §4.2.3
}

TEST_CASE("a new leader appends a no-op entry of its term") {
  Cluster c(3);
  c.elect(2);
  const RaftLog& log = c.core(2).log();
  REQUIRE(log.last_index() == Index(1));
  CHECK(log.at(Index(1)).type == EntryType::noop);
  CHECK(log.at(Index(1)).term == c.core(2).term());
  CHECK(c.core(2).log().commit_index() == Index(1));
  // Reference: §6.4
}

TEST_CASE("a sole voter that wins sends nothing of its new term until the term is durable") {
  // Set up: one voter and a learner; the voter wins its election within one tick.
  Config cfg = test_config(1, 1);
  cfg.learners = {NodeId(2)};
  Core v(cfg, {});
  while (v.role() != Role::leader) v.tick();
  // Act
  Output out = v.take_output();
  // Check: the hard state of the new term is in this write, and every message of that term
  // (the AppendEntries to the learner) waits for the write.
  REQUIRE(out.hard_state.has_value());
  CHECK(out.hard_state->term == v.term());
  CHECK(out.messages.empty());
  CHECK(bodies<AppendRequest>(out.messages_after_persist).size() == 1);
  CHECK(out.write != 0);
  // Act: the write is acknowledged; the learner answers; a proposal follows.
  v.persisted(out.write);
  (void)v.take_output();
  REQUIRE(v.step({NodeId(2), NodeId(1),
                  AppendResponse{v.term(), true, Index(1), Index(1), Term(), Index()}})
              .ok());
  (void)v.take_output();
  const Bytes p = text("a");
  REQUIRE(v.propose(std::span<const Bytes>(&p, 1)).ok());
  Output next = v.take_output();
  // Check: with the term durable, replication runs in parallel with the write again.
  CHECK(bodies<AppendRequest>(next.messages).size() == 1);
  // Reference: §3.8, §10.2.1
}

TEST_CASE("a term learnt from a vote request is told to no one before it is durable") {
  // Set up: a follower of term 1 grants a vote in term 2; a stale leader of term 1 then writes.
  Core f(test_config(2, 3), DurableState{HardState{Term(1), NodeId(1)}, {}});
  REQUIRE(f.step({NodeId(3), NodeId(2), VoteRequest{Term(2), Index(0), Term(0)}}).ok());
  REQUIRE(f.step({NodeId(1), NodeId(2), HeartbeatRequest{Term(1), Index(0), 1}}).ok());
  // Act
  Output out = f.take_output();
  // Check: the answer to the stale leader carries term 2 and waits for the write.
  REQUIRE(out.hard_state.has_value());
  CHECK(out.hard_state->term == Term(2));
  CHECK(out.messages.empty());
  CHECK(bodies<AppendResponse>(out.messages_after_persist).size() == 1);
  // Act: the write is acknowledged; a later stale heartbeat is answered at once.
  f.persisted(out.write);
  REQUIRE(f.step({NodeId(1), NodeId(2), HeartbeatRequest{Term(1), Index(0), 2}}).ok());
  CHECK(bodies<AppendResponse>(f.take_output().messages).size() == 1);
  // Reference: §3.8
}

TEST_CASE("a vote request of an earlier term is refused with the newer term") {
  // Set up: a voter in term 5.
  Config cfg = test_config(2, 3);
  cfg.pre_vote = false;
  Core v(cfg, DurableState{HardState{Term(5), no_node}, {}});
  // Act: a candidate of term 3 asks.
  REQUIRE(
      v.step({NodeId(3), NodeId(2), VoteRequest{Term(3), Index(0), Term(0), false, false}}).ok());
  Output out = v.take_output();
  // Check: refused, with term 5, so that the candidate catches up.
  std::vector<VoteResponse> replies = bodies<VoteResponse>(out.messages);
  REQUIRE(replies.size() == 1);
  CHECK_FALSE(replies[0].granted);
  CHECK(replies[0].term == Term(5));
  CHECK_FALSE(replies[0].pre_vote);
  // Reference: §3.3
}

TEST_CASE("with CheckQuorum a leader ignores a vote request of a higher term") {
  // Set up: a stable leader of three, without PreVote.
  Cluster c(3, [](Config& cfg) { cfg.pre_vote = false; });
  c.elect(1);
  settle(c, 1);
  const Term t = c.core(1).term();
  // Act: a server that rejoins with a higher term asks for votes.
  REQUIRE(c.core(1)
              .step({NodeId(3), NodeId(1),
                     VoteRequest{t + 5, c.core(1).log().last_index(), c.core(1).log().last_term(),
                                 false, false}})
              .ok());
  // Check: it leads on in its term.
  CHECK(c.core(1).role() == Role::leader);
  CHECK(c.core(1).term() == t);
  // Reference: §4.2.3
}

TEST_CASE("a newer term alone does not restart the election timeout") {
  // Set up: a voter whose log is ahead of a candidate that, without PreVote, keeps raising
  // the term with elections it cannot win.
  Config cfg = test_config(1, 3);
  cfg.pre_vote = false;
  cfg.check_quorum = false;
  Core v(cfg, DurableState{HardState{Term(1), no_node},
                           {Entry{Index(1), Term(1), EntryType::normal, text("a")}}});
  // Act: a refused vote request of a newer term every tick.
  for (int i = 0; i < 40 && v.role() == Role::follower; ++i) {
    REQUIRE(v.step({NodeId(2), NodeId(1), VoteRequest{v.term() + 1, Index(0), Term(0)}}).ok());
    REQUIRE(v.vote() == no_node);
    v.tick();
  }
  // Check: the voter still campaigns within its timeout.
  CHECK(v.role() == Role::candidate);
  // Reference: §3.4
}

TEST_CASE("a lone server elects itself") {
  Cluster c(1);
  c.elect(1);
  CHECK(c.core(1).role() == Role::leader);
  CHECK(c.core(1).log().commit_index() == Index(1));
  // Reference: §3.4
}

TEST_CASE("a restarted server takes the newest term its log has seen") {
  // Set up: a crash kept a write's entries of term 4 but not its hard state of term 4.
  DurableState d{HardState{Term(3), NodeId(2)}, {Entry{Index(1), Term(4), EntryType::noop, {}}}};
  // Act
  Core core(test_config(1, 3), d);
  // Check: term 4 with no vote cast in it, written out as the new hard state.
  CHECK(core.term() == Term(4));
  CHECK(core.vote() == no_node);
  REQUIRE(core.has_output());
  CHECK(core.take_output().hard_state == HardState{Term(4), no_node});
  // Reference: §3.8
}

TEST_CASE("heartbeats keep followers from starting elections") {
  Cluster c(3);
  c.elect(1);
  // Act: many election timeouts pass on every server, with heartbeats flowing.
  for (int i = 0; i < 100; ++i) {
    for (std::uint64_t id = 1; id <= 3; ++id) c.tick(id);
    c.deliver_all();
  }
  // Check
  CHECK(c.core(1).role() == Role::leader);
  CHECK(c.core(1).term() == Term(1));
  CHECK(c.core(2).role() == Role::follower);
  CHECK(c.core(3).role() == Role::follower);
  // Reference: §3.4
}

TEST_CASE("a candidate rejected by a majority returns to follower") {
  Config cfg = test_config(1, 3);
  cfg.pre_vote = false;
  Core cand(cfg, {});
  while (cand.role() != Role::candidate) cand.tick();
  REQUIRE(cand.step({NodeId(2), NodeId(1), VoteResponse{Term(1), false, false}}).ok());
  const Role after_one = cand.role();
  REQUIRE(cand.step({NodeId(3), NodeId(1), VoteResponse{Term(1), false, false}}).ok());
  CHECK(after_one == Role::candidate);
  CHECK(cand.role() == Role::follower);
  CHECK(cand.term() == Term(1));
  // Reference: §3.4
}

TEST_CASE("a pre-candidate whose log is behind loses the pre-vote and keeps its term") {
  // Set up: 2 and 3 hold an entry of term 1 that 1 lacks; nobody leads.
  Cluster c(3);
  c.elect(2);
  REQUIRE(c.core(2).role() == Role::leader);
  c.isolate(1);
  REQUIRE(c.propose(2, "x").ok());
  c.deliver_all();
  c.crash(2);
  c.heal();
  // Act: 1 times out (3's lease from 2 has run out too) and asks for a pre-vote.
  c.tick(3, 20);
  c.wire().clear();
  for (int i = 0; i < 20 && c.core(1).role() != Role::pre_candidate; ++i) c.tick(1);
  REQUIRE(c.core(1).role() == Role::pre_candidate);
  c.deliver_if([](const Message& m) { return m.from == NodeId(1) || m.to == NodeId(1); });
  c.deliver_if([](const Message& m) { return m.to == NodeId(1); });
  // Check: refused by 3, and 1 never raised its term.
  CHECK(c.core(1).term() == Term(1));
  CHECK(c.core(1).role() != Role::leader);
  CHECK(c.core(1).role() != Role::candidate);
  // Reference: §9.6
}
