#include "storage/file_worker.hpp"

#include <asio/post.hpp>

namespace coraft::storage {

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

void FileWorker::submit(Job job, Done done) {
  {
    std::lock_guard lock(mu_);
    queue_.emplace_back(std::move(job), std::move(done));
  }
  cv_.notify_one();
}

void FileWorker::run() {
  for (;;) {
    std::pair<Job, Done> item;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      item = std::move(queue_.front());
      queue_.pop_front();
    }
    Result<void> r = item.first();
    asio::post(ex_, [alive = alive_, done = std::move(item.second), r = std::move(r)]() mutable {
      if (*alive) done(std::move(r));
    });
  }
}

}  // namespace coraft::storage
