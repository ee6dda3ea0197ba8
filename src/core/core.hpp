// The Raft protocol core: one server's protocol state as a deterministic state machine.
//
// Inputs are method calls; the work they produce is collected into an Output that the caller
// takes and carries out as output.hpp describes. The core reads no clock, does no IO, starts no
// thread and draws randomness only from the generator seeded by Config::rng_seed, so the same
// inputs always give the same outputs.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <variant>
#include <vector>

#include <coraft/bytes.hpp>
#include <coraft/result.hpp>

#include "core/config.hpp"
#include "core/message.hpp"
#include "core/output.hpp"
#include "core/progress.hpp"
#include "core/quorum.hpp"
#include "core/raft_log.hpp"

namespace coraft::core {

// What a server restarts from: its last durable hard state, its stored snapshot and its stored
// log. `entries` is contiguous; it starts at index 1 without a snapshot, and at or below
// snapshot->last_index + 1 with one. Entries the snapshot covers are dropped; if the stored log
// holds the snapshot's last index with another term (a crash between storing a received
// snapshot and deleting the log it replaced), the whole stored log is dropped.
struct DurableState {
  HardState hard_state;
  std::vector<Entry> entries;
  std::optional<SnapshotMeta> snapshot = std::nullopt;
};

// A small deterministic generator (SplitMix64) for election timeouts.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) noexcept : state_(seed) {}
  std::uint64_t next() noexcept;
  // Uniform in [0, bound). Precondition: bound > 0.
  std::uint64_t below(std::uint64_t bound) noexcept;

 private:
  std::uint64_t state_;
};

// A membership change a leader is asked to make (thesis §4.3): the voters and learners wanted
// in the end. A change of at most one voter is made directly (§4.1); a larger one goes through
// a joint configuration that the leader leaves on its own once the joint one commits.
struct MembershipChange {
  std::vector<NodeId> voters;
  std::vector<NodeId> learners;
  // Learners (listed in `learners`) that this leader promotes to voters on its own once they
  // caught up (Config::promotion_lag_entries_max). The request is the leader's own: a later
  // leader does not inherit it.
  std::vector<NodeId> auto_promote;
};

class Core {
 public:
  // Precondition: config.validate() succeeds (use make() to get an error instead).
  Core(Config config, DurableState durable);
  [[nodiscard]] static Result<Core> make(Config config, DurableState durable);

  // ---- Inputs ----
  // One unit of logical time (election and heartbeat timeouts count ticks).
  void tick();
  // A message from a peer. Malformed messages, messages not addressed to this server, sent by
  // no_node or by this server, and snapshot chunks not marked done are refused with
  // protocol_error and change nothing. An InstallSnapshot with done = true announces a snapshot
  // fully received and durably staged (output.hpp step 7).
  Result<void> step(Message message);
  // Appends one entry per payload if this server is the leader; returns the index of the first.
  // Fails with not_leader (hint: the leader this server knows), too_large (a payload over
  // entry_bytes_max, more payloads than pending_proposals_max, or more bytes than
  // pending_bytes_max) or overloaded (the uncommitted entries would pass pending_proposals_max,
  // or their payload bytes pending_bytes_max while some are uncommitted). On failure nothing is
  // appended.
  Result<Index> propose(std::span<const Bytes> payloads);
  // The write of the output whose `write` field is `write`, and every earlier write, are
  // durable (output.hpp step 4).
  void persisted(std::uint64_t write);
  // Appends a configuration entry for `change` if this server is the leader; returns its index.
  // The configuration takes effect on every server as soon as the entry is in its log (§4.1).
  // Fails with not_leader; with transfer_in_progress; with config_change_pending while an
  // earlier change is not committed; with overloaded while this leader has not committed an
  // entry of its own term yet (needed for safety, §4.1); with
  // invalid_argument if the result has no voter, or would turn a voter into a learner in one
  // step (remove it first), or asks to promote a server that is not a learner.
  // `addresses` are recorded in the new configuration (those already recorded for members that
  // stay are kept unless replaced).
  Result<Index> change_membership(const MembershipChange& change,
                                  const std::vector<MemberAddress>& addresses = {});
  // Hands leadership to the voter `target` (thesis §3.10): proposals and membership changes
  // are refused with transfer_in_progress from now on; the target is brought up to date and
  // then told to campaign at once (TimeoutNow). The transfer is given up, and proposals are
  // accepted again, if the target is not leader within an election timeout; automatic
  // promotions wait meanwhile. Fails with not_leader, with config_change_pending while a
  // membership change is not committed or a joint configuration not left, or invalid_argument
  // if `target` is this server or not a voter.
  Result<void> transfer_leadership(NodeId target);
  // The voter leadership is being handed to, or no_node.
  [[nodiscard]] NodeId transfer_target() const noexcept;
  // A linearizable read with the caller's identifier `id` (§6.4). The answer comes in a later
  // Output's reads_ready (or reads_dropped). A leader answers after one heartbeat round
  // confirms it still leads (every read asked while a round is out joins the next round), or
  // at once within its lease when Config::lease_reads is set; a follower forwards the read to
  // its leader. A new leader holds reads until it commits an entry of its term (before that
  // it does not know the commit index). Fails with not_leader when no leader is known,
  // overloaded when this leader holds reads_pending_max reads.
  Result<void> read_index(std::uint64_t id);
  // The state machine applied every committed entry up to `index`.
  void applied(Index index);
  // The application stored a snapshot of its state machine covering every entry up to
  // meta.last_index (thesis §5.1). The log is compacted up to meta.last_index -
  // snapshot_trailing_entries. Fails with invalid_argument, changing nothing, if the index was
  // not applied yet, is not above the last snapshot, or its term or configuration (the latest
  // configuration entry applied at or before the index) does not match the log.
  Result<void> snapshot_taken(const SnapshotMeta& meta);
  // The node layer's outcome of streaming a snapshot to `peer` (output.hpp step 7). On success
  // the leader probes the follower right after the snapshot; on failure it probes again from
  // what the follower is known to hold, which sends a new snapshot if still needed.
  // `stream` is the SnapshotSend's; a report of another stream than the one in flight to `peer`
  // (one given up after Config::snapshot_timeout_ticks, or of an earlier leadership) is ignored.
  void report_snapshot(NodeId peer, std::uint64_t stream, bool success);
  // The driver could not send to `peer` (its send queue refused a message, or it is not
  // connected). A leader stops streaming to a follower in replicate state and probes it again
  // from its match index, rather than waiting for the stall timeout.
  void report_unreachable(NodeId peer);

  // ---- Output ----
  [[nodiscard]] bool has_output() const noexcept;
  [[nodiscard]] Output take_output();

  // ---- Observation (read-only) ----
  [[nodiscard]] NodeId id() const noexcept { return config_.id; }
  [[nodiscard]] Term term() const noexcept { return term_; }
  [[nodiscard]] NodeId vote() const noexcept { return vote_; }
  [[nodiscard]] NodeId leader() const noexcept { return leader_; }
  [[nodiscard]] Role role() const noexcept;
  [[nodiscard]] const RaftLog& log() const noexcept { return log_; }
  // The latest snapshot this server knows of (taken or installed); last_index 0 when none.
  [[nodiscard]] const SnapshotMeta& snapshot() const noexcept { return snapshot_; }
  [[nodiscard]] Index applied_index() const noexcept { return applied_; }
  [[nodiscard]] const Config& config() const noexcept { return config_; }
  // The configuration in force: the latest one in the log, committed or not (§4.1).
  [[nodiscard]] const Configuration& configuration() const noexcept { return conf_; }
  [[nodiscard]] Index configuration_index() const noexcept { return conf_index_; }
  // The leader's view of a peer; nullptr when not leader or `peer` is unknown.
  [[nodiscard]] const Progress* progress(NodeId peer) const noexcept;
  // Walks the core's invariants and aborts with context on a broken one. Runs after every input
  // in debug builds; the simulator calls it after every input in every build.
  void check_invariants() const;

 private:
  struct Follower {};
  struct Candidate {
    bool pre_vote = false;
    // Invariant: disjoint, voters only, no duplicates.
    std::vector<NodeId> granted;
    std::vector<NodeId> rejected;
  };
  struct Leader {
    // One per member of the configuration other than this server, voters and learners.
    std::vector<Progress> peers;
    // Learners to promote once caught up, and for how many ticks each has been.
    std::vector<std::pair<NodeId, std::uint32_t>> promotions;
    std::uint32_t heartbeat_elapsed = 0;
    // Leadership transfer (§3.10): the target, ticks since it began, and whether TimeoutNow
    // went out. Invariant: transfer_target is a voter other than this server, or no_node.
    NodeId transfer_target;
    std::uint32_t transfer_elapsed = 0;
    bool timeout_now_sent = false;
    // Reads waiting for the heartbeat round `seq` to be acknowledged by a quorum, in seq order.
    struct PendingRead {
      std::uint64_t id;
      NodeId origin;  // this server, or the follower that forwarded the read
      Index index;
      std::uint64_t seq;
    };
    std::deque<PendingRead> reads;
    // Reads that arrived before this leader committed an entry of its term, in arrival order.
    // Invariant: empty once the commit index is in this term.
    std::vector<PendingRead> reads_held;
    // Heartbeat rounds: the last sent, and when (in this leader's ticks) recent ones went out.
    std::uint64_t heartbeat_seq = 0;
    std::deque<std::pair<std::uint64_t, std::uint64_t>> heartbeat_sent;
    std::uint64_t ticks = 0;
    // Set once TimeoutNow went out: voters may then elect another leader at once.
    bool lease_revoked = false;
    // Payload bytes of the entries after the commit index. Invariant: the sum over the log.
    std::uint64_t uncommitted_bytes = 0;
    // New entries or a newer commit index wait to go out to every peer at take_output(), so
    // that the inputs taken in one output send one AppendEntries per peer, not one each.
    bool append_due = false;
    // Scratch space for the commit computation, one slot per voter of each set.
    std::vector<Index> matches;
    std::vector<Index> matches_outgoing;
  };

  // core.cpp: roles and elections.
  void become_follower(Term term, NodeId leader);
  void adopt_term(Term term, NodeId leader);
  void become_pre_candidate();
  void become_candidate(bool transfer = false);
  void become_leader();
  void campaign();
  void request_votes(bool pre_vote, bool transfer);
  void reset_election_timer();
  void tick_election();
  [[nodiscard]] bool may_campaign() const;
  void tick_leader(Leader& leader);
  [[nodiscard]] bool in_leader_lease() const noexcept;
  [[nodiscard]] bool step_term(const Message& m);
  void handle_vote_request(NodeId from, const VoteRequest& r);
  void handle_vote_response(NodeId from, const VoteResponse& r);
  void record_vote(Candidate& c, NodeId from, bool granted);
  [[nodiscard]] bool is_voter(NodeId id) const noexcept;
  void send(NodeId to, MessageBody body);
  void send_after_persist(NodeId to, MessageBody body);
  [[nodiscard]] Result<void> validate(const Message& m) const;

  // replication.cpp: log replication and commit.
  void send_append(Leader& leader, Progress& pr);
  void broadcast_append(Leader& leader);
  // Has broadcast_append run at the next take_output() (see Leader::append_due).
  void broadcast_append_soon(Leader& leader) { leader.append_due = true; }
  void broadcast_heartbeat(Leader& leader);
  void handle_append_request(NodeId from, AppendRequest& r);
  void reject_append(NodeId from, const AppendRequest& r);
  void cap_acknowledgements(Index kept);
  void handle_append_response(Leader& leader, NodeId from, const AppendResponse& r);
  void handle_append_rejection(Leader& leader, Progress& pr, const AppendResponse& r);
  void handle_heartbeat_request(NodeId from, const HeartbeatRequest& r);
  void handle_heartbeat_response(Leader& leader, NodeId from, const HeartbeatResponse& r);

  // membership.cpp: configurations (§4).
  [[nodiscard]] Configuration config_at(Index index) const;
  void refresh_config();
  void set_config(Configuration conf, Index index);
  void sync_peers(Leader& leader);
  void after_commit(Leader& leader);
  void tick_promotions(Leader& leader);
  [[nodiscard]] Result<Configuration> plan_change(
      const MembershipChange& change, const std::vector<MemberAddress>& addresses) const;
  [[nodiscard]] Index append_config(Leader& leader, const Configuration& conf);
  [[nodiscard]] VoteOutcome tally(const Candidate& c) const;
  [[nodiscard]] bool quorum_active(const Leader& leader) const;
  [[nodiscard]] Index quorum_match(Leader& leader) const;
  void step_down_if_removed();

  // read.cpp: linearizable reads.
  [[nodiscard]] Result<void> leader_read(Leader& leader, std::uint64_t id, NodeId origin);
  void release_reads(Leader& leader);
  void admit_held_reads(Leader& leader);
  void answer_read(const Leader::PendingRead& r);
  [[nodiscard]] std::uint64_t quorum_round(Leader& leader) const;
  [[nodiscard]] bool lease_valid(Leader& leader) const;
  void handle_read_index_request(NodeId from, const ReadIndexRequest& r);
  void handle_read_index_response(const ReadIndexResponse& r);
  void drop_reads(Leader& leader);

  // transfer.cpp: leadership transfer.
  void maybe_send_timeout_now(Leader& leader, const Progress& pr);
  void tick_transfer(Leader& leader);
  void handle_timeout_now();

  // snapshot.cpp: compaction and snapshot transfer.
  void send_snapshot(Progress& pr);
  void handle_install_snapshot(NodeId from, const InstallSnapshot& r);
  void handle_snapshot_response(Leader& leader, NodeId from, const InstallSnapshotResponse& r);
  void become_follower_of(NodeId leader);
  [[nodiscard]] bool maybe_commit(Leader& leader);
  [[nodiscard]] Progress* find_progress(Leader& leader, NodeId id) noexcept;
  void collect_committed(Output& out);
  void check_leader_invariants(const Leader& leader) const;

  Config config_;
  Rng rng_;
  // Invariant: snapshot_.last_index >= log_.offset().
  SnapshotMeta snapshot_;
  RaftLog log_;
  // The configuration in force at log_.offset(), and the one in force at the end of the log
  // with the index of the entry that set it (0: from the base). Invariant: conf_ ==
  // config_at(log_.last_index()).
  Configuration base_conf_;
  Configuration conf_;
  Index conf_index_;
  Term term_;
  NodeId vote_;
  NodeId leader_;
  std::variant<Follower, Candidate, Leader> state_;
  std::uint32_t election_elapsed_ = 0;
  // Invariant: election_ticks <= randomized_timeout_ < 2 * election_ticks.
  std::uint32_t randomized_timeout_ = 0;

  // The hard state last handed out for writing, and the soft state last reported.
  HardState saved_hard_;
  // The newest term known durable on this server (send()). Invariant: <= term_.
  Term durable_term_;
  SoftState reported_soft_;
  // Work collected since the last take_output().
  std::vector<Message> messages_;
  std::vector<Message> messages_after_persist_;
  std::vector<SnapshotSend> snapshot_sends_;
  // A received snapshot accepted since the last take_output().
  std::optional<SnapshotMeta> install_pending_;
  std::vector<ReadState> reads_ready_;
  std::vector<std::uint64_t> reads_dropped_;
  // Ticks since this server last heard from a leader (in_leader_lease()), counted up to
  // election_ticks; a term change does not reset it.
  std::uint32_t since_leader_ = 0;

  // The last SnapshotSend::stream handed out.
  std::uint64_t last_stream_ = 0;

  // Invariant: applied_ <= apply_handed_ <= min(commit, persisted), log_.offset() <=
  // apply_handed_ (an installed snapshot counts as handed out).
  Index applied_;
  Index apply_handed_;
};

}  // namespace coraft::core
