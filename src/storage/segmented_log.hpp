// The segmented log: Raft's entries, durable on disk. The format is specified in format.hpp.
//
// All members are called on the executor given to open(); the log is not thread-safe.
// Appends are written in batches (group commit): appends that arrive while a batch is being
// written and synced form the next batch. Payloads are written from the entries' own buffers.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>

#include <coraft/entry.hpp>
#include <coraft/result.hpp>

#include "storage/disk_backend.hpp"

namespace coraft::storage {

// Where the test seam may inject a failure.
enum class FaultPoint {
  prepare_segment,  // creating and sizing a new segment file
  write_batch,      // a batch's write + fdatasync (the injected errno replaces the outcome)
  uring_setup,      // setting up io_uring on open (an injected errno makes it fail)
  direct_write,     // before an O_DIRECT batch is sent: the injected errno fails it unwritten
  recovery_sync,    // syncing a segment found open, during recovery on open
};

enum class SegmentPrepare {
  prewrite,   // fill the new file with zeros and sync it: later fdatasyncs are cheapest
  fallocate,  // reserve blocks only: quicker to prepare, dearer to sync into
};

struct LogOptions {
  std::string dir;
  std::uint64_t segment_bytes = 64ull << 20;
  std::uint32_t entry_bytes_max = 8u << 20;      // payload bytes of one entry
  std::uint32_t batch_bytes_max = 16u << 20;     // bytes of one write batch (the tear window)
  std::uint32_t batch_entries_max = 500;         // entries of one write batch (iovecs: 2 each)
  std::uint64_t queue_bytes_max = 256ull << 20;  // bytes waiting to be written (payload + 64 each)
  std::uint64_t cache_bytes_max = 64ull << 20;  // recent entries kept in memory (payload + 64 each)
  std::uint32_t open_files_max = 64;            // segment files held open for reading
  // A batch whose 4 KiB-aligned extent fits in this many bytes is copied into an aligned buffer
  // of this size and written with O_DIRECT (made durable as direct_sync says), which reaches
  // the disk sooner than a buffered write and fdatasync and, for large batches, at twice the
  // bandwidth (a buffered write copies into the page cache anyway); larger batches are written
  // buffered from the payloads' own buffers. 0 writes every batch buffered. A multiple of
  // 4096; capped at batch_bytes_max. Where the file system refuses O_DIRECT (EINVAL or
  // EOPNOTSUPP), every batch is written buffered (said once in the log). The writer holds two
  // descriptors for each of the active and the prepared segment, besides open_files_max.
  std::uint32_t direct_bytes_max = 16u << 20;
  // How an O_DIRECT batch is made durable: RWF_DSYNC on the write, or a linked fdatasync.
  Sync direct_sync = Sync::dsync;
  // Logs and hard-state files on one io_context share one backend of each kind
  // (shared_disk_backend): one io_uring, or one writer thread, for all of them.
  BackendKind backend = BackendKind::automatic;
  SegmentPrepare prepare = SegmentPrepare::prewrite;
  // Cut the log at the first damaged record instead of refusing to open.
  bool repair = false;
  // Test seam: returns an errno to inject at the given point, or 0.
  std::function<int(FaultPoint)> fault;
};

// What recovery found and did on open.
struct RecoveryReport {
  std::size_t segments = 0;
  // A torn tail of the newest segment that was cut off: the file and the offset of the cut.
  std::optional<std::string> torn_file;
  std::uint64_t torn_offset = 0;
  // Damage cut away because LogOptions::repair was set: file, offset and what was wrong.
  std::optional<std::string> repaired;
};

struct LogStats {
  std::uint64_t batches = 0;  // durable writes of appended entries
  std::uint64_t entries = 0;
  std::uint64_t bytes = 0;           // bytes written by those batches, headers included
  std::uint64_t direct_batches = 0;  // of those batches, the ones written with O_DIRECT
};

class SegmentedLog {
 public:
  // Opens the log in options.dir (created if missing), verifying every record. Blocks: call it
  // before the event loop's hot path starts. Fails with storage_corrupt naming file and offset
  // when damage is found that is not a torn tail (unless options.repair), invalid_argument
  // for inconsistent options, and storage_io when another open log holds the directory (an
  // exclusive flock on the file `lock` in it, kept until the log is destroyed).
  [[nodiscard]] static Result<std::unique_ptr<SegmentedLog>> open(asio::any_io_executor ex,
                                                                  LogOptions options);
  // Fails every waiting call with shutting_down (their coroutines resume on the executor) and
  // waits for the write in flight. Precondition: the executor's io_context still exists.
  ~SegmentedLog();
  SegmentedLog(const SegmentedLog&) = delete;
  SegmentedLog& operator=(const SegmentedLog&) = delete;

  // Resolves when `entries` are durable. They must continue the log: consecutive indexes from
  // last index + 1 (counting appends still in flight), terms >= 1 and non-decreasing. An empty
  // log accepts any first index. Errors: too_large (an entry over entry_bytes_max), overloaded
  // (queue_bytes_max reached), invalid_argument, disk_full, storage_io.
  // A disk_full append is all-or-nothing: none of its entries stay in the log (any of them
  // already written in earlier batches are cut, durably, before the error is returned), so
  // last_index() is what it was before the call and the same entries may be appended again.
  // Appends queued behind it fail with disk_full too. The log stays readable and writable.
  [[nodiscard]] asio::awaitable<Result<void>> append(std::vector<Entry> entries);

  // Removes the entries from `from` on, durably, after the appends queued before it.
  [[nodiscard]] asio::awaitable<Result<void>> truncate_suffix(Index from);

  // Deletes the whole segments whose entries all lie at or below `upto`; entries up to `upto`
  // may remain readable in a partly covered segment.
  [[nodiscard]] asio::awaitable<Result<void>> compact_prefix(Index upto);

  // The durable entries are first_index()..last_index(); empty when last < first.
  [[nodiscard]] Index first_index() const noexcept;
  [[nodiscard]] Index last_index() const noexcept;
  // Errors: invalid_argument outside the durable range.
  [[nodiscard]] Result<Term> term_at(Index i) const;
  // Reads from the in-memory cache, or from disk (verifying the CRC). Errors: invalid_argument
  // outside the durable range, storage_corrupt, storage_io.
  [[nodiscard]] Result<Entry> read(Index i);
  // Entries from..to inclusive, stopping early once `bytes_max` payload bytes are collected
  // (at least one entry is returned).
  [[nodiscard]] Result<std::vector<Entry>> read_range(Index from, Index to, std::size_t bytes_max);

  [[nodiscard]] const RecoveryReport& recovery() const noexcept;
  [[nodiscard]] LogStats stats() const noexcept;
  [[nodiscard]] std::string_view backend_name() const noexcept;

  struct Impl;

 private:
  explicit SegmentedLog(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace coraft::storage
