// Membership changes (thesis chapter 4): the configuration in force is the latest one in the
// log, committed or not; larger changes pass through a joint configuration; learners receive
// the log without voting.
#include <algorithm>

#include <coraft/assert.hpp>

#include "core/core.hpp"

namespace coraft::core {

namespace {
bool listed(const std::vector<NodeId>& v, NodeId id) {
  return std::find(v.begin(), v.end(), id) != v.end();
}

Configuration decode_entry(const Entry& e) {
  auto c = decode_configuration(e.payload.span());
  CORAFT_ASSERT(c.ok(), "a configuration entry in the log does not decode", e.index);
  return std::move(*c);
}
}  // namespace

Configuration Core::config_at(Index index) const {
  for (Index i = std::min(index, log_.last_index()); i > log_.offset(); --i) {
    const Entry& e = log_.at(i);
    if (e.type == EntryType::config) return decode_entry(e);
  }
  return base_conf_;
}

// Finds the latest configuration in the log again, after a truncation or a snapshot.
void Core::refresh_config() {
  for (Index i = log_.last_index(); i > log_.offset(); --i) {
    const Entry& e = log_.at(i);
    if (e.type == EntryType::config) {
      set_config(decode_entry(e), i);
      return;
    }
  }
  set_config(base_conf_, Index());
}

void Core::set_config(Configuration conf, Index index) {
  const bool changed = conf != conf_;
  conf_ = std::move(conf);
  conf_index_ = index;
  if (!changed) return;
  if (auto* l = std::get_if<Leader>(&state_)) {
    sync_peers(*l);
  } else if (std::holds_alternative<Candidate>(state_) && !conf_.is_voter(config_.id)) {
    become_follower(term_, no_node);
  }
}

// Gives every member but this server a Progress, and forgets servers no longer members.
void Core::sync_peers(Leader& leader) {
  const std::vector<NodeId> members = conf_.members();
  std::erase_if(leader.peers, [&](const Progress& pr) { return !listed(members, pr.id); });
  std::erase_if(leader.promotions, [&](const auto& p) { return !conf_.is_learner(p.first); });
  if (leader.transfer_target != no_node && !conf_.is_voter(leader.transfer_target)) {
    leader.transfer_target = no_node;  // the target left: nothing to hand over
  }
  for (NodeId id : members) {
    if (id == config_.id || find_progress(leader, id)) continue;
    leader.peers.emplace_back(id, log_.last_index() + 1, config_.inflight_msgs_max,
                              config_.inflight_bytes_max);
    leader.peers.back().recent_active = true;  // give a new member one round to answer
  }
}

Index Core::append_config(Leader& leader, const Configuration& conf) {
  const Index at = log_.last_index() + 1;
  log_.append(Entry{at, term_, EntryType::config, encode_configuration(conf)});
  leader.uncommitted_bytes += log_.at(at).payload.size();
  set_config(conf, at);
  return at;
}

Result<Configuration> Core::plan_change(const MembershipChange& change,
                                        const std::vector<MemberAddress>& added) const {
  if (change.voters.empty()) return Error(Errc::invalid_argument, "membership: no voter");
  auto target = Configuration::make(change.voters, {}, change.learners);
  if (!target) return target.error();
  for (NodeId id : change.auto_promote) {
    if (!target->is_learner(id)) {
      return Error(Errc::invalid_argument, "membership: only a learner can be promoted");
    }
  }
  std::size_t voter_changes = 0;
  for (NodeId v : conf_.voters) {
    if (target->is_learner(v)) {
      return Error(Errc::invalid_argument,
                   "membership: remove a voter before re-adding it as a learner");
    }
    if (!target->is_voter(v)) ++voter_changes;
  }
  for (NodeId v : target->voters) {
    if (!conf_.is_voter(v)) ++voter_changes;
  }
  std::vector<MemberAddress> addresses = conf_.addresses;
  addresses.insert(addresses.end(), added.begin(), added.end());
  if (voter_changes <= 1) {  // one server at a time needs no joint phase (§4.1)
    target->set_addresses(addresses);
    return target;
  }
  auto joint = Configuration::make(target->voters, conf_.voters, target->learners);
  if (joint) joint->set_addresses(addresses);
  return joint;
}

Result<Index> Core::change_membership(const MembershipChange& change,
                                      const std::vector<MemberAddress>& addresses) {
  auto* l = std::get_if<Leader>(&state_);
  if (!l) return Error::not_leader(leader_);
  if (l->transfer_target != no_node) {
    return Error(Errc::transfer_in_progress, "membership: leadership is being transferred");
  }
  if (conf_index_ > log_.commit_index() || conf_.joint()) {
    return Error(Errc::config_change_pending, "membership: an earlier change is not finished");
  }
  // A leader must commit an entry of its own term before it changes the configuration, or a
  // change of an earlier leader that it does not know of could form a second majority.
  if (!log_.matches(log_.commit_index(), term_)) {
    return Error(Errc::overloaded, "membership: this leader has not committed in its term yet");
  }
  auto target = plan_change(change, addresses);
  if (!target) return target.error();
  for (NodeId id : change.auto_promote) {
    if (std::none_of(l->promotions.begin(), l->promotions.end(),
                     [&](const auto& p) { return p.first == id; })) {
      l->promotions.emplace_back(id, 0);
    }
  }
  const Index at = append_config(*l, *target);
  broadcast_append(*l);
#ifndef NDEBUG
  check_invariants();
#endif
  return at;
}

// A committed joint configuration is left at once (§4.3), or, during a leadership transfer,
// once the transfer is given up: an entry appended then would leave the target less up to
// date than another voter, and its election would fail.
void Core::after_commit(Leader& leader) {
  if (leader.transfer_target == no_node && conf_.joint() && log_.commit_index() >= conf_index_) {
    Configuration next{conf_.voters, {}, conf_.learners, {}};
    next.set_addresses(conf_.addresses);
    (void)append_config(leader, next);
  }
}

void Core::tick_promotions(Leader& leader) {
  for (auto& [id, ticks] : leader.promotions) {
    const Progress* pr = find_progress(leader, id);
    const bool close = pr && pr->state == Progress::State::replicate &&
                       log_.last_index() - pr->match_index <= config_.promotion_lag_entries_max;
    ticks = close ? ticks + 1 : 0;
  }
  // No promotion during a leadership transfer (see after_commit).
  const bool idle = conf_index_ <= log_.commit_index() && !conf_.joint() &&
                    log_.matches(log_.commit_index(), term_) && leader.transfer_target == no_node;
  if (!idle) return;
  for (auto it = leader.promotions.begin(); it != leader.promotions.end(); ++it) {
    if (it->second < config_.election_ticks) continue;
    Configuration next = conf_;
    next.voters.push_back(it->first);
    std::erase(next.learners, it->first);
    auto made = Configuration::make(next.voters, {}, next.learners);
    CORAFT_ASSERT(made.ok(), it->first);
    made->set_addresses(conf_.addresses);
    leader.promotions.erase(it);
    (void)append_config(leader, *made);
    broadcast_append(leader);
    return;  // one change at a time
  }
}

VoteOutcome Core::tally(const Candidate& c) const {
  auto outcome = [&](const std::vector<NodeId>& set) {
    std::size_t yes = 0, no = 0;
    for (NodeId id : set) {
      if (listed(c.granted, id)) ++yes;
      if (listed(c.rejected, id)) ++no;
    }
    return vote_outcome(set.size(), yes, no);
  };
  return joint_vote_outcome(outcome(conf_.voters), outcome(conf_.outgoing_voters));
}

bool Core::quorum_active(const Leader& leader) const {
  auto active = [&](const std::vector<NodeId>& set) {
    std::size_t n = 0;
    for (NodeId id : set) {
      if (id == config_.id) {
        ++n;
        continue;
      }
      for (const Progress& pr : leader.peers) {
        if (pr.id == id && pr.recent_active) ++n;
      }
    }
    return n >= majority(set.size());
  };
  return active(conf_.voters) && active(conf_.outgoing_voters);
}

Index Core::quorum_match(Leader& leader) const {
  auto fill = [&](const std::vector<NodeId>& set, std::vector<Index>& out) {
    out.clear();
    for (NodeId id : set) {
      if (id == config_.id) {
        out.push_back(log_.persisted_index());  // the leader counts once durable
        continue;
      }
      for (const Progress& pr : leader.peers) {
        if (pr.id == id) out.push_back(pr.match_index);
      }
    }
  };
  fill(conf_.voters, leader.matches);
  if (!conf_.joint()) return quorum_index(leader.matches);
  fill(conf_.outgoing_voters, leader.matches_outgoing);
  return joint_quorum_index(leader.matches, leader.matches_outgoing);
}

}  // namespace coraft::core
