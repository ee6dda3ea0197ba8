// The simulated world: nodes (a core, a disk, a counter state machine), a network, clients and
// a fault schedule, all advanced by one event queue in simulated microseconds.
#include "world.hpp"

#include <algorithm>
#include <deque>
#include <map>
#include <optional>
#include <queue>
#include <vector>

#include <coraft/text.hpp>

#include "checker.hpp"
#include "core/core.hpp"
#include "sim_rng.hpp"

namespace coraft::sim {
namespace {

using Time = std::uint64_t;  // simulated microseconds

// ---- Parameters of a run ----
constexpr Time tick_us = 10'000;
constexpr Time safety_us = 20'000'000;       // fault phase: at least this long...
constexpr std::uint64_t ops_min = 500;       // ...and at least this many operations invoked
constexpr Time safety_cap_us = 60'000'000;   // but never longer than this
constexpr Time liveness_us = 10'000'000;     // after healing, everything must finish in this
constexpr Time audit_us = 500'000;           // period of the log-matching audit
constexpr std::uint32_t clients = 8;
constexpr Time think_min_us = 1'000, think_max_us = 250'000;
constexpr Time attempt_timeout_us = 400'000;
constexpr Time client_hop_us = 100;          // client <-> server latency
constexpr std::uint32_t faults_min = 8, faults_extra = 17;
constexpr std::uint32_t post_heal_ops = 2;  // each client must complete this many after healing

enum class Ev : std::uint8_t {
  tick,
  deliver,
  disk_done,
  restart,
  client_next,
  client_request,
  propose_batch,
  client_ok,
  client_fail,
  client_timeout,
  fault,
  armed_crash,
  heal_partition,
  audit,
};

struct Event {
  Time at;
  std::uint64_t seq;
  Ev kind;
  std::uint32_t a = 0;
  std::uint32_t b = 0;
  std::uint64_t c = 0;
  std::uint64_t d = 0;
};

struct Later {
  bool operator()(const Event& x, const Event& y) const noexcept {
    return x.at != y.at ? x.at > y.at : x.seq > y.seq;
  }
};

struct DiskWrite {
  std::optional<core::HardState> hard_state;
  std::optional<Index> truncate_from;
  std::vector<Entry> entries;
  std::vector<core::Message> after;
};

struct Pending {
  std::uint32_t client;
  std::uint64_t op;
};

struct Waiting {
  std::uint32_t client;
  std::uint32_t attempt;
  std::uint64_t op;
};

struct Node {
  NodeId id;
  bool up = true;
  std::uint32_t incarnation = 0;
  std::optional<core::Core> core;
  // The disk: what is durable, and the writes in flight (completed in order).
  core::HardState hard;
  std::vector<Entry> durable;
  std::deque<DiskWrite> writes;
  Time disk_busy_until = 0;
  // The counter state machine, rebuilt from the log after a restart.
  std::uint64_t counter = 0;
  std::vector<std::uint64_t> op_value;  // by op id; 0 = not applied
  Index applied;
  std::map<Index, Pending> pending;  // proposals accepted here, by log index
  std::vector<Waiting> inbox;        // requests waiting to be proposed as one batch
  // A crash armed to strike when this server next starts writing a new term or vote: the most
  // dangerous moment for a vote (crash = 1, torn = 2), and how long to stay down.
  std::uint8_t crash_on_vote = 0;
  // A crash armed to strike within milliseconds of this server next winning an election, while
  // its first entries are still in flight (crash = 1, torn = 2).
  std::uint8_t crash_on_lead = 0;
  Time crash_down_us = 0;
};

struct Client {
  bool busy = false;
  std::uint32_t after_heal = 0;  // operations invoked after healing
  std::uint64_t op = 0;
  std::uint32_t attempt = 0;
  NodeId leader_guess;
};

enum : std::uint8_t { op_inc = 1, op_read = 2 };

Bytes encode_op(std::uint8_t kind, std::uint64_t op) {
  std::byte buf[9];
  buf[0] = std::byte{kind};
  for (int i = 0; i < 8; ++i) buf[1 + i] = static_cast<std::byte>(op >> (8 * i));
  return Bytes::copy_of(std::span<const std::byte>(buf, 9));
}

bool decode_op(const Bytes& b, std::uint8_t& kind, std::uint64_t& op) {
  if (b.size() != 9) return false;
  kind = static_cast<std::uint8_t>(b[0]);
  op = 0;
  for (int i = 0; i < 8; ++i) op |= static_cast<std::uint64_t>(b[1 + i]) << (8 * i);
  return true;
}

std::string describe(const core::MessageBody& b) {
  using namespace core;
  if (const auto* v = std::get_if<VoteRequest>(&b)) {
    return detail::concat(v->pre_vote ? "PreVote" : "Vote", " term=", v->term, " last=",
                          v->last_log_index, "/", v->last_log_term);
  }
  if (const auto* v = std::get_if<VoteResponse>(&b)) {
    return detail::concat(v->pre_vote ? "PreVoteResponse" : "VoteResponse", " term=", v->term,
                          v->granted ? " granted" : " rejected");
  }
  if (const auto* a = std::get_if<AppendRequest>(&b)) {
    return detail::concat("Append term=", a->term, " prev=", a->prev_log_index, "/",
                          a->prev_log_term, " n=", a->entries.size(), " commit=", a->leader_commit);
  }
  if (const auto* a = std::get_if<AppendResponse>(&b)) {
    return detail::concat("AppendResponse term=", a->term, a->success ? " ok" : " reject",
                          " match=", a->match_index, " last=", a->last_log_index, " hint=",
                          a->conflict_index, "/", a->conflict_term);
  }
  if (const auto* h = std::get_if<HeartbeatRequest>(&b)) {
    return detail::concat("Heartbeat term=", h->term, " commit=", h->leader_commit);
  }
  return detail::concat("HeartbeatResponse term=", term_of(b));
}

[[maybe_unused]] const char* body_name(const core::MessageBody& b) {
  static const char* names[] = {"VoteRequest", "VoteResponse", "AppendRequest",
                                "AppendResponse", "Heartbeat", "HeartbeatResponse",
                                "InstallSnapshot", "InstallSnapshotResponse", "TimeoutNow",
                                "ReadIndexRequest", "ReadIndexResponse"};
  return names[b.index()];
}

// Knobs drawn from the seed, so that different seeds exercise different corners of the
// protocol: tight flow-control windows, tiny messages, slow disks, PreVote or CheckQuorum off.
struct Knobs {
  std::uint32_t election_ticks;
  std::uint32_t heartbeat_ticks;
  std::uint32_t inflight_msgs_max;
  std::uint64_t inflight_bytes_max;
  std::uint64_t append_bytes_max;
  std::uint64_t pending_proposals_max;
  std::uint64_t apply_entries_max;
  std::uint32_t replicate_stall_ticks;
  bool pre_vote;
  bool check_quorum;
  Time disk_us_max;
  Time think_max_us;

  static Knobs draw(SimRng& rng) {
    Knobs k;
    k.election_ticks = static_cast<std::uint32_t>(rng.range(6, 15));
    k.heartbeat_ticks = static_cast<std::uint32_t>(rng.range(1, k.election_ticks / 3));
    static constexpr std::uint32_t msgs[] = {1, 2, 4, 8, 64};
    static constexpr std::uint64_t bytes[] = {32, 256, 4096, 1u << 20};
    static constexpr std::uint64_t append[] = {9, 40, 256, 1u << 16};
    static constexpr std::uint64_t pending[] = {4, 32, 1024};
    static constexpr std::uint64_t apply[] = {1, 8, 256};
    static constexpr Time disk[] = {300, 2'000, 20'000};
    static constexpr Time think[] = {30'000, 120'000, 250'000};
    k.inflight_msgs_max = msgs[rng.below(5)];
    k.inflight_bytes_max = bytes[rng.below(4)];
    k.append_bytes_max = append[rng.below(4)];
    k.pending_proposals_max = pending[rng.below(3)];
    k.apply_entries_max = apply[rng.below(3)];
    k.replicate_stall_ticks = static_cast<std::uint32_t>(rng.range(2, 15));
    k.pre_vote = rng.below(8) != 0;
    k.check_quorum = rng.below(8) != 0;
    k.disk_us_max = disk[rng.below(3)];
    k.think_max_us = think[rng.below(3)];
    return k;
  }
};

class World {
 public:
  World(std::uint64_t seed, const SimOptions& o)
      : seed_(seed), opt_(o), rng_(seed), knobs_(Knobs::draw(rng_)), checker_(o.nodes) {}

  SeedResult run();

 private:
  // ---- Events ----
  void schedule(Time at, Ev kind, std::uint32_t a = 0, std::uint32_t b = 0, std::uint64_t c = 0,
                std::uint64_t d = 0) {
    queue_.push(Event{at, seq_++, kind, a, b, c, d});
  }
  void dispatch(const Event& e);
  void mix(std::uint64_t v) noexcept { digest_ = (digest_ ^ v) * 0x100000001b3ull; }
  template <class... Args>
  void trace(const Args&... args) {
    if (!opt_.trace) return;
    std::string line = detail::concat(args...);
    std::fprintf(opt_.trace, "%9.6f %s\n", static_cast<double>(now_) / 1e6, line.c_str());
  }

  // ---- Nodes ----
  core::Config config_for(const Node& n) const;
  void start_node(Node& n);
  void crash(Node& n, bool torn);
  void drain(Node& n);
  void handle_output(Node& n, core::Output& out);
  void on_soft_state(Node& n, const core::SoftState& s);
  void apply(Node& n, const Entry& e);
  void disk_done(Node& n);
  void after_input(Node& n);

  // ---- Network ----
  void net_send(core::Message m);
  void deliver(std::uint32_t slot);
  std::uint32_t park(core::Message m);

  // ---- Clients ----
  void client_next(std::uint32_t c);
  void client_attempt(std::uint32_t c, Time delay);
  void client_request(std::uint32_t c, std::uint32_t attempt, NodeId target);
  void propose_batch(Node& n);
  void client_done(std::uint32_t c, std::uint64_t op, std::uint64_t value);

  // ---- Faults ----
  void plan_faults();
  void inject_fault();
  NodeId pick_victim();
  void partition();
  void heal();
  void audit();
  void on_audit();
  bool finished() const;
  void final_checks();
  std::vector<const std::vector<Entry>*> durable_logs() const;

  Node& node(NodeId id) { return nodes_[id.value() - 1]; }

  std::uint64_t seed_;
  SimOptions opt_;
  SimRng rng_;
  Knobs knobs_;
  Checker checker_;
  std::priority_queue<Event, std::vector<Event>, Later> queue_;
  std::uint64_t seq_ = 0;
  Time now_ = 0;
  std::uint64_t digest_ = 0xcbf29ce484222325ull;
  std::vector<Node> nodes_;
  std::vector<Client> clients_;
  std::vector<OpRecord> history_;
  // Messages on the wire, parked in slots the delivery events name.
  std::vector<std::optional<core::Message>> wire_;
  std::vector<std::uint32_t> wire_free_;
  std::vector<Time> link_clock_;  // FIFO per directed link unless reordering
  std::vector<std::uint8_t> blocked_;  // [from * n + to]
  std::uint64_t partition_id_ = 0;
  // Network fault windows and their strength.
  Time drop_until_ = 0, dup_until_ = 0, reorder_until_ = 0, delay_until_ = 0;
  std::uint64_t drop_ppm_ = 0, dup_ppm_ = 0;
  Time delay_max_us_ = 0;
  bool healing_ = false;
  Time healed_at_ = 0;
  std::uint32_t faults_injected_ = 0;
  std::uint64_t ops_done_ = 0;
  bool stop_ = false;
  std::string checker_failure_;  // failures found outside the Checker (liveness, protocol)
};

// ---- Nodes ----

core::Config World::config_for(const Node& n) const {
  core::Config c;
  c.id = n.id;
  for (std::uint32_t i = 1; i <= opt_.nodes; ++i) c.voters.emplace_back(i);
  c.election_ticks = knobs_.election_ticks;
  c.heartbeat_ticks = knobs_.heartbeat_ticks;
  c.rng_seed = seed_ * 1000003 + n.id.value() * 7919 + n.incarnation;
  c.pre_vote = knobs_.pre_vote;
  c.check_quorum = knobs_.check_quorum;
  c.inflight_msgs_max = knobs_.inflight_msgs_max;
  c.inflight_bytes_max = knobs_.inflight_bytes_max;
  c.append_bytes_max = knobs_.append_bytes_max;
  c.pending_proposals_max = knobs_.pending_proposals_max;
  c.apply_entries_max = knobs_.apply_entries_max;
  c.replicate_stall_ticks = knobs_.replicate_stall_ticks;
  return c;
}

void World::start_node(Node& n) {
  n.up = true;
  n.core.emplace(config_for(n), core::DurableState{n.hard, n.durable});
  n.counter = 0;
  n.op_value.assign(n.op_value.size(), 0);
  n.applied = Index();
  n.pending.clear();
  // Ticks start at a random phase so that servers do not tick in lockstep.
  schedule(now_ + rng_.range(1, tick_us), Ev::tick, static_cast<std::uint32_t>(n.id.value()),
           n.incarnation);
  trace("n", n.id, " start term=", n.core->term(), " log=", n.core->log().last_index());
  mix(0x51a7 ^ n.id.value());
}

void World::crash(Node& n, bool torn) {
  if (torn && !n.writes.empty()) {
    // The write in flight may leave any prefix of itself behind.
    DiskWrite& w = n.writes.front();
    if (w.hard_state && rng_.below(2)) n.hard = *w.hard_state;
    const std::size_t keep = rng_.below(w.entries.size() + 1);
    if (w.truncate_from && (keep > 0 || rng_.below(2))) {
      n.durable.resize(std::min<std::size_t>(n.durable.size(), w.truncate_from->value() - 1));
    }
    for (std::size_t k = 0; k < keep; ++k) {
      if (w.entries[k].index.value() != n.durable.size() + 1) break;
      n.durable.push_back(w.entries[k]);
    }
    trace("n", n.id, " torn write kept ", keep, " of ", w.entries.size(), " entries");
  }
  n.writes.clear();
  n.crash_on_vote = 0;
  n.crash_on_lead = 0;
  n.core.reset();
  n.up = false;
  ++n.incarnation;
  n.pending.clear();
  n.inbox.clear();
  n.disk_busy_until = 0;
  trace("n", n.id, torn ? " crash (torn)" : " crash", " durable=", n.durable.size());
  mix(0xc4a5 ^ n.id.value());
  checker_.check_durable(durable_logs());
}

void World::after_input(Node& n) {
  n.core->check_invariants();
  if (n.core->role() == core::Role::leader) checker_.on_leader_commit(n.core->term(), n.core->log());
  drain(n);
}

void World::drain(Node& n) {
  while (n.up && n.core->has_output()) {
    core::Output out = n.core->take_output();
    handle_output(n, out);
  }
}

void World::handle_output(Node& n, core::Output& out) {
  if (out.soft_state) on_soft_state(n, *out.soft_state);
  const bool durable = out.has_durable_work();
  if (durable) {
    DiskWrite w{out.hard_state, out.truncate_from, std::move(out.entries), {}};
    w.after = std::move(out.messages_after_persist);
    n.writes.push_back(std::move(w));
    n.disk_busy_until = std::max(n.disk_busy_until, now_) + rng_.range(50, knobs_.disk_us_max);
    schedule(n.disk_busy_until, Ev::disk_done, static_cast<std::uint32_t>(n.id.value()),
             n.incarnation);
    if (out.hard_state && n.crash_on_vote) {
      schedule(now_ + 1, Ev::armed_crash, static_cast<std::uint32_t>(n.id.value()), n.incarnation);
    }
  }
  for (core::Message& m : out.messages) net_send(std::move(m));
  if (!durable && !out.messages_after_persist.empty()) {
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
}

void World::on_soft_state(Node& n, const core::SoftState& s) {
  trace("n", n.id, " ", core::to_string(s.role), " term=", s.term, " leader=", s.leader);
  mix(0x50f7 ^ (n.id.value() << 8) ^ static_cast<std::uint64_t>(s.role) ^ (s.term.value() << 16));
  if (s.role == core::Role::leader) {
    checker_.on_leader(s.term, n.id, n.core->log());
    if (n.crash_on_lead) {
      schedule(now_ + rng_.range(1, 3'000), Ev::armed_crash,
               static_cast<std::uint32_t>(n.id.value()), n.incarnation, 1);
    }
  }
}

void World::apply(Node& n, const Entry& e) {
  if (e.index != n.applied + 1) {
    checker_failure_ = detail::concat("apply order: n", n.id, " applied ", e.index, " after ",
                                      n.applied);
    stop_ = true;
    return;
  }
  n.applied = e.index;
  checker_.on_apply(n.id, e);
  std::uint8_t kind = 0;
  std::uint64_t op = 0;
  std::uint64_t value = 0;
  const bool is_op = e.type == EntryType::normal && decode_op(e.payload, kind, op) &&
                     op < n.op_value.size();
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

void World::disk_done(Node& n) {
  DiskWrite w = std::move(n.writes.front());
  n.writes.pop_front();
  if (w.hard_state) n.hard = *w.hard_state;
  if (w.truncate_from && w.truncate_from->value() <= n.durable.size()) {
    n.durable.resize(w.truncate_from->value() - 1);
  }
  for (Entry& e : w.entries) {
    CORAFT_ASSERT(e.index.value() == n.durable.size() + 1, e.index, n.durable.size());
    n.durable.push_back(e);
  }
  mix(0xd15c ^ (n.id.value() << 8) ^ (n.durable.size() << 16));
  if (!w.entries.empty()) {
    n.core->persisted(w.entries.back().term, w.entries.back().index);
  }
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

void World::net_send(core::Message m) {
  const std::size_t from = m.from.value() - 1, to = m.to.value() - 1;
  if (opt_.trace) {
    trace("n", m.from, " -> n", m.to, " ", describe(m.body));
  }
  mix(0x5e4d ^ (m.from.value() << 8) ^ (m.to.value() << 16) ^ (m.body.index() << 24) ^
      (core::term_of(m.body).value() << 32));
  if (now_ < drop_until_ && rng_.chance_ppm(drop_ppm_)) return;
  Time latency = rng_.range(100, 1000);
  if (now_ < delay_until_) latency += rng_.below(delay_max_us_ + 1);
  Time at = now_ + latency;
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

void World::deliver(std::uint32_t slot) {
  core::Message m = std::move(*wire_[slot]);
  wire_[slot].reset();
  wire_free_.push_back(slot);
  Node& n = node(m.to);
  const std::size_t from = m.from.value() - 1, to = m.to.value() - 1;
  if (!n.up || blocked_[from * opt_.nodes + to]) return;
  mix(0xde11 ^ (m.from.value() << 8) ^ (m.to.value() << 16) ^ (m.body.index() << 24));
  if (opt_.trace) trace("n", m.from, " => n", m.to, " ", describe(m.body));
  auto r = n.core->step(std::move(m));
  if (!r && checker_failure_.empty()) {
    // Every message here comes from a correct core: refusing one means a protocol bug.
    checker_failure_ = detail::concat("protocol: n", n.id, " refused a message: ",
                                      r.error().message());
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
  n.inbox.push_back(Waiting{c, attempt, clients_[c].op});
}

void World::propose_batch(Node& n) {
  std::vector<Bytes> payloads;
  for (const Waiting& w : n.inbox) {
    payloads.push_back(encode_op(history_[w.op].is_read ? op_read : op_inc, w.op));
  }
  auto r = n.core->propose(payloads);
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
                     fault_crash, fault_torn}) {
    if (opt_.faults & b) kinds.push_back(b);
  }
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
    case fault_partition:
      partition();
      schedule(now_ + duration, Ev::heal_partition, 0, 0, partition_id_);
      break;
    case fault_crash:
    case fault_torn: {
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
        trace("fault: n", n.id, when == 1 ? " will crash while writing its next vote"
                                          : " will crash after its next election");
        break;
      }
      crash(n, kind == fault_torn);
      schedule(now_ + duration, Ev::restart, static_cast<std::uint32_t>(n.id.value()),
               n.incarnation);
      break;
    }
    default:
      break;
  }
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

void World::heal() {
  healing_ = true;
  healed_at_ = now_;
  std::fill(blocked_.begin(), blocked_.end(), 0);
  drop_until_ = dup_until_ = reorder_until_ = delay_until_ = 0;
  for (Node& n : nodes_) {
    n.crash_on_vote = 0;
    n.crash_on_lead = 0;
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
  if (!leader) return false;
  const Index commit = leader->core->log().commit_index();
  if (commit != leader->core->log().last_index()) return false;
  for (const Node& n : nodes_) {
    if (n.applied != commit) return false;
  }
  return true;
}

std::vector<const std::vector<Entry>*> World::durable_logs() const {
  std::vector<const std::vector<Entry>*> logs;
  for (const Node& n : nodes_) logs.push_back(&n.durable);
  return logs;
}

void World::final_checks() {
  audit();
  checker_.check_durable(durable_logs());
  checker_.check_linearizable(history_);
}

void World::dispatch(const Event& e) {
  switch (e.kind) {
    case Ev::tick: {
      Node& n = node(NodeId(e.a));
      if (!n.up || n.incarnation != e.b) return;
      n.core->tick();
      after_input(n);
      schedule(now_ + tick_us, Ev::tick, e.a, e.b);
      return;
    }
    case Ev::deliver: deliver(e.a); return;
    case Ev::disk_done: {
      Node& n = node(NodeId(e.a));
      if (n.up && n.incarnation == e.b) disk_done(n);
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
      std::uint8_t& armed = e.c == 1 ? n.crash_on_lead : n.crash_on_vote;
      if (!n.up || n.incarnation != e.b || !armed || healing_) return;
      const bool torn = armed == 2;
      const Time down = n.crash_down_us;
      crash(n, torn);
      schedule(now_ + down, Ev::restart, e.a, n.incarnation);
      return;
    }
    case Ev::heal_partition:
      if (e.c == partition_id_ && !healing_) {
        std::fill(blocked_.begin(), blocked_.end(), 0);
        trace("fault: partition healed");
      }
      return;
    case Ev::audit: on_audit(); return;
  }
}

// The periodic audit also moves the run through its phases: heal once the safety phase is
// over, stop once liveness holds, fail if it does not hold in time.
void World::on_audit() {
  audit();
  if (!healing_ && now_ >= safety_us && (history_.size() >= ops_min || now_ >= safety_cap_us)) {
    heal();
  }
  if (healing_ && finished()) {
    stop_ = true;
    return;
  }
  if (healing_ && now_ - healed_at_ > liveness_us) {
    std::uint64_t open = 0;
    for (const Client& c : clients_) open += c.busy ? 1 : 0;
    std::string servers;
    for (const Node& n : nodes_) {
      servers += detail::concat(" n", n.id, ":", core::to_string(n.core->role()), "/t",
                                n.core->term(), "/applied=", n.applied, "/last=",
                                n.core->log().last_index());
    }
    checker_failure_ = detail::concat("liveness: 10 s after healing, ", open,
                                      " operations open, servers", servers);
    stop_ = true;
    return;
  }
  schedule(now_ + (healing_ ? audit_us / 10 : audit_us), Ev::audit);
}

SeedResult World::run() {
  nodes_.resize(opt_.nodes);
  for (std::uint32_t i = 0; i < opt_.nodes; ++i) nodes_[i].id = NodeId(i + 1);
  link_clock_.assign(opt_.nodes * opt_.nodes, 0);
  blocked_.assign(opt_.nodes * opt_.nodes, 0);
  clients_.resize(clients);
  for (Node& n : nodes_) start_node(n);
  for (std::uint32_t c = 0; c < clients; ++c) {
    schedule(rng_.range(0, think_max_us), Ev::client_next, c);
  }
  plan_faults();
  schedule(audit_us, Ev::audit);
  while (!stop_ && !queue_.empty() && !checker_.failed()) {
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

}  // namespace

bool parse_faults(std::string_view text, std::uint32_t& mask, std::string& error) {
  static constexpr std::pair<std::string_view, FaultBit> names[] = {
      {"drop", fault_drop},   {"dup", fault_dup},     {"reorder", fault_reorder},
      {"delay", fault_delay}, {"partition", fault_partition},
      {"crash", fault_crash}, {"torn", fault_torn}};
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
              "' (known: drop, dup, reorder, delay, partition, crash, torn, all, none)";
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
  static constexpr const char* names[] = {"drop", "dup", "reorder", "delay",
                                          "partition", "crash", "torn"};
  std::string out;
  for (int b = 0; b < 7; ++b) {
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
