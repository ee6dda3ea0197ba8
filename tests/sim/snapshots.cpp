// The simulated world's snapshots: servers snapshot their counters and compact their logs, and
// the node layer's snapshot streams to lagging followers, modelled as one transfer each.
#include "world_impl.hpp"

namespace coraft::sim::impl {

namespace {
Index last_stored(const Node& n) {
  if (!n.durable.empty()) return n.durable.back().index;
  return n.snap ? n.snap->last_index : Index();
}
}  // namespace

// Carries out a write on the stored state: the snapshot it installs, the truncation (if
// `keep_truncate`) and the first `keep_entries` entries (a torn write keeps a prefix).
void World::store_write(Node& n, DiskWrite& w, std::size_t keep_entries, bool keep_truncate) {
  // An install older than a snapshot taken since (the write queued behind earlier work) only
  // deletes entries that snapshot covers already.
  if (w.install && (!n.snap || w.install->last_index > n.snap->last_index)) {
    n.snap = *w.install;
    n.snap_state = w.install_state;
  }
  if (w.install) {
    const Index upto = w.install->last_index;
    std::erase_if(n.durable, [&](const Entry& e) { return e.index <= upto; });
  }
  if (w.truncate_from && keep_truncate) {
    const Index from = *w.truncate_from;
    std::erase_if(n.durable, [&](const Entry& e) { return e.index >= from; });
  }
  for (std::size_t k = 0; k < keep_entries && k < w.entries.size(); ++k) {
    const Entry& e = w.entries[k];
    if (e.index != last_stored(n) + 1) {
      // Only a torn write may stop short; a whole write always continues the stored log.
      CORAFT_ASSERT(keep_entries < w.entries.size(), e.index, last_stored(n));
      break;
    }
    n.durable.push_back(e);
  }
}

// A restarted server loads its stored snapshot, then applies the log again from there.
void World::restore_state_machine(Node& n) {
  n.counter = n.snap ? n.snap_state.counter : 0;
  n.op_value.assign(n.op_value.size(), 0);
  if (n.snap) {
    for (std::size_t k = 0; k < n.snap_state.op_value.size() && k < n.op_value.size(); ++k) {
      n.op_value[k] = n.snap_state.op_value[k];
    }
  }
  n.applied = n.snap ? n.snap->last_index : Index();
  n.latest_snap = n.snap;
  n.latest_state = n.snap_state;
  n.applied_conf = n.snap ? n.snap->configuration : full_configuration();
}

// A random server (often the leader) snapshots its applied state, stores it and tells its core.
bool World::take_snapshot() {
  NodeId victim = pick_victim();
  Node& n = node(victim);
  if (!n.up || n.applied <= n.core->snapshot().last_index) return false;
  const auto term = n.core->log().term_at(n.applied);
  CORAFT_ASSERT(term.has_value(), n.applied);
  const SnapshotMeta meta{n.applied, *term, n.applied_conf};
  checker_.on_snapshot(n.id, meta);
  n.snap = meta;
  n.snap_state = SmState{n.counter, n.op_value};
  n.latest_snap = n.snap;
  n.latest_state = n.snap_state;
  std::erase_if(n.durable, [&](const Entry& e) { return e.index <= meta.last_index; });
  auto r = n.core->snapshot_taken(meta);
  if (!r) {
    checker_failure_ = detail::concat("snapshot: n", n.id, " refused its own snapshot at ",
                                      meta.last_index, ": ", r.error().message());
    stop_ = true;
    return false;
  }
  trace("fault: n", n.id, " snapshot at ", meta.last_index, " log from ", n.core->log().offset());
  after_input(n);
  return true;
}

void World::send_snapshots(Node& n, const core::Output& out) {
  for (const core::SnapshotSend& s : out.snapshot_sends) {
    CORAFT_ASSERT(n.latest_snap && n.latest_snap->last_index >= s.meta.last_index, n.id);
    // The stream's chunks carry the leader's term: the send rules of messages apply.
    checker_.on_send(
        core::Message{n.id, s.to, core::InstallSnapshot{s.term, s.meta, 0, Bytes(), true}}, n.hard,
        durable_view(n));
    streams_.push_back(SnapshotStream{s.stream, n.id, n.incarnation, s.to, s.term, *n.latest_snap,
                                      n.latest_state});
    const Time latency = rng_.range(1'000, 20'000);
    trace("n", n.id, " streams snapshot ", n.latest_snap->last_index, " to n", s.to);
    schedule(now_ + latency, Ev::snapshot_arrive, static_cast<std::uint32_t>(streams_.size() - 1));
  }
}

void World::snapshot_arrive(std::uint32_t slot) {
  SnapshotStream s = std::move(streams_[slot]);
  Node& to = node(s.to);
  Node& from = node(s.from);
  const std::size_t a = s.from.value() - 1, b = s.to.value() - 1;
  const bool lost =
      !to.up || blocked_[a * opt_.nodes + b] || (now_ < drop_until_ && rng_.chance_ppm(drop_ppm_));
  if (!lost) {
    to.staged = std::move(s.state);
    const std::uint64_t size = 8 * (to.staged.op_value.size() + 1);
    auto r = to.core->step(
        core::Message{s.from, s.to, core::InstallSnapshot{s.term, s.meta, size, Bytes(), true}});
    if (!r) {
      checker_failure_ =
          detail::concat("protocol: n", to.id, " refused a snapshot: ", r.error().message());
      stop_ = true;
      return;
    }
    after_input(to);
  }
  trace("n", s.from, " snapshot stream to n", s.to, lost ? " failed" : " done");
  // Now and then the node layer never reports: the core gives the stream up on its own.
  if (from.up && from.incarnation == s.from_incarnation && rng_.below(8) != 0) {
    from.core->report_snapshot(s.to, s.stream, !lost);
    after_input(from);
  }
}

// The core accepted a received snapshot: load it into the state machine now, store it with
// this output's write.
void World::install_snapshot(Node& n, const SnapshotMeta& meta, DiskWrite& w) {
  checker_.on_snapshot(n.id, meta);
  w.install = meta;
  w.install_state = n.staged;
  n.latest_snap = meta;
  n.latest_state = n.staged;
  n.counter = n.staged.counter;
  n.op_value.assign(n.op_value.size(), 0);
  for (std::size_t k = 0; k < n.staged.op_value.size() && k < n.op_value.size(); ++k) {
    n.op_value[k] = n.staged.op_value[k];
  }
  n.applied = meta.last_index;
  n.applied_conf = meta.configuration;
  // Proposals accepted here at indexes the snapshot covers are answered by their clients'
  // retries; this server never applies those entries itself.
  for (auto it = n.pending.begin(); it != n.pending.end() && it->first <= meta.last_index;) {
    schedule(now_ + client_hop_us, Ev::client_fail, it->second.client,
             clients_[it->second.client].attempt, no_node.value());
    it = n.pending.erase(it);
  }
  n.core->applied(meta.last_index);
  trace("n", n.id, " installs snapshot ", meta.last_index);
}

}  // namespace coraft::sim::impl
