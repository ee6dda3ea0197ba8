// coraft-bench cluster: whole nodes (real log with fsync, real TCP on 127.0.0.1), a counter
// state machine and a closed loop of proposals to the leader, measured over a window after a
// warm-up, the way the peers' harness measures hashicorp/raft, canonical/raft and etcd.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_future.hpp>

#include <coraft/log.hpp>
#include <coraft/node.hpp>

#include "bench_util.hpp"
#include "commands.hpp"

namespace coraft::bench {
namespace {

constexpr std::uint64_t cluster_id = 7;

// The peers' state machine: a counter incremented once per applied entry.
class CounterMachine final : public StateMachine {
 public:
  void apply(std::span<const Command> commands, std::vector<Bytes>& replies) override {
    count_.fetch_add(commands.size(), std::memory_order_relaxed);
    replies.resize(replies.size() + commands.size());
  }
  Result<void> save(SnapshotSink& sink) override {
    std::uint64_t v = count_.load(std::memory_order_relaxed);
    return sink.write(std::as_bytes(std::span(&v, 1)));
  }
  Result<void> restore(SnapshotSource& source) override {
    std::uint64_t v = 0;
    auto n = source.read(std::as_writable_bytes(std::span(&v, 1)));
    if (!n) return n.error();
    count_.store(v, std::memory_order_relaxed);
    return {};
  }
  [[nodiscard]] std::uint64_t count() const { return count_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> count_{0};
};

std::uint16_t free_port() {
  asio::io_context io;
  asio::ip::tcp::acceptor a(io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

// CPU seconds (user + system) of a process from /proc/PID/stat; 0 when it is gone.
double process_cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(text.substr(close + 2));
  std::string f;
  double ticks = 0;
  // Fields 3.. after the name; utime and stime are fields 14 and 15.
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i >= 14) ticks += std::strtod(f.c_str(), nullptr);
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double self_cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return s(u.ru_utime) + s(u.ru_stime);
}

// Busy CPU seconds of the whole machine (user, nice, system, irq, softirq, steal).
double machine_busy_seconds() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  std::uint64_t v[8] = {};
  in >> cpu;
  for (auto& x : v) in >> x;
  const double busy = static_cast<double>(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]);
  return busy / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

struct Snapshot {
  double at = 0;  // seconds since the loop started
  std::uint64_t leader_applied = 0;
  NodeMetrics leader;
  NodeMetrics follower;
  double cpu = 0;
  double machine_cpu = 0;
};

// What every server of the benchmark shares, in this process or in a server process of its own.
NodeConfig server_config(std::uint64_t id, std::string data_dir, std::uint16_t port,
                         bool apply_inline) {
  NodeConfig c;
  c.id = NodeId(id);
  c.cluster_id = cluster_id;
  c.data_dir = std::move(data_dir);
  c.listen_port = port;
  c.tick_interval = std::chrono::milliseconds(20);
  c.apply_inline = apply_inline;
  return c;
}

// Where each server listens, and the other servers' addresses for server `i` (1-based).
struct Layout {
  std::vector<std::uint16_t> ports;
  bool apply_inline = false;
  [[nodiscard]] NodeConfig config(std::uint64_t i, const std::string& dir) const {
    NodeConfig c = server_config(i, dir + "/n" + std::to_string(i), ports[i - 1], apply_inline);
    for (std::uint64_t j = 1; j <= ports.size(); ++j) {
      if (j != i) c.peers.push_back(ServerAddress{NodeId(j), "127.0.0.1", ports[j - 1]});
    }
    return c;
  }
};

// One server on its own io thread (or a shared one), with its counter.
struct Server {
  std::unique_ptr<asio::io_context> own_io;
  std::thread thread;
  CounterMachine machine;
  std::shared_ptr<Node> node;
};

// Election timeouts with --processes, in ticks of 20 ms (see Cluster::start).
constexpr std::uint32_t processes_leader_election_ticks = 25;
constexpr std::uint32_t processes_follower_election_ticks = 100;

class Cluster {
 public:
  Cluster(const ClusterOptions& o, std::string dir) : o_(o), dir_(std::move(dir)) {}
  ~Cluster() { stop(); }

  // Starts the servers this process hosts (all, or only server 1 with --processes).
  Result<void> start() {
    for (std::uint64_t i = 1; i <= o_.nodes; ++i) layout_.ports.push_back(free_port());
    layout_.apply_inline = o_.apply_inline;
    std::vector<NodeId> ids;
    for (std::uint64_t i = 1; i <= o_.nodes; ++i) ids.push_back(NodeId(i));
    auto conf = Configuration::make(ids);
    if (!conf) return conf.error();
    for (std::uint64_t i = 1; i <= o_.nodes; ++i) {
      if (auto b = bootstrap(dir_ + "/n" + std::to_string(i), cluster_id, NodeId(i), *conf); !b)
        return b.error();
    }
    const std::uint64_t local = o_.processes ? 1 : o_.nodes;
    shared_io_ = std::make_unique<asio::io_context>();
    for (std::uint64_t i = 1; i <= local; ++i) {
      Server& s = servers_.emplace_back();
      asio::io_context* io = shared_io_.get();
      if (!o_.one_thread) {
        s.own_io = std::make_unique<asio::io_context>(1);
        io = s.own_io.get();
      }
      NodeConfig c = layout_.config(i, dir_);
      // With servers in other processes, the load generator's server wins the first election:
      // its timeout (0.5 to 1 s) ends before theirs can (2 to 4 s, and they start later). It
      // is also the window in which the leader must hear from a quorum or step down, so it
      // stays well above the pauses a loaded machine gives a sanitized process.
      if (o_.processes) c.election_ticks = processes_leader_election_ticks;
      auto n = start_node(*io, c, s.machine);
      if (!n) return n.error();
      s.node = std::move(*n);
    }
    if (o_.processes) {
      for (std::uint64_t i = 2; i <= o_.nodes; ++i) {
        if (auto pid = spawn_server(i); pid > 0) {
          children_.push_back(pid);
        } else {
          return Error(Errc::storage_io, "cannot start a server process");
        }
      }
    }
    return {};
  }

  // The leader among the local servers, once one of them leads (bounded by `seconds`).
  Server* wait_for_leader(double seconds) {
    const auto start = Clock::now();
    while (seconds_since(start) < seconds) {
      for (Server& s : servers_) {
        auto st = s.node->status(asio::use_future).get();
        if (st && st->role == NodeRole::leader) return &s;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return nullptr;
  }

  // The leader once it has committed in its term (it answers a read barrier). A leadership that
  // moves meanwhile, as it may on a loaded machine, is looked for again.
  Server* settled_leader(double seconds) {
    const auto start = Clock::now();
    while (seconds_since(start) < seconds) {
      Server* leader = wait_for_leader(seconds - seconds_since(start));
      if (!leader) return nullptr;
      // A barrier through a server that has since stepped down is answered by the new leader:
      // the server must still lead after it.
      auto barrier = leader->node->read_barrier(asio::use_future).get();
      auto st = leader->node->status(asio::use_future).get();
      if (barrier && st && st->role == NodeRole::leader) return leader;
      if (barrier) continue;
      std::fprintf(stderr, "coraft-bench cluster: the first read barrier failed (%s); again\n",
                   barrier.error().message().c_str());
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return nullptr;
  }

  // A server other than `leader`, when this process hosts one.
  Server* follower(const Server* leader) {
    for (Server& s : servers_) {
      if (&s != leader) return &s;
    }
    return nullptr;
  }

  void stop() {
    for (Server& s : servers_) {
      if (s.node) (void)s.node->stop(asio::use_future).get();
      s.node.reset();
    }
    for (pid_t pid : children_) ::kill(pid, SIGTERM);
    for (pid_t pid : children_) {
      int status = 0;
      ::waitpid(pid, &status, 0);
    }
    children_.clear();
    work_.clear();
    for (Server& s : servers_) {
      if (s.thread.joinable()) s.thread.join();
    }
    if (shared_thread_.joinable()) shared_thread_.join();
    servers_.clear();
  }

  // CPU seconds of this process and of the server processes it started.
  [[nodiscard]] double cpu_seconds() const {
    double total = self_cpu_seconds();
    for (pid_t pid : children_) total += process_cpu_seconds(pid);
    return total;
  }

  [[nodiscard]] const std::vector<pid_t>& children() const { return children_; }

 private:
  Result<std::shared_ptr<Node>> start_node(asio::io_context& io, const NodeConfig& c,
                                           StateMachine& sm) {
    work_.emplace_back(io.get_executor());
    if (&io == shared_io_.get()) {
      if (!shared_thread_.joinable()) shared_thread_ = std::thread([&io] { io.run(); });
    } else {
      servers_[c.id.value() - 1].thread = std::thread([&io] { io.run(); });
    }
    return Node::start(io.get_executor(), c, sm, asio::use_future).get();
  }

  // Runs server `i` in a child process: `coraft-bench cluster-server` with its configuration.
  pid_t spawn_server(std::uint64_t i) {
    NodeConfig c = layout_.config(i, dir_);
    c.election_ticks = processes_follower_election_ticks;
    std::vector<std::string> args = {self_path(),
                                     "cluster-server",
                                     "--id",
                                     std::to_string(i),
                                     "--dir",
                                     c.data_dir,
                                     "--port",
                                     std::to_string(c.listen_port),
                                     "--election-ticks",
                                     std::to_string(c.election_ticks)};
    if (c.apply_inline) args.emplace_back("--apply-inline");
    for (const ServerAddress& p : c.peers) {
      args.push_back("--peer");
      args.push_back(std::to_string(p.id.value()) + "=" + std::to_string(p.port));
    }
    return spawn_process(args);
  }

  const ClusterOptions& o_;
  std::string dir_;
  Layout layout_;
  std::unique_ptr<asio::io_context> shared_io_;
  std::thread shared_thread_;
  std::deque<Server> servers_;  // stable addresses: the nodes refer to their machines
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::vector<pid_t> children_;
};

// One closed loop of `inflight` proposals against `leader`, from its own executor.
struct Load {
  Load(Node& leader, const ClusterOptions& o) : node(leader), body(make_body(o.payload)) {}

  static Bytes make_body(std::uint64_t n) { return Bytes::copy_of(std::string(n, 'p')); }

  // Runs on the leader's executor only, as do the completions.
  void issue() {
    const auto t0 = Clock::now();
    ++live;
    node.propose(body, [this, t0](Result<Proposed> r) {
      const auto now = Clock::now();
      if (now >= window_start && now < window_end) {
        if (r) {
          samples.add(now - t0);
        } else {
          ++errors;
        }
      } else if (!r) {
        ++errors_outside;
      }
      if (!r && first_error.empty()) first_error = r.error().message();
      if (stopping.load(std::memory_order_relaxed)) {
        if (--live == 0) drained.set_value();
      } else if (r) {
        --live;
        issue();
      } else {
        // A refused proposal is retried after a pause, as a client would, not in a tight loop.
        auto pause = std::make_shared<asio::steady_timer>(node.executor(), error_pause);
        pause->async_wait([this, pause](std::error_code) {
          --live;
          if (!stopping.load(std::memory_order_relaxed)) {
            issue();
          } else if (live == 0) {
            drained.set_value();
          }
        });
      }
    });
  }

  static constexpr auto error_pause = std::chrono::milliseconds(1);

  Node& node;
  Bytes body;
  Clock::time_point window_start = Clock::time_point::max();
  Clock::time_point window_end = Clock::time_point::max();
  Latencies samples;
  std::uint64_t errors = 0;
  std::uint64_t errors_outside = 0;
  std::string first_error;
  std::uint64_t live = 0;
  std::atomic<bool> stopping{false};
  std::promise<void> drained;
};

Snapshot take(double at, const Server& leader, const Server* follower, const Cluster& cluster) {
  Snapshot s;
  s.at = at;
  s.leader_applied = leader.machine.count();
  if (auto m = leader.node->metrics(asio::use_future).get()) s.leader = std::move(*m);
  if (follower) {
    if (auto m = follower->node->metrics(asio::use_future).get()) s.follower = std::move(*m);
  }
  s.cpu = cluster.cpu_seconds();
  s.machine_cpu = machine_busy_seconds();
  return s;
}

struct DiskRates {
  double syncs_per_s = 0;
  double mean_batch = 0;
  double messages_per_s = 0;  // sent
};

DiskRates disk_rates(const NodeMetrics& a, const NodeMetrics& b, double seconds) {
  DiskRates r;
  const double writes = static_cast<double>(b.log_writes - a.log_writes);
  const double syncs = writes + static_cast<double>(b.hard_state_writes - a.hard_state_writes);
  r.syncs_per_s = syncs / seconds;
  r.messages_per_s = static_cast<double>(b.messages_sent - a.messages_sent) / seconds;
  if (writes > 0) r.mean_batch = static_cast<double>(b.log_entries - a.log_entries) / writes;
  return r;
}

}  // namespace

int run_cluster(const ClusterOptions& o) {
  // Servers start one by one, so the first dials are refused: only errors are worth a line.
  set_log_level(LogLevel::error);
  const std::string dir = o.dir + "/coraft-bench-cluster-" + std::to_string(::getpid());
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    std::fprintf(stderr, "coraft-bench cluster: cannot create %s: %s\n", dir.c_str(),
                 ec.message().c_str());
    return 1;
  }
  int status = 0;
  std::optional<Snapshot> first, last;
  std::unique_ptr<Load> load;
  {
    Cluster cluster(o, dir);
    Server* leader = nullptr;
    if (auto started = cluster.start(); !started) {
      std::fprintf(stderr, "coraft-bench cluster: %s\n", started.error().message().c_str());
      status = 1;
    } else if (leader = cluster.settled_leader(15); !leader) {
      std::fprintf(stderr, "coraft-bench cluster: no leader answered a read barrier within 15 s\n");
      status = 1;
    }
    if (status == 0) {
      Server* follower = cluster.follower(leader);
      load = std::make_unique<Load>(*leader->node, o);
      const auto start = Clock::now();
      auto at = [&](double s) {
        return start +
               std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
      };
      load->window_start = at(o.warmup);
      load->window_end = at(o.warmup + o.seconds);
      asio::post(leader->node->executor(), [&] {
        for (std::uint64_t i = 0; i < o.inflight; ++i) load->issue();
      });
      std::this_thread::sleep_until(load->window_start);
      first = take(seconds_since(start), *leader, follower, cluster);
      std::this_thread::sleep_until(load->window_end);
      last = take(seconds_since(start), *leader, follower, cluster);
      load->stopping = true;
      auto drained = load->drained.get_future();
      if (drained.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
        std::fprintf(stderr,
                     "coraft-bench cluster: proposals still outstanding 10 s after the "
                     "window\n");
        status = 1;
      }
    }
    cluster.stop();
  }
  // The floor runs after the servers stopped, on the disk their logs were on.
  std::optional<DiskFloor> floor;
  if (status == 0 && o.disk_floor_seconds > 0) {
    std::string why;
    floor = measure_disk_floor(dir, o.nodes, o.disk_floor_seconds, why);
    if (!floor) {
      std::fprintf(stderr, "coraft-bench cluster: the disk floor failed: %s\n", why.c_str());
      status = 1;
    }
  }
  std::filesystem::remove_all(dir, ec);
  if (status != 0) return status;

  const double window = last->at - first->at;
  const double ops = static_cast<double>(last->leader_applied - first->leader_applied) / window;
  Latencies& lat = load->samples;
  const double p50 = lat.percentile_us(50), p99 = lat.percentile_us(99),
               p999 = lat.percentile_us(99.9);
  const double cpu = last->cpu - first->cpu;
  const double machine_cpu = last->machine_cpu - first->machine_cpu;
  const DiskRates ld = disk_rates(first->leader, last->leader, window);
  const DiskRates fd = disk_rates(first->follower, last->follower, window);
  const std::uint64_t errors = load->errors;

  std::printf(
      "cluster: %llu servers%s, fsync on, %llu-byte entries, %llu in flight, %.0f s "
      "warm-up, %.1f s window\n",
      static_cast<unsigned long long>(o.nodes),
      o.processes    ? " (one process each)"
      : o.one_thread ? " in one process on one io thread"
                     : " in one process, an io thread each",
      static_cast<unsigned long long>(o.payload), static_cast<unsigned long long>(o.inflight),
      o.warmup, window);
  std::printf(
      "  %.0f entries/s applied on the leader; latency p50 %.0f us, p99 %.0f us, "
      "p99.9 %.0f us (%zu samples); %llu errors\n",
      ops, p50, p99, p999, lat.count(), static_cast<unsigned long long>(errors));
  std::printf("  CPU %.2f s in the window (%.1f us per entry); machine busy %.2f cores\n", cpu,
              ops > 0 ? cpu * 1e6 / (ops * window) : 0.0, machine_cpu / window);
  std::printf("  leader: %.0f durable writes/s, %.1f entries each, %.0f messages/s sent",
              ld.syncs_per_s, ld.mean_batch, ld.messages_per_s);
  if (o.processes) {
    std::printf("; the followers run in other processes\n");
  } else {
    std::printf("; follower: %.0f/s, %.1f each, %.0f messages/s\n", fd.syncs_per_s, fd.mean_batch,
                fd.messages_per_s);
  }
  if (floor) {
    std::printf(
        "  disk floor (after the run, same disk): a 4 KiB durable write alone p50 %.0f us; one "
        "per server at once, until a majority is durable p50 %.0f us, p99 %.0f us\n",
        floor->alone_p50_us, floor->majority_p50_us, floor->majority_p99_us);
  }
  if (!load->first_error.empty()) {
    std::printf("  first error: %s (%llu errors before or after the window)\n",
                load->first_error.c_str(), static_cast<unsigned long long>(load->errors_outside));
  }
  if (o.json) {
    JsonLine json;
    json.str("bench", "cluster")
        .num("nodes", static_cast<double>(o.nodes))
        .num("payload", static_cast<double>(o.payload))
        .num("inflight", static_cast<double>(o.inflight))
        .num("ops_per_s", ops)
        .num("p50_us", p50)
        .num("p99_us", p99)
        .num("p999_us", p999)
        .num("cpu_window_s", cpu)
        .num("machine_cpu_window_s", machine_cpu)
        .num("window_s", window)
        .num("samples", static_cast<double>(lat.count()))
        .num("errors", static_cast<double>(errors))
        .num("leader_syncs_per_s", ld.syncs_per_s)
        .num("leader_mean_batch", ld.mean_batch)
        .num("follower_syncs_per_s", fd.syncs_per_s)
        .num("follower_mean_batch", fd.mean_batch)
        .num("leader_messages_per_s", ld.messages_per_s)
        .num("follower_messages_per_s", fd.messages_per_s);
    if (floor) {
      json.num("floor_alone_p50_us", floor->alone_p50_us)
          .num("floor_majority_p50_us", floor->majority_p50_us)
          .num("floor_majority_p99_us", floor->majority_p99_us);
    }
    json.print();
  }
  std::printf(
      "RESULT peer=coraft nodes=%llu size=%llu conc=%llu ops_s=%.0f p50_us=%.0f "
      "p99_us=%.0f p999_us=%.0f cpu_window_s=%.3f machine_cpu_window_s=%.3f "
      "window_s=%.3f samples=%zu errors=%llu\n",
      static_cast<unsigned long long>(o.nodes), static_cast<unsigned long long>(o.payload),
      static_cast<unsigned long long>(o.inflight), ops, p50, p99, p999, cpu, machine_cpu, window,
      lat.count(), static_cast<unsigned long long>(errors));
  return 0;
}

int run_cluster_server(const ClusterServerOptions& o) {
  set_log_level(LogLevel::warn);
  NodeConfig c = server_config(o.id, o.dir, o.port, o.apply_inline);
  c.election_ticks = o.election_ticks;
  for (const auto& [id, port] : o.peers)
    c.peers.push_back(ServerAddress{NodeId(id), "127.0.0.1", port});
  // SIGTERM ends the run: block it here and wait for it below.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  asio::io_context io(1);
  auto work = asio::make_work_guard(io);
  std::thread thread([&] { io.run(); });
  CounterMachine machine;
  auto n = Node::start(io.get_executor(), c, machine, asio::use_future).get();
  int status = 0;
  if (!n) {
    std::fprintf(stderr, "coraft-bench cluster-server %llu: %s\n",
                 static_cast<unsigned long long>(o.id), n.error().message().c_str());
    status = 1;
  } else {
    int sig = 0;
    ::sigwait(&set, &sig);
    (void)(*n)->stop(asio::use_future).get();
  }
  work.reset();
  thread.join();
  return status;
}

}  // namespace coraft::bench
