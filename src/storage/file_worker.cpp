#include "storage/file_worker.hpp"

#include <algorithm>
#include <memory>

#include <asio/execution/context.hpp>
#include <asio/execution_context.hpp>
#include <asio/post.hpp>
#include <asio/query.hpp>

namespace coraft::storage {

namespace {

// The worker shared on one execution context; it goes with its last user.
class SharedWorker final : public asio::execution_context::service {
 public:
  static asio::execution_context::id id;

  explicit SharedWorker(asio::execution_context& ctx) : service(ctx) {}

  std::shared_ptr<FileWorker> get(asio::any_io_executor ex) {
    std::lock_guard lock(mu_);
    if (auto live = worker_.lock()) return live;
    auto made = std::make_shared<FileWorker>(std::move(ex));
    worker_ = made;
    return made;
  }

 private:
  void shutdown() override {}

  std::mutex mu_;
  std::weak_ptr<FileWorker> worker_;
};

asio::execution_context::id SharedWorker::id;

}  // namespace

FileWorker::FileWorker(asio::any_io_executor ex)
    : ex_(std::move(ex)), alive_(std::make_shared<bool>(true)), thread_([this] { run(); }) {}

FileWorker::~FileWorker() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  thread_.join();
  *alive_ = false;
}

std::shared_ptr<FileWorker> FileWorker::shared(asio::any_io_executor ex) {
  auto& ctx = asio::query(ex, asio::execution::context);
  return asio::use_service<SharedWorker>(ctx).get(std::move(ex));
}

FileWorker::Owner FileWorker::open_owner() {
  const Owner o = next_owner_++;
  owners_.insert(o);
  return o;
}

void FileWorker::submit(Owner owner, Job job, Done done) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(Item{owner, std::move(job), std::move(done)});
  }
  cv_.notify_one();
}

void FileWorker::close_owner(Owner owner) {
  {
    std::unique_lock lock(mu_);
    idle_cv_.wait(lock, [&] {
      return running_ != owner && std::none_of(queue_.begin(), queue_.end(),
                                               [&](const Item& i) { return i.owner == owner; });
    });
  }
  owners_.erase(owner);
}

void FileWorker::run() {
  for (;;) {
    Item item;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      item = std::move(queue_.front());
      queue_.pop_front();
      running_ = item.owner;
    }
    Result<void> r = item.job();
    asio::post(ex_, [this, alive = alive_, owner = item.owner, done = std::move(item.done),
                     r = std::move(r)]() mutable {
      if (*alive && owners_.contains(owner)) done(std::move(r));
    });
    {
      std::lock_guard lock(mu_);
      running_ = 0;
    }
    idle_cv_.notify_all();
  }
}

}  // namespace coraft::storage
