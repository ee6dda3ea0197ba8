// A thread for the slow file work the event loop must not wait on: preparing segments,
// renames, deletes and directory fsyncs. Jobs run one at a time, in submission order.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include <asio/any_io_executor.hpp>

#include <coraft/result.hpp>

namespace coraft::storage {

class FileWorker {
 public:
  using Job = std::function<Result<void>()>;
  using Done = std::function<void(Result<void>)>;

  explicit FileWorker(asio::any_io_executor ex);
  // Runs the jobs already queued, then stops. Completions that have not run yet are dropped.
  ~FileWorker();
  FileWorker(const FileWorker&) = delete;
  FileWorker& operator=(const FileWorker&) = delete;

  // Runs `job` on the worker thread, then `done` with its result on the executor.
  void submit(Job job, Done done);

 private:
  void run();

  asio::any_io_executor ex_;
  std::shared_ptr<bool> alive_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<Job, Done>> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace coraft::storage
