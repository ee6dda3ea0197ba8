// Log replication, commitment and persistence rules, each as set up / act / check.
#include <doctest/doctest.h>

#include "harness.hpp"

using namespace coraft;
using namespace coraft::core;
using namespace coraft::core::test;

namespace {

// A core made leader of term 1 by hand: its vote requests answered, its no-op durable.
Core manual_leader(Config cfg) {
  cfg.pre_vote = false;
  Core core(cfg, {});
  while (core.role() != Role::candidate) core.tick();
  (void)core.take_output();
  for (NodeId peer : cfg.voters) {
    if (peer == cfg.id) continue;
    REQUIRE(core.step({peer, cfg.id, VoteResponse{Term(1), true, false}}).ok());
    if (core.role() == Role::leader) break;
  }
  REQUIRE(core.role() == Role::leader);
  return core;
}

Message ack(std::uint64_t from, std::uint64_t to, Term term, Index match) {
  return Message{NodeId(from), NodeId(to), AppendResponse{term, true, match, match, {}, {}}};
}

// Server 1 of three, leader of term 1, its no-op durable and acknowledged by both followers.
Core acknowledged_leader() {
  Core leader = manual_leader(test_config(1, 3));
  leader.persisted(leader.take_output().write);
  REQUIRE(leader.step(ack(2, 1, Term(1), Index(1))).ok());
  REQUIRE(leader.step(ack(3, 1, Term(1), Index(1))).ok());
  (void)leader.take_output();
  return leader;
}
}  // namespace

TEST_CASE("a leader replicates entries and commits them once a majority holds them") {
  Cluster c(3);
  c.elect(1);
  // Act
  REQUIRE(c.propose(1, "x").ok());
  REQUIRE(c.propose(1, "y").ok());
  c.deliver_all();
  c.tick(1);
  c.deliver_all();
  // Check: committed at index 3 on the leader and applied everywhere in order.
  CHECK(c.core(1).log().commit_index() == Index(3));
  for (std::uint64_t id = 1; id <= 3; ++id) {
    const auto& applied = c.server(id).applied;
    REQUIRE(applied.size() == 3);
    CHECK(applied[1].payload.chars() == "x");
    CHECK(applied[2].payload.chars() == "y");
  }
  // Reference: §3.5
}

TEST_CASE("a follower rejects entries whose predecessor does not match and hints where") {
  // Set up: a follower whose log is (1,1) (2,1) (3,2) (4,2).
  DurableState d{HardState{Term(2), no_node}, {}};
  for (std::uint64_t i = 1; i <= 4; ++i) {
    d.entries.push_back(Entry{Index(i), Term(i <= 2 ? 1 : 2), EntryType::normal, {}});
  }
  Core f(test_config(2, 3), d);
  // Act: the leader of term 5 believes index 4 has term 3.
  REQUIRE(
      f.step({NodeId(1), NodeId(2), AppendRequest{Term(5), Index(4), Term(3), Index(0), {}}}).ok());
  auto r = bodies<AppendResponse>(f.take_output().messages_after_persist);
  // Check: rejected for index 4; the hint names index 4 with term 2, the last entry whose term
  // is at most 3, so the leader can skip the whole of its term-3 entries at once.
  REQUIRE(r.size() == 1);
  CHECK_FALSE(r[0].success);
  CHECK(r[0].match_index == Index(4));
  CHECK(r[0].conflict_index == Index(4));
  CHECK(r[0].conflict_term == Term(2));
  // Reference: §3.5
}

TEST_CASE("a leader backs up over a whole conflicting term in one round trip") {
  // Set up: a leader of term 3 whose log is (1,1) (2,1) (3,1) (4,3) (5,3).
  Config cfg = test_config(1, 2);
  cfg.pre_vote = false;
  DurableState d{HardState{Term(2), no_node}, {}};
  for (std::uint64_t i = 1; i <= 3; ++i)
    d.entries.push_back(Entry{Index(i), Term(1), EntryType::normal, {}});
  Core leader(cfg, d);
  while (leader.role() != Role::candidate) leader.tick();
  (void)leader.take_output();
  REQUIRE(leader.step({NodeId(2), NodeId(1), VoteResponse{Term(3), true, false}}).ok());
  REQUIRE(leader.role() == Role::leader);
  (void)leader.take_output();  // the first probe: prev = 3
  // Act: the follower's log is (1,1) (2,2) (3,2) (4,2): it rejects prev 3 with hint (1, term 1).
  AppendResponse reject{Term(3), false, Index(3), Index(4), Term(1), Index(1)};
  REQUIRE(leader.step({NodeId(2), NodeId(1), reject}).ok());
  auto sent = bodies<AppendRequest>(leader.take_output().messages);
  // Check: the next probe goes straight to prev = 1 and carries the rest of the log.
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].prev_log_index == Index(1));
  CHECK(sent[0].entries.size() == 3);
  // Reference: §3.5
}

TEST_CASE("a follower deletes conflicting entries and appends the leader's") {
  // Set up: the follower holds (1,1) (2,1) (3,1) that are not committed.
  DurableState d{HardState{Term(1), no_node}, {}};
  for (std::uint64_t i = 1; i <= 3; ++i)
    d.entries.push_back(Entry{Index(i), Term(1), EntryType::normal, text("old")});
  Core f(test_config(2, 3), d);
  // Act: the leader of term 2 sends (2,2) after (1,1).
  AppendRequest r{Term(2),
                  Index(1),
                  Term(1),
                  Index(0),
                  {Entry{Index(2), Term(2), EntryType::normal, text("new")}}};
  REQUIRE(f.step({NodeId(1), NodeId(2), r}).ok());
  Output out = f.take_output();
  // Check: the stored log is truncated from 2 and gets the new entry; the log ends there.
  REQUIRE(out.truncate_from.has_value());
  CHECK(*out.truncate_from == Index(2));
  REQUIRE(out.entries.size() == 1);
  CHECK(out.entries[0].payload.chars() == "new");
  CHECK(f.log().last_index() == Index(2));
  // Reference: §3.5
}

TEST_CASE("a follower keeps entries a stale AppendEntries does not contradict") {
  DurableState d{HardState{Term(1), no_node}, {}};
  for (std::uint64_t i = 1; i <= 3; ++i)
    d.entries.push_back(Entry{Index(i), Term(1), EntryType::normal, {}});
  Core f(test_config(2, 3), d);
  AppendRequest r{
      Term(1), Index(0), Term(0), Index(0), {Entry{Index(1), Term(1), EntryType::normal, {}}}};
  REQUIRE(f.step({NodeId(1), NodeId(2), r}).ok());
  Output out = f.take_output();
  CHECK_FALSE(out.truncate_from.has_value());
  CHECK(f.log().last_index() == Index(3));
  // Reference: §3.5
}

TEST_CASE("an entry of an earlier term is never committed by counting replicas (Figure 8)") {
  // Set up (a): S1 leads term 1 and gets (2,1) only to S2 before it is cut off.
  Cluster c(5, [](Config& cfg) {
    cfg.pre_vote = false;
    cfg.check_quorum = false;
  });
  c.elect(1);
  REQUIRE(c.core(1).role() == Role::leader);  // index 1: S1's no-op, committed everywhere
  c.tick(1);
  c.deliver_all();
  REQUIRE(c.propose(1, "from term 1").ok());
  c.deliver_if([](const Message& m) { return m.to == NodeId(2) || m.from == NodeId(2); });
  c.crash(1);
  // (b): S5 leads term 2 with votes from S3 and S4 and appends (2,2) only locally.
  auto votes_only = [](const Message& m) {
    return std::holds_alternative<VoteRequest>(m.body) ||
           std::holds_alternative<VoteResponse>(m.body);
  };
  c.isolate(2);
  for (int i = 0; i < 200 && c.core(5).role() != Role::leader; ++i) {
    c.tick(5);
    c.deliver_if(votes_only);
  }
  REQUIRE(c.core(5).role() == Role::leader);
  REQUIRE(c.core(5).term() == Term(2));
  c.crash(5);
  c.heal();
  // (c): S1 restarts and, cut off from S4, wins term 3 with votes from S2 and S3. Its
  // AppendEntries are held back so that nobody has its no-op of term 3 yet.
  c.restart(1);
  c.cut(1, 4);
  c.cut(4, 1);
  c.wire().clear();
  for (int i = 0; i < 200 && c.core(1).role() != Role::leader; ++i) {
    c.tick(1);
    c.deliver_if(votes_only);
  }
  REQUIRE(c.core(1).role() == Role::leader);
  REQUIRE(c.core(1).term() == Term(3));
  // Act: S2 and S3 report holding index 2, an entry of term 1, but not S1's no-op at 3.
  c.wire().clear();
  REQUIRE(c.core(1).step(ack(2, 1, Term(3), Index(2))).ok());
  REQUIRE(c.core(1).step(ack(3, 1, Term(3), Index(2))).ok());
  // Check: a majority (S1, S2, S3) holds (2,1), yet it is not committed: it is not of term 3.
  CHECK(c.core(1).log().matches(Index(2), Term(1)));
  CHECK(c.core(1).log().commit_index() < Index(2));
  // (d): why: if S1 crashes now, S5 can still win term 4 with S2, S3, S4 (its last term 2
  // beats their last term 1) and overwrite index 2 everywhere.
  c.crash(1);
  c.wire().clear();
  c.restart(5);
  for (int i = 0; i < 200 && c.core(5).role() != Role::leader; ++i) {
    c.tick(5);
    c.deliver_all();
  }
  REQUIRE(c.core(5).role() == Role::leader);
  c.tick(5);
  c.deliver_all();
  for (std::uint64_t id = 2; id <= 5; ++id) CHECK(c.core(id).log().matches(Index(2), Term(2)));
  // No server ever applied the overwritten (2,1).
  for (std::uint64_t id = 1; id <= 5; ++id) {
    for (const Entry& e : c.server(id).applied) {
      CHECK_FALSE((e.index == Index(2) && e.term == Term(1)));
    }
  }
  // Reference: §3.6.2
}

TEST_CASE("a leader commits an earlier term's entry once an entry of its own term commits") {
  // Set up: server 1 holds (1,1) from an earlier term and wins term 2 with server 2's vote.
  Config cfg = test_config(1, 3);
  cfg.pre_vote = false;
  DurableState d{HardState{Term(1), no_node},
                 {Entry{Index(1), Term(1), EntryType::normal, text("old")}}};
  Core leader(cfg, d);
  while (leader.role() != Role::candidate) leader.tick();
  (void)leader.take_output();
  REQUIRE(leader.step({NodeId(2), NodeId(1), VoteResponse{Term(2), true, false}}).ok());
  REQUIRE(leader.role() == Role::leader);
  Output out = leader.take_output();
  REQUIRE(out.entries.size() == 1);  // the no-op (2,2)
  leader.persisted(out.write);
  // Act: server 2 holds (1,1) only; then it also holds the no-op (2,2).
  REQUIRE(leader.step(ack(2, 1, Term(2), Index(1))).ok());
  const Index after_old = leader.log().commit_index();
  REQUIRE(leader.step(ack(2, 1, Term(2), Index(2))).ok());
  // Check: nothing commits on the old entry alone; both commit with the no-op (Figure 3.7 (e)).
  CHECK(after_old == Index(0));
  CHECK(leader.log().commit_index() == Index(2));
  // Reference: §3.6.2
}

TEST_CASE("a leader sends entries before its own write is durable but counts itself after") {
  // Set up: a three-server leader with its no-op durable and acknowledged.
  Core leader = acknowledged_leader();
  // Act: propose; the AppendEntries leave in the same output as the entry to write.
  const Bytes p = text("a");
  REQUIRE(leader.propose(std::span<const Bytes>(&p, 1)).ok());
  Output out = leader.take_output();
  CHECK(out.entries.size() == 1);
  CHECK(bodies<AppendRequest>(out.messages).size() == 2);
  // One follower acknowledges: with the leader's write not yet durable, that is one of three.
  REQUIRE(leader.step(ack(2, 1, Term(1), Index(2))).ok());
  const Index before = leader.log().commit_index();
  leader.persisted(out.write);
  // Check: committed only once the leader's own write completed.
  CHECK(before == Index(1));
  CHECK(leader.log().commit_index() == Index(2));
  // Reference: §10.2.1
}

TEST_CASE("proposals and acknowledgements taken in one output send one AppendEntries per peer") {
  // Set up: a three-server leader with its no-op durable and acknowledged.
  Core leader = acknowledged_leader();
  // Act: three proposals before one take_output.
  for (const char* c : {"a", "b", "c"}) {
    const Bytes p = text(c);
    REQUIRE(leader.propose(std::span<const Bytes>(&p, 1)).ok());
  }
  Output out = leader.take_output();
  // Check: one AppendEntries per follower, carrying all three entries.
  auto sent = bodies<AppendRequest>(out.messages);
  REQUIRE(sent.size() == 2);
  for (const AppendRequest& r : sent) CHECK(r.entries.size() == 3);
  // Act: the leader's write and both acknowledgements arrive before the next take_output.
  leader.persisted(out.write);
  REQUIRE(leader.step(ack(2, 1, Term(1), Index(4))).ok());
  REQUIRE(leader.step(ack(3, 1, Term(1), Index(4))).ok());
  out = leader.take_output();
  // Check: the new commit index goes out once per follower, not once per acknowledgement.
  CHECK(leader.log().commit_index() == Index(4));
  sent = bodies<AppendRequest>(out.messages);
  REQUIRE(sent.size() == 2);
  for (const AppendRequest& r : sent) {
    CHECK(r.entries.empty());
    CHECK(r.leader_commit == Index(4));
  }
}

TEST_CASE("a follower acknowledges entries only after they are durable") {
  Core f(test_config(2, 3), {});
  AppendRequest r{Term(1),
                  Index(0),
                  Term(0),
                  Index(0),
                  {Entry{Index(1), Term(1), EntryType::normal, text("a")}}};
  REQUIRE(f.step({NodeId(1), NodeId(2), r}).ok());
  Output out = f.take_output();
  CHECK(bodies<AppendResponse>(out.messages).empty());
  auto acks = bodies<AppendResponse>(out.messages_after_persist);
  REQUIRE(acks.size() == 1);
  CHECK(acks[0].success);
  CHECK(acks[0].match_index == Index(1));
  CHECK(out.entries.size() == 1);
  // Reference: §3.8
}

TEST_CASE("inputs given before one take_output keep the write's promises") {
  // Set up: leader 1 of term 1 sends entries 1-3 to follower 2.
  Core f(test_config(2, 3), {});
  auto entry = [](std::uint64_t i, std::uint64_t t) {
    return Entry{Index(i), Term(t), EntryType::normal, text("x")};
  };
  AppendRequest first{
      Term(1), Index(0), Term(0), Index(0), {entry(1, 1), entry(2, 1), entry(3, 1)}};
  REQUIRE(f.step({NodeId(1), NodeId(2), first}).ok());
  // Act: before the output is taken, leader 3 of term 2 replaces index 2 onwards.
  AppendRequest second{Term(2), Index(1), Term(1), Index(0), {entry(2, 2)}};
  REQUIRE(f.step({NodeId(3), NodeId(2), second}).ok());
  Output out = f.take_output();
  // Check: the write starts at or above its truncation, and no acknowledgement covers more
  // than the write stores: entry 3 of term 1 is never written.
  REQUIRE(out.entries.size() == 2);
  CHECK((!out.truncate_from || out.entries.front().index >= *out.truncate_from));
  auto acks = bodies<AppendResponse>(out.messages_after_persist);
  REQUIRE(acks.size() == 2);
  for (const AppendResponse& a : acks) {
    CHECK(a.success);
    CHECK(a.match_index <= out.entries.back().index);
  }
  CHECK(acks[0].match_index == Index(1));  // leader 1 learns only of the entry kept
  CHECK(acks[1].match_index == Index(2));
  // Reference: §3.5, §3.8
}

TEST_CASE("committed entries are handed out for applying only once durable locally") {
  Core f(test_config(2, 3), {});
  AppendRequest r{Term(1),
                  Index(0),
                  Term(0),
                  Index(1),
                  {Entry{Index(1), Term(1), EntryType::normal, text("a")}}};
  REQUIRE(f.step({NodeId(1), NodeId(2), r}).ok());
  Output first = f.take_output();
  CHECK(f.log().commit_index() == Index(1));
  CHECK(first.committed.empty());
  f.persisted(first.write);
  Output second = f.take_output();
  REQUIRE(second.committed.size() == 1);
  CHECK(second.committed[0].index == Index(1));
  // Reference: §3.5
}

TEST_CASE("one AppendEntries carries many entries up to the byte limit") {
  Config cfg = test_config(1, 2);
  cfg.append_bytes_max = 10;
  Core leader = manual_leader(cfg);
  REQUIRE(leader.step(ack(2, 1, Term(1), Index(1))).ok());
  (void)leader.take_output();
  // Act: seven 3-byte payloads.
  std::vector<Bytes> ps(7, text("abc"));
  REQUIRE(leader.propose(ps).ok());
  auto sent = bodies<AppendRequest>(leader.take_output().messages);
  // Check: 3 + 3 + 1 entries, no message over 10 payload bytes.
  REQUIRE(sent.size() == 3);
  CHECK(sent[0].entries.size() == 3);
  CHECK(sent[1].entries.size() == 3);
  CHECK(sent[2].entries.size() == 1);
  // Reference: §10.2.1
}

TEST_CASE("the inflight window bounds AppendEntries by message count") {
  Config cfg = test_config(1, 2);
  cfg.append_bytes_max = 1;
  cfg.inflight_msgs_max = 3;
  Core leader = manual_leader(cfg);
  REQUIRE(leader.step(ack(2, 1, Term(1), Index(1))).ok());
  (void)leader.take_output();
  std::vector<Bytes> ps(10, text("z"));
  REQUIRE(leader.propose(ps).ok());
  auto sent = bodies<AppendRequest>(leader.take_output().messages);
  CHECK(sent.size() == 3);
  CHECK(leader.progress(NodeId(2))->paused());
  // An acknowledgement frees one slot, which is refilled at once.
  REQUIRE(leader.step(ack(2, 1, Term(1), Index(2))).ok());
  CHECK(bodies<AppendRequest>(leader.take_output().messages).size() == 1);
  // Reference: §10.2.1
}

TEST_CASE("the inflight window bounds AppendEntries by bytes") {
  Config cfg = test_config(1, 2);
  cfg.append_bytes_max = 4;
  cfg.inflight_bytes_max = 8;
  Core leader = manual_leader(cfg);
  REQUIRE(leader.step(ack(2, 1, Term(1), Index(1))).ok());
  (void)leader.take_output();
  std::vector<Bytes> ps(10, text("wxyz"));
  REQUIRE(leader.propose(ps).ok());
  auto sent = bodies<AppendRequest>(leader.take_output().messages);
  CHECK(sent.size() == 2);
  CHECK(leader.progress(NodeId(2))->inflights.bytes() == 8);
  // Reference: §10.2.1
}

TEST_CASE("a follower is probed one message at a time until the logs agree") {
  Core leader = manual_leader(test_config(1, 2));
  Output out = leader.take_output();
  CHECK(bodies<AppendRequest>(out.messages).size() == 1);
  CHECK(leader.progress(NodeId(2))->state == Progress::State::probe);
  const Bytes p = text("q");
  REQUIRE(leader.propose(std::span<const Bytes>(&p, 1)).ok());
  CHECK(bodies<AppendRequest>(leader.take_output().messages).empty());
  REQUIRE(leader.step(ack(2, 1, Term(1), Index(1))).ok());
  CHECK(leader.progress(NodeId(2))->state == Progress::State::replicate);
  CHECK(bodies<AppendRequest>(leader.take_output().messages).size() == 1);
  // Reference: §3.5
}

TEST_CASE("a follower far behind is caught up with full messages filling the window") {
  // Set up: follower 2 keeps up; follower 3 leaves the first probe unanswered while forty
  // entries of 3 bytes commit without it.
  Config cfg = test_config(1, 3);
  cfg.append_bytes_max = 6;
  cfg.inflight_msgs_max = 4;
  Core leader = manual_leader(cfg);
  leader.persisted(leader.take_output().write);
  REQUIRE(leader.step(ack(2, 1, Term(1), Index(1))).ok());
  std::vector<Bytes> ps(40, text("abc"));
  REQUIRE(leader.propose(ps).ok());
  Output out = leader.take_output();
  leader.persisted(out.write);
  for (const Message& m : out.messages) CHECK(m.to != NodeId(3));
  REQUIRE(leader.step(ack(2, 1, Term(1), Index(41))).ok());
  (void)leader.take_output();
  REQUIRE(leader.log().commit_index() == Index(41));
  // Act: the probe succeeds, follower 3 holding only the first entry.
  REQUIRE(leader.step(ack(3, 1, Term(1), Index(1))).ok());
  std::vector<AppendRequest> sent;
  for (const Message& m : leader.take_output().messages) {
    if (const auto* a = std::get_if<AppendRequest>(&m.body); a && m.to == NodeId(3)) {
      sent.push_back(*a);
    }
  }
  // Check: streaming at once, a whole window of messages of two entries each, back to back.
  CHECK(leader.progress(NodeId(3))->state == Progress::State::replicate);
  REQUIRE(sent.size() == 4);
  for (std::size_t k = 0; k < sent.size(); ++k) {
    CHECK(sent[k].prev_log_index == Index(1 + 2 * k));
    CHECK(sent[k].entries.size() == 2);
  }
  // Each acknowledgement frees a slot for the next two entries.
  REQUIRE(leader.step(ack(3, 1, Term(1), Index(3))).ok());
  auto next = bodies<AppendRequest>(leader.take_output().messages);
  REQUIRE(next.size() == 1);
  CHECK(next[0].prev_log_index == Index(9));
  CHECK(next[0].entries.size() == 2);
  // Reference: §10.2.1
}

TEST_CASE("lost AppendEntries are sent again after the follower stops acknowledging") {
  Config cfg = test_config(1, 2);
  cfg.replicate_stall_ticks = 3;
  Core leader = manual_leader(cfg);
  REQUIRE(leader.step(ack(2, 1, Term(1), Index(1))).ok());
  (void)leader.take_output();
  const Bytes p = text("lost");
  REQUIRE(leader.propose(std::span<const Bytes>(&p, 1)).ok());
  (void)leader.take_output();  // the message is lost
  // Act: ticks pass without an answer.
  for (int i = 0; i < 3; ++i) leader.tick();
  auto sent = bodies<AppendRequest>(leader.take_output().messages);
  // Check: probing again from the last known match.
  CHECK(leader.progress(NodeId(2))->state == Progress::State::probe);
  bool resent = false;
  for (const auto& a : sent) resent |= a.prev_log_index == Index(1) && a.entries.size() == 1;
  CHECK(resent);
  // Reference: §3.5
}

TEST_CASE("a proposal to a follower fails with not_leader and names the leader") {
  Cluster c(3);
  c.elect(1);
  auto r = c.propose(2, "x");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().is(Errc::not_leader));
  CHECK(r.error().leader_hint == NodeId(1));
  // Reference: §6.2
}

TEST_CASE("proposals past the pending limit are refused with overloaded") {
  Config cfg = test_config(1, 2);
  cfg.pending_proposals_max = 4;
  Core leader = manual_leader(cfg);  // the no-op is pending: 1 of 4
  std::vector<Bytes> three(3, text("a"));
  REQUIRE(leader.propose(three).ok());
  const Bytes one = text("b");
  auto r = leader.propose(std::span<const Bytes>(&one, 1));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().is(Errc::overloaded));
  CHECK(leader.log().last_index() == Index(4));
  // Reference: §10.2.1
}

TEST_CASE("proposals past the pending byte limit are refused with overloaded") {
  // Set up: a leader of two voters whose follower answers nothing, 8 uncommitted bytes at most.
  Config cfg = test_config(1, 2);
  cfg.entry_bytes_max = 8;
  cfg.pending_bytes_max = 8;
  Core leader = manual_leader(cfg);
  const Bytes four = text("abcd");
  // Act / check: two entries of 4 bytes fit; one byte more does not, nor does a batch over 8.
  REQUIRE(leader.propose(std::span<const Bytes>(&four, 1)).ok());
  REQUIRE(leader.propose(std::span<const Bytes>(&four, 1)).ok());
  const Bytes one = text("e");
  auto r = leader.propose(std::span<const Bytes>(&one, 1));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().is(Errc::overloaded));
  std::vector<Bytes> nine{text("abcde"), text("abcd")};
  CHECK(leader.propose(nine).error().is(Errc::too_large));
  CHECK(leader.log().last_index() == Index(3));
  // Act: everything commits; the backlog is empty again.
  leader.persisted(leader.take_output().write);
  REQUIRE(leader
              .step({NodeId(2), NodeId(1),
                     AppendResponse{Term(1), true, Index(3), Index(3), Term(), Index()}})
              .ok());
  REQUIRE(leader.log().commit_index() == Index(3));
  // Check
  CHECK(leader.propose(std::span<const Bytes>(&one, 1)).ok());
  // Reference: §10.2.1
}

TEST_CASE("a payload over the entry size limit is refused with too_large") {
  Config cfg = test_config(1, 1);
  cfg.entry_bytes_max = 4;
  Core leader(cfg, {});
  while (leader.role() != Role::leader) leader.tick();
  std::vector<Bytes> ps{text("ok"), text("too long")};
  auto r = leader.propose(ps);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().is(Errc::too_large));
  CHECK(leader.log().last_index() == Index(1));
  // Reference: §10.2.1
}

TEST_CASE("payloads travel from proposal to messages and to the applier without a copy") {
  Cluster c(3);
  c.elect(1);
  const Bytes p = text("shared payload");
  REQUIRE(c.core(1).propose(std::span<const Bytes>(&p, 1)).ok());
  Output out = c.core(1).take_output();
  auto sent = bodies<AppendRequest>(out.messages);
  REQUIRE_FALSE(sent.empty());
  CHECK(sent[0].entries.back().payload.shares_owner_with(p));
  CHECK(out.entries.back().payload.shares_owner_with(p));
  // Reference: §3.5
}

TEST_CASE("a candidate that learns of the leader of its term becomes its follower") {
  Core cand(test_config(2, 3), {});
  while (cand.role() == Role::follower) cand.tick();
  REQUIRE(cand.role() == Role::pre_candidate);
  REQUIRE(cand.step({NodeId(1), NodeId(2), HeartbeatRequest{Term(0), Index(0), 0}}).ok());
  CHECK(cand.role() == Role::follower);
  CHECK(cand.leader() == NodeId(1));
  // Reference: §3.4
}

TEST_CASE("malformed AppendEntries are refused without changing anything") {
  Core f(test_config(2, 3), {});
  AppendRequest gap{
      Term(1), Index(0), Term(0), Index(0), {Entry{Index(2), Term(1), EntryType::normal, {}}}};
  auto r = f.step({NodeId(1), NodeId(2), gap});
  CHECK(r.error().is(Errc::protocol_error));
  CHECK(f.term() == Term(0));
  auto nobody = f.step({no_node, NodeId(2), HeartbeatRequest{Term(1), Index(0), 0}});
  CHECK(nobody.error().is(Errc::protocol_error));
  auto itself = f.step({NodeId(2), NodeId(2), HeartbeatRequest{Term(1), Index(0), 0}});
  CHECK(itself.error().is(Errc::protocol_error));
  CHECK(f.term() == Term(0));
  // Reference: §3.5
}

TEST_CASE("a follower commits no further than the entries a request vouches for") {
  // Set up: the follower holds a stale (3,2) beyond what the leader of term 3 has confirmed.
  DurableState d{HardState{Term(2), no_node},
                 {Entry{Index(1), Term(1), EntryType::normal, {}},
                  Entry{Index(2), Term(1), EntryType::normal, {}},
                  Entry{Index(3), Term(2), EntryType::normal, text("stale")}}};
  Core f(test_config(2, 3), d);
  // Act: the leader's commit index is 3, but this request only vouches for index 1.
  REQUIRE(
      f.step({NodeId(1), NodeId(2), AppendRequest{Term(3), Index(1), Term(1), Index(3), {}}}).ok());
  // Check: committed up to 1 only; the stale entry at 3 is not committed.
  CHECK(f.log().commit_index() == Index(1));
  // Reference: §3.5
}

TEST_CASE("a heartbeat lets a follower commit only what the leader knows it holds") {
  Cluster c(3);
  c.elect(1);
  c.isolate(3);
  REQUIRE(c.propose(1, "a").ok());
  c.deliver_all();
  c.heal();
  // Act: heartbeats reach 3, which lacks index 2; the leader caps their commit at 3's match.
  c.tick(1);
  c.deliver_if([](const Message& m) { return std::holds_alternative<HeartbeatRequest>(m.body); });
  // Check
  CHECK(c.core(1).log().commit_index() == Index(2));
  CHECK(c.core(3).log().commit_index() <= Index(1));
  // Reference: §3.5
}

TEST_CASE("duplicated and reordered acknowledgements do not move a follower backwards") {
  Core leader = manual_leader(test_config(1, 2));
  REQUIRE(leader.step(ack(2, 1, Term(1), Index(1))).ok());
  std::vector<Bytes> ps(4, text("d"));
  REQUIRE(leader.propose(ps).ok());
  (void)leader.take_output();
  REQUIRE(leader.step(ack(2, 1, Term(1), Index(5))).ok());
  REQUIRE(leader.step(ack(2, 1, Term(1), Index(3))).ok());
  REQUIRE(leader.step(ack(2, 1, Term(1), Index(5))).ok());
  CHECK(leader.progress(NodeId(2))->match_index == Index(5));
  CHECK(leader.progress(NodeId(2))->next_index == Index(6));
  // Reference: §3.5
}
