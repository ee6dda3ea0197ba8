// The simulated world's parts, shared by its source files: run parameters, event kinds, the
// state of nodes and clients, and the World class that drives them. Internal to coraft-sim.
#pragma once

#include <algorithm>
#include <deque>
#include <map>
#include <optional>
#include <queue>
#include <string>
#include <utility>
#include <vector>

#include <coraft/text.hpp>

#include "checker.hpp"
#include "core/core.hpp"
#include "sim_rng.hpp"
#include "world.hpp"

namespace coraft::sim::impl {

using Time = std::uint64_t;  // simulated microseconds
constexpr Time never = ~Time(0);

// ---- Parameters of a run ----
constexpr Time tick_us = 10'000;
constexpr Time safety_us = 20'000'000;      // fault phase: at least this long...
constexpr std::uint64_t ops_min = 500;      // ...and at least this many operations invoked
constexpr Time safety_cap_us = 60'000'000;  // but never longer than this
constexpr Time liveness_us = 10'000'000;    // after healing, everything must finish in this...
constexpr Time audit_us = 500'000;          // period of the log-matching audit
// Once liveness holds, the run goes on this long with no fault and no client: the leader must
// keep leading (World::check_stability).
constexpr Time stability_us = 1'000'000;
constexpr std::uint32_t clients = 8;
constexpr Time think_min_us = 1'000, think_max_us = 250'000;
constexpr Time attempt_timeout_us = 400'000;
constexpr Time client_hop_us = 100;  // client <-> server latency
constexpr std::uint32_t faults_min = 8, faults_extra = 17;
constexpr std::uint32_t post_heal_ops = 2;  // each client must complete this many after healing
// Events one seed may take; the busiest seeds of 7 servers take about 300,000.
constexpr std::uint64_t events_max = 5'000'000;

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
  snapshot_arrive,
  drain,
  hold_cut,
  disk_flush,
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

// The counter state machine, as a snapshot holds it.
struct SmState {
  std::uint64_t counter = 0;
  std::vector<std::uint64_t> op_value;
};

// A snapshot on its way to a follower (the node layer's stream, modelled as one transfer).
struct SnapshotStream {
  std::uint64_t stream;  // SnapshotSend::stream
  NodeId from;
  std::uint32_t from_incarnation;
  NodeId to;
  Term term;
  SnapshotMeta meta;
  SmState state;
};

struct DiskWrite {
  std::uint64_t write = 0;  // the output's write number, acknowledged with persisted()
  std::optional<core::HardState> hard_state;
  // A received snapshot made the stored one, with the state it holds.
  std::optional<SnapshotMeta> install;
  SmState install_state;
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
  // Invariant: contiguous; starts at 1, or after the stored snapshot, or within it.
  std::vector<Entry> durable;
  std::optional<SnapshotMeta> snap;  // the stored snapshot and the state it holds
  SmState snap_state;
  SmState staged;  // a received snapshot, before the core accepts it
  // The newest snapshot the core knows of (taken, or installed and maybe not yet stored).
  Configuration applied_conf;  // the configuration as of the applied index
  Term led_term;               // the last term this server led (this incarnation)
  Term checked_term;           // the last term the checker counted it as leader of
  std::optional<SnapshotMeta> latest_snap;
  SmState latest_state;
  std::deque<DiskWrite> writes;
  Time disk_busy_until = 0;
  // The counter state machine, rebuilt from the log after a restart.
  std::uint64_t counter = 0;
  std::vector<std::uint64_t> op_value;  // by op id; 0 = not applied
  Index applied;
  std::map<Index, Pending> pending;        // proposals accepted here, by log index
  std::vector<Waiting> inbox;              // requests waiting to be proposed as one batch
  std::map<std::uint64_t, Pending> reads;  // reads asked of the core, by op id
  std::multimap<Index, Pending> reads_waiting_apply;  // confirmed reads, by read index
  // A crash armed to strike when this server next starts writing a new term or vote: the most
  // dangerous moment for a vote (crash = 1, torn = 2), and how long to stay down.
  std::uint8_t crash_on_vote = 0;
  // A crash armed to strike within milliseconds of this server next winning an election, while
  // its first entries are still in flight (crash = 1, torn = 2).
  std::uint8_t crash_on_lead = 0;
  // A crash armed to strike when this server next starts writing a vote for another server.
  std::uint8_t crash_on_grant = 0;
  // A crash scheduled for a set time by a schedule of its own (cut_after_joint, stale_leader).
  std::uint8_t crash_planned = 0;
  Time crash_down_us = 0;
  // This server's tick period (clock skew), and the driver's state: a drain of the core's
  // output already scheduled (batching), and the messages of completed writes not yet
  // acknowledged to the core (coalescing).
  Time tick_period = tick_us;
  // When this server last took a message from the leader it follows (check_vote_guard).
  Time heard_leader_at = never;
  // What check_read_basis knows of this server's leadership: when it last ticked, its heartbeat
  // rounds in `rounds_term` (when each went out, and when the lease it gives ends), the newest
  // round each server answered, and when each read reached this core.
  Time last_tick_at = 0;
  Term rounds_term;
  std::map<std::uint64_t, std::pair<Time, Time>> rounds;
  std::map<NodeId, std::uint64_t> round_acked;
  // (origin, id) -> arrival, covered by a lease then, configuration index then; the earliest
  // of equal ids first
  struct ReadAsked {
    Time at;
    bool leased;
    Index configuration;
  };
  std::multimap<std::pair<std::uint64_t, std::uint64_t>, ReadAsked> read_asked;
  bool drain_scheduled = false;
  // The driver takes no output from this server before then (World::hold_follower).
  Time drain_held_until = 0;
  // The disk completes no write until World::flush_disk (World::stall_disk).
  bool disk_stalled = false;
  std::vector<core::Message> unacked_after;
  // What World::check_transfer saw after this server's last input: the voter it was handing
  // leadership to (no_node if none), in which term, and its last index then.
  NodeId transfer_seen;
  Term transfer_term;
  Index transfer_last;
  // The last index the disk holds once every write handed to it is done.
  Index disk_last;
  // What World::check_electable last saw of this server after one of its inputs: how up to
  // date it is as a voter and as a candidate (last term, last index), its log's offset, its
  // configuration's index and its incarnation.
  struct ElectableSeen {
    std::pair<std::uint64_t, std::uint64_t> voter, candidate;
    std::uint64_t offset = 0, configuration = 0, incarnation = 0;
  } electable_seen;
};

struct Client {
  bool busy = false;
  std::uint32_t after_heal = 0;  // operations invoked after healing
  std::uint64_t op = 0;
  std::uint32_t attempt = 0;
  NodeId leader_guess;
};

enum : std::uint8_t { op_inc = 1, op_read = 2 };

inline Bytes encode_op(std::uint8_t kind, std::uint64_t op) {
  std::byte buf[9];
  buf[0] = std::byte{kind};
  for (int i = 0; i < 8; ++i) buf[1 + i] = static_cast<std::byte>(op >> (8 * i));
  return Bytes::copy_of(std::span<const std::byte>(buf, 9));
}

inline bool decode_op(const Bytes& b, std::uint8_t& kind, std::uint64_t& op) {
  if (b.size() != 9) return false;
  kind = static_cast<std::uint8_t>(b[0]);
  op = 0;
  for (int i = 0; i < 8; ++i) op |= static_cast<std::uint64_t>(b[1 + i]) << (8 * i);
  return true;
}

inline std::string describe(const core::MessageBody& b) {
  using namespace core;
  if (const auto* v = std::get_if<VoteRequest>(&b)) {
    return detail::concat(v->pre_vote ? "PreVote" : "Vote", " term=", v->term,
                          " last=", v->last_log_index, "/", v->last_log_term);
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
                          " match=", a->match_index, " last=", a->last_log_index,
                          " hint=", a->conflict_index, "/", a->conflict_term);
  }
  if (const auto* h = std::get_if<HeartbeatRequest>(&b)) {
    return detail::concat("Heartbeat term=", h->term, " commit=", h->leader_commit);
  }
  if (const auto* h = std::get_if<HeartbeatResponse>(&b)) {
    return detail::concat("HeartbeatResponse term=", h->term, " round=", h->read_context);
  }
  if (const auto* is = std::get_if<InstallSnapshot>(&b)) {
    return detail::concat("InstallSnapshot term=", is->term, " last=", is->meta.last_index, "/",
                          is->meta.last_term);
  }
  if (const auto* r = std::get_if<InstallSnapshotResponse>(&b)) {
    return detail::concat("InstallSnapshotResponse term=", r->term, " last=", r->last_index,
                          r->success ? " ok" : " failed");
  }
  if (const auto* r = std::get_if<ReadIndexRequest>(&b)) {
    return detail::concat("ReadIndexRequest term=", r->term, " read=", r->context);
  }
  if (const auto* r = std::get_if<ReadIndexResponse>(&b)) {
    return detail::concat("ReadIndexResponse term=", r->term, " read=", r->context,
                          " index=", r->read_index, r->success ? " ok" : " refused");
  }
  return detail::concat(message_name(b), " term=", term_of(b));
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
  bool lease_reads;
  std::uint64_t snapshot_trailing_entries;
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
    k.lease_reads = k.check_quorum && rng.below(2) == 0;
    static constexpr std::uint64_t trailing[] = {0, 3, 50};
    k.snapshot_trailing_entries = trailing[rng.below(3)];
    k.disk_us_max = disk[rng.below(3)];
    k.think_max_us = think[rng.below(3)];
    return k;
  }
};

// Knobs of the later schedules, drawn from a generator of their own so that a seed that uses
// none of them replays the run it always had.
struct Extras {
  // Membership changes may leave a single voter (with learners): it wins elections alone.
  bool one_voter;
  // Servers' clocks run at different rates, as fast apart as lease_clock_drift_ticks allows;
  // 0 when every clock runs at one rate (and the drift is the default).
  std::uint32_t drift;
  // The driver gives a server several inputs before it takes the output, within this many
  // microseconds (0: an output after every input).
  Time batch_us;
  // The driver acknowledges a run of completed writes with one persisted() for the last.
  bool coalesce;
  // A cut link delays its messages by seconds instead of dropping them, and in delay faults one
  // message in 32 is seconds late: messages of old terms arrive long after their leadership
  // ended.
  bool slow_links;
  // PreVote off, whatever the seed's knobs say.
  bool no_pre_vote;
  // Config::pending_bytes_max (with entry_bytes_max 16), or 0 for the defaults.
  std::uint64_t pending_bytes_max;

  static Extras draw(std::uint64_t seed) {
    SimRng rng(seed ^ 0x5eed0f0e97a5ull);
    Extras x;
    x.one_voter = rng.below(3) == 0;
    x.drift = rng.below(2) == 0 ? static_cast<std::uint32_t>(rng.range(1, 3)) : 0;
    static constexpr Time batch[] = {0, 0, 400, 5'000};
    x.batch_us = batch[rng.below(4)];
    x.coalesce = rng.below(2) == 0;
    x.slow_links = rng.below(2) == 0;
    x.no_pre_vote = rng.below(4) == 0;
    static constexpr std::uint64_t pending_bytes[] = {0, 0, 64, 512};
    x.pending_bytes_max = pending_bytes[rng.below(4)];
    return x;
  }
};

class World {
 public:
  World(std::uint64_t seed, const SimOptions& o)
      : seed_(seed), opt_(o), rng_(seed), knobs_(Knobs::draw(rng_)), extras_(Extras::draw(seed)) {}

  SeedResult run();

 private:
  // ---- Events ----
  void schedule(Time at, Ev kind, std::uint32_t a = 0, std::uint32_t b = 0, std::uint64_t c = 0,
                std::uint64_t d = 0) {
    queue_.push(Event{at, seq_++, kind, a, b, c, d});
    if (kind == Ev::deliver || kind == Ev::snapshot_arrive)
      latest_delivery_ = std::max(latest_delivery_, at);
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
  void disk_done(Node& n, bool group = false);
  void after_input(Node& n);
  void on_new_leader(Node& n);
  void check_output(Node& n, const core::Output& out);
  void check_persisted(Node& n);
  void check_transfer(Node& n);
  void check_vote_guard(Node& n, NodeId candidate);
  void check_stability(Node& n);
  void note_round(Node& n, Term term, std::uint64_t seq);
  void sync_rounds(Node& n);
  void note_read(Node& n, NodeId origin, std::uint64_t read);
  void check_read_basis(Node& n, NodeId origin, std::uint64_t read);
  std::pair<std::uint64_t, const std::pair<Time, Time>*> confirmed_round(const Node& n) const;

  // ---- Network ----
  // `checked`: Checker::on_send already saw it when the write it waited for completed.
  void net_send(core::Message m, bool checked = false);
  void deliver(std::uint32_t slot, bool through_cut);
  std::uint32_t park(core::Message m);

  // ---- Clients ----
  void client_next(std::uint32_t c);
  void client_attempt(std::uint32_t c, Time delay);
  void client_request(std::uint32_t c, std::uint32_t attempt, NodeId target);
  void propose_batch(Node& n);
  void client_done(std::uint32_t c, std::uint64_t op, std::uint64_t value);
  void read_request(Node& n, const Waiting& w);
  void handle_reads(Node& n, const core::Output& out);
  void serve_reads(Node& n);
  void transfer();
  void transfer_now(Node& n, NodeId target);
  void promotion_tick(Node& n);
  void reconfig();
  void restore_membership();
  Configuration full_configuration() const;
  std::size_t durable_quorum() const;

  // ---- Snapshots (snapshots.cpp) ----
  bool take_snapshot();
  void send_snapshots(Node& n, const core::Output& out);
  void snapshot_arrive(std::uint32_t slot);
  void install_snapshot(Node& n, const SnapshotMeta& meta, DiskWrite& w);
  void store_write(Node& n, DiskWrite& w, std::size_t keep_entries, bool keep_truncate);
  void restore_state_machine(Node& n);
  std::vector<SnapshotStream> streams_;

  // ---- Faults ----
  void plan_faults();
  void inject_fault();
  NodeId pick_victim();
  void partition();
  void isolate(NodeId victim, Time duration);
  bool orphan_leaders();
  void forget_votes();
  void cut_after_joint(Node& n);
  void stale_leader();
  bool one_entry_messages() const;
  bool hold_follower();
  void hold_cut();
  void hold_on_lead(Node& n, Term term);
  void hold_after_input(Node& n);
  void release_hold(Node& n);
  NodeId other_voter(const std::vector<NodeId>& voters, NodeId self);
  std::pair<Node*, Node*> leader_and_spare_voter();
  void split(NodeId a, NodeId b);
  bool stall_disk();
  void stall_on_lead(Node& n, Term term);
  void flush_disk(Node& n);
  void orphans_on_lead(Node& n, Term term);
  void orphans_on_commit(Node& n);
  void heal();
  void audit();
  void on_audit();
  bool finished() const;
  Time catch_up_allowance() const;
  void final_checks();
  std::vector<DurableView> durable_logs() const;
  static DurableView durable_view(const Node& n);
  // Leader Completeness for elections still to come (Checker::check_electable), after an input
  // to `changed` or, without one, after a crash or a restart.
  void check_electable(Node* changed = nullptr);
  std::vector<ServerView> views_;          // scratch space for check_electable
  std::uint64_t electable_committed_ = 0;  // the committed entries at its last full check

  Node& node(NodeId id) { return nodes_[id.value() - 1]; }

  std::uint64_t seed_;
  SimOptions opt_;
  SimRng rng_;
  Knobs knobs_;
  Extras extras_;
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
  std::vector<Time> link_clock_;       // FIFO per directed link unless reordering
  std::vector<std::uint8_t> blocked_;  // [from * n + to]
  std::uint64_t partition_id_ = 0;
  // The steps of orphan_leaders() still to come.
  struct Orphans {
    enum Stage : std::uint8_t { idle, first_cut, second_cut, first_back } stage = idle;
    NodeId first;  // the leader cut off first
    Term term;     // the term of the last leader cut off
    Index commit;  // the first leader's commit index when it led again
  } orphans_;
  bool isolate_next_leader_ = false;  // forget_votes()
  // hold_follower(): the follower whose output waits, the leader cut off with it and its term.
  struct Held {
    enum Stage : std::uint8_t { idle, holding, cut, healed } stage = idle;
    NodeId follower, leader;
    Term term;
  } held_;
  // stall_disk(): the follower whose disk is stalled, the leader cut off with it and its term,
  // and the next leader, cut off with it in turn.
  struct Stall {
    enum Stage : std::uint8_t { idle, first_cut, second_cut, healed } stage = idle;
    NodeId follower, first, second;
    Term term;
  } stall_;
  // A leader that hands leadership over at the tick a learner's automatic promotion falls due
  // (promotion_tick): the learners, and the ticks each has been close enough to promote.
  struct PromotionWatch {
    NodeId leader;
    Term term;
    std::uint32_t ticks_left = 0;
    std::vector<std::pair<NodeId, std::uint32_t>> learners;
  } promotion_watch_;
  // The leader whose joint configuration, at `index`, is to commit before it is cut off
  // (`crash` false) or crashed (cut_after_joint()); no_node when none.
  struct JointCut {
    NodeId leader;
    Term term;
    Index index;
    bool crash = false;
  } joint_cut_;
  // The later schedules draw from a generator of their own, so that the runs of seeds that
  // take none of them do not change.
  SimRng schedule_rng_{seed_ ^ 0x5c4ed01e5ull};
  // Network fault windows and their strength.
  Time drop_until_ = 0, dup_until_ = 0, reorder_until_ = 0, delay_until_ = 0;
  std::uint64_t drop_ppm_ = 0, dup_ppm_ = 0;
  Time delay_max_us_ = 0;
  Time batch_hold_until_ = 0;  // drains wait until then (after_input)
  bool healing_ = false;
  Time healed_at_ = 0;
  // ...or by this time: liveness_us after healing, once extended by catch_up_allowance().
  Time liveness_deadline_ = 0;
  bool liveness_extended_ = false;
  bool restore_extended_ = false;  // extended again when restore_membership() got its change in
  // The stability check (check_stability): whether the seed's timing lets a leader that reaches
  // every server keep its lease, the slowest clock's tick, the latest delivery scheduled so far
  // (messages sent before healing may arrive late), when the check may start (set on healing),
  // whether liveness held, and when the quiet period after it ends.
  bool stability_applies_ = false;
  Time slowest_tick_ = tick_us;
  Time latest_delivery_ = 0;
  Time stability_from_ = never;
  bool finished_ = false;
  Time stable_until_ = 0;
  std::uint32_t faults_injected_ = 0;
  std::uint64_t ops_done_ = 0;
  bool stop_ = false;
  std::string checker_failure_;  // failures found outside the Checker (liveness, protocol)
};

}  // namespace coraft::sim::impl
