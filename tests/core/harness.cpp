#include "harness.hpp"

#include <algorithm>

#include <coraft/assert.hpp>

namespace coraft::core::test {

Config test_config(std::uint64_t id, std::size_t n) {
  Config c;
  c.id = NodeId(id);
  for (std::size_t i = 1; i <= n; ++i) c.voters.emplace_back(i);
  c.election_ticks = 10;
  c.heartbeat_ticks = 1;
  c.rng_seed = 100 + id;
  return c;
}

Bytes text(std::string_view s) {
  return Bytes::copy_of(s);
}

Cluster::Cluster(std::size_t n, std::function<void(Config&)> tweak) : servers_(n) {
  for (std::size_t i = 0; i < n; ++i) {
    servers_[i].config = test_config(i + 1, n);
    if (tweak) tweak(servers_[i].config);
    servers_[i].core.emplace(servers_[i].config, DurableState{});
  }
}

namespace {
// Deletes the stored entries at index >= from (keep_after = from - 1) or <= upto.
void drop_from(std::vector<Entry>& log, Index from) {
  std::erase_if(log, [&](const Entry& e) { return e.index >= from; });
}
void drop_upto(std::vector<Entry>& log, Index upto) {
  std::erase_if(log, [&](const Entry& e) { return e.index <= upto; });
}
}  // namespace

void Cluster::flush(std::uint64_t id) {
  Server& s = servers_[id - 1];
  while (s.core && s.core->has_output()) {
    Output out = s.core->take_output();
    if (out.hard_state) s.durable.hard_state = *out.hard_state;
    if (out.install_snapshot) {
      s.durable.snapshot = *out.install_snapshot;
      s.snapshot_entries = s.staged;
      drop_upto(s.durable.entries, out.install_snapshot->last_index);
    }
    if (out.truncate_from) drop_from(s.durable.entries, *out.truncate_from);
    for (const Entry& e : out.entries) {
      CORAFT_ASSERT(s.durable.entries.empty() || s.durable.entries.back().index + 1 == e.index);
      s.durable.entries.push_back(e);
    }
    for (Message& m : out.messages) wire_.push_back(std::move(m));
    for (const SnapshotSend& send : out.snapshot_sends) {
      wire_.push_back(
          Message{NodeId(id), send.to, InstallSnapshot{send.term, send.meta, 0, Bytes(), true}});
    }
    if (out.write != 0) s.core->persisted(out.write);
    for (Message& m : out.messages_after_persist) wire_.push_back(std::move(m));
    if (out.install_snapshot) {
      s.applied = s.snapshot_entries;  // the state machine is replaced by the snapshot
      s.core->applied(out.install_snapshot->last_index);
    }
    for (const Entry& e : out.committed) s.applied.push_back(e);
    s.reads_ready.insert(s.reads_ready.end(), out.reads_ready.begin(), out.reads_ready.end());
    s.reads_dropped.insert(s.reads_dropped.end(), out.reads_dropped.begin(),
                           out.reads_dropped.end());
    if (!out.committed.empty()) s.core->applied(out.committed.back().index);
  }
}

void Cluster::flush_all() {
  for (std::size_t i = 1; i <= servers_.size(); ++i) flush(i);
}

bool Cluster::is_cut(const Message& m) const {
  return std::find(cut_.begin(), cut_.end(), std::make_pair(m.from.value(), m.to.value())) !=
         cut_.end();
}

void Cluster::deliver_all() {
  flush_all();
  for (int guard = 0; !wire_.empty(); ++guard) {
    CORAFT_ASSERT(guard < 1'000'000, "messages never stop");
    Message m = std::move(wire_.front());
    wire_.pop_front();
    Server& to = servers_[m.to.value() - 1];
    if (is_cut(m) || !to.core) continue;
    const std::uint64_t id = m.to.value();
    if (std::holds_alternative<InstallSnapshot>(m.body)) {
      to.staged = servers_[m.from.value() - 1].snapshot_entries;  // the chunks, all received
    }
    CORAFT_ASSERT(to.core->step(std::move(m)).ok());
    flush(id);
  }
}

void Cluster::deliver_if(const std::function<bool(const Message&)>& keep) {
  flush_all();
  std::deque<Message> batch;
  batch.swap(wire_);
  for (Message& m : batch) {
    Server& to = servers_[m.to.value() - 1];
    if (!keep(m) || is_cut(m) || !to.core) continue;
    const std::uint64_t id = m.to.value();
    if (std::holds_alternative<InstallSnapshot>(m.body)) {
      to.staged = servers_[m.from.value() - 1].snapshot_entries;
    }
    CORAFT_ASSERT(to.core->step(std::move(m)).ok());
    flush(id);
  }
}

void Cluster::tick(std::uint64_t id, int times) {
  for (int i = 0; i < times; ++i) {
    core(id).tick();
    flush(id);
  }
}

void Cluster::elect(std::uint64_t id) {
  for (int i = 0; i < 100 && core(id).role() == Role::follower; ++i) tick(id);
  deliver_all();
}

void Cluster::isolate(std::uint64_t id) {
  for (std::uint64_t o = 1; o <= servers_.size(); ++o) {
    if (o == id) continue;
    cut(id, o);
    cut(o, id);
  }
}

void Cluster::crash(std::uint64_t id) {
  servers_[id - 1].core.reset();
}

void Cluster::restart(std::uint64_t id) {
  Server& s = servers_[id - 1];
  s.core.emplace(s.config, s.durable);
}

Result<Index> Cluster::propose(std::uint64_t id, std::string_view payload) {
  const Bytes b = text(payload);
  auto r = core(id).propose(std::span<const Bytes>(&b, 1));
  flush(id);
  return r;
}

Result<void> Cluster::take_snapshot(std::uint64_t id) {
  Server& s = servers_[id - 1];
  Core& c = *s.core;
  const Index at = c.applied_index();
  auto term = c.log().term_at(at);
  CORAFT_ASSERT(term.has_value(), at);
  SnapshotMeta meta{at, *term, {}};
  // The configuration in force at `at`: the last one applied, else the stored snapshot's, else
  // the one the cluster started with.
  auto config = Configuration::make(s.config.voters, {}, s.config.learners);
  CORAFT_ASSERT(config.ok());
  meta.configuration = s.durable.snapshot ? s.durable.snapshot->configuration : *config;
  for (const Entry& e : s.applied) {
    if (e.index <= at && e.type == EntryType::config) {
      meta.configuration = *decode_configuration(e.payload.span());
    }
  }
  std::vector<Entry> state;
  for (const Entry& e : s.applied) {
    if (e.index <= at) state.push_back(e);
  }
  auto r = c.snapshot_taken(meta);
  if (!r) return r;
  s.snapshot_entries = std::move(state);
  s.durable.snapshot = meta;
  flush(id);
  return {};
}

std::optional<std::uint64_t> Cluster::leader() const {
  for (std::size_t i = 0; i < servers_.size(); ++i) {
    if (servers_[i].core && servers_[i].core->role() == Role::leader) return i + 1;
  }
  return std::nullopt;
}

void settle(Cluster& c, std::uint64_t leader, int rounds) {
  for (int i = 0; i < rounds; ++i) {
    c.tick(leader);
    c.deliver_all();
  }
}

}  // namespace coraft::core::test
