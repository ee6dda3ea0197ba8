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

Bytes text(std::string_view s) { return Bytes::copy_of(s); }

Cluster::Cluster(std::size_t n, std::function<void(Config&)> tweak) : servers_(n) {
  for (std::size_t i = 0; i < n; ++i) {
    servers_[i].config = test_config(i + 1, n);
    if (tweak) tweak(servers_[i].config);
    servers_[i].core.emplace(servers_[i].config, DurableState{});
  }
}

void Cluster::flush(std::uint64_t id) {
  Server& s = servers_[id - 1];
  while (s.core && s.core->has_output()) {
    Output out = s.core->take_output();
    if (out.hard_state) s.durable.hard_state = *out.hard_state;
    if (out.truncate_from && out.truncate_from->value() <= s.durable.entries.size()) {
      s.durable.entries.resize(out.truncate_from->value() - 1);
    }
    for (const Entry& e : out.entries) s.durable.entries.push_back(e);
    for (Message& m : out.messages) wire_.push_back(std::move(m));
    if (!out.entries.empty()) s.core->persisted(out.entries.back().term, out.entries.back().index);
    for (Message& m : out.messages_after_persist) wire_.push_back(std::move(m));
    for (const Entry& e : out.committed) s.applied.push_back(e);
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

void Cluster::crash(std::uint64_t id) { servers_[id - 1].core.reset(); }

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

std::optional<std::uint64_t> Cluster::leader() const {
  for (std::size_t i = 0; i < servers_.size(); ++i) {
    if (servers_[i].core && servers_[i].core->role() == Role::leader) return i + 1;
  }
  return std::nullopt;
}

}  // namespace coraft::core::test
