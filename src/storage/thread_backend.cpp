// The fallback backend: one dedicated thread runs pwritev + fdatasync (or pwritev2 with
// RWF_DSYNC) for each operation in order and posts the completion back to the event loop. Also
// chooses between the backends.
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>

#include <asio/execution/context.hpp>
#include <asio/execution_context.hpp>
#include <asio/post.hpp>
#include <asio/query.hpp>

#include <coraft/log.hpp>

#include "storage/disk_backend.hpp"
#include "storage/iov_util.hpp"

namespace coraft::storage {
namespace {

struct ThreadOp {
  DiskBackend::Owner owner = 0;
  int fd = -1;
  std::uint64_t offset = 0;
  std::vector<iovec> iov;
  Sync how = Sync::fdatasync;
  DiskBackend::Done done;
};

int write_all_and_sync(ThreadOp& op) {
  std::size_t remaining = iov_bytes(op.iov);
  while (remaining > 0) {
    int count = static_cast<int>(std::min<std::size_t>(op.iov.size(), IOV_MAX));
    int flags = op.how == Sync::dsync ? RWF_DSYNC : 0;
    ssize_t n = ::pwritev2(op.fd, op.iov.data(), count, static_cast<off_t>(op.offset), flags);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return EIO;
    advance_iov(op.iov, static_cast<std::size_t>(n));
    op.offset += static_cast<std::uint64_t>(n);
    remaining -= static_cast<std::size_t>(n);
  }
  if (op.how == Sync::dsync) return 0;
  while (::fdatasync(op.fd) < 0) {
    if (errno != EINTR) return errno;
  }
  return 0;
}

class ThreadBackend final : public DiskBackend {
 public:
  explicit ThreadBackend(asio::any_io_executor ex)
      : ex_(std::move(ex)), alive_(std::make_shared<bool>(true)), worker_([this] { run(); }) {}

  ~ThreadBackend() override {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_one();
    worker_.join();
    *alive_ = false;
  }

  Owner open_owner() override {
    const Owner o = next_owner_++;
    owners_.insert(o);
    return o;
  }

  void write_sync(Owner owner, int fd, std::uint64_t offset, std::span<const iovec> iov, Sync how,
                  Done done) override {
    {
      std::lock_guard lock(mu_);
      queue_.push_back(ThreadOp{owner, fd, offset, {iov.begin(), iov.end()}, how, std::move(done)});
    }
    cv_.notify_one();
  }

  Result<void> hold_until_gone(Owner, int) override { return {}; }

  void close_owner(Owner owner) override {
    std::unique_lock lock(mu_);
    std::erase_if(queue_, [&](const ThreadOp& op) { return op.owner == owner; });
    idle_cv_.wait(lock, [&] { return running_ != owner; });
    // Completions already posted find the owner gone and are dropped.
    owners_.erase(owner);
  }

  [[nodiscard]] std::string_view name() const noexcept override { return "thread"; }

 private:
  void run() {
    for (;;) {
      ThreadOp op;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        op = std::move(queue_.front());
        queue_.pop_front();
        running_ = op.owner;
      }
      int err = write_all_and_sync(op);
      asio::post(ex_, [this, alive = alive_, owner = op.owner, done = std::move(op.done), err] {
        if (*alive && owners_.contains(owner)) done(err);
      });
      {
        std::lock_guard lock(mu_);
        running_ = 0;
      }
      idle_cv_.notify_all();
    }
  }

  asio::any_io_executor ex_;
  std::shared_ptr<bool> alive_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<ThreadOp> queue_;
  Owner running_ = 0;  // the owner whose write the thread is doing, or 0
  std::condition_variable idle_cv_;
  bool stopping_ = false;
  // Executor thread only.
  std::unordered_set<Owner> owners_;
  Owner next_owner_ = 1;
  std::thread worker_;
};

std::atomic<bool> fallback_reported{false};

BackendKind from_environment(BackendKind kind) {
  if (kind != BackendKind::automatic) return kind;
  const char* env = std::getenv("CORAFT_STORAGE_BACKEND");
  if (env && std::strcmp(env, "thread") == 0) return BackendKind::thread;
  if (env && std::strcmp(env, "uring") == 0) return BackendKind::uring;
  return kind;
}

// The backends shared on one execution context, by kind; each goes with its last user.
class SharedBackends final : public asio::execution_context::service {
 public:
  static asio::execution_context::id id;

  explicit SharedBackends(asio::execution_context& ctx) : service(ctx) {}

  Result<std::shared_ptr<DiskBackend>> get(asio::any_io_executor ex, BackendKind kind) {
    std::lock_guard lock(mu_);
    std::weak_ptr<DiskBackend>& slot = backends_[kind];
    if (auto live = slot.lock()) return live;
    auto made = make_disk_backend(std::move(ex), kind);
    if (made) slot = *made;
    return made;
  }

 private:
  void shutdown() override {}

  std::mutex mu_;
  std::map<BackendKind, std::weak_ptr<DiskBackend>> backends_;
};

asio::execution_context::id SharedBackends::id;

}  // namespace

Result<std::shared_ptr<DiskBackend>> shared_disk_backend(asio::any_io_executor ex, BackendKind kind,
                                                         int injected_setup_errno) {
  if (injected_setup_errno != 0)
    return make_disk_backend(std::move(ex), kind, injected_setup_errno);
  auto& ctx = asio::query(ex, asio::execution::context);
  return asio::use_service<SharedBackends>(ctx).get(std::move(ex), from_environment(kind));
}

std::shared_ptr<DiskBackend> make_thread_backend(asio::any_io_executor ex) {
  return std::make_shared<ThreadBackend>(std::move(ex));
}

Result<std::shared_ptr<DiskBackend>> make_disk_backend(asio::any_io_executor ex, BackendKind kind,
                                                       int injected_setup_errno) {
  kind = from_environment(kind);
  if (kind == BackendKind::thread) return make_thread_backend(std::move(ex));
  auto uring = injected_setup_errno == 0
                   ? make_uring_backend(ex)
                   : Result<std::shared_ptr<DiskBackend>>(
                         Error(Errc::storage_io, std::string("io_uring setup failed: ") +
                                                     std::strerror(injected_setup_errno)));
  if (uring || kind == BackendKind::uring) return uring;
  if (!fallback_reported.exchange(true)) {
    log(LogLevel::warn, "storage: ", uring.error().detail,
        "; using pwritev + fdatasync on a dedicated thread instead");
  }
  return make_thread_backend(std::move(ex));
}

}  // namespace coraft::storage
