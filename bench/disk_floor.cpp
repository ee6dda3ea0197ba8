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
    if (::posix_memalign(&p, block_bytes, block_bytes) != 0) {
      error_ = "cannot allocate an aligned buffer";
      return;
    }
    buf_ = static_cast<std::byte*>(p);
    std::memset(buf_, 0x5c, block_bytes);
    int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      fail("create");
      return;
    }
    bool ok = true;
    for (std::uint64_t off = 0; ok && off < file_bytes; off += block_bytes)
      ok = ::pwrite(fd, buf_, block_bytes, static_cast<off_t>(off)) ==
           static_cast<ssize_t>(block_bytes);
    ok = ok && ::fsync(fd) == 0;
    if (!ok) fail("pre-write");
    ::close(fd);
    if (!ok) return;
    // Where the file system refuses O_DIRECT (tmpfs), the log writes buffered, and so does this.
    fd_ = ::open(path_.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
    if (fd_ < 0 && errno == EINVAL) fd_ = ::open(path_.c_str(), O_RDWR | O_CLOEXEC);
    if (fd_ < 0) fail("open");
  }
  ~DurableFile() {
    if (fd_ >= 0) ::close(fd_);
    std::free(buf_);
    std::error_code ec;
    std::filesystem::remove(path_, ec);
  }
  DurableFile(const DurableFile&) = delete;
  DurableFile& operator=(const DurableFile&) = delete;

  [[nodiscard]] bool ok() const { return error_.empty(); }
  // Why the file cannot be written; empty while it can.
  [[nodiscard]] const std::string& error() const { return error_; }

  // Called by one thread at a time; error() is read once the writers are joined.
  bool write() {
    iovec iov{buf_, block_bytes};
    const ssize_t n = ::pwritev2(fd_, &iov, 1, static_cast<off_t>(off_), RWF_DSYNC);
    off_ = (off_ + block_bytes) % file_bytes;
    if (n == static_cast<ssize_t>(block_bytes)) return true;
    if (n < 0) {
      fail("durable write to");
    } else {
      error_ = "a short durable write to " + path_;
    }
    return false;
  }

 private:
  std::string path_;
  std::byte* buf_ = nullptr;
  int fd_ = -1;
  std::uint64_t off_ = 0;
  std::string error_;

  void fail(const char* what) {
    error_ = std::string(what) + " " + path_ + ": " + std::strerror(errno);
  }
};

// Rounds of writes to the first `writers` files, started together, for `seconds`; each round's
// sample is the time until `majority` of them are durable. False when a write failed (the file
// says why).
bool measure(const std::vector<std::unique_ptr<DurableFile>>& files, std::size_t writers,
             std::size_t majority, double seconds, Latencies& out) {
  std::vector<Clock::time_point> done(writers);
  std::atomic<bool> stop{false}, failed{false};
  std::barrier<> start(static_cast<std::ptrdiff_t>(writers + 1)),
      end(static_cast<std::ptrdiff_t>(writers + 1));
  std::vector<std::thread> threads;
  threads.reserve(writers);
  for (std::size_t i = 0; i < writers; ++i) {
    threads.emplace_back([&, i] {
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
  for (auto& t : threads) t.join();
  return !failed.load();
}

}  // namespace

std::optional<DiskFloor> measure_disk_floor(const std::string& dir, std::size_t servers,
                                            double seconds, std::string& why) {
  std::vector<std::unique_ptr<DurableFile>> files;
  for (std::size_t i = 0; i < servers; ++i) {
    files.push_back(std::make_unique<DurableFile>(dir + "/disk-floor-" + std::to_string(i + 1)));
  }
  // The first file that failed, in setup or in a write, says why.
  auto failed = [&]() -> std::optional<DiskFloor> {
    auto bad = std::find_if(files.begin(), files.end(), [](const auto& f) { return !f->ok(); });
    why = bad != files.end() ? (*bad)->error() : "a write failed";
    return std::nullopt;
  };
  if (std::any_of(files.begin(), files.end(), [](const auto& f) { return !f->ok(); })) {
    return failed();
  }
  // Alone and together in alternating slices, so that both see the same disk weather. With one
  // server the two are the same measurement.
  Latencies alone, together;
  constexpr int slices = 4;
  const double slice = seconds / (servers == 1 ? slices : 2 * slices);
  for (int s = 0; s < slices; ++s) {
    if (!measure(files, 1, 1, slice, alone)) return failed();
    if (servers > 1 && !measure(files, servers, servers / 2 + 1, slice, together)) {
      return failed();
    }
  }
  Latencies& majority = servers == 1 ? alone : together;
  return DiskFloor{alone.percentile_us(50), majority.percentile_us(50), majority.percentile_us(99)};
}

}  // namespace coraft::bench
