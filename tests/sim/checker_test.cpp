// The simulator's durability and electability checks, on hand-built states: each must report
// the broken shape it exists for and accept the correct one next to it.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "sim/checker.hpp"

namespace coraft::sim {
namespace {

using core::AppendResponse;
using core::HardState;
using core::Message;
using core::VoteRequest;
using core::VoteResponse;

std::vector<Entry> entries(std::initializer_list<std::uint64_t> terms) {
  std::vector<Entry> out;
  for (std::uint64_t t : terms) {
    out.push_back(Entry{Index(out.size() + 1), Term(t), EntryType::noop, Bytes()});
  }
  return out;
}

bool mentions(const Checker& c, const std::string& what) {
  return c.failure().find(what) != std::string::npos;
}

const std::vector<Entry> no_entries;
const DurableView empty_disk{Index(), &no_entries};

TEST_CASE("a granted vote may leave only once the voter's disk holds it") {
  const Message grant{NodeId(2), NodeId(1), VoteResponse{Term(3), true, false}};
  Checker ok;
  ok.on_send(grant, HardState{Term(3), NodeId(1)}, empty_disk);
  CHECK_FALSE(ok.failed());

  Checker older_term;
  older_term.on_send(grant, HardState{Term(2), NodeId(1)}, empty_disk);
  CHECK(mentions(older_term, "vote durability: n2 granted its vote in term 3 to n1"));

  Checker other_vote;
  other_vote.on_send(grant, HardState{Term(3), NodeId(3)}, empty_disk);
  CHECK(other_vote.failed());

  // A disk already in a later term never lets the voter vote in term 3 again: a late reply is
  // no double vote.
  Checker late;
  late.on_send(grant, HardState{Term(4), NodeId(3)}, empty_disk);
  CHECK_FALSE(late.failed());

  // A pre-vote changes nothing on disk, and a refusal promises nothing.
  Checker pre_and_refusal;
  pre_and_refusal.on_send(Message{NodeId(2), NodeId(1), VoteResponse{Term(3), true, true}},
                          HardState{Term(2), no_node}, empty_disk);
  pre_and_refusal.on_send(Message{NodeId(2), NodeId(1), VoteResponse{Term(3), false, false}},
                          HardState{Term(3), no_node}, empty_disk);
  CHECK_FALSE(pre_and_refusal.failed());
}

TEST_CASE("a candidate asks for votes only once its own vote is durable") {
  const Message ask{NodeId(1), NodeId(2), VoteRequest{Term(4), Index(), Term(), false, false}};
  Checker ok;
  ok.on_send(ask, HardState{Term(4), NodeId(1)}, empty_disk);
  CHECK_FALSE(ok.failed());
  Checker early;
  early.on_send(ask, HardState{Term(3), NodeId(1)}, empty_disk);
  CHECK(mentions(early, "vote durability: n1 asked for votes in term 4"));
}

TEST_CASE("an acknowledgement covers only entries on the follower's disk") {
  const std::vector<Entry> four = entries({1, 1, 1, 1});
  const DurableView disk{Index(), &four};
  const auto ack = [](std::uint64_t match) {
    return Message{NodeId(2), NodeId(1),
                   AppendResponse{Term(1), true, Index(match), Index(match), Term(), Index()}};
  };
  Checker ok;
  ok.on_send(ack(4), HardState{Term(1), no_node}, disk);
  CHECK_FALSE(ok.failed());
  Checker ahead;
  ahead.on_send(ack(5), HardState{Term(1), no_node}, disk);
  CHECK(mentions(ahead, "append durability: n2 acknowledged entries up to 5"));
  // Entries a stored snapshot covers count as held.
  Checker snapshot;
  snapshot.on_send(ack(9), HardState{Term(1), no_node},
                   DurableView{Index(9), &no_entries, Term(1)});
  CHECK_FALSE(snapshot.failed());
}

TEST_CASE("an acknowledgement in term T covers only entries of terms up to T on disk") {
  // The disk holds index 4, but of term 2: an acknowledgement in term 1 up to 4 speaks of
  // entries this disk does not hold.
  const std::vector<Entry> disk_entries = entries({1, 1, 2, 2});
  const DurableView disk{Index(), &disk_entries};
  const auto ack = [](std::uint64_t term, std::uint64_t match) {
    return Message{NodeId(2), NodeId(1),
                   AppendResponse{Term(term), true, Index(match), Index(match), Term(), Index()}};
  };
  Checker stale;
  stale.on_send(ack(1, 4), HardState{Term(2), no_node}, disk);
  CHECK(mentions(stale, "append durability: n2 acknowledged entries up to 4 in term 1"));
  Checker ok;
  ok.on_send(ack(1, 2), HardState{Term(2), no_node}, disk);
  ok.on_send(ack(2, 4), HardState{Term(2), no_node}, disk);
  CHECK_FALSE(ok.failed());
}

TEST_CASE("a server keeps the entries it acknowledged while it stays in that term") {
  const std::vector<Entry> disk_entries = entries({1, 2, 2, 2});
  const DurableView disk{Index(), &disk_entries};
  const Message ack{NodeId(2), NodeId(1),
                    AppendResponse{Term(2), true, Index(4), Index(4), Term(), Index()}};
  // Kept, and longer since: fine.
  Checker kept;
  kept.on_send(ack, HardState{Term(2), no_node}, disk);
  kept.check_acknowledged(NodeId(2), Term(2), core::RaftLog(entries({1, 2, 2, 2, 2})));
  CHECK_FALSE(kept.failed());
  // Still in term 2, the log ends at 3: entry 4 was lost.
  Checker shorter;
  shorter.on_send(ack, HardState{Term(2), no_node}, disk);
  shorter.check_acknowledged(NodeId(2), Term(2), core::RaftLog(entries({1, 2, 2})));
  CHECK(mentions(shorter,
                 "acknowledged entries: n2 acknowledged entries up to 4 (term 2 there) "
                 "in term 2 and still in that term holds entries up to 3"));
  // As long, but entry 4 (of term 1) replaced by one of term 2: lost too.
  const std::vector<Entry> ones = entries({1, 1, 1, 1});
  Checker replaced;
  replaced.on_send(ack, HardState{Term(2), no_node}, DurableView{Index(), &ones});
  replaced.check_acknowledged(NodeId(2), Term(2), core::RaftLog(entries({1, 1, 1, 2})));
  CHECK(mentions(replaced, "acknowledged entries: n2 acknowledged entries up to 4 (term 1 there)"));
  // Another server's log says nothing about n2's promise.
  Checker other;
  other.on_send(ack, HardState{Term(2), no_node}, disk);
  other.check_acknowledged(NodeId(3), Term(2), core::RaftLog(entries({1})));
  CHECK_FALSE(other.failed());
  // In a newer term a leader of that term may remove the entries, and the promise is over
  // for good: a restart back into term 2 (the newer term not durable) does not renew it.
  Checker newer;
  newer.on_send(ack, HardState{Term(2), no_node}, disk);
  newer.check_acknowledged(NodeId(2), Term(3), core::RaftLog(entries({1, 3})));
  newer.check_acknowledged(NodeId(2), Term(2), core::RaftLog(entries({1, 2})));
  CHECK_FALSE(newer.failed());
  // An acknowledgement of an earlier term that leaves late makes no promise for this term, and
  // a later one of a lower index does not lower the one made.
  Checker late;
  late.on_send(ack, HardState{Term(2), no_node}, disk);
  late.on_send(Message{NodeId(2), NodeId(1),
                       AppendResponse{Term(1), true, Index(1), Index(1), Term(), Index()}},
               HardState{Term(2), no_node}, disk);
  late.on_send(Message{NodeId(2), NodeId(1),
                       AppendResponse{Term(2), true, Index(2), Index(2), Term(), Index()}},
               HardState{Term(2), no_node}, disk);
  late.check_acknowledged(NodeId(2), Term(2), core::RaftLog(entries({1, 2, 2})));
  CHECK(mentions(late, "acknowledged entries up to 4"));
  // A refusal promises nothing.
  Checker refusal;
  refusal.on_send(Message{NodeId(2), NodeId(1),
                          AppendResponse{Term(2), false, Index(4), Index(4), Term(), Index()}},
                  HardState{Term(2), no_node}, disk);
  refusal.check_acknowledged(NodeId(2), Term(2), core::RaftLog(entries({1})));
  CHECK_FALSE(refusal.failed());
}

TEST_CASE("an acknowledged snapshot or compacted entries count as kept") {
  const std::vector<Entry> none;
  const Message ack{NodeId(2), NodeId(1),
                    core::InstallSnapshotResponse{Term(3), Index(6), 0, true, true}};
  // The snapshot's last entry (6, term 2) must stay: a log restarting from it holds it.
  Checker kept;
  kept.on_send(ack, HardState{Term(3), no_node}, DurableView{Index(6), &none, Term(2)});
  kept.check_acknowledged(NodeId(2), Term(3), core::RaftLog(Index(6), Term(2), {}));
  CHECK_FALSE(kept.failed());
  Checker lost;
  lost.on_send(ack, HardState{Term(3), no_node}, DurableView{Index(6), &none, Term(2)});
  lost.check_acknowledged(NodeId(2), Term(3), core::RaftLog(entries({1, 1})));
  CHECK(mentions(lost,
                 "acknowledged entries: n2 acknowledged entries up to 6 (term 2 there) in "
                 "term 3"));
}

TEST_CASE("no message of a term leaves a server whose disk holds an earlier term") {
  const Message append{NodeId(1), NodeId(2),
                       core::AppendRequest{Term(3), Index(), Term(), Index(), {}}};
  Checker early;
  early.on_send(append, HardState{Term(2), NodeId(1)}, empty_disk);
  CHECK(mentions(early, "term durability: n1 sent AppendRequest of term 3 to n2"));
  // The stored log's last term counts: a restart recovers it.
  const std::vector<Entry> three = entries({1, 3});
  Checker by_log;
  by_log.on_send(append, HardState{Term(2), NodeId(1)}, DurableView{Index(), &three});
  CHECK_FALSE(by_log.failed());
  // A pre-vote request carries the term an election would use.
  Checker pre_vote;
  pre_vote.on_send(
      Message{NodeId(1), NodeId(2), VoteRequest{Term(3), Index(), Term(), true, false}},
      HardState{Term(2), no_node}, empty_disk);
  CHECK_FALSE(pre_vote.failed());
}

TEST_CASE("a leader that reaches a majority both ways is never deposed") {
  const std::vector<NodeId> members{NodeId(1), NodeId(2), NodeId(3)};
  // Not armed: nothing is known of the network, and anything may happen.
  Checker unarmed;
  unarmed.check_stable(NodeId(1), Term(6), false);
  unarmed.check_stable(NodeId(2), Term(7), false);
  CHECK_FALSE(unarmed.failed());

  // Armed: followers may become pre-candidates (their term stays) and the leader keeps leading.
  Checker quiet;
  quiet.arm_stability(NodeId(1), Term(5), members);
  quiet.check_stable(NodeId(2), Term(5), false);
  quiet.check_stable(NodeId(1), Term(5), true);
  CHECK_FALSE(quiet.failed());

  // A planted disruption: the leader steps down in its term...
  Checker stepped_down;
  stepped_down.arm_stability(NodeId(1), Term(5), members);
  stepped_down.check_stable(NodeId(1), Term(5), false);
  CHECK(mentions(stepped_down, "stability: n1 was deposed as leader of term 5"));
  // ...or a member starts an election of a later term, before the leader hears of it.
  Checker election;
  election.arm_stability(NodeId(1), Term(5), members);
  election.check_stable(NodeId(3), Term(6), false);
  CHECK(mentions(election, "stability: n3 moved to term 6 while n1 led term 5"));

  // A server outside the configuration may raise its term: the voters, hearing the leader,
  // refuse it.
  Checker outsider;
  outsider.arm_stability(NodeId(1), Term(5), members);
  outsider.check_stable(NodeId(4), Term(9), false);
  CHECK_FALSE(outsider.failed());
  // Disarmed (a transfer began), the leader may go.
  Checker transfer;
  transfer.arm_stability(NodeId(1), Term(5), members);
  transfer.disarm_stability();
  transfer.check_stable(NodeId(1), Term(5), false);
  transfer.check_stable(NodeId(2), Term(6), true);
  CHECK_FALSE(transfer.failed());
  CHECK(transfer.stable_leader() == no_node);
}

// Thesis Figure 3.7 with three servers: n1 led term 2 and wrote (2, term 2) alone; n2 led term 3
// and wrote (2, term 3) alone; n1, leading term 4, has sent (2, term 2) to n3 and appended its
// own (3, term 4).
struct Figure37 {
  core::RaftLog n1{entries({1, 2, 4})};
  core::RaftLog n2{entries({1, 3})};
  std::vector<Entry> n1_disk = entries({1, 2, 4});
  std::vector<Entry> n2_disk = entries({1, 3});
  std::vector<Entry> n3_disk = entries({1, 2});
  core::RaftLog n3{entries({1, 2})};
  Configuration conf = *Configuration::make({NodeId(1), NodeId(2), NodeId(3)});

  std::vector<ServerView> views() const {
    return {ServerView{NodeId(1), true, &n1, &conf, DurableView{Index(), &n1_disk}},
            ServerView{NodeId(2), true, &n2, &conf, DurableView{Index(), &n2_disk}},
            ServerView{NodeId(3), true, &n3, &conf, DurableView{Index(), &n3_disk}}};
  }
};

TEST_CASE("an earlier term's entry committed by counting replicas is reported at once") {
  Figure37 f;
  f.n1.commit_to(Index(2));  // (2, term 2) is on n1 and n3, a majority, but n2 can still win
  Checker c;
  c.on_leader_commit(Term(4), f.n1);
  REQUIRE_FALSE(c.failed());
  c.check_electable(f.views());
  CHECK(mentions(c, "leader completeness: n2 lacks committed entry 2 (term 2)"));
  // Asked about n3 only, the checker finds nothing: n3 holds the entry.
  Checker only;
  only.on_leader_commit(Term(4), f.n1);
  only.check_electable(f.views(), NodeId(3));
  CHECK_FALSE(only.failed());
}

TEST_CASE(
    "an entry of the leader's term on a majority's disks leaves no electable server without it") {
  Figure37 f;
  f.n3_disk = entries({1, 2, 4});
  f.n3 = core::RaftLog(entries({1, 2, 4}));
  f.n1.commit_to(Index(3));
  Checker c;
  c.on_leader_commit(Term(4), f.n1);
  c.check_electable(f.views());
  CHECK_FALSE(c.failed());
  // If n3 loses (3, term 4) from its memory and its disk, n2 could win again.
  f.n3_disk = entries({1, 2});
  f.n3 = core::RaftLog(entries({1, 2}));
  c.check_electable(f.views());
  CHECK(mentions(c, "leader completeness: n2 lacks committed entry 3 (term 4)"));
}

TEST_CASE("a server that is not a voter is never a candidate") {
  Figure37 f;
  f.conf = *Configuration::make({NodeId(1), NodeId(3)}, {}, {NodeId(2)});
  f.n1.commit_to(Index(2));
  Checker c;
  c.on_leader_commit(Term(4), f.n1);
  c.check_electable(f.views());
  CHECK_FALSE(c.failed());
}

}  // namespace
}  // namespace coraft::sim
