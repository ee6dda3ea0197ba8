// The io_uring backend: each operation is a WRITEV linked to an FSYNC(DATASYNC), or one WRITEV
// flagged RWF_DSYNC; the ring's eventfd is wrapped in a stream_descriptor so completions resume
// work on the event loop.
#include <liburing.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <unordered_map>
#include <vector>

#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>

#include <coraft/text.hpp>

#include "storage/disk_backend.hpp"
#include "storage/iov_util.hpp"

namespace coraft::storage {
namespace {

constexpr unsigned ring_entries = 64;
// Files held through the ring (hold_until_gone), for every owner together: two per node. Fewer
// when the open-file limit is lower.
constexpr unsigned held_files_max = 1024;

struct UringOp {
  DiskBackend::Owner owner = 0;
  int fd = -1;
  std::uint64_t offset = 0;
  std::vector<iovec> iov;
  std::size_t remaining = 0;
  Sync how = Sync::fdatasync;
  DiskBackend::Done done;
  bool write_seen = false;  // the write's CQE arrived (always, unless skipped on success)
  bool sync_seen = false;
  int err = 0;
  std::int64_t written = 0;
};

class UringBackend final : public DiskBackend {
 public:
  UringBackend(asio::any_io_executor ex, io_uring ring, int efd)
      : ex_(ex),
        ring_(ring),
        efd_(ex, efd),
        alive_(std::make_shared<bool>(true)),
        skip_write_cqe_((ring_.features & IORING_FEAT_CQE_SKIP) != 0) {}

  ~UringBackend() override {
    *alive_ = false;
    // Every request must complete before the memory it writes from may be freed: an O_DIRECT
    // write reads its buffer while the device works.
    while (in_flight_ > 0) {
      io_uring_cqe* cqe = nullptr;
      int rc = io_uring_wait_cqe(&ring_, &cqe);
      if (rc == -EINTR) continue;
      CORAFT_ASSERT(rc == 0, "waiting for io_uring completions at shutdown failed", rc, in_flight_);
      auto* op = op_of(cqe);
      bool done = record(op, cqe);
      io_uring_cqe_seen(&ring_, cqe);
      if (done) {
        --in_flight_;
        delete op;
      }
    }
    for (UringOp* op : waiting_) delete op;
    for (UringOp* op : deferred_) delete op;
    // Nothing is in flight any more: give the held files back now rather than whenever the
    // kernel frees the ring, so that a clean close releases their locks at once.
    if (files_held_) io_uring_unregister_files(&ring_);
    asio::error_code ignored;
    efd_.close(ignored);
    io_uring_queue_exit(&ring_);
  }

  Owner open_owner() override {
    const Owner o = next_owner_++;
    owners_.emplace(o, OwnerState{});
    return o;
  }

  Result<void> hold_until_gone(Owner owner, int fd) override {
    // The ring's file table holds each file until the ring is freed, which the kernel does
    // only after every request on it has completed, or until the slot is cleared.
    if (!files_held_) {
      // The kernel refuses a table larger than the open-file limit.
      rlimit limit{};
      unsigned slots = held_files_max;
      if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < slots) {
        slots = static_cast<unsigned>(std::max<rlim_t>(limit.rlim_cur, 1));
      }
      std::vector<int> empty(slots, -1);
      int rc = io_uring_register_files(&ring_, empty.data(), slots);
      if (rc < 0) {
        return Error(Errc::storage_io,
                     std::string("io_uring file registration failed: ") + std::strerror(-rc));
      }
      files_held_ = true;
      free_slots_.reserve(slots);
      for (unsigned i = slots; i > 0; --i) free_slots_.push_back(i - 1);
    }
    if (free_slots_.empty()) {
      return Error(Errc::storage_io, detail::concat("io_uring holds ", free_slots_.capacity(),
                                                    " files already (held_files_max)"));
    }
    const unsigned slot = free_slots_.back();
    int rc = io_uring_register_files_update(&ring_, slot, &fd, 1);
    if (rc < 0) {
      return Error(Errc::storage_io,
                   std::string("io_uring file registration failed: ") + std::strerror(-rc));
    }
    free_slots_.pop_back();
    owners_.at(owner).slots.push_back(slot);
    return {};
  }

  void write_sync(Owner owner, int fd, std::uint64_t offset, std::span<const iovec> iov, Sync how,
                  Done done) override {
    auto* op = new UringOp;
    op->owner = owner;
    op->fd = fd;
    op->how = how;
    op->offset = offset;
    op->iov.assign(iov.begin(), iov.end());
    op->remaining = iov_bytes(iov);
    op->done = std::move(done);
    ++owners_.at(owner).ops;
    waiting_.push_back(op);
    submit_waiting();
    arm();
  }

  void close_owner(Owner owner) override {
    auto it = owners_.find(owner);
    if (it == owners_.end()) return;
    OwnerState& st = it->second;
    auto drop = [&](std::deque<UringOp*>& list) {
      std::erase_if(list, [&](UringOp* op) {
        if (op->owner != owner) return false;
        --st.ops;
        delete op;
        return true;
      });
    };
    drop(waiting_);
    drop(deferred_);
    // Its writes in flight must end before the memory they write from may be freed. Others'
    // writes that end meanwhile complete later, on the executor.
    while (st.ops > 0) {
      io_uring_cqe* cqe = nullptr;
      int rc = io_uring_wait_cqe(&ring_, &cqe);
      if (rc == -EINTR) continue;
      CORAFT_ASSERT(rc == 0, "waiting for io_uring completions failed", rc, st.ops);
      UringOp* op = op_of(cqe);
      bool done = record(op, cqe);
      io_uring_cqe_seen(&ring_, cqe);
      if (!done) continue;
      --in_flight_;
      if (op->owner == owner) {
        --st.ops;
        delete op;
      } else {
        deferred_.push_back(op);
      }
    }
    for (unsigned slot : st.slots) {
      int none = -1;
      int rc = io_uring_register_files_update(&ring_, slot, &none, 1);
      CORAFT_ASSERT(rc >= 0, "clearing an io_uring file slot failed", rc, slot);
      free_slots_.push_back(slot);
    }
    owners_.erase(it);
    if (!deferred_.empty() || !waiting_.empty()) {
      asio::post(ex_, [this, alive = alive_] {
        if (!*alive) return;
        std::deque<UringOp*> ready;
        ready.swap(deferred_);
        for (UringOp* op : ready) finish(op);
        submit_waiting();
        arm();
      });
    }
  }

  [[nodiscard]] std::string_view name() const noexcept override { return "io_uring"; }

 private:
  static UringOp* op_of(io_uring_cqe* cqe) {
    return reinterpret_cast<UringOp*>(io_uring_cqe_get_data64(cqe) & ~std::uint64_t{1});
  }

  // Queues the write (and its linked fdatasync) for every waiting op the ring has room for.
  void submit_waiting() {
    bool queued = false;
    while (!waiting_.empty() && io_uring_sq_space_left(&ring_) >= 2) {
      UringOp* op = waiting_.front();
      waiting_.pop_front();
      op->written = 0;
      ++in_flight_;
      queued = true;
      io_uring_sqe* w = io_uring_get_sqe(&ring_);
      if (op->how == Sync::dsync) {
        // One request, one completion: the write's own, which counts as the sync's too.
        io_uring_prep_writev2(w, op->fd, op->iov.data(), static_cast<unsigned>(op->iov.size()),
                              op->offset, RWF_DSYNC);
        io_uring_sqe_set_data64(w, reinterpret_cast<std::uint64_t>(op));
        op->write_seen = false;
        op->sync_seen = true;
        continue;
      }
      io_uring_prep_writev(w, op->fd, op->iov.data(), static_cast<unsigned>(op->iov.size()),
                           op->offset);
      // A successful write needs no completion of its own: the fdatasync's says it all. A short
      // or failed write still posts one, and cancels the fdatasync.
      w->flags |= IOSQE_IO_LINK | (skip_write_cqe_ ? IOSQE_CQE_SKIP_SUCCESS : 0);
      io_uring_sqe_set_data64(w, reinterpret_cast<std::uint64_t>(op));
      io_uring_sqe* s = io_uring_get_sqe(&ring_);
      io_uring_prep_fsync(s, op->fd, IORING_FSYNC_DATASYNC);
      io_uring_sqe_set_data64(s, reinterpret_cast<std::uint64_t>(op) | 1);
      op->write_seen = false;
      op->sync_seen = false;
    }
    if (queued) {
      int rc = io_uring_submit(&ring_);
      CORAFT_ASSERT(rc >= 0, "io_uring_submit failed", rc);
    }
  }

  void arm() {
    if (armed_ || in_flight_ == 0) return;
    armed_ = true;
    efd_.async_wait(asio::posix::stream_descriptor::wait_read,
                    [this, alive = alive_](const asio::error_code& ec) {
                      if (!*alive) return;
                      armed_ = false;
                      if (!ec) on_ready();
                      arm();
                    });
  }

  void on_ready() {
    std::uint64_t count = 0;
    while (::read(efd_.native_handle(), &count, sizeof count) < 0 && errno == EINTR) {
    }
    std::vector<UringOp*> finished;
    io_uring_cqe* cqe = nullptr;
    while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
      UringOp* op = op_of(cqe);
      bool done = record(op, cqe);
      io_uring_cqe_seen(&ring_, cqe);
      if (done) {
        --in_flight_;
        finished.push_back(op);
      }
    }
    for (UringOp* op : finished) finish(op);
    submit_waiting();
  }

  // Notes one completion of `op`; true when the op has no completion left to come. The
  // fdatasync's completion always comes; the write's comes only when it fell short or failed
  // (or always, on kernels that cannot skip it), which also cancels the fdatasync.
  bool record(UringOp* op, io_uring_cqe* cqe) {
    bool is_sync = (io_uring_cqe_get_data64(cqe) & 1) != 0;
    int res = cqe->res;
    if (!is_sync) {
      op->write_seen = true;
      if (res < 0) {
        op->err = op->err ? op->err : -res;
      } else {
        op->written = res;
      }
      return op->sync_seen;
    }
    op->sync_seen = true;
    if (res < 0 && res != -ECANCELED && op->err == 0) op->err = -res;
    if (!skip_write_cqe_) return op->write_seen;
    if (res != -ECANCELED) {
      if (!op->write_seen) op->written = static_cast<std::int64_t>(op->remaining);
      return true;
    }
    return op->write_seen;
  }

  void finish(UringOp* op) {
    auto written = static_cast<std::size_t>(op->written);
    if (op->err == 0 && written < op->remaining) {
      if (written == 0) {
        op->err = EIO;
      } else {
        advance_iov(op->iov, written);
        op->offset += written;
        op->remaining -= written;
        waiting_.push_back(op);
        return;
      }
    }
    Done done = std::move(op->done);
    int err = op->err;
    --owners_.at(op->owner).ops;
    delete op;
    done(err);
  }

  struct OwnerState {
    std::size_t ops = 0;          // waiting, in flight, or completed and not yet handed back
    std::vector<unsigned> slots;  // its files in the ring's table
  };

  asio::any_io_executor ex_;
  io_uring ring_;
  asio::posix::stream_descriptor efd_;
  std::shared_ptr<bool> alive_;
  std::unordered_map<Owner, OwnerState> owners_;
  Owner next_owner_ = 1;
  std::vector<unsigned> free_slots_;
  std::deque<UringOp*> waiting_;
  // Completed while an owner was closing; handed back on the executor.
  std::deque<UringOp*> deferred_;
  int in_flight_ = 0;
  bool armed_ = false;
  bool skip_write_cqe_;
  bool files_held_ = false;
};

}  // namespace

Result<std::shared_ptr<DiskBackend>> make_uring_backend(asio::any_io_executor ex) {
  io_uring ring;
  int rc = io_uring_queue_init(ring_entries, &ring, 0);
  if (rc < 0) {
    return Error(Errc::storage_io, std::string("io_uring setup failed: ") + std::strerror(-rc));
  }
  int efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (efd < 0) {
    int e = errno;
    io_uring_queue_exit(&ring);
    return Error(Errc::storage_io, std::string("eventfd failed: ") + std::strerror(e));
  }
  rc = io_uring_register_eventfd(&ring, efd);
  if (rc < 0) {
    ::close(efd);
    io_uring_queue_exit(&ring);
    return Error(Errc::storage_io,
                 std::string("io_uring eventfd registration failed: ") + std::strerror(-rc));
  }
  std::shared_ptr<DiskBackend> b = std::make_shared<UringBackend>(std::move(ex), ring, efd);
  return b;
}

}  // namespace coraft::storage
