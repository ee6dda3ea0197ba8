// Log replication (thesis §3.5), flow control and commit (§3.6).
#include <algorithm>

#include <coraft/assert.hpp>

#include "core/core.hpp"
#include "core/quorum.hpp"

namespace coraft::core {

namespace {
// Send times kept for recent heartbeat rounds; older rounds are too old to extend a lease.
constexpr std::size_t heartbeat_rounds_kept_max = 64;
}  // namespace

Progress* Core::find_progress(Leader& leader, NodeId id) noexcept {
  for (Progress& pr : leader.peers) {
    if (pr.id == id) return &pr;
  }
  return nullptr;
}

// Sends what the follower's state allows: one probe, or in replicate state as many messages as
// the window holds, each carrying entries up to append_bytes_max.
void Core::report_unreachable(NodeId peer) {
  auto* l = std::get_if<Leader>(&state_);
  if (!l) return;
  Progress* pr = find_progress(*l, peer);
  if (pr && pr->state == Progress::State::replicate) pr->become_probe();
}

void Core::send_append(Leader& leader, Progress& pr) {
  (void)leader;
  const Index last = log_.last_index();
  const Index commit = log_.commit_index();
  for (;;) {
    if (pr.paused()) return;
    const bool probe = pr.state == Progress::State::probe;
    const Index prev = pr.next_index - 1;
    const auto prev_term = log_.term_at(prev);
    if (!prev_term) {
      CORAFT_ASSERT(prev < log_.offset(), prev, log_.offset(), last);
      send_snapshot(pr);  // the entries it needs are compacted away (§5.3)
      return;
    }
    // In replicate state an empty message is worth sending only to carry a newer commit index.
    if (!probe && pr.next_index > last && pr.commit_sent >= std::min(commit, prev)) return;
    AppendRequest r{term_, prev, *prev_term, commit, {}};
    std::uint64_t bytes = 0;
    Index end = prev;  // last entry included
    while (end < last) {
      const std::uint64_t size = log_.at(end + 1).payload.size();
      if (end > prev &&
          (bytes + size > config_.append_bytes_max || end - prev >= config_.append_entries_max))
        break;
      bytes += size;
      ++end;
    }
    if (end > prev) {
      auto span = log_.slice(prev + 1, end);
      r.entries.assign(span.begin(), span.end());
    }
    pr.commit_sent = std::max(pr.commit_sent, std::min(commit, end));
    if (probe) {
      pr.probe_sent = true;
    } else if (end > prev) {
      pr.inflights.add(end, bytes);
      pr.next_index = end + 1;
    }
    send(pr.id, std::move(r));
    if (probe) return;
  }
}

void Core::broadcast_append(Leader& leader) {
  for (Progress& pr : leader.peers) send_append(leader, pr);
}

void Core::broadcast_heartbeat(Leader& leader) {
  // Every round has its own read context: a quorum answering it confirms this server was still
  // leader when it went out (§6.4), which serves reads and measures the lease.
  const std::uint64_t seq = ++leader.heartbeat_seq;
  leader.heartbeat_sent.emplace_back(seq, leader.ticks);
  if (leader.heartbeat_sent.size() > heartbeat_rounds_kept_max) leader.heartbeat_sent.pop_front();
  for (Progress& pr : leader.peers) {
    // A follower may commit only what it is known to hold.
    const Index commit = std::min(log_.commit_index(), pr.match_index);
    send(pr.id, HeartbeatRequest{term_, commit, seq});
  }
}

void Core::handle_append_request(NodeId from, AppendRequest& r) {
  // Precondition: r.term == term_ and this server is not the leader.
  become_follower_of(from);
  const Index commit = log_.commit_index();
  if (r.prev_log_index < commit) {
    // Entries up to the commit index are already here and match (§3.6.3): skip them.
    const std::uint64_t skip = std::min<std::uint64_t>(commit - r.prev_log_index, r.entries.size());
    if (skip == r.entries.size() && r.prev_log_index + skip < commit) {
      send_after_persist(from, AppendResponse{term_, true, commit, log_.last_index(), {}, {}});
      return;
    }
    r.entries.erase(r.entries.begin(), r.entries.begin() + static_cast<std::ptrdiff_t>(skip));
    r.prev_log_index = commit;
    r.prev_log_term = *log_.term_at(commit);
  }
  if (!log_.matches(r.prev_log_index, r.prev_log_term)) {
    reject_append(from, r);
    return;
  }
  const Index last_new = r.prev_log_index + r.entries.size();
  std::size_t k = 0;
  bool conf_changed = false;
  for (; k < r.entries.size(); ++k) {
    const Entry& e = r.entries[k];
    if (e.index > log_.last_index()) break;
    if (!log_.matches(e.index, e.term)) {
      // §3.5: delete the conflicting entry and all that follow; a configuration they set is
      // undone with them (§4.1).
      log_.truncate_from(e.index);
      cap_acknowledgements(e.index - 1);
      conf_changed = conf_index_ >= e.index;
      break;
    }
  }
  for (; k < r.entries.size(); ++k) {
    conf_changed = conf_changed || r.entries[k].type == EntryType::config;
    log_.append(std::move(r.entries[k]));
  }
  if (conf_changed) refresh_config();
  if (r.leader_commit > commit) log_.commit_to(std::min(r.leader_commit, last_new));
  // The leader counts this server only once these entries are durable here.
  send_after_persist(from, AppendResponse{term_, true, last_new, log_.last_index(), {}, {}});
}

// A rejection names the rejected prev_log_index in match_index and gives a hint: the largest
// index at or below it whose term is at most the leader's prev_log_term, and that term. The
// leader can then skip every entry that cannot match in one round trip (§3.5).
void Core::reject_append(NodeId from, const AppendRequest& r) {
  const Index hint = log_.last_index_with_term_at_most(r.prev_log_index, r.prev_log_term);
  const Term hint_term = *log_.term_at(hint);
  send_after_persist(
      from, AppendResponse{term_, false, r.prev_log_index, log_.last_index(), hint_term, hint});
}

void Core::handle_append_response(Leader& leader, NodeId from, const AppendResponse& r) {
  Progress* pr = find_progress(leader, from);
  if (!pr) return;
  pr->recent_active = true;
  if (!r.success) {
    handle_append_rejection(leader, *pr, r);
    return;
  }
  if (r.match_index > log_.last_index()) return;  // not an answer to anything this leader sent
  const bool moved = pr->acknowledge(r.match_index);
  if (pr->state == Progress::State::snapshot && pr->match_index >= pr->pending_snapshot) {
    pr->become_probe();  // the follower caught up some other way
  }
  if (pr->state == Progress::State::probe && r.match_index >= pr->match_index) {
    pr->become_replicate();
  }
  if (leader.transfer_target == from) maybe_send_timeout_now(leader, *pr);
  if (moved && maybe_commit(leader)) {
    broadcast_append_soon(leader);
  } else {
    send_append(leader, *pr);
  }
}

void Core::handle_append_rejection(Leader& leader, Progress& pr, const AppendResponse& r) {
  const Index rejected = r.match_index;
  if (pr.state == Progress::State::snapshot) return;  // the snapshot decides what comes next
  if (pr.state == Progress::State::replicate) {
    if (rejected <= pr.match_index) return;  // an answer to a message overtaken since
  } else if (rejected != pr.next_index - 1) {
    return;  // not the answer to the probe in flight
  }
  Index probe = r.conflict_index;
  if (r.conflict_term.value() > 0) {
    probe = log_.last_index_with_term_at_most(r.conflict_index, r.conflict_term);
  }
  pr.become_probe();
  Index next = std::min(rejected, probe + 1);
  next = std::min(std::max(next, pr.match_index + 1), log_.last_index() + 1);
  pr.next_index = next;
  send_append(leader, pr);
}

// Acknowledgements waiting in messages_after_persist_ go out after the write of the output
// they are taken with, which stores the log as it is then: an acknowledgement of entries
// removed since (by a later input before take_output()) would promise what no write holds.
// It is lowered to the entries that remain, which are the acknowledged leader's up to `kept`.
void Core::cap_acknowledgements(Index kept) {
  for (Message& m : messages_after_persist_) {
    auto* a = std::get_if<AppendResponse>(&m.body);
    if (a && a->success && a->match_index > kept) a->match_index = kept;
  }
}

void Core::handle_heartbeat_request(NodeId from, const HeartbeatRequest& r) {
  become_follower_of(from);
  // The leader caps the commit index at what it knows this server holds.
  const Index commit = std::min(r.leader_commit, log_.last_index());
  if (commit > log_.commit_index()) log_.commit_to(commit);
  send_after_persist(from, HeartbeatResponse{term_, r.read_context});
}

void Core::handle_heartbeat_response(Leader& leader, NodeId from, const HeartbeatResponse& r) {
  Progress* pr = find_progress(leader, from);
  if (!pr) return;
  pr->recent_active = true;
  if (r.read_context > pr->read_acked && r.read_context <= leader.heartbeat_seq) {
    pr->read_acked = r.read_context;
    release_reads(leader);
  }
  if (pr->state == Progress::State::probe) pr->probe_sent = false;  // retry a lost probe
  if (pr->match_index < log_.last_index() || pr->commit_sent < log_.commit_index()) {
    send_append(leader, *pr);
  }
}

// Commits the largest index a quorum holds durably, if it is from this term (§3.6.2, Figure
// 3.7): an entry of an earlier term is committed only indirectly, by one of the current term.
bool Core::maybe_commit(Leader& leader) {
  const Index q = quorum_match(leader);
  if (q <= log_.commit_index() || q > log_.last_index() || !log_.matches(q, term_)) return false;
  for (const Entry& e : log_.slice(log_.commit_index() + 1, q)) {
    leader.uncommitted_bytes -= e.payload.size();
  }
  log_.commit_to(q);
  after_commit(leader);
  admit_held_reads(leader);
  return true;
}

void Core::check_leader_invariants(const Leader& leader) const {
  CORAFT_ASSERT(
      leader.peers.size() + (conf_.contains(config_.id) ? 1 : 0) == conf_.members().size(),
      leader.peers.size());
  for (const Progress& pr : leader.peers) {
    CORAFT_ASSERT(conf_.contains(pr.id), pr.id);
    CORAFT_ASSERT(pr.match_index < pr.next_index, pr.id, pr.match_index, pr.next_index);
    CORAFT_ASSERT(pr.next_index <= log_.last_index() + 1, pr.id, pr.next_index, log_.last_index());
    CORAFT_ASSERT(pr.inflights.count() <= config_.inflight_msgs_max, pr.id);
    CORAFT_ASSERT(pr.state == Progress::State::replicate || pr.inflights.count() == 0, pr.id);
  }
  std::uint64_t uncommitted = 0;
  for (const Entry& e : log_.slice(log_.commit_index() + 1, log_.last_index())) {
    uncommitted += e.payload.size();
  }
  CORAFT_ASSERT(uncommitted == leader.uncommitted_bytes, uncommitted, leader.uncommitted_bytes);
  CORAFT_ASSERT(leader.reads_held.empty() || !log_.matches(log_.commit_index(), term_),
                leader.reads_held.size(), log_.commit_index());
}

}  // namespace coraft::core
