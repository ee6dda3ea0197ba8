// The simulated world: nodes (a core, a disk, a counter state machine), a network and clients,
// all advanced by one event queue in simulated microseconds. Faults and the run's phases are in
// faults.cpp.
#include "world_impl.hpp"

namespace coraft::sim::impl {

// ---- Nodes ----

core::Config World::config_for(const Node& n) const {
  core::Config c;
  c.id = n.id;
  for (std::uint32_t i = 1; i <= opt_.nodes; ++i) c.voters.emplace_back(i);
  c.election_ticks = knobs_.election_ticks;
  c.heartbeat_ticks = knobs_.heartbeat_ticks;
  c.rng_seed = seed_ * 1000003 + n.id.value() * 7919 + n.incarnation;
  c.pre_vote = knobs_.pre_vote && !extras_.no_pre_vote;
  c.check_quorum = knobs_.check_quorum;
  c.inflight_msgs_max = knobs_.inflight_msgs_max;
  c.inflight_bytes_max = knobs_.inflight_bytes_max;
  c.append_bytes_max = knobs_.append_bytes_max;
  c.pending_proposals_max = knobs_.pending_proposals_max;
  c.apply_entries_max = knobs_.apply_entries_max;
  c.replicate_stall_ticks = knobs_.replicate_stall_ticks;
  c.lease_reads = (opt_.faults & fault_reads) && knobs_.lease_reads;
  c.snapshot_trailing_entries = knobs_.snapshot_trailing_entries;
  c.snapshot_timeout_ticks = 5 * knobs_.election_ticks;
  if (extras_.drift != 0) c.lease_clock_drift_ticks = extras_.drift;
  if (extras_.pending_bytes_max != 0) {
    c.entry_bytes_max = 16;
    c.pending_bytes_max = extras_.pending_bytes_max;
  }
  return c;
}

void World::start_node(Node& n) {
  n.up = true;
  n.core.emplace(config_for(n), core::DurableState{n.hard, n.durable, n.snap});
  n.disk_last = durable_view(n).last_index();
  // With lease reads a restarted voter honours a lease it may have supported before the crash.
  n.heard_leader_at = n.core->config().lease_reads && n.core->term().value() > 0 ? now_ : never;
  restore_state_machine(n);
  n.pending.clear();
  n.led_term = Term();
  n.checked_term = Term();
  // Ticks start at a random phase so that servers do not tick in lockstep.
  schedule(now_ + rng_.range(1, n.tick_period), Ev::tick, static_cast<std::uint32_t>(n.id.value()),
           n.incarnation);
  trace("n", n.id, " start term=", n.core->term(), " log=", n.core->log().last_index());
  checker_.check_acknowledged(n.id, n.core->term(), n.core->log());
  mix(0x51a7 ^ n.id.value());
  check_electable();
}

void World::crash(Node& n, bool torn) {
  if (torn && !n.writes.empty()) {
    // The write in flight may leave any prefix of itself behind.
    DiskWrite& w = n.writes.front();
    if (w.hard_state && rng_.below(2)) n.hard = *w.hard_state;
    const std::size_t keep = rng_.below(w.entries.size() + 1);
    if (w.install && !rng_.below(2)) w.install.reset();
    store_write(n, w, keep, keep > 0 || rng_.below(2));
    trace("n", n.id, " torn write kept ", keep, " of ", w.entries.size(), " entries");
  }
  n.writes.clear();
  n.unacked_after.clear();
  n.drain_scheduled = false;
  n.drain_held_until = 0;
  n.disk_stalled = false;
  if (held_.follower == n.id) held_ = Held{};
  if (stall_.follower == n.id) stall_ = Stall{};
  n.transfer_seen = no_node;
  n.rounds_term = Term();
  n.rounds.clear();
  n.round_acked.clear();
  n.read_asked.clear();
  n.crash_on_vote = 0;
  n.crash_on_lead = 0;
  n.crash_on_grant = 0;
  n.crash_planned = 0;
  n.core.reset();
  n.up = false;
  ++n.incarnation;
  n.pending.clear();
  n.inbox.clear();
  n.reads.clear();
  n.reads_waiting_apply.clear();
  n.disk_busy_until = 0;
  trace("n", n.id, torn ? " crash (torn)" : " crash", " durable=", n.durable.size());
  mix(0xc4a5 ^ n.id.value());
  checker_.check_durable(durable_logs(), durable_quorum());
  check_electable();
}

void World::after_input(Node& n) {
  n.core->check_invariants();
  checker_.check_acknowledged(n.id, n.core->term(), n.core->log());
  check_stability(n);
  if (n.core->role() == core::Role::leader && n.led_term != n.core->term()) on_new_leader(n);
  // A leadership counts for Election Safety once its term is durable: a sole voter wins in
  // memory at once, but acts (sends, commits, serves reads) only after that write, and one that
  // crashes before it may lead the same term again.
  if (n.core->role() == core::Role::leader && n.checked_term != n.core->term() &&
      std::max(n.hard.term, durable_view(n).last_term()) >= n.core->term()) {
    n.checked_term = n.core->term();
    checker_.on_leader(n.checked_term, n.id, n.core->log());
  }
  // A leader removed by a membership change steps down in the input that commits the change;
  // until its term changes, its commit index is still the one it reached as leader.
  const bool led = n.core->role() == core::Role::leader ||
                   (n.led_term == n.core->term() && n.led_term.value() != 0);
  if (led) checker_.on_leader_commit(n.core->term(), n.core->log());
  if (orphans_.stage == Orphans::first_back) orphans_on_commit(n);
  if (joint_cut_.leader == n.id && !healing_) cut_after_joint(n);
  check_transfer(n);
  if (held_.stage != Held::idle) hold_after_input(n);
  if (now_ < n.drain_held_until) {
    // Held (hold_follower): a drain is scheduled for the end of the hold.
  } else if (extras_.batch_us == 0) {
    drain(n);
  } else if (!n.drain_scheduled) {
    // The driver takes the output a little later: more inputs may come first.
    n.drain_scheduled = true;
    // Around a change of leader the driver lags more: messages of the old and the new leader
    // then reach a follower's core before one take_output().
    const Time lag = batch_hold_until_ > now_ ? batch_hold_until_ - now_ : 0;
    schedule(now_ + lag + rng_.range(0, extras_.batch_us), Ev::drain,
             static_cast<std::uint32_t>(n.id.value()), n.incarnation);
  }
  if (n.up) check_electable(&n);
}

void World::drain(Node& n) {
  while (n.up && n.core->has_output()) {
    core::Output out = n.core->take_output();
    handle_output(n, out);
  }
}

void World::handle_output(Node& n, core::Output& out) {
  check_output(n, out);
  if (out.soft_state) on_soft_state(n, *out.soft_state);
  const bool durable = out.has_durable_work();
  if (durable) {
    DiskWrite w{out.write, out.hard_state, {}, {}, out.truncate_from, std::move(out.entries), {}};
    if (out.install_snapshot) install_snapshot(n, *out.install_snapshot, w);
    w.after = std::move(out.messages_after_persist);
    n.writes.push_back(std::move(w));
    if (!n.disk_stalled) {  // else queued until flush_disk
      n.disk_busy_until = std::max(n.disk_busy_until, now_) + rng_.range(50, knobs_.disk_us_max);
      schedule(n.disk_busy_until, Ev::disk_done, static_cast<std::uint32_t>(n.id.value()),
               n.incarnation);
    }
    if (out.hard_state && n.crash_on_vote) {
      schedule(now_ + 1, Ev::armed_crash, static_cast<std::uint32_t>(n.id.value()), n.incarnation);
    }
    if (out.hard_state && n.crash_on_grant && out.hard_state->vote != no_node &&
        out.hard_state->vote != n.id) {
      schedule(now_ + 1, Ev::armed_crash, static_cast<std::uint32_t>(n.id.value()), n.incarnation,
               2);
    }
  }
  for (core::Message& m : out.messages) net_send(std::move(m));
  send_snapshots(n, out);
  if (!durable && !out.messages_after_persist.empty()) {
    // Written but not yet acknowledged (coalescing) counts as written.
    if (n.writes.empty()) {
      for (core::Message& m : out.messages_after_persist) net_send(std::move(m));
    } else {
      auto& after = n.writes.back().after;
      for (core::Message& m : out.messages_after_persist) after.push_back(std::move(m));
    }
  }
  if (!out.committed.empty()) {
    for (const Entry& e : out.committed) apply(n, e);
    n.core->applied(out.committed.back().index);
  }
  handle_reads(n, out);
}

// ---- Reads without the log ----

void World::read_request(Node& n, const Waiting& w) {
  auto r = n.core->read_index(w.op);
  if (!r) {
    schedule(now_ + client_hop_us, Ev::client_fail, w.client, w.attempt,
             r.error().leader_hint.value());
    return;
  }
  n.reads[w.op] = Pending{w.client, w.op};
  if (n.core->role() == core::Role::leader) note_read(n, n.id, w.op);
  trace("n", n.id, " read op ", w.op, " asked");
}

void World::handle_reads(Node& n, const core::Output& out) {
  for (const core::ReadState& r : out.reads_ready) {
    check_read_basis(n, n.id, r.id);
    auto it = n.reads.find(r.id);
    if (it == n.reads.end()) continue;  // asked before a crash, or answered twice
    n.reads_waiting_apply.emplace(r.index, it->second);
    n.reads.erase(it);
  }
  for (std::uint64_t id : out.reads_dropped) {
    auto it = n.reads.find(id);
    if (it == n.reads.end()) continue;
    schedule(now_ + client_hop_us, Ev::client_fail, it->second.client,
             clients_[it->second.client].attempt, no_node.value());
    n.reads.erase(it);
  }
  serve_reads(n);
}

// A confirmed read is served from the state machine once it applied the read index (§6.4).
void World::serve_reads(Node& n) {
  while (!n.reads_waiting_apply.empty() && n.reads_waiting_apply.begin()->first <= n.applied) {
    const Pending p = n.reads_waiting_apply.begin()->second;
    n.reads_waiting_apply.erase(n.reads_waiting_apply.begin());
    trace("n", n.id, " read op ", p.op, " served at ", n.applied);
    schedule(now_ + client_hop_us, Ev::client_ok, p.client, 0, p.op, n.counter);
  }
}

// With CheckQuorum, a voter refuses other candidates for election_ticks of its ticks after it
// last heard from a leader (§4.2.3): at least election_ticks - 1 tick periods, as its first tick
// may come at once. Lease reads rest on this; a newer term learnt meanwhile changes nothing.
void World::check_vote_guard(Node& n, NodeId candidate) {
  if (!knobs_.check_quorum || n.heard_leader_at == never) return;
  const Time guard = (knobs_.election_ticks - 1) * n.tick_period;
  if (now_ - n.heard_leader_at < guard && checker_failure_.empty()) {
    checker_failure_ = detail::concat(
        "vote guard: n", n.id, " voted for n", candidate, " ", now_ - n.heard_leader_at,
        " us after it last heard from a leader (guard ", guard, " us)");
    stop_ = true;
  }
}

// With PreVote and CheckQuorum a leader that reaches a majority both ways is never deposed
// (Checker::arm_stability). The simulator knows that it does only in the quiet period after
// liveness held: every server up, every fault over, every message sent before healing
// delivered, two CheckQuorum periods of the slowest clock past since healing, no client
// writing (so no follower's disk holds back its answers), and timing that lets a heartbeat and
// its answer travel well within an election timeout of the fastest clock (stability_applies_,
// set in run()). The check is armed once every server follows one leader in its term, and
// disarmed if that leader starts a transfer or leaves the configuration.
void World::check_stability(Node& n) {
  if (!stability_applies_ || !finished_ || now_ < stability_from_) return;
  checker_.check_stable(n.id, n.core->term(), n.core->role() == core::Role::leader);
  if (checker_.failed()) return;
  const auto legitimate = [](const Node& l) {
    return l.core->transfer_target() == no_node && l.core->configuration().is_voter(l.id);
  };
  if (const NodeId armed = checker_.stable_leader(); armed != no_node) {
    const Node& l = node(armed);
    if (!legitimate(l)) {
      checker_.disarm_stability();
      trace("stability: disarmed");
    }
    return;
  }
  const Node* leader = nullptr;
  for (const Node& x : nodes_) {
    if (!x.up) return;
    if (x.core->role() == core::Role::leader) leader = &x;
  }
  if (!leader || !legitimate(*leader)) return;
  const Term term = leader->core->term();
  for (const Node& x : nodes_) {
    if (x.core->term() != term || x.core->leader() != leader->id) return;
  }
  checker_.arm_stability(leader->id, term, leader->core->configuration().members());
  trace("stability: armed with leader n", leader->id, " of term ", term);
}

// A heartbeat round of a leader: when it went out and when the lease it gives ends, as
// Config documents it: election_ticks - 1 - lease_clock_drift_ticks ticks of the leader
// counted from its tick before the round went out.
void World::note_round(Node& n, Term term, std::uint64_t seq) {
  if (!n.up || term != n.core->term()) return;  // a leadership that ended before the send
  sync_rounds(n);
  if (n.rounds.count(seq)) return;
  const core::Config& c = n.core->config();
  const Time lease = c.election_ticks - 1 - c.lease_clock_drift_ticks;
  n.rounds.emplace(seq, std::make_pair(now_, n.last_tick_at + lease * n.tick_period));
}

// The newest heartbeat round of leader `n` that a quorum of each voter set answered (the
// leader answers its own rounds), and what is known of it: (sent, lease end), or nullptr.
std::pair<std::uint64_t, const std::pair<Time, Time>*> World::confirmed_round(const Node& n) const {
  const Configuration& conf = n.core->configuration();
  const std::uint64_t own = n.rounds.empty() ? 0 : n.rounds.rbegin()->first;
  auto quorum = [&](const std::vector<NodeId>& set) -> std::uint64_t {
    if (set.empty()) return ~std::uint64_t(0);
    std::vector<std::uint64_t> acked;
    for (NodeId v : set) {
      auto it = n.round_acked.find(v);
      acked.push_back(v == n.id ? own : (it == n.round_acked.end() ? 0 : it->second));
    }
    std::sort(acked.begin(), acked.end(), std::greater<>());
    return acked[set.size() / 2];
  };
  const std::uint64_t confirmed = std::min(quorum(conf.voters), quorum(conf.outgoing_voters));
  auto it = n.rounds.find(confirmed);
  return {confirmed, it == n.rounds.end() ? nullptr : &it->second};
}

// A read reached leader `n` (from `origin`, itself or a follower): when, and whether a lease
// covered it then.
// What check_read_basis knows is of one leadership: a new term starts afresh.
void World::sync_rounds(Node& n) {
  if (n.rounds_term == n.core->term()) return;
  n.rounds_term = n.core->term();
  n.rounds.clear();
  n.round_acked.clear();
  n.read_asked.clear();
}

void World::note_read(Node& n, NodeId origin, std::uint64_t read) {
  sync_rounds(n);
  const auto [seq, round] = confirmed_round(n);
  const Configuration& conf = n.core->configuration();
  const bool alone = conf.voters.size() == 1 && conf.outgoing_voters.empty();  // its own quorum
  n.read_asked.emplace(std::make_pair(origin.value(), read),
                       Node::ReadAsked{now_, alone || (round && round->second > now_),
                                       n.core->configuration_index()});
}

// A leader answers a read only on a basis (§6.4): a heartbeat round sent after the read arrived
// and answered by a quorum, or the lease of a round a quorum answered, running when the read
// arrived. A read asked again under the same id is matched to its earliest arrival. Quorums
// are counted in one configuration: a read whose configuration changed before the answer is
// left unchecked.
void World::check_read_basis(Node& n, NodeId origin, std::uint64_t read) {
  const auto key = std::make_pair(origin.value(), read);
  auto asked_it = n.read_asked.lower_bound(key);
  if (asked_it == n.read_asked.end() || asked_it->first != key)
    return;  // a read this server forwarded, or asked earlier
  const auto [asked, leased, configuration] = asked_it->second;
  n.read_asked.erase(asked_it);
  if (n.core->role() != core::Role::leader || n.rounds_term != n.core->term()) return;
  if (configuration != n.core->configuration_index()) return;
  const Configuration& conf = n.core->configuration();
  if (conf.voters.size() == 1 && conf.outgoing_voters.empty()) return;  // no rounds on the wire
  const auto [confirmed, round] = confirmed_round(n);
  const bool ok = leased || (round && (round->first >= asked || round->second > asked));
  if (!ok && checker_failure_.empty()) {
    checker_failure_ = detail::concat(
        "read basis: leader n", n.id, " answered read ", read, " of n", origin, " that arrived at ",
        asked, " us; the newest round a quorum answered is ", confirmed,
        round == nullptr ? std::string(" (unknown)")
                         : detail::concat(", sent at ", round->first, " us, lease until ",
                                          round->second, " us"));
    stop_ = true;
  }
}

// The promises of output.hpp, however many inputs came before take_output(): the entries start
// at or above the truncation, and an acknowledgement of entries covers only what the disk will
// hold once this write is done, with terms no newer than the acknowledgement's.
void World::check_output(Node& n, const core::Output& out) {
  if (!checker_failure_.empty()) return;
  auto fail = [&](std::string what) {
    checker_failure_ = detail::concat("output: n", n.id, " ", what);
    stop_ = true;
  };
  if (out.truncate_from && !out.entries.empty() && out.entries.front().index < *out.truncate_from) {
    fail(detail::concat("entries from ", out.entries.front().index, " below truncate_from ",
                        *out.truncate_from));
    return;
  }
  // A snapshot replaces the entries it covers and keeps the rest (output.hpp step 2).
  if (out.install_snapshot) n.disk_last = std::max(n.disk_last, out.install_snapshot->last_index);
  if (out.truncate_from && *out.truncate_from <= n.disk_last) n.disk_last = *out.truncate_from - 1;
  if (!out.entries.empty()) n.disk_last = out.entries.back().index;
  for (const core::Message& m : out.messages_after_persist) {
    const auto* a = std::get_if<core::AppendResponse>(&m.body);
    if (!a || !a->success) continue;
    const bool beyond = a->match_index > n.disk_last;
    const bool newer = !out.entries.empty() && a->match_index >= out.entries.front().index &&
                       a->match_index <= out.entries.back().index &&
                       out.entries[a->match_index - out.entries.front().index].term > a->term;
    if (beyond || newer) {
      fail(detail::concat("acknowledges entries up to ", a->match_index, " in term ", a->term,
                          " beyond its write (the disk will hold up to ", n.disk_last, ")"));
      return;
    }
  }
}

// output.hpp step 4: acknowledging a write acknowledges it and every earlier one, and no later
// one: right after persisted(), the core still waits for exactly the writes the disk has not
// completed. Once it waits for none and has nothing left to hand out, its whole log is on disk
// and it must count it durable: entries it does not count are never committed here, applied or
// acknowledged to a leader.
void World::check_persisted(Node& n) {
  if (!checker_failure_.empty()) return;
  const core::RaftLog& log = n.core->log();
  std::string what;
  if (log.writes_in_flight() != n.writes.size()) {
    what = detail::concat("waits for ", log.writes_in_flight(), " writes after persisted(), but ",
                          n.writes.size(), " are in flight");
  } else if (n.writes.empty() && !log.has_unsaved() && log.persisted_index() < log.last_index()) {
    what = detail::concat("had every write acknowledged, but counts entries up to ",
                          log.persisted_index(), " of ", log.last_index(), " durable");
  } else {
    return;
  }
  checker_failure_ = detail::concat("persisted: n", n.id, " ", what);
  stop_ = true;
}

// A leader appends no entry while it hands leadership over (core.hpp, transfer_leadership):
// proposals and membership changes are refused, and automatic promotions and the exit from a
// joint configuration wait for the transfer to end. An entry appended after TimeoutNow left
// would make the target less up to date than the leader, and maybe than another voter: its
// election would fail, after its vote request deposed the leader.
void World::check_transfer(Node& n) {
  const NodeId target = n.core->role() == core::Role::leader ? n.core->transfer_target() : no_node;
  const Index last = n.core->log().last_index();
  if (target != no_node && target == n.transfer_seen && n.core->term() == n.transfer_term &&
      last > n.transfer_last && checker_failure_.empty()) {
    checker_failure_ = detail::concat("transfer: leader n", n.id, " of term ", n.core->term(),
                                      " appended entries ", n.transfer_last + 1, " to ", last,
                                      " while handing leadership to n", target);
    stop_ = true;
  }
  n.transfer_seen = target;
  n.transfer_term = n.core->term();
  n.transfer_last = last;
}

void World::on_soft_state(Node& n, const core::SoftState& s) {
  trace("n", n.id, " ", core::to_string(s.role), " term=", s.term, " leader=", s.leader);
  mix(0x50f7 ^ (n.id.value() << 8) ^ static_cast<std::uint64_t>(s.role) ^ (s.term.value() << 16));
}

// Seen right after the input that made `n` leader, whether or not its output is taken yet.
void World::on_new_leader(Node& n) {
  const Term term = n.core->term();
  if (extras_.batch_us != 0 && rng_.below(2) == 0) batch_hold_until_ = now_ + 20'000;
  n.led_term = term;
  if (orphans_.stage != Orphans::idle) orphans_on_lead(n, term);
  if (held_.stage == Held::cut) hold_on_lead(n, term);
  if (stall_.stage != Stall::idle) stall_on_lead(n, term);
  if (isolate_next_leader_ && !healing_) {
    isolate_next_leader_ = false;
    isolate(n.id, rng_.range(300'000, 2'000'000));
    trace("fault: n", n.id, " isolated as it wins term ", term);
  }
  if (n.crash_on_lead) {
    schedule(now_ + rng_.range(1, 3'000), Ev::armed_crash, static_cast<std::uint32_t>(n.id.value()),
             n.incarnation, 1);
  }
}

void World::apply(Node& n, const Entry& e) {
  if (e.index != n.applied + 1) {
    checker_failure_ =
        detail::concat("apply order: n", n.id, " applied ", e.index, " after ", n.applied);
    stop_ = true;
    return;
  }
  n.applied = e.index;
  checker_.on_apply(n.id, e);
  if (e.type == EntryType::config) n.applied_conf = *decode_configuration(e.payload.span());
  std::uint8_t kind = 0;
  std::uint64_t op = 0;
  std::uint64_t value = 0;
  const bool is_op =
      e.type == EntryType::normal && decode_op(e.payload, kind, op) && op < n.op_value.size();
  if (is_op && kind == op_inc) {
    if (n.op_value[op] == 0) n.op_value[op] = ++n.counter;  // increments are idempotent by id
    value = n.op_value[op];
  } else if (is_op) {
    value = n.counter;
  }
  auto it = n.pending.find(e.index);
  if (it == n.pending.end()) return;
  const Pending p = it->second;
  n.pending.erase(it);
  if (is_op && op == p.op) {
    schedule(now_ + client_hop_us, Ev::client_ok, p.client, 0, p.op, value);
  } else {
    // Another entry took this index: the proposal was lost with its leader.
    schedule(now_ + client_hop_us, Ev::client_fail, p.client, clients_[p.client].attempt,
             no_node.value());
  }
}

// `group`: the driver acknowledges the completed writes together, with one persisted() for the
// last of them (flush_disk).
void World::disk_done(Node& n, bool group) {
  DiskWrite w = std::move(n.writes.front());
  n.writes.pop_front();
  if (w.hard_state) n.hard = *w.hard_state;
  store_write(n, w, w.entries.size(), true);
  mix(0xd15c ^ (n.id.value() << 8) ^ (n.durable.size() << 16));
  if (!n.writes.empty() && (group || (extras_.coalesce && rng_.below(2) == 0))) {
    // Acknowledged later, together with the next write; its messages wait for that. What they
    // promise is checked now, against the disk that keeps the promise.
    for (core::Message& m : w.after) {
      checker_.on_send(m, n.hard, durable_view(n));
      n.unacked_after.push_back(std::move(m));
    }
    check_electable(&n);
    return;
  }
  n.core->persisted(w.write);
  check_persisted(n);
  for (core::Message& m : n.unacked_after) net_send(std::move(m), true);
  n.unacked_after.clear();
  for (core::Message& m : w.after) net_send(std::move(m));
  after_input(n);
}

// ---- Network ----

std::uint32_t World::park(core::Message m) {
  if (wire_free_.empty()) {
    wire_.emplace_back(std::move(m));
    return static_cast<std::uint32_t>(wire_.size() - 1);
  }
  const std::uint32_t slot = wire_free_.back();
  wire_free_.pop_back();
  wire_[slot] = std::move(m);
  return slot;
}

void World::net_send(core::Message m, bool checked) {
  const std::size_t from = m.from.value() - 1, to = m.to.value() - 1;
  if (opt_.trace) {
    trace("n", m.from, " -> n", m.to, " ", describe(m.body));
  }
  Node& sender = node(m.from);
  if (!checked) checker_.on_send(m, sender.hard, durable_view(sender));
  if (const auto* h = std::get_if<core::HeartbeatRequest>(&m.body)) {
    note_round(sender, h->term, h->read_context);
  } else if (const auto* rr = std::get_if<core::ReadIndexResponse>(&m.body); rr && rr->success) {
    check_read_basis(sender, m.to, rr->context);
  }
  mix(0x5e4d ^ (m.from.value() << 8) ^ (m.to.value() << 16) ^ (m.body.index() << 24) ^
      (core::term_of(m.body).value() << 32));
  if (now_ < drop_until_ && rng_.chance_ppm(drop_ppm_)) return;
  Time latency = rng_.range(100, 1000);
  if (now_ < delay_until_) {
    latency += rng_.below(delay_max_us_ + 1);
    // Now and then a message outlives a whole leadership: it arrives seconds late, in a later
    // term, after the servers it concerns changed roles.
    if (extras_.slow_links && rng_.below(32) == 0) latency += rng_.range(500'000, 3'000'000);
  }
  Time at = now_ + latency;
  if (blocked_[from * opt_.nodes + to] && extras_.slow_links) {
    // A cut link that delays instead of dropping: delivered seconds late, cut or not.
    schedule(now_ + rng_.range(1'000'000, 4'000'000), Ev::deliver, park(std::move(m)), 1);
    return;
  }
  Time& link = link_clock_[from * opt_.nodes + to];
  if (now_ < reorder_until_) {
    at += rng_.below(20'000);
  } else {
    at = std::max(at, link);
    link = at;
  }
  if (now_ < dup_until_ && rng_.chance_ppm(dup_ppm_)) {
    schedule(at + rng_.below(5'000), Ev::deliver, park(m));
  }
  schedule(at, Ev::deliver, park(std::move(m)));
}

void World::deliver(std::uint32_t slot, bool through_cut) {
  core::Message m = std::move(*wire_[slot]);
  wire_[slot].reset();
  wire_free_.push_back(slot);
  Node& n = node(m.to);
  const std::size_t from = m.from.value() - 1, to = m.to.value() - 1;
  if (!n.up || (blocked_[from * opt_.nodes + to] && !through_cut)) return;
  mix(0xde11 ^ (m.from.value() << 8) ^ (m.to.value() << 16) ^ (m.body.index() << 24));
  if (opt_.trace) trace("n", m.from, " => n", m.to, " ", describe(m.body));
  const NodeId sender = m.from;
  // Heartbeat answers and forwarded reads feed check_read_basis; they carry no entries.
  const bool small = std::holds_alternative<core::HeartbeatResponse>(m.body) ||
                     std::holds_alternative<core::ReadIndexRequest>(m.body);
  const core::MessageBody body_copy = small ? m.body : core::MessageBody{};
  const auto* ask = std::get_if<core::VoteRequest>(&m.body);
  const bool guarded_ask = ask && !ask->pre_vote && !ask->leadership_transfer;
  const bool from_leader = std::holds_alternative<core::AppendRequest>(m.body) ||
                           std::holds_alternative<core::HeartbeatRequest>(m.body) ||
                           std::holds_alternative<core::InstallSnapshot>(m.body);
  const core::HardState before{n.core->term(), n.core->vote()};
  const Term sent_in = core::term_of(m.body);
  auto r = n.core->step(std::move(m));
  if (r && from_leader && sent_in == n.core->term() && n.core->leader() == sender) {
    n.heard_leader_at = now_;
  }
  if (r && n.core->role() == core::Role::leader && sent_in == n.core->term()) {
    if (const auto* h = std::get_if<core::HeartbeatResponse>(&body_copy); h) {
      if (n.rounds_term == sent_in) {
        std::uint64_t& acked = n.round_acked[sender];
        acked = std::max(acked, h->read_context);
      }
    } else if (const auto* q = std::get_if<core::ReadIndexRequest>(&body_copy); q) {
      note_read(n, sender, q->context);
    }
  }
  if (r && guarded_ask && n.core->vote() == sender &&
      before != core::HardState{n.core->term(), n.core->vote()}) {
    check_vote_guard(n, sender);
  }
  if (!r && checker_failure_.empty()) {
    // Every message here comes from a correct core: refusing one means a protocol bug.
    checker_failure_ =
        detail::concat("protocol: n", n.id, " refused a message: ", r.error().message());
    stop_ = true;
  }
  after_input(n);
}

// ---- Clients ----

void World::client_next(std::uint32_t c) {
  Client& cl = clients_[c];
  if (healing_) {
    if (cl.after_heal >= post_heal_ops) return;
    ++cl.after_heal;
  }
  cl.busy = true;
  cl.op = history_.size();
  OpRecord rec;
  rec.is_read = rng_.below(5) == 0;
  rec.invoked_us = now_;
  history_.push_back(rec);
  for (Node& n : nodes_) n.op_value.push_back(0);
  client_attempt(c, 0);
}

void World::client_attempt(std::uint32_t c, Time delay) {
  Client& cl = clients_[c];
  ++cl.attempt;
  NodeId target = cl.leader_guess;
  if (target == no_node) target = NodeId(rng_.range(1, opt_.nodes));
  schedule(now_ + delay + client_hop_us, Ev::client_request, c, cl.attempt, target.value());
  schedule(now_ + delay + attempt_timeout_us, Ev::client_timeout, c, cl.attempt);
}

// Requests reaching a server within a short window are proposed together, as one batch.
void World::client_request(std::uint32_t c, std::uint32_t attempt, NodeId target) {
  Node& n = node(target);
  if (!n.up) return;  // the attempt times out
  if (n.inbox.empty()) {
    schedule(now_ + rng_.range(0, 2'000), Ev::propose_batch,
             static_cast<std::uint32_t>(n.id.value()), n.incarnation);
  }
  const Waiting w{c, attempt, clients_[c].op};
  if ((opt_.faults & fault_reads) && history_[w.op].is_read) {
    read_request(n, w);
    after_input(n);
    return;
  }
  n.inbox.push_back(w);
}

void World::propose_batch(Node& n) {
  std::vector<Bytes> payloads;
  for (const Waiting& w : n.inbox) {
    payloads.push_back(encode_op(history_[w.op].is_read ? op_read : op_inc, w.op));
  }
  auto uncommitted_bytes = [&] {
    const core::RaftLog& log = n.core->log();
    std::uint64_t bytes = 0;
    for (const Entry& e : log.slice(log.commit_index() + 1, log.last_index())) {
      bytes += e.payload.size();
    }
    return bytes;
  };
  const std::uint64_t before = uncommitted_bytes();
  auto r = n.core->propose(payloads);
  // The uncommitted backlog stays within pending_bytes_max, but for one batch taken when
  // nothing was uncommitted.
  const std::uint64_t bound = n.core->config().pending_bytes_max;
  if (r && before > 0 && uncommitted_bytes() > bound && checker_failure_.empty()) {
    checker_failure_ = detail::concat("pending bytes: n", n.id, " accepted proposals up to ",
                                      uncommitted_bytes(), " uncommitted bytes, over ", bound);
    stop_ = true;
  }
  for (std::size_t k = 0; k < n.inbox.size(); ++k) {
    const Waiting& w = n.inbox[k];
    if (!r) {
      schedule(now_ + client_hop_us, Ev::client_fail, w.client, w.attempt,
               r.error().leader_hint.value());
    } else {
      n.pending[*r + k] = Pending{w.client, w.op};
      trace("n", n.id, " accepted op ", w.op, " at ", *r + k);
    }
  }
  n.inbox.clear();
  after_input(n);
}

void World::client_done(std::uint32_t c, std::uint64_t op, std::uint64_t value) {
  Client& cl = clients_[c];
  if (!cl.busy || cl.op != op) return;  // an earlier attempt's late answer
  OpRecord& rec = history_[op];
  rec.done = true;
  rec.completed_us = now_;
  rec.value = value;
  cl.busy = false;
  ++ops_done_;
  trace("client ", c, " op ", op, rec.is_read ? " read " : " inc ", value);
  mix(0xc11e ^ (op << 8) ^ (value << 32));
  schedule(now_ + rng_.range(think_min_us, knobs_.think_max_us), Ev::client_next, c);
}

}  // namespace coraft::sim::impl
