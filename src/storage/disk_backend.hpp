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

// One backend serves every log and hard-state file on an io_context (shared_disk_backend()):
// one io_uring, or one writer thread, however many nodes the context runs. Each user is an
// owner: its writes are told apart from the others' so that it can go away on its own.
class DiskBackend {
 public:
  // Receives 0 or the errno of the first failed step. Runs on the executor given at creation.
  using Done = std::function<void(int err)>;
  using Owner = std::uint64_t;

  virtual ~DiskBackend() = default;

  // A new owner id; ids are never reused.
  [[nodiscard]] virtual Owner open_owner() = 0;

  // Writes `iov` at `offset` of `fd` (resuming after short writes) and makes it durable as
  // `how` says. Precondition: the memory `iov` describes stays valid and unchanged until `done`
  // runs or close_owner(owner) returns. Several operations may be in flight; each completes on
  // its own.
  virtual void write_sync(Owner owner, int fd, std::uint64_t offset, std::span<const iovec> iov,
                          Sync how, Done done) = 0;

  // Keeps `fd`'s open file, and so a flock held through it, referenced until every request of
  // this backend has completed, even when the process is killed. io_uring registers it with the
  // ring: a killed process's descriptors are closed at once, but its ring lives on in the kernel
  // until the writes in flight end, and the file stays referenced until then. The thread
  // backend needs nothing: its writes are system calls that end before the process's
  // descriptors are closed. close_owner() lets go of the owner's held files.
  [[nodiscard]] virtual Result<void> hold_until_gone(Owner owner, int fd) = 0;

  // The owner is going away: blocks until none of its writes is in flight (a write not started
  // yet is dropped), lets go of its held files, and drops its completions that have not run.
  // Other owners' writes go on; their completions still run, later, on the executor. Call it
  // on the executor's thread.
  virtual void close_owner(Owner owner) = 0;

  [[nodiscard]] virtual std::string_view name() const noexcept = 0;
};

// One owner's handle on a backend: closes the owner when it goes.
class DiskChannel {
 public:
  explicit DiskChannel(std::shared_ptr<DiskBackend> backend)
      : backend_(std::move(backend)), owner_(backend_->open_owner()) {}
  ~DiskChannel() { backend_->close_owner(owner_); }
  DiskChannel(const DiskChannel&) = delete;
  DiskChannel& operator=(const DiskChannel&) = delete;

  void write_sync(int fd, std::uint64_t offset, std::span<const iovec> iov, Sync how,
                  DiskBackend::Done done) {
    backend_->write_sync(owner_, fd, offset, iov, how, std::move(done));
  }
  [[nodiscard]] Result<void> hold_until_gone(int fd) {
    return backend_->hold_until_gone(owner_, fd);
  }
  [[nodiscard]] std::string_view name() const noexcept { return backend_->name(); }
  [[nodiscard]] const std::shared_ptr<DiskBackend>& backend() const noexcept { return backend_; }

 private:
  std::shared_ptr<DiskBackend> backend_;
  DiskBackend::Owner owner_;
};

// Creates the backend `kind` asks for. `automatic` falls back to the thread when io_uring cannot
// be set up, and says so once per process in the log. An explicit `uring` that cannot be set up
// is an error. A nonzero `injected_setup_errno` makes the io_uring setup fail (a test seam).
[[nodiscard]] Result<std::shared_ptr<DiskBackend>> make_disk_backend(asio::any_io_executor ex,
                                                                     BackendKind kind,
                                                                     int injected_setup_errno = 0);

// The backend of `kind` shared by every user on `ex`'s execution context: made on first use,
// gone with its last user. Its completions run on the executor of the user that made it, so the
// context must run on one thread (as the node's does). With a nonzero `injected_setup_errno` a
// private backend is made instead (make_disk_backend).
[[nodiscard]] Result<std::shared_ptr<DiskBackend>> shared_disk_backend(
    asio::any_io_executor ex, BackendKind kind, int injected_setup_errno = 0);

// The two implementations, for tests that want one in particular.
[[nodiscard]] Result<std::shared_ptr<DiskBackend>> make_uring_backend(asio::any_io_executor ex);
[[nodiscard]] std::shared_ptr<DiskBackend> make_thread_backend(asio::any_io_executor ex);

}  // namespace coraft::storage
