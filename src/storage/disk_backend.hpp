// How the log reaches the disk: a gathered write made durable, completed on the caller's
// executor. Two implementations: io_uring (the completion signalled through an eventfd the
// event loop waits on) and a dedicated thread doing pwritev for systems where io_uring cannot be
// set up.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>

#include <asio/any_io_executor.hpp>

#include <coraft/result.hpp>

namespace coraft::storage {

enum class BackendKind {
  automatic,  // io_uring when it can be set up, else the thread; CORAFT_STORAGE_BACKEND=uring
              // or =thread in the environment overrides this
  uring,
  thread,
};

// How a write is made durable.
enum class Sync {
  fdatasync,  // the write, then fdatasync (io_uring: a linked FSYNC request)
  dsync,      // one write flagged RWF_DSYNC. On an O_DIRECT file the kernel can make it durable
              // with a forced-unit-access write or one cache flush, with no second request
};

class DiskBackend {
 public:
  // Receives 0 or the errno of the first failed step. Runs on the executor given at creation.
  using Done = std::function<void(int err)>;

  virtual ~DiskBackend() = default;

  // Writes `iov` at `offset` of `fd` (resuming after short writes) and makes it durable as
  // `how` says. Precondition: the memory `iov` describes stays valid and unchanged until `done`
  // runs. Several operations may be in flight; each completes on its own.
  virtual void write_sync(int fd, std::uint64_t offset, std::span<const iovec> iov, Sync how,
                          Done done) = 0;

  // Keeps `fd`'s open file, and so a flock held through it, referenced until every request of
  // this backend has completed, even when the process is killed. io_uring registers it with the
  // ring: a killed process's descriptors are closed at once, but its ring lives on in the kernel
  // until the writes in flight end, and the file stays referenced until then. The thread
  // backend needs nothing: its writes are system calls that end before the process's
  // descriptors are closed. Destroying the backend (which waits for its requests) lets go of
  // the file at once. At most one file per backend.
  [[nodiscard]] virtual Result<void> hold_until_gone(int fd) = 0;

  [[nodiscard]] virtual std::string_view name() const noexcept = 0;
};

// Creates the backend `kind` asks for. `automatic` falls back to the thread when io_uring cannot
// be set up, and says so once per process in the log. An explicit `uring` that cannot be set up
// is an error. A nonzero `injected_setup_errno` makes the io_uring setup fail (a test seam).
[[nodiscard]] Result<std::unique_ptr<DiskBackend>> make_disk_backend(asio::any_io_executor ex,
                                                                     BackendKind kind,
                                                                     int injected_setup_errno = 0);

// The two implementations, for tests that want one in particular.
[[nodiscard]] Result<std::unique_ptr<DiskBackend>> make_uring_backend(asio::any_io_executor ex);
[[nodiscard]] std::unique_ptr<DiskBackend> make_thread_backend(asio::any_io_executor ex);

}  // namespace coraft::storage
