// The hard state (current term and vote), stored durably and atomically.
//
// FILE FORMAT ("hardstate" in the log directory): two slots of 512 bytes, at offsets 0 and 512.
// A slot is:
//   0   8  magic "coraftHS"
//   8   8  version: one more than the version of the save before it (0 on creation)
//   16  8  current term
//   24  8  voted for (0: nobody)
//   32  4  CRC32C of bytes 0..63 computed with this field zero
//   36 28  zero
//   ..     zero up to 512
// A save writes the slot not holding the newest version, then fdatasyncs, through the disk
// backend every log and hard state on the io_context shares (one io_uring with the write linked
// to its fdatasync, or one fallback thread), so the event loop never waits for the disk. Saves run
// one at a time, in the order they were called. A crash or a failed save can only damage the slot
// being written, so the other still holds the previous state, and the next save writes the same
// slot again. A new file is created (under a temporary name, synced, renamed) with slot 1 holding
// version 0: term 0, no vote; so a file without a valid slot is never a fresh node. On open the
// valid slot with the higher version wins. A damaged slot beside a valid one may be a torn save or
// corruption that hid a newer state: it is logged as an error and reported (damaged_slot()), and
// opening is refused when the log in the same directory holds entries of a term above the surviving
// slot's term. No valid slot (including two zero slots) is corruption, named with file and offset.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>

#include <coraft/hard_state.hpp>
#include <coraft/result.hpp>
#include <coraft/types.hpp>

#include "storage/disk_backend.hpp"
#include "storage/file_util.hpp"

namespace coraft::storage {

using coraft::HardState;

struct HardStateOptions {
  BackendKind backend = BackendKind::automatic;
  // Test seam: called when a save's write + fdatasync completes; a nonzero errno replaces the
  // outcome.
  std::function<int()> fault;
  // Test seam: called before an existing file is synced on open; a nonzero errno fails the sync.
  std::function<int()> open_sync_fault;
};

class HardStateFile {
 public:
  static constexpr std::uint64_t slot_bytes = 512;

  // Opens dir/hardstate for saving, creating it (durably) when missing. Blocks: call it before
  // the event loop's hot path starts. Saves complete on `ex`. Holds an exclusive flock on the
  // file while open (and, on io_uring, until the last save in flight has landed even if the
  // process is killed): a second open of the same file fails with storage_io.
  [[nodiscard]] static Result<HardStateFile> open(asio::any_io_executor ex, const std::string& dir,
                                                  HardStateOptions options = {});
  // Opens an existing dir/hardstate to read it (for tools); save() fails with invalid_argument.
  [[nodiscard]] static Result<HardStateFile> open_read_only(const std::string& dir);

  // Fails a save still waiting to start with shutting_down, after waiting for the one in flight
  // (whose coroutine then resumes with its own outcome, or shutting_down). Precondition: the
  // executor's io_context still exists.
  ~HardStateFile();
  HardStateFile(HardStateFile&&) noexcept = default;
  HardStateFile& operator=(HardStateFile&& other) noexcept;

  // The newest durable state: what the last successful save wrote, or what open found.
  [[nodiscard]] const HardState& current() const noexcept;
  // The offset of a damaged slot found on open beside a valid one (cleared by a save).
  [[nodiscard]] std::optional<std::uint64_t> damaged_slot() const noexcept;
  [[nodiscard]] const std::string& path() const noexcept;

  // Resolves when `hs` is durable; current() returns it from then on. Never blocks the calling
  // thread. Errors: storage_io (the previous state stays current and on disk), shutting_down,
  // invalid_argument (opened read-only).
  [[nodiscard]] asio::awaitable<Result<void>> save(HardState hs);

  struct State;

 private:
  explicit HardStateFile(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

}  // namespace coraft::storage
