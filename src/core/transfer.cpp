// Leadership transfer (thesis §3.10): the leader stops taking proposals, brings the target's log
// up to date and tells it to campaign at once; it gives up after an election timeout.
#include <coraft/assert.hpp>

#include "core/core.hpp"

namespace coraft::core {

NodeId Core::transfer_target() const noexcept {
  const auto* l = std::get_if<Leader>(&state_);
  return l ? l->transfer_target : no_node;
}

Result<void> Core::transfer_leadership(NodeId target) {
  auto* l = std::get_if<Leader>(&state_);
  if (!l) return Error::not_leader(leader_);
  if (target == config_.id || !conf_.is_voter(target)) {
    return Error(Errc::invalid_argument, "transfer: the target must be another voter");
  }
  // The target must end up as up to date as every voter: no configuration entry may still be
  // on its way, nor a joint configuration wait to be left.
  if (conf_index_ > log_.commit_index() || conf_.joint()) {
    return Error(Errc::config_change_pending, "transfer: a membership change is not finished");
  }
  l->transfer_target = target;
  l->transfer_elapsed = 0;
  l->timeout_now_sent = false;
  Progress* pr = find_progress(*l, target);
  CORAFT_ASSERT(pr != nullptr, target);
  maybe_send_timeout_now(*l, *pr);
  if (!l->timeout_now_sent && pr->state != Progress::State::snapshot) {
    // Catch the target up first. Probing finds where its log stands within one round trip,
    // rather than waiting for a stalled stream to be noticed.
    pr->become_probe();
    send_append(*l, *pr);
  }
#ifndef NDEBUG
  check_invariants();
#endif
  return {};
}

// Once the target holds the whole log (durably: match_index counts only durable entries), it
// can win an election at once. No new entry appears meanwhile: proposals and membership changes
// are refused, and promotions and the exit from a joint configuration wait for the transfer to
// end (tick_promotions, after_commit).
void Core::maybe_send_timeout_now(Leader& leader, const Progress& pr) {
  if (leader.timeout_now_sent || pr.match_index != log_.last_index()) return;
  leader.timeout_now_sent = true;
  leader.lease_revoked = true;  // voters may now elect the target at once
  send(pr.id, TimeoutNow{term_});
}

void Core::tick_transfer(Leader& leader) {
  if (leader.transfer_target == no_node) return;
  if (++leader.transfer_elapsed >= config_.election_ticks) {
    leader.transfer_target = no_node;  // the target did not take over: lead on
    leader.timeout_now_sent = false;
    after_commit(leader);  // a joint configuration committed meanwhile is left now
  }
}

// The leader of this term hands over: campaign now, without PreVote, and let voters that still
// hear from that leader vote anyway (the request says why).
void Core::handle_timeout_now() {
  if (!conf_.is_voter(config_.id)) return;
  become_candidate(true);
}

}  // namespace coraft::core
