// coraft-sim --target node: real nodes (the node layer's driver, its writer, applier and ticker
// coroutines, and the public API) over a simulated disk, network and clock, all on one
// io_context and one thread. The run alternates between running every ready handler and taking
// the next simulated event (a timer falling due, a message arriving, a disk write finishing), so
// one seed always gives one run.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <coraft/log.hpp>
#include <coraft/node.hpp>
#include <coraft/text.hpp>

#include "checker.hpp"
#include "node/node_impl.hpp"
#include "node/ports.hpp"
#include "sim_rng.hpp"
#include "world.hpp"

namespace coraft::sim {

namespace {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using namespace std::chrono_literals;

// Simulated time starts an hour after the clock's epoch, so that no deadline a node computes
// from it falls before the epoch.
constexpr TimePoint origin = TimePoint{} + std::chrono::hours(1);

// Simulated microseconds since the start of the run.
std::uint64_t micros(TimePoint t) {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(t - origin).count());
}

// ---- Simulated time ----

// Every future event of the run, in time order (ties in the order they were scheduled).
class Scheduler {
 public:
  [[nodiscard]] TimePoint now() const noexcept { return now_; }
  void at(TimePoint t, std::function<void()> fn) {
    events_.emplace(Key{std::max(t, now_), seq_++}, std::move(fn));
  }
  void after(Clock::duration d, std::function<void()> fn) { at(now_ + d, std::move(fn)); }
  // Moves the clock to the next event and runs it; false (the clock moved to `limit`) when no
  // event falls due by `limit`.
  bool step(TimePoint limit) {
    if (events_.empty() || events_.begin()->first.t > limit) {
      now_ = std::max(now_, limit);
      return false;
    }
    auto it = events_.begin();
    now_ = it->first.t;
    std::function<void()> fn = std::move(it->second);
    events_.erase(it);
    fn();
    return true;
  }
  void clear() { events_.clear(); }

 private:
  struct Key {
    TimePoint t;
    std::uint64_t seq;
    friend bool operator<(const Key& a, const Key& b) {
      return a.t < b.t || (a.t == b.t && a.seq < b.seq);
    }
  };
  TimePoint now_{};
  std::uint64_t seq_ = 0;
  std::map<Key, std::function<void()>> events_;
};

// The nodes' clock: it reads the scheduler's time, and a sleep is an event that wakes the
// sleeping coroutine.
class SimTime final : public node::TimePort {
 public:
  explicit SimTime(Scheduler& s) : s_(s) {}
  [[nodiscard]] TimePoint now() const override { return s_.now(); }
  asio::awaitable<void> sleep_until(TimePoint at) override {
    if (at <= s_.now()) co_return;
    auto ex = co_await asio::this_coro::executor;
    auto timer = std::make_shared<asio::steady_timer>(ex, TimePoint::max());
    s_.at(at, [timer] { timer->cancel(); });
    co_await timer->async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  }

 private:
  Scheduler& s_;
};

// ---- The simulated disk ----

// What a node's disk holds durably: what a restart finds. The snapshot files themselves are
// real files in the node's data directory (the node's own snapshot store); the image records the
// newest one the node reported stored.
struct DiskImage {
  core::HardState hard_state;
  std::vector<Entry> log;  // contiguous
  SnapshotMeta snapshot;   // last_index 0: none
  // The index just before the log's first entry once compaction or a clear removed a prefix:
  // an append to an empty log starts right after it.
  Index base;

  [[nodiscard]] DurableView view() const {
    return DurableView{snapshot.last_index, &log, snapshot.last_term};
  }
};

class World;

// One node's disk. It outlives the node's incarnations: a crash loses every write not yet
// finished (with torn writes, keeping a prefix of the oldest one) and the next incarnation
// opens what is left.
class SimDisk {
 public:
  struct Op {
    enum class Kind : std::uint8_t { hard_state, append, truncate, compact, clear } kind;
    core::HardState hs;
    std::vector<Entry> entries;
    Index index;
    std::shared_ptr<asio::steady_timer> wake;
    std::optional<Result<void>> result;
  };

  SimDisk(World& w, NodeId id) : world_(w), id_(id) {}

  DiskImage durable;
  std::uint64_t generation = 0;
  // Faults: the next write takes seconds; the next write fails, and every later one until the
  // node restarts (a disk that failed once is not trusted again).
  bool stall_next = false;
  bool fail_next = false;
  bool broken = false;
  std::uint64_t errors = 0;  // writes failed by an injected error
  // When the snapshot file work queued so far is done.
  TimePoint files_busy_until{};

  // Queues `op` behind every earlier write and completes it after the disk's latency.
  void submit(const std::shared_ptr<Op>& op);
  // The node died: nothing queued becomes durable (but a prefix of the oldest write with
  // `torn`), and every queued write fails.
  void crash(bool torn, SimRng& rng);

 private:
  void complete(const std::shared_ptr<Op>& op, std::uint64_t gen);
  void apply(const Op& op);
  void apply_append(const std::vector<Entry>& entries);

  World& world_;
  NodeId id_;
  std::deque<std::shared_ptr<Op>> queue_;
  TimePoint busy_until_{};
};

// The DurablePort one incarnation of a node writes through.
class DiskPort final : public node::DurablePort {
 public:
  explicit DiskPort(SimDisk& d) : disk_(d), generation_(d.generation) {}
  asio::awaitable<Result<void>> save_hard_state(core::HardState hs) override {
    auto op = std::make_shared<SimDisk::Op>();
    op->kind = SimDisk::Op::Kind::hard_state;
    op->hs = hs;
    co_return co_await run(op);
  }
  asio::awaitable<Result<void>> append(std::vector<Entry> entries) override {
    auto op = std::make_shared<SimDisk::Op>();
    op->kind = SimDisk::Op::Kind::append;
    op->entries = std::move(entries);
    co_return co_await run(op);
  }
  asio::awaitable<Result<void>> truncate_suffix(Index from) override {
    auto op = std::make_shared<SimDisk::Op>();
    op->kind = SimDisk::Op::Kind::truncate;
    op->index = from;
    co_return co_await run(op);
  }
  asio::awaitable<Result<void>> compact_prefix(Index upto) override {
    auto op = std::make_shared<SimDisk::Op>();
    op->kind = SimDisk::Op::Kind::compact;
    op->index = upto;
    co_return co_await run(op);
  }
  asio::awaitable<Result<void>> clear_log() override {
    auto op = std::make_shared<SimDisk::Op>();
    op->kind = SimDisk::Op::Kind::clear;
    co_return co_await run(op);
  }
  void close() override { closed_ = true; }

 private:
  asio::awaitable<Result<void>> run(std::shared_ptr<SimDisk::Op> op) {
    if (closed_) co_return Errc::shutting_down;
    if (generation_ != disk_.generation) co_return Error(Errc::storage_io, "the disk crashed");
    auto ex = co_await asio::this_coro::executor;
    op->wake = std::make_shared<asio::steady_timer>(ex, TimePoint::max());
    disk_.submit(op);
    while (!op->result) {
      co_await op->wake->async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    }
    co_return std::move(*op->result);
  }

  SimDisk& disk_;
  std::uint64_t generation_;
  bool closed_ = false;
};

// ---- The simulated network ----

class SimTransport final : public net::Transport {
 public:
  SimTransport(World& w, NodeId self, const net::TransportConfig& tc)
      : world_(w), self_(self), queue_max_(tc.send_queue_messages_max) {
    for (const net::PeerAddress& p : tc.peers) peers_.insert(p.id);
  }
  Result<void> send(core::Message m) override;
  // A message left the queue to `to` (delivered or lost).
  void sent_one(NodeId to) {
    auto it = queued_.find(to);
    if (it != queued_.end() && it->second > 0) --it->second;
  }
  asio::awaitable<void> writable(NodeId) override { co_return; }
  void stop() override { stopped_ = true; }
  asio::awaitable<void> shutdown() override {
    stopped_ = true;
    co_return;
  }
  void add_peer(net::PeerAddress peer) override { peers_.insert(peer.id); }
  void remove_peer(NodeId peer) override { peers_.erase(peer); }
  // As with TCP, where a connection from a server that is not a peer is refused.
  [[nodiscard]] bool accepts(NodeId from) const { return !stopped_ && peers_.count(from) != 0; }

 private:
  World& world_;
  NodeId self_;
  std::set<NodeId> peers_;
  bool stopped_ = false;
  // Messages on their way to each peer: as with TCP, whose queue per peer is bounded
  // (send_queue_messages_max), a send past the bound is refused with overloaded.
  std::map<NodeId, std::uint64_t> queued_;
  std::uint64_t queue_max_ = 0;

  friend class World;
};

// ---- The state machine ----

// A counter: every non-empty command adds one, and its reply is the counter after it.
class CounterMachine final : public StateMachine {
 public:
  CounterMachine(World& w, NodeId id) : world_(w), id_(id) {}
  void apply(std::span<const Command> commands, std::vector<Bytes>& replies) override;
  // The counter and the index it was reached at, then a length and that many bytes of a pattern
  // (up to 16 KiB, so that a stream takes several chunks), all checked on restore.
  Result<void> save(SnapshotSink& sink) override;
  Result<void> restore(SnapshotSource& source) override;

  std::uint64_t counter = 0;
  Index applied;

 private:
  World& world_;
  NodeId id_;
};

Bytes encode_u64(std::uint64_t v) {
  std::byte b[8];
  std::memcpy(b, &v, 8);
  return Bytes::copy_of(std::span<const std::byte>(b, 8));
}

std::optional<std::uint64_t> decode_u64(const Bytes& b) {
  if (b.size() != 8) return std::nullopt;
  std::uint64_t v = 0;
  std::memcpy(&v, b.span().data(), 8);
  return v;
}

// ---- The world ----

struct SimNode {
  NodeId id;
  std::unique_ptr<SimDisk> disk;
  std::shared_ptr<CounterMachine> machine;
  std::shared_ptr<Node> node;
  net::ReceiveHandler deliver;
  SimTransport* transport = nullptr;  // the running incarnation's
  bool up = false;                    // running and reachable
  std::uint64_t incarnation = 0;      // increases with every start
  // The incarnation that crashed, until its coroutines have finished.
  std::shared_ptr<Node> stopping;
  std::shared_ptr<bool> stopped;
  std::set<NodeId> cut;  // peers it cannot reach (both ways)
};

// What was applied at one index: by the first node to apply it.
struct AppliedAt {
  Term term;
  std::uint64_t payload = 0;
  std::uint64_t counter = 0;
};

// A fresh directory for one run's data directories: in /dev/shm where it can be written (the
// snapshot stores sync their files), else the temporary directory.
std::string make_run_dir(std::uint64_t seed) {
  static std::uint64_t runs = 0;
  std::filesystem::path base = "/dev/shm";
  if (::access(base.c_str(), W_OK) != 0) base = std::filesystem::temp_directory_path();
  const auto dir = base / detail::concat("coraft-sim-", ::getpid(), "-", seed, "-", ++runs);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::filesystem::create_directories(dir, ec);
  return dir.string();
}

class World {
 public:
  World(std::uint64_t seed, const SimOptions& o);
  ~World() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  World(const World&) = delete;
  World& operator=(const World&) = delete;
  SeedResult run();

  // ---- Seams ----
  void on_send(NodeId from, core::Message m);
  void on_apply(NodeId node, const CounterMachine& m, const Command& c, std::uint64_t counter);
  // A state machine restored from a snapshot: it must hold what was applied at that index.
  void on_restore(NodeId node, Index applied, std::uint64_t counter);
  void on_disk_violation(NodeId node, const std::string& what) {
    fail(concat("disk of node ", node, ": ", what));
  }
  [[nodiscard]] Clock::duration disk_latency(bool stalled) {
    if (stalled) return std::chrono::milliseconds(rng_.range(1000, 3000));
    return std::chrono::microseconds(rng_.range(100, 4000));
  }
  // A write failed by an injected error: the node must stop.
  void on_disk_error(NodeId node);
  // A node starts writing a vote: with crash faults, sometimes the moment it crashes, before
  // the vote is durable (the vote, or the request for votes, must not have left).
  void on_vote_write(NodeId node);
  Scheduler& scheduler() noexcept { return sched_; }
  [[nodiscard]] std::uint64_t log_queue_bytes_max() const {
    return log_queue_bytes_ != 0 ? log_queue_bytes_ : NodeConfig().log_queue_bytes_max;
  }

 private:
  void trace(const std::string& line);
  void fail(std::string what) {
    if (failure_.empty()) failure_ = concat("at ", micros(sched_.now()), " us: ", std::move(what));
  }
  [[nodiscard]] bool failed() const { return !failure_.empty() || checker_.failed(); }
  template <class... Args>
  static std::string concat(const Args&... a) {
    return detail::concat(a...);
  }

  NodeConfig config_of(NodeId id) const;
  void start(SimNode& n);
  void crash(SimNode& n);
  void stop(SimNode& n);
  // A node stopped: by the simulator, or by itself (a fail-stop).
  void on_stopped(NodeId id, std::uint64_t incarnation);
  // Starts node `id` again after `after`, once its last incarnation has stopped.
  void restart_later(NodeId id, Clock::duration after);
  void deliver(NodeId to, std::uint64_t incarnation, core::Message m);
  [[nodiscard]] bool reachable(NodeId a, NodeId b) const;
  // Runs ready handlers, then events, until `until` or a failure.
  void run_until(TimePoint until, const std::function<bool()>& done = {});
  // Every running node's bounded queues hold no more than their limits.
  void check_bounds();
  void poll();

  // Faults and the client.
  void schedule_nemesis();
  void nemesis();
  void heal();
  void schedule_client();
  void client_step();
  // A running node, the leader more often than not; nullptr when none runs.
  SimNode* pick_target();
  void propose(SimNode& n);
  // A proposal's answer: the reply must be what the state machine computed for that entry.
  // Records it in the history; false (with a failure) when it differs.
  bool on_reply(std::size_t rec, std::uint64_t payload, const Proposed& p);
  void read(SimNode& n);
  void transfer(SimNode& n);
  void reconfig(SimNode& n);
  void add_server(SimNode& at, NodeId id, bool learner, std::function<void(bool)> done);
  [[nodiscard]] SimNode* leader();
  // Heals every fault, restores the full membership and has one more proposal applied
  // everywhere; false with a failure when that does not happen in time.
  void check_liveness();
  void note_hint(const Error& e);

  std::uint64_t seed_;
  SimOptions o_;
  SimRng rng_;
  asio::io_context io_;
  Scheduler sched_;
  std::shared_ptr<SimTime> time_;
  std::vector<SimNode> nodes_;  // node i at [i - 1]
  Checker checker_;
  std::string failure_;
  std::uint64_t digest_ = 0xcbf29ce484222325ull;
  bool faults_on_ = true;
  std::uint32_t faults_ = 0;

  // Network fault rates, per million messages, and latencies.
  std::uint64_t drop_ppm_ = 0, dup_ppm_ = 0, delay_ppm_ = 0;
  std::uint64_t reorder_us_ = 0;
  // Half the seeds bound the log writes waiting for the disk to a few entries, so that writes
  // queue in the driver behind those in flight.
  std::uint64_t log_queue_bytes_ = 0;
  // Slow apply: nanoseconds per command on the slowed nodes (by id), while faults last.
  std::vector<std::uint64_t> apply_ns_;
  // Snapshots (with the snapshot fault): taken every `every` entries applied (0: never), and
  // how they are kept and streamed. Streams lose chunks at `chunk_drop_ppm`, and restores of a
  // received snapshot take up to `restore_ms_max` on `slow_restore_ppm` of them.
  struct SnapshotPlan {
    std::uint64_t every = 0;
    std::uint64_t trailing = 0;
    std::uint64_t chunk = 4096;
    std::uint32_t window = 1;
    std::uint32_t kept = 1;
    std::chrono::milliseconds chunk_timeout{500};
    std::uint64_t chunk_drop_ppm = 0;
    std::uint64_t slow_restore_ppm = 0;
    std::uint64_t restore_ms_max = 0;
  } snap_;
  bool lease_reads_ = false;
  // The queue limits every node runs with (NodeConfig's defaults unless tightened).
  struct Limits {
    std::uint64_t proposal_bytes = NodeConfig().pending_proposal_bytes_max;
    std::uint64_t proposals = NodeConfig().pending_proposals_max;
    std::uint64_t reads = NodeConfig().reads_pending_max;
    std::uint64_t apply_lag = NodeConfig().apply_lag_entries_max;
    std::uint64_t send_queue = NodeConfig().send_queue_messages_max;
  } limits_;
  bool tight_ = false;
  std::chrono::microseconds notice_delay_{0};
  // The fewest voters any configuration asked for so far had (commits need their majority).
  std::size_t min_voters_ = ~std::size_t{0};
  // The latest delivery time scheduled on each link (from, to).
  std::map<std::pair<std::uint64_t, std::uint64_t>, TimePoint> link_last_;
  // The run's data directories (snapshot stores), removed when the run ends.
  std::string dir_;

  // Client.
  std::vector<OpRecord> history_;
  std::uint64_t next_payload_ = 1;
  std::map<std::uint64_t, bool> refused_;  // payloads refused with a definite error
  std::map<std::uint64_t, std::size_t> payload_record_;
  std::vector<AppliedAt> applied_;  // index i at [i - 1]; term 0 where unknown
  NodeId leader_hint_;
  std::uint64_t ops_done_ = 0;
  std::uint64_t ops_invoked_ = 0;
  std::uint64_t max_applied_ = 0;
};

// ---- SimDisk ----

void SimDisk::submit(const std::shared_ptr<Op>& op) {
  Scheduler& s = world_.scheduler();
  if (op->kind == Op::Kind::append) {
    // The driver bounds the appends waiting for the disk (NodeConfig::log_queue_bytes_max,
    // counting 64 bytes per entry besides its payload), except for a lone one.
    std::uint64_t bytes = 0;
    std::size_t appends = 0;
    for (const auto& q : queue_) {
      if (q->kind != Op::Kind::append) continue;
      ++appends;
      for (const Entry& e : q->entries) bytes += e.payload.size() + 64;
    }
    for (const Entry& e : op->entries) bytes += e.payload.size() + 64;
    if (appends > 0 && bytes > world_.log_queue_bytes_max()) {
      world_.on_disk_violation(id_, detail::concat(appends + 1, " appends of ", bytes,
                                                   " bytes wait for the disk, over the limit of ",
                                                   world_.log_queue_bytes_max()));
    }
  }
  if (op->kind == Op::Kind::hard_state && op->hs.vote != no_node) world_.on_vote_write(id_);
  busy_until_ = std::max(busy_until_, s.now()) + world_.disk_latency(stall_next);
  stall_next = false;
  queue_.push_back(op);
  s.at(busy_until_, [this, op, gen = generation] { complete(op, gen); });
}

void SimDisk::complete(const std::shared_ptr<Op>& op, std::uint64_t gen) {
  if (gen != generation) return;  // lost in a crash
  if (queue_.empty() || queue_.front() != op) {
    world_.on_disk_violation(id_, "a write finished before an earlier one");
    return;
  }
  queue_.pop_front();
  if (fail_next || broken) {
    if (!broken) ++errors;
    fail_next = false;
    broken = true;
    op->result = Error(Errc::storage_io, "injected disk error");
    op->wake->cancel();
    world_.on_disk_error(id_);
    return;
  }
  apply(*op);
  op->result = Result<void>();
  op->wake->cancel();
}

void SimDisk::apply_append(const std::vector<Entry>& entries) {
  if (entries.empty()) return;
  const Index next = durable.log.empty() ? Index(durable.base.value() + 1)
                                         : Index(durable.log.back().index.value() + 1);
  // An empty log may also start again right after the stored snapshot (a restarted node whose
  // log the snapshot covers whole continues from it).
  const bool after_snapshot = durable.log.empty() && entries.front().index.value() ==
                                                         durable.snapshot.last_index.value() + 1;
  if (entries.front().index != next && !after_snapshot) {
    world_.on_disk_violation(id_, detail::concat("an append at ", entries.front().index,
                                                 " while the log ends before ", next));
    return;
  }
  for (const Entry& e : entries) durable.log.push_back(e);
}

void SimDisk::apply(const Op& op) {
  using K = Op::Kind;
  switch (op.kind) {
    case K::hard_state: durable.hard_state = op.hs; break;
    case K::append: apply_append(op.entries); break;
    case K::truncate:
      while (!durable.log.empty() && durable.log.back().index >= op.index) durable.log.pop_back();
      break;
    case K::compact:
      // Only what a stored snapshot covers may go.
      if (op.index > durable.snapshot.last_index) {
        world_.on_disk_violation(id_, detail::concat("the log compacted up to ", op.index,
                                                     " while the stored snapshot ends at ",
                                                     durable.snapshot.last_index));
        break;
      }
      durable.log.erase(durable.log.begin(),
                        std::find_if(durable.log.begin(), durable.log.end(),
                                     [&](const Entry& e) { return e.index > op.index; }));
      durable.base = std::max(durable.base, op.index);
      if (!durable.log.empty()) durable.base = Index(durable.log.front().index.value() - 1);
      break;
    case K::clear:
      // The log restarts after the stored snapshot.
      durable.log.clear();
      durable.base = durable.snapshot.last_index;
      break;
  }
}

void SimDisk::crash(bool torn, SimRng& rng) {
  // After a failed write nothing later reaches the disk.
  if (torn && !broken && !queue_.empty() && queue_.front()->kind == Op::Kind::append) {
    const std::vector<Entry>& e = queue_.front()->entries;
    const std::size_t keep = rng.below(e.size() + 1);
    apply_append(std::vector<Entry>(e.begin(), e.begin() + static_cast<std::ptrdiff_t>(keep)));
  }
  ++generation;
  stall_next = false;
  fail_next = false;
  broken = false;
  for (auto& op : queue_) {
    op->result = Error(Errc::storage_io, "the disk crashed");
    op->wake->cancel();
  }
  queue_.clear();
  busy_until_ = world_.scheduler().now();
}

// ---- SimTransport ----

Result<void> SimTransport::send(core::Message m) {
  if (stopped_) return Errc::shutting_down;
  if (!peers_.count(m.to)) return Error(Errc::invalid_argument, "not a peer");
  std::uint64_t& queued = queued_[m.to];
  if (queued >= queue_max_) return Error(Errc::overloaded, "the send queue is full");
  ++queued;
  m.from = self_;
  world_.on_send(self_, std::move(m));
  return {};
}

// ---- CounterMachine ----

void CounterMachine::apply(std::span<const Command> commands, std::vector<Bytes>& replies) {
  for (const Command& c : commands) {
    if (c.payload.size() != 0) ++counter;
    world_.on_apply(id_, *this, c, counter);
    applied = c.index;
    replies.push_back(encode_u64(counter));
  }
}

namespace {

std::byte pad_byte(std::uint64_t counter, std::uint64_t i) {
  return static_cast<std::byte>(((counter + 1) * 0x9e3779b97f4a7c15ull + i * 131) >> 56);
}

}  // namespace

Result<void> CounterMachine::save(SnapshotSink& sink) {
  const std::uint64_t pad = (counter * 37) % 16384;
  const std::uint64_t head[3] = {counter, applied.value(), pad};
  if (auto r = sink.write(std::as_bytes(std::span(head))); !r) return r;
  std::vector<std::byte> bytes(pad);
  for (std::uint64_t i = 0; i < pad; ++i) bytes[i] = pad_byte(counter, i);
  return sink.write(bytes);
}

Result<void> CounterMachine::restore(SnapshotSource& source) {
  std::vector<std::byte> all(static_cast<std::size_t>(source.size()));
  std::size_t got = 0;
  while (got < all.size()) {
    auto n = source.read(std::span(all).subspan(got));
    if (!n) return n.error();
    if (*n == 0) break;
    got += *n;
  }
  std::uint64_t head[3] = {};
  if (got != all.size() || got < sizeof head) {
    return Error(Errc::storage_corrupt, "counter snapshot: short");
  }
  std::memcpy(head, all.data(), sizeof head);
  if (got != sizeof head + head[2]) return Error(Errc::storage_corrupt, "counter snapshot: size");
  for (std::uint64_t i = 0; i < head[2]; ++i) {
    if (all[sizeof head + i] != pad_byte(head[0], i)) {
      return Error(Errc::storage_corrupt, "counter snapshot: pattern");
    }
  }
  counter = head[0];
  applied = Index(head[1]);
  world_.on_restore(id_, applied, counter);
  return {};
}

// ---- World ----

World::World(std::uint64_t seed, const SimOptions& o)
    : seed_(seed), o_(o), rng_(seed ^ 0x6e6f6465ull), time_(std::make_shared<SimTime>(sched_)) {
  nodes_.resize(o.nodes);
  Configuration initial;
  for (std::uint32_t i = 1; i <= o.nodes; ++i) {
    initial.voters.push_back(NodeId(i));
    initial.addresses.push_back(MemberAddress{NodeId(i), concat("127.0.0.1:", 10000 + i)});
  }
  for (std::uint32_t i = 1; i <= o.nodes; ++i) {
    SimNode& n = nodes_[i - 1];
    n.id = NodeId(i);
    n.disk = std::make_unique<SimDisk>(*this, n.id);
    n.disk->durable.hard_state = core::HardState{Term(1), no_node};
    n.disk->durable.log.push_back(
        Entry{Index(1), Term(1), EntryType::config, encode_configuration(initial)});
  }
  const std::uint32_t f = o.faults;
  if (f & fault_drop) drop_ppm_ = rng_.range(10'000, 100'000);
  if (f & fault_dup) dup_ppm_ = rng_.range(10'000, 100'000);
  if (f & fault_delay) delay_ppm_ = rng_.range(5'000, 50'000);
  if (f & fault_reorder) reorder_us_ = rng_.range(1'000, 20'000);
  if (rng_.below(2) == 0) log_queue_bytes_ = rng_.range(1200, 4000);
  // Drawn from a stream of their own, so that the draws above stay as they were.
  SimRng plan(seed ^ 0x736e6170ull);
  if (f & fault_snapshot) {
    snap_.every = plan.range(10, 150);
    snap_.trailing = plan.below(3) == 0 ? 0 : plan.range(1, 60);
    snap_.chunk = 4096 * plan.range(1, 2);
    snap_.window = static_cast<std::uint32_t>(plan.range(1, 4));
    snap_.kept = static_cast<std::uint32_t>(plan.range(1, 3));
    snap_.chunk_timeout = std::chrono::milliseconds(plan.range(200, 1000));
    snap_.chunk_drop_ppm = plan.below(2) == 0 ? 0 : plan.range(20'000, 200'000);
    snap_.slow_restore_ppm = plan.below(2) == 0 ? 0 : plan.range(100'000, 500'000);
    snap_.restore_ms_max = plan.range(50, 2000);
  }
  if (f & fault_reads) lease_reads_ = plan.below(2) == 0;
  // Half the seeds bound the node's queues tightly, so that proposals, reads, applies and
  // sends meet their limits (each refused with overloaded). check_bounds() checks what the
  // node holds against its limits; the core's count of uncommitted proposals and the send
  // queues are bounded where they are kept (the core refuses, the transport refuses).
  tight_ = plan.below(2) == 0;
  if (tight_) {
    limits_.proposal_bytes = plan.range(1024, 4096);
    limits_.proposals = plan.range(16, 256);
    limits_.reads = plan.range(2, 32);
    limits_.apply_lag = plan.range(16, 256);
    limits_.send_queue = plan.range(4, 64);
  }
  // Commit notices: sent at once, held for less than a heartbeat period, or for longer (then
  // heartbeats replace most of them). Drawn last, so that a mask without notices plans a seed
  // as it was planned before they were held.
  if (f & fault_notices) {
    static constexpr std::chrono::microseconds notice_delays[] = {0us, 500us, 2ms, 8ms, 50ms};
    notice_delay_ = notice_delays[plan.below(std::size(notice_delays))];
  }
  dir_ = make_run_dir(seed);
  apply_ns_.assign(o.nodes, 0);
  if (f & fault_slow_apply) {
    // One node, or all of them, take up to a millisecond per command.
    const bool all = rng_.below(3) == 0;
    const std::size_t one = rng_.below(o.nodes);
    for (std::size_t i = 0; i < o.nodes; ++i) {
      if (all || i == one) apply_ns_[i] = rng_.range(20'000, 1'000'000);
    }
  }
}

void World::trace(const std::string& line) {
  for (char ch : line) {
    digest_ ^= static_cast<unsigned char>(ch);
    digest_ *= 0x100000001b3ull;
  }
  digest_ ^= '\n';
  digest_ *= 0x100000001b3ull;
  if (o_.trace)
    std::fprintf(o_.trace, "%10llu %s\n", static_cast<unsigned long long>(micros(sched_.now())),
                 line.c_str());
}

NodeConfig World::config_of(NodeId id) const {
  NodeConfig c;
  c.id = id;
  c.cluster_id = 1;
  c.listen_port = static_cast<std::uint16_t>(10000 + id.value());
  for (std::uint32_t i = 1; i <= o_.nodes; ++i) {
    if (i != id.value()) {
      c.peers.push_back(
          ServerAddress{NodeId(i), "127.0.0.1", static_cast<std::uint16_t>(10000 + i)});
    }
  }
  c.tick_interval = 10ms;
  c.election_ticks = 10;
  c.heartbeat_ticks = 2;
  c.disk_stall_timeout = 500ms;
  c.read_timeout = 1s;
  c.transfer_timeout = 1s;
  c.apply_inline = true;
  if (log_queue_bytes_ != 0) {
    c.entry_bytes_max = 1024;
    c.log_queue_bytes_max = log_queue_bytes_;
  }
  c.data_dir = concat(dir_, "/n", id);
  c.snapshot_threshold_entries = snap_.every;
  c.snapshot_threshold_bytes = 0;
  if (snap_.every != 0) {
    c.snapshot_trailing_entries = snap_.trailing;
    c.snapshot_chunk_bytes = snap_.chunk;
    c.snapshot_window_chunks = snap_.window;
    c.snapshots_kept = snap_.kept;
    c.snapshot_chunk_timeout = snap_.chunk_timeout;
    c.snapshot_retry_delay_min = 20ms;
    c.snapshot_retry_delay_max = 500ms;
  }
  c.lease_reads = lease_reads_;
  c.commit_notice_delay = notice_delay_;
  c.pending_proposal_bytes_max = limits_.proposal_bytes;
  c.pending_proposals_max = limits_.proposals;
  c.reads_pending_max = limits_.reads;
  c.apply_lag_entries_max = limits_.apply_lag;
  c.send_queue_messages_max = limits_.send_queue;
  if (limits_.proposal_bytes < c.entry_bytes_max) c.entry_bytes_max = 1024;
  c.seed = seed_ * 1000 + id.value() * 7 + nodes_[id.value() - 1].incarnation;
  return c;
}

void World::start(SimNode& n) {
  ++n.incarnation;
  n.machine = std::make_shared<CounterMachine>(*this, n.id);
  node::Hooks hooks;
  hooks.time = time_;
  SimDisk* disk = n.disk.get();
  hooks.open_storage = [disk]() -> Result<node::OpenedStorage> {
    node::OpenedStorage s;
    s.hard_state = disk->durable.hard_state;
    s.entries = disk->durable.log;
    s.durable = std::make_unique<DiskPort>(*disk);
    return s;
  };
  // Snapshot file work takes the disk's time, and a crash loses it with its answer.
  hooks.file_jobs = [this, np = &n, inc = n.incarnation](storage::FileWorker::Job job,
                                                         storage::FileWorker::Done done) {
    // One at a time, in the order submitted, as the file worker runs them.
    TimePoint& busy = np->disk->files_busy_until;
    busy = std::max(busy, sched_.now()) + disk_latency(false);
    sched_.at(busy, [this, np, inc, job = std::move(job), done = std::move(done)]() mutable {
      // A node that crashed meanwhile never did the work; its coroutines still hear of it.
      Result<void> r = np->incarnation != inc || !np->up
                           ? Result<void>(Error(Errc::storage_io, "the node crashed"))
                           : job();
      asio::post(io_, [done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
    });
  };
  hooks.snapshot_stored = [this, disk, id = n.id](const SnapshotMeta& meta) {
    trace(concat("snapshot stored n", id, " ", meta.last_index));
    if (meta.last_index > disk->durable.snapshot.last_index) disk->durable.snapshot = meta;
  };
  if (snap_.slow_restore_ppm != 0) {
    hooks.restore_delay = [this]() -> std::chrono::nanoseconds {
      if (!faults_on_ || !rng_.chance_ppm(snap_.slow_restore_ppm)) return {};
      return std::chrono::milliseconds(rng_.range(1, snap_.restore_ms_max));
    };
  }
  if (o_.faults & fault_slow_apply) {
    hooks.apply_delay = [this, id = n.id](std::size_t commands) {
      const std::uint64_t per = faults_on_ ? apply_ns_[id.value() - 1] : 0;
      return std::chrono::nanoseconds(per * commands);
    };
  }
  SimNode* np = &n;
  hooks.make_transport = [this, np](const net::TransportConfig& tc, net::ReceiveHandler deliver) {
    np->deliver = std::move(deliver);
    auto t = std::make_unique<SimTransport>(*this, np->id, tc);
    np->transport = t.get();
    return std::unique_ptr<net::Transport>(std::move(t));
  };
  std::optional<Result<std::shared_ptr<Node>>> started;
  detail::start_node(io_.get_executor(), config_of(n.id), *n.machine, std::move(hooks),
                     detail::Completion<std::shared_ptr<Node>>(
                         [&started](Result<std::shared_ptr<Node>> r) { started = std::move(r); }));
  poll();
  if (!started || !*started) {
    fail(concat("node ", n.id, " did not start: ",
                started ? started->error().message() : std::string("no answer")));
    return;
  }
  n.node = std::move(**started);
  n.up = true;
  n.stopped.reset();
  n.node->observe([this, id = n.id, inc = n.incarnation](const NodeEvent& ev) {
    if (ev.kind == NodeEvent::Kind::stopped) on_stopped(id, inc);
  });
  trace(concat("start n", n.id, " incarnation ", n.incarnation, " log ", n.disk->durable.log.size(),
               " term ", n.disk->durable.hard_state.term));
}

void World::crash(SimNode& n) {
  if (!n.up) return;
  n.up = false;
  const bool torn = (o_.faults & fault_torn) != 0 && rng_.below(2) == 0;
  trace(concat("crash n", n.id, torn ? " torn" : ""));
  ++faults_;
  // Stop first, so that the writes the crash fails do not count as disk errors. The node is
  // gone for the others at once; its coroutines finish within simulated milliseconds.
  stop(n);
  n.disk->crash(torn, rng_);
}

void World::stop(SimNode& n) {
  n.up = false;
  n.stopped = std::make_shared<bool>(false);
  n.node->impl().stop(detail::Completion<void>([flag = n.stopped](Result<void>) { *flag = true; }));
  n.stopping = std::move(n.node);
}

void World::on_stopped(NodeId id, std::uint64_t incarnation) {
  SimNode& n = nodes_[id.value() - 1];
  if (n.incarnation != incarnation) return;
  if (n.stopped) {
    *n.stopped = true;
    return;
  }
  // Nobody asked it to stop: only a failed write may do that.
  const std::string why = n.node->impl().status().failure;
  trace(concat("fail-stop n", id, ": ", why));
  if (n.disk->errors == 0) {
    fail(concat("node ", id, " stopped by itself without a disk error: ", why));
  }
  n.up = false;
  n.stopped = std::make_shared<bool>(true);
  n.stopping = std::move(n.node);
  // Its next incarnation opens what the disk holds; the writes queued behind the failed one
  // are lost.
  n.disk->crash(false, rng_);
  restart_later(id, std::chrono::milliseconds(rng_.range(50, 500)));
}

void World::on_vote_write(NodeId node) {
  if (!faults_on_ || !(o_.faults & fault_crash) || !rng_.chance_ppm(50'000)) return;
  const std::uint64_t inc = nodes_[node.value() - 1].incarnation;
  sched_.after(Clock::duration::zero(), [this, node, inc] {
    SimNode& n = nodes_[node.value() - 1];
    if (n.incarnation != inc || !n.up) return;
    std::size_t down = 0;
    for (const SimNode& x : nodes_) down += x.up ? 0 : 1;
    if (down + 1 > (nodes_.size() - 1) / 2) return;  // keep a majority running
    trace(concat("crash n", node, " writing a vote"));
    crash(n);
    restart_later(node, std::chrono::milliseconds(rng_.range(5, 300)));
  });
}

void World::on_disk_error(NodeId node) {
  const std::uint64_t inc = nodes_[node.value() - 1].incarnation;
  trace(concat("disk error n", node));
  sched_.after(1s, [this, node, inc] {
    const SimNode& n = nodes_[node.value() - 1];
    if (n.incarnation == inc && n.up && n.node->impl().status().role != NodeRole::stopped) {
      fail(concat("node ", node, " kept running 1 s after a failed write"));
    }
  });
}

void World::restart_later(NodeId id, Clock::duration after) {
  sched_.after(after, [this, id] {
    SimNode& x = nodes_[id.value() - 1];
    if (x.up) return;
    if (x.stopped && !*x.stopped) return restart_later(id, 10ms);
    x.transport = nullptr;  // goes with its incarnation
    x.stopping.reset();
    start(x);
  });
}

bool World::reachable(NodeId a, NodeId b) const {
  const SimNode& x = nodes_[a.value() - 1];
  const SimNode& y = nodes_[b.value() - 1];
  return x.up && y.up && !x.cut.count(b) && !y.cut.count(a);
}

void World::on_send(NodeId from, core::Message m) {
  SimNode& src = nodes_[from.value() - 1];
  const NodeId to = m.to;
  const std::uint64_t from_inc = src.incarnation;
  // The message leaves the sender's queue when it arrives or is lost.
  auto dequeue = [this, from, from_inc, to] {
    SimNode& x = nodes_[from.value() - 1];
    if (x.incarnation == from_inc && x.transport) x.transport->sent_one(to);
  };
  if (!src.up) return dequeue();
  const DiskImage& d = src.disk->durable;
  checker_.on_send(m, d.hard_state, d.view());
  if (!reachable(from, to)) return dequeue();
  if (faults_on_ && drop_ppm_ && rng_.chance_ppm(drop_ppm_)) return dequeue();
  if (faults_on_ && snap_.chunk_drop_ppm && std::holds_alternative<core::InstallSnapshot>(m.body) &&
      rng_.chance_ppm(snap_.chunk_drop_ppm)) {
    trace(concat("drop chunk n", from, "->n", to));
    return dequeue();
  }
  Clock::duration latency = std::chrono::microseconds(rng_.range(100, 1000));
  if (faults_on_ && reorder_us_) latency += std::chrono::microseconds(rng_.below(reorder_us_));
  if (faults_on_ && delay_ppm_ && rng_.chance_ppm(delay_ppm_)) {
    latency += std::chrono::milliseconds(rng_.range(20, 300));
  }
  // One link delivers in the order sent, as a TCP connection does, unless the reorder fault
  // is on (a reconnect may resend older frames after newer ones).
  TimePoint& last = link_last_[{from.value(), to.value()}];
  if (!(faults_on_ && reorder_us_)) {
    latency = std::max<Clock::duration>(latency, last - sched_.now());
  }
  last = std::max(last, sched_.now() + latency);
  const std::uint64_t inc = nodes_[to.value() - 1].incarnation;
  if (faults_on_ && dup_ppm_ && rng_.chance_ppm(dup_ppm_)) {
    auto later = latency + std::chrono::microseconds(rng_.range(0, 5000));
    sched_.after(later, [this, to, inc, copy = m]() mutable { deliver(to, inc, std::move(copy)); });
  }
  sched_.after(latency, [this, to, inc, dequeue, m = std::move(m)]() mutable {
    dequeue();
    deliver(to, inc, std::move(m));
  });
}

void World::deliver(NodeId to, std::uint64_t incarnation, core::Message m) {
  SimNode& n = nodes_[to.value() - 1];
  if (n.incarnation != incarnation || !reachable(m.from, to) || !n.transport->accepts(m.from)) {
    return;
  }
  if (o_.trace) {
    trace(concat("deliver n", m.from, "->n", to, " ", message_name(m.body), " term ",
                 core::term_of(m.body)));
  } else {
    trace(concat(m.from, to, message_name(m.body)));
  }
  asio::post(io_, [d = n.deliver, m = std::move(m)]() mutable { d(std::move(m)); });
}

void World::on_apply(NodeId node, const CounterMachine& m, const Command& c,
                     std::uint64_t counter) {
  SimNode& n = nodes_[node.value() - 1];
  const DurableView local = n.disk->durable.view();
  const auto held = local.term_at(c.index);
  // (A batch taken before a received snapshot replaced the log may still be applied: its
  // entries were durable then, and the stored snapshot covers them now.)
  const bool covered = c.index <= n.disk->durable.snapshot.last_index;
  if (!covered && (!held || *held != c.term)) {
    fail(concat("node ", node, " applied (", c.index, ", term ", c.term,
                ") before its disk held it (",
                held ? concat("term ", held->value()) : std::string("nothing"), ")"));
  }
  if (c.index <= m.applied) {
    fail(concat("node ", node, " applied ", c.index, " after ", m.applied));
  }
  const std::uint64_t payload = decode_u64(c.payload).value_or(0);
  if (refused_.count(payload)) {
    fail(concat("node ", node, " applied proposal ", payload, " which was refused"));
  }
  const auto k = static_cast<std::size_t>(c.index.value() - 1);
  if (applied_.size() <= k) applied_.resize(k + 1);
  AppliedAt& a = applied_[k];
  if (a.term.value() == 0) {
    a = AppliedAt{c.term, payload, counter};
    // Applied means committed: a majority of the smallest voter set holds it durably.
    std::size_t holding = 0;
    for (const SimNode& x : nodes_) {
      const auto t = x.disk->durable.view().term_at(c.index);
      if (t && *t == c.term) ++holding;
    }
    // (A single removal leaves nodes - 1 voters, whose majority is that of all the nodes; a
    // joint change may leave fewer.)
    const std::size_t need = std::min<std::size_t>(nodes_.size(), min_voters_) / 2 + 1;
    if (holding < need) {
      fail(concat("node ", node, " applied ", c.index, " held durably by ", holding, " of ",
                  nodes_.size(), " nodes"));
    }
  } else if (a.term != c.term || a.payload != payload || a.counter != counter) {
    fail(concat("node ", node, " applied (", c.index, ", term ", c.term, ", proposal ", payload,
                ", counter ", counter, ") where (term ", a.term, ", proposal ", a.payload,
                ", counter ", a.counter, ") was applied"));
  }
  max_applied_ = std::max<std::uint64_t>(max_applied_, c.index.value());
  trace(concat("apply n", node, " ", c.index, " ", counter));
}

void World::on_restore(NodeId node, Index applied, std::uint64_t counter) {
  const auto k = static_cast<std::size_t>(applied.value() - 1);
  if (applied.value() == 0 || k >= applied_.size() || applied_[k].term.value() == 0 ||
      applied_[k].counter != counter) {
    fail(concat("node ", node, " restored a snapshot at ", applied, " with counter ", counter,
                " where ", k < applied_.size() && applied.value() != 0 ? applied_[k].counter : 0,
                " was applied"));
  }
  trace(concat("restore n", node, " ", applied, " ", counter));
}

void World::poll() {
  for (int i = 0; i < 1'000'000; ++i) {
    if (io_.poll() == 0) return;
  }
  fail("handlers kept running without simulated time moving");
}

void World::run_until(TimePoint until, const std::function<bool()>& done) {
  poll();
  while (!failed()) {
    check_bounds();
    if (done && done()) return;
    if (!sched_.step(until)) return;
    poll();
  }
}

void World::check_bounds() {
  for (const SimNode& n : nodes_) {
    if (!n.up) continue;
    const auto q = n.node->impl().queue_use();
    auto over = [&](const char* what, std::uint64_t held, std::uint64_t max) {
      if (held > max)
        fail(concat("node ", n.id, " holds ", held, " ", what, ", over its limit of ", max));
    };
    over("bytes of pending proposals", q.proposal_bytes, limits_.proposal_bytes);
    over("waiting reads", q.reads, limits_.reads);
    over("committed entries waiting to be applied", q.to_apply, limits_.apply_lag);
    over("deferred chunk answers", q.deferred_answers, detail::NodeImpl::deferred_answers_max);
  }
}

// ---- Faults ----

void World::schedule_nemesis() {
  sched_.after(std::chrono::milliseconds(rng_.range(50, 400)), [this] {
    if (!faults_on_) return;
    nemesis();
    schedule_nemesis();
  });
}

void World::nemesis() {
  const std::uint32_t f = o_.faults;
  std::vector<int> kinds;
  if (f & fault_partition) kinds.push_back(0);
  if (f & fault_crash) kinds.push_back(1);
  if (f & fault_disk_stall) kinds.push_back(2);
  if (f & fault_disk_error) kinds.push_back(3);
  if (kinds.empty()) return;
  SimNode& n = nodes_[rng_.below(nodes_.size())];
  switch (kinds[rng_.below(kinds.size())]) {
    case 0: {
      // Cut one node off from some or all of the others for a while.
      ++faults_;
      std::vector<NodeId> cut;
      for (SimNode& x : nodes_) {
        if (x.id != n.id && rng_.below(3) != 0) cut.push_back(x.id);
      }
      trace(concat("partition n", n.id, " from ", cut.size()));
      for (NodeId id : cut) n.cut.insert(id);
      const NodeId who = n.id;
      sched_.after(std::chrono::milliseconds(rng_.range(100, 1500)), [this, who, cut] {
        SimNode& x = nodes_[who.value() - 1];
        for (NodeId id : cut) x.cut.erase(id);
        trace(concat("heal n", who));
      });
      break;
    }
    case 1: {
      if (!n.up) return;
      std::size_t down = 0;
      for (const SimNode& x : nodes_) down += x.up ? 0 : 1;
      if (down + 1 > (nodes_.size() - 1) / 2) return;  // keep a majority running
      crash(n);
      restart_later(n.id, std::chrono::milliseconds(rng_.range(20, 800)));
      break;
    }
    case 2: {
      if (!n.up) return;
      ++faults_;
      trace(concat("disk stall n", n.id));
      n.disk->stall_next = true;
      break;
    }
    case 3: {
      if (!n.up || rng_.below(3) != 0) return;  // rarer than the others: each costs a restart
      ++faults_;
      trace(concat("disk error armed n", n.id));
      n.disk->fail_next = true;
      break;
    }
    default: break;
  }
}

void World::heal() {
  faults_on_ = false;
  for (SimNode& n : nodes_) {
    n.cut.clear();
    if (!n.up) restart_later(n.id, 0ms);
  }
  for (SimNode& n : nodes_) {
    n.disk->stall_next = false;
    n.disk->fail_next = false;
  }
  trace("heal all");
}

// ---- The client ----

void World::note_hint(const Error& e) {
  if (e.is(Errc::not_leader) && e.leader_hint != no_node) leader_hint_ = e.leader_hint;
}

SimNode* World::pick_target() {
  if (leader_hint_ != no_node && rng_.below(4) != 0) {
    SimNode& n = nodes_[leader_hint_.value() - 1];
    if (n.up) return &n;
  }
  std::vector<SimNode*> up;
  for (SimNode& n : nodes_) {
    if (n.up) up.push_back(&n);
  }
  return up.empty() ? nullptr : up[rng_.below(up.size())];
}

void World::propose(SimNode& n) {
  const std::uint64_t payload = next_payload_++;
  const std::size_t rec = history_.size();
  history_.push_back(OpRecord{false, micros(sched_.now()), false, 0, 0});
  payload_record_[payload] = rec;
  ++ops_invoked_;
  trace(concat("propose ", payload, " at n", n.id));
  n.node->propose(encode_u64(payload), [this, rec, payload](Result<Proposed> r) {
    if (!r) {
      note_hint(r.error());
      if (r.error().definite()) refused_[payload] = true;
      trace(concat("proposal ", payload, ": ", r.error().message()));
      return;
    }
    if (!on_reply(rec, payload, *r)) return;
    trace(concat("proposal ", payload, " at ", r->index, " = ", history_[rec].value));
  });
}

bool World::on_reply(std::size_t rec, std::uint64_t payload, const Proposed& p) {
  const auto value = decode_u64(p.reply);
  const auto k = static_cast<std::size_t>(p.index.value() - 1);
  if (!value || k >= applied_.size() || applied_[k].payload != payload ||
      applied_[k].counter != *value) {
    fail(concat("proposal ", payload, " answered at ", p.index, " with ", value.value_or(0),
                " but the state machine applied proposal ",
                k < applied_.size() ? applied_[k].payload : 0, " there, counter ",
                k < applied_.size() ? applied_[k].counter : 0));
    return false;
  }
  OpRecord& op = history_[rec];
  op.done = true;
  op.completed_us = micros(sched_.now());
  op.value = *value;
  ++ops_done_;
  return true;
}

void World::read(SimNode& n) {
  const std::size_t rec = history_.size();
  history_.push_back(OpRecord{true, micros(sched_.now()), false, 0, 0});
  ++ops_invoked_;
  std::shared_ptr<CounterMachine> m = n.machine;
  std::weak_ptr<Node> node = n.node;
  const NodeId id = n.id;
  n.node->read_barrier([this, rec, m, node, id](Result<Index> r) {
    if (!r) {
      note_hint(r.error());
      trace(concat("read at n", id, ": ", r.error().message()));
      return;
    }
    auto live = node.lock();
    const Index applied = live ? live->impl().status().applied : Index();
    if (applied < *r) {
      fail(concat("read_barrier at n", id, " completed at ", *r, " with ", applied, " applied"));
      return;
    }
    OpRecord& op = history_[rec];
    op.done = true;
    op.completed_us = micros(sched_.now());
    op.value = m->counter;
    ++ops_done_;
    trace(concat("read at n", id, " = ", m->counter));
  });
}

void World::transfer(SimNode& n) {
  std::optional<NodeId> target;
  if (rng_.below(2) == 0) target = NodeId(rng_.range(1, nodes_.size()));
  ++faults_;
  trace(concat("transfer at n", n.id, " to ", target.value_or(no_node)));
  const NodeId id = n.id;
  n.node->transfer_leadership(target, [this, id](Result<NodeId> r) {
    if (!r) note_hint(r.error());
    trace(concat("transfer at n", id, ": ", r ? "done" : r.error().message()));
  });
}

void World::add_server(SimNode& at, NodeId id, bool learner, std::function<void(bool)> done) {
  const ServerAddress a{id, "127.0.0.1", static_cast<std::uint16_t>(10000 + id.value())};
  trace(concat(learner ? "add learner n" : "add voter n", id, " at n", at.id));
  auto finish = [this, id, done = std::move(done)](Result<Configuration> r) {
    if (!r) note_hint(r.error());
    trace(concat("add n", id, ": ", r ? "done" : r.error().message()));
    if (done) done(r.ok());
  };
  if (learner) {
    at.node->add_learner(a, true, std::move(finish));
  } else {
    at.node->add_voter(a, std::move(finish));
  }
}

// A membership change at `n`: a voter removed while every server votes, else one of the
// others added back (as a voter, or as a learner promoted once caught up).
void World::reconfig(SimNode& n) {
  const Configuration conf = n.node->impl().status().configuration;
  if (conf.joint() || n.node->impl().status().role != NodeRole::leader) return;
  std::vector<NodeId> missing;
  for (const SimNode& x : nodes_) {
    if (!conf.is_voter(x.id)) missing.push_back(x.id);
  }
  ++faults_;
  if (rng_.below(3) == 0) {
    // Any change at once (joint consensus when more than one voter changes): each server stays
    // or becomes a voter with a chance of two in three, else a learner or nothing; at least
    // two voters remain.
    std::vector<NodeId> voters, learners;
    std::vector<ServerAddress> addresses;
    for (const SimNode& x : nodes_) {
      const std::uint64_t roll = rng_.below(6);
      if (roll < 4) {
        voters.push_back(x.id);
      } else if (roll == 4) {
        learners.push_back(x.id);
      }
      addresses.push_back(
          ServerAddress{x.id, "127.0.0.1", static_cast<std::uint16_t>(10000 + x.id.value())});
    }
    for (const SimNode& x : nodes_) {
      if (voters.size() >= 2) break;
      if (std::find(voters.begin(), voters.end(), x.id) != voters.end()) continue;
      std::erase(learners, x.id);
      voters.push_back(x.id);
    }
    std::sort(voters.begin(), voters.end());
    min_voters_ = std::min<std::size_t>(min_voters_, voters.size());
    trace(concat("change at n", n.id, " to ", voters.size(), " voters, ", learners.size(),
                 " learners"));
    n.node->change_membership(std::move(voters), std::move(learners), std::move(addresses),
                              [this](Result<Configuration> r) {
                                if (!r) note_hint(r.error());
                                trace(concat("change: ", r ? "done" : r.error().message()));
                              });
    return;
  }
  if (!missing.empty()) {
    // One draw per statement: the order in which arguments are evaluated is the compiler's.
    const NodeId id = missing[rng_.below(missing.size())];
    const bool learner = rng_.below(2) == 0;
    add_server(n, id, learner, {});
    return;
  }
  const NodeId gone = conf.voters[rng_.below(conf.voters.size())];
  trace(concat("remove n", gone, " at n", n.id));
  n.node->remove_server(gone, [this, gone](Result<Configuration> r) {
    if (!r) note_hint(r.error());
    trace(concat("remove n", gone, ": ", r ? "done" : r.error().message()));
  });
}

SimNode* World::leader() {
  SimNode* best = nullptr;
  Term best_term;
  for (SimNode& n : nodes_) {
    if (!n.up) continue;
    const NodeStatus st = n.node->impl().status();
    if (st.role == NodeRole::leader && (!best || st.term > best_term)) {
      best = &n;
      best_term = st.term;
    }
  }
  return best;
}

void World::schedule_client() {
  sched_.after(std::chrono::microseconds(rng_.range(500, 15'000)), [this] {
    if (!faults_on_) return;
    client_step();
    schedule_client();
  });
}

void World::client_step() {
  SimNode* target = pick_target();
  if (!target) return;
  SimNode& n = *target;
  const std::uint64_t roll = rng_.below(100);
  if ((o_.faults & fault_transfer) && roll < 2) {
    transfer(n);
  } else if ((o_.faults & fault_reconfig) && roll >= 98) {
    reconfig(n);
  } else if (roll < 25) {
    read(n);
  } else if (tight_ && roll < 28) {
    // A burst, so that proposals and reads meet the tightened limits.
    const std::uint64_t count = rng_.range(10, 300);
    const bool reads = rng_.below(3) == 0;
    trace(concat("burst of ", count, reads ? " reads" : " proposals", " at n", n.id));
    for (std::uint64_t i = 0; i < count; ++i) {
      if (reads) {
        read(n);
      } else {
        propose(n);
      }
    }
  } else {
    propose(n);
  }
}

void World::check_liveness() {
  heal();
  const TimePoint deadline = sched_.now() + 20s;
  // Shared with the callbacks, which may run after this returns (a proposal failed at shutdown).
  struct State {
    std::optional<Index> final_index;
    bool busy = false;  // a membership change or the proposal is on its way
  };
  auto st = std::make_shared<State>();
  std::optional<Index>& final_index = st->final_index;
  bool& busy = st->busy;
  TimePoint busy_since = sched_.now();
  std::string stage = "no leader";
  while (!failed() && sched_.now() < deadline) {
    SimNode* l = leader();
    if (busy && sched_.now() - busy_since > 2s) busy = false;
    if (l && !busy) {
      const Configuration conf = l->node->impl().status().configuration;
      NodeId missing;
      for (const SimNode& x : nodes_) {
        if (!conf.is_voter(x.id) && missing == no_node) missing = x.id;
      }
      if (conf.joint() || missing != no_node) {
        stage = "the full membership not restored";
        if (!conf.joint()) {
          busy = true;
          busy_since = sched_.now();
          add_server(*l, missing, false, [st](bool) { st->busy = false; });
        }
      } else if (!final_index) {
        stage = "no proposal committed";
        // The full membership is back and no change is asked for any more: commits need a
        // majority of every node again.
        min_voters_ = nodes_.size();
        busy = true;
        busy_since = sched_.now();
        const std::uint64_t payload = next_payload_++;
        const std::size_t rec = history_.size();
        history_.push_back(OpRecord{false, micros(sched_.now()), false, 0, 0});
        ++ops_invoked_;
        trace(concat("final propose ", payload, " at n", l->id));
        l->node->propose(encode_u64(payload), [this, st, rec, payload](Result<Proposed> r) {
          st->busy = false;
          if (!r) {
            note_hint(r.error());
            if (r.error().definite()) refused_[payload] = true;
            return;
          }
          if (on_reply(rec, payload, *r)) st->final_index = r->index;
        });
      }
    }
    if (final_index) {
      stage = "not every node applied the last proposal";
      bool all = true;
      for (const SimNode& n : nodes_) {
        if (!n.up || n.machine->applied < *final_index) all = false;
      }
      if (all) return;
    }
    run_until(std::min(deadline, sched_.now() + 20ms));
  }
  if (failed()) return;
  std::string state;
  for (const SimNode& n : nodes_) {
    if (!n.up) {
      state += concat("; n", n.id, " down");
      continue;
    }
    const NodeStatus st = n.node->impl().status();
    state += concat("; n", n.id, " ", to_string(st.role), " term ", st.term, " leader ", st.leader,
                    " commit ", st.commit, " applied ", st.applied, " last ", st.last_log_index,
                    " voters ", st.configuration.voters.size(), " learners ",
                    st.configuration.learners.size());
  }
  fail(concat("liveness: ", stage, " within 20 s of healing", state));
}

SeedResult World::run() {
  SeedResult res;
  auto guard = asio::make_work_guard(io_);
  sched_.at(origin, [] {});
  sched_.step(TimePoint::max());
  for (SimNode& n : nodes_) start(n);
  schedule_client();
  schedule_nemesis();
  const TimePoint began = sched_.now();
  run_until(began + 4s);

  if (!failed()) check_liveness();
  if (!failed()) checker_.check_linearizable(history_);

  // Shut down: every node stops, then the run ends.
  faults_on_ = false;
  for (SimNode& n : nodes_) {
    if (n.up) stop(n);
  }
  run_until(sched_.now() + 1s, [&] {
    for (const SimNode& n : nodes_) {
      if (n.stopped && !*n.stopped) return false;
    }
    return true;
  });
  for (SimNode& n : nodes_) {
    if (!failed() && n.stopped && !*n.stopped) fail(concat("node ", n.id, " did not stop"));
    n.transport = nullptr;
    n.stopping.reset();
  }
  poll();
  sched_.clear();

  res.ok = !failed();
  res.failure = !failure_.empty() ? failure_ : checker_.failure();
  res.ops = ops_done_;
  res.ops_invoked = ops_invoked_;
  res.faults = faults_;
  res.sim_us = micros(sched_.now()) - micros(began);
  res.committed = max_applied_;
  res.digest = digest_;
  return res;
}

}  // namespace

SeedResult run_node_seed(std::uint64_t seed, const SimOptions& options) {
  set_log_level(options.trace ? LogLevel::warn : LogLevel::off);
  World w(seed, options);
  return w.run();
}

}  // namespace coraft::sim
