// A Raft node: the replicated log, driven on one Asio executor, behind one asynchronous API.
//
// Every operation takes an Asio completion token, so one call serves coroutines
// (`co_await node->propose(b, asio::use_awaitable)`), futures (`asio::use_future`) and plain
// callbacks (`[](Result<Proposed> r) {...}`). Operations may be started from any thread: the
// work is posted to the node's executor, and the completion runs on the token's associated
// executor (the node's executor for a plain callback). Propose and read_barrier honour the
// token's cancellation slot (emit from the thread of the caller's executor); a cancelled
// proposal may already be in the log (see the outcome rule below).
//
// THE OUTCOME RULE. A failed operation's Error says whether it happened:
// - Definite (Error::definite()): it did not happen and never will. not_leader (with the
//   leader's id and address when known), overloaded, too_large, invalid_argument, disk_full,
//   transfer_in_progress, config_change_pending, shutting_down (before the entry was appended),
//   dropped (this node's log now holds another entry at the proposal's index: it can never
//   commit), storage errors.
// - Indefinite: timeout, cancelled, and outcome_unknown (leadership was lost, or the node
//   stopped, after the entry was appended and before it was known to commit). The command may
//   still be applied. Retry only commands that are idempotent, or carry a client id and a
//   sequence number that the state machine uses to apply each command once (the counter app's
//   sessions do).
// Error::retryable() says whether calling again later may succeed.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/execution/outstanding_work.hpp>
#include <asio/post.hpp>
#include <asio/prefer.hpp>

#include <coraft/bytes.hpp>
#include <coraft/membership.hpp>
#include <coraft/node_config.hpp>
#include <coraft/result.hpp>
#include <coraft/state_machine.hpp>
#include <coraft/types.hpp>

namespace coraft {

// A proposal applied on this node: its index and the state machine's reply.
struct Proposed {
  Index index;
  Bytes reply;
};

// A batch of proposals applied on this node: the first index and one reply per payload.
struct ProposedBatch {
  Index first_index;
  std::vector<Bytes> replies;
};

enum class NodeRole : std::uint8_t { follower, pre_candidate, candidate, leader, stopped };
[[nodiscard]] const char* to_string(NodeRole r) noexcept;

struct PeerStatus {
  NodeId id;
  std::string address;
  bool voter = false;
  // The leader's view (zero on followers).
  Index match;
  Index next;
  std::uint32_t inflight_messages = 0;
  std::uint64_t inflight_bytes = 0;
  std::string replication;  // "probe", "replicate" or "snapshot"
  // The follower's entries were compacted away: it can catch up only from a snapshot.
  bool needs_snapshot = false;
  // Time since this node last received anything from the peer; nullopt: never.
  std::optional<std::chrono::milliseconds> last_contact;
};

struct NodeStatus {
  NodeId id;
  NodeRole role = NodeRole::follower;
  Term term;
  NodeId leader;
  std::string leader_address;
  Index commit;
  Index applied;
  Index last_log_index;
  Index snapshot_index;
  Configuration configuration;
  std::vector<PeerStatus> peers;
  // Why the node stopped on its own (a failed log write), empty while it runs.
  std::string failure;
};

// A change the node reports to observers, on the node's executor.
struct NodeEvent {
  enum class Kind : std::uint8_t { role, leader, configuration, stopped };
  Kind kind;
  NodeRole role;
  Term term;
  NodeId leader;
  Configuration configuration;
};

// Counters only grow; gauges are current values.
struct NodeMetrics {
  std::uint64_t proposals = 0;          // entries accepted by propose
  std::uint64_t proposals_refused = 0;  // proposals that failed before being appended
  std::uint64_t commits = 0;            // entries seen committed
  std::uint64_t applies = 0;            // commands applied
  std::uint64_t apply_batches = 0;
  std::uint64_t log_writes = 0;  // durable writes handed to the log (entries batches)
  std::uint64_t log_entries = 0;
  std::uint64_t log_bytes = 0;  // payload bytes made durable
  std::uint64_t hard_state_writes = 0;
  std::uint64_t elections = 0;                // campaigns this node started
  std::uint64_t leader_changes = 0;           // changes of the leader this node knows
  std::uint64_t snapshots = 0;                // snapshots of this node's state machine taken
  std::uint64_t snapshots_sent = 0;           // streams a follower installed (leader side)
  std::uint64_t snapshot_streams_failed = 0;  // streams given up (leader side)
  std::uint64_t snapshot_bytes_sent = 0;
  std::uint64_t snapshots_installed = 0;  // snapshots received and installed (follower side)
  std::uint64_t snapshot_bytes_received = 0;
  std::uint64_t messages_sent = 0;
  std::uint64_t messages_refused = 0;  // sends the transport refused (queue full)
  std::uint64_t messages_received = 0;
  // AppendEntries without entries (a commit index, or an empty probe) held back for
  // NodeConfig::commit_notice_delay and replaced, before they were due, by a later AppendEntries
  // or heartbeat to the same follower (or by a later notice): never sent.
  std::uint64_t commit_notices_replaced = 0;
  std::uint64_t reads = 0;  // read barriers completed
  std::uint64_t disk_stall_stepdowns = 0;
  // Gauges.
  std::uint64_t term = 0;
  std::uint64_t commit_index = 0;
  std::uint64_t applied_index = 0;
  std::uint64_t pending_proposals = 0;
  std::uint64_t pending_proposal_bytes = 0;
  std::uint64_t pending_reads = 0;
  std::uint64_t is_leader = 0;
  std::vector<std::pair<NodeId, std::uint64_t>> peer_lag;  // leader only: last index - match
};

namespace detail {

// A move-only, type-erased completion: what the node keeps of an operation's handler.
template <class T>
class Completion {
 public:
  Completion() = default;
  template <class F>
  explicit Completion(F f) : p_(std::make_unique<Impl<F>>(std::move(f))) {}
  // Completes once; later calls do nothing.
  void operator()(Result<T> r) {
    if (auto p = std::move(p_)) p->call(std::move(r));
  }
  explicit operator bool() const noexcept { return p_ != nullptr; }

 private:
  struct Base {
    virtual ~Base() = default;
    virtual void call(Result<T> r) = 0;
  };
  template <class F>
  struct Impl final : Base {
    explicit Impl(F fn) : f(std::move(fn)) {}
    void call(Result<T> r) override { f(std::move(r)); }
    F f;
  };
  std::unique_ptr<Base> p_;
};

// Installed in a cancellation slot: asks the node to cancel operation `op`.
using CancelFn = std::function<void()>;

class NodeImpl;

// Wraps an Asio handler so that it completes on its associated executor, keeping that
// executor's work alive until then.
template <class T, class Handler>
Completion<T> wrap(Handler h, const asio::any_io_executor& fallback) {
  auto ex = asio::get_associated_executor(h, fallback);
  auto work = asio::prefer(ex, asio::execution::outstanding_work.tracked);
  return Completion<T>([h = std::move(h), work = std::move(work)](Result<T> r) mutable {
    asio::post(work,
               [h = std::move(h), r = std::move(r)]() mutable { std::move(h)(std::move(r)); });
  });
}

}  // namespace detail

class Node : public std::enable_shared_from_this<Node> {
 public:
  // Opens the node's storage in config.data_dir (bootstrap() it first, or join an existing
  // cluster with an empty directory), restores the newest snapshot into `sm`, replays the log,
  // starts listening and completes with the running node. `sm` must outlive the node. Many
  // nodes may share one executor. Errors: invalid_argument (config.validate()), storage errors
  // naming the file, and the listen address in use.
  template <class Token>
  static auto start(asio::any_io_executor ex, NodeConfig config, StateMachine& sm, Token&& token) {
    return asio::async_initiate<Token, void(Result<std::shared_ptr<Node>>)>(
        [ex](auto handler, NodeConfig c, StateMachine* s) {
          start_impl(ex, std::move(c), *s,
                     detail::wrap<std::shared_ptr<Node>>(std::move(handler), ex));
        },
        token, std::move(config), &sm);
  }

  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Appends `payload` if this node leads; completes once it is applied here.
  template <class Token>
  auto propose(Bytes payload, Token&& token) {
    return initiate<Proposed>(
        std::forward<Token>(token),
        [p = std::move(payload)](detail::NodeImpl& n, auto done, std::uint64_t op) mutable {
          propose_one(n, std::move(p), std::move(done), op);
        });
  }
  // Appends every payload as one batch (all or none); completes once all are applied here.
  template <class Token>
  auto propose(std::vector<Bytes> payloads, Token&& token) {
    return initiate<ProposedBatch>(
        std::forward<Token>(token),
        [p = std::move(payloads)](detail::NodeImpl& n, auto done, std::uint64_t op) mutable {
          propose_many(n, std::move(p), std::move(done), op);
        });
  }
  // Completes once this node applied every entry committed before the call: the caller may
  // then read its state machine linearizably. Works on followers through the leader.
  template <class Token>
  auto read_barrier(Token&& token) {
    return initiate<Index>(std::forward<Token>(token),
                           [](detail::NodeImpl& n, auto done, std::uint64_t op) {
                             read_barrier_impl(n, std::move(done), op);
                           });
  }
  // Membership changes (leader only), each completing once the configuration entry that makes
  // the change is applied here; a joint change completes once its final configuration is.
  template <class Token>
  auto add_voter(ServerAddress server, Token&& token) {
    return change(std::move(server), Change::add_voter, std::forward<Token>(token));
  }
  // A learner receives the log but does not vote; with `auto_promote` the leader makes it a
  // voter once it has caught up.
  template <class Token>
  auto add_learner(ServerAddress server, bool auto_promote, Token&& token) {
    return change(std::move(server),
                  auto_promote ? Change::add_learner_promote : Change::add_learner,
                  std::forward<Token>(token));
  }
  template <class Token>
  auto remove_server(NodeId id, Token&& token) {
    return change(ServerAddress{id, {}, 0}, Change::remove, std::forward<Token>(token));
  }
  // Any change at once: the voters and learners wanted in the end (through a joint
  // configuration when more than one voter changes). `addresses` adds to the address book.
  template <class Token>
  auto change_membership(std::vector<NodeId> voters, std::vector<NodeId> learners,
                         std::vector<ServerAddress> addresses, Token&& token) {
    return initiate<Configuration>(
        std::forward<Token>(token),
        [v = std::move(voters), l = std::move(learners), a = std::move(addresses)](
            detail::NodeImpl& n, auto done, std::uint64_t) mutable {
          change_impl(n, std::move(v), std::move(l), std::move(a), {}, std::move(done));
        });
  }
  // Hands leadership to `target`, or to the most up-to-date voter; completes with the new
  // leader's id once this node sees another leader.
  template <class Token>
  auto transfer_leadership(std::optional<NodeId> target, Token&& token) {
    return initiate<NodeId>(std::forward<Token>(token),
                            [target](detail::NodeImpl& n, auto done, std::uint64_t) {
                              transfer_impl(n, target, std::move(done));
                            });
  }
  // Saves the state machine as a snapshot of everything applied, and compacts the log behind
  // it. Completes with the snapshot's last index.
  template <class Token>
  auto snapshot_now(Token&& token) {
    return initiate<Index>(
        std::forward<Token>(token),
        [](detail::NodeImpl& n, auto done, std::uint64_t) { snapshot_impl(n, std::move(done)); });
  }
  template <class Token>
  auto status(Token&& token) {
    return initiate<NodeStatus>(
        std::forward<Token>(token),
        [](detail::NodeImpl& n, auto done, std::uint64_t) { status_impl(n, std::move(done)); });
  }
  template <class Token>
  auto metrics(Token&& token) {
    return initiate<NodeMetrics>(
        std::forward<Token>(token),
        [](detail::NodeImpl& n, auto done, std::uint64_t) { metrics_impl(n, std::move(done)); });
  }
  // Stops taking work, fails what is pending (shutting_down before append, outcome_unknown
  // after), waits for the log's writes, closes connections and files. Idempotent.
  template <class Token>
  auto stop(Token&& token) {
    return initiate<void>(
        std::forward<Token>(token),
        [](detail::NodeImpl& n, auto done, std::uint64_t) { stop_impl(n, std::move(done)); });
  }

  // Calls `fn` on the node's executor for every role, leader and configuration change, and
  // once when the node stops. Call before or after start, from any thread.
  void observe(std::function<void(const NodeEvent&)> fn);
  // Where this node listens (useful with listen_port 0).
  [[nodiscard]] std::uint16_t listen_port() const noexcept;
  [[nodiscard]] NodeId id() const noexcept;
  [[nodiscard]] const asio::any_io_executor& executor() const noexcept;

  // Prometheus text exposition of `m` for the node `id`.
  [[nodiscard]] static std::string metrics_text(NodeId id, const NodeMetrics& m);

  explicit Node(std::shared_ptr<detail::NodeImpl> impl);
  [[nodiscard]] detail::NodeImpl& impl() noexcept { return *impl_; }

 private:
  enum class Change : std::uint8_t { add_voter, add_learner, add_learner_promote, remove };

  template <class T, class Token, class Fn>
  auto initiate(Token&& token, Fn fn) {
    return asio::async_initiate<Token, void(Result<T>)>(
        [this](auto handler, Fn f) {
          auto slot = asio::get_associated_cancellation_slot(handler);
          const std::uint64_t op = next_op();
          if (slot.is_connected()) {
            slot.assign([impl = std::weak_ptr(impl_), op](asio::cancellation_type) {
              cancel_op(impl, op);
            });
          }
          asio::post(
              ex_, [impl = impl_, f = std::move(f), done = detail::wrap<T>(std::move(handler), ex_),
                    op]() mutable { f(*impl, std::move(done), op); });
        },
        token, std::move(fn));
  }
  template <class Token>
  auto change(ServerAddress server, Change kind, Token&& token) {
    return initiate<Configuration>(
        std::forward<Token>(token),
        [server = std::move(server), kind](detail::NodeImpl& n, auto done, std::uint64_t) mutable {
          single_change_impl(n, std::move(server), static_cast<int>(kind), std::move(done));
        });
  }

  static void start_impl(asio::any_io_executor ex, NodeConfig config, StateMachine& sm,
                         detail::Completion<std::shared_ptr<Node>> done);
  static void run_on_node(const std::shared_ptr<detail::NodeImpl>& impl,
                          std::function<void(detail::NodeImpl&)> fn);
  static void cancel_op(const std::weak_ptr<detail::NodeImpl>& impl, std::uint64_t op);
  static void propose_one(detail::NodeImpl& n, Bytes payload, detail::Completion<Proposed> done,
                          std::uint64_t op);
  static void propose_many(detail::NodeImpl& n, std::vector<Bytes> payloads,
                           detail::Completion<ProposedBatch> done, std::uint64_t op);
  static void read_barrier_impl(detail::NodeImpl& n, detail::Completion<Index> done,
                                std::uint64_t op);
  static void change_impl(detail::NodeImpl& n, std::vector<NodeId> voters,
                          std::vector<NodeId> learners, std::vector<ServerAddress> addresses,
                          std::vector<NodeId> auto_promote, detail::Completion<Configuration> done);
  static void single_change_impl(detail::NodeImpl& n, ServerAddress server, int kind,
                                 detail::Completion<Configuration> done);
  static void transfer_impl(detail::NodeImpl& n, std::optional<NodeId> target,
                            detail::Completion<NodeId> done);
  static void snapshot_impl(detail::NodeImpl& n, detail::Completion<Index> done);
  static void status_impl(detail::NodeImpl& n, detail::Completion<NodeStatus> done);
  static void metrics_impl(detail::NodeImpl& n, detail::Completion<NodeMetrics> done);
  static void stop_impl(detail::NodeImpl& n, detail::Completion<void> done);
  std::uint64_t next_op() noexcept;

  std::shared_ptr<detail::NodeImpl> impl_;
  asio::any_io_executor ex_;
};

// Offline set-up, before the first start.
// Initialises an empty (or missing) data directory for a new cluster whose first configuration
// is `initial`: call it on each initial server with the same arguments. Refuses a directory that
// holds anything (invalid_argument naming it).
[[nodiscard]] Result<void> bootstrap(const std::string& data_dir, std::uint64_t cluster_id,
                                     NodeId self, const Configuration& initial);
// DISASTER RECOVERY, UNSAFE: on a stopped node, appends a configuration entry forcing
// `configuration`, so a cluster that lost a majority for good can be restarted from its
// survivors. Run it on every survivor with the same configuration, then start them. Entries that
// were committed on lost servers only may be lost, and running it while any other server of the
// old configuration is alive can elect two leaders. Refuses an uninitialised directory.
[[nodiscard]] Result<void> recover(const std::string& data_dir, const Configuration& configuration);

}  // namespace coraft
