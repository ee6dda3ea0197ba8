// coraft-bench log: C concurrent appenders, each waiting for durability before its next
// append, beside the disk's floor measured in the same run and directory: plain 4 KiB
// pwrite + fdatasync appends into a pre-written file (and, for payloads over 4 KiB, the
// bandwidth of plain payload-sized pwrite + fdatasync appends). The floors and the log run in
// alternating quarter-second slices so that all of them see the same disk and machine load.
// With C > 1, the same log with one appender runs in the rotation too, so that the gain of group
// commit is a ratio within one run.
//
// Besides the flags in the usage line:
//   --prepare prewrite|fallocate   how the log prepares segments (default prewrite)
//   --backend auto|uring|thread    the log's disk path
//   --segment BYTES                segment size (default 64m)
//   --direct BYTES                 the log's direct_bytes_max: batches whose block-aligned extent
//                                  fits are written with O_DIRECT (default 16m, 0 off)
//   --direct-sync dsync|fdatasync  how those are made durable: RWF_DSYNC (default) or a linked
//                                  fdatasync
//   --all-floors                   also measure 4 KiB appends into a fallocated file and with
//                                  O_DIRECT into a pre-written one, and appends of the size of
//                                  one log record, made on the calling thread, and the
//                                  O_DIRECT small-append paths through io_uring (8 KiB aligned
//                                  writes advancing 4 KiB: a 4 KiB record with its header
//                                  rewrites the partial block before it), completed through an
//                                  eventfd as the log's are; and the log itself with every
//                                  batch written buffered (direct_bytes_max 0), and with the
//                                  other --direct-sync
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>

#include "bench_util.hpp"
#include "commands.hpp"
#include "storage/format.hpp"
#include "storage/segmented_log.hpp"

namespace coraft::bench {
namespace {

constexpr std::uint64_t floor_file_bytes = 64ull << 20;
constexpr double slice_seconds = 0.25;

struct Options {
  std::uint64_t payload = 0;
  std::uint64_t inflight = 0;
  double seconds = 5;
  std::string dir;
  bool json = false;
  storage::SegmentPrepare prepare = storage::SegmentPrepare::prewrite;
  storage::BackendKind backend = storage::BackendKind::automatic;
  std::uint64_t segment_bytes = 64ull << 20;
  std::uint64_t direct_bytes = storage::LogOptions{}.direct_bytes_max;
  storage::Sync direct_sync = storage::LogOptions{}.direct_sync;
  bool all_floors = false;
};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "coraft-bench log: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(1);
}

void write_full(int fd, const std::byte* p, std::size_t n, std::uint64_t off) {
  while (n > 0) {
    ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(off));
    if (w <= 0) die("pwrite");
    p += w;
    n -= static_cast<std::size_t>(w);
    off += static_cast<std::uint64_t>(w);
  }
}

// How a floor file is prepared and written.
enum class FloorKind {
  prewritten,          // filled with zeros and synced first; writes wrap around inside it
  fallocated,          // blocks reserved with fallocate only; writes wrap around inside it
  direct,              // pre-written, then written with O_DIRECT from an aligned buffer
  appending,           // each write extends the file; cut back to empty at floor_file_bytes
  direct_dsync_uring,  // pre-written, O_DIRECT; an io_uring write with RWF_DSYNC
  direct_fsync_uring,  // pre-written, O_DIRECT; an io_uring write linked to an fdatasync
};

bool is_direct(FloorKind k) {
  return k == FloorKind::direct || k == FloorKind::direct_dsync_uring ||
         k == FloorKind::direct_fsync_uring;
}
bool is_uring(FloorKind k) {
  return k == FloorKind::direct_dsync_uring || k == FloorKind::direct_fsync_uring;
}

// An io_uring whose completions are waited for through its eventfd, as the event loop does.
class UringWaiter {
 public:
  UringWaiter() {
    if (int rc = io_uring_queue_init(8, &ring_, 0); rc < 0) {
      errno = -rc;
      die("io_uring_queue_init");
    }
    efd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd_ < 0 || io_uring_register_eventfd(&ring_, efd_) < 0) die("eventfd");
  }
  ~UringWaiter() {
    io_uring_queue_exit(&ring_);
    ::close(efd_);
  }
  UringWaiter(const UringWaiter&) = delete;
  UringWaiter& operator=(const UringWaiter&) = delete;

  // Writes `iov` at `off` of `fd` durably (RWF_DSYNC, or a linked fdatasync) and waits.
  void write_durably(int fd, const iovec& iov, std::uint64_t off, bool dsync) {
    io_uring_sqe* w = io_uring_get_sqe(&ring_);
    io_uring_prep_writev2(w, fd, &iov, 1, off, dsync ? RWF_DSYNC : 0);
    if (!dsync) {
      w->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
      io_uring_prep_fsync(io_uring_get_sqe(&ring_), fd, IORING_FSYNC_DATASYNC);
    }
    if (io_uring_submit(&ring_) < 0) die("io_uring_submit");
    for (;;) {
      pollfd pfd{efd_, POLLIN, 0};
      if (::poll(&pfd, 1, -1) < 0 && errno != EINTR) die("poll");
      std::uint64_t count = 0;
      if (::read(efd_, &count, sizeof count) < 0 && errno != EAGAIN) die("read eventfd");
      io_uring_cqe* cqe = nullptr;
      if (io_uring_peek_cqe(&ring_, &cqe) != 0) continue;
      int res = cqe->res;
      io_uring_cqe_seen(&ring_, cqe);
      if (res < 0) {
        errno = -res;
        die("io_uring write");
      }
      return;
    }
  }

 private:
  io_uring ring_{};
  int efd_ = -1;
};

const char* floor_name(FloorKind k) {
  switch (k) {
    case FloorKind::prewritten: return "pre-written";
    case FloorKind::fallocated: return "fallocated";
    case FloorKind::direct: return "pre-written, O_DIRECT";
    case FloorKind::appending: return "appending";
    case FloorKind::direct_dsync_uring: return "pre-written, O_DIRECT, io_uring RWF_DSYNC 8 KiB";
    case FloorKind::direct_fsync_uring:
      return "pre-written, O_DIRECT, io_uring linked fdatasync 8 KiB";
  }
  return "?";
}

// Plain `block`-byte pwrite + fdatasync appends, measured in slices.
class Floor {
 public:
  Floor(std::string path, std::size_t block, FloorKind kind)
      : path_(std::move(path)), block_(block), kind_(kind) {
    std::size_t n = std::max<std::size_t>(block, 1 << 20);
    void* p = nullptr;
    if (::posix_memalign(&p, 4096, n) != 0) die("posix_memalign");
    buf_.reset(static_cast<std::byte*>(p));
    std::memset(buf_.get(), 0x5c, n);
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) die("open " + path_);
    if (kind_ == FloorKind::prewritten || is_direct(kind_)) {
      for (std::uint64_t off = 0; off < floor_file_bytes; off += n)
        write_full(fd_, buf_.get(), n, off);
    } else if (kind_ == FloorKind::fallocated) {
      if (::fallocate(fd_, 0, 0, static_cast<off_t>(floor_file_bytes)) < 0) die("fallocate");
    }
    if (::fsync(fd_) < 0) die("fsync");
    if (is_uring(kind_)) uring_.emplace();
    if (is_direct(kind_)) {
      ::close(fd_);
      fd_ = ::open(path_.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
      if (fd_ < 0) die("open O_DIRECT " + path_);
    }
  }
  ~Floor() {
    ::close(fd_);
    std::filesystem::remove(path_);
  }
  Floor(const Floor&) = delete;
  Floor& operator=(const Floor&) = delete;

  void run_slice(double seconds) {
    auto start = Clock::now();
    while (seconds_since(start) < seconds) {
      if (off_ + 2 * block_ > floor_file_bytes) {
        off_ = 0;
        if (kind_ == FloorKind::appending && ::ftruncate(fd_, 0) < 0) die("ftruncate");
      }
      auto t0 = Clock::now();
      if (uring_) {
        uring_->write_durably(fd_, {buf_.get(), 2 * block_}, off_,
                              kind_ == FloorKind::direct_dsync_uring);
      } else {
        write_full(fd_, buf_.get(), block_, off_);
        if (::fdatasync(fd_) < 0) die("fdatasync");
      }
      lat_.add(Clock::now() - t0);
      off_ += block_;
      ++ops_;
    }
    seconds_ += seconds_since(start);
  }

  [[nodiscard]] double fsyncs_per_s() const { return static_cast<double>(ops_) / seconds_; }
  [[nodiscard]] double mb_per_s() const {
    return static_cast<double>(ops_ * block_) / seconds_ / 1e6;
  }
  [[nodiscard]] double p_us(double p) { return lat_.percentile_us(p); }
  [[nodiscard]] FloorKind kind() const { return kind_; }
  [[nodiscard]] std::size_t block() const { return block_; }

 private:
  struct FreeDeleter {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::string path_;
  std::size_t block_;
  FloorKind kind_;
  std::unique_ptr<std::byte, FreeDeleter> buf_;
  std::optional<UringWaiter> uring_;
  int fd_ = -1;
  std::uint64_t off_ = 0;
  std::uint64_t ops_ = 0;
  double seconds_ = 0;
  Latencies lat_;
};

// How one log under test writes its batches.
struct WriteMode {
  std::uint64_t direct_bytes;
  storage::Sync direct_sync;
};

const char* sync_name(storage::Sync s) {
  return s == storage::Sync::dsync ? "RWF_DSYNC" : "linked fdatasync";
}

storage::LogOptions log_options(const Options& o, const std::string& subdir, WriteMode mode) {
  storage::LogOptions lo;
  lo.direct_bytes_max = static_cast<std::uint32_t>(mode.direct_bytes);
  lo.direct_sync = mode.direct_sync;
  lo.dir = o.dir + "/" + subdir;
  lo.entry_bytes_max =
      static_cast<std::uint32_t>(std::max<std::uint64_t>(lo.entry_bytes_max, o.payload));
  lo.batch_bytes_max = static_cast<std::uint32_t>(
      std::max<std::uint64_t>(lo.batch_bytes_max, storage::record_disk_bytes(o.payload) * 4 + 64));
  lo.segment_bytes = std::max<std::uint64_t>(o.segment_bytes, lo.batch_bytes_max);
  lo.queue_bytes_max = std::max<std::uint64_t>(lo.queue_bytes_max, o.payload * o.inflight);
  lo.prepare = o.prepare;
  lo.backend = o.backend;
  return lo;
}

// The log under test, with C appenders run in slices.
class LogRun {
 public:
  LogRun(const Options& o, std::uint64_t inflight, std::string subdir, WriteMode mode)
      : o_(o), inflight_(inflight), subdir_(std::move(subdir)), mode_(mode) {
    storage::LogOptions lo = log_options(o, subdir_, mode_);
    std::filesystem::remove_all(lo.dir);
    auto log = storage::SegmentedLog::open(io_.get_executor(), lo);
    if (!log) {
      std::fprintf(stderr, "coraft-bench log: %s\n", log.error().message().c_str());
      std::exit(1);
    }
    log_ = std::move(*log);
    auto buffer = std::make_shared<std::vector<std::byte>>(o.payload);
    std::mt19937_64 rng(1);
    for (auto& b : *buffer) b = static_cast<std::byte>(rng());
    payload_ = Bytes::wrap(buffer, *buffer);
    // One durable append first, so the first segment is prepared before measuring.
    asio::co_spawn(io_, append_until(Clock::now(), false), asio::detached);
    io_.run();
    base_ = log_->stats();
  }
  ~LogRun() {
    std::string dir = log_options(o_, subdir_, mode_).dir;
    log_.reset();
    std::filesystem::remove_all(dir);
  }
  LogRun(const LogRun&) = delete;
  LogRun& operator=(const LogRun&) = delete;

  void run_slice(double seconds) {
    auto start = Clock::now();
    auto deadline =
        start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    for (std::uint64_t c = 0; c < inflight_; ++c)
      asio::co_spawn(io_, append_until(deadline, true), asio::detached);
    io_.restart();
    io_.run();
    seconds_ += seconds_since(start);
  }

  [[nodiscard]] double seconds() const { return seconds_; }
  [[nodiscard]] std::uint64_t entries() const { return entries_; }
  [[nodiscard]] std::uint64_t batches() const { return log_->stats().batches - base_.batches; }
  [[nodiscard]] std::uint64_t batched_entries() const {
    return log_->stats().entries - base_.entries;
  }
  [[nodiscard]] double direct_share() const {
    auto n = batches();
    return n ? static_cast<double>(log_->stats().direct_batches - base_.direct_batches) /
                   static_cast<double>(n)
             : 0;
  }
  [[nodiscard]] double p_us(double p) { return lat_.percentile_us(p); }
  [[nodiscard]] std::string backend() const { return std::string(log_->backend_name()); }

 private:
  asio::awaitable<void> append_until(Clock::time_point deadline, bool measure) {
    do {
      std::vector<Entry> es{Entry{Index(next_++), Term(1), EntryType::normal, payload_}};
      auto t0 = Clock::now();
      auto r = co_await log_->append(std::move(es));
      if (!r) {
        std::fprintf(stderr, "coraft-bench log: append failed: %s\n", r.error().message().c_str());
        std::exit(1);
      }
      if (measure) {
        lat_.add(Clock::now() - t0);
        ++entries_;
      }
    } while (Clock::now() < deadline);
  }

  const Options& o_;
  std::uint64_t inflight_;
  std::string subdir_;
  WriteMode mode_;
  asio::io_context io_;
  std::unique_ptr<storage::SegmentedLog> log_;
  Bytes payload_;
  std::uint64_t next_ = 1;
  std::uint64_t entries_ = 0;
  double seconds_ = 0;
  storage::LogStats base_;
  Latencies lat_;
};

Options convert(const LogOptions& f) {
  Options o;
  o.payload = f.payload;
  o.inflight = f.inflight;
  o.seconds = f.seconds;
  o.dir = f.dir;
  o.json = f.json;
  o.all_floors = f.all_floors;
  o.segment_bytes = f.segment_bytes;
  o.direct_bytes = f.direct_bytes;
  o.direct_sync = f.direct_sync == "dsync" ? storage::Sync::dsync : storage::Sync::fdatasync;
  o.prepare = f.prepare == "prewrite" ? storage::SegmentPrepare::prewrite
                                      : storage::SegmentPrepare::fallocate;
  o.backend = f.backend == "uring"    ? storage::BackendKind::uring
              : f.backend == "thread" ? storage::BackendKind::thread
                                      : storage::BackendKind::automatic;
  return o;
}

}  // namespace

int run_log(const LogOptions& options) {
  const Options o = convert(options);
  std::error_code ec;
  std::filesystem::create_directories(o.dir, ec);
  if (ec) {
    std::fprintf(stderr, "coraft-bench log: cannot create %s: %s\n", o.dir.c_str(),
                 ec.message().c_str());
    return 1;
  }
  // The floor and the log run in alternating slices, so that both see the same disk weather.
  Floor floor(o.dir + "/floor-4k", 4096, FloorKind::prewritten);
  std::optional<Floor> bw;
  if (o.payload > 4096) bw.emplace(o.dir + "/floor-bw", o.payload, FloorKind::appending);
  // With --all-floors, the other ways a segment could be prepared and written, for comparison.
  std::vector<std::unique_ptr<Floor>> others;
  if (o.all_floors) {
    others.push_back(std::make_unique<Floor>(o.dir + "/floor-falloc", 4096, FloorKind::fallocated));
    others.push_back(std::make_unique<Floor>(o.dir + "/floor-direct", 4096, FloorKind::direct));
    // The log's own write for one payload-sized entry (header and padding included), made
    // synchronously on the calling thread: the log minus its hand-off to another thread.
    others.push_back(
        std::make_unique<Floor>(o.dir + "/floor-dsync", 4096, FloorKind::direct_dsync_uring));
    others.push_back(
        std::make_unique<Floor>(o.dir + "/floor-dfsync", 4096, FloorKind::direct_fsync_uring));
    auto record = static_cast<std::size_t>(storage::record_disk_bytes(o.payload));
    if (record <= floor_file_bytes / 4) {
      others.push_back(
          std::make_unique<Floor>(o.dir + "/floor-record", record, FloorKind::prewritten));
    }
  }
  WriteMode mode{o.direct_bytes, o.direct_sync};
  LogRun log(o, o.inflight, "log", mode);
  // With --all-floors, the same log writing every batch buffered, and with the other way of
  // making O_DIRECT batches durable, for comparison.
  std::optional<LogRun> buffered;
  std::optional<LogRun> other_sync;
  storage::Sync other =
      o.direct_sync == storage::Sync::dsync ? storage::Sync::fdatasync : storage::Sync::dsync;
  if (o.all_floors) {
    buffered.emplace(o, o.inflight, "log-buffered", WriteMode{0, o.direct_sync});
    other_sync.emplace(o, o.inflight, "log-other-sync", WriteMode{o.direct_bytes, other});
  }
  // With several appenders, the same log with one appender runs alongside: the gain of group
  // commit is then a ratio between runs that saw the same disk.
  std::optional<LogRun> single;
  if (o.inflight > 1) single.emplace(o, 1, "log-c1", mode);
  while (log.seconds() < o.seconds) {
    double slice = std::min(slice_seconds, o.seconds - log.seconds() + 0.001);
    floor.run_slice(slice);
    if (bw) bw->run_slice(slice);
    for (auto& f : others) f->run_slice(slice);
    if (single) single->run_slice(slice);
    if (buffered) buffered->run_slice(slice);
    if (other_sync) other_sync->run_slice(slice);
    log.run_slice(slice);
  }
  double ops = static_cast<double>(log.entries()) / log.seconds();
  double mb = ops * static_cast<double>(o.payload) / 1e6;
  double fsyncs = static_cast<double>(log.batches()) / log.seconds();
  double batch = log.batches() ? static_cast<double>(log.batched_entries()) /
                                     static_cast<double>(log.batches())
                               : 0;
  std::printf(
      "log  payload %llu B, inflight %llu, %s, %s segments: %.0f entries/s, %.1f MB/s, %.0f "
      "fdatasyncs/s, "
      "mean batch %.1f, %.0f%% of batches O_DIRECT (%s), latency p50 %.0f us p99 %.0f us p99.9 "
      "%.0f us\n",
      static_cast<unsigned long long>(o.payload), static_cast<unsigned long long>(o.inflight),
      log.backend().c_str(),
      o.prepare == storage::SegmentPrepare::prewrite ? "pre-written" : "fallocated", ops, mb,
      fsyncs, batch, log.direct_share() * 100, sync_name(o.direct_sync), log.p_us(50), log.p_us(99),
      log.p_us(99.9));
  std::printf(
      "floor  4 KiB pwrite+fdatasync into a pre-written file: %.0f fdatasyncs/s, p50 %.0f us, p99 "
      "%.0f us\n",
      floor.fsyncs_per_s(), floor.p_us(50), floor.p_us(99));
  double single_ops = single ? static_cast<double>(single->entries()) / single->seconds() : 0;
  if (single) {
    std::printf(
        "log  the same with 1 appender: %.0f entries/s, latency p50 %.0f us: group commit gives "
        "%.1fx\n",
        single_ops, single->p_us(50), ops / single_ops);
  }
  if (buffered) {
    std::printf(
        "log  the same, every batch buffered: %.0f entries/s, latency p50 %.0f us p99 %.0f us\n",
        static_cast<double>(buffered->entries()) / buffered->seconds(), buffered->p_us(50),
        buffered->p_us(99));
    std::printf(
        "log  the same, O_DIRECT batches made durable with %s: %.0f entries/s, latency p50 %.0f us "
        "p99 %.0f us\n",
        sync_name(other), static_cast<double>(other_sync->entries()) / other_sync->seconds(),
        other_sync->p_us(50), other_sync->p_us(99));
  }
  for (auto& f : others) {
    if (is_uring(f->kind())) {
      std::printf("floor  %s, advancing %zu B: %.0f writes/s, p50 %.0f us, p99 %.0f us\n",
                  floor_name(f->kind()), f->block(), f->fsyncs_per_s(), f->p_us(50), f->p_us(99));
      continue;
    }
    std::printf(
        "floor  %zu B pwrite+fdatasync into a %s file: %.0f fdatasyncs/s, p50 %.0f us, p99 %.0f "
        "us\n",
        f->block(), floor_name(f->kind()), f->fsyncs_per_s(), f->p_us(50), f->p_us(99));
  }
  if (bw) {
    std::printf("floor  %llu B pwrite+fdatasync appends: %.1f MB/s\n",
                static_cast<unsigned long long>(o.payload), bw->mb_per_s());
  }
  if (o.json) {
    JsonLine j;
    j.num("payload", static_cast<double>(o.payload))
        .num("inflight", static_cast<double>(o.inflight));
    j.str("backend", log.backend())
        .num("ops_per_s", ops)
        .num("mb_per_s", mb)
        .num("fsyncs_per_s", fsyncs);
    j.num("mean_batch", batch).num("direct_share", log.direct_share());
    j.num("p50_us", log.p_us(50)).num("p99_us", log.p_us(99));
    j.num("p999_us", log.p_us(99.9)).num("floor_fsyncs_per_s", floor.fsyncs_per_s());
    j.num("floor_p50_us", floor.p_us(50)).num("floor_p99_us", floor.p_us(99));
    if (bw) j.num("floor_bw_mb_per_s", bw->mb_per_s());
    if (single) j.num("c1_ops_per_s", single_ops).num("c1_p50_us", single->p_us(50));
    if (buffered)
      j.num("buffered_p50_us", buffered->p_us(50)).num("other_sync_p50_us", other_sync->p_us(50));
    std::printf("%s\n", j.text().c_str());
  }
  return 0;
}

}  // namespace coraft::bench
