// The driver: takes every input to the core, carries out each Output in the order output.hpp
// gives, and runs the ticker, the durable writer and the applier as coroutines on the node's
// executor.
#include <algorithm>

#include <asio/bind_executor.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>

#include <coraft/log.hpp>

#include "node/node_impl.hpp"

namespace coraft::detail {

namespace {

constexpr std::uint64_t entry_overhead_bytes = 64;

}  // namespace

Event::Event(const asio::any_io_executor& ex) : timer_(ex, Clock::time_point::max()) {}

void Event::notify() {
  pending_ = true;
  timer_.cancel();
}

asio::awaitable<void> Event::wait() {
  if (!pending_) {
    timer_.expires_at(Clock::time_point::max());
    co_await timer_.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  }
  pending_ = false;
}

void NodeImpl::spawn(asio::awaitable<void> a) {
  ++coroutines_;
  asio::co_spawn(ex_, std::move(a), [self = shared_from_this()](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
    --self->coroutines_;
  });
}

// ---- Inputs and outputs ----

void NodeImpl::drain() {
  if (draining_ || !core_) return;
  draining_ = true;
  while (core_->has_output()) handle(core_->take_output());
  draining_ = false;
  // Inputs change the configuration as entries enter the log (§4.1), before any output.
  if (core_->configuration_index() != seen_conf_index_ || core_->configuration() != seen_conf_) {
    seen_conf_index_ = core_->configuration_index();
    seen_conf_ = core_->configuration();
    learn_addresses(seen_conf_);
    emit(NodeEvent{NodeEvent::Kind::configuration, role_of(soft_.role), soft_.term, soft_.leader,
                   seen_conf_});
  }
}

void NodeImpl::handle(core::Output out) {
  // Step 2 and 4: durable work, and messages that wait for it, go to the writer in order.
  if (out.has_durable_work() || !out.messages_after_persist.empty()) {
    auto job = std::make_shared<WriteJob>();
    if (out.install_snapshot) {
      // Only a stream this node received and checked makes the core install a snapshot.
      CORAFT_ASSERT(staged_ && staged_->last_index() == out.install_snapshot->last_index,
                    "an installed snapshot was received", out.install_snapshot->last_index);
      job->install = out.install_snapshot;
      installing_ = out.install_snapshot->last_index;
      job->staged = std::move(staged_);
      job->keeps_log = staged_keeps_log_;
    }
    job->write = out.write;
    job->hard_state = out.hard_state;
    job->truncate_from = out.truncate_from;
    if (out.truncate_from) fail_waiters_from(*out.truncate_from, Errc::dropped);
    for (const Entry& e : out.entries) job->bytes += e.payload.size() + entry_overhead_bytes;
    job->entries = std::move(out.entries);
    job->after = std::move(out.messages_after_persist);
    writes_.push_back(std::move(job));
    write_event_.notify();
  }
  // Step 3: messages now, in parallel with the write.
  for (core::Message& m : out.messages) send_or_hold(std::move(m));
  // Step 5: committed entries (already durable here) to the applier.
  if (!out.committed.empty()) {
    metrics_.commits += out.committed.size();
    commit_seen_ = out.committed.back().index;
    for (Entry& e : out.committed) to_apply_.push_back(std::move(e));
    apply_event_.notify();
  }
  if (out.soft_state) on_soft_state(*out.soft_state);
  for (const core::SnapshotSend& s : out.snapshot_sends) start_snapshot_stream(s);
  for (const core::ReadState& r : out.reads_ready) {
    auto it = reads_.find(r.id);
    if (it == reads_.end()) continue;
    it->second.index = r.index;
    reads_by_index_.emplace(r.index, r.id);
  }
  for (std::uint64_t id : out.reads_dropped) {
    auto it = reads_.find(id);
    if (it == reads_.end()) continue;
    auto done = std::move(it->second.done);
    reads_.erase(it);
    done(not_leader());
  }
  resolve_reads();
}

void NodeImpl::send(core::Message m) {
  if (hooks_.drop_outgoing && hooks_.drop_outgoing(m)) return;
  const NodeId to = m.to;
  auto r = transport_->send(std::move(m));
  if (r) {
    ++metrics_.messages_sent;
  } else {
    // The peer's queue is full or the peer is gone: the leader probes it again rather than
    // streaming into a queue that drops (the drain loop takes what this produces).
    ++metrics_.messages_refused;
    core_->report_unreachable(to);
  }
}

// A commit notice (an AppendEntries without entries: the commit index, or an empty probe) waits
// up to commit_notice_delay for the next message to its peer. An AppendEntries, or a heartbeat
// carrying at least its commit index, replaces it: both carry what it would. A heartbeat with a
// lower commit index (a follower whose log is behind) goes out and leaves the notice held; any
// other message sent through here (a read answer, a vote, a transfer) goes out after it, so
// that the peer learns the commit before what depends on it. Messages that wait for the durable
// write and snapshot chunks do not pass through here; they depend on no commit notice.
// Dropping a replaced notice is safe as losing any message is: the answer to the heartbeat
// that replaced it makes the leader send the follower what it still lacks (a lost probe too).
void NodeImpl::send_or_hold(core::Message m) {
  auto held = std::find_if(notices_.begin(), notices_.end(),
                           [&](const HeldNotice& h) { return h.message.to == m.to; });
  const auto* a = std::get_if<core::AppendRequest>(&m.body);
  const bool notice = a && a->entries.empty() && config_.commit_notice_delay.count() > 0;
  auto due = now() + config_.commit_notice_delay;
  if (held != notices_.end()) {
    const Index commit = std::get<core::AppendRequest>(held->message.body).leader_commit;
    const auto* hb = std::get_if<core::HeartbeatRequest>(&m.body);
    if (hb && hb->leader_commit < commit) {
      send(std::move(m));
      return;
    }
    if (a || hb) {
      ++metrics_.commit_notices_replaced;
    } else {
      send(std::move(held->message));
    }
    // A notice replaced by another is due no later than the first: a stream of them waits no
    // longer than one.
    if (notice) due = std::min(due, held->due);
    notices_.erase(held);
  }
  if (notice) {
    if (notices_.empty()) notice_event_.notify();
    notices_.push_back(HeldNotice{due, std::move(m)});
    return;
  }
  send(std::move(m));
}

void NodeImpl::send_notices_due(Clock::time_point t) {
  std::vector<core::Message> due;
  std::erase_if(notices_, [&](HeldNotice& h) {
    if (h.due > t) return false;
    due.push_back(std::move(h.message));
    return true;
  });
  const std::uint64_t refused = metrics_.messages_refused;
  for (core::Message& m : due) send(std::move(m));
  // A refused send makes the core probe the peer again.
  if (metrics_.messages_refused != refused) drain_soon();
}

asio::awaitable<void> NodeImpl::notifier() {
  asio::steady_timer timer(ex_);
  while (!stopping_) {
    if (notices_.empty()) {
      co_await notice_event_.wait();
      continue;
    }
    auto first =
        std::min_element(notices_.begin(), notices_.end(),
                         [](const HeldNotice& x, const HeldNotice& y) { return x.due < y.due; })
            ->due;
    co_await sleep_until(timer, first);
    if (stopping_) break;
    send_notices_due(now());
  }
}

void NodeImpl::on_receive(core::Message m) {
  if (!running() || !core_) return;
  if (hooks_.drop_incoming && hooks_.drop_incoming(m)) return;
  ++metrics_.messages_received;
  last_contact_[m.from.value()] = now();
  // Snapshot chunks and their acknowledgements are the node's; the core sees a stream only
  // once it is received whole, and the receiver core's final answer.
  if (auto* chunk = std::get_if<core::InstallSnapshot>(&m.body)) {
    on_snapshot_chunk(m.from, std::move(*chunk));
    return;
  }
  if (const auto* r = std::get_if<core::InstallSnapshotResponse>(&m.body)) {
    on_snapshot_response(m.from, *r);
    if (!r->done) return;
  }
  auto r = core_->step(std::move(m));
  if (!r) log(LogLevel::debug, "node ", config_.id, ": message refused: ", r.error().message());
  drain_soon();
}

// Inputs that arrive together (proposals, received messages) make one output: one write and
// one AppendEntries per follower for all of them, instead of one each.
void NodeImpl::drain_soon() {
  if (drain_posted_) return;
  drain_posted_ = true;
  asio::post(ex_, [self = shared_from_this()] {
    self->drain_posted_ = false;
    self->drain();
  });
}

void NodeImpl::on_soft_state(const core::SoftState& s) {
  const core::SoftState prev = soft_;
  soft_ = s;
  if (s.role != prev.role) {
    if (s.role == core::Role::candidate) ++metrics_.elections;
    emit(NodeEvent{NodeEvent::Kind::role, role_of(s.role), s.term, s.leader,
                   core_->configuration()});
  }
  if (s.leader != prev.leader) {
    ++metrics_.leader_changes;
    emit(NodeEvent{NodeEvent::Kind::leader, role_of(s.role), s.term, s.leader,
                   core_->configuration()});
    if (s.leader != no_node && s.leader != config_.id) {
      auto waiters = std::move(transfer_waiters_);
      transfer_waiters_.clear();
      for (auto& w : waiters) w.done(s.leader);
    }
  }
  // A stream belongs to one leadership: it ends before any message of a new term leaves.
  if (s.role != core::Role::leader || s.term != prev.term) {
    cancel_snapshot_streams();
    // Held commit notices belong to the leadership too: one sent later would carry a stale term.
    // A leader keeps those of its own term (made in the same output as its soft state).
    std::erase_if(notices_, [&](const HeldNotice& h) {
      return s.role != core::Role::leader || core::term_of(h.message.body) < s.term;
    });
  }
  if (in_stream_ && in_stream_->term < s.term) in_stream_.reset();
  if (prev.role == core::Role::leader && s.role != core::Role::leader) {
    fail_unknown_after_commit();
  }
}

// Proposals and configuration changes appended while leading whose commit is not known: their
// fate is decided by the next leader.
void NodeImpl::fail_unknown_after_commit() {
  const Index commit = core_->log().commit_index();
  for (auto it = proposals_.upper_bound(commit); it != proposals_.end();) {
    it = fail_proposal(it, Errc::outcome_unknown);
  }
  std::erase_if(config_waiters_, [&](ConfigWaiter& w) {
    if (w.index <= commit) return false;
    w.done(Errc::outcome_unknown);
    return true;
  });
}

NodeImpl::ProposalMap::iterator NodeImpl::fail_proposal(ProposalMap::iterator it, Errc code) {
  ProposalWaiter w = std::move(it->second);
  it = proposals_.erase(it);
  proposal_bytes_ -= w.bytes;
  if (w.batch) w.batch(code);
  if (w.one) w.one(code);
  return it;
}

// The log no longer holds the entries at `from` and above: proposals there can never commit.
void NodeImpl::fail_waiters_from(Index from, Errc code) {
  // A batch that straddles `from` lost its tail, so it fails too.
  auto it = proposals_.begin();
  while (it != proposals_.end()) {
    if (it->second.last < from) {
      ++it;
      continue;
    }
    it = fail_proposal(it, code);
  }
  std::erase_if(config_waiters_, [&](ConfigWaiter& w) {
    if (w.index < from) return false;
    w.done(code);
    return true;
  });
}

void NodeImpl::resolve_reads() {
  while (!reads_by_index_.empty() && reads_by_index_.begin()->first <= applied_) {
    const auto [index, id] = *reads_by_index_.begin();
    reads_by_index_.erase(reads_by_index_.begin());
    auto it = reads_.find(id);
    if (it == reads_.end()) continue;
    auto done = std::move(it->second.done);
    reads_.erase(it);
    ++metrics_.reads;
    done(index);
  }
}

void NodeImpl::sweep_timeouts(Clock::time_point now) {
  for (auto it = reads_.begin(); it != reads_.end();) {
    if (it->second.deadline > now) {
      ++it;
      continue;
    }
    auto done = std::move(it->second.done);
    it = reads_.erase(it);
    done(Error(Errc::timeout, "read_barrier: not confirmed within read_timeout"));
  }
  std::erase_if(transfer_waiters_, [&](TransferWaiter& w) {
    if (w.deadline > now) return false;
    w.done(Error(Errc::timeout, "transfer_leadership: no other leader within transfer_timeout"));
    return true;
  });
}

void NodeImpl::check_disk_stall(Clock::time_point now) {
  if (config_.disk_stall_timeout.count() == 0 || soft_.role != core::Role::leader) return;
  // The oldest write the writer started and the disk has not finished.
  const WriteJob* oldest = nullptr;
  for (std::size_t i = 0; i < writes_started_ && i < writes_.size(); ++i) {
    if (!writes_[i]->done) {
      oldest = writes_[i].get();
      break;
    }
  }
  if (!oldest || now - oldest->started < config_.disk_stall_timeout) {
    stall_reported_ = false;
    return;
  }
  if (stall_reported_ || core_->transfer_target() != no_node) return;
  stall_reported_ = true;
  // Hand leadership to the most up-to-date voter: a leader that cannot write cannot commit.
  const NodeId best = most_caught_up_voter();
  log(LogLevel::error, "node ", config_.id, ": a log write has been outstanding for over ",
      config_.disk_stall_timeout.count(), " ms; handing leadership to node ", best);
  ++metrics_.disk_stall_stepdowns;
  if (best != no_node) {
    auto r = core_->transfer_leadership(best);
    if (!r) log(LogLevel::warn, "node ", config_.id, ": transfer failed: ", r.error().message());
    drain();
  }
}

NodeId NodeImpl::most_caught_up_voter() const {
  NodeId best;
  Index best_match;
  for (NodeId v : core_->configuration().voters) {
    if (v == config_.id) continue;
    const core::Progress* p = core_->progress(v);
    if (p && (best == no_node || p->match_index > best_match)) {
      best = v;
      best_match = p->match_index;
    }
  }
  return best;
}

// ---- Coroutines ----

asio::awaitable<void> NodeImpl::sleep_until(asio::steady_timer& timer, Clock::time_point at) {
  if (hooks_.time) {
    co_await hooks_.time->sleep_until(at);
    co_return;
  }
  timer.expires_at(at);
  co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
}

asio::awaitable<void> NodeImpl::ticker() {
  asio::steady_timer timer(ex_);
  auto next = now();
  while (!stopping_) {
    next += config_.tick_interval;
    co_await sleep_until(timer, next);
    if (stopping_) break;
    const auto t = now();
    if (t - next > 10 * config_.tick_interval) next = t;  // do not catch up a long pause
    core_->tick();
    drain();
    sweep_timeouts(t);
    check_disk_stall(t);
    const bool due = (config_.snapshot_threshold_entries != 0 &&
                      applied_since_snapshot_ >= config_.snapshot_threshold_entries) ||
                     (config_.snapshot_threshold_bytes != 0 &&
                      applied_bytes_since_snapshot_ >= config_.snapshot_threshold_bytes);
    if (due && !snapshot_requested_) {
      snapshot_requested_ = true;
      apply_event_.notify();
    }
  }
}

// Takes jobs in order. A hard-state save waits until every earlier append is durable, and every
// later write waits for it, so the hard state and the log become durable in the order the core
// handed them out. Appends and truncations are ordered by the log itself and overlap (group
// commit).
asio::awaitable<void> NodeImpl::writer() {
  if (clear_log_on_start_) {
    writer_busy_ = true;
    auto r = co_await durable_->clear_log();
    writer_busy_ = false;
    if (!r) fail_stop(r.error());
  }
  while (!stopping_) {
    if (writes_started_ >= writes_.size()) {
      co_await write_event_.wait();
      continue;
    }
    std::shared_ptr<WriteJob> job = writes_[writes_started_];
    if (job->hard_state || job->install) {
      while (appends_in_flight_ > 0 && !stopping_) co_await written_event_.wait();
      if (stopping_) break;
      job->started = now();
      ++writes_started_;
      if (job->hard_state) {
        writer_busy_ = true;
        auto r = co_await durable_->save_hard_state(*job->hard_state);
        writer_busy_ = false;
        if (!r) {
          fail_stop(r.error());
          break;
        }
        ++metrics_.hard_state_writes;
        on_term_durable(job->hard_state->term);
      }
      if (job->install) {
        writer_busy_ = true;
        auto r = co_await install_staged(*job);
        writer_busy_ = false;
        if (!r) {
          fail_stop(r.error());
          break;
        }
      }
    } else {
      // Bound what waits for the disk; a lone job always goes.
      while (appends_in_flight_ > 0 &&
             append_bytes_in_flight_ + job->bytes > config_.log_queue_bytes_max && !stopping_) {
        co_await written_event_.wait();
      }
      if (stopping_) break;
      job->started = now();
      ++writes_started_;
    }
    if (job->truncate_from) {
      writer_busy_ = true;
      auto r = co_await durable_->truncate_suffix(*job->truncate_from);
      writer_busy_ = false;
      if (!r) {
        fail_stop(r.error());
        break;
      }
    }
    if (job->entries.empty()) {
      job->done = true;
      complete_writes();
      continue;
    }
    ++appends_in_flight_;
    append_bytes_in_flight_ += job->bytes;
    spawn(append_job(job));
  }
}

asio::awaitable<void> NodeImpl::append_job(std::shared_ptr<WriteJob> job) {
  std::vector<Entry> entries = std::move(job->entries);
  std::uint64_t payload = 0;
  for (const Entry& e : entries) payload += e.payload.size();
  const std::size_t count = entries.size();
  for (;;) {
    // Keep a copy for a retry after disk_full: the entries are shared views, so this is cheap.
    auto r = co_await durable_->append(entries);
    if (r) break;
    if (r.error().is(Errc::disk_full) && !stopping_) {
      if (!disk_full_) {
        log(LogLevel::error, "node ", config_.id, ": disk full: ", r.error().message(),
            "; proposals fail with disk_full until space returns");
      }
      disk_full_ = true;
      // Appends behind a full disk fail too; they are retried oldest first, so that each
      // retry continues the log where the one before it ended.
      do {
        asio::steady_timer t(ex_);
        co_await sleep_until(t, now() + std::chrono::milliseconds(100));
      } while (!stopping_ && earlier_append_pending(job.get()));
      continue;
    }
    if (!stopping_) fail_stop(r.error());
    --appends_in_flight_;
    append_bytes_in_flight_ -= job->bytes;
    written_event_.notify();
    co_return;
  }
  if (disk_full_) log(LogLevel::info, "node ", config_.id, ": disk space returned");
  disk_full_ = false;
  ++metrics_.log_writes;
  metrics_.log_entries += count;
  metrics_.log_bytes += payload;
  --appends_in_flight_;
  append_bytes_in_flight_ -= job->bytes;
  job->done = true;
  written_event_.notify();
  complete_writes();
}

// Configuration changes applied and not left joint complete with the configuration in force.
void NodeImpl::settle_applied_config_waiters() {
  std::erase_if(config_waiters_, [&](ConfigWaiter& w) {
    if (w.index > applied_ || applied_conf_.joint()) return false;
    w.done(applied_conf_);
    return true;
  });
}

bool NodeImpl::earlier_append_pending(const WriteJob* job) const {
  for (const auto& w : writes_) {
    if (w.get() == job) return false;
    if (!w->done) return true;
  }
  return false;
}

// Acknowledges finished writes in order (step 4), then sends what waited for them.
void NodeImpl::complete_writes() {
  if (stopping_) return;
  while (!writes_.empty() && writes_started_ > 0 && writes_.front()->done) {
    std::shared_ptr<WriteJob> job = std::move(writes_.front());
    writes_.pop_front();
    --writes_started_;
    if (job->write != 0) core_->persisted(job->write);
    for (core::Message& m : job->after) send(std::move(m));
    drain();
  }
}

asio::awaitable<void> NodeImpl::to_state_machine() {
  if (config_.apply_inline) co_return;
  // The completion must be bound to the apply thread's executor: posting a plain use_awaitable
  // there would hand the completion straight back to this coroutine's own executor, and the
  // state machine would run on the node's executor after all.
  co_await asio::post(asio::bind_executor(apply_io_.get_executor(), asio::use_awaitable));
}

asio::awaitable<void> NodeImpl::from_state_machine() {
  if (config_.apply_inline) co_return;
  co_await asio::post(ex_, asio::use_awaitable);
}

asio::awaitable<void> NodeImpl::applier() {
  std::vector<Command> commands;
  std::vector<Bytes> replies;
  std::vector<Entry> batch;
  while (!stopping_) {
    if (restore_pending_) {
      const SnapshotMeta meta = std::move(*restore_pending_);
      restore_pending_.reset();
      auto r = co_await restore_stored(meta);
      if (stopping_) break;
      if (!r) {
        fail_stop(r.error());
        break;
      }
      while (!to_apply_.empty() && to_apply_.front().index <= meta.last_index)
        to_apply_.pop_front();
      applied_ = meta.last_index;
      applied_conf_ = meta.configuration;
      installing_.reset();
      // Proposals the snapshot covers were committed, but their replies are not known here.
      for (auto it = proposals_.begin(); it != proposals_.end() && it->second.last <= applied_;) {
        it = fail_proposal(it, Errc::outcome_unknown);
      }
      settle_applied_config_waiters();
      applied_since_snapshot_ = 0;
      applied_bytes_since_snapshot_ = 0;
      core_->applied(applied_);
      drain();
      resolve_reads();
      continue;
    }
    if (snapshot_requested_ && !snapshot_saving_) {
      snapshot_requested_ = false;
      co_await take_snapshot();
      continue;
    }
    if (to_apply_.empty() || installing_) {
      co_await apply_event_.wait();
      continue;
    }
    batch.clear();
    commands.clear();
    replies.clear();
    while (!to_apply_.empty() && batch.size() < config_.apply_batch_entries_max) {
      batch.push_back(std::move(to_apply_.front()));
      to_apply_.pop_front();
    }
    for (const Entry& e : batch) {
      if (e.type == EntryType::normal) commands.push_back(Command{e.index, e.term, e.payload});
    }
    if (!commands.empty()) {
      // Run the state machine where it runs (the apply thread, or here), then come back.
      applier_busy_ = true;
      if (hooks_.apply_delay) {
        asio::steady_timer slow(ex_);
        co_await sleep_until(slow, now() + hooks_.apply_delay(commands.size()));
        if (stopping_) {
          applier_busy_ = false;
          break;
        }
      }
      co_await to_state_machine();
      sm_.apply(commands, replies);
      co_await from_state_machine();
      applier_busy_ = false;
      CORAFT_ASSERT(replies.size() == commands.size(),
                    "StateMachine::apply must give one reply "
                    "per command",
                    replies.size(), commands.size());
      ++metrics_.apply_batches;
      metrics_.applies += commands.size();
    }
    if (stopping_) break;
    std::size_t reply = 0;
    for (const Entry& e : batch) {
      Bytes out;
      if (e.type == EntryType::normal) out = std::move(replies[reply++]);
      if (e.type == EntryType::config) {
        auto conf = decode_configuration(e.payload.span());
        if (conf) applied_conf_ = std::move(*conf);
      }
      // The waiter whose batch holds this index, if any.
      auto it = proposals_.upper_bound(e.index);
      if (it != proposals_.begin()) {
        --it;
        ProposalWaiter& w = it->second;
        if (e.index <= w.last) {
          if (e.term != w.term) {
            fail_proposal(it, Errc::dropped);
          } else {
            w.replies.push_back(std::move(out));
            if (e.index == w.last) {
              ProposalWaiter fin = std::move(w);
              const Index first = it->first;
              proposals_.erase(it);
              proposal_bytes_ -= fin.bytes;
              if (fin.one) fin.one(Proposed{first, std::move(fin.replies.front())});
              if (fin.batch) fin.batch(ProposedBatch{first, std::move(fin.replies)});
            }
          }
        }
      }
      applied_ = e.index;
      ++applied_since_snapshot_;
      applied_bytes_since_snapshot_ += e.payload.size();
    }
    settle_applied_config_waiters();
    core_->applied(applied_);
    drain();
    resolve_reads();
  }
}

}  // namespace coraft::detail
