// coraft-bench snapshot: one snapshot of --bytes streamed from a leader to a new learner on
// loopback, both with real storage, beside the two floors of the same run: loopback TCP
// bandwidth and 1 MiB pwrite + fdatasync append bandwidth in the same directory. The leader's
// state machine writes its snapshot in blocks and the learner's reads it back in blocks, so the
// memory the stream takes shows in the process's peak RSS, printed beside the window.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/use_future.hpp>
#include <asio/write.hpp>

#include <coraft/node.hpp>

#include "bench_util.hpp"
#include "commands.hpp"

namespace coraft::bench {
namespace {

constexpr std::uint64_t block_bytes = 1u << 20;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "coraft-bench snapshot: %s\n", what.c_str());
  std::exit(1);
}

std::byte pattern(std::uint64_t i) {
  return static_cast<std::byte>((i * 0x9e3779b1u) >> 11);
}

// A state machine whose snapshot is `bytes` of a fixed pattern, written and read in blocks.
class BlobMachine final : public StateMachine {
 public:
  explicit BlobMachine(std::uint64_t bytes) : bytes_(bytes) {}
  void apply(std::span<const Command> commands, std::vector<Bytes>& replies) override {
    replies.resize(replies.size() + commands.size());
  }
  Result<void> save(SnapshotSink& sink) override {
    std::vector<std::byte> block(block_bytes);
    for (std::uint64_t at = 0; at < bytes_;) {
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(block.size(), bytes_ - at));
      for (std::size_t i = 0; i < n; i += 4096) block[i] = pattern(at + i);
      if (auto r = sink.write(std::span(block.data(), n)); !r) return r;
      at += n;
    }
    return {};
  }
  Result<void> restore(SnapshotSource& source) override {
    std::vector<std::byte> block(block_bytes);
    std::uint64_t at = 0;
    for (;;) {
      auto n = source.read(block);
      if (!n) return n.error();
      if (*n == 0) break;
      at += *n;
    }
    restored_ = at;
    return {};
  }
  [[nodiscard]] std::uint64_t restored() const { return restored_; }

 private:
  std::uint64_t bytes_;
  std::uint64_t restored_ = 0;
};

// The peak resident set of this process since the last reset, in bytes.
std::uint64_t peak_rss() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

void reset_peak_rss() {
  std::ofstream("/proc/self/clear_refs") << "5";
}

// Loopback TCP: `bytes` written in 1 MiB writes on one thread, read on another.
double tcp_floor_mbs(std::uint64_t bytes) {
  asio::io_context io;
  asio::ip::tcp::acceptor acc(io, {asio::ip::make_address("127.0.0.1"), 0});
  asio::ip::tcp::socket out(io);
  out.connect(acc.local_endpoint());
  asio::ip::tcp::socket in = acc.accept();
  std::thread reader([&] {
    std::vector<char> buf(block_bytes);
    std::uint64_t got = 0;
    asio::error_code ec;
    while (got < bytes && !ec) got += in.read_some(asio::buffer(buf), ec);
  });
  std::vector<char> buf(block_bytes, 'x');
  const auto start = Clock::now();
  for (std::uint64_t sent = 0; sent < bytes; sent += buf.size())
    asio::write(out, asio::buffer(buf));
  reader.join();
  return static_cast<double>(bytes) / 1e6 / seconds_since(start);
}

// 1 MiB pwrite + fdatasync appends of `bytes` in a file under `dir`.
double sync_floor_mbs(const std::string& dir, std::uint64_t bytes) {
  const std::string path = dir + "/floor";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) die("open " + path + ": " + std::strerror(errno));
  std::vector<char> buf(block_bytes, 'y');
  const auto start = Clock::now();
  for (std::uint64_t off = 0; off < bytes; off += buf.size()) {
    if (::pwrite(fd, buf.data(), buf.size(), static_cast<off_t>(off)) !=
        static_cast<ssize_t>(buf.size())) {
      die("pwrite " + path);
    }
    if (::fdatasync(fd) < 0) die("fdatasync " + path);
  }
  const double mbs = static_cast<double>(bytes) / 1e6 / seconds_since(start);
  ::close(fd);
  ::unlink(path.c_str());
  return mbs;
}

std::uint16_t free_port() {
  asio::io_context io;
  asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

NodeConfig config(std::uint64_t id, const std::string& dir, std::uint16_t port,
                  const SnapshotOptions& o) {
  NodeConfig c;
  c.id = NodeId(id);
  c.cluster_id = 11;
  c.data_dir = dir + "/n" + std::to_string(id);
  c.listen_port = port;
  c.tick_interval = std::chrono::milliseconds(20);
  c.snapshot_threshold_entries = 0;
  c.snapshot_threshold_bytes = 0;
  c.snapshot_trailing_entries = 0;
  c.snapshot_bytes_max = std::max<std::uint64_t>(c.snapshot_bytes_max, o.bytes + block_bytes);
  c.snapshot_chunk_bytes = o.chunk;
  c.snapshot_window_chunks = static_cast<std::uint32_t>(o.window);
  return c;
}

}  // namespace

int run_snapshot(const SnapshotOptions& o) {
  const std::string dir = o.dir + "/coraft-bench-snapshot-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::uint64_t floor_bytes = std::min<std::uint64_t>(o.bytes, 1ull << 30);
  const double tcp = tcp_floor_mbs(floor_bytes);
  const double sync = sync_floor_mbs(dir, floor_bytes);

  asio::io_context io;
  auto work = asio::make_work_guard(io);
  std::thread runner([&] { io.run(); });
  const std::uint16_t p1 = free_port();
  const std::uint16_t p2 = free_port();
  BlobMachine leader_sm(o.bytes);
  BlobMachine learner_sm(0);
  NodeConfig c1 = config(1, dir, p1, o);
  c1.peers.push_back(ServerAddress{NodeId(2), "127.0.0.1", p2});
  NodeConfig c2 = config(2, dir, p2, o);
  c2.peers.push_back(ServerAddress{NodeId(1), "127.0.0.1", p1});
  auto conf = Configuration::make({NodeId(1)});
  if (auto r = bootstrap(c1.data_dir, c1.cluster_id, NodeId(1), *conf); !r)
    die(r.error().message());
  auto n1 = Node::start(io.get_executor(), c1, leader_sm, asio::use_future).get();
  if (!n1) die("start: " + n1.error().message());
  for (int i = 0; i < 500 && (*n1)->status(asio::use_future).get()->role != NodeRole::leader; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (auto r = (*n1)->propose(Bytes::copy_of("x"), asio::use_future).get(); !r) {
    die("propose: " + r.error().message());
  }
  const auto saving = Clock::now();
  auto snap = (*n1)->snapshot_now(asio::use_future).get();
  if (!snap) die("snapshot_now: " + snap.error().message());
  const double save_s = seconds_since(saving);

  auto n2 = Node::start(io.get_executor(), c2, learner_sm, asio::use_future).get();
  if (!n2) die("start: " + n2.error().message());
  reset_peak_rss();
  const std::uint64_t rss_before = peak_rss();
  const auto start = Clock::now();
  auto added =
      (*n1)->add_learner(ServerAddress{NodeId(2), "127.0.0.1", p2}, false, asio::use_future).get();
  if (!added) die("add_learner: " + added.error().message());
  double installed_s = 0;
  for (;;) {
    const NodeMetrics m = (*n2)->metrics(asio::use_future).get().value();
    if (m.snapshots_installed > 0 && installed_s == 0) installed_s = seconds_since(start);
    if (m.applied_index >= snap->value()) break;
    if (seconds_since(start) > 600) die("the learner did not catch up within 600 s");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  const double loaded_s = seconds_since(start);
  const std::uint64_t rss_growth = peak_rss() - std::min(peak_rss(), rss_before);
  const NodeMetrics lm = (*n1)->metrics(asio::use_future).get().value();
  (void)(*n2)->stop(asio::use_future).get();
  (void)(*n1)->stop(asio::use_future).get();
  work.reset();
  runner.join();
  std::filesystem::remove_all(dir);
  if (learner_sm.restored() != o.bytes) {
    die("the learner restored " + std::to_string(learner_sm.restored()) + " bytes, not " +
        std::to_string(o.bytes));
  }

  const double mb = static_cast<double>(o.bytes) / 1e6;
  const double mbs = mb / installed_s;
  const double lower = std::min(tcp, sync);
  std::printf("snapshot of %.1f MB (%llu chunks of %llu bytes, window %llu)\n", mb,
              static_cast<unsigned long long>((o.bytes + o.chunk - 1) / o.chunk),
              static_cast<unsigned long long>(o.chunk), static_cast<unsigned long long>(o.window));
  std::printf("  saved by the leader's state machine    %8.2f s\n", save_s);
  std::printf("  streamed and installed on the learner  %8.2f s  %8.1f MB/s\n", installed_s, mbs);
  std::printf("  loaded into the learner's machine      %8.2f s after the start\n", loaded_s);
  std::printf("  floor: loopback TCP                              %8.1f MB/s\n", tcp);
  std::printf("  floor: 1 MiB pwrite + fdatasync appends          %8.1f MB/s\n", sync);
  std::printf("  stream / lower floor                             %8.2f\n", mbs / lower);
  std::printf("  peak RSS growth during the stream (both nodes)   %8.1f MiB (window %.1f MiB)\n",
              static_cast<double>(rss_growth) / (1 << 20),
              static_cast<double>(o.chunk * o.window) / (1 << 20));
  std::printf("  leader: %llu bytes sent in %llu stream(s), %llu failed\n",
              static_cast<unsigned long long>(lm.snapshot_bytes_sent),
              static_cast<unsigned long long>(lm.snapshots_sent),
              static_cast<unsigned long long>(lm.snapshot_streams_failed));
  if (o.json) {
    JsonLine j;
    j.str("bench", "snapshot")
        .num("bytes", static_cast<double>(o.bytes))
        .num("mb_per_s", mbs)
        .num("tcp_floor_mb_per_s", tcp)
        .num("sync_floor_mb_per_s", sync)
        .num("ratio_to_lower_floor", mbs / lower)
        .num("installed_s", installed_s)
        .num("loaded_s", loaded_s)
        .num("peak_rss_growth_bytes", static_cast<double>(rss_growth))
        .num("window_bytes", static_cast<double>(o.chunk * o.window));
    j.print();
  }
  return 0;
}

}  // namespace coraft::bench
