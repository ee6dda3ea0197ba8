// coraft-bench core: the pure protocol cost. A cluster of cores exchanges messages over an ideal
// in-memory network and writes to an instant disk; the figure is entries committed and applied
// per second on one core.
#include <algorithm>
#include <cstdio>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include <coraft/bytes.hpp>

#include "bench_util.hpp"
#include "commands.hpp"
#include "core/core.hpp"

namespace coraft::bench {
namespace {

using core::Core;
using core::Message;

// Every server reports a snapshot of its applied state once this many entries were applied
// since its last one, which compacts its in-memory log.
constexpr std::uint64_t snapshot_every_entries = 1u << 16;
constexpr std::size_t batch_entries = 1024;

struct Cluster {
  std::vector<Core> cores;
  std::deque<Message> wire;
  std::uint64_t applied_leader = 0;
  std::uint64_t applied_all = 0;
  std::uint64_t messages = 0;

  explicit Cluster(std::size_t n) {
    for (std::size_t i = 1; i <= n; ++i) {
      core::Config c;
      c.id = NodeId(i);
      for (std::size_t j = 1; j <= n; ++j) c.voters.emplace_back(j);
      c.rng_seed = i;
      c.pending_proposals_max = 1u << 16;
      cores.emplace_back(c, core::DurableState{});
    }
  }

  // Carries out one server's outputs with an instant disk: the write is durable at once.
  void drain(std::size_t k) {
    Core& c = cores[k];
    while (c.has_output()) {
      core::Output out = c.take_output();
      for (Message& m : out.messages) wire.push_back(std::move(m));
      if (out.write != 0) c.persisted(out.write);
      for (Message& m : out.messages_after_persist) wire.push_back(std::move(m));
      if (!out.committed.empty()) {
        applied_all += out.committed.size();
        if (k == 0) applied_leader += out.committed.size();
        const Entry& last = out.committed.back();
        c.applied(last.index);
        if (last.index - c.snapshot().last_index >= snapshot_every_entries) {
          (void)c.snapshot_taken(SnapshotMeta{last.index, last.term, c.configuration()});
        }
      }
    }
  }

  void deliver_all() {
    for (std::size_t k = 0; k < cores.size(); ++k) drain(k);
    while (!wire.empty()) {
      Message m = std::move(wire.front());
      wire.pop_front();
      ++messages;
      const std::size_t k = m.to.value() - 1;
      (void)cores[k].step(std::move(m));
      drain(k);
    }
  }

  // Server 1 campaigns and wins.
  bool elect() {
    for (int i = 0; i < 1000 && cores[0].role() != core::Role::leader; ++i) {
      cores[0].tick();
      deliver_all();
    }
    return cores[0].role() == core::Role::leader;
  }
};

int run(const CoreOptions& o) {
  const std::uint64_t payload = o.payload;
  const std::uint64_t nodes = o.nodes;
  const double seconds = o.seconds;
  // Every proposal shares one buffer: the core must never copy payloads.
  const Bytes body = Bytes::copy_of(std::string(payload, 'p'));
  const std::vector<Bytes> batch(batch_entries, body);
  const auto start = Clock::now();
  Cluster c(nodes);
  if (!c.elect()) {
    std::fprintf(stderr, "coraft-bench core: no leader was elected\n");
    return 1;
  }
  double elapsed = 0;
  for (std::uint64_t iteration = 1; elapsed < seconds; ++iteration) {
    (void)c.cores[0].propose(batch);  // overloaded just means: deliver first
    c.deliver_all();
    if ((iteration & 63) == 0) {
      for (Core& k : c.cores) k.tick();
      c.deliver_all();
      elapsed = seconds_since(start);
    }
  }
  c.deliver_all();
  elapsed = seconds_since(start);
  const std::uint64_t committed = c.applied_leader, applied = c.applied_all;
  const std::uint64_t messages = c.messages;
  std::uint64_t log_entries_max = 0;
  for (const Core& k : c.cores) {
    log_entries_max =
        std::max<std::uint64_t>(log_entries_max, k.log().last_index() - k.log().offset());
  }
  const double rate = static_cast<double>(committed) / elapsed;
  std::printf("core: %llu servers, %llu-byte entries, ideal network, instant disk\n",
              static_cast<unsigned long long>(nodes), static_cast<unsigned long long>(payload));
  std::printf("  %.0f entries/s committed and applied by the leader (%.1f MB/s of payload)\n", rate,
              rate * static_cast<double>(payload) / 1e6);
  std::printf(
      "  %llu entries applied on all servers, %llu messages, %.2f s; logs compacted by "
      "snapshots every %llu entries (largest in-memory log at the end: %llu entries)\n",
      static_cast<unsigned long long>(applied), static_cast<unsigned long long>(messages), elapsed,
      static_cast<unsigned long long>(snapshot_every_entries),
      static_cast<unsigned long long>(log_entries_max));
  if (o.json) {
    JsonLine()
        .str("bench", "core")
        .num("nodes", static_cast<double>(nodes))
        .num("payload_bytes", static_cast<double>(payload))
        .num("seconds", elapsed)
        .num("entries_per_s", rate)
        .num("payload_mb_per_s", rate * static_cast<double>(payload) / 1e6)
        .num("messages_per_s", static_cast<double>(messages) / elapsed)
        .print();
  }
  return 0;
}

}  // namespace

int run_core(const CoreOptions& o) {
  return run(o);
}

}  // namespace coraft::bench
