// A thread for the slow file work the event loop must not wait on: preparing segments,
// renames, deletes and directory fsyncs. Jobs run one at a time, in submission order. One worker
// serves every log on an io_context (FileWorker::shared); each log is an owner of its own.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_set>

#include <asio/any_io_executor.hpp>

#include <coraft/result.hpp>

namespace coraft::storage {

class FileWorker {
 public:
  using Job = std::function<Result<void>()>;
  using Done = std::function<void(Result<void>)>;
  using Owner = std::uint64_t;

  explicit FileWorker(asio::any_io_executor ex);
  // Runs the jobs already queued, then stops. Completions that have not run yet are dropped.
  ~FileWorker();
  FileWorker(const FileWorker&) = delete;
  FileWorker& operator=(const FileWorker&) = delete;

  // The worker shared by every user on `ex`'s execution context: made on first use, gone with
  // its last user. Completions run on the executor of the user that made it, so the context
  // must run on one thread.
  [[nodiscard]] static std::shared_ptr<FileWorker> shared(asio::any_io_executor ex);

  // A new owner id; ids are never reused. Call on the executor's thread, as close_owner().
  [[nodiscard]] Owner open_owner();
  // Runs `job` on the worker thread, then `done` with its result on the executor.
  void submit(Owner owner, Job job, Done done);
  // Blocks until every job `owner` submitted has run, then drops its completions that have not
  // run yet.
  void close_owner(Owner owner);

 private:
  struct Item {
    Owner owner = 0;
    Job job;
    Done done;
  };
  void run();

  asio::any_io_executor ex_;
  std::shared_ptr<bool> alive_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable idle_cv_;
  std::deque<Item> queue_;
  Owner running_ = 0;  // the owner whose job the thread is running, or 0
  bool stopping_ = false;
  // Executor thread only.
  std::unordered_set<Owner> owners_;
  Owner next_owner_ = 1;
  std::thread thread_;
};

// One owner's handle on a worker: closes the owner when it goes.
class FileWorkerChannel {
 public:
  explicit FileWorkerChannel(std::shared_ptr<FileWorker> worker)
      : worker_(std::move(worker)), owner_(worker_->open_owner()) {}
  ~FileWorkerChannel() { worker_->close_owner(owner_); }
  FileWorkerChannel(const FileWorkerChannel&) = delete;
  FileWorkerChannel& operator=(const FileWorkerChannel&) = delete;

  void submit(FileWorker::Job job, FileWorker::Done done) {
    worker_->submit(owner_, std::move(job), std::move(done));
  }
  [[nodiscard]] const FileWorker* worker() const noexcept { return worker_.get(); }

 private:
  std::shared_ptr<FileWorker> worker_;
  FileWorker::Owner owner_;
};

}  // namespace coraft::storage
