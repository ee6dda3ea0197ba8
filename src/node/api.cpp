// Node's public entry points: each posts its work to the node's executor. NodeConfig's checks and
// the metrics' text form live here too.
#include <atomic>

#include <asio/post.hpp>

#include <coraft/node.hpp>
#include <coraft/text.hpp>

#include "node/node_impl.hpp"

namespace coraft {

namespace {
std::atomic<std::uint64_t> op_counter{1};

Result<void> bad(std::string field, std::string why) {
  return Error(Errc::invalid_argument, "NodeConfig." + field + ": " + why);
}

// The peer codec's fixed bound on entries in one AppendEntries frame.
constexpr std::uint32_t codec_entries_per_frame_max = 8192;
// What one entry costs in a frame besides its payload, at most.
constexpr std::uint64_t frame_entry_overhead_bytes = 64;
}  // namespace

Result<void> NodeConfig::validate() const {
  if (id == no_node) return bad("id", "must not be 0");
  if (cluster_id == 0) return bad("cluster_id", "must not be 0");
  if (data_dir.empty()) return bad("data_dir", "is empty");
  if (listen_host.empty()) return bad("listen_host", "is empty");
  if (advertise_host.empty() != (advertise_port == 0))
    return bad("advertise_host", "and advertise_port go together: both set or neither");
  for (const ServerAddress& p : peers) {
    if (p.id == no_node) return bad("peers", "an entry has id 0");
    if (p.id == id) continue;  // this server's own entry is ignored
    if (p.host.empty() || p.port == 0) {
      return bad("peers", detail::concat("node ", p.id, " needs a host and a port"));
    }
  }
  if (tls && (tls->ca_file.empty() || tls->cert_file.empty() || tls->key_file.empty())) {
    return bad("tls", "needs ca_file, cert_file and key_file");
  }
  if (tick_interval.count() <= 0) return bad("tick_interval", "must be positive");
  if (heartbeat_ticks == 0 || heartbeat_ticks >= election_ticks) {
    return bad("heartbeat_ticks", "need 0 < heartbeat_ticks < election_ticks");
  }
  if (lease_reads && (!check_quorum || lease_clock_drift_ticks == 0 ||
                      lease_clock_drift_ticks + 1 >= election_ticks)) {
    return bad("lease_reads",
               "needs check_quorum and 0 < lease_clock_drift_ticks < election_ticks - 1");
  }
  if (entry_bytes_max == 0) return bad("entry_bytes_max", "must be positive");
  if (append_bytes_max == 0) return bad("append_bytes_max", "must be positive");
  if (append_entries_max == 0 || append_entries_max > codec_entries_per_frame_max) {
    return bad("append_entries_max",
               detail::concat("must be in 1..", codec_entries_per_frame_max,
                              " (the peer codec's bound on entries per frame)"));
  }
  // One AppendEntries holds up to append_bytes_max of payload, and always at least one entry.
  const std::uint64_t append_frame =
      append_bytes_max + entry_bytes_max + append_entries_max * frame_entry_overhead_bytes + 4096;
  if (frame_bytes_max < append_frame) {
    return bad("frame_bytes_max",
               detail::concat("must be at least ", append_frame,
                              " to carry an AppendEntries of append_bytes_max, entry_bytes_max "
                              "and append_entries_max"));
  }
  if (inflight_messages_max == 0 || inflight_bytes_max == 0) {
    return bad("inflight_messages_max", "inflight limits must be positive");
  }
  if (pending_proposals_max == 0) return bad("pending_proposals_max", "must be positive");
  if (pending_proposal_bytes_max < entry_bytes_max) {
    return bad("pending_proposal_bytes_max", "must hold at least one entry_bytes_max proposal");
  }
  if (apply_lag_entries_max == 0) return bad("apply_lag_entries_max", "must be positive");
  if (apply_batch_entries_max == 0) return bad("apply_batch_entries_max", "must be positive");
  if (reads_pending_max == 0 || reads_pending_max > (1u << 30)) {
    return bad("reads_pending_max", "must be in 1..2^30");
  }
  if (send_queue_messages_max == 0 || send_queue_bytes_max < frame_bytes_max) {
    return bad("send_queue_bytes_max", "must hold at least one frame_bytes_max frame");
  }
  if (segment_bytes < (1u << 20) || segment_bytes < 2 * (entry_bytes_max + 4096)) {
    return bad("segment_bytes", "must be at least 1 MiB and hold two entry_bytes_max entries");
  }
  if (log_queue_bytes_max < entry_bytes_max + frame_entry_overhead_bytes) {
    return bad("log_queue_bytes_max", "must hold at least one entry_bytes_max entry");
  }
  if (read_timeout.count() <= 0) return bad("read_timeout", "must be positive");
  if (transfer_timeout.count() <= 0) return bad("transfer_timeout", "must be positive");
  if (commit_notice_delay.count() < 0 || commit_notice_delay > std::chrono::seconds(1)) {
    return bad("commit_notice_delay", "must be in 0..1 s");
  }
  if (disk_stall_timeout.count() < 0) return bad("disk_stall_timeout", "must not be negative");
  if (snapshot_chunk_bytes < 4096 || snapshot_chunk_bytes + 4096 > frame_bytes_max) {
    return bad("snapshot_chunk_bytes", "must be at least 4096 and fit a frame_bytes_max frame");
  }
  if (snapshot_window_chunks == 0) return bad("snapshot_window_chunks", "must be positive");
  if (snapshot_chunk_timeout.count() <= 0) return bad("snapshot_chunk_timeout", "must be positive");
  if (snapshot_retry_delay_min.count() <= 0 ||
      snapshot_retry_delay_max < snapshot_retry_delay_min) {
    return bad("snapshot_retry_delay_max", "need 0 < snapshot_retry_delay_min <= the maximum");
  }
  if (snapshots_kept == 0) return bad("snapshots_kept", "must be positive");
  return {};
}

Node::Node(std::shared_ptr<detail::NodeImpl> impl) : impl_(std::move(impl)) {
  ex_ = impl_->executor();
}

Node::~Node() {
  // A node dropped without stop() is stopped now; its coroutines keep it alive until done.
  run_on_node(impl_, [](detail::NodeImpl& n) { n.stop({}); });
}

std::uint64_t Node::next_op() noexcept {
  return op_counter.fetch_add(1);
}

void Node::run_on_node(const std::shared_ptr<detail::NodeImpl>& impl,
                       std::function<void(detail::NodeImpl&)> fn) {
  asio::post(impl->executor(), [impl, fn = std::move(fn)] { fn(*impl); });
}

void Node::cancel_op(const std::weak_ptr<detail::NodeImpl>& impl, std::uint64_t op) {
  if (auto n = impl.lock()) {
    asio::post(n->executor(), [n, op] { n->cancel(op); });
  }
}

void Node::start_impl(asio::any_io_executor ex, NodeConfig config, StateMachine& sm,
                      detail::Completion<std::shared_ptr<Node>> done) {
  detail::start_node(std::move(ex), std::move(config), sm, {}, std::move(done));
}

void Node::propose_one(detail::NodeImpl& n, Bytes payload, detail::Completion<Proposed> done,
                       std::uint64_t op) {
  std::vector<Bytes> one;
  one.push_back(std::move(payload));
  n.propose(std::move(one), {}, std::move(done), op);
}

void Node::propose_many(detail::NodeImpl& n, std::vector<Bytes> payloads,
                        detail::Completion<ProposedBatch> done, std::uint64_t op) {
  n.propose(std::move(payloads), std::move(done), {}, op);
}

void Node::read_barrier_impl(detail::NodeImpl& n, detail::Completion<Index> done,
                             std::uint64_t op) {
  n.read_barrier(std::move(done), op);
}

void Node::change_impl(detail::NodeImpl& n, std::vector<NodeId> voters,
                       std::vector<NodeId> learners, std::vector<ServerAddress> addresses,
                       std::vector<NodeId> auto_promote, detail::Completion<Configuration> done) {
  n.change(std::move(voters), std::move(learners), std::move(addresses), std::move(auto_promote),
           std::move(done));
}

void Node::single_change_impl(detail::NodeImpl& n, ServerAddress server, int kind,
                              detail::Completion<Configuration> done) {
  n.single_change(std::move(server), kind, std::move(done));
}

void Node::transfer_impl(detail::NodeImpl& n, std::optional<NodeId> target,
                         detail::Completion<NodeId> done) {
  n.transfer(target, std::move(done));
}

void Node::snapshot_impl(detail::NodeImpl& n, detail::Completion<Index> done) {
  n.snapshot(std::move(done));
}

void Node::status_impl(detail::NodeImpl& n, detail::Completion<NodeStatus> done) {
  done(n.status());
}

void Node::metrics_impl(detail::NodeImpl& n, detail::Completion<NodeMetrics> done) {
  done(n.metrics());
}

void Node::stop_impl(detail::NodeImpl& n, detail::Completion<void> done) {
  n.stop(std::move(done));
}

void Node::observe(std::function<void(const NodeEvent&)> fn) {
  run_on_node(impl_,
              [fn = std::move(fn)](detail::NodeImpl& n) mutable { n.observe(std::move(fn)); });
}

std::uint16_t Node::listen_port() const noexcept {
  return impl_->listen_port();
}
NodeId Node::id() const noexcept {
  return impl_->id();
}
const asio::any_io_executor& Node::executor() const noexcept {
  return ex_;
}

std::string Node::metrics_text(NodeId id, const NodeMetrics& m) {
  detail::Text t;
  auto one = [&](const char* name, const char* type, const char* help, std::uint64_t v) {
    t.add("# HELP coraft_").add(name).add(' ').add(help).add('\n');
    t.add("# TYPE coraft_").add(name).add(' ').add(type).add('\n');
    t.add("coraft_").add(name).add("{node=\"").add(id).add("\"} ").add(v).add('\n');
  };
  one("proposals_total", "counter", "Entries accepted by propose.", m.proposals);
  one("proposals_refused_total", "counter", "Proposals refused before being appended.",
      m.proposals_refused);
  one("commits_total", "counter", "Entries seen committed.", m.commits);
  one("applies_total", "counter", "Commands applied to the state machine.", m.applies);
  one("apply_batches_total", "counter", "Calls of StateMachine::apply.", m.apply_batches);
  one("log_writes_total", "counter", "Durable log writes (one per batch).", m.log_writes);
  one("log_entries_total", "counter", "Entries made durable.", m.log_entries);
  one("log_bytes_total", "counter", "Payload bytes made durable.", m.log_bytes);
  one("hard_state_writes_total", "counter", "Durable hard-state saves.", m.hard_state_writes);
  one("elections_total", "counter", "Campaigns started.", m.elections);
  one("leader_changes_total", "counter", "Changes of the known leader.", m.leader_changes);
  one("snapshots_total", "counter", "Snapshots of the state machine taken.", m.snapshots);
  one("snapshots_sent_total", "counter", "Snapshot streams a follower installed.",
      m.snapshots_sent);
  one("snapshot_streams_failed_total", "counter", "Snapshot streams given up.",
      m.snapshot_streams_failed);
  one("snapshot_bytes_sent_total", "counter", "Snapshot bytes sent.", m.snapshot_bytes_sent);
  one("snapshots_installed_total", "counter", "Snapshots received and installed.",
      m.snapshots_installed);
  one("snapshot_bytes_received_total", "counter", "Snapshot bytes received durably.",
      m.snapshot_bytes_received);
  one("messages_sent_total", "counter", "Messages handed to the transport.", m.messages_sent);
  one("messages_refused_total", "counter", "Messages the transport refused.", m.messages_refused);
  one("messages_received_total", "counter", "Messages received.", m.messages_received);
  one("commit_notices_replaced_total", "counter",
      "Commit-only AppendEntries replaced by a later message before they were due.",
      m.commit_notices_replaced);
  one("reads_total", "counter", "Read barriers completed.", m.reads);
  one("disk_stall_stepdowns_total", "counter", "Leaderships handed off for a stalled disk.",
      m.disk_stall_stepdowns);
  one("term", "gauge", "Current term.", m.term);
  one("commit_index", "gauge", "Commit index.", m.commit_index);
  one("applied_index", "gauge", "Applied index.", m.applied_index);
  one("pending_proposals", "gauge", "Proposals waiting to be applied.", m.pending_proposals);
  one("pending_proposal_bytes", "gauge", "Their payload bytes.", m.pending_proposal_bytes);
  one("pending_reads", "gauge", "Read barriers waiting.", m.pending_reads);
  one("is_leader", "gauge", "1 while this node leads.", m.is_leader);
  if (!m.peer_lag.empty()) {
    t.add("# HELP coraft_peer_lag_entries Entries a follower lacks (leader only).\n");
    t.add("# TYPE coraft_peer_lag_entries gauge\n");
    for (const auto& [peer, lag] : m.peer_lag) {
      t.add("coraft_peer_lag_entries{node=\"")
          .add(id)
          .add("\",peer=\"")
          .add(peer)
          .add("\"} ")
          .add(lag)
          .add('\n');
    }
  }
  return t.take();
}

}  // namespace coraft
