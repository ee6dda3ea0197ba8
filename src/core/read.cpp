// Linearizable reads without log writes (thesis §6.4): ReadIndex confirmed by one heartbeat
// round per batch of reads, lease reads, and reads forwarded by followers.
#include <algorithm>

#include <coraft/assert.hpp>

#include "core/core.hpp"

namespace coraft::core {

Result<void> Core::read_index(std::uint64_t id) {
  auto* l = std::get_if<Leader>(&state_);
  if (!l) {
    if (leader_ == no_node) return Error::not_leader(leader_);
    send(leader_, ReadIndexRequest{term_, id});  // §6.4.1: the leader finds the read index
    return {};
  }
  auto r = leader_read(*l, id, config_.id);
#ifndef NDEBUG
  check_invariants();
#endif
  return r;
}

Result<void> Core::leader_read(Leader& leader, std::uint64_t id, NodeId origin) {
  if (leader.reads.size() + leader.reads_held.size() >= config_.reads_pending_max) {
    return Error(Errc::overloaded, "read: reads_pending_max reached");
  }
  // Until it commits an entry of its term, a new leader does not know the commit index (§6.4):
  // the read waits for that commit (its no-op's, normally).
  if (!log_.matches(log_.commit_index(), term_)) {
    leader.reads_held.push_back({id, origin, Index(), 0});
    return {};
  }
  const Index index = log_.commit_index();
  if (lease_valid(leader)) {
    answer_read(Leader::PendingRead{id, origin, index, 0});
    return {};
  }
  // The read joins the next heartbeat round. If no round is out for earlier reads, one goes out
  // now; otherwise it goes out when that round completes, for every read gathered meanwhile.
  const bool round_out = !leader.reads.empty() && leader.reads.front().seq <= leader.heartbeat_seq;
  leader.reads.push_back({id, origin, index, leader.heartbeat_seq + 1});
  if (!round_out) {
    broadcast_heartbeat(leader);
    release_reads(leader);  // a single voter is its own quorum
  }
  return {};
}

void Core::answer_read(const Leader::PendingRead& r) {
  if (r.origin == config_.id) {
    reads_ready_.push_back(ReadState{r.id, r.index});
  } else {
    send(r.origin, ReadIndexResponse{term_, r.id, r.index, true});
  }
}

// After a commit: once the commit index is in this term, the held reads take it as their read
// index and join the next heartbeat round, in the order they arrived.
void Core::admit_held_reads(Leader& leader) {
  if (leader.reads_held.empty() || !log_.matches(log_.commit_index(), term_)) return;
  std::vector<Leader::PendingRead> held = std::move(leader.reads_held);
  leader.reads_held.clear();
  for (const Leader::PendingRead& r : held) {
    const auto admitted = leader_read(leader, r.id, r.origin);
    CORAFT_ASSERT(admitted.ok(), "a held read fits: it was counted when it arrived", r.id);
  }
}

// Answers every read whose round a quorum acknowledged, then starts the round the rest wait on.
void Core::release_reads(Leader& leader) {
  const std::uint64_t confirmed = quorum_round(leader);
  while (!leader.reads.empty() && leader.reads.front().seq <= confirmed) {
    answer_read(leader.reads.front());
    leader.reads.pop_front();
  }
  if (!leader.reads.empty() && leader.reads.front().seq > leader.heartbeat_seq) {
    broadcast_heartbeat(leader);
    release_reads(leader);
  }
}

// The newest heartbeat round that a quorum of each voter set has answered (this server answers
// its own rounds at once).
std::uint64_t Core::quorum_round(Leader& leader) const {
  auto round = [&](const std::vector<NodeId>& set, std::vector<Index>& scratch) {
    scratch.clear();
    for (NodeId id : set) {
      if (id == config_.id) {
        scratch.emplace_back(leader.heartbeat_seq);
        continue;
      }
      for (const Progress& pr : leader.peers) {
        if (pr.id == id) scratch.emplace_back(pr.read_acked);
      }
    }
    return quorum_index(scratch);
  };
  const Index in = round(conf_.voters, leader.matches);
  const Index out = round(conf_.outgoing_voters, leader.matches_outgoing);
  return std::min(in, out).value();
}

bool Core::lease_valid(Leader& leader) const {
  if (!config_.lease_reads || leader.lease_revoked || leader.transfer_target != no_node) {
    return false;
  }
  const std::uint64_t confirmed = quorum_round(leader);
  // A voter that answered the round refuses other candidates until election_ticks of its
  // ticks passed since it heard the round; its first tick may come at once, so that is only
  // election_ticks - 1 tick periods for sure. The lease ends lease_clock_drift_ticks before.
  const std::uint64_t lease = config_.election_ticks - 1 - config_.lease_clock_drift_ticks;
  for (const auto& [seq, sent] : leader.heartbeat_sent) {
    if (seq == confirmed) return leader.ticks < sent + lease;
  }
  // A single voter confirms every round at once; with no round sent yet there is no lease.
  return false;
}

void Core::handle_read_index_request(NodeId from, const ReadIndexRequest& r) {
  auto* l = std::get_if<Leader>(&state_);
  if (l && leader_read(*l, r.context, from).ok()) return;
  send(from, ReadIndexResponse{term_, r.context, Index(), false});
}

void Core::handle_read_index_response(const ReadIndexResponse& r) {
  if (r.success) {
    reads_ready_.push_back(ReadState{r.context, r.read_index});
  } else {
    reads_dropped_.push_back(r.context);
  }
}

void Core::drop_reads(Leader& leader) {
  auto drop = [&](const Leader::PendingRead& r) {
    if (r.origin == config_.id) {
      reads_dropped_.push_back(r.id);
    } else {
      send(r.origin, ReadIndexResponse{term_, r.id, Index(), false});
    }
  };
  for (const Leader::PendingRead& r : leader.reads_held) drop(r);
  for (const Leader::PendingRead& r : leader.reads) drop(r);
  leader.reads_held.clear();
  leader.reads.clear();
}

}  // namespace coraft::core
