// The node's driver: one protocol core, its durable stream, its transport and its state machine,
// all driven from one executor. Everything here runs on that executor unless it says otherwise.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <variant>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include <coraft/node.hpp>

#include "core/core.hpp"
#include "net/transport.hpp"
#include "node/ports.hpp"
#include "storage/file_worker.hpp"
#include "storage/snapshot_store.hpp"

namespace coraft::detail {

using Clock = std::chrono::steady_clock;

inline NodeRole role_of(core::Role r) {
  switch (r) {
    case core::Role::follower: return NodeRole::follower;
    case core::Role::pre_candidate: return NodeRole::pre_candidate;
    case core::Role::candidate: return NodeRole::candidate;
    case core::Role::leader: return NodeRole::leader;
  }
  return NodeRole::follower;
}

// A one-shot wake-up for a single waiting coroutine; a notify before the wait is not lost.
class Event {
 public:
  explicit Event(const asio::any_io_executor& ex);
  void notify();
  asio::awaitable<void> wait();

 private:
  asio::steady_timer timer_;
  bool pending_ = false;
};

// A Result<void> that a completion, run on the executor, hands to one waiting coroutine.
struct PendingResult {
  explicit PendingResult(const asio::any_io_executor& ex) : done(ex) {}
  void set(Result<void> r) {
    result = std::move(r);
    done.notify();
  }
  asio::awaitable<Result<void>> get() {
    while (!result) co_await done.wait();
    co_return std::move(*result);
  }
  Event done;
  std::optional<Result<void>> result;
};

class NodeImpl : public std::enable_shared_from_this<NodeImpl> {
 public:
  NodeImpl(asio::any_io_executor ex, NodeConfig config, StateMachine& sm, node::Hooks hooks);
  ~NodeImpl();

  // Opens storage, restores the snapshot, replays the log and starts every coroutine.
  Result<void> open();

  // ---- Operations (on the executor) ----
  void propose(std::vector<Bytes> payloads, Completion<ProposedBatch> batch_done,
               Completion<Proposed> one_done, std::uint64_t op);
  void read_barrier(Completion<Index> done, std::uint64_t op);
  void change(std::vector<NodeId> voters, std::vector<NodeId> learners,
              std::vector<ServerAddress> addresses, std::vector<NodeId> auto_promote,
              Completion<Configuration> done);
  void single_change(ServerAddress server, int kind, Completion<Configuration> done);
  void transfer(std::optional<NodeId> target, Completion<NodeId> done);
  void snapshot(Completion<Index> done);
  [[nodiscard]] NodeStatus status() const;
  // What the node's bounded queues hold now (for tests that check the limits hold).
  struct QueueUse {
    std::size_t proposals = 0;         // proposals waiting to be applied
    std::uint64_t proposal_bytes = 0;  // their payload bytes (pending_proposal_bytes_max)
    std::size_t reads = 0;             // read_barrier() calls waiting (reads_pending_max)
    std::size_t to_apply = 0;          // committed entries not yet applied (apply_lag_entries_max)
    std::uint64_t append_bytes = 0;    // log appends waiting for the disk (log_queue_bytes_max)
    std::size_t deferred_answers = 0;  // chunk answers waiting for a durable term
  };
  [[nodiscard]] QueueUse queue_use() const {
    return QueueUse{proposals_.size(), proposal_bytes_,         reads_.size(),
                    to_apply_.size(),  append_bytes_in_flight_, deferred_answers_.size()};
  }
  // Chunk answers kept while their term is not yet durable (see answer_chunk).
  static constexpr std::size_t deferred_answers_max = 8;
  [[nodiscard]] NodeMetrics metrics() const;
  void stop(Completion<void> done);
  void cancel(std::uint64_t op);
  void observe(std::function<void(const NodeEvent&)> fn);

  [[nodiscard]] std::uint16_t listen_port() const noexcept { return listen_port_; }
  [[nodiscard]] NodeId id() const noexcept { return config_.id; }
  [[nodiscard]] const asio::any_io_executor& executor() const noexcept { return ex_; }
  [[nodiscard]] bool running() const noexcept { return started_ && !stopping_; }

 private:
  struct ProposalWaiter {
    Term term;
    Index last;
    std::uint64_t op = 0;
    std::uint64_t bytes = 0;
    std::vector<Bytes> replies;
    Completion<ProposedBatch> batch;
    Completion<Proposed> one;
  };
  struct ReadWaiter {
    std::uint64_t id = 0;
    Clock::time_point deadline;
    Index index;  // 0 until the core confirmed the read
    Completion<Index> done;
  };
  struct ConfigWaiter {
    Index index;
    Term term;
    Completion<Configuration> done;
  };
  struct TransferWaiter {
    Clock::time_point deadline;
    Completion<NodeId> done;
  };
  // One output's durable work, in the order outputs were taken.
  struct WriteJob {
    std::uint64_t write = 0;  // the output's write number, acknowledged by persisted()
    std::optional<core::HardState> hard_state;
    std::optional<Index> truncate_from;
    std::vector<Entry> entries;
    std::uint64_t bytes = 0;
    std::vector<core::Message> after;
    // A received snapshot to install (output.hpp step 2): the staged file, and whether the log
    // holds the snapshot's last entry (then it keeps what follows; else it is cleared).
    std::optional<SnapshotMeta> install;
    std::shared_ptr<storage::SnapshotStore::Receiver> staged;
    bool keeps_log = false;
    Clock::time_point started;
    bool done = false;
  };
  // A snapshot this leader streams to one follower.
  struct OutStream {
    explicit OutStream(const asio::any_io_executor& ex) : progress(ex) {}
    core::SnapshotSend send;
    std::uint64_t acked = 0;  // bytes the follower holds durably
    bool answered = false;    // the follower's core answered: it holds the snapshot now
    bool rejected = false;    // the follower refused a chunk
    bool cancelled = false;   // superseded, or no longer this leadership's
    std::uint64_t waits = 0;  // the stream's waits so far: a sleeper wakes only its own
    Event progress;
  };
  // A snapshot this node receives.
  struct InStream {
    NodeId from;
    Term term;
    std::uint64_t stream = 0;  // the sender's id of the stream
    SnapshotMeta meta;
    std::shared_ptr<storage::SnapshotStore::Receiver> receiver;
    std::uint64_t expected = 0;  // the next offset accepted (writes queued included)
  };
  struct Backoff {
    Clock::duration delay{};
    Clock::time_point not_before{};
  };

  // Opens the data directory's log, hard state and snapshot store: what they hold goes to
  // `durable` (the newest snapshot restored into the state machine), `port` continues them.
  Result<void> open_data_dir(core::DurableState& durable, std::unique_ptr<node::DurablePort>& port);
  // Opens the data directory's snapshot store and restores its newest snapshot, if any.
  Result<void> open_snapshots(core::DurableState& durable);
  // Whether the stored log [first, last] continues the stored snapshot (warns when not).
  bool log_continues_snapshot(const core::DurableState& durable, Index first, Index last,
                              const std::function<Result<Term>(Index)>& term_at) const;
  // Snapshot file work: on the shared file worker, or where Hooks::file_jobs says.
  void submit_file_job(storage::FileWorker::Job job, storage::FileWorker::Done done);

  // ---- The driver ----
  void drain();
  void drain_soon();
  void handle(core::Output out);
  void send(core::Message m);
  // Sends `m`, or holds it back when it is an AppendEntries without entries (a commit notice,
  // commit_notice_delay); a later message to the same peer replaces or flushes the held one.
  void send_or_hold(core::Message m);
  // Sends the held commit notices due by `now`.
  void send_notices_due(Clock::time_point now);
  void on_receive(core::Message m);
  void on_soft_state(const core::SoftState& s);
  void complete_writes();
  // True while a write taken before `job` has not finished.
  [[nodiscard]] bool earlier_append_pending(const WriteJob* job) const;
  void fail_stop(const Error& e);
  void fail_waiters_from(Index from, Errc code);
  void fail_unknown_after_commit();
  void settle_applied_config_waiters();
  void resolve_reads();
  void sweep_timeouts(Clock::time_point now);
  void check_disk_stall(Clock::time_point now);
  // The voter other than this one whose log matches the leader's furthest; no_node if none.
  [[nodiscard]] NodeId most_caught_up_voter() const;
  void emit(NodeEvent ev);
  void learn_addresses(const Configuration& conf);
  [[nodiscard]] std::string address_of(NodeId id) const;
  // Whether the configuration gives this server an address other than its listen address.
  [[nodiscard]] bool advertised() const noexcept { return config_.advertise_port != 0; }
  [[nodiscard]] Error not_leader() const;
  // Adds the leader's address to a not_leader error.
  [[nodiscard]] Error with_leader_address(Error e) const;
  [[nodiscard]] Result<void> admit_proposal(std::uint64_t bytes, std::size_t count) const;

  // The node's clock: hooks_.time if given, else the steady clock.
  [[nodiscard]] Clock::time_point now() const {
    return hooks_.time ? hooks_.time->now() : Clock::now();
  }
  // Waits until now() reaches `at`; `timer` is the caller's, used with the steady clock.
  asio::awaitable<void> sleep_until(asio::steady_timer& timer, Clock::time_point at);
  asio::awaitable<void> ticker();
  asio::awaitable<void> notifier();
  asio::awaitable<void> writer();
  asio::awaitable<void> append_job(std::shared_ptr<WriteJob> job);
  asio::awaitable<void> applier();
  // Where the state machine runs: to_state_machine() resumes the calling coroutine on the apply
  // thread, from_state_machine() back on the node's executor; with apply_inline both stay on
  // the executor.
  asio::awaitable<void> to_state_machine();
  asio::awaitable<void> from_state_machine();
  asio::awaitable<void> take_snapshot();
  Result<void> save_snapshot(const SnapshotMeta& meta,
                             const std::function<Result<void>(SnapshotSink&)>& save);
  asio::awaitable<void> save_copy(SnapshotMeta meta, std::unique_ptr<SnapshotCopy> copy,
                                  std::vector<Completion<Index>> waiters);
  asio::awaitable<void> finish_snapshot(SnapshotMeta meta, Result<void> saved,
                                        std::vector<Completion<Index>> waiters);

  // ---- Snapshot streams (snapshots.cpp) ----
  void start_snapshot_stream(const core::SnapshotSend& s);
  asio::awaitable<void> stream_snapshot(std::shared_ptr<OutStream> st);
  void on_snapshot_response(NodeId from, const core::InstallSnapshotResponse& r);
  void on_snapshot_chunk(NodeId from, core::InstallSnapshot chunk);
  // A hard state of term `t` is durable: sends a chunk answer that waited for it.
  void on_term_durable(Term t);
  void on_chunk_written(const std::shared_ptr<storage::SnapshotStore::Receiver>& rec, NodeId from,
                        Term term, Index last, std::uint64_t end, bool done, bool synced,
                        Result<void> r);
  void on_stream_received(const std::shared_ptr<storage::SnapshotStore::Receiver>& rec, NodeId from,
                          Term term, const SnapshotMeta& meta, Result<storage::SnapshotInfo> r);
  void answer_chunk(NodeId to, Term term, Index last, std::uint64_t stream, std::uint64_t next,
                    bool ok);
  void cancel_snapshot_streams();
  asio::awaitable<Result<void>> install_staged(WriteJob& job);
  // Loads the stored snapshot `meta` names into the state machine, on the apply thread.
  asio::awaitable<Result<void>> restore_stored(SnapshotMeta meta);
  asio::awaitable<Result<void>> on_file_worker(storage::FileWorker::Job job);
  asio::awaitable<void> stopper(Completion<void> done);
  void spawn(asio::awaitable<void> a);

  asio::any_io_executor ex_;
  NodeConfig config_;
  StateMachine& sm_;
  node::Hooks hooks_;

  std::optional<core::Core> core_;
  std::unique_ptr<node::DurablePort> durable_;
  std::unique_ptr<net::Transport> transport_;
  std::uint16_t listen_port_ = 0;
  std::map<NodeId, ServerAddress> addresses_;
  std::vector<NodeId> transport_members_;  // the members made the transport's peers, sorted

  // The apply thread and its context.
  asio::io_context apply_io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> apply_work_;
  std::thread apply_thread_;

  Event write_event_;
  Event written_event_;
  Event apply_event_;
  // Commit notices held back, at most one per peer, each with the time it is due.
  struct HeldNotice {
    Clock::time_point due;
    core::Message message;
  };
  std::vector<HeldNotice> notices_;
  Event notice_event_;
  std::deque<std::shared_ptr<WriteJob>> writes_;  // every job not yet acknowledged, in order
  std::size_t writes_started_ = 0;                // of writes_, how many the writer took
  std::uint64_t appends_in_flight_ = 0;
  std::uint64_t append_bytes_in_flight_ = 0;
  std::deque<Entry> to_apply_;
  bool snapshot_requested_ = false;
  bool snapshot_saving_ = false;  // a point-in-time copy is being written out
  std::vector<Completion<Index>> snapshot_waiters_;

  using ProposalMap = std::map<Index, ProposalWaiter>;
  // Removes the waiter, completes it with `code`; returns the next waiter.
  ProposalMap::iterator fail_proposal(ProposalMap::iterator it, Errc code);
  ProposalMap proposals_;  // by first index
  std::uint64_t proposal_bytes_ = 0;
  std::unordered_map<std::uint64_t, ReadWaiter> reads_;
  std::multimap<Index, std::uint64_t> reads_by_index_;
  std::vector<ConfigWaiter> config_waiters_;
  std::vector<TransferWaiter> transfer_waiters_;
  std::vector<std::function<void(const NodeEvent&)>> observers_;

  core::SoftState soft_;
  // The configuration last handed to learn_addresses() and observers.
  Configuration seen_conf_;
  Index seen_conf_index_;
  Configuration applied_conf_;
  Index applied_;
  Index commit_seen_;
  std::uint64_t applied_since_snapshot_ = 0;
  std::unordered_map<std::uint64_t, Clock::time_point> last_contact_;
  std::uint64_t applied_bytes_since_snapshot_ = 0;
  std::optional<storage::SnapshotStore> store_;
  std::unique_ptr<storage::FileWorkerChannel> file_worker_;
  std::map<NodeId, std::shared_ptr<OutStream>> out_streams_;
  std::map<NodeId, Backoff> snapshot_backoff_;
  std::optional<InStream> in_stream_;
  // A received snapshot handed to the core, until an install takes it.
  std::shared_ptr<storage::SnapshotStore::Receiver> staged_;
  bool staged_keeps_log_ = false;
  // Installed durably; the applier loads it into the state machine next.
  std::optional<SnapshotMeta> restore_pending_;
  // The latest term the stored hard state holds, and the chunk answers waiting for a later one:
  // the latest per (peer, stream), as answers within a stream are cumulative, and at most
  // deferred_answers_max of them (the oldest goes; its stream times out and starts again).
  Term durable_term_;
  std::vector<core::Message> deferred_answers_;
  // From the output that installs a snapshot until the state machine holds it: nothing is
  // applied meanwhile (entries after the snapshot must not reach the old state), a new stream
  // of the same snapshot is ignored and one of another is refused.
  std::optional<Index> installing_;
  // The stored log does not continue the stored snapshot: the writer clears it first.
  bool clear_log_on_start_ = false;
  NodeMetrics metrics_;
  bool draining_ = false;
  bool drain_posted_ = false;
  bool writer_busy_ = false;   // the writer awaits a hard-state save or a truncation
  bool applier_busy_ = false;  // the applier is on the apply thread
  bool started_ = false;
  bool stopping_ = false;
  bool disk_full_ = false;
  bool stall_reported_ = false;
  std::string failure_;
  int coroutines_ = 0;
};

// Loads the state machine from a verified stored snapshot, reading the file in blocks.
Result<void> restore_from_file(StateMachine& sm, const storage::SnapshotInfo& info);

// For tests: start a node with hooks.
void start_node(asio::any_io_executor ex, NodeConfig config, StateMachine& sm, node::Hooks hooks,
                Completion<std::shared_ptr<Node>> done);

}  // namespace coraft::detail
