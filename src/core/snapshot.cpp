// Snapshots and log compaction (thesis §5.1-§5.3): the application's own snapshots compact the
// log; a follower whose entries are compacted away receives the leader's snapshot instead.
#include <algorithm>

#include <coraft/assert.hpp>

#include "core/core.hpp"

namespace coraft::core {

Result<void> Core::snapshot_taken(const SnapshotMeta& meta) {
  if (meta.last_index <= snapshot_.last_index) {
    return Error(Errc::invalid_argument, "snapshot_taken: not newer than the last snapshot");
  }
  if (meta.last_index > applied_) {
    return Error(Errc::invalid_argument, "snapshot_taken: index not applied yet");
  }
  if (!log_.matches(meta.last_index, meta.last_term)) {
    return Error(Errc::invalid_argument, "snapshot_taken: term does not match the log");
  }
  if (meta.configuration != config_at(meta.last_index)) {
    return Error(Errc::invalid_argument,
                 "snapshot_taken: configuration differs from the one in force at its index");
  }
  snapshot_ = meta;
  const std::uint64_t trailing = config_.snapshot_trailing_entries;
  const Index keep_after =
      meta.last_index.value() > trailing ? meta.last_index - trailing : Index();
  const Index upto = std::max(log_.offset(), keep_after);
  base_conf_ = config_at(upto);
  log_.compact(upto);
#ifndef NDEBUG
  check_invariants();
#endif
  return {};
}

void Core::report_snapshot(NodeId peer, std::uint64_t stream, bool success) {
  auto* l = std::get_if<Leader>(&state_);
  if (!l) return;
  Progress* pr = find_progress(*l, peer);
  if (!pr || pr->state != Progress::State::snapshot || pr->snapshot_stream != stream) return;
  const Index sent = pr->pending_snapshot;
  pr->become_probe();
  if (success) {
    // Probe right after the snapshot; the follower's answer confirms where the logs agree.
    pr->next_index = std::max(pr->next_index, sent + 1);
    send_append(*l, *pr);
  }
  // On failure the next heartbeat response probes again, which sends a new snapshot if the
  // follower still needs one.
#ifndef NDEBUG
  check_invariants();
#endif
}

// Precondition: pr.next_index - 1 is compacted away, so pr.match_index < snapshot_.last_index.
void Core::send_snapshot(Progress& pr) {
  // A stream carries this leader's term: it waits until the term is durable (see send()).
  if (durable_term_ < term_) return;
  pr.become_snapshot(snapshot_.last_index);
  pr.snapshot_stream = ++last_stream_;
  snapshot_sends_.push_back(SnapshotSend{pr.id, term_, snapshot_, pr.snapshot_stream});
}

void Core::become_follower_of(NodeId leader) {
  if (std::holds_alternative<Follower>(state_)) {
    leader_ = leader;
    election_elapsed_ = 0;
    since_leader_ = 0;
  } else {
    become_follower(term_, leader);  // a candidate learns of this term's leader (§3.4)
  }
}

void Core::handle_install_snapshot(NodeId from, const InstallSnapshot& r) {
  // Precondition: r.term == term_ and this server is not the leader.
  become_follower_of(from);
  const Index last = r.meta.last_index;
  if (last > log_.commit_index()) {
    // A log that holds the snapshot's last entry keeps what follows it (§5.3); any other log is
    // replaced by the snapshot.
    if (!log_.restore(last, r.meta.last_term)) cap_acknowledgements(last);
    base_conf_ = r.meta.configuration;
    refresh_config();
    snapshot_ = r.meta;
    install_pending_ = r.meta;
    apply_handed_ = last;
  }
  // Either way this server now holds everything up to `last`, and it is committed. The answer
  // waits for the snapshot's installation to be durable.
  send_after_persist(from, InstallSnapshotResponse{term_, last, r.offset, true, true, r.stream});
}

void Core::handle_snapshot_response(Leader& leader, NodeId from, const InstallSnapshotResponse& r) {
  Progress* pr = find_progress(leader, from);
  if (!pr) return;
  pr->recent_active = true;
  if (!r.success) {
    if (pr->state == Progress::State::snapshot) pr->become_probe();
    return;
  }
  if (r.last_index > log_.last_index()) return;  // not an answer to anything this leader sent
  const bool moved = pr->acknowledge(r.last_index);
  if (pr->state == Progress::State::snapshot && pr->match_index >= pr->pending_snapshot) {
    pr->become_probe();
  }
  if (leader.transfer_target == from) maybe_send_timeout_now(leader, *pr);
  if (moved && maybe_commit(leader)) {
    broadcast_append(leader);
  } else {
    send_append(leader, *pr);
  }
}

}  // namespace coraft::core
