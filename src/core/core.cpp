// Roles, terms and elections. Log replication lives in replication.cpp.
#include "core/core.hpp"

#include <algorithm>

#include <coraft/assert.hpp>

#include "core/quorum.hpp"

namespace coraft::core {

const char* to_string(Role r) noexcept {
  switch (r) {
    case Role::follower: return "follower";
    case Role::pre_candidate: return "pre_candidate";
    case Role::candidate: return "candidate";
    case Role::leader: return "leader";
  }
  return "?";
}

std::uint64_t Rng::next() noexcept {
  std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::uint64_t Rng::below(std::uint64_t bound) noexcept {
  return next() % bound;
}

namespace {
void require_valid(const Config& c) {
  auto v = c.validate();
  CORAFT_REQUIRE(v.ok(), v.error().message());
}

// The in-memory log a server restarts with: the stored entries after the stored snapshot.
RaftLog restored_log(DurableState& d) {
  if (!d.snapshot) return RaftLog(std::move(d.entries));
  const Index base = d.snapshot->last_index;
  const Term base_term = d.snapshot->last_term;
  std::vector<Entry>& e = d.entries;
  CORAFT_REQUIRE(e.empty() || e.front().index <= base + 1, "stored log starts after the snapshot",
                 e.front().index, base);
  std::size_t keep_from = 0;
  if (!e.empty() && e.back().index >= base) {
    const std::size_t at = static_cast<std::size_t>(base - e.front().index);
    if (e.front().index > base) {
      keep_from = 0;
    } else if (e[at].term != base_term) {
      keep_from = e.size();  // a log the snapshot replaced but that was not deleted yet
    } else {
      keep_from = at + 1;
    }
  } else {
    keep_from = e.size();
  }
  std::vector<Entry> rest(
      std::make_move_iterator(e.begin() + static_cast<std::ptrdiff_t>(keep_from)),
      std::make_move_iterator(e.end()));
  return RaftLog(base, base_term, std::move(rest));
}
}  // namespace

Core::Core(Config config, DurableState durable)
    : config_((require_valid(config), std::move(config))),
      rng_(config_.rng_seed),
      snapshot_(durable.snapshot.value_or(SnapshotMeta{})),
      log_(restored_log(durable)),
      term_(durable.hard_state.term),
      vote_(durable.hard_state.vote),
      saved_hard_(durable.hard_state),
      applied_(log_.offset()),
      apply_handed_(log_.offset()) {
  if (durable.snapshot) {
    base_conf_ = durable.snapshot->configuration;
  } else {
    auto initial = Configuration::make(config_.voters, {}, config_.learners);
    CORAFT_ASSERT(initial.ok());
    base_conf_ = std::move(*initial);
  }
  refresh_config();
  // With lease reads, a restarted voter honours the lease of a leader it may have heard from
  // just before the crash.
  since_leader_ = config_.lease_reads && term_.value() > 0 ? 0 : config_.election_ticks;
  // A crash may keep a write's entries but not the hard state written with it; the entries'
  // term is then the newest one this server has seen, and it has cast no vote in it.
  if (log_.last_term() > term_) {
    term_ = log_.last_term();
    vote_ = no_node;
  }
  // A restart recovers at least this term: from the hard state or from the entries' terms.
  durable_term_ = term_;
  reported_soft_ = SoftState{Role::follower, no_node, durable.hard_state.term};
  reset_election_timer();
  check_invariants();
}

Result<Core> Core::make(Config config, DurableState durable) {
  if (auto v = config.validate(); !v) return v.error();
  return Core(std::move(config), std::move(durable));
}

Role Core::role() const noexcept {
  if (std::holds_alternative<Leader>(state_)) return Role::leader;
  if (const auto* c = std::get_if<Candidate>(&state_)) {
    return c->pre_vote ? Role::pre_candidate : Role::candidate;
  }
  return Role::follower;
}

bool Core::is_voter(NodeId id) const noexcept {
  return conf_.is_voter(id);
}

// No message of a term leaves this server before that term is durable here: a server that
// crashed before writing it would restart in an earlier term and could act twice in this one
// (a sole voter winning the same term again with different entries). A message of a newer
// term waits for the write that carries it. Pre-vote requests and granted pre-votes carry the
// term an election would use, not the sender's, and are exempt.
void Core::send(NodeId to, MessageBody body) {
  const auto* v = std::get_if<VoteRequest>(&body);
  const auto* vr = std::get_if<VoteResponse>(&body);
  const bool pre_vote = (v && v->pre_vote) || (vr && vr->pre_vote && vr->granted);
  if (!pre_vote && term_of(body) > durable_term_) {
    send_after_persist(to, std::move(body));
    return;
  }
  messages_.push_back(Message{config_.id, to, std::move(body)});
}

void Core::send_after_persist(NodeId to, MessageBody body) {
  messages_after_persist_.push_back(Message{config_.id, to, std::move(body)});
}

// ---- Inputs ----

void Core::tick() {
  if (since_leader_ < config_.election_ticks) ++since_leader_;
  if (auto* l = std::get_if<Leader>(&state_)) {
    tick_leader(*l);
  } else {
    tick_election();
  }
  step_down_if_removed();
#ifndef NDEBUG
  check_invariants();
#endif
}

void Core::tick_election() {
  ++election_elapsed_;
  if (election_elapsed_ >= randomized_timeout_ && may_campaign()) campaign();
}

// A voter campaigns. So does a voter removed by a configuration not known to be committed
// (thesis §4.2.2): its log may be the only one the others can vote for, as when a leader that
// removed itself is cut off just after appending the final configuration of a joint change;
// elected, it commits its removal and steps down.
bool Core::may_campaign() const {
  if (is_voter(config_.id)) return true;
  return conf_index_ > log_.commit_index() &&
         config_at(Index(conf_index_.value() - 1)).is_voter(config_.id);
}

Result<void> Core::step(Message m) {
  if (auto v = validate(m); !v) return v;
  if (!step_term(m)) return {};
  const NodeId from = m.from;
  if (auto* r = std::get_if<VoteRequest>(&m.body)) {
    handle_vote_request(from, *r);
  } else if (auto* vr = std::get_if<VoteResponse>(&m.body)) {
    handle_vote_response(from, *vr);
  } else if (auto* a = std::get_if<AppendRequest>(&m.body)) {
    if (std::holds_alternative<Leader>(state_)) {
      return Error(Errc::protocol_error, "AppendEntries from a second leader in this term");
    }
    handle_append_request(from, *a);
  } else if (auto* h = std::get_if<HeartbeatRequest>(&m.body)) {
    if (std::holds_alternative<Leader>(state_)) {
      return Error(Errc::protocol_error, "heartbeat from a second leader in this term");
    }
    handle_heartbeat_request(from, *h);
  } else if (auto* ar = std::get_if<AppendResponse>(&m.body)) {
    if (auto* l = std::get_if<Leader>(&state_)) handle_append_response(*l, from, *ar);
  } else if (auto* hr = std::get_if<HeartbeatResponse>(&m.body)) {
    if (auto* l = std::get_if<Leader>(&state_)) handle_heartbeat_response(*l, from, *hr);
  } else if (auto* is = std::get_if<InstallSnapshot>(&m.body)) {
    if (std::holds_alternative<Leader>(state_)) {
      return Error(Errc::protocol_error, "InstallSnapshot from a second leader in this term");
    }
    handle_install_snapshot(from, *is);
  } else if (auto* isr = std::get_if<InstallSnapshotResponse>(&m.body)) {
    if (auto* l = std::get_if<Leader>(&state_)) handle_snapshot_response(*l, from, *isr);
  } else if (std::holds_alternative<TimeoutNow>(m.body)) {
    if (!std::holds_alternative<Leader>(state_)) handle_timeout_now();
  } else if (auto* rr = std::get_if<ReadIndexRequest>(&m.body)) {
    handle_read_index_request(from, *rr);
  } else if (auto* rs = std::get_if<ReadIndexResponse>(&m.body)) {
    handle_read_index_response(*rs);
  }
  step_down_if_removed();
#ifndef NDEBUG
  check_invariants();
#endif
  return {};
}

Result<void> Core::validate(const Message& m) const {
  if (m.to != config_.id) return Error(Errc::protocol_error, "message addressed to another server");
  // Messages from servers outside the configuration are accepted: a new leader may be one this
  // server has not heard of yet. Votes count only from voters, and only members get entries.
  if (m.from == config_.id || m.from == no_node) {
    return Error(Errc::protocol_error, "message from an impossible sender");
  }
  if (const auto* is = std::get_if<InstallSnapshot>(&m.body)) {
    if (!is->done) return Error(Errc::protocol_error, "InstallSnapshot chunk reached the core");
    if (is->meta.last_index.value() == 0 || is->meta.last_term.value() == 0 ||
        is->meta.last_term > is->term) {
      return Error(Errc::protocol_error, "InstallSnapshot with malformed metadata");
    }
  }
  if (const auto* isr = std::get_if<InstallSnapshotResponse>(&m.body); isr && !isr->done) {
    return Error(Errc::protocol_error, "InstallSnapshot chunk response reached the core");
  }
  const auto* a = std::get_if<AppendRequest>(&m.body);
  if (!a) return {};
  Index expect = a->prev_log_index + 1;
  Term floor = a->prev_log_term;
  for (const Entry& e : a->entries) {
    if (e.index != expect || e.term < floor || e.term > a->term || e.term.value() == 0) {
      return Error(Errc::protocol_error, "AppendEntries with malformed entries");
    }
    if (e.type == EntryType::config && !decode_configuration(e.payload.span())) {
      return Error(Errc::protocol_error, "AppendEntries with a malformed configuration");
    }
    floor = e.term;
    ++expect;
  }
  if (a->prev_log_term > a->term) return Error(Errc::protocol_error, "AppendEntries prev term");
  return {};
}

Result<Index> Core::propose(std::span<const Bytes> payloads) {
  auto* l = std::get_if<Leader>(&state_);
  if (!l) return Error::not_leader(leader_);
  if (l->transfer_target != no_node) {
    return Error(Errc::transfer_in_progress, "propose: leadership is being transferred");
  }
  if (payloads.empty()) return Error(Errc::invalid_argument, "propose: no payloads");
  if (payloads.size() > config_.pending_proposals_max) {
    return Error(Errc::too_large, "propose: more payloads than pending_proposals_max");
  }
  for (const Bytes& p : payloads) {
    if (p.size() > config_.entry_bytes_max) {
      return Error(Errc::too_large, "propose: payload exceeds entry_bytes_max");
    }
  }
  const std::uint64_t pending = log_.last_index() - log_.commit_index();
  if (pending + payloads.size() > config_.pending_proposals_max) {
    return Error(Errc::overloaded, "propose: pending_proposals_max reached");
  }
  std::uint64_t bytes = 0;
  for (const Bytes& p : payloads) bytes += p.size();
  if (bytes > config_.pending_bytes_max) {
    return Error(Errc::too_large, "propose: payloads exceed pending_bytes_max");
  }
  if (l->uncommitted_bytes > 0 && l->uncommitted_bytes + bytes > config_.pending_bytes_max) {
    return Error(Errc::overloaded, "propose: pending_bytes_max reached");
  }
  l->uncommitted_bytes += bytes;
  const Index first = log_.last_index() + 1;
  Index next = first;
  for (const Bytes& p : payloads) {
    log_.append(Entry{next, term_, EntryType::normal, p});
    ++next;
  }
  broadcast_append_soon(*l);
#ifndef NDEBUG
  check_invariants();
#endif
  return first;
}

void Core::persisted(std::uint64_t write) {
  const bool grew = log_.persisted(write);
  const bool term_now_durable = durable_term_ < term_ && log_.durable_hard_term() >= term_;
  durable_term_ = std::max(durable_term_, log_.durable_hard_term());
  if (auto* l = std::get_if<Leader>(&state_)) {
    // A snapshot stream held until the term was durable may start now.
    if ((grew && maybe_commit(*l)) || term_now_durable) broadcast_append_soon(*l);
  }
  step_down_if_removed();
#ifndef NDEBUG
  check_invariants();
#endif
}

void Core::applied(Index index) {
  CORAFT_REQUIRE(index >= applied_ && index <= apply_handed_,
                 "applied() beyond what was handed out", index, applied_, apply_handed_);
  applied_ = index;
}

// ---- Output ----

bool Core::has_output() const noexcept {
  if (HardState{term_, vote_} != saved_hard_) return true;
  if (log_.has_unsaved() || !messages_.empty() || !messages_after_persist_.empty()) return true;
  if (install_pending_ || !snapshot_sends_.empty()) return true;
  if (const auto* l = std::get_if<Leader>(&state_); l && l->append_due) return true;
  if (!reads_ready_.empty() || !reads_dropped_.empty()) return true;
  if (SoftState{role(), leader_, term_} != reported_soft_) return true;
  const Index ready = std::min(log_.commit_index(), log_.persisted_index());
  return ready > apply_handed_ && apply_handed_ - applied_ < config_.apply_entries_max;
}

Output Core::take_output() {
  if (auto* l = std::get_if<Leader>(&state_); l && l->append_due) {
    l->append_due = false;
    broadcast_append(*l);
  }
  Output out;
  const HardState hs{term_, vote_};
  if (hs != saved_hard_) {
    out.hard_state = hs;
    saved_hard_ = hs;
  }
  if (out.hard_state || install_pending_ || log_.has_unsaved()) {
    out.write = log_.take_unsaved(out.truncate_from, out.entries, saved_hard_.term);
  }
  out.install_snapshot = std::move(install_pending_);
  install_pending_.reset();
  out.messages.swap(messages_);
  out.snapshot_sends.swap(snapshot_sends_);
  out.reads_ready.swap(reads_ready_);
  out.reads_dropped.swap(reads_dropped_);
  out.messages_after_persist.swap(messages_after_persist_);
  collect_committed(out);
  const SoftState ss{role(), leader_, term_};
  if (ss != reported_soft_) {
    out.soft_state = ss;
    reported_soft_ = ss;
  }
  return out;
}

void Core::collect_committed(Output& out) {
  Index hi = std::min(log_.commit_index(), log_.persisted_index());
  hi = std::min(hi, applied_ + config_.apply_entries_max);
  if (hi <= apply_handed_) return;
  auto ready = log_.slice(apply_handed_ + 1, hi);
  out.committed.assign(ready.begin(), ready.end());
  apply_handed_ = hi;
}

// ---- Terms and roles ----

// Whether this server is the leader, or heard from a leader, of any term, less than
// election_ticks of its ticks ago. A newer term learnt since (a delayed response, a lost
// election) does not end it: the leader it heard may still hold a lease counted on this
// server's refusal to vote. A leader with CheckQuorum steps down by itself once it stops
// hearing from a quorum; until then a candidate cannot disrupt it (§4.2.3).
bool Core::in_leader_lease() const noexcept {
  return config_.check_quorum &&
         (std::holds_alternative<Leader>(state_) || since_leader_ < config_.election_ticks);
}

// Applies the term rules every message obeys (§3.3); returns false when the message is done.
bool Core::step_term(const Message& m) {
  const Term t = term_of(m.body);
  if (t > term_) {
    if (const auto* v = std::get_if<VoteRequest>(&m.body)) {
      // A server that hears from its leader ignores disruptive candidates (§4.2.3).
      if (in_leader_lease() && !v->leadership_transfer) return false;
      if (v->pre_vote) return true;  // a pre-vote never changes the voter's term (§9.6)
      adopt_term(t, no_node);
      return true;
    }
    if (const auto* vr = std::get_if<VoteResponse>(&m.body); vr && vr->pre_vote && vr->granted) {
      return true;  // a granted pre-vote carries the term the pre-candidate would use
    }
    const bool from_leader = std::holds_alternative<AppendRequest>(m.body) ||
                             std::holds_alternative<HeartbeatRequest>(m.body) ||
                             std::holds_alternative<InstallSnapshot>(m.body) ||
                             std::holds_alternative<TimeoutNow>(m.body);
    adopt_term(t, from_leader ? m.from : no_node);
    return true;
  }
  if (t < term_) {
    if (std::holds_alternative<AppendRequest>(m.body) ||
        std::holds_alternative<HeartbeatRequest>(m.body) ||
        std::holds_alternative<InstallSnapshot>(m.body)) {
      // Tell a stale leader about the newer term. Without this, a server that raised its term
      // while cut off could never rejoin: its pre-votes fail while the others hear the leader.
      send(m.from, AppendResponse{term_, false, Index(), log_.last_index(), Term(), Index()});
    } else if (const auto* v = std::get_if<VoteRequest>(&m.body)) {
      // A candidate behind in term learns the newer one (§3.3). Without PreVote, one that was
      // never told could stay behind a voter that keeps raising its term with failed
      // elections of its own, and no leader would ever be elected.
      send(m.from, VoteResponse{term_, false, v->pre_vote});
    }
    return false;
  }
  return true;
}

// A newer term alone restarts no election timeout (§3.4: only a leader heard or a vote granted
// does): a server whose log could win would otherwise never campaign while others without
// PreVote keep raising the term with elections they cannot win.
void Core::adopt_term(Term term, NodeId leader) {
  const std::uint32_t elapsed = election_elapsed_;
  become_follower(term, leader);
  if (leader == no_node) election_elapsed_ = elapsed;
}

void Core::reset_election_timer() {
  election_elapsed_ = 0;
  randomized_timeout_ =
      config_.election_ticks + static_cast<std::uint32_t>(rng_.below(config_.election_ticks));
}

void Core::become_follower(Term term, NodeId leader) {
  CORAFT_ASSERT(term >= term_, term, term_);
  if (auto* l = std::get_if<Leader>(&state_)) drop_reads(*l);
  if (term > term_) {
    term_ = term;
    vote_ = no_node;
  }
  leader_ = leader;
  if (leader != no_node) since_leader_ = 0;
  state_ = Follower{};
  reset_election_timer();
}

void Core::campaign() {
  if (config_.pre_vote) {
    become_pre_candidate();
  } else {
    become_candidate();
  }
}

void Core::become_pre_candidate() {
  state_ = Candidate{true, {}, {}};
  leader_ = no_node;
  reset_election_timer();
  request_votes(true, false);
  record_vote(std::get<Candidate>(state_), config_.id, true);
}

void Core::become_candidate(bool transfer) {
  ++term_;
  vote_ = config_.id;
  leader_ = no_node;
  state_ = Candidate{false, {}, {}};
  reset_election_timer();
  request_votes(false, transfer);
  record_vote(std::get<Candidate>(state_), config_.id, true);
}

void Core::request_votes(bool pre_vote, bool transfer) {
  const Term term = pre_vote ? term_ + 1 : term_;
  for (NodeId peer : conf_.members()) {
    if (peer == config_.id || !conf_.is_voter(peer)) continue;
    VoteRequest r{term, log_.last_index(), log_.last_term(), pre_vote, transfer};
    // A real candidate's own vote must be durable before it asks for others (§3.8).
    if (pre_vote) {
      send(peer, r);
    } else {
      send_after_persist(peer, r);
    }
  }
}

void Core::record_vote(Candidate& c, NodeId from, bool granted) {
  auto seen = [&](const std::vector<NodeId>& v) {
    return std::find(v.begin(), v.end(), from) != v.end();
  };
  if (seen(c.granted) || seen(c.rejected) || !conf_.is_voter(from)) return;
  (granted ? c.granted : c.rejected).push_back(from);
  switch (tally(c)) {
    case VoteOutcome::won:
      if (c.pre_vote) {
        become_candidate();
      } else {
        become_leader();
      }
      break;
    case VoteOutcome::lost: become_follower(term_, no_node); break;
    case VoteOutcome::pending: break;
  }
}

void Core::handle_vote_request(NodeId from, const VoteRequest& r) {
  // Precondition: r.term >= term_ (step_term), and r.term > term_ only for a pre-vote.
  // A term learnt since this server last heard from a leader (a delayed response, a refused
  // pre-vote) lifts no guard: a request of that very term is refused within the lease too.
  if (in_leader_lease() && !r.leadership_transfer && vote_ != from) {
    if (r.pre_vote) {
      send(from, VoteResponse{term_, false, true});
    } else {
      send_after_persist(from, VoteResponse{term_, false, false});
    }
    return;
  }
  const bool can_vote =
      vote_ == from || (vote_ == no_node && leader_ == no_node) || (r.pre_vote && r.term > term_);
  const bool grant = can_vote && log_.candidate_up_to_date(r.last_log_index, r.last_log_term);
  if (r.pre_vote) {
    send(from, VoteResponse{grant ? r.term : term_, grant, true});
    return;
  }
  if (grant) {
    vote_ = from;
    election_elapsed_ = 0;
  }
  // The vote must be durable before the candidate can count it (§3.8).
  send_after_persist(from, VoteResponse{term_, grant, false});
}

void Core::handle_vote_response(NodeId from, const VoteResponse& r) {
  // A vote granted in this term proves the term durable: it answers a request of this term,
  // sent only once the term was (request_votes). A refusal may answer an older request.
  if (!r.pre_vote && r.granted && r.term == term_) durable_term_ = term_;
  auto* c = std::get_if<Candidate>(&state_);
  if (!c || c->pre_vote != r.pre_vote) return;
  // A pre-vote is granted at the term the pre-candidate would campaign in; its rejections carry
  // the voter's term, which step_term has already handled when it was newer.
  if (r.pre_vote && r.granted && r.term != term_ + 1) return;
  if (!r.pre_vote && r.term != term_) return;
  record_vote(*c, from, r.granted);
}

void Core::become_leader() {
  state_ = Leader{};
  sync_peers(std::get<Leader>(state_));
  for (Progress& pr : std::get<Leader>(state_).peers) pr.recent_active = false;
  leader_ = config_.id;
  election_elapsed_ = 0;
  // A new leader commits an entry of its own term at once, which also commits everything before
  // it (§3.6.2, §6.4).
  log_.append(Entry{log_.last_index() + 1, term_, EntryType::noop, Bytes()});
  Leader& l = std::get<Leader>(state_);
  for (const Entry& e : log_.slice(log_.commit_index() + 1, log_.last_index())) {
    l.uncommitted_bytes += e.payload.size();
  }
  // It commits once persisted() and the followers' acknowledgements say a majority holds it.
  broadcast_append(std::get<Leader>(state_));
}

void Core::tick_leader(Leader& l) {
  ++l.ticks;
  ++election_elapsed_;
  if (election_elapsed_ >= config_.election_ticks) {
    election_elapsed_ = 0;
    if (config_.check_quorum) {
      const bool active = quorum_active(l);
      for (Progress& pr : l.peers) pr.recent_active = false;
      if (!active) {
        become_follower(term_, no_node);  // §6.2: it may have been deposed without knowing
        return;
      }
    }
  }
  tick_promotions(l);
  tick_transfer(l);
  for (Progress& pr : l.peers) {
    // A stream neither reported nor answered in time is given up: probe again, which starts
    // a new stream if the follower still needs one.
    if (pr.state == Progress::State::snapshot &&
        ++pr.snapshot_ticks >= config_.snapshot_timeout_ticks) {
      pr.become_probe();
      send_append(l, pr);
      continue;
    }
    if (pr.state != Progress::State::replicate || pr.inflights.count() == 0) continue;
    if (++pr.stall_ticks >= config_.replicate_stall_ticks) {
      pr.become_probe();  // lost AppendEntries: find the follower's log again
      send_append(l, pr);
    }
  }
  if (++l.heartbeat_elapsed >= config_.heartbeat_ticks) {
    l.heartbeat_elapsed = 0;
    broadcast_heartbeat(l);
  }
}

// A leader that is not a voter of a committed configuration steps down (§4.2.2).
void Core::step_down_if_removed() {
  if (!std::holds_alternative<Leader>(state_)) return;
  if (log_.commit_index() >= conf_index_ && !conf_.is_voter(config_.id)) {
    become_follower(term_, no_node);
  }
}

// ---- Observation ----

const Progress* Core::progress(NodeId peer) const noexcept {
  const auto* l = std::get_if<Leader>(&state_);
  if (!l) return nullptr;
  for (const Progress& pr : l->peers) {
    if (pr.id == peer) return &pr;
  }
  return nullptr;
}

void Core::check_invariants() const {
  log_.check_invariants();
  CORAFT_ASSERT(term_ >= log_.last_term(), term_, log_.last_term());
  CORAFT_ASSERT(durable_term_ <= term_, durable_term_, term_);
  CORAFT_ASSERT(applied_ <= apply_handed_, applied_, apply_handed_);
  CORAFT_ASSERT(apply_handed_ <= log_.commit_index() && apply_handed_ <= log_.persisted_index(),
                apply_handed_, log_.commit_index(), log_.persisted_index());
  CORAFT_ASSERT(log_.offset() <= apply_handed_, log_.offset(), apply_handed_);
  CORAFT_ASSERT(snapshot_.last_index >= log_.offset(), snapshot_.last_index, log_.offset());
  CORAFT_ASSERT(conf_index_ <= log_.last_index(), conf_index_, log_.last_index());
  CORAFT_ASSERT(conf_index_ <= log_.offset() || log_.at(conf_index_).type == EntryType::config,
                conf_index_);
  CORAFT_ASSERT(randomized_timeout_ >= config_.election_ticks &&
                    randomized_timeout_ < 2 * config_.election_ticks,
                randomized_timeout_);
  if (const auto* l = std::get_if<Leader>(&state_)) {
    CORAFT_ASSERT(leader_ == config_.id && vote_ == config_.id, leader_, vote_);
    check_leader_invariants(*l);
  } else if (const auto* c = std::get_if<Candidate>(&state_)) {
    CORAFT_ASSERT(leader_ == no_node, leader_);
    CORAFT_ASSERT(c->pre_vote || vote_ == config_.id, vote_);
  }
}

}  // namespace coraft::core
