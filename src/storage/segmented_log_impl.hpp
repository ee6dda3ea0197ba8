// The segmented log's internals, shared by the writer (segmented_log.cpp) and recovery
// (log_recovery.cpp). Not for use outside the storage module.
#pragma once

#include <sys/uio.h>

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include <asio/steady_timer.hpp>

#include "storage/file_util.hpp"
#include "storage/file_worker.hpp"
#include "storage/format.hpp"
#include "storage/segmented_log.hpp"

namespace coraft::storage {

// O_DIRECT writes cover whole blocks of this size, from buffers aligned to it.
inline constexpr std::uint64_t direct_block_bytes = 4096;

// Opens `path` for O_DIRECT writes; an invalid Fd, with the errno and a description, on failure.
[[nodiscard]] Fd open_direct(const std::string& path, int& err, std::string& why);

// Where one durable record lives.
struct RecordRef {
  std::uint64_t offset = 0;
  Term term;
  std::uint32_t length = 0;
  EntryType type = EntryType::normal;
};

// Invariant: recs[i] holds entry first + i; a closed segment's name is F-L of its records.
struct Segment {
  std::string name;
  bool open = false;
  Index first;
  std::vector<RecordRef> recs;
  std::uint64_t end = 0;  // next write offset (0 until the header is written)
  Fd fd;                  // read-write for the active segment, read-only otherwise; may be closed
  Fd direct_fd;           // the active segment opened with O_DIRECT, when the file system allows

  [[nodiscard]] Index last() const noexcept { return first + recs.size() - 1; }
};

// One caller waiting in append() or truncate_suffix(), living in that coroutine's frame.
struct Request {
  enum class Kind { append, truncate };
  explicit Request(const asio::any_io_executor& ex)
      : timer(ex, asio::steady_timer::time_point::max()) {}
  Kind kind = Kind::append;
  std::vector<Entry> entries;
  std::size_t submitted = 0;  // entries handed to a batch
  std::size_t durable = 0;    // entries known durable
  std::uint64_t bytes = 0;    // bytes counted against queue_bytes_max
  Index from;                 // truncate
  bool done = false;
  Result<void> result;
  asio::steady_timer timer;  // cancelled to wake the waiting coroutine
};

// The batch in flight. Buffers are reused from batch to batch.
struct Batch {
  std::vector<std::byte> headers;  // per record: 8 bytes of padding room, then its header
  std::vector<iovec> iov;
  std::vector<RecordRef> recs;
  std::vector<std::pair<Request*, std::size_t>> parts;  // entries taken from each request
  std::byte segment_header[segment_header_bytes];
  Segment* segment = nullptr;
  std::uint64_t offset = 0;
  std::uint64_t bytes = 0;
  // Written with O_DIRECT from the staging buffer: direct_iov holds the whole blocks starting
  // at direct_offset, the first of them starting with the tail block's old bytes.
  bool direct = false;
  std::uint64_t direct_offset = 0;
  iovec direct_iov{};
  std::uint64_t queue_bytes = 0;  // what the batch's entries count against queue_bytes_max
  Index first;
};

struct SegmentedLog::Impl {
  Impl(asio::any_io_executor e, LogOptions o) : ex(std::move(e)), opt(std::move(o)) {}
  ~Impl();

  asio::any_io_executor ex;
  LogOptions opt;
  Fd dir_lock;  // the directory's lock file, held while the log is open
  std::unique_ptr<DiskChannel> backend;
  std::unique_ptr<FileWorkerChannel> worker;

  std::deque<Segment> segments;  // by first index, contiguous
  Segment* active = nullptr;     // the open segment being written, if any
  Index first_index{1};
  Index last_index{0};  // durable

  std::deque<Request*> queue;
  std::vector<Request*> side_waiters;  // waiting on file work outside the queue
  Index last_queued{0};
  Term last_queued_term{0};
  std::uint64_t queued_bytes = 0;
  bool in_flight = false;
  bool busy = false;  // a truncation's file work is running
  bool waiting_for_segment = false;
  bool pump_posted = false;  // a pump() is queued on the executor
  std::shared_ptr<bool> alive_token = std::make_shared<bool>(true);
  std::optional<Error> failed;  // a write or sync failed: nothing more is written

  struct Prepared {
    std::string name;
    Fd fd;
    Fd direct_fd;
  };
  std::optional<Prepared> prepared;
  bool preparing = false;
  std::optional<Error> prepare_error;
  std::uint64_t next_seq = 1;

  Batch batch;
  // O_DIRECT writes: an aligned buffer of direct_bytes_max, and a copy of the active segment's
  // bytes from its last block boundary up to its end (rewritten with the next direct batch).
  struct AlignedFree {
    void operator()(std::byte* p) const noexcept;
  };
  std::unique_ptr<std::byte[], AlignedFree> staging;
  std::unique_ptr<std::byte[], AlignedFree> tail;
  bool tail_valid = false;
  bool direct_refused = false;  // the file system refused O_DIRECT: write buffered from now on
  // Whether new segments get an O_DIRECT descriptor and batches may use it.
  [[nodiscard]] bool direct_wanted() const noexcept {
    return opt.direct_bytes_max > 0 && !direct_refused;
  }
  std::deque<Entry> cache;
  std::uint64_t cache_bytes = 0;
  std::size_t open_fds = 0;
  LogExtent extent;  // as last handed to the file worker (format.hpp, EXTENT FILE)
  RecoveryReport report;
  LogStats stats;

  // log_recovery.cpp
  [[nodiscard]] Result<void> recover();
  [[nodiscard]] Result<void> reuse_prepared(const std::vector<std::string>& unused);
  [[nodiscard]] Result<void> sync_segment(const std::string& p);

  // segmented_log.cpp
  [[nodiscard]] Result<void> check_options() const;
  void enqueue_append(Request& r);
  void enqueue_truncate(Request& r);
  void complete(Request& r, Result<void> result);
  void fail_queue(const Error& e);
  void pump();
  bool ensure_segment(std::uint64_t record_bytes);
  void start_batch();
  [[nodiscard]] bool stage_direct(Batch& b);
  void keep_tail(const Batch& b);
  void refuse_direct(const std::string& why);
  void no_direct_fd(int err, const std::string& why);
  void on_batch_done(int err);
  void start_prepare();
  void seal_active();
  struct CutPlan {
    LogExtent extent;  // written before the files change
    std::vector<std::string> remove;
    std::optional<std::pair<std::string, std::string>> rename;
  };
  [[nodiscard]] CutPlan cut_memory(Index from, bool close_active);
  void run_cut(CutPlan plan, std::function<void(Result<void>)> done);
  void run_truncate(Request& r);
  void abandon_queue(const Error& e, bool close_active);
  void write_extent(const LogExtent& e);
  void cache_add(const Entry& e);
  [[nodiscard]] std::string path(const std::string& name) const { return join_path(opt.dir, name); }
  [[nodiscard]] Segment* segment_of(Index i);
  [[nodiscard]] Result<int> read_fd(Segment& s);
  [[nodiscard]] Result<Entry> read_disk(Segment& s, Index i);
  [[nodiscard]] Term queued_term_at(Index i);
};

}  // namespace coraft::storage
