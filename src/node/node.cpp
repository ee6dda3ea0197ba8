// The node's public operations, start-up and shutdown.
#include <algorithm>
#include <cstring>
#include <future>
#include <limits>

#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>

#include <coraft/log.hpp>
#include <coraft/text.hpp>

#include "node/node_impl.hpp"
#include "node/storage_port.hpp"

namespace coraft {

const char* to_string(NodeRole r) noexcept {
  switch (r) {
    case NodeRole::follower: return "follower";
    case NodeRole::pre_candidate: return "pre_candidate";
    case NodeRole::candidate: return "candidate";
    case NodeRole::leader: return "leader";
    case NodeRole::stopped: return "stopped";
  }
  return "unknown";
}

}  // namespace coraft

namespace coraft::detail {

namespace {

// A snapshot being written through the store, as the state machine's sink.
class StoreSink final : public SnapshotSink {
 public:
  explicit StoreSink(storage::SnapshotStore::Writer& w) : w_(w) {}
  Result<void> write(std::span<const std::byte> data) override { return w_.write(data); }

 private:
  storage::SnapshotStore::Writer& w_;
};

}  // namespace

NodeImpl::NodeImpl(asio::any_io_executor ex, NodeConfig config, StateMachine& sm, node::Hooks hooks)
    : ex_(std::move(ex)),
      config_(std::move(config)),
      sm_(sm),
      hooks_(std::move(hooks)),
      write_event_(ex_),
      written_event_(ex_),
      apply_event_(ex_),
      notice_event_(ex_) {
  for (const ServerAddress& a : config_.peers) addresses_[a.id] = a;
  addresses_[config_.id] =
      advertised() ? ServerAddress{config_.id, config_.advertise_host, config_.advertise_port}
                   : ServerAddress{config_.id, config_.listen_host, config_.listen_port};
}

NodeImpl::~NodeImpl() {
  apply_work_.reset();
  if (apply_thread_.joinable()) apply_thread_.join();
}

Result<void> NodeImpl::open_data_dir(core::DurableState& durable,
                                     std::unique_ptr<node::DurablePort>& port) {
  // Identity: a bootstrapped directory names its cluster; an empty one joins this one.
  auto stored_id = node::read_cluster_id(config_.data_dir);
  if (!stored_id) return stored_id.error();
  if (*stored_id && **stored_id != config_.cluster_id) {
    return Error(Errc::invalid_argument,
                 concat("start: ", config_.data_dir, " belongs to cluster ", **stored_id,
                        ", not cluster_id ", config_.cluster_id));
  }
  storage::LogOptions lo;
  lo.dir = node::log_dir(config_.data_dir);
  lo.segment_bytes = config_.segment_bytes;
  lo.batch_bytes_max = static_cast<std::uint32_t>(
      std::min<std::uint64_t>(lo.batch_bytes_max, config_.segment_bytes));
  lo.direct_bytes_max = std::min(lo.direct_bytes_max, lo.batch_bytes_max);
  lo.entry_bytes_max = config_.entry_bytes_max;
  lo.queue_bytes_max = config_.log_queue_bytes_max;
  lo.cache_bytes_max = config_.log_cache_bytes_max;
  auto log = storage::SegmentedLog::open(ex_, lo);
  if (!log) return log.error();
  if (!*stored_id) {
    auto w = node::write_cluster_id(config_.data_dir, config_.cluster_id);
    if (!w) return w;
  }
  auto hs = storage::HardStateFile::open(ex_, lo.dir);
  if (!hs) return hs.error();
  if (auto r = open_snapshots(durable); !r) return r;
  durable.hard_state = hs->current();
  // Replay the stored log into the core, unless it must be cleared first.
  const Index first = (*log)->first_index();
  const Index last = (*log)->last_index();
  if (last >= first && last.value() >= 1 &&
      !log_continues_snapshot(durable, first, last, [&](Index i) { return (*log)->term_at(i); })) {
    clear_log_on_start_ = true;
  }
  Index from = first;
  while (!clear_log_on_start_ && from <= last && last.value() >= 1) {
    auto chunk = (*log)->read_range(from, last, 64u << 20);
    if (!chunk) return chunk.error();
    for (Entry& e : *chunk) durable.entries.push_back(std::move(e));
    from = Index(durable.entries.back().index.value() + 1);
  }

  port = node::make_storage_durable(std::move(*log), std::move(*hs));
  return {};
}

Result<void> NodeImpl::open_snapshots(core::DurableState& durable) {
  auto store = storage::SnapshotStore::open(config_.data_dir, config_.snapshots_kept);
  if (!store) return store.error();
  store_.emplace(std::move(*store));
  auto stored = store_->list();
  if (!stored) return stored.error();
  if (stored->empty()) return {};
  // Checked and loaded in blocks: a large snapshot is never held in memory whole.
  auto info = storage::SnapshotStore::verify(stored->front().path, config_.snapshot_bytes_max);
  if (!info) return info.error();
  durable.snapshot = info->meta;
  auto restored = restore_from_file(sm_, *info);
  if (!restored) return restored;
  applied_ = info->meta.last_index;
  applied_conf_ = info->meta.configuration;
  return {};
}

// A log that does not continue the snapshot (a crash between installing a received snapshot
// and clearing the log it replaced) holds nothing the snapshot does not cover or contradict: it
// is cleared before anything else is written.
bool NodeImpl::log_continues_snapshot(const core::DurableState& durable, Index first, Index last,
                                      const std::function<Result<Term>(Index)>& term_at) const {
  if (!durable.snapshot) return true;
  const Index s = durable.snapshot->last_index;
  auto t = s >= first && s <= last ? term_at(s) : Result<Term>(Errc::invalid_argument);
  const bool holds = t && *t == durable.snapshot->last_term;
  const bool follows = first.value() == s.value() + 1;
  if (holds || follows) return true;
  coraft::log(LogLevel::warn, "node ", config_.id, ": the log (", first, "..", last,
              ") does not continue snapshot ", s, "; it is cleared");
  return false;
}

Result<void> NodeImpl::open() {
  core::DurableState durable;
  std::unique_ptr<node::DurablePort> port;
  if (hooks_.open_storage) {
    auto opened = hooks_.open_storage();
    if (!opened) return opened.error();
    durable.hard_state = opened->hard_state;
    port = std::move(opened->durable);
    if (auto r = open_snapshots(durable); !r) return r;
    std::vector<Entry>& entries = opened->entries;
    if (!entries.empty() &&
        !log_continues_snapshot(durable, entries.front().index, entries.back().index,
                                [&](Index i) -> Result<Term> {
                                  return entries[i.value() - entries.front().index.value()].term;
                                })) {
      clear_log_on_start_ = true;
    } else {
      durable.entries = std::move(entries);
    }
  } else if (auto r = open_data_dir(durable, port); !r) {
    return r;
  }

  core::Config c;
  c.id = config_.id;
  c.election_ticks = config_.election_ticks;
  c.heartbeat_ticks = config_.heartbeat_ticks;
  c.rng_seed = config_.seed != 0 ? config_.seed : 0x9e3779b97f4a7c15ull * (config_.id.value() + 1);
  c.pre_vote = config_.pre_vote;
  c.check_quorum = config_.check_quorum;
  c.inflight_msgs_max = config_.inflight_messages_max;
  c.inflight_bytes_max = config_.inflight_bytes_max;
  c.append_bytes_max = config_.append_bytes_max;
  c.append_entries_max = config_.append_entries_max;
  c.entry_bytes_max = config_.entry_bytes_max;
  c.pending_proposals_max = config_.pending_proposals_max;
  c.pending_bytes_max = config_.pending_proposal_bytes_max;
  c.apply_entries_max = config_.apply_lag_entries_max;
  c.snapshot_trailing_entries = config_.snapshot_trailing_entries;
  // The node reports every stream it starts (snapshot_chunk_timeout ends one that stalls), so
  // the core's own guard against a lost report must never cut a slow stream that progresses.
  c.snapshot_timeout_ticks = static_cast<std::uint32_t>(
      std::clamp<std::int64_t>(std::chrono::hours(24) / config_.tick_interval, 1,
                               std::numeric_limits<std::uint32_t>::max()));
  c.promotion_lag_entries_max = config_.promotion_lag_entries_max;
  c.lease_reads = config_.lease_reads;
  c.lease_clock_drift_ticks = config_.lease_clock_drift_ticks;
  c.reads_pending_max = static_cast<std::uint32_t>(config_.reads_pending_max);
  auto core = core::Core::make(c, std::move(durable));
  if (!core) return core.error();
  core_.emplace(std::move(*core));
  durable_term_ = core_->term();  // nothing written yet: the core's term is the stored one
  soft_ = core::SoftState{core_->role(), core_->leader(), core_->term()};
  if (applied_conf_.voters.empty()) applied_conf_ = core_->configuration();

  durable_ = std::move(port);
  if (hooks_.wrap_durable) durable_ = hooks_.wrap_durable(std::move(durable_));

  net::TransportConfig tc;
  tc.cluster_id = config_.cluster_id;
  tc.group_id = config_.group_id;
  tc.self = config_.id;
  tc.listen_host = config_.listen_host;
  tc.listen_port = config_.listen_port;
  for (const auto& [id, a] : addresses_) {
    if (id != config_.id) tc.peers.push_back(net::PeerAddress{id, a.host, a.port});
  }
  tc.limits.frame_bytes_max = config_.frame_bytes_max;
  tc.send_queue_messages_max = config_.send_queue_messages_max;
  tc.send_queue_bytes_max = config_.send_queue_bytes_max;
  tc.seed = c.rng_seed;
  if (config_.tls) {
    tc.tls = net::TlsConfig{config_.tls->ca_file, config_.tls->cert_file, config_.tls->key_file,
                            config_.tls->cluster_name};
  }
  auto deliver = [w = weak_from_this()](core::Message m) {
    if (auto self = w.lock()) self->on_receive(std::move(m));
  };
  if (hooks_.make_transport) {
    transport_ = hooks_.make_transport(tc, std::move(deliver));
    listen_port_ = config_.listen_port;
  } else {
    auto& io = static_cast<asio::io_context&>(asio::query(ex_, asio::execution::context));
    auto tcp = std::make_unique<net::TcpTransport>(io, std::move(tc), std::move(deliver));
    auto started = tcp->start();
    if (!started) return started;
    listen_port_ = tcp->local_port();
    transport_ = std::move(tcp);
  }
  if (!advertised()) addresses_[config_.id].port = listen_port_;

  file_worker_ = std::make_unique<storage::FileWorkerChannel>(storage::FileWorker::shared(ex_));
  apply_work_.emplace(apply_io_.get_executor());
  apply_thread_ = std::thread([this] { apply_io_.run(); });
  started_ = true;
  seen_conf_ = core_->configuration();
  seen_conf_index_ = core_->configuration_index();
  learn_addresses(seen_conf_);
  spawn(ticker());
  spawn(writer());
  spawn(applier());
  spawn(notifier());
  drain();
  return {};
}

namespace {

// "host:port" or "[v6]:port"; nullopt when malformed.
std::optional<ServerAddress> parse_address(NodeId id, const std::string& text) {
  const std::size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= text.size()) return std::nullopt;
  std::string host = text.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  unsigned long port = 0;
  for (char ch : text.substr(colon + 1)) {
    if (ch < '0' || ch > '9') return std::nullopt;
    port = port * 10 + static_cast<unsigned long>(ch - '0');
    if (port > 65535) return std::nullopt;
  }
  if (port == 0) return std::nullopt;
  return ServerAddress{id, std::move(host), static_cast<std::uint16_t>(port)};
}

}  // namespace

// Members of `conf` become the transport's peers, at the address the configuration records or,
// failing that, the one in the address book; so do the servers of the configured address book
// (NodeConfig::peers), whatever the configuration says. Other servers no longer members are
// forgotten. A server that missed a membership change must still hear the leader that change
// removed: a removal not yet committed may be replaced by that leader, and a server removed,
// then added back and elected while this one was away, is the only one that can tell it so.
void NodeImpl::learn_addresses(const Configuration& conf) {
  for (const MemberAddress& a : conf.addresses) {
    if (a.id == config_.id) continue;
    if (auto parsed = parse_address(a.id, a.address)) {
      addresses_[a.id] = std::move(*parsed);
    } else {
      log(LogLevel::warn, "node ", config_.id, ": the configuration's address for node ", a.id,
          " is malformed");
    }
  }
  std::vector<NodeId> members = conf.members();
  for (const ServerAddress& a : config_.peers) members.push_back(a.id);
  std::sort(members.begin(), members.end());
  members.erase(std::unique(members.begin(), members.end()), members.end());
  for (NodeId id : members) {
    if (id == config_.id) continue;
    auto it = addresses_.find(id);
    if (it == addresses_.end()) {
      log(LogLevel::warn, "node ", config_.id, ": no address known for member ", id);
      continue;
    }
    transport_->add_peer(net::PeerAddress{id, it->second.host, it->second.port});
  }
  for (NodeId id : transport_members_) {
    if (!std::binary_search(members.begin(), members.end(), id)) transport_->remove_peer(id);
  }
  transport_members_ = std::move(members);
}

std::string NodeImpl::address_of(NodeId id) const {
  auto it = addresses_.find(id);
  if (it == addresses_.end()) return {};
  return concat(it->second.host, ":", it->second.port);
}

Error NodeImpl::not_leader() const {
  return with_leader_address(Error::not_leader(soft_.leader));
}

Error NodeImpl::with_leader_address(Error e) const {
  if (e.is(Errc::not_leader)) e.leader_address = address_of(e.leader_hint);
  return e;
}

void NodeImpl::emit(NodeEvent ev) {
  for (auto& fn : observers_) fn(ev);
}

void NodeImpl::observe(std::function<void(const NodeEvent&)> fn) {
  observers_.push_back(std::move(fn));
}

Result<void> NodeImpl::admit_proposal(std::uint64_t bytes, std::size_t count) const {
  if (stopping_) return Errc::shutting_down;
  if (disk_full_) return Error(Errc::disk_full, "the log's disk is full");
  if (soft_.role != core::Role::leader) return not_leader();
  if (count == 0) return Error(Errc::invalid_argument, "propose: no payload");
  if (commit_seen_.value() > applied_.value() &&
      commit_seen_.value() - applied_.value() >= config_.apply_lag_entries_max) {
    return Error(Errc::overloaded, "apply_lag_entries_max: the state machine is behind");
  }
  if (proposal_bytes_ + bytes > config_.pending_proposal_bytes_max) {
    return Error(Errc::overloaded, "pending_proposal_bytes_max reached");
  }
  return {};
}

void NodeImpl::propose(std::vector<Bytes> payloads, Completion<ProposedBatch> batch_done,
                       Completion<Proposed> one_done, std::uint64_t op) {
  auto fail = [&](Error e) {
    ++metrics_.proposals_refused;
    if (batch_done) batch_done(e);
    if (one_done) one_done(std::move(e));
  };
  std::uint64_t bytes = 0;
  for (const Bytes& b : payloads) bytes += b.size();
  if (auto ok = admit_proposal(bytes, payloads.size()); !ok) return fail(ok.error());
  auto first = core_->propose(payloads);
  if (!first) {
    return fail(with_leader_address(first.error()));
  }
  metrics_.proposals += payloads.size();
  ProposalWaiter w;
  w.term = core_->term();
  w.last = Index(first->value() + payloads.size() - 1);
  w.op = op;
  w.bytes = bytes;
  w.batch = std::move(batch_done);
  w.one = std::move(one_done);
  proposal_bytes_ += bytes;
  proposals_.emplace(*first, std::move(w));
  drain_soon();
}

void NodeImpl::read_barrier(Completion<Index> done, std::uint64_t op) {
  if (stopping_) return done(Errc::shutting_down);
  if (reads_.size() >= config_.reads_pending_max) {
    return done(Error(Errc::overloaded, "reads_pending_max reached"));
  }
  auto r = core_->read_index(op);
  if (!r) {
    return done(with_leader_address(r.error()));
  }
  reads_.emplace(op, ReadWaiter{op, now() + config_.read_timeout, Index(), std::move(done)});
  drain();
}

void NodeImpl::change(std::vector<NodeId> voters, std::vector<NodeId> learners,
                      std::vector<ServerAddress> addresses, std::vector<NodeId> auto_promote,
                      Completion<Configuration> done) {
  if (stopping_) return done(Errc::shutting_down);
  if (soft_.role != core::Role::leader) return done(not_leader());
  for (const ServerAddress& a : addresses) {
    if (a.id == no_node || a.host.empty() || a.port == 0) {
      return done(Error(Errc::invalid_argument, concat("membership: bad address for node ", a.id)));
    }
  }
  for (const ServerAddress& a : addresses) addresses_[a.id] = a;
  for (NodeId id : voters) {
    if (!addresses_.count(id)) {
      return done(Error(Errc::invalid_argument, concat("membership: no address for node ", id)));
    }
  }
  for (NodeId id : learners) {
    if (!addresses_.count(id)) {
      return done(Error(Errc::invalid_argument, concat("membership: no address for node ", id)));
    }
  }
  std::vector<MemberAddress> recorded;
  for (const auto& list : {voters, learners}) {
    for (NodeId id : list) {
      const ServerAddress& a = addresses_.at(id);
      recorded.push_back(MemberAddress{id, concat(a.host, ":", a.port)});
    }
  }
  auto index =
      core_->change_membership(core::MembershipChange{voters, learners, auto_promote}, recorded);
  if (!index) {
    return done(with_leader_address(index.error()));
  }
  config_waiters_.push_back(ConfigWaiter{*index, core_->term(), std::move(done)});
  drain();
}

void NodeImpl::single_change(ServerAddress server, int kind, Completion<Configuration> done) {
  const Configuration& conf = core_->configuration();
  if (conf.joint()) return done(Errc::config_change_pending);
  std::vector<NodeId> voters = conf.voters;
  std::vector<NodeId> learners = conf.learners;
  std::vector<NodeId> promote;
  const NodeId id = server.id;
  auto erase = [](std::vector<NodeId>& v, NodeId x) { std::erase(v, x); };
  std::vector<ServerAddress> addresses;
  switch (kind) {
    case 0:  // add_voter
      erase(learners, id);
      if (std::find(voters.begin(), voters.end(), id) == voters.end()) voters.push_back(id);
      if (!server.host.empty()) addresses.push_back(server);
      break;
    case 1:  // add_learner
    case 2:  // add_learner with auto-promotion
      if (std::find(voters.begin(), voters.end(), id) != voters.end()) {
        return done(Error(Errc::invalid_argument, concat("node ", id, " is already a voter")));
      }
      if (std::find(learners.begin(), learners.end(), id) == learners.end()) learners.push_back(id);
      if (kind == 2) promote.push_back(id);
      if (!server.host.empty()) addresses.push_back(server);
      break;
    default:  // remove
      if (!conf.contains(id)) {
        return done(Error(Errc::invalid_argument, concat("node ", id, " is not a member")));
      }
      erase(voters, id);
      erase(learners, id);
      break;
  }
  change(std::move(voters), std::move(learners), std::move(addresses), std::move(promote),
         std::move(done));
}

void NodeImpl::transfer(std::optional<NodeId> target, Completion<NodeId> done) {
  if (stopping_) return done(Errc::shutting_down);
  if (soft_.role != core::Role::leader) return done(not_leader());
  NodeId to = target.value_or(no_node);
  if (to == no_node) {
    to = most_caught_up_voter();
    if (to == no_node) return done(Error(Errc::invalid_argument, "no other voter to lead"));
  }
  auto r = core_->transfer_leadership(to);
  if (!r) return done(r.error());
  transfer_waiters_.push_back(TransferWaiter{now() + config_.transfer_timeout, std::move(done)});
  drain();
}

void NodeImpl::snapshot(Completion<Index> done) {
  if (stopping_) return done(Errc::shutting_down);
  snapshot_waiters_.push_back(std::move(done));
  snapshot_requested_ = true;
  apply_event_.notify();
}

// Runs inside the applier, between two apply batches, so the state machine's state is exactly
// that after `applied_`. A state machine that gives a point-in-time copy has it written out by
// save_copy() while the applier goes on; otherwise save() runs here, on the apply thread.
asio::awaitable<void> NodeImpl::take_snapshot() {
  std::vector<Completion<Index>> waiters = std::move(snapshot_waiters_);
  snapshot_waiters_.clear();
  auto fail = [&](Error e) {
    if (waiters.empty())
      log(LogLevel::warn, "node ", config_.id, ": snapshot failed: ", e.message());
    for (auto& w : waiters) w(e);
  };
  if (applied_ <= core_->snapshot().last_index) {
    fail(Error(Errc::invalid_argument, "snapshot: nothing applied since the last snapshot"));
    co_return;
  }
  SnapshotMeta meta;
  meta.last_index = applied_;
  auto term = core_->log().term_at(applied_);
  if (!term) {
    fail(Error(Errc::invalid_argument, "snapshot: the applied entry is compacted"));
    co_return;
  }
  meta.last_term = *term;
  meta.configuration = applied_conf_;
  Result<void> saved;
  std::unique_ptr<SnapshotCopy> copy;
  co_await to_state_machine();
  copy = sm_.copy_for_snapshot();
  if (!copy) saved = save_snapshot(meta, [this](SnapshotSink& sink) { return sm_.save(sink); });
  co_await from_state_machine();
  if (copy) {
    snapshot_saving_ = true;
    spawn(save_copy(meta, std::move(copy), std::move(waiters)));
    co_return;
  }
  co_await finish_snapshot(meta, std::move(saved), std::move(waiters));
}

Result<void> NodeImpl::save_snapshot(const SnapshotMeta& meta,
                                     const std::function<Result<void>(SnapshotSink&)>& save) {
  auto w = store_->begin(meta);
  if (!w) return w.error();
  StoreSink sink(*w);
  if (auto r = save(sink); !r) return r;
  auto fin = w->finish();
  if (!fin) return fin.error();
  return {};
}

// Writes a point-in-time copy out on a thread of its own while the applier goes on.
asio::awaitable<void> NodeImpl::save_copy(SnapshotMeta meta, std::unique_ptr<SnapshotCopy> copy,
                                          std::vector<Completion<Index>> waiters) {
  auto pending = std::make_shared<PendingResult>(ex_);
  std::thread saver([this, pending, &meta, &copy] {
    Result<void> r = save_snapshot(meta, [&](SnapshotSink& sink) { return copy->save(sink); });
    asio::post(ex_, [pending, r = std::move(r)]() mutable { pending->set(std::move(r)); });
  });
  Result<void> saved = co_await pending->get();
  saver.join();
  co_await finish_snapshot(meta, std::move(saved), std::move(waiters));
  snapshot_saving_ = false;
  apply_event_.notify();  // a snapshot asked for meanwhile is taken next
}

// Once the snapshot file is durable: the core forgets what it covers, and the log is compacted.
asio::awaitable<void> NodeImpl::finish_snapshot(SnapshotMeta meta, Result<void> saved,
                                                std::vector<Completion<Index>> waiters) {
  if (saved && hooks_.snapshot_stored) hooks_.snapshot_stored(meta);
  Result<void> taken = saved ? core_->snapshot_taken(meta) : saved;
  if (!taken) {
    if (waiters.empty()) {
      log(LogLevel::warn, "node ", config_.id, ": snapshot failed: ", taken.error().message());
    }
    for (auto& w : waiters) w(taken.error());
    co_return;
  }
  ++metrics_.snapshots;
  applied_since_snapshot_ = 0;
  applied_bytes_since_snapshot_ = 0;
  drain();
  const std::uint64_t trailing = config_.snapshot_trailing_entries;
  if (meta.last_index.value() > trailing) {
    auto compacted = co_await durable_->compact_prefix(Index(meta.last_index.value() - trailing));
    // A disk that failed a write is not trusted with the next: the node stops, as it does for
    // any failed write, and a restart finds the log whole behind the stored snapshot.
    if (!compacted && !stopping_) fail_stop(compacted.error());
  }
  for (auto& w : waiters) w(meta.last_index);
}

void NodeImpl::cancel(std::uint64_t op) {
  for (auto it = proposals_.begin(); it != proposals_.end(); ++it) {
    if (it->second.op != op) continue;
    fail_proposal(it, Errc::cancelled);
    return;
  }
  auto it = reads_.find(op);
  if (it != reads_.end()) {
    auto done = std::move(it->second.done);
    reads_.erase(it);
    done(Errc::cancelled);
  }
}

NodeStatus NodeImpl::status() const {
  NodeStatus s;
  s.id = config_.id;
  s.failure = failure_;
  if (!core_) return s;
  s.role = stopping_ ? NodeRole::stopped : role_of(core_->role());
  s.term = core_->term();
  s.leader = core_->leader();
  s.leader_address = address_of(s.leader);
  s.commit = core_->log().commit_index();
  s.applied = applied_;
  s.last_log_index = core_->log().last_index();
  s.snapshot_index = core_->snapshot().last_index;
  s.configuration = core_->configuration();
  const auto t = now();
  for (NodeId id : s.configuration.members()) {
    if (id == config_.id) continue;
    PeerStatus p;
    p.id = id;
    p.address = address_of(id);
    p.voter = s.configuration.is_voter(id);
    if (const core::Progress* pr = core_->progress(id)) {
      p.match = pr->match_index;
      p.next = pr->next_index;
      p.inflight_messages = pr->inflights.count();
      p.inflight_bytes = pr->inflights.bytes();
      p.replication = pr->state == core::Progress::State::probe       ? "probe"
                      : pr->state == core::Progress::State::replicate ? "replicate"
                                                                      : "snapshot";
    }
    p.needs_snapshot = out_streams_.contains(id);
    auto c = last_contact_.find(id.value());
    if (c != last_contact_.end()) {
      p.last_contact = std::chrono::duration_cast<std::chrono::milliseconds>(t - c->second);
    }
    s.peers.push_back(std::move(p));
  }
  return s;
}

NodeMetrics NodeImpl::metrics() const {
  NodeMetrics m = metrics_;
  if (!core_) return m;
  m.term = core_->term().value();
  m.commit_index = core_->log().commit_index().value();
  m.applied_index = applied_.value();
  m.pending_proposals = proposals_.size();
  m.pending_proposal_bytes = proposal_bytes_;
  m.pending_reads = reads_.size();
  m.is_leader = core_->role() == core::Role::leader ? 1 : 0;
  if (m.is_leader) {
    const Index last = core_->log().last_index();
    for (NodeId id : core_->configuration().members()) {
      if (const core::Progress* p = core_->progress(id)) {
        m.peer_lag.emplace_back(id, last.value() - p->match_index.value());
      }
    }
  }
  return m;
}

void NodeImpl::fail_stop(const Error& e) {
  if (stopping_) return;
  failure_ = e.message();
  log(LogLevel::error, "node ", config_.id, ": stopping: the log could not be written: ", failure_);
  stop(Completion<void>());
}

void NodeImpl::stop(Completion<void> done) {
  if (stopping_) {
    if (done) done(Result<void>());
    return;
  }
  stopping_ = true;
  spawn(stopper(std::move(done)));
}

asio::awaitable<void> NodeImpl::stopper(Completion<void> done) {
  // Fail everything pending. Proposals are all in the log already: their outcome is unknown.
  for (auto it = proposals_.begin(); it != proposals_.end();) {
    it = fail_proposal(it, Errc::outcome_unknown);
  }
  for (auto& [id, r] : reads_) r.done(Errc::shutting_down);
  reads_.clear();
  reads_by_index_.clear();
  for (auto& w : config_waiters_) w.done(Errc::outcome_unknown);
  config_waiters_.clear();
  for (auto& w : transfer_waiters_) w.done(Errc::shutting_down);
  transfer_waiters_.clear();
  for (auto& w : snapshot_waiters_) w(Errc::shutting_down);
  snapshot_waiters_.clear();
  cancel_snapshot_streams();
  in_stream_.reset();
  write_event_.notify();
  written_event_.notify();
  apply_event_.notify();
  notice_event_.notify();
  // Wait for every other coroutine (appends in flight finish their writes).
  const auto began = now();
  bool said = false;
  while (coroutines_ > 1) {
    // Polled, so that no missed wake-up can hold a stop; the waits end within a tick.
    asio::steady_timer poll(ex_);
    co_await sleep_until(poll, now() + std::chrono::milliseconds(5));
    write_event_.notify();
    written_event_.notify();
    apply_event_.notify();
    notice_event_.notify();
    if (!said && now() - began > std::chrono::seconds(5)) {
      said = true;
      log(LogLevel::warn, "node ", config_.id, ": stopping for over 5 s, waiting for ",
          coroutines_ - 1, " coroutines: ", appends_in_flight_, " log writes in flight",
          writer_busy_ ? ", the writer in a disk call" : "",
          applier_busy_ ? ", the state machine" : "");
    }
  }
  transport_->stop();
  co_await transport_->shutdown();
  file_worker_.reset();  // waits for its file work; completions not yet run are dropped
  staged_.reset();
  durable_->close();
  apply_work_.reset();
  if (apply_thread_.joinable()) apply_thread_.join();
  emit(NodeEvent{NodeEvent::Kind::stopped, NodeRole::stopped, soft_.term, no_node,
                 core_->configuration()});
  if (done) done(Result<void>());
}

void start_node(asio::any_io_executor ex, NodeConfig config, StateMachine& sm, node::Hooks hooks,
                Completion<std::shared_ptr<Node>> done) {
  asio::post(ex, [ex, config = std::move(config), &sm, hooks = std::move(hooks),
                  done = std::move(done)]() mutable {
    if (auto v = config.validate(); !v) return done(v.error());
    auto impl = std::make_shared<NodeImpl>(ex, std::move(config), sm, std::move(hooks));
    auto opened = impl->open();
    if (!opened) {
      if (impl->running()) impl->stop(Completion<void>());
      return done(opened.error());
    }
    done(std::make_shared<Node>(std::move(impl)));
  });
}

}  // namespace coraft::detail
