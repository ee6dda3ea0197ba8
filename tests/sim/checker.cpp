#include "checker.hpp"

#include <algorithm>
#include <iterator>
#include <variant>

#include <coraft/text.hpp>

namespace coraft::sim {

const char* message_name(const core::MessageBody& b) noexcept {
  static constexpr const char* names[] = {
      "VoteRequest", "VoteResponse",      "AppendRequest",    "AppendResponse",
      "Heartbeat",   "HeartbeatResponse", "InstallSnapshot",  "InstallSnapshotResponse",
      "TimeoutNow",  "ReadIndexRequest",  "ReadIndexResponse"};
  static_assert(std::size(names) == std::variant_size_v<core::MessageBody>);
  return names[b.index()];
}

void Checker::fail(std::string what) {
  if (failure_.empty()) failure_ = std::move(what);
}

Index DurableView::last_index() const noexcept {
  return entries->empty() ? snapshot_index : entries->back().index;
}

Term DurableView::last_term() const noexcept {
  return entries->empty() ? snapshot_term : entries->back().term;
}

std::optional<Term> DurableView::term_at(Index i) const noexcept {
  if (i.value() == 0) return Term();
  if (i == snapshot_index) return snapshot_term;
  if (entries->empty() || i < entries->front().index || i > entries->back().index) {
    return std::nullopt;
  }
  return (*entries)[i - entries->front().index].term;
}

void Checker::on_send(const core::Message& m, const core::HardState& hard,
                      const DurableView& durable) {
  using namespace core;
  // A disk that holds a later term will never let this server vote in `term` again, which is
  // all a durable vote protects: a vote or a request for votes of an earlier term may leave
  // late (a driver that takes one output after several inputs, or acknowledges several writes
  // at once).
  if (const auto* v = std::get_if<VoteResponse>(&m.body); v && v->granted && !v->pre_vote) {
    if (hard.term < v->term || (hard.term == v->term && hard.vote != m.to)) {
      fail(detail::concat("vote durability: n", m.from, " granted its vote in term ", v->term,
                          " to n", m.to, " while its disk holds term ", hard.term, " vote n",
                          hard.vote));
    }
  } else if (const auto* r = std::get_if<VoteRequest>(&m.body); r && !r->pre_vote) {
    if (hard.term < r->term || (hard.term == r->term && hard.vote != m.from)) {
      fail(detail::concat("vote durability: n", m.from, " asked for votes in term ", r->term,
                          " while its disk holds term ", hard.term, " vote n", hard.vote));
    }
  } else if (const auto* a = std::get_if<AppendResponse>(&m.body); a && a->success) {
    // Entries a leader of term T sent have terms <= T: the disk must hold the acknowledged
    // index with such a term, not only some entry at that index.
    const auto held = durable.term_at(a->match_index);
    if (a->match_index > durable.last_index() || (held && *held > a->term)) {
      fail(detail::concat("append durability: n", m.from, " acknowledged entries up to ",
                          a->match_index, " in term ", a->term,
                          " while its disk holds entries up to ", durable.last_index(), " (term ",
                          held.value_or(Term()), " there)"));
    }
    note_acknowledged(m.from, a->term, a->match_index, held);
  } else if (const auto* s = std::get_if<InstallSnapshotResponse>(&m.body);
             s && s->success && s->done) {
    // (An answer to one chunk of a stream acknowledges only that the chunk is staged.)
    note_acknowledged(m.from, s->term, s->last_index, durable.term_at(s->last_index));
    if (s->last_index > durable.last_index()) {
      fail(detail::concat("snapshot durability: n", m.from, " acknowledged a snapshot up to ",
                          s->last_index, " while its disk holds entries up to ",
                          durable.last_index()));
    }
  }
  // A restart recovers the newer of the stored hard state's term and the stored log's last
  // term: a message of a later term promises a term this server could forget.
  const auto* pv = std::get_if<VoteRequest>(&m.body);
  const auto* pr = std::get_if<VoteResponse>(&m.body);
  const bool pre_vote = (pv && pv->pre_vote) || (pr && pr->pre_vote && pr->granted);
  const Term stored = std::max(hard.term, durable.last_term());
  if (!failed() && !pre_vote && term_of(m.body) > stored) {
    fail(detail::concat("term durability: n", m.from, " sent ", message_name(m.body), " of term ",
                        term_of(m.body), " to n", m.to, " while its disk holds term ", stored));
  }
}

void Checker::note_acknowledged(NodeId node, Term term, Index index,
                                std::optional<Term> entry_term) {
  const auto k = static_cast<std::size_t>(node.value());
  if (acknowledged_.size() <= k) acknowledged_.resize(k + 1);
  Acknowledged& a = acknowledged_[k];
  // An acknowledgement of an earlier term may leave late, after the promise it made ended.
  if (term < a.term || (term == a.term && index <= a.index)) return;
  a = Acknowledged{term, index, entry_term};
}

void Checker::check_acknowledged(NodeId node, Term term, const core::RaftLog& log) {
  const auto k = static_cast<std::size_t>(node.value());
  if (k >= acknowledged_.size()) return;
  Acknowledged& a = acknowledged_[k];
  if (a.term.value() == 0 || term < a.term) return;
  if (term > a.term) {
    a = Acknowledged{};
    return;
  }
  // Entries a snapshot covers are the snapshot checks' concern.
  if (a.index <= log.offset()) return;
  const bool held =
      a.entry_term ? log.matches(a.index, *a.entry_term) : log.last_index() >= a.index;
  if (!held) {
    const std::optional<Term> now = log.term_at(a.index);
    fail(detail::concat("acknowledged entries: n", node, " acknowledged entries up to ", a.index,
                        " (term ", a.entry_term.value_or(Term()), " there) in term ", a.term,
                        " and still in that term holds entries up to ", log.last_index(), " (term ",
                        now.value_or(Term()), " there)"));
  }
}

void Checker::arm_stability(NodeId leader, Term term, std::vector<NodeId> members) {
  stable_leader_ = leader;
  stable_term_ = term;
  stable_members_ = std::move(members);
}

void Checker::check_stable(NodeId node, Term term, bool leads) {
  if (stable_leader_ == no_node) return;
  if (node == stable_leader_ && (!leads || term != stable_term_)) {
    fail(detail::concat("stability: n", node, " was deposed as leader of term ", stable_term_,
                        " (now ", leads ? "leader" : "not leader", " in term ", term,
                        ") while it reached a majority both ways"));
  } else if (term > stable_term_ && std::find(stable_members_.begin(), stable_members_.end(),
                                              node) != stable_members_.end()) {
    fail(detail::concat("stability: n", node, " moved to term ", term, " while n", stable_leader_,
                        " led term ", stable_term_, " and reached a majority both ways"));
  }
}

namespace {

// Whether `voter` may grant a vote to a candidate whose log ends at (last, term): its log on
// disk (what it restarts with) or in memory is no more up to date (§3.6.1).
bool may_grant(const ServerView& voter, Index last, Term term) {
  const auto behind = [&](Index l, Term t) { return term > t || (term == t && last >= l); };
  if (behind(voter.durable.last_index(), voter.durable.last_term())) return true;
  return voter.up && behind(voter.log->last_index(), voter.log->last_term());
}

}  // namespace

void Checker::check_electable(const std::vector<ServerView>& servers, NodeId only) {
  if (committed_.empty()) return;
  const Index c(committed_.size());
  const Term t = committed_.back().term;
  const auto find = [&](NodeId id) -> const ServerView* {
    const auto k = static_cast<std::size_t>(id.value() - 1);
    if (k < servers.size() && servers[k].id == id) return &servers[k];
    for (const ServerView& v : servers) {
      if (v.id == id) return &v;
    }
    return nullptr;
  };
  for (const ServerView& x : servers) {
    if (!x.up || (only != no_node && x.id != only)) continue;
    const core::RaftLog& log = *x.log;
    if (c <= log.offset() || log.matches(c, t) || !x.configuration->is_voter(x.id)) continue;
    const Index last = log.last_index();
    const Term term = log.last_term();
    const auto majority = [&](const std::vector<NodeId>& voters) {
      std::size_t votes = 0;
      for (NodeId y : voters) {
        const ServerView* v = find(y);
        if (y == x.id || (v && may_grant(*v, last, term))) ++votes;
      }
      return voters.empty() || votes > voters.size() / 2;
    };
    if (majority(x.configuration->voters) && majority(x.configuration->outgoing_voters)) {
      fail(detail::concat("leader completeness: n", x.id, " lacks committed entry ", c, " (term ",
                          t, ") but its log, ending at ", last, " (term ", term,
                          "), could win a majority of votes"));
      return;
    }
  }
}

void Checker::on_leader(Term term, NodeId node, const core::RaftLog& log) {
  const auto t = static_cast<std::size_t>(term.value());
  if (leaders_.size() <= t) leaders_.resize(t + 1);
  if (leaders_[t] != no_node && leaders_[t] != node) {
    fail(detail::concat("election safety: nodes ", leaders_[t], " and ", node, " both led term ",
                        term));
    return;
  }
  leaders_[t] = node;
  for (std::size_t k = 0; k < committed_.size(); ++k) {
    const Index i(k + 1);
    if (i <= log.offset()) continue;  // in the leader's snapshot, checked when it was made
    if (committed_[k].commit_term < term && !log.matches(i, committed_[k].term)) {
      fail(detail::concat("leader completeness: leader ", node, " of term ", term, " lacks entry ",
                          i, " committed in term ", committed_[k].commit_term));
      return;
    }
  }
}

void Checker::on_leader_commit(Term term, const core::RaftLog& log) {
  const Index commit = log.commit_index();
  // Entries already recorded with a commit term at or below `term` need no update; terms of
  // committing leaders rarely decrease along the log, so the walk stops early.
  for (Index i = commit; i > log.offset(); --i) {
    const auto k = static_cast<std::size_t>(i.value() - 1);
    const Entry& e = log.at(i);
    if (k < committed_.size() && committed_[k].commit_term.value() != 0) {
      Committed& c = committed_[k];
      if (c.term != e.term || c.type != e.type || !(c.payload == e.payload)) {
        fail(detail::concat("state machine safety: the leader of term ", term, " committed (", i,
                            ", term ", e.term, ") but (", i, ", term ", c.term,
                            ") was committed before"));
        return;
      }
      if (c.commit_term <= term) break;
      c.commit_term = term;
      continue;
    }
    if (committed_.size() < k + 1) committed_.resize(k + 1);
    committed_[k] = Committed{e.term, e.type, e.payload, term};
  }
}

void Checker::on_snapshot(NodeId node, const SnapshotMeta& meta) {
  const auto k = static_cast<std::size_t>(meta.last_index.value() - 1);
  if (k >= committed_.size() || committed_[k].commit_term.value() == 0 ||
      committed_[k].term != meta.last_term) {
    fail(detail::concat("snapshot safety: node ", node, " holds a snapshot ending at (",
                        meta.last_index, ", term ", meta.last_term,
                        ") that is not a committed entry"));
  }
}

void Checker::on_apply(NodeId node, const Entry& e) {
  const auto k = static_cast<std::size_t>(e.index.value() - 1);
  if (k >= committed_.size() || committed_[k].commit_term.value() == 0) {
    fail(detail::concat("state machine safety: node ", node, " applied ", e.index,
                        " which no leader committed"));
    return;
  }
  const Committed& c = committed_[k];
  if (c.term != e.term || c.type != e.type || !(c.payload == e.payload)) {
    fail(detail::concat("state machine safety: node ", node, " applied (", e.index, ", term ",
                        e.term, ") but (", e.index, ", term ", c.term, ") was committed"));
  }
}

namespace {

// Log Matching for one pair: find the highest index where both hold the same term; below it
// the logs must be identical.
bool logs_match(const core::RaftLog& a, const core::RaftLog& b, Index& bad) {
  // Below either log's first entry, snapshots stand in for the entries.
  const Index floor = std::max(a.offset(), b.offset());
  Index i = std::min(a.last_index(), b.last_index());
  while (i > floor && !(*a.term_at(i) == *b.term_at(i))) --i;
  for (; i > floor; --i) {
    const Entry& x = a.at(i);
    const Entry& y = b.at(i);
    if (x.term != y.term || x.type != y.type || !(x.payload == y.payload)) {
      bad = i;
      return false;
    }
  }
  return true;
}

}  // namespace

void Checker::check_log_matching(const std::vector<const core::RaftLog*>& logs) {
  for (std::size_t x = 0; x < logs.size(); ++x) {
    for (std::size_t y = x + 1; y < logs.size(); ++y) {
      Index bad;
      if (!logs_match(*logs[x], *logs[y], bad)) {
        fail(detail::concat("log matching: logs ", x, " and ", y, " share a later entry but ",
                            "differ at index ", bad));
        return;
      }
    }
  }
}

void Checker::check_durable(const std::vector<DurableView>& durable_logs, std::size_t need) {
  for (std::size_t k = 0; k < committed_.size(); ++k) {
    std::size_t holders = 0;
    for (const DurableView& d : durable_logs) {
      const std::vector<Entry>& log = *d.entries;
      if (k + 1 <= d.snapshot_index.value()) {
        ++holders;
        continue;
      }
      if (log.empty() || log.front().index.value() > k + 1) continue;
      const std::size_t at = k + 1 - log.front().index.value();
      if (at < log.size() && log[at].term == committed_[k].term &&
          log[at].payload == committed_[k].payload) {
        ++holders;
      }
    }
    if (holders < need) {
      fail(detail::concat("durability: committed entry ", k + 1, " is durable on ", holders,
                          " servers, fewer than a majority"));
      return;
    }
  }
}

// Increments return the counter after them, so each completed increment's place in any
// linearization is fixed by its value; reads return the count of increments before them.
// The history is rejected when it breaks real-time order or needs more increments than
// were invoked.
void Checker::check_linearizable(const std::vector<OpRecord>& history) {
  std::vector<const OpRecord*> done;
  std::vector<std::uint64_t> inc_invokes;
  for (const OpRecord& op : history) {
    if (!op.is_read) inc_invokes.push_back(op.invoked_us);
    if (op.done) done.push_back(&op);
  }
  std::sort(inc_invokes.begin(), inc_invokes.end());
  std::vector<std::uint64_t> inc_values;
  for (const OpRecord* op : done) {
    if (!op->is_read) inc_values.push_back(op->value);
    // At most as many increments can have happened as were invoked before this op returned.
    const auto invoked_before = static_cast<std::uint64_t>(
        std::upper_bound(inc_invokes.begin(), inc_invokes.end(), op->completed_us) -
        inc_invokes.begin());
    if (op->value > invoked_before) {
      fail(detail::concat("linearizability: an op returned ", op->value, " but only ",
                          invoked_before, " increments were invoked by then"));
      return;
    }
    if (!op->is_read && op->value == 0) {
      fail("linearizability: an increment returned 0");
      return;
    }
  }
  std::sort(inc_values.begin(), inc_values.end());
  if (std::adjacent_find(inc_values.begin(), inc_values.end()) != inc_values.end()) {
    fail("linearizability: two increments returned the same value");
    return;
  }
  // Real-time order: if A returned before B was invoked, A's value must not exceed B's (and
  // must be below it when B is an increment). Sweep in time order keeping the largest value
  // of the ops already returned.
  struct Point {
    std::uint64_t at;
    bool is_return;
    const OpRecord* op;
  };
  std::vector<Point> points;
  points.reserve(done.size() * 2);
  for (const OpRecord* op : done) {
    points.push_back({op->invoked_us, false, op});
    points.push_back({op->completed_us, true, op});
  }
  // Invocations before returns at the same instant: such ops are concurrent, not ordered.
  std::sort(points.begin(), points.end(), [](const Point& a, const Point& b) {
    return a.at != b.at ? a.at < b.at : (!a.is_return && b.is_return);
  });
  std::uint64_t returned_max = 0;
  std::vector<std::uint64_t> floor_at_invoke(history.size());
  for (const Point& p : points) {
    const auto slot = static_cast<std::size_t>(p.op - history.data());
    if (!p.is_return) {
      floor_at_invoke[slot] = returned_max;
      continue;
    }
    const std::uint64_t floor = floor_at_invoke[slot];
    const bool ok = p.op->is_read ? p.op->value >= floor : p.op->value > floor;
    if (!ok) {
      fail(detail::concat("linearizability: an op invoked at ", p.op->invoked_us, "us returned ",
                          p.op->value, " after an earlier op returned ", floor));
      return;
    }
    returned_max = std::max(returned_max, p.op->value);
  }
}

}  // namespace coraft::sim
