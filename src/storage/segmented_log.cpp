// The segmented log's writer: the append queue, group commit, segment rollover, truncation,
// compaction and reads. Recovery is in log_recovery.cpp.
#include "storage/segmented_log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include <asio/post.hpp>
#include <asio/redirect_error.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <coraft/log.hpp>

#include "storage/iov_util.hpp"
#include "storage/log_scan.hpp"
#include "storage/segmented_log_impl.hpp"

namespace coraft::storage {
namespace {

// Bookkeeping charged to each queued or cached entry besides its payload, so that empty
// payloads count against queue_bytes_max and cache_bytes_max too.
constexpr std::uint64_t cache_entry_overhead_bytes = 64;
constexpr std::size_t zero_chunk_bytes = 1u << 20;
const std::byte zero_chunk[zero_chunk_bytes] = {};
// Each record takes two iovecs, the segment header and final padding one each.
constexpr std::uint32_t batch_entries_limit = (IOV_MAX - 2) / 2;

asio::awaitable<void> wait_for(Request& r) {
  if (r.done) co_return;
  asio::error_code ec;
  co_await r.timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

[[nodiscard]] constexpr std::uint64_t block_down(std::uint64_t x) noexcept {
  return x & ~(direct_block_bytes - 1);
}
[[nodiscard]] constexpr std::uint64_t block_up(std::uint64_t x) noexcept {
  return block_down(x + direct_block_bytes - 1);
}

std::unique_ptr<std::byte[], SegmentedLog::Impl::AlignedFree> aligned_buffer(std::size_t bytes) {
  void* p = std::aligned_alloc(direct_block_bytes, bytes);
  if (p == nullptr) throw std::bad_alloc();
  return std::unique_ptr<std::byte[], SegmentedLog::Impl::AlignedFree>(static_cast<std::byte*>(p));
}

// A new segment file, and its O_DIRECT descriptor when one is wanted and allowed.
struct PreparedFiles {
  Fd fd;
  Fd direct_fd;
  int direct_errno = 0;  // why O_DIRECT could not be opened
  std::string direct_refused;
};

Result<void> prepare_file(const std::string& dir, const std::string& path, const LogOptions& opt,
                          bool want_direct, PreparedFiles& out) {
  auto fd = open_file(path, O_RDWR | O_CREAT | O_EXCL);
  if (!fd) return fd.error();
  int injected = opt.fault ? opt.fault(FaultPoint::prepare_segment) : 0;
  Result<void> r;
  if (injected != 0) {
    r = errno_error(injected, "prepare " + path);
  } else if (opt.prepare == SegmentPrepare::fallocate) {
    if (::fallocate(fd->get(), 0, 0, static_cast<off_t>(opt.segment_bytes)) < 0) {
      r = errno_error(errno, "fallocate " + path);
    }
  } else {
    // Zeros written through the O_DIRECT descriptor cost no copy into the page cache (a
    // buffered prewrite of a 64 MiB segment is a third of a busy node's CPU); where O_DIRECT is
    // refused, or the segment ends off a block boundary, the rest goes buffered.
    std::uint64_t off = 0;
    if (want_direct) {
      out.direct_fd = open_direct(path, out.direct_errno, out.direct_refused);
      if (out.direct_fd.valid() && opt.segment_bytes % direct_block_bytes == 0) {
        auto zeros = aligned_buffer(zero_chunk_bytes);
        std::memset(zeros.get(), 0, zero_chunk_bytes);
        while (off < opt.segment_bytes) {
          auto n = std::min<std::uint64_t>(zero_chunk_bytes, opt.segment_bytes - off);
          ssize_t w = ::pwrite(out.direct_fd.get(), zeros.get(), n, static_cast<off_t>(off));
          if (w < 0 && errno == EINTR) continue;
          if (w <= 0) break;  // the buffered writes below take over from here
          off += static_cast<std::uint64_t>(w) / direct_block_bytes * direct_block_bytes;
          if (static_cast<std::uint64_t>(w) < direct_block_bytes) break;
        }
      }
    }
    for (; r && off < opt.segment_bytes; off += zero_chunk_bytes) {
      auto n = std::min<std::uint64_t>(zero_chunk_bytes, opt.segment_bytes - off);
      r = pwrite_all(fd->get(), {zero_chunk, n}, off, path);
    }
  }
  if (r) r = sync_file(fd->get(), path);
  if (r) r = fsync_dir(dir);
  if (!r) {
    fd->reset();
    out.direct_fd.reset();
    (void)remove_file(path);
    return r;
  }
  out.fd = std::move(*fd);
  if (want_direct && !out.direct_fd.valid()) {
    out.direct_fd = open_direct(path, out.direct_errno, out.direct_refused);
  }
  return {};
}

}  // namespace

void SegmentedLog::Impl::AlignedFree::operator()(std::byte* p) const noexcept {
  std::free(p);
}

Fd open_direct(const std::string& path, int& err, std::string& why) {
  int fd = ::open(path.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
  if (fd >= 0) return Fd(fd);
  err = errno;
  why = errno_error(err, "open O_DIRECT " + path).message();
  return Fd();
}

SegmentedLog::Impl::~Impl() {
  *alive_token = false;
  for (Request* r : queue) complete(*r, Error(Errc::shutting_down, "the log is closing"));
  queue.clear();
  for (Request* r : side_waiters) complete(*r, Error(Errc::shutting_down, "the log is closing"));
  backend.reset();
  worker.reset();
}

Result<void> SegmentedLog::Impl::check_options() const {
  auto bad = [](std::string why) { return Error(Errc::invalid_argument, std::move(why)); };
  if (opt.dir.empty()) return bad("log directory is empty");
  if (opt.entry_bytes_max == 0 || opt.entry_bytes_max > record_payload_bytes_limit) {
    return bad("entry_bytes_max must be in 1..2^30");
  }
  if (opt.batch_bytes_max < segment_header_bytes + record_disk_bytes(opt.entry_bytes_max)) {
    return bad("batch_bytes_max must hold one entry of entry_bytes_max with its headers");
  }
  if (opt.segment_bytes < opt.batch_bytes_max)
    return bad("segment_bytes must be >= batch_bytes_max");
  if (opt.segment_bytes > (1ull << 40)) return bad("segment_bytes must be at most 1 TiB");
  if (opt.batch_entries_max == 0 || opt.batch_entries_max > batch_entries_limit) {
    return bad("batch_entries_max must be in 1.." + std::to_string(batch_entries_limit));
  }
  if (opt.open_files_max < 1) return bad("open_files_max must be at least 1");
  if (opt.queue_bytes_max < opt.entry_bytes_max)
    return bad("queue_bytes_max must be >= entry_bytes_max");
  if (opt.direct_bytes_max % direct_block_bytes != 0)
    return bad("direct_bytes_max must be a multiple of 4096");
  return {};
}

Term SegmentedLog::Impl::queued_term_at(Index i) {
  for (auto it = queue.rbegin(); it != queue.rend(); ++it) {
    Request& r = **it;
    if (r.kind != Request::Kind::append || r.entries.empty()) continue;
    if (i >= r.entries.front().index && i <= r.entries.back().index) {
      return r.entries[i - r.entries.front().index].term;
    }
  }
  auto t = i >= first_index && i <= last_index ? segment_of(i)->recs[i - segment_of(i)->first].term
                                               : Term(0);
  return t;
}

void SegmentedLog::Impl::complete(Request& r, Result<void> result) {
  r.done = true;
  r.result = std::move(result);
  r.timer.cancel();
}

void SegmentedLog::Impl::enqueue_append(Request& r) {
  auto reject = [&](Errc c, std::string why) { complete(r, Error(c, std::move(why))); };
  if (failed) return complete(r, *failed);
  if (r.entries.empty()) return complete(r, {});
  bool empty_log = last_queued < first_index && queue.empty();
  Index expect = empty_log ? r.entries.front().index : last_queued + 1;
  Term term_floor = empty_log ? Term(1) : std::max(last_queued_term, Term(1));
  std::uint64_t bytes = 0;
  for (const Entry& e : r.entries) {
    if (e.payload.size() > opt.entry_bytes_max) {
      return reject(Errc::too_large, "entry " + std::to_string(e.index.value()) + " holds " +
                                         std::to_string(e.payload.size()) +
                                         " bytes, over entry_bytes_max");
    }
    if (e.index != expect || e.index == Index(0)) {
      return reject(Errc::invalid_argument, "append of index " + std::to_string(e.index.value()) +
                                                " where " + std::to_string(expect.value()) +
                                                " was expected");
    }
    if (e.term < term_floor) {
      return reject(Errc::invalid_argument, "entry " + std::to_string(e.index.value()) +
                                                " has a term below its predecessor's");
    }
    term_floor = e.term;
    ++expect;
    bytes += e.payload.size() + cache_entry_overhead_bytes;
  }
  if (queued_bytes + bytes > opt.queue_bytes_max) {
    return reject(Errc::overloaded, "queue_bytes_max reached");
  }
  r.bytes = bytes;
  queued_bytes += bytes;
  last_queued = r.entries.back().index;
  last_queued_term = r.entries.back().term;
  queue.push_back(&r);
  pump();
}

void SegmentedLog::Impl::enqueue_truncate(Request& r) {
  if (failed) return complete(r, *failed);
  if (r.from == Index(0))
    return complete(r, Error(Errc::invalid_argument, "truncate from index 0"));
  if (r.from <= last_queued) {
    last_queued = r.from - 1;
    last_queued_term = r.from > first_index ? queued_term_at(r.from - 1) : Term(0);
  }
  queue.push_back(&r);
  pump();
}

void SegmentedLog::Impl::fail_queue(const Error& e) {
  for (Request* r : queue) complete(*r, e);
  queue.clear();
  queued_bytes = 0;
  last_queued = last_index;
  last_queued_term = last_index >= first_index ? segment_of(last_index)->recs.back().term : Term(0);
}

void SegmentedLog::Impl::pump() {
  while (!in_flight && !busy && !waiting_for_segment && !pump_posted && !queue.empty()) {
    Request& r = *queue.front();
    if (r.kind == Request::Kind::truncate) {
      queue.pop_front();
      run_truncate(r);
      continue;
    }
    const Entry& e = r.entries[r.submitted];
    if (!ensure_segment(record_disk_bytes(e.payload.size()))) return;
    start_batch();
  }
}

// Makes sure the active segment has room for a record of `record_bytes`; false when the
// writer has to wait for a prepared segment (or the queue was failed).
bool SegmentedLog::Impl::ensure_segment(std::uint64_t record_bytes) {
  if (active) {
    std::uint64_t start = active->end == 0 ? segment_header_bytes : active->end;
    if (start + record_bytes <= opt.segment_bytes) return true;
  }
  if (!prepared) {
    if (prepare_error) {
      Error e = *prepare_error;
      prepare_error.reset();
      abandon_queue(e, false);
      return false;
    }
    start_prepare();
    waiting_for_segment = true;
    return false;
  }
  if (active) seal_active();
  Segment s;
  s.name = prepared->name;
  s.open = true;
  s.fd = std::move(prepared->fd);
  s.direct_fd = std::move(prepared->direct_fd);
  s.first = queue.front()->entries[queue.front()->submitted].index;
  tail_valid = true;  // nothing written yet: the tail block holds no old bytes
  ++open_fds;
  // After the full segment's rename (submitted by seal_active above): every durable entry is
  // in a closed segment now, and the new one is named as being written.
  auto parsed = parse_segment_name(prepared->name);
  extent = LogExtent{last_index >= first_index ? first_index : Index(0), last_index,
                     parsed ? parsed->seq : 0, s.first};
  write_extent(extent);
  prepared.reset();
  segments.push_back(std::move(s));
  active = &segments.back();
  start_prepare();
  return true;
}

// Replaces the extent file on the worker, after the file work submitted before it.
void SegmentedLog::Impl::write_extent(const LogExtent& e) {
  worker->submit([dir = opt.dir, e] { return write_extent_file(dir, e); },
                 [this](Result<void> r) {
                   if (!r) {
                     log(LogLevel::error, "storage: ", r.error().message());
                     if (!failed) failed = r.error();
                   }
                 });
}

void SegmentedLog::Impl::start_prepare() {
  if (preparing || prepared) return;
  preparing = true;
  std::string name = open_segment_name(next_seq++);
  auto files = std::make_shared<PreparedFiles>();
  bool want_direct = direct_wanted();
  worker->submit([dir = opt.dir, p = path(name), opt = opt, want_direct,
                  files] { return prepare_file(dir, p, opt, want_direct, *files); },
                 [this, name, files, want_direct](Result<void> r) {
                   preparing = false;
                   if (r) {
                     if (want_direct && !files->direct_fd.valid()) {
                       no_direct_fd(files->direct_errno, files->direct_refused);
                     }
                     prepared = Prepared{name, std::move(files->fd), std::move(files->direct_fd)};
                   } else {
                     log(LogLevel::error, "storage: ", r.error().message());
                     prepare_error = r.error();
                   }
                   if (waiting_for_segment) {
                     waiting_for_segment = false;
                     pump();
                   }
                 });
}

// Renames the active segment to its closed name (or deletes it when it holds nothing).
void SegmentedLog::Impl::seal_active() {
  Segment* s = active;
  active = nullptr;
  tail_valid = false;
  s->direct_fd.reset();
  std::string old_path = path(s->name);
  if (s->recs.empty()) {
    segments.pop_back();
    --open_fds;
    worker->submit(
        [old_path, dir = opt.dir]() -> Result<void> {
          auto r = remove_file(old_path);
          return r ? fsync_dir(dir) : r;
        },
        [](Result<void>) {});
    return;
  }
  s->open = false;
  s->name = closed_segment_name(s->first, s->last());
  worker->submit(
      [old_path, new_path = path(s->name), dir = opt.dir]() -> Result<void> {
        auto r = rename_file(old_path, new_path);
        return r ? fsync_dir(dir) : r;
      },
      [this](Result<void> r) {
        if (!r) {
          log(LogLevel::error, "storage: ", r.error().message());
          if (!failed) failed = r.error();
        }
      });
}

void SegmentedLog::Impl::start_batch() {
  Batch& b = batch;
  Segment& s = *active;
  b.segment = &s;
  b.iov.clear();
  b.recs.clear();
  b.parts.clear();
  b.bytes = 0;
  b.queue_bytes = 0;
  b.offset = s.end;
  std::uint64_t pos = s.end;
  if (s.end == 0) {
    encode_segment_header(
        {s.first, opt.batch_bytes_max, static_cast<std::uint32_t>(opt.segment_bytes / 512)},
        b.segment_header);
    b.iov.push_back({b.segment_header, segment_header_bytes});
    pos = segment_header_bytes;
  }
  b.headers.resize(std::size_t{opt.batch_entries_max + 1} * 40);
  std::size_t n = 0;
  std::uint64_t prev_pad = 0;
  std::uint32_t last_crc_head = 0;
  for (Request* r : queue) {
    if (r->kind != Request::Kind::append) break;
    std::size_t taken = 0;
    for (std::size_t i = r->submitted; i < r->entries.size(); ++i) {
      const Entry& e = r->entries[i];
      std::uint64_t rb = record_disk_bytes(e.payload.size());
      std::uint64_t span = pos + rb - b.offset;
      if (n == opt.batch_entries_max || span > opt.batch_bytes_max || pos + rb > opt.segment_bytes)
        break;
      if (n == 0) b.first = e.index;
      std::byte* slot = b.headers.data() + n * 40;
      std::memset(slot, 0, 8);
      last_crc_head = encode_record_header(e, static_cast<std::uint32_t>(n), slot + 8);
      b.iov.push_back({slot + 8 - prev_pad, record_header_bytes + prev_pad});
      if (!e.payload.empty())
        b.iov.push_back({const_cast<std::byte*>(e.payload.data()), e.payload.size()});
      prev_pad = pad8(e.payload.size()) - e.payload.size();
      b.recs.push_back({pos, e.term, static_cast<std::uint32_t>(e.payload.size()), e.type});
      b.queue_bytes += e.payload.size() + cache_entry_overhead_bytes;
      pos += rb;
      ++n;
      ++taken;
    }
    if (taken == 0) break;
    r->submitted += taken;
    b.parts.emplace_back(r, taken);
    if (r->submitted < r->entries.size()) break;
  }
  CORAFT_ASSERT(n > 0, "a batch must hold at least one record", s.end, opt.segment_bytes);
  mark_batch_end(b.headers.data() + (n - 1) * 40 + 8, last_crc_head);
  if (prev_pad > 0) {
    std::byte* slot = b.headers.data() + n * 40;
    std::memset(slot, 0, 8);
    b.iov.push_back({slot, prev_pad});
  }
  b.bytes = pos - b.offset;
  in_flight = true;
  auto done = [this](int err) { on_batch_done(err); };
  if (stage_direct(b)) {
    if (int injected = opt.fault ? opt.fault(FaultPoint::direct_write) : 0; injected != 0) {
      asio::post(ex, [this, alive = alive_token, injected] {
        if (*alive) on_batch_done(injected);
      });
      return;
    }
    backend->write_sync(s.direct_fd.get(), b.direct_offset, {&b.direct_iov, 1}, opt.direct_sync,
                        done);
  } else {
    backend->write_sync(s.fd.get(), b.offset, b.iov, Sync::fdatasync, done);
  }
}

// Copies a small batch into the staging buffer as whole blocks: the tail block's old bytes,
// the batch, zeros to the block boundary. False when the batch goes buffered instead.
bool SegmentedLog::Impl::stage_direct(Batch& b) {
  b.direct = false;
  if (!direct_wanted() || !tail_valid || !b.segment->direct_fd.valid()) return false;
  std::uint64_t from = block_down(b.offset);
  std::uint64_t to = block_up(b.offset + b.bytes);
  if (to - from > opt.direct_bytes_max || to > opt.segment_bytes) return false;
  std::size_t head = b.offset - from;
  std::memcpy(staging.get(), tail.get(), head);
  copy_from_iov(b.iov, 0, staging.get() + head, b.bytes);
  std::memset(staging.get() + head + b.bytes, 0, to - from - head - b.bytes);
  b.direct = true;
  b.direct_offset = from;
  b.direct_iov = {staging.get(), to - from};
  return true;
}

// After a durable batch: remembers the segment's bytes from its last block boundary to its end.
void SegmentedLog::Impl::keep_tail(const Batch& b) {
  std::uint64_t end = b.offset + b.bytes;
  std::uint64_t t = block_down(end);
  if (b.direct) {
    std::memcpy(tail.get(), staging.get() + (t - b.direct_offset), end - t);
  } else if (t >= b.offset || tail_valid) {
    // Bytes before the batch in the same block are in the tail already.
    std::uint64_t from = std::max(t, b.offset);
    copy_from_iov(b.iov, from - b.offset, tail.get() + (from - t), end - from);
  } else {
    return;
  }
  tail_valid = true;
}

// A segment without an O_DIRECT descriptor is written buffered. Only a file system that refuses
// O_DIRECT turns it off for good; other failures (out of descriptors, memory) cost one segment.
void SegmentedLog::Impl::no_direct_fd(int err, const std::string& why) {
  if (err == EINVAL || err == EOPNOTSUPP) return refuse_direct(why);
  log(LogLevel::warn, "storage: ", why, "; this segment is written buffered");
}

void SegmentedLog::Impl::refuse_direct(const std::string& why) {
  if (direct_refused) return;
  direct_refused = true;
  log(LogLevel::warn, "storage: O_DIRECT writes refused (", why,
      "); every batch is written buffered");
}

void SegmentedLog::Impl::on_batch_done(int err) {
  in_flight = false;
  Batch& b = batch;
  if (err == 0 && opt.fault) err = opt.fault(FaultPoint::write_batch);
  if ((err == EINVAL || err == EOPNOTSUPP) && b.direct) {
    // The file system will not take this O_DIRECT write: the batch goes again, buffered.
    for (auto& [r, n] : b.parts) r->submitted -= n;
    refuse_direct(std::string(std::strerror(err)) + " writing " + path(b.segment->name));
    pump();
    return;
  }
  if (err != 0) {
    Error e = errno_error(err, "write and sync " + path(b.segment->name));
    log(LogLevel::error, "storage: ", e.message());
    for (auto& [r, n] : b.parts) r->submitted -= n;
    if (err == ENOSPC) {
      // Bytes past the last durable record of a closed segment are never read.
      abandon_queue(e, true);
    } else {
      failed = e;  // the page cache can no longer be trusted to match the disk
      fail_queue(e);
    }
    return;
  }
  Segment& s = *b.segment;
  bool was_empty = last_index < first_index;
  s.recs.insert(s.recs.end(), b.recs.begin(), b.recs.end());
  s.end = b.offset + b.bytes;
  last_index = s.last();
  if (was_empty) first_index = b.first;
  if (staging) keep_tail(b);
  ++stats.batches;
  stats.direct_batches += b.direct ? 1 : 0;
  stats.entries += b.recs.size();
  stats.bytes += b.bytes;
  queued_bytes -= b.queue_bytes;
  for (auto& [r, n] : b.parts) {
    for (std::size_t i = r->durable; i < r->durable + n; ++i) cache_add(r->entries[i]);
    r->durable += n;
  }
  while (!queue.empty() && queue.front()->kind == Request::Kind::append &&
         queue.front()->durable == queue.front()->entries.size()) {
    Request* r = queue.front();
    queue.pop_front();
    complete(*r, {});
  }
  // The next batch starts after the callers just completed have run: whatever they append at
  // once joins it (group commit across the whole set of appenders, not half of it).
  pump_posted = true;
  asio::post(ex, [this, alive = alive_token] {
    if (!*alive) return;
    pump_posted = false;
    pump();
  });
}

void SegmentedLog::Impl::cache_add(const Entry& e) {
  if (!cache.empty() && cache.back().index + 1 != e.index) {
    cache.clear();
    cache_bytes = 0;
  }
  cache.push_back(e);
  cache_bytes += e.payload.size() + cache_entry_overhead_bytes;
  while (cache_bytes > opt.cache_bytes_max && !cache.empty()) {
    cache_bytes -= cache.front().payload.size() + cache_entry_overhead_bytes;
    cache.pop_front();
  }
}

// Cuts the log before `from` in memory (nothing when from > last_index) and, with
// `close_active`, closes the active segment too (renamed to its closed name, or deleted when it
// holds nothing). Returns the file work that makes this durable: the later segments deleted
// newest first, then the segment keeping the new last entry renamed to its shorter closed name.
SegmentedLog::Impl::CutPlan SegmentedLog::Impl::cut_memory(Index from, bool close_active) {
  CutPlan plan;
  if (from <= last_index) {
    while (!segments.empty() && segments.back().first >= from) {
      Segment& s = segments.back();
      if (&s == active) active = nullptr;
      if (s.fd.valid()) --open_fds;
      plan.remove.push_back(path(s.name));
      segments.pop_back();
    }
    if (!segments.empty() && segments.back().last() >= from) {
      Segment& s = segments.back();
      if (&s == active) active = nullptr;
      s.direct_fd.reset();
      s.recs.resize(from - s.first);
      std::string old_name = s.name;
      s.open = false;
      s.name = closed_segment_name(s.first, s.last());
      plan.rename.emplace(path(old_name), path(s.name));
    }
    last_index = from - 1;
    if (segments.empty()) first_index = from;
    while (!cache.empty() && cache.back().index >= from) {
      cache_bytes -= cache.back().payload.size() + cache_entry_overhead_bytes;
      cache.pop_back();
    }
  }
  if (close_active && active != nullptr) {
    Segment& s = *active;
    active = nullptr;
    s.direct_fd.reset();
    if (s.recs.empty()) {
      if (s.fd.valid()) --open_fds;
      plan.remove.push_back(path(s.name));
      segments.pop_back();
    } else {
      std::string old_name = s.name;
      s.open = false;
      s.name = closed_segment_name(s.first, s.last());
      plan.rename.emplace(path(old_name), path(s.name));
    }
  }
  if (active == nullptr) tail_valid = false;
  // Every cut leaves no segment being written (it reaches the active one, or closes it).
  extent = LogExtent{segments.empty() ? Index(0) : first_index, last_index, 0, Index(0)};
  plan.extent = extent;
  return plan;
}

// Runs a cut's file work; the writer waits (busy) until it is durable, so no later batch can
// land before it.
void SegmentedLog::Impl::run_cut(CutPlan plan, std::function<void(Result<void>)> done) {
  busy = true;
  worker->submit(
      [plan = std::move(plan), dir = opt.dir]() -> Result<void> {
        if (auto x = write_extent_file(dir, plan.extent); !x) return x;
        for (const std::string& p : plan.remove) {
          if (auto x = remove_file(p); !x) return x;
        }
        if (plan.rename) {
          if (auto x = rename_file(plan.rename->first, plan.rename->second); !x) return x;
        }
        return fsync_dir(dir);
      },
      [this, done = std::move(done)](Result<void> res) {
        busy = false;
        if (!res && !failed) failed = res.error();
        done(std::move(res));
        pump();
      });
}

void SegmentedLog::Impl::run_truncate(Request& r) {
  if (r.from > last_index) return complete(r, {});
  CutPlan plan = cut_memory(r.from, false);
  side_waiters.push_back(&r);
  run_cut(std::move(plan), [this, &r](Result<void> res) {
    std::erase(side_waiters, &r);
    complete(r, std::move(res));
  });
}

// Fails every queued request with `e` after undoing what the failed append at the front of the
// queue already made durable, so that it fails whole; with `close_active` the active segment
// (which may hold bytes of the failed batch past its last record) is closed first. The
// requests fail once that is durable, before anything else is written.
void SegmentedLog::Impl::abandon_queue(const Error& e, bool close_active) {
  Index from = last_index + 1;
  if (!queue.empty() && queue.front()->kind == Request::Kind::append &&
      queue.front()->durable > 0) {
    from = queue.front()->entries.front().index;
  }
  if (!close_active && from > last_index) return fail_queue(e);
  CutPlan plan = cut_memory(from, close_active);
  run_cut(std::move(plan), [this, e](Result<void> res) { fail_queue(res ? e : res.error()); });
}

Segment* SegmentedLog::Impl::segment_of(Index i) {
  auto it = std::upper_bound(segments.begin(), segments.end(), i,
                             [](Index x, const Segment& s) { return x < s.first; });
  CORAFT_ASSERT(it != segments.begin(), "index below the first segment", i);
  return &*std::prev(it);
}

Result<int> SegmentedLog::Impl::read_fd(Segment& s) {
  if (s.fd.valid()) return s.fd.get();
  auto fd = open_file(path(s.name), O_RDONLY);
  if (!fd) return fd.error();
  s.fd = std::move(*fd);
  ++open_fds;
  for (Segment& other : segments) {
    if (open_fds <= opt.open_files_max) break;
    if (&other != &s && &other != active && other.fd.valid()) {
      other.fd.reset();
      --open_fds;
    }
  }
  return s.fd.get();
}

Result<Entry> SegmentedLog::Impl::read_disk(Segment& s, Index i) {
  const RecordRef& ref = s.recs[i - s.first];
  auto fd = read_fd(s);
  if (!fd) return fd.error();
  auto buf = std::make_shared<std::vector<std::byte>>(record_header_bytes + ref.length);
  auto rd = pread_all(*fd, *buf, ref.offset, path(s.name));
  if (!rd) return rd.error();
  std::string why;
  auto rec = check_record(*buf, 0, i, ref.length, &why);
  if (!rec || rec->length != ref.length) {
    return Error(Errc::storage_corrupt, path(s.name) + " offset " + std::to_string(ref.offset) +
                                            ": " + (rec ? "record length changed" : why));
  }
  std::span<const std::byte> payload(buf->data() + record_header_bytes, ref.length);
  return Entry{i, rec->term, rec->type, Bytes::wrap(buf, payload)};
}

SegmentedLog::SegmentedLog(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

SegmentedLog::~SegmentedLog() = default;

Result<std::unique_ptr<SegmentedLog>> SegmentedLog::open(asio::any_io_executor ex,
                                                         LogOptions options) {
  auto impl = std::make_shared<Impl>(ex, std::move(options));
  if (auto r = impl->check_options(); !r) return r.error();
  // A direct batch may rewrite bytes before the batch and zeros after it: its whole extent
  // must fit in the tear window recovery allows (batch_bytes_max).
  impl->opt.direct_bytes_max = static_cast<std::uint32_t>(
      std::min<std::uint64_t>(impl->opt.direct_bytes_max, block_down(impl->opt.batch_bytes_max)));
  if (auto r = make_dirs(impl->opt.dir); !r) return r.error();
  auto lock = lock_file(join_path(impl->opt.dir, "lock"));
  if (!lock) return lock.error();
  impl->dir_lock = std::move(*lock);
  if (auto r = impl->recover(); !r) return r.error();
  int setup_fault = impl->opt.fault ? impl->opt.fault(FaultPoint::uring_setup) : 0;
  auto backend = shared_disk_backend(ex, impl->opt.backend, setup_fault);
  if (!backend) return backend.error();
  impl->backend = std::make_unique<DiskChannel>(std::move(*backend));
  // A killed process's io_uring writes may still be landing after its descriptors are closed:
  // the directory stays locked until they have.
  if (auto r = impl->backend->hold_until_gone(impl->dir_lock.get()); !r) return r.error();
  impl->worker = std::make_unique<FileWorkerChannel>(FileWorker::shared(ex));
  if (impl->opt.direct_bytes_max > 0) {
    impl->staging = aligned_buffer(impl->opt.direct_bytes_max);
    impl->tail = aligned_buffer(direct_block_bytes);
  }
  impl->last_queued = impl->last_index;
  impl->last_queued_term = impl->last_index >= impl->first_index
                               ? impl->segment_of(impl->last_index)->recs.back().term
                               : Term(0);
  impl->start_prepare();
  return std::unique_ptr<SegmentedLog>(new SegmentedLog(std::move(impl)));
}

asio::awaitable<Result<void>> SegmentedLog::append(std::vector<Entry> entries) {
  Request req(impl_->ex);
  req.entries = std::move(entries);
  impl_->enqueue_append(req);
  co_await wait_for(req);
  co_return std::move(req.result);
}

asio::awaitable<Result<void>> SegmentedLog::truncate_suffix(Index from) {
  Request req(impl_->ex);
  req.kind = Request::Kind::truncate;
  req.from = from;
  impl_->enqueue_truncate(req);
  co_await wait_for(req);
  co_return std::move(req.result);
}

asio::awaitable<Result<void>> SegmentedLog::compact_prefix(Index upto) {
  Impl& m = *impl_;
  if (m.failed) co_return *m.failed;
  std::vector<std::string> remove;
  while (!m.segments.empty() && &m.segments.front() != m.active && !m.segments.front().open &&
         m.segments.front().last() <= upto) {
    if (m.segments.front().fd.valid()) --m.open_fds;
    remove.push_back(m.path(m.segments.front().name));
    m.segments.pop_front();
  }
  if (remove.empty()) co_return Result<void>{};
  m.first_index = m.segments.empty() ? m.last_index + 1 : m.segments.front().first;
  while (!m.cache.empty() && m.cache.front().index < m.first_index) {
    m.cache_bytes -= m.cache.front().payload.size() + cache_entry_overhead_bytes;
    m.cache.pop_front();
  }
  Request req(m.ex);
  m.side_waiters.push_back(&req);
  m.extent.first = m.segments.empty() ? Index(0) : m.first_index;
  m.worker->submit(
      [remove, dir = m.opt.dir, e = m.extent]() -> Result<void> {
        if (auto x = write_extent_file(dir, e); !x) return x;
        for (const std::string& p : remove) {
          if (auto x = remove_file(p); !x) return x;
        }
        return fsync_dir(dir);
      },
      [&m, &req](Result<void> r) {
        std::erase(m.side_waiters, &req);
        m.complete(req, std::move(r));
      });
  co_await wait_for(req);
  co_return std::move(req.result);
}

Index SegmentedLog::first_index() const noexcept {
  return impl_->first_index;
}
Index SegmentedLog::last_index() const noexcept {
  return impl_->last_index;
}

Result<Term> SegmentedLog::term_at(Index i) const {
  if (i < impl_->first_index || i > impl_->last_index) {
    return Error(Errc::invalid_argument,
                 "index " + std::to_string(i.value()) + " is not in the log");
  }
  Segment* s = impl_->segment_of(i);
  return s->recs[i - s->first].term;
}

Result<Entry> SegmentedLog::read(Index i) {
  Impl& m = *impl_;
  if (i < m.first_index || i > m.last_index) {
    return Error(Errc::invalid_argument,
                 "index " + std::to_string(i.value()) + " is not in the log");
  }
  if (!m.cache.empty() && i >= m.cache.front().index) return m.cache[i - m.cache.front().index];
  return m.read_disk(*m.segment_of(i), i);
}

Result<std::vector<Entry>> SegmentedLog::read_range(Index from, Index to, std::size_t bytes_max) {
  std::vector<Entry> out;
  std::size_t bytes = 0;
  for (Index i = from; i <= to; ++i) {
    auto e = read(i);
    if (!e) return e.error();
    bytes += e->payload.size();
    if (!out.empty() && bytes > bytes_max) break;
    out.push_back(std::move(*e));
  }
  return out;
}

const RecoveryReport& SegmentedLog::recovery() const noexcept {
  return impl_->report;
}
LogStats SegmentedLog::stats() const noexcept {
  return impl_->stats;
}
std::string_view SegmentedLog::backend_name() const noexcept {
  return impl_->backend->name();
}

}  // namespace coraft::storage
