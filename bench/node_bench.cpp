// coraft-bench node: whole nodes in one process (real log with fsync, real TCP on 127.0.0.1),
// a closed loop of proposals to the leader, printed beside the disk's own durable-write floor.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/use_future.hpp>

#include <coraft/node.hpp>

#include "bench_util.hpp"

namespace coraft::bench {
namespace {

constexpr const char* usage_line =
    "coraft-bench node --payload BYTES --outstanding N [--nodes N] [--seconds T] [--dir DIR] "
    "[--json]";

class NullMachine final : public StateMachine {
 public:
  void apply(std::span<const Command> commands, std::vector<Bytes>& replies) override {
    for (std::size_t i = 0; i < commands.size(); ++i) replies.emplace_back();
  }
  Result<void> save(SnapshotSink&) override { return {}; }
  Result<void> restore(SnapshotSource&) override { return {}; }
};

std::uint16_t free_port() {
  asio::io_context io;
  asio::ip::tcp::acceptor a(io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

// The floor: one durable write of one window's bytes after another, in the same directory, the
// way the log writes its batches: O_DIRECT with O_DSYNC on blocks written once before (a
// buffered write and fdatasync where the file system refuses O_DIRECT).
double sync_floor_per_s(const std::string& dir, std::size_t bytes, double seconds) {
  const std::string path = dir + "/floor";
  const std::size_t block = (bytes + 4095) / 4096 * 4096;
  constexpr int blocks = 256;
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return 0;
  std::vector<char> fill(block * blocks, 'f');
  (void)::pwrite(fd, fill.data(), fill.size(), 0);
  ::fdatasync(fd);
  ::close(fd);
  fd = ::open(path.c_str(), O_RDWR | O_DIRECT | O_DSYNC | O_CLOEXEC);
  const bool direct = fd >= 0;
  if (!direct) fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  void* buf = nullptr;
  if (fd < 0 || ::posix_memalign(&buf, 4096, block) != 0) return 0;
  std::memset(buf, 'f', block);
  std::uint64_t n = 0;
  const auto start = Clock::now();
  while (seconds_since(start) < seconds) {
    if (::pwrite(fd, buf, block, static_cast<off_t>((n % blocks) * block)) < 0) break;
    if (!direct) ::fdatasync(fd);
    ++n;
  }
  const double rate = static_cast<double>(n) / seconds_since(start);
  std::free(buf);
  ::close(fd);
  ::unlink(path.c_str());
  return rate;
}

int run(int argc, char** argv) {
  Flags flags({{"payload", true},
               {"outstanding", true},
               {"nodes", true},
               {"seconds", true},
               {"dir", true},
               {"json", false},
               {"help", false}});
  std::string err = flags.parse(argc, argv);
  if (err.empty() && flags.has("help")) {
    std::printf("usage: %s\n", usage_line);
    return 0;
  }
  if (err.empty() && !flags.has("payload")) err = "--payload BYTES is required";
  if (err.empty() && !flags.has("outstanding")) err = "--outstanding N is required";
  const std::uint64_t payload = flags.size("payload", 256);
  const std::uint64_t outstanding = flags.size("outstanding", 64);
  const std::uint64_t nodes = flags.size("nodes", 3);
  const double seconds = flags.real("seconds", 5);
  const std::string base = flags.str("dir", "/tmp");
  if (err.empty()) err = flags.value_error();
  if (err.empty() && (payload == 0 || payload > (1u << 20))) err = "--payload must be 1..1m";
  if (err.empty() && (outstanding == 0 || outstanding > 65536)) {
    err = "--outstanding must be 1..65536";
  }
  if (err.empty() && (nodes == 0 || nodes > 7)) err = "--nodes must be 1..7";
  if (err.empty() && (seconds <= 0 || seconds > 3600)) err = "--seconds must be in (0, 3600]";
  if (!err.empty()) return flag_error("node", err, usage_line);

  const std::string dir = base + "/coraft-bench-node-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const double floor = sync_floor_per_s(dir, payload * outstanding, 1.0);

  asio::io_context io;
  auto work = asio::make_work_guard(io);
  std::thread thread([&] { io.run(); });
  std::vector<std::uint16_t> ports;
  std::vector<NodeId> ids;
  for (std::uint64_t i = 1; i <= nodes; ++i) {
    ports.push_back(free_port());
    ids.push_back(NodeId(i));
  }
  auto conf = Configuration::make(ids);
  std::vector<NullMachine> machines(nodes);
  std::vector<std::shared_ptr<Node>> running;
  int status = 0;
  for (std::uint64_t i = 1; i <= nodes && status == 0; ++i) {
    const std::string data = dir + "/n" + std::to_string(i);
    if (auto b = bootstrap(data, 7, NodeId(i), *conf); !b) {
      std::fprintf(stderr, "coraft-bench node: %s\n", b.error().message().c_str());
      status = 1;
      break;
    }
    NodeConfig c;
    c.id = NodeId(i);
    c.cluster_id = 7;
    c.data_dir = data;
    c.listen_port = ports[i - 1];
    c.tick_interval = std::chrono::milliseconds(20);
    for (std::uint64_t j = 1; j <= nodes; ++j) {
      if (j != i) c.peers.push_back(ServerAddress{NodeId(j), "127.0.0.1", ports[j - 1]});
    }
    auto n = Node::start(io.get_executor(), c, machines[i - 1], asio::use_future).get();
    if (!n) {
      std::fprintf(stderr, "coraft-bench node: %s\n", n.error().message().c_str());
      status = 1;
      break;
    }
    running.push_back(std::move(*n));
  }
  // Find the leader.
  std::shared_ptr<Node> leader;
  const auto wait_start = Clock::now();
  while (status == 0 && !leader && seconds_since(wait_start) < 10) {
    for (auto& n : running) {
      auto s = n->status(asio::use_future).get();
      if (s && s->role == NodeRole::leader) leader = n;
    }
    if (!leader) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (status == 0 && !leader) {
    std::fprintf(stderr, "coraft-bench node: no leader was elected\n");
    status = 1;
  }
  Latencies lat;
  std::uint64_t done = 0;
  std::uint64_t failed = 0;
  double elapsed = 0;
  if (status == 0) {
    const Bytes body = Bytes::copy_of(std::string(payload, 'p'));
    std::promise<void> finished;
    std::atomic<std::uint64_t> live{0};
    const auto start = Clock::now();
    const auto end =
        start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    // Runs on the io thread only: every completion comes back there.
    std::function<void()> issue = [&] {
      const auto t0 = Clock::now();
      ++live;
      leader->propose(body, [&, t0](Result<Proposed> r) {
        const auto now = Clock::now();
        if (r) {
          ++done;
          lat.add(now - t0);
        } else {
          ++failed;
        }
        if (now < end) {
          issue();
        }
        if (--live == 0) finished.set_value();
      });
    };
    asio::post(io, [&] {
      for (std::uint64_t i = 0; i < outstanding; ++i) issue();
    });
    finished.get_future().get();
    elapsed = seconds_since(start);
  }
  for (auto& n : running) (void)n->stop(asio::use_future).get();
  running.clear();
  leader.reset();
  work.reset();
  thread.join();
  std::filesystem::remove_all(dir);
  if (status != 0) return status;

  const double rate = static_cast<double>(done) / elapsed;
  const double p50 = lat.percentile_us(50), p99 = lat.percentile_us(99);
  std::printf(
      "node: %llu servers in one process, one io thread, fsync on, %llu-byte entries, "
      "%llu outstanding\n",
      static_cast<unsigned long long>(nodes), static_cast<unsigned long long>(payload),
      static_cast<unsigned long long>(outstanding));
  std::printf(
      "  %.0f entries/s applied on the leader; latency p50 %.0f us, p99 %.0f us; "
      "%llu failed\n",
      rate, p50, p99, static_cast<unsigned long long>(failed));
  std::printf(
      "  floor: %.0f durable writes/s (O_DIRECT + O_DSYNC writes of %llu bytes, same disk)\n",
      floor, static_cast<unsigned long long>(payload * outstanding));
  if (flags.has("json")) {
    JsonLine()
        .str("bench", "node")
        .num("nodes", static_cast<double>(nodes))
        .num("payload_bytes", static_cast<double>(payload))
        .num("outstanding", static_cast<double>(outstanding))
        .num("seconds", elapsed)
        .num("entries_per_s", rate)
        .num("p50_us", p50)
        .num("p99_us", p99)
        .num("failed", static_cast<double>(failed))
        .num("floor_syncs_per_s", floor)
        .print();
  }
  return 0;
}

}  // namespace

int run_node(int argc, char** argv) {
  return run(argc, argv);
}

}  // namespace coraft::bench
