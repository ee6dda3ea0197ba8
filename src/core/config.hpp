// The protocol core's configuration: identity, timing in ticks, limits and feature switches.
#pragma once

#include <cstdint>
#include <vector>

#include <coraft/result.hpp>
#include <coraft/types.hpp>

namespace coraft::core {

struct Config {
  // This server. Precondition: not no_node, and listed in `voters` or `learners` unless both
  // are empty.
  NodeId id;
  // The configuration the cluster starts with, before any membership change: its voters and
  // its learners (thesis §4.2.1: servers that receive the log but never vote). A server that
  // joins an existing cluster leaves both empty and learns the configuration from the leader's
  // log or snapshot. A stored snapshot's configuration replaces this one on restart.
  std::vector<NodeId> voters;
  std::vector<NodeId> learners;

  // A follower or candidate starts an election after a randomized timeout drawn uniformly
  // from [election_ticks, 2 * election_ticks) (thesis §3.4). A leader sends heartbeats every
  // heartbeat_ticks. Invariant: 0 < heartbeat_ticks < election_ticks.
  std::uint32_t election_ticks = 10;
  std::uint32_t heartbeat_ticks = 2;
  // Seeds this server's election-timeout generator; servers should use different seeds.
  std::uint64_t rng_seed = 1;

  // PreVote (§9.6): a server first asks whether it could win before it raises its term.
  bool pre_vote = true;
  // CheckQuorum (§6.2, §4.2.3): a leader steps down when it has not heard from a quorum within
  // an election timeout, and a follower that heard from its leader within the minimum election
  // timeout ignores (pre)vote requests.
  bool check_quorum = true;

  // Replication flow control, per follower: AppendEntries messages in flight (sent, not yet
  // acknowledged) and the entry payload bytes they carry. Both bound the window.
  std::uint32_t inflight_msgs_max = 64;
  std::uint64_t inflight_bytes_max = 32u << 20;
  // Payload bytes one AppendEntries carries at most (it always carries at least one entry).
  std::uint64_t append_bytes_max = 1u << 20;
  // Entries one AppendEntries carries at most (the peer codec bounds entries per frame too).
  std::uint64_t append_entries_max = 8192;
  // A proposal's payload larger than this is refused with too_large.
  std::uint64_t entry_bytes_max = 1u << 20;
  // Entries appended by this leader but not yet committed, and their payload bytes; past
  // either proposals get overloaded. The byte bound keeps an uncommitted backlog of large
  // entries in memory bounded (65,536 entries of 1 MiB would be 64 GiB). It must be at least
  // entry_bytes_max; a leader with nothing uncommitted accepts one batch of any size up to it.
  std::uint64_t pending_proposals_max = 1u << 16;
  std::uint64_t pending_bytes_max = 64u << 20;
  // Committed entries handed out for applying but not yet reported by applied().
  std::uint64_t apply_entries_max = 1u << 14;
  // A follower in replicate state whose acknowledgements stop for this many ticks while
  // messages are in flight is probed again, which recovers from lost AppendEntries.
  std::uint32_t replicate_stall_ticks = 10;

  // After a snapshot, the log keeps this many entries before the snapshot's index in memory, so
  // that a follower lagging by less is caught up with entries instead of a snapshot (§5.1).
  std::uint64_t snapshot_trailing_entries = 1024;

  // A follower in snapshot state whose stream is neither reported (Core::report_snapshot) nor
  // answered for this many ticks is probed again; a new stream starts if still needed.
  std::uint32_t snapshot_timeout_ticks = 3000;

  // A learner added with automatic promotion becomes a voter once its log stayed within this
  // many entries of the leader's last index for a full election timeout (§4.2.1).
  std::uint64_t promotion_lag_entries_max = 64;

  // Linearizable reads (§6.4). ReadIndex is always available. Lease reads (opt-in) answer at
  // once while a quorum acknowledged a heartbeat sent less than election_ticks - 1 -
  // lease_clock_drift_ticks of the leader's ticks ago. A voter refuses other candidates until
  // election_ticks of its own ticks passed since it last heard from a leader; as its first tick
  // may come right after it heard, that is at least election_ticks - 1 tick periods. The lease
  // is therefore safe while no voter's clock runs faster than the leader's by more than
  // lease_clock_drift_ticks ticks over election_ticks - 1 ticks: a rate ratio of at most
  // (election_ticks - 1) / (election_ticks - 1 - lease_clock_drift_ticks), 1.29 with the
  // defaults. No two clocks run at exactly one rate, so the drift must be at least one tick.
  // Lease reads need check_quorum and 0 < lease_clock_drift_ticks < election_ticks - 1.
  bool lease_reads = false;
  std::uint32_t lease_clock_drift_ticks = 2;
  // Reads a leader holds waiting for their heartbeat round; past it reads get overloaded.
  std::uint32_t reads_pending_max = 1u << 14;

  // Fails with invalid_argument and a detail naming the first bad field.
  [[nodiscard]] Result<void> validate() const;
};

}  // namespace coraft::core
