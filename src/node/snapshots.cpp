// Snapshot streams (output.hpp step 7): the leader sends its stored snapshot file in chunks
// with a window of unacknowledged ones; the follower stages them durably, acknowledges each once
// it is synced, checks the whole file, and only then hands the snapshot to its core. Installing
// (step 2) and loading the state machine (step 5) follow.
//
// The chunks are the exact bytes of the stored file (header, configuration, data), so the
// receiver checks what it got with the file's own CRCs and keeps it as its stored snapshot.
// A stream belongs to one leadership and one snapshot; it fails when no chunk is acknowledged
// for snapshot_chunk_timeout, and the follower then waits a growing delay for the next one.
#include <fcntl.h>

#include <algorithm>
#include <cstring>

#include <asio/experimental/as_tuple.hpp>
#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>

#include <coraft/log.hpp>

#include "node/node_impl.hpp"
#include "storage/file_util.hpp"

namespace coraft::detail {

namespace {

// The data of a stored snapshot file, read in order.
class FileSource final : public SnapshotSource {
 public:
  FileSource(storage::Fd fd, std::string path, std::uint64_t offset, std::uint64_t size)
      : fd_(std::move(fd)), path_(std::move(path)), offset_(offset), size_(size) {}
  Result<std::size_t> read(std::span<std::byte> out) override {
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(out.size(), size_ - pos_));
    if (n == 0) return std::size_t{0};
    if (auto r = storage::pread_all(fd_.get(), out.first(n), offset_ + pos_, path_); !r) {
      return r.error();
    }
    pos_ += n;
    return n;
  }
  [[nodiscard]] std::uint64_t size() const noexcept override { return size_; }

 private:
  storage::Fd fd_;
  std::string path_;
  std::uint64_t offset_;
  std::uint64_t size_;
  std::uint64_t pos_ = 0;
};

// How long a stream waits for an acknowledgement before it looks again.
constexpr auto stream_poll = std::chrono::milliseconds(50);

}  // namespace

Result<void> restore_from_file(StateMachine& sm, const storage::SnapshotInfo& info) {
  auto fd = storage::open_file(info.path, O_RDONLY);
  if (!fd) return fd.error();
  FileSource source(std::move(*fd), info.path, info.data_offset, info.data_bytes);
  return sm.restore(source);
}

void NodeImpl::submit_file_job(storage::FileWorker::Job job, storage::FileWorker::Done done) {
  if (hooks_.file_jobs) {
    hooks_.file_jobs(std::move(job), std::move(done));
  } else {
    file_worker_->submit(std::move(job), std::move(done));
  }
}

asio::awaitable<Result<void>> NodeImpl::on_file_worker(storage::FileWorker::Job job) {
  auto pending = std::make_shared<PendingResult>(ex_);
  submit_file_job(std::move(job), [pending](Result<void> r) { pending->set(std::move(r)); });
  auto r = co_await pending->get();
  co_return r;
}

// ---- The leader's side ----

void NodeImpl::start_snapshot_stream(const core::SnapshotSend& s) {
  if (auto it = out_streams_.find(s.to); it != out_streams_.end()) {
    it->second->cancelled = true;  // the core gave that stream up: this one replaces it
    it->second->progress.notify();
  }
  auto st = std::make_shared<OutStream>(ex_);
  st->send = s;
  out_streams_[s.to] = st;
  log(LogLevel::info, "node ", config_.id, ": streaming snapshot ", s.meta.last_index, " to node ",
      s.to);
  spawn(stream_snapshot(std::move(st)));
}

void NodeImpl::cancel_snapshot_streams() {
  for (auto& [id, st] : out_streams_) {
    st->cancelled = true;
    st->progress.notify();
  }
  out_streams_.clear();
}

void NodeImpl::on_snapshot_response(NodeId from, const core::InstallSnapshotResponse& r) {
  auto it = out_streams_.find(from);
  if (it == out_streams_.end()) return;
  OutStream& st = *it->second;
  if (r.stream != st.send.stream || r.last_index != st.send.meta.last_index ||
      r.term < st.send.term) {
    return;  // an answer to an earlier stream
  }
  if (r.done) {
    st.answered = r.success;
    st.rejected = !r.success;
  } else if (!r.success) {
    st.rejected = true;
  } else {
    st.acked = std::max(st.acked, r.next_offset);
  }
  st.progress.notify();
}

asio::awaitable<void> NodeImpl::stream_snapshot(std::shared_ptr<OutStream> st) {
  const core::SnapshotSend send = st->send;
  const NodeId to = send.to;
  asio::steady_timer timer(ex_);
  auto pause = [&](Clock::duration d) -> asio::awaitable<void> {
    co_await sleep_until(timer, now() + d);
  };
  // A follower whose last stream failed waits before the next.
  for (;;) {
    const auto wait = snapshot_backoff_[to].not_before - now();
    if (wait <= Clock::duration::zero() || st->cancelled || stopping_) break;
    co_await pause(std::min<Clock::duration>(wait, stream_poll));
  }
  bool ok = false;
  std::string why;
  std::optional<storage::Fd> fd;
  const std::string path = store_->path_of(send.meta.last_index, send.meta.last_term);
  std::uint64_t size = 0;
  if (!st->cancelled && !stopping_) {
    if (auto f = storage::open_file(path, O_RDONLY); !f) {
      why =
          concat("snapshot ", send.meta.last_index, " is no longer stored: ", f.error().message());
    } else if (auto n = storage::file_size(f->get(), path); !n) {
      why = n.error().message();
    } else {
      fd = std::move(*f);
      size = *n;
    }
  }
  const std::uint64_t chunk = config_.snapshot_chunk_bytes;
  const std::uint64_t window = chunk * config_.snapshot_window_chunks;
  std::uint64_t offset = 0;
  std::uint64_t seen_acked = 0;
  // The follower syncs (and answers) every half window: one fdatasync per chunk costs more than
  // the disk's bandwidth allows, and half a window keeps the other half on the way meanwhile.
  const std::uint64_t sync_every = std::max<std::uint64_t>(1, config_.snapshot_window_chunks / 2);
  auto last_progress = now();
  while (fd && !st->cancelled && !stopping_) {
    if (st->answered) {
      ok = true;
      break;
    }
    if (st->rejected) {
      why = "the follower refused a chunk";
      break;
    }
    if (st->acked > seen_acked) {
      seen_acked = st->acked;
      last_progress = now();
    }
    // Fill the window: at most `window` bytes sent and not yet durable on the follower.
    bool refused = false;
    while (offset < size && offset - std::min(offset, st->acked) < window) {
      const std::uint64_t n = std::min(chunk, size - offset);
      auto buf = std::make_shared<std::vector<std::byte>>(n);
      if (auto r = storage::pread_all(fd->get(), *buf, offset, path); !r) {
        why = r.error().message();
        break;
      }
      const std::span<const std::byte> bytes(*buf);
      core::Message m{config_.id, to,
                      core::InstallSnapshot{send.term, send.meta, offset, Bytes::wrap(buf, bytes),
                                            offset + n == size, send.stream,
                                            (offset / chunk + 1) % sync_every == 0}};
      if (hooks_.tamper_outgoing) hooks_.tamper_outgoing(m);
      if (hooks_.drop_outgoing && hooks_.drop_outgoing(m)) {
        offset += n;  // lost on the way, as a network may lose it
        continue;
      }
      auto sent = transport_->send(std::move(m));
      if (!sent) {
        if (!sent.error().is(Errc::overloaded)) why = sent.error().message();
        refused = true;  // the queue is full: try again once it drained a little
        break;
      }
      offset += n;
      metrics_.snapshot_bytes_sent += n;
    }
    if (!why.empty()) break;
    if (now() - last_progress > config_.snapshot_chunk_timeout) {
      why = concat("no chunk acknowledged for ", config_.snapshot_chunk_timeout.count(), " ms");
      break;
    }
    // Wait for an acknowledgement, a refusal or the next look.
    if (hooks_.time) {
      // On the node's clock: a sleeper that wakes this wait only, if nothing else did first.
      const std::uint64_t wait = ++st->waits;
      spawn([](std::shared_ptr<node::TimePort> t, std::shared_ptr<OutStream> s,
               Clock::time_point at, std::uint64_t w) -> asio::awaitable<void> {
        co_await t->sleep_until(at);
        if (s->waits == w) s->progress.notify();
      }(hooks_.time, st, now() + (refused ? std::chrono::milliseconds(5) : stream_poll), wait));
      co_await st->progress.wait();
      ++st->waits;
    } else {
      timer.expires_after(refused ? std::chrono::milliseconds(5) : stream_poll);
      timer.async_wait([st](const asio::error_code&) { st->progress.notify(); });
      co_await st->progress.wait();
      timer.cancel();
    }
  }
  if (auto it = out_streams_.find(to); it != out_streams_.end() && it->second == st) {
    out_streams_.erase(it);
  }
  if (st->cancelled || stopping_) co_return;  // the core no longer waits for this stream
  Backoff& b = snapshot_backoff_[to];
  if (ok) {
    ++metrics_.snapshots_sent;
    b = Backoff{};
    log(LogLevel::info, "node ", config_.id, ": node ", to, " installed snapshot ",
        send.meta.last_index);
  } else {
    ++metrics_.snapshot_streams_failed;
    b.delay = std::clamp<Clock::duration>(2 * b.delay, config_.snapshot_retry_delay_min,
                                          config_.snapshot_retry_delay_max);
    b.not_before = now() + b.delay;
    log(LogLevel::warn, "node ", config_.id, ": snapshot stream to node ", to, " failed: ", why,
        "; the next in ", std::chrono::duration_cast<std::chrono::milliseconds>(b.delay).count(),
        " ms");
  }
  core_->report_snapshot(to, send.stream, ok);
  drain();
}

// ---- The follower's side ----

// An answer carries the stream's term or the node's, the later. A term not yet durable here
// must not leave in any message: the answer then waits for the hard-state write, and leaves
// with it. Within one stream answers are cumulative, so a later one replaces an earlier one.
void NodeImpl::answer_chunk(NodeId to, Term term, Index last, std::uint64_t stream,
                            std::uint64_t next, bool ok) {
  core::Message m{
      config_.id, to,
      core::InstallSnapshotResponse{std::max(term, core_->term()), last, next, ok, false, stream}};
  if (core::term_of(m.body) <= durable_term_) {
    send(std::move(m));
    return;
  }
  std::erase_if(deferred_answers_, [&](const core::Message& d) {
    return d.to == to && std::get<core::InstallSnapshotResponse>(d.body).stream == stream;
  });
  if (deferred_answers_.size() >= deferred_answers_max) {
    deferred_answers_.erase(deferred_answers_.begin());
  }
  deferred_answers_.push_back(std::move(m));
}

void NodeImpl::on_term_durable(Term t) {
  durable_term_ = std::max(durable_term_, t);
  std::vector<core::Message> ready;
  std::erase_if(deferred_answers_, [&](core::Message& d) {
    if (core::term_of(d.body) > durable_term_) return false;
    ready.push_back(std::move(d));
    return true;
  });
  for (core::Message& m : ready) send(std::move(m));
}

void NodeImpl::on_snapshot_chunk(NodeId from, core::InstallSnapshot c) {
  const Index last = c.meta.last_index;
  if (c.term < core_->term() || (c.term == core_->term() && core_->role() == core::Role::leader)) {
    answer_chunk(from, c.term, last, c.stream, 0, false);  // a stream of an old leadership
    return;
  }
  const bool same = in_stream_ && in_stream_->from == from && in_stream_->term == c.term &&
                    in_stream_->stream == c.stream && in_stream_->meta.last_index == last &&
                    in_stream_->meta.last_term == c.meta.last_term;
  if (!same) {
    // A duplicate of a finished stream, or of one being installed.
    if ((staged_ && staged_->last_index() == last) || installing_ == last) return;
    if (installing_) {
      // Another snapshot is still being installed: its file must stay until the state machine
      // holds it (a newer one adopted meanwhile could delete it), and nothing may be applied
      // between the two. The leader tries again after its retry delay.
      answer_chunk(from, c.term, last, c.stream, 0, false);
      return;
    }
    if (c.offset != 0) {
      answer_chunk(from, c.term, last, c.stream, 0, false);  // joined in the middle: start again
      return;
    }
    // A newer stream replaces an older one; the staging file goes with its last write.
    in_stream_.reset();
    auto rec = store_->receive(last, c.meta.last_term);
    if (!rec) {
      log(LogLevel::error, "node ", config_.id, ": cannot stage snapshot ", last, ": ",
          rec.error().message());
      answer_chunk(from, c.term, last, c.stream, 0, false);
      return;
    }
    in_stream_ = InStream{from,
                          c.term,
                          c.stream,
                          c.meta,
                          std::make_shared<storage::SnapshotStore::Receiver>(std::move(*rec)),
                          0};
  }
  InStream& in = *in_stream_;
  if (c.offset < in.expected) return;  // sent again after a reconnect: already taken
  if (c.offset > in.expected) {
    answer_chunk(from, c.term, last, c.stream, 0, false);  // a chunk went missing
    in_stream_.reset();
    return;
  }
  in.expected += c.data.size();
  auto rec = in.receiver;
  const std::uint64_t end = c.offset + c.data.size();
  // The chunks the sender marks (and the last) are synced, with every one before them, and
  // answered: one fdatasync and one acknowledgement for a run of chunks.
  const bool sync = c.sync || c.done;
  submit_file_job(
      [rec, sync, offset = c.offset, data = c.data] {
        auto r = rec->write(offset, data.span());
        if (!r || !sync) return r;
        return rec->sync();
      },
      [self = shared_from_this(), rec, sync, from, term = c.term, last, end,
       done = c.done](Result<void> r) {
        self->on_chunk_written(rec, from, term, last, end, done, sync, std::move(r));
      });
}

void NodeImpl::on_chunk_written(const std::shared_ptr<storage::SnapshotStore::Receiver>& rec,
                                NodeId from, Term term, Index last, std::uint64_t end, bool done,
                                bool synced, Result<void> r) {
  if (!running() || !in_stream_ || in_stream_->receiver != rec) return;  // superseded
  const std::uint64_t stream = in_stream_->stream;
  if (!r) {
    log(LogLevel::error, "node ", config_.id, ": staging snapshot ", last,
        " failed: ", r.error().message());
    answer_chunk(from, term, last, stream, 0, false);
    in_stream_.reset();
    return;
  }
  if (!synced) return;  // a later marked chunk syncs this one too, and answers for it
  answer_chunk(from, term, last, stream, end, true);
  if (!done) return;
  // The whole file is durable: check it against its own CRCs before the core hears of it.
  auto info = std::make_shared<Result<storage::SnapshotInfo>>(Errc::invalid_argument);
  const SnapshotMeta meta = in_stream_->meta;
  submit_file_job(
      [rec, info, bytes_max = config_.snapshot_bytes_max] {
        *info = rec->check(bytes_max);
        return info->ok() ? Result<void>() : Result<void>(info->error());
      },
      [self = shared_from_this(), rec, from, term, meta, info](Result<void>) {
        self->on_stream_received(rec, from, term, meta, std::move(*info));
      });
}

void NodeImpl::on_stream_received(const std::shared_ptr<storage::SnapshotStore::Receiver>& rec,
                                  NodeId from, Term term, const SnapshotMeta& meta,
                                  Result<storage::SnapshotInfo> r) {
  if (!running() || !in_stream_ || in_stream_->receiver != rec) return;
  const std::uint64_t stream = in_stream_->stream;
  in_stream_.reset();
  // The stream's metadata carries the membership without addresses; the file has it whole.
  if (r && (r->meta.configuration.voters != meta.configuration.voters ||
            r->meta.configuration.outgoing_voters != meta.configuration.outgoing_voters ||
            r->meta.configuration.learners != meta.configuration.learners)) {
    r = Error(Errc::storage_corrupt,
              "the received snapshot's membership differs from the stream's");
  }
  if (!r) {
    log(LogLevel::error, "node ", config_.id, ": received snapshot ", meta.last_index,
        " is damaged: ", r.error().message());
    answer_chunk(from, term, meta.last_index, stream, 0, false);
    return;
  }
  // Hand it to the core as the stream's last message (output.hpp step 7). The core installs it
  // (the next output's install_snapshot takes the staged file) or ignores a stale one.
  staged_ = rec;
  auto t = core_->log().term_at(meta.last_index);
  staged_keeps_log_ = t && *t == meta.last_term;
  auto stepped = core_->step(
      core::Message{from, config_.id,
                    core::InstallSnapshot{term, r->meta, rec->received(), Bytes(), true, stream}});
  if (!stepped) {
    log(LogLevel::warn, "node ", config_.id,
        ": received snapshot refused: ", stepped.error().message());
  }
  drain();
  staged_.reset();  // not installed: the core had it all already
}

asio::awaitable<Result<void>> NodeImpl::install_staged(WriteJob& job) {
  auto staged = std::move(job.staged);
  // Named first: GCC 12 mishandles temporaries with destructors that live across a co_await.
  storage::FileWorker::Job adopt = [staged] {
    auto a = staged->adopt();
    return a ? Result<void>() : Result<void>(a.error());
  };
  auto adopted = co_await on_file_worker(std::move(adopt));
  if (!adopted) co_return adopted;
  if (hooks_.snapshot_stored) hooks_.snapshot_stored(*job.install);
  const Index last = job.install->last_index;
  // (No co_await inside a conditional expression: GCC 12 miscompiles the temporaries.)
  Result<void> r;
  if (job.keeps_log) {
    r = co_await durable_->compact_prefix(last);
  } else {
    r = co_await durable_->clear_log();
  }
  if (!r) co_return r;
  ++metrics_.snapshots_installed;
  metrics_.snapshot_bytes_received += staged->received();
  restore_pending_ = *job.install;
  apply_event_.notify();
  log(LogLevel::info, "node ", config_.id, ": installed snapshot ", last, " from the leader");
  co_return Result<void>();
}

asio::awaitable<Result<void>> NodeImpl::restore_stored(SnapshotMeta meta) {
  const std::string path = store_->path_of(meta.last_index, meta.last_term);
  Result<void> restored;
  if (hooks_.restore_delay) {
    asio::steady_timer slow(ex_);
    co_await sleep_until(slow, now() + hooks_.restore_delay());
  }
  co_await to_state_machine();
  {
    auto info = storage::SnapshotStore::verify(path, config_.snapshot_bytes_max);
    restored = info ? restore_from_file(sm_, *info) : Result<void>(info.error());
  }
  co_await from_state_machine();
  co_return restored;
}

}  // namespace coraft::detail
