// The disk floor of one commit when every server of a cluster shares one disk: each server's
// log is its own file, and a commit needs a majority of them durable. One 4 KiB durable write
// alone is the floor fio prints; N written at once queue behind each other in the device, and
// the majority-th to finish is what a commit at one proposal in flight waits for.
#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"
#include "commands.hpp"

namespace coraft::bench {
namespace {

constexpr std::size_t block_bytes = 4096;
constexpr std::uint64_t file_bytes = 8ull << 20;  // writes wrap around inside it

// A pre-written file written through O_DIRECT with RWF_DSYNC, as the log writes a batch.
class DurableFile {
 public:
  explicit DurableFile(std::string path) : path_(std::move(path)) {
    void* p = nullptr;
    if (::posix_memalign(&p, block_bytes, block_bytes) != 0) return;
    buf_ = static_cast<std::byte*>(p);
    std::memset(buf_, 0x5c, block_bytes);
    int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return;
    bool ok = true;
    for (std::uint64_t off = 0; ok && off < file_bytes; off += block_bytes)
      ok = ::pwrite(fd, buf_, block_bytes, static_cast<off_t>(off)) ==
           static_cast<ssize_t>(block_bytes);
    ok = ok && ::fsync(fd) == 0;
    ::close(fd);
    if (!ok) return;
    // Where the file system refuses O_DIRECT (tmpfs), the log writes buffered, and so does this.
    fd_ = ::open(path_.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
    if (fd_ < 0 && errno == EINVAL) fd_ = ::open(path_.c_str(), O_RDWR | O_CLOEXEC);
  }
  ~DurableFile() {
    if (fd_ >= 0) ::close(fd_);
    std::free(buf_);
    std::error_code ec;
    std::filesystem::remove(path_, ec);
  }
  DurableFile(const DurableFile&) = delete;
  DurableFile& operator=(const DurableFile&) = delete;

  [[nodiscard]] bool ok() const { return fd_ >= 0; }

  bool write() {
    iovec iov{buf_, block_bytes};
    const ssize_t n = ::pwritev2(fd_, &iov, 1, static_cast<off_t>(off_), RWF_DSYNC);
    off_ = (off_ + block_bytes) % file_bytes;
    return n == static_cast<ssize_t>(block_bytes);
  }

 private:
  std::string path_;
  std::byte* buf_ = nullptr;
  int fd_ = -1;
  std::uint64_t off_ = 0;
};

// Rounds of `files.size()` writes started together, for `seconds`; each round's sample is the
// time until `majority` of them are durable. False when a write failed.
bool measure(std::vector<std::unique_ptr<DurableFile>>& files, std::size_t majority, double seconds,
             Latencies& out) {
  const std::size_t n = files.size();
  std::vector<Clock::time_point> done(n);
  std::atomic<bool> stop{false}, failed{false};
  std::barrier<> start(static_cast<std::ptrdiff_t>(n + 1)), end(static_cast<std::ptrdiff_t>(n + 1));
  std::vector<std::thread> writers;
  writers.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    writers.emplace_back([&, i] {
      for (;;) {
        start.arrive_and_wait();
        if (stop.load()) return;
        if (!files[i]->write()) failed.store(true);
        done[i] = Clock::now();
        end.arrive_and_wait();
      }
    });
  }
  const auto begin = Clock::now();
  while (seconds_since(begin) < seconds && !failed.load()) {
    const auto t0 = Clock::now();
    start.arrive_and_wait();
    end.arrive_and_wait();
    std::vector<Clock::time_point> sorted = done;
    std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(majority - 1),
                     sorted.end());
    out.add(sorted[majority - 1] - t0);
  }
  stop.store(true);
  start.arrive_and_wait();
  for (auto& t : writers) t.join();
  return !failed.load();
}

}  // namespace

std::optional<DiskFloor> measure_disk_floor(const std::string& dir, std::size_t servers,
                                            double seconds) {
  std::vector<std::unique_ptr<DurableFile>> files;
  for (std::size_t i = 0; i < servers; ++i) {
    files.push_back(std::make_unique<DurableFile>(dir + "/disk-floor-" + std::to_string(i + 1)));
    if (!files.back()->ok()) return std::nullopt;
  }
  DiskFloor f;
  Latencies alone, together;
  if (servers == 1) {
    if (!measure(files, 1, seconds, alone)) return std::nullopt;
    f.alone_p50_us = f.majority_p50_us = alone.percentile_us(50);
    f.majority_p99_us = alone.percentile_us(99);
    return f;
  }
  std::vector<std::unique_ptr<DurableFile>> one;
  one.push_back(std::move(files.back()));
  files.pop_back();
  // Alone and together in alternating slices, so that both see the same disk weather.
  constexpr int slices = 4;
  for (int s = 0; s < slices; ++s) {
    if (!measure(one, 1, seconds / (2 * slices), alone)) return std::nullopt;
    files.push_back(std::move(one.back()));
    one.pop_back();
    if (!measure(files, servers / 2 + 1, seconds / (2 * slices), together)) return std::nullopt;
    one.push_back(std::move(files.back()));
    files.pop_back();
  }
  f.alone_p50_us = alone.percentile_us(50);
  f.majority_p50_us = together.percentile_us(50);
  f.majority_p99_us = together.percentile_us(99);
  return f;
}

}  // namespace coraft::bench
