// Safety and linearizability checkers for the simulator. They watch the cluster from outside
// and share no code with the protocol core beyond reading its log.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <coraft/entry.hpp>
#include <coraft/membership.hpp>
#include <coraft/types.hpp>

#include "core/message.hpp"
#include "core/output.hpp"
#include "core/raft_log.hpp"

namespace coraft::sim {

// One client operation as the client saw it. Times are simulated microseconds.
struct OpRecord {
  bool is_read = false;
  std::uint64_t invoked_us = 0;
  bool done = false;
  std::uint64_t completed_us = 0;
  std::uint64_t value = 0;  // the counter after the increment, or the value read
};

// A server's durable log: the stored snapshot's last index (0 for none) and the stored entries.
struct DurableView {
  Index snapshot_index;
  const std::vector<Entry>* entries;
  Term snapshot_term = Term();
  // The last stored entry, or the snapshot's last entry without one.
  [[nodiscard]] Index last_index() const noexcept;
  [[nodiscard]] Term last_term() const noexcept;
  // The stored term at `i`: the snapshot's at its last index, nullopt where nothing is stored
  // (within the snapshot, or past the end).
  [[nodiscard]] std::optional<Term> term_at(Index i) const noexcept;
};

// The name of a message's kind, as traces print it.
[[nodiscard]] const char* message_name(const core::MessageBody& b) noexcept;

// What the checker sees of one server when it asks who could still win an election.
struct ServerView {
  NodeId id;
  bool up = false;
  const core::RaftLog* log = nullptr;            // the core's log; set when up
  const Configuration* configuration = nullptr;  // the core's configuration; set when up
  DurableView durable;
};

class Checker {
 public:
  Checker() = default;

  [[nodiscard]] bool failed() const noexcept { return !failure_.empty(); }
  [[nodiscard]] const std::string& failure() const noexcept { return failure_; }

  // At most one leader per term (§3.6.3 Election Safety), and the new leader holds every entry
  // committed by a leader of an earlier term (Leader Completeness).
  void on_leader(Term term, NodeId node, const core::RaftLog& log);
  // A leader of `term` with this log has the commit index the log shows. Records the entries
  // it committed; a leader committing an entry that differs from one committed before fails.
  void on_leader_commit(Term term, const core::RaftLog& log);
  // No two servers apply different entries at one index (State Machine Safety), and only
  // committed entries are applied.
  void on_apply(NodeId node, const Entry& e);
  // Log Matching between every pair of logs: equal (index, term) implies equal prefixes.
  void check_log_matching(const std::vector<const core::RaftLog*>& logs);
  // Every committed entry is on the durable logs of a majority, so it survives crashes.
  // An entry the stored snapshot covers counts as held. `need` is the number of servers that
  // must hold it: a majority of the smallest voter set the cluster may have.
  void check_durable(const std::vector<DurableView>& durable_logs, std::size_t need);
  // A snapshot (taken or installed) covers only committed entries and agrees with them at its
  // last index: snapshots never lose or change committed entries.
  void on_snapshot(NodeId node, const SnapshotMeta& meta);
  // No message of a term leaves a server whose disk holds an earlier term (pre-vote requests
  // and granted pre-votes carry a prospective term and are exempt). Every message that
  // promises something durable is sent only once it is durable on its sender (thesis §3.8): a
  // granted vote and a candidate's request for votes carry the hard state the sender stored,
  // an acknowledgement of entries in term T covers only entries the sender's disk holds with
  // terms <= T, one of a snapshot only what the disk holds. `hard` and `durable` are the
  // sender's disk at the send.
  void on_send(const core::Message& m, const core::HardState& hard, const DurableView& durable);
  // A server keeps every entry it acknowledged in term T for as long as its term is T: the
  // entries a leader of T sent never conflict with one another, so no input of that term may
  // remove them (§3.5), and a leader may already count them towards a commit. A server that
  // loses one is caught here even while the entry stays on a majority. on_send records the
  // acknowledgements (of entries and of snapshots, with the stored term at the acknowledged
  // index); this compares them with `log`, the server's log as it is now in `term`. A newer
  // term ends the promise: the entries may then go, and a restart into term T again (its newer
  // term not yet durable) does not renew it.
  void check_acknowledged(NodeId node, Term term, const core::RaftLog& log);
  // Stability (PreVote with CheckQuorum, thesis §9.6 and §6.2): a leader that reaches a
  // majority both ways is never deposed. The simulator arms the check with a leader, its term
  // and the members of its configuration once it knows that the network, the servers and
  // their clocks let every member hear the leader and the leader hear them within every
  // election timeout (World::check_stability), and disarms it when it no longer knows that
  // (a leadership transfer, a configuration without the leader). Meanwhile check_stable, called
  // after every input, fails when a member moves past the term or the leader stops leading:
  // the disruption is the bug, whether or not anything unsafe follows it.
  void arm_stability(NodeId leader, Term term, std::vector<NodeId> members);
  void disarm_stability() noexcept { stable_leader_ = no_node; }
  [[nodiscard]] NodeId stable_leader() const noexcept { return stable_leader_; }
  void check_stable(NodeId node, Term term, bool leads);
  // Leader Completeness for every election still to come: no voter that lacks the newest
  // committed entry could gather a majority of votes (in each voter set of its configuration)
  // from servers whose logs, in memory or on disk, are no more up to date than its own. A
  // committed entry is only safe when this holds; an entry committed too early (thesis
  // Figure 3.7) breaks it at once, before any later leader overwrites the entry.
  // With `only` set, only that server is considered as a candidate.
  void check_electable(const std::vector<ServerView>& servers, NodeId only = no_node);
  // The client history is linearizable against a counter with increments and reads.
  void check_linearizable(const std::vector<OpRecord>& history);

  [[nodiscard]] std::uint64_t committed_count() const noexcept { return committed_.size(); }

 private:
  void fail(std::string what);

  struct Committed {
    Term term;
    EntryType type;
    Bytes payload;
    Term commit_term;  // the lowest term of a leader that committed it
  };
  // The highest acknowledgement each server sent in its newest term of one, by id.
  struct Acknowledged {
    Term term;
    Index index;
    std::optional<Term> entry_term;  // the stored term at `index`; unknown within a snapshot
  };
  void note_acknowledged(NodeId node, Term term, Index index, std::optional<Term> entry_term);
  std::vector<Acknowledged> acknowledged_;
  NodeId stable_leader_;  // no_node when the stability check is not armed
  Term stable_term_;
  std::vector<NodeId> stable_members_;
  std::vector<NodeId> leaders_;       // by term; no_node when none seen
  std::vector<Committed> committed_;  // index i at [i - 1]
  std::string failure_;
};

}  // namespace coraft::sim
