// A small deterministic cluster for protocol tests: cores joined by an in-memory wire that the
// test controls message by message, with durable state kept per server across crashes.
#pragma once

#include <deque>
#include <functional>
#include <optional>
#include <string_view>
#include <vector>

#include "core/core.hpp"

namespace coraft::core::test {

// The configuration tests start from: `n` voters, election after 10..19 ticks, heartbeat 1.
Config test_config(std::uint64_t id, std::size_t n);

Bytes text(std::string_view s);

// The bodies of type T among `msgs`, in order.
template <class T>
std::vector<T> bodies(const std::vector<Message>& msgs) {
  std::vector<T> out;
  for (const Message& m : msgs) {
    if (const T* b = std::get_if<T>(&m.body)) out.push_back(*b);
  }
  return out;
}

struct Server {
  std::optional<Core> core;
  Config config;
  DurableState durable;
  std::vector<Entry> applied;  // everything this server applied, across restarts
  // The state machine as of the stored snapshot (the entries it covers), and a received
  // snapshot staged for installation.
  std::vector<Entry> snapshot_entries;
  std::vector<Entry> staged;
  // Reads the core reported ready or dropped.
  std::vector<ReadState> reads_ready;
  std::vector<std::uint64_t> reads_dropped;
};

class Cluster {
 public:
  explicit Cluster(std::size_t n, std::function<void(Config&)> tweak = {});

  Core& core(std::uint64_t id) { return *servers_[id - 1].core; }
  Server& server(std::uint64_t id) { return servers_[id - 1]; }
  std::size_t size() const { return servers_.size(); }

  // Takes every pending output of `id`, makes it durable at once, and puts its messages on the
  // wire (after-persist ones too, since the write is done).
  void flush(std::uint64_t id);
  void flush_all();
  // Delivers wire messages (and the answers they cause) until none is left. Messages over cut
  // links or to crashed servers are dropped.
  void deliver_all();
  // Delivers only the messages `keep` accepts; drops the rest. One pass, no follow-ups.
  void deliver_if(const std::function<bool(const Message&)>& keep);
  // Ticks `id` until it becomes pre-candidate or candidate, then delivers everything.
  void elect(std::uint64_t id);
  void tick(std::uint64_t id, int times = 1);

  void isolate(std::uint64_t id);
  void cut(std::uint64_t from, std::uint64_t to) { cut_.emplace_back(from, to); }
  void heal() { cut_.clear(); }
  void crash(std::uint64_t id);
  void restart(std::uint64_t id);

  std::deque<Message>& wire() { return wire_; }
  Result<Index> propose(std::uint64_t id, std::string_view payload);
  // `id` snapshots its state machine at its applied index and reports it to its core.
  Result<void> take_snapshot(std::uint64_t id);
  std::optional<std::uint64_t> leader() const;

 private:
  bool is_cut(const Message& m) const;
  std::vector<Server> servers_;
  std::deque<Message> wire_;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> cut_;
};

// Lets `leader` tick `rounds` times, delivering every message after each tick.
void settle(Cluster& c, std::uint64_t leader, int rounds = 3);

}  // namespace coraft::core::test
