// The simulated world's fault schedule, its phases (safety, healing, liveness) and the run.
#include "world_impl.hpp"

namespace coraft::sim {
namespace impl {

// ---- Faults ----

void World::plan_faults() {
  if (opt_.faults == 0) return;
  const std::uint32_t count = faults_min + static_cast<std::uint32_t>(rng_.below(faults_extra));
  for (std::uint32_t i = 0; i < count; ++i) {
    schedule(rng_.range(500'000, safety_us - 2'000'000), Ev::fault);
  }
}

NodeId World::pick_victim() {
  // Half the time the leader: faults at the leader find the most interesting histories.
  if (rng_.below(2)) {
    for (Node& n : nodes_) {
      if (n.up && n.core->role() == core::Role::leader) return n.id;
    }
  }
  return NodeId(rng_.range(1, opt_.nodes));
}

void World::inject_fault() {
  if (healing_) return;
  std::vector<FaultBit> kinds;
  for (FaultBit b : {fault_drop, fault_dup, fault_reorder, fault_delay, fault_partition,
                     fault_crash, fault_torn, fault_transfer, fault_snapshot, fault_reconfig}) {
    if (opt_.faults & b) kinds.push_back(b);
  }
  // Only `reads` or `notices`, which inject nothing: they turn on lease reads and held commit
  // notices.
  if (kinds.empty()) return;
  const FaultBit kind = kinds[rng_.below(kinds.size())];
  // A third of the faults are brief: a server back within milliseconds still sees the messages
  // sent before it crashed, which is when forgotten votes and acknowledgements do damage.
  const Time duration =
      rng_.below(3) == 0 ? rng_.range(1'000, 30'000) : rng_.range(300'000, 3'000'000);
  ++faults_injected_;
  mix(0xfa17 ^ kind);
  switch (kind) {
    case fault_drop:
      drop_until_ = now_ + duration;
      drop_ppm_ = rng_.range(50'000, 400'000);
      trace("fault: drop ", drop_ppm_ / 10'000, "% for ", duration / 1000, "ms");
      break;
    case fault_dup:
      dup_until_ = now_ + duration;
      dup_ppm_ = rng_.range(50'000, 300'000);
      trace("fault: duplicate ", dup_ppm_ / 10'000, "% for ", duration / 1000, "ms");
      break;
    case fault_reorder:
      reorder_until_ = now_ + duration;
      trace("fault: reorder for ", duration / 1000, "ms");
      break;
    case fault_delay:
      delay_until_ = now_ + duration;
      delay_max_us_ = rng_.range(20'000, 300'000);
      trace("fault: delay up to ", delay_max_us_ / 1000, "ms for ", duration / 1000, "ms");
      break;
    case fault_transfer: transfer(); break;
    case fault_reconfig: reconfig(); break;
    case fault_snapshot:
      if (!take_snapshot()) --faults_injected_;
      break;
    case fault_partition:
      // With five servers or more, a quarter of the partitions hold a follower's output while
      // it takes entries of two leaders (hold_follower), and a quarter stall a follower's disk
      // through three leaderships (stall_disk); half the others play the history of thesis
      // Figure 3.7.
      if (opt_.nodes >= 5) {
        const std::uint64_t directed = schedule_rng_.below(4);
        if (directed == 0 && hold_follower()) break;
        if (directed == 1 && stall_disk()) break;
      }
      if (rng_.below(2) == 0 && orphan_leaders()) break;
      partition();
      schedule(now_ + duration, Ev::heal_partition, 0, 0, partition_id_);
      break;
    case fault_crash:
    case fault_torn: {
      if (kind == fault_crash && rng_.below(4) == 0) {
        forget_votes();
        break;
      }
      if (kind == fault_crash && one_entry_messages() && schedule_rng_.below(3) == 0) {
        stale_leader();
        break;
      }
      NodeId victim = pick_victim();
      for (std::uint32_t k = 0; k < opt_.nodes && !node(victim).up; ++k) {
        victim = NodeId(victim.value() % opt_.nodes + 1);
      }
      Node& n = node(victim);
      if (!n.up) {
        --faults_injected_;  // every server is down already
        break;
      }
      const std::uint64_t when = rng_.below(3);
      if (when != 0) {
        // Strike at the next write of a term or vote, or just after the next election won.
        (when == 1 ? n.crash_on_vote : n.crash_on_lead) = kind == fault_torn ? 2 : 1;
        n.crash_down_us = rng_.below(2) ? rng_.range(100, 2'000) : duration;
        trace("fault: n", n.id,
              when == 1 ? " will crash while writing its next vote"
                        : " will crash after its next election");
        break;
      }
      crash(n, kind == fault_torn);
      schedule(now_ + duration, Ev::restart, static_cast<std::uint32_t>(n.id.value()),
               n.incarnation);
      break;
    }
    default: break;
  }
}

// Every server but the leader will crash just after it starts writing a vote for another
// server, and come back within milliseconds without it; the next leader is cut off as it wins.
// A candidate that counted a vote before it was durable then leads while the voters, back at
// their earlier term, may elect a second leader in the same term (thesis §3.8).
void World::forget_votes() {
  for (Node& n : nodes_) {
    if (!n.up || n.core->role() == core::Role::leader) continue;
    n.crash_on_grant = 1;
    n.crash_down_us = rng_.range(100, 2'000);
  }
  isolate_next_leader_ = true;
  trace("fault: every follower will forget its next vote; the next leader will be isolated");
}

// The leader is cut off while clients still send it requests, so that its log grows a suffix
// no one else holds; the others elect a new leader, which writes other entries at those
// indexes. Just before the link heals the old leader crashes, and it restarts as it heals,
// with the stale suffix on its disk, to be replaced one entry per message (the seeds that take
// this schedule send one entry per AppendEntries): the new leader must walk back over the
// suffix, and the old one must give it up without losing anything committed.
void World::stale_leader() {
  for (Node& n : nodes_) {
    if (!n.up || n.core->role() != core::Role::leader) continue;
    const Time cut = schedule_rng_.range(1'000'000, 3'000'000);
    isolate(n.id, cut);
    const Time down = schedule_rng_.range(20'000, 300'000);
    n.crash_planned = 1;
    n.crash_down_us = down + schedule_rng_.range(1'000, 50'000);
    schedule(now_ + cut - down, Ev::armed_crash, static_cast<std::uint32_t>(n.id.value()),
             n.incarnation, 3);
    trace("fault: leader n", n.id, " isolated for ", cut / 1000, "ms, to crash ", down / 1000,
          "ms before it rejoins");
    return;
  }
  --faults_injected_;  // no leader to cut off
}

// Messages carry one entry each: append_bytes_max holds one client operation and no more.
bool World::one_entry_messages() const {
  constexpr std::uint64_t payload = 9;  // encode_op()
  return knobs_.append_bytes_max < 2 * payload;
}

// Right after its joint configuration commits (and it appends the final one, which it alone
// then holds) the leader is cut off or crashes: the others must finish the change, or undo
// it, without it (thesis §4.3).
void World::cut_after_joint(Node& n) {
  if (joint_cut_.leader != n.id) return;
  if (n.core->term() != joint_cut_.term || n.core->role() != core::Role::leader) {
    joint_cut_ = JointCut{};
    return;
  }
  if (n.core->log().commit_index() < joint_cut_.index) return;
  const bool crash = joint_cut_.crash;
  joint_cut_ = JointCut{};
  const Time duration = schedule_rng_.range(300'000, 3'000'000);
  if (crash) {
    n.crash_planned = 1;
    n.crash_down_us = duration;
    schedule(now_ + schedule_rng_.range(1, 3'000), Ev::armed_crash,
             static_cast<std::uint32_t>(n.id.value()), n.incarnation, 3);
  } else {
    isolate(n.id, duration);
  }
  trace("fault: n", n.id, crash ? " will crash" : " isolated", " as its joint configuration at ",
        n.core->log().commit_index(), " commits");
}

// A follower takes AppendEntries of two leaders before its driver takes one output: the
// leader's entries (and its acknowledgement of them, waiting for the write), then a new
// leader's conflicting ones, which remove them again. The driver stops taking the follower's
// output; tens of milliseconds later (the leader's latest entries reaching the others too)
// the leader and the follower are cut off from the rest, which elect a new leader; the cut
// heals as it wins, and the follower's output is taken once it holds an entry of the new term
// (or when the hold ends, if nothing of this comes about). Output.hpp's promises for that
// output are World::check_output's. Needs a voter set of five or more: the rest must elect a
// leader without the two. Returns false when there is no leader.
bool World::hold_follower() {
  if (held_.stage != Held::idle || stall_.stage != Stall::idle) return false;  // one at a time
  auto [leader, spare] = leader_and_spare_voter();
  if (!leader) return false;
  Node& f = *spare;
  const NodeId follower = f.id;
  const Time cut_in = schedule_rng_.range(2'000, 50'000);
  f.drain_held_until = now_ + cut_in + 4 * knobs_.election_ticks * slowest_tick_ + 100'000;
  f.drain_scheduled = true;
  schedule(f.drain_held_until, Ev::drain, static_cast<std::uint32_t>(f.id.value()), f.incarnation);
  held_ = Held{Held::holding, follower, leader->id, leader->core->term()};
  schedule(now_ + cut_in, Ev::hold_cut);
  trace("fault: n", follower, "'s output held; it and leader n", leader->id, " to be cut off in ",
        cut_in / 1000, "ms");
  return true;
}

void World::hold_cut() {
  if (held_.stage != Held::holding || healing_) return;
  Node& l = node(held_.leader);
  Node& f = node(held_.follower);
  if (!l.up || !f.up || l.core->role() != core::Role::leader || l.core->term() != held_.term) {
    held_ = Held{};
    release_hold(f);
    return;
  }
  split(l.id, f.id);
  schedule(std::max(now_, f.drain_held_until) + 100'000, Ev::heal_partition, 0, 0, partition_id_);
  held_.stage = Held::cut;
  trace("fault: n", l.id, " and n", f.id, " cut off from the others");
}

// A new leader among the others: the cut heals, and its first AppendEntries reach the held
// follower.
void World::hold_on_lead(Node& n, Term term) {
  if (term <= held_.term || n.id == held_.follower || n.id == held_.leader) return;
  ++partition_id_;
  std::fill(blocked_.begin(), blocked_.end(), 0);
  held_.stage = Held::healed;
  trace("fault: cut healed as n", n.id, " wins term ", term);
}

void World::hold_after_input(Node& n) {
  if (held_.stage != Held::healed || n.id != held_.follower) return;
  if (n.core->log().last_term() <= held_.term) return;
  held_ = Held{};
  release_hold(n);
  trace("n", n.id, " holds an entry of a newer term: its output is taken");
}

void World::release_hold(Node& n) {
  if (!n.up || n.drain_held_until <= now_) return;
  n.drain_held_until = now_;
  schedule(now_, Ev::drain, static_cast<std::uint32_t>(n.id.value()), n.incarnation);
}

// A voter other than `self`, drawn by the later schedules. Precondition: two voters or more.
NodeId World::other_voter(const std::vector<NodeId>& voters, NodeId self) {
  const std::size_t k = schedule_rng_.below(voters.size());
  return voters[k] != self ? voters[k] : voters[(k + 1) % voters.size()];
}

// A leader that is up, with a plain configuration of five voters or more, and another voter
// that is up: the rest can elect a leader without the two. Both null when there is none.
std::pair<Node*, Node*> World::leader_and_spare_voter() {
  Node* leader = nullptr;
  for (Node& n : nodes_) {
    if (n.up && n.core->role() == core::Role::leader) leader = &n;
  }
  if (!leader || leader->core->configuration().joint()) return {};
  const std::vector<NodeId>& voters = leader->core->configuration().voters;
  if (voters.size() < 5) return {};
  Node& f = node(other_voter(voters, leader->id));
  if (!f.up) return {};
  return {leader, &f};
}

// Cuts servers `a` and `b` off from the others, both ways, until healed.
void World::split(NodeId a, NodeId b) {
  ++partition_id_;
  const std::size_t n = opt_.nodes;
  std::fill(blocked_.begin(), blocked_.end(), 0);
  for (std::size_t x = 0; x < n; ++x) {
    const bool side_x = NodeId(x + 1) == a || NodeId(x + 1) == b;
    for (std::size_t y = 0; y < n; ++y) {
      const bool side_y = NodeId(y + 1) == a || NodeId(y + 1) == b;
      if (side_x != side_y) blocked_[x * n + y] = 1;
    }
  }
}

// A follower's disk stalls while three leaderships pass, and then completes every write queued
// at once; the driver acknowledges them with one persisted() naming the last
// (World::check_persisted). The leader of term t and the follower are cut off from the others
// (the leader's latest entries reach the follower alone); when the others elect a new leader,
// it is cut off with the follower instead (its first entry replaces the old leader's there);
// the old leader, whose log is the longest the others hold, then wins a later term and the cut
// heals. The follower, whose new terms wait on its disk, answers no one meanwhile; its disk
// catches up a few milliseconds after the third leader wins, or after a few seconds if the
// history goes otherwise. Needs a voter set of five or more. Returns false when there is no
// leader.
bool World::stall_disk() {
  if (stall_.stage != Stall::idle || held_.stage != Held::idle) return false;
  auto [leader, spare] = leader_and_spare_voter();
  if (!leader) return false;
  Node& f = *spare;
  const NodeId follower = f.id;
  f.disk_stalled = true;
  split(leader->id, follower);
  stall_ = Stall{Stall::first_cut, follower, leader->id, no_node, leader->core->term()};
  const Time bound = 12 * knobs_.election_ticks * slowest_tick_ + 500'000;
  schedule(now_ + bound, Ev::disk_flush, static_cast<std::uint32_t>(f.id.value()), f.incarnation);
  schedule(now_ + bound, Ev::heal_partition, 0, 0, partition_id_);
  trace("fault: n", follower, "'s disk stalls; it and leader n", leader->id, " cut off");
  return true;
}

void World::stall_on_lead(Node& n, Term term) {
  if (term <= stall_.term || n.id == stall_.follower) return;
  const Time bound = 12 * knobs_.election_ticks * slowest_tick_ + 500'000;
  if (stall_.stage == Stall::first_cut && n.id != stall_.first) {
    stall_.stage = Stall::second_cut;
    stall_.second = n.id;
    stall_.term = term;
    split(n.id, stall_.follower);
    schedule(now_ + bound, Ev::heal_partition, 0, 0, partition_id_);
    trace("fault: n", n.id, " cut off with n", stall_.follower, " as it wins term ", term);
  } else if (stall_.stage == Stall::second_cut) {
    ++partition_id_;
    std::fill(blocked_.begin(), blocked_.end(), 0);
    stall_.stage = n.id == stall_.first ? Stall::healed : Stall::idle;
    // The disk catches up once the new leader's first AppendEntries are queued behind the rest.
    const Node& f = node(stall_.follower);
    schedule(now_ + schedule_rng_.range(2'000, 10'000), Ev::disk_flush,
             static_cast<std::uint32_t>(f.id.value()), f.incarnation);
    trace("fault: cut healed as n", n.id, " wins term ", term);
  }
}

// The stalled disk completes every write queued, acknowledged together.
void World::flush_disk(Node& n) {
  if (!n.disk_stalled) return;
  n.disk_stalled = false;
  if (stall_.follower == n.id) stall_ = Stall{};
  n.disk_busy_until = now_;
  trace("n", n.id, " disk completes ", n.writes.size(), " queued writes");
  const std::size_t queued = n.writes.size();
  for (std::size_t k = 0; k < queued && n.up && !n.writes.empty(); ++k) disk_done(n, true);
}

// Cuts every link to and from `victim` until the partition heals `duration` from now.
void World::isolate(NodeId victim, Time duration) {
  ++partition_id_;
  std::fill(blocked_.begin(), blocked_.end(), 0);
  const std::size_t n = opt_.nodes, v = victim.value() - 1;
  for (std::size_t k = 0; k < n; ++k) {
    if (k != v) blocked_[k * n + v] = blocked_[v * n + k] = 1;
  }
  schedule(now_ + duration, Ev::heal_partition, 0, 0, partition_id_);
}

// The shape of thesis Figure 3.7, where a leader that commits an earlier term's entry by
// counting replicas loses it. The leader is cut off while it still accepts proposals (its new
// entries stay on its own log); the next leader is cut off the moment it wins (its first entries
// stay on its log) and the first one rejoins the others. If the first one leads again, it
// replicates its old entries and is cut off the moment its commit index moves, while the second
// rejoins: whatever it committed must survive the second leader's return. Returns false when
// there is no leader.
bool World::orphan_leaders() {
  for (Node& n : nodes_) {
    if (!n.up || n.core->role() != core::Role::leader) continue;
    isolate(n.id, rng_.range(1'000'000, 3'000'000));
    orphans_ = Orphans{Orphans::first_cut, n.id, n.core->term(), Index()};
    trace("fault: leader n", n.id, " isolated; the next leader will be isolated as it wins");
    return true;
  }
  return false;
}

void World::orphans_on_lead(Node& n, Term term) {
  if (term <= orphans_.term) return;
  if (orphans_.stage == Orphans::first_cut && n.id != orphans_.first) {
    isolate(n.id, rng_.range(1'000'000, 3'000'000));
    orphans_.stage = Orphans::second_cut;
    orphans_.term = term;
    trace("fault: n", n.id, " isolated as it wins term ", term, "; n", orphans_.first, " rejoins");
  } else if (orphans_.stage == Orphans::second_cut && n.id == orphans_.first) {
    orphans_.stage = Orphans::first_back;
    orphans_.term = term;
    orphans_.commit = n.core->log().commit_index();
  } else {
    orphans_.stage = Orphans::idle;
  }
}

void World::orphans_on_commit(Node& n) {
  if (n.id != orphans_.first || n.core->role() != core::Role::leader ||
      n.core->term() != orphans_.term || n.core->log().commit_index() <= orphans_.commit) {
    return;
  }
  orphans_.stage = Orphans::idle;
  isolate(n.id, rng_.range(1'000'000, 3'000'000));
  trace("fault: n", n.id, " isolated as it first commits in term ", n.core->term(),
        "; the others rejoin");
}

void World::partition() {
  ++partition_id_;
  const std::uint32_t n = opt_.nodes;
  std::fill(blocked_.begin(), blocked_.end(), 0);
  const std::uint64_t shape = rng_.below(4);
  const std::size_t victim = pick_victim().value() - 1;
  auto cut = [&](std::size_t a, std::size_t b) { blocked_[a * n + b] = 1; };
  if (shape == 0 || shape == 1) {
    // 0: one server isolated; 1: a random minority against the majority. Symmetric.
    std::vector<std::uint8_t> side(n, 0);
    if (shape == 0) {
      side[victim] = 1;
    } else {
      const std::uint64_t minority = rng_.range(1, (n - 1) / 2);
      for (std::uint64_t k = 0; k < minority; ++k) side[rng_.below(n)] = 1;
    }
    for (std::size_t a = 0; a < n; ++a) {
      for (std::size_t b = 0; b < n; ++b) {
        if (side[a] != side[b]) cut(a, b);
      }
    }
    trace("fault: partition ", shape == 0 ? "isolate n" : "minority incl. n", victim + 1);
  } else if (shape == 2) {
    // Asymmetric: one server can send but not receive, or receive but not send.
    const bool deaf = rng_.below(2) == 0;
    for (std::size_t b = 0; b < n; ++b) {
      if (b != victim) deaf ? cut(b, victim) : cut(victim, b);
    }
    trace("fault: partition n", victim + 1, deaf ? " cannot receive" : " cannot send");
  } else {
    // Random directed links.
    for (std::size_t a = 0; a < n; ++a) {
      for (std::size_t b = 0; b < n; ++b) {
        if (a != b && rng_.below(3) == 0) cut(a, b);
      }
    }
    trace("fault: partition of random links");
  }
}

void World::transfer() {
  for (Node& n : nodes_) {
    if (!n.up || n.core->role() != core::Role::leader) continue;
    const auto& voters = n.core->configuration().voters;
    transfer_now(n, voters[rng_.below(voters.size())]);
    return;
  }
  --faults_injected_;  // no leader to transfer from
}

// Leader `n` is asked to hand leadership to `target` (refused when that is itself). It must
// refuse while a membership change is unfinished (core.hpp, transfer_leadership): a
// configuration entry still to commit, or a joint configuration still to leave, would be
// appended or committed during the transfer (World::check_transfer).
void World::transfer_now(Node& n, NodeId target) {
  auto r = n.core->transfer_leadership(target);
  trace("fault: n", n.id, " transfers leadership to n", target, ": ",
        r ? "accepted" : r.error().message());
  const core::RaftLog& log = n.core->log();
  if (r && checker_failure_.empty() &&
      (n.core->configuration().joint() || n.core->configuration_index() > log.commit_index())) {
    checker_failure_ = detail::concat("transfer: leader n", n.id,
                                      " accepted a transfer while its configuration at ",
                                      n.core->configuration_index(), " is ",
                                      n.core->configuration().joint() ? "joint" : "uncommitted",
                                      " (commit index ", log.commit_index(), ")");
    stop_ = true;
  }
  after_input(n);
}

// The leader of promotion_watch_ hands leadership over just before the tick at which one of the
// watched learners' automatic promotion falls due; the core counts the ticks a learner has been
// close enough as this does (Core::tick_promotions). The promotion must wait for the transfer
// to end.
void World::promotion_tick(Node& n) {
  PromotionWatch& w = promotion_watch_;
  if (n.core->role() != core::Role::leader || n.core->term() != w.term || w.ticks_left == 0) {
    w = PromotionWatch{};
    return;
  }
  --w.ticks_left;
  const core::Config& c = n.core->config();
  const core::RaftLog& log = n.core->log();
  const Configuration& conf = n.core->configuration();
  bool due = false;
  for (auto& [id, ticks] : w.learners) {
    const core::Progress* pr = n.core->progress(id);
    const bool close = pr && pr->state == core::Progress::State::replicate &&
                       log.last_index() - pr->match_index <= c.promotion_lag_entries_max;
    ticks = close ? ticks + 1 : 0;
    due = due || (ticks >= c.election_ticks && conf.is_learner(id));
  }
  const bool idle = n.core->configuration_index() <= log.commit_index() && !conf.joint() &&
                    log.matches(log.commit_index(), n.core->term());
  if (!due || !idle || n.core->transfer_target() != no_node || conf.voters.size() < 2) return;
  w = PromotionWatch{};
  trace("fault: a promotion falls due at n", n.id, "'s next tick");
  transfer_now(n, other_voter(conf.voters, n.id));
}

// With membership changes the voter set may shrink to a bare majority of the servers, and an
// entry it commits is then held by a majority of that set only.
std::size_t World::durable_quorum() const {
  const std::size_t all = nodes_.size() / 2 + 1;
  if (!(opt_.faults & fault_reconfig)) return all;
  return extras_.one_voter ? 1 : all / 2 + 1;
}

Configuration World::full_configuration() const {
  std::vector<NodeId> all;
  for (const Node& n : nodes_) all.push_back(n.id);
  return *Configuration::make(all);
}

// The leader changes the membership: a random voter set of at least a majority of the servers;
// each other server is removed or kept as a learner, which it promotes on its own half the time.
void World::reconfig() {
  for (Node& n : nodes_) {
    if (!n.up || n.core->role() != core::Role::leader) continue;
    const std::size_t total = nodes_.size();
    std::size_t want = total / 2 + 1 + rng_.below(total - total / 2);
    if (extras_.one_voter && rng_.below(3) == 0) want = 1;  // a sole voter, maybe with learners
    std::vector<NodeId> ids = full_configuration().voters;
    for (std::size_t k = ids.size(); k > 1; --k) std::swap(ids[k - 1], ids[rng_.below(k)]);
    core::MembershipChange change;
    change.voters.assign(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(want));
    for (std::size_t k = want; k < total; ++k) {
      if (rng_.below(2) == 0) continue;                        // removed
      if (n.core->configuration().is_voter(ids[k])) continue;  // a voter leaves before learning
      change.learners.push_back(ids[k]);
      if (rng_.below(2) == 0) change.auto_promote.push_back(ids[k]);
    }
    auto r = n.core->change_membership(change);
    trace("fault: n", n.id, " membership change to ", change.voters.size(), " voters, ",
          change.learners.size(), " learners: ", r ? "accepted" : r.error().message());
    // Half the joint changes, with crashes or partitions among the faults, lose their leader
    // as they commit (cut_after_joint).
    // With transfer faults, three in four changes that promote learners are followed by a
    // transfer at the tick a promotion falls due (promotion_tick), and half the others by a
    // transfer at once, which the leader must refuse while the change is unfinished.
    if (r && (opt_.faults & fault_transfer)) {
      if (!change.auto_promote.empty() && schedule_rng_.below(4) != 0) {
        promotion_watch_ = PromotionWatch{n.id, n.core->term(), 30 * knobs_.election_ticks, {}};
        for (NodeId id : change.auto_promote) promotion_watch_.learners.emplace_back(id, 0);
        trace("fault: n", n.id, " will transfer leadership as a promotion falls due");
      } else if (schedule_rng_.below(2) == 0) {
        const auto& voters = n.core->configuration().voters;
        transfer_now(n, voters[schedule_rng_.below(voters.size())]);
      }
    }
    const std::uint32_t cuts = opt_.faults & (fault_crash | fault_partition);
    if (r && n.core->configuration().joint() && cuts != 0 && schedule_rng_.below(2) == 0) {
      const bool crash = cuts == fault_crash || (cuts != fault_partition && schedule_rng_.below(2));
      joint_cut_ = JointCut{n.id, n.core->term(), *r, crash};
      trace("fault: n", n.id, crash ? " will crash" : " will be isolated",
            " once its joint configuration commits");
    }
    after_input(n);
    return;
  }
  --faults_injected_;  // no leader to ask
}

// After healing, the leader is asked until it agrees to make every server a voter again.
void World::restore_membership() {
  const Configuration full = full_configuration();
  for (Node& n : nodes_) {
    if (!n.up || n.core->role() != core::Role::leader) continue;
    if (n.core->configuration() == full) return;
    if (n.core->transfer_target() != no_node) return;
    auto r = n.core->change_membership(core::MembershipChange{full.voters, {}, {}});
    if (r) trace("heal: n", n.id, " restores the full membership at ", *r);
    // A server outside the configuration gets no entries, and the leader can start this change
    // only once an earlier one is done, which may wait for a voter it added far behind to catch
    // up. If that took past the first deadline, the others' catch-up starts only now: they get
    // the time it takes at the configured rate, once.
    if (r && liveness_extended_ && !restore_extended_) {
      restore_extended_ = true;
      liveness_deadline_ = std::max(liveness_deadline_, now_ + catch_up_allowance());
      trace("heal: the liveness deadline is now ", liveness_deadline_, " us");
    }
    after_input(n);
    return;
  }
}

void World::heal() {
  healing_ = true;
  healed_at_ = now_;
  liveness_deadline_ = now_ + liveness_us;
  stability_from_ = std::max(latest_delivery_, now_ + 2 * knobs_.election_ticks * slowest_tick_);
  std::fill(blocked_.begin(), blocked_.end(), 0);
  orphans_.stage = Orphans::idle;
  isolate_next_leader_ = false;
  joint_cut_ = JointCut{};
  held_ = Held{};
  stall_ = Stall{};
  promotion_watch_ = PromotionWatch{};
  drop_until_ = dup_until_ = reorder_until_ = delay_until_ = 0;
  for (Node& n : nodes_) {
    n.crash_on_vote = 0;
    n.crash_on_lead = 0;
    n.crash_on_grant = 0;
    n.crash_planned = 0;
    release_hold(n);
    if (n.up) flush_disk(n);
    if (!n.up) start_node(n);
  }
  trace("heal: faults stop, network heals, all servers up");
  mix(0x4ea1);
}

void World::audit() {
  std::vector<const core::RaftLog*> logs;
  for (const Node& n : nodes_) {
    if (n.up) logs.push_back(&n.core->log());
  }
  checker_.check_log_matching(logs);
}

// Liveness holds once every client finished its operations after healing and every server
// applied everything its leader holds.
bool World::finished() const {
  for (const Client& c : clients_) {
    if (c.busy || c.after_heal < post_heal_ops) return false;
  }
  const Node* leader = nullptr;
  for (const Node& n : nodes_) {
    if (n.core->role() == core::Role::leader) leader = &n;
  }
  if (!leader || leader->core->configuration() != full_configuration()) return false;
  const Index commit = leader->core->log().commit_index();
  if (commit != leader->core->log().last_index()) return false;
  for (const Node& n : nodes_) {
    if (n.applied != commit) return false;
  }
  return true;
}

// How long the servers still behind the leader 10 s after healing may take to catch up, at
// the slowest rate the seed's knobs allow. With append_bytes_max below one operation's payload
// every AppendEntries carries one entry, and a window of one message (or of too few bytes for
// a second) lets one entry through per round trip, each behind a follower's disk write: the
// core honours those bounds, so a follower hundreds of entries behind needs seconds, and
// clients' new operations queue behind it when it is needed for a quorum. One that catches up
// at the configured rate passes; one that makes no progress still fails, later by this much.
Time World::catch_up_allowance() const {
  // Measured against the leader, or, between leaders (an election in progress when the lag is
  // measured), against the longest log of a server that is up: the next leader's is at least
  // as long as the longest voter's that elects it.
  const Node* leader = nullptr;
  for (const Node& n : nodes_) {
    if (n.up && n.core->role() == core::Role::leader) leader = &n;
  }
  for (const Node& n : nodes_) {
    if (leader && leader->core->role() == core::Role::leader) break;
    if (n.up && (!leader || n.core->log().last_index() > leader->core->log().last_index())) {
      leader = &n;
    }
  }
  if (!leader) return 0;
  const Index last = leader->core->log().last_index();
  std::uint64_t lag = 0;
  for (const Node& n : nodes_) {
    const Index held = std::min(n.core->log().last_index(), n.applied);
    if (held < last) lag = std::max<std::uint64_t>(lag, last - held);
  }
  constexpr std::uint64_t payload = 9;  // encode_op()
  const core::Config c = config_for(*leader);
  const std::uint64_t per_msg =
      std::clamp<std::uint64_t>(c.append_bytes_max / payload, 1, c.append_entries_max);
  const std::uint64_t msgs = std::clamp<std::uint64_t>(
      (c.inflight_bytes_max + per_msg * payload - 1) / (per_msg * payload), 1, c.inflight_msgs_max);
  // A round trip: two hops of at most 1 ms, two drains of the batching driver, and a follower
  // write that may wait behind one other. The follower writes each message on its own, one
  // after another, so a window of several messages is also bounded by its disk.
  const Time disk = knobs_.disk_us_max;
  const Time rtt = 2 * (1'000 + extras_.batch_us) + 2 * disk;
  return lag * std::max(rtt / msgs, disk) / per_msg;
}

DurableView World::durable_view(const Node& n) {
  return DurableView{n.snap ? n.snap->last_index : Index(), &n.durable,
                     n.snap ? n.snap->last_term : Term()};
}

std::vector<DurableView> World::durable_logs() const {
  std::vector<DurableView> logs;
  for (const Node& n : nodes_) logs.push_back(durable_view(n));
  return logs;
}

void World::check_electable(Node* changed) {
  // The answer depends only on the newest committed entry and, for every server, on whether it
  // is up, how up to date its logs are and its configuration. Between crashes and restarts only
  // the server that took an input can have moved. Only if it became less up to date as a voter
  // (on disk or in memory) or changed its configuration can another server have become
  // electable; if it moved only as a candidate, it alone needs checking.
  NodeId only;
  const std::uint64_t committed = checker_.committed_count();
  if (changed) {
    const DurableView d = durable_view(*changed);
    const core::RaftLog& log = changed->core->log();
    using Position = std::pair<std::uint64_t, std::uint64_t>;  // (last term, last index)
    const Position memory{log.last_term().value(), log.last_index().value()};
    const Position disk{d.last_term().value(), d.last_index().value()};
    Node::ElectableSeen seen{std::min(memory, disk), memory, log.offset().value(),
                             changed->core->configuration_index().value(), changed->incarnation};
    const Node::ElectableSeen old = changed->electable_seen;
    changed->electable_seen = seen;
    const bool all = committed != electable_committed_ || seen.voter < old.voter ||
                     seen.configuration != old.configuration || seen.incarnation != old.incarnation;
    if (!all) {
      if (seen.candidate == old.candidate && seen.offset == old.offset) return;
      only = changed->id;
    }
  }
  electable_committed_ = committed;
  views_.clear();
  for (const Node& n : nodes_) {
    const bool up = n.up && n.core.has_value();
    views_.push_back(ServerView{n.id, up, up ? &n.core->log() : nullptr,
                                up ? &n.core->configuration() : nullptr, durable_view(n)});
  }
  checker_.check_electable(views_, only);
}

void World::final_checks() {
  audit();
  checker_.check_durable(durable_logs(), durable_quorum());
  checker_.check_linearizable(history_);
}

void World::dispatch(const Event& e) {
  switch (e.kind) {
    case Ev::tick: {
      Node& n = node(NodeId(e.a));
      if (!n.up || n.incarnation != e.b) return;
      n.last_tick_at = now_;
      if (promotion_watch_.leader == n.id) promotion_tick(n);
      n.core->tick();
      after_input(n);
      schedule(now_ + n.tick_period, Ev::tick, e.a, e.b);
      return;
    }
    case Ev::deliver: deliver(e.a, e.b != 0); return;
    case Ev::disk_done: {
      Node& n = node(NodeId(e.a));
      // A flush (flush_disk) may have completed this write already.
      if (n.up && n.incarnation == e.b && !n.writes.empty()) disk_done(n);
      return;
    }
    case Ev::restart: {
      Node& n = node(NodeId(e.a));
      if (!n.up && n.incarnation == e.b && !healing_) start_node(n);
      return;
    }
    case Ev::client_next: client_next(e.a); return;
    case Ev::client_request: client_request(e.a, e.b, NodeId(e.c)); return;
    case Ev::propose_batch: {
      Node& n = node(NodeId(e.a));
      if (n.up && n.incarnation == e.b && !n.inbox.empty()) propose_batch(n);
      return;
    }
    case Ev::client_ok: client_done(e.a, e.c, e.d); return;
    case Ev::client_fail: {
      Client& cl = clients_[e.a];
      if (!cl.busy || cl.attempt != e.b) return;
      cl.leader_guess = NodeId(e.c);
      client_attempt(e.a, rng_.range(1'000, 20'000));
      return;
    }
    case Ev::client_timeout: {
      Client& cl = clients_[e.a];
      if (!cl.busy || cl.attempt != e.b) return;
      cl.leader_guess = no_node;
      client_attempt(e.a, 0);
      return;
    }
    case Ev::fault: inject_fault(); return;
    case Ev::armed_crash: {
      Node& n = node(NodeId(e.a));
      std::uint8_t& armed = e.c == 1   ? n.crash_on_lead
                            : e.c == 2 ? n.crash_on_grant
                            : e.c == 3 ? n.crash_planned
                                       : n.crash_on_vote;
      if (!n.up || n.incarnation != e.b || !armed || healing_) return;
      const bool torn = armed == 2;
      const Time down = n.crash_down_us;
      crash(n, torn);
      schedule(now_ + down, Ev::restart, e.a, n.incarnation);
      return;
    }
    case Ev::heal_partition:
      if (e.c == partition_id_ && !healing_) {
        orphans_.stage = Orphans::idle;
        std::fill(blocked_.begin(), blocked_.end(), 0);
        trace("fault: partition healed");
      }
      return;
    case Ev::audit: on_audit(); return;
    case Ev::snapshot_arrive: snapshot_arrive(e.a); return;
    case Ev::hold_cut: hold_cut(); return;
    case Ev::disk_flush: {
      Node& n = node(NodeId(e.a));
      if (n.up && n.incarnation == e.b) flush_disk(n);
      return;
    }
    case Ev::drain: {
      Node& n = node(NodeId(e.a));
      if (!n.up || n.incarnation != e.b || now_ < n.drain_held_until) return;
      n.drain_scheduled = false;
      drain(n);
      return;
    }
  }
}

// The periodic audit also moves the run through its phases: heal once the safety phase is
// over, stop once liveness holds, fail if it does not hold in time.
void World::on_audit() {
  audit();
  // Snapshots are routine work rather than rare events: one server in two audits takes one
  // (after healing, when audits come ten times as often, one in twenty), so that a leader can
  // catch up a follower far behind by snapshot rather than entry by entry.
  if ((opt_.faults & fault_snapshot) && rng_.below(healing_ ? 20 : 2) == 0) (void)take_snapshot();
  if (!healing_ && now_ >= safety_us && (history_.size() >= ops_min || now_ >= safety_cap_us)) {
    heal();
  }
  if (healing_) restore_membership();
  if (healing_ && !finished_ && finished()) {
    finished_ = true;
    stable_until_ = std::max(now_, stability_from_) + stability_us;
  }
  if (finished_) {
    if (!stability_applies_ || now_ >= stable_until_) {
      stop_ = true;
      return;
    }
    schedule(now_ + audit_us / 10, Ev::audit);
    return;
  }
  if (healing_ && now_ > liveness_deadline_ && !liveness_extended_) {
    // The allowance is for the lag as it is now, which may be up to an audit period after the
    // deadline: counted from the deadline, a lag of a few entries would fail at once.
    liveness_extended_ = true;
    liveness_deadline_ = now_ + catch_up_allowance();
  }
  if (healing_ && now_ > liveness_deadline_) {
    std::uint64_t open = 0;
    for (const Client& c : clients_) open += c.busy ? 1 : 0;
    std::string servers;
    for (const Node& n : nodes_) {
      servers +=
          detail::concat(" n", n.id, ":", core::to_string(n.core->role()), "/t", n.core->term(),
                         "/applied=", n.applied, "/last=", n.core->log().last_index());
    }
    checker_failure_ =
        detail::concat("liveness: 10 s after healing (then ",
                       (liveness_deadline_ - healed_at_ - liveness_us) / 1000,
                       " ms more to catch up), ", open, " operations open, servers", servers);
    stop_ = true;
    return;
  }
  schedule(now_ + (healing_ ? audit_us / 10 : audit_us), Ev::audit);
}

SeedResult World::run() {
  nodes_.resize(opt_.nodes);
  for (std::uint32_t i = 0; i < opt_.nodes; ++i) nodes_[i].id = NodeId(i + 1);
  trace("knobs: election=", knobs_.election_ticks, " heartbeat=", knobs_.heartbeat_ticks,
        " inflight_msgs=", knobs_.inflight_msgs_max, " inflight_bytes=", knobs_.inflight_bytes_max,
        " append_bytes=", knobs_.append_bytes_max, " stall=", knobs_.replicate_stall_ticks,
        " trailing=", knobs_.snapshot_trailing_entries, " disk_us=", knobs_.disk_us_max);
  if (extras_.drift != 0) {
    // Clock skew as large as the lease allows: a lease of election_ticks - 1 - drift ticks of
    // the slowest clock lasts no longer than election_ticks - 1 ticks of the fastest.
    const Time e = knobs_.election_ticks - 1;
    const Time slowest = tick_us * e / (e - extras_.drift);
    SimRng skew(seed_ ^ 0xc10c5ull);
    for (Node& n : nodes_) n.tick_period = skew.range(tick_us, slowest);
  }
  for (const Node& n : nodes_) slowest_tick_ = std::max(slowest_tick_, n.tick_period);
  {
    // A heartbeat goes out every heartbeat_ticks of the leader's clock and reaches a follower
    // within one hop and the driver's batching; its answer comes back as fast (a follower with
    // no write in flight answers at once). Both must fit, with the jitter, in the shortest
    // election timeout of the fastest clock, which may fire election_ticks - 1 periods after
    // the last message heard.
    const core::Config c = config_for(nodes_[0]);
    const Time hop = 1'000 + extras_.batch_us + (extras_.batch_us != 0 ? 20'000 : 0);
    stability_applies_ =
        c.pre_vote && c.check_quorum &&
        knobs_.heartbeat_ticks * slowest_tick_ + 2 * hop < (knobs_.election_ticks - 1) * tick_us;
  }
  link_clock_.assign(opt_.nodes * opt_.nodes, 0);
  blocked_.assign(opt_.nodes * opt_.nodes, 0);
  clients_.resize(clients);
  for (Node& n : nodes_) start_node(n);
  for (std::uint32_t c = 0; c < clients; ++c) {
    schedule(rng_.range(0, think_max_us), Ev::client_next, c);
  }
  plan_faults();
  schedule(audit_us, Ev::audit);
  std::uint64_t events = 0;
  while (!stop_ && !queue_.empty() && !checker_.failed()) {
    if (++events > events_max && checker_failure_.empty()) {
      // A livelock (a probe re-sent for ever, say) fails its seed instead of hanging the run.
      checker_failure_ =
          detail::concat("event budget: more than ", events_max, " events by ", now_, " us");
      break;
    }
    const Event e = queue_.top();
    queue_.pop();
    now_ = e.at;
    mix(now_);
    dispatch(e);
  }
  if (!checker_.failed() && checker_failure_.empty()) final_checks();
  SeedResult r;
  r.failure = checker_.failed() ? checker_.failure() : checker_failure_;
  r.ok = r.failure.empty();
  r.ops = ops_done_;
  r.ops_invoked = history_.size();
  r.faults = faults_injected_;
  r.sim_us = now_;
  r.committed = checker_.committed_count();
  r.digest = digest_;
  return r;
}

}  // namespace impl

using impl::World;

bool parse_faults(std::string_view text, std::uint32_t& mask, std::string& error) {
  static constexpr std::pair<std::string_view, FaultBit> names[] = {
      {"drop", fault_drop},
      {"dup", fault_dup},
      {"reorder", fault_reorder},
      {"delay", fault_delay},
      {"partition", fault_partition},
      {"crash", fault_crash},
      {"torn", fault_torn},
      {"transfer", fault_transfer},
      {"reads", fault_reads},
      {"snapshot", fault_snapshot},
      {"reconfig", fault_reconfig},
      {"disk-stall", fault_disk_stall},
      {"disk-error", fault_disk_error},
      {"slow-apply", fault_slow_apply},
      {"notices", fault_notices}};
  if (text == "all") {
    mask = faults_all;
    return true;
  }
  mask = 0;
  if (text == "none") return true;
  while (!text.empty()) {
    const auto comma = text.find(',');
    const std::string_view name = text.substr(0, comma);
    auto it = std::find_if(std::begin(names), std::end(names),
                           [&](const auto& p) { return p.first == name; });
    if (it == std::end(names)) {
      error = "unknown fault '" + std::string(name) +
              "' (known: drop, dup, reorder, delay, partition, crash, torn, transfer, reads, "
              "snapshot, reconfig, disk-stall, disk-error, slow-apply, notices, all, none)";
      return false;
    }
    mask |= it->second;
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
  }
  return true;
}

std::string faults_text(std::uint32_t mask) {
  if (mask == faults_all) return "all";
  if (mask == 0) return "none";
  static constexpr const char* names[] = {"drop",       "dup",        "reorder",  "delay",
                                          "partition",  "crash",      "torn",     "transfer",
                                          "reads",      "snapshot",   "reconfig", "disk-stall",
                                          "disk-error", "slow-apply", "notices"};
  std::string out;
  for (int b = 0; b < static_cast<int>(std::size(names)); ++b) {
    if (mask & (1u << b)) {
      if (!out.empty()) out += ',';
      out += names[b];
    }
  }
  return out;
}

SeedResult run_seed(std::uint64_t seed, const SimOptions& options) {
  World w(seed, options);
  return w.run();
}

}  // namespace coraft::sim
