// The replicated counter as real processes under faults: 3 (and 5) `coraft-counter serve`
// processes with real disks and sockets, their peer traffic through a proxy in this test that
// can cut any link one way, several clients issuing increments and reads, and nemeses one after
// another: SIGKILL and restart, SIGSTOP and SIGCONT, partitions, one-way cuts, a server removed
// and added back, leadership transfers. At the end the client history must be linearizable, every
// acknowledged increment must be in the final value, every server must agree on every committed
// entry (the same term, type, size and payload checksum at every index, read back with
// coraft-inspect from the stopped data directories), and the servers'
// RSS must have stayed under a bound.
//
// What it catches: with the client changed to send each retry of an increment as a new command
// (so that a command that took effect on a leader which then lost its followers is applied again
// on the next), 4 of 4 runs of the 3-server case failed, three with a non-linearizable history.
// The nemesis that cuts only the links into the leader, and clients that keep retrying through
// an election, are what make that window common: without them 1 run in 4 failed.
//
// CORAFT_FAULT_SECONDS sets each case's length (default 30); CORAFT_FAULT_SEED its seed (default:
// from the clock, printed so that a failing run can be repeated).
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/redirect_error.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <nlohmann/json.hpp>

#include <asio/read.hpp>
#include <asio/steady_timer.hpp>
#include <variant>

#include "client.hpp"
#include "integration/linearizability.hpp"
#include "integration/process_util.hpp"
#include "net/codec.hpp"

namespace {

using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

using coraft::test::free_port;

// A TCP proxy in front of each server: every peer reaches server `to` through proxy `to` (the
// address it advertises). Peer connections carry messages one way, from the dialler, and open
// with a handshake naming the sender, so the proxy reads that first frame to learn whose
// messages a connection carries; cutting (from, to) closes those connections and refuses new
// ones, which cuts exactly the messages from `from` to `to`.
class Proxy {
 public:
  Proxy(int n, const std::vector<std::uint16_t>& targets) : n_(n) {
    for (int to = 1; to <= n; ++to) {
      auto link = std::make_unique<Link>(io_, to, targets[to - 1]);
      asio::co_spawn(io_, accept(*link), asio::detached);
      links_.push_back(std::move(link));
    }
    thread_ = std::thread([this] { io_.run(); });
  }
  ~Proxy() {
    asio::post(io_, [this] {
      for (auto& link : links_) {
        std::error_code ec;
        link->acceptor.close(ec);
        for (auto& c : link->connections) c.close();
      }
      io_.stop();
    });
    thread_.join();
  }

  [[nodiscard]] std::uint16_t port(int to) const {
    return links_[to - 1]->acceptor.local_endpoint().port();
  }

  // Cuts (or restores) the messages from `from` to `to`.
  void set_cut(int from, int to, bool cut) {
    asio::post(io_, [this, from, to, cut] {
      cut_[{from, to}] = cut;
      if (!cut) return;
      for (auto& c : links_[to - 1]->connections) {
        if (c.sender == from) c.close();
      }
    });
  }
  void heal() {
    asio::post(io_, [this] { cut_.clear(); });
  }
  // Cuts every link between the two sides, both ways.
  void partition(const std::set<int>& side) {
    for (int a = 1; a <= n_; ++a) {
      for (int b = 1; b <= n_; ++b) {
        if (a != b && side.count(a) != side.count(b)) set_cut(a, b, true);
      }
    }
  }

 private:
  struct Connection {
    int sender = 0;
    std::shared_ptr<tcp::socket> in, out;
    void close() {
      std::error_code ec;
      in->close(ec);
      out->close(ec);
    }
  };
  struct Link {
    Link(asio::io_context& io, int id, std::uint16_t port)
        : to(id),
          target(port),
          acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {}
    int to;
    std::uint16_t target;
    tcp::acceptor acceptor;
    std::list<Connection> connections;
  };

  [[nodiscard]] bool cut(int from, int to) const {
    auto it = cut_.find({from, to});
    return it != cut_.end() && it->second;
  }

  awaitable<void> accept(Link& l) {
    for (;;) {
      std::error_code ec;
      tcp::socket accepted =
          co_await l.acceptor.async_accept(asio::redirect_error(use_awaitable, ec));
      auto in = std::make_shared<tcp::socket>(std::move(accepted));
      if (ec) {
        if (!l.acceptor.is_open()) co_return;
        continue;
      }
      asio::co_spawn(io_, relay(l, in), asio::detached);
    }
  }

  // Reads the handshake, then relays the connection both ways while its link stays up.
  awaitable<void> relay(Link& l, std::shared_ptr<tcp::socket> in) {
    auto out = std::make_shared<tcp::socket>(io_);
    // A stopped server's backlog can leave a connect hanging: give up on it after a while.
    asio::steady_timer limit(io_, 2s);
    limit.async_wait([in, out](std::error_code ec) {
      if (ec) return;
      std::error_code ignored;
      in->close(ignored);
      out->close(ignored);
    });
    counter::FrameAssembler first(1 << 20);
    std::error_code ec;
    while (!first.complete()) {
      auto want = first.want();
      co_await asio::async_read(*in, asio::buffer(want.data(), want.size()),
                                asio::redirect_error(use_awaitable, ec));
      if (ec || !first.filled()) co_return;
    }
    const auto frame = first.frame();
    auto body = coraft::net::decode(coraft::Bytes::copy_of(frame), coraft::net::CodecLimits{});
    if (!body || !std::holds_alternative<coraft::net::Handshake>(*body)) co_return;
    const int sender = static_cast<int>(std::get<coraft::net::Handshake>(*body).sender.value());
    if (cut(sender, l.to)) {
      trace(sender, l.to, "cut");
      co_return;
    }
    const tcp::endpoint target(asio::ip::make_address("127.0.0.1"), l.target);
    co_await out->async_connect(target, asio::redirect_error(use_awaitable, ec));
    limit.cancel();
    if (ec || cut(sender, l.to)) {
      trace(sender, l.to, ec ? "connect failed: " + ec.message() : std::string("cut"));
      co_return;
    }
    trace(sender, l.to, "relaying");
    // Listed before anything is written, so that a cut from now on closes it.
    l.connections.push_back({sender, in, out});
    auto it = std::prev(l.connections.end());
    const std::vector<std::byte> head(frame.begin(), frame.end());
    co_await asio::async_write(*out, asio::buffer(head), asio::redirect_error(use_awaitable, ec));
    if (ec) {
      it->close();
      l.connections.erase(it);
      co_return;
    }
    auto forward = pump(in, out);
    asio::co_spawn(io_, pump(out, in), asio::detached);
    co_await std::move(forward);
    trace(sender, l.to, "closed");
    it->close();
    l.connections.erase(it);
  }

  static void trace(int from, int to, const std::string& what) {
    static const bool on = std::getenv("CORAFT_PROXY_TRACE") != nullptr;
    if (on) std::fprintf(stderr, "proxy %d -> %d: %s\n", from, to, what.c_str());
  }

  static awaitable<void> pump(std::shared_ptr<tcp::socket> from, std::shared_ptr<tcp::socket> to) {
    std::vector<char> buf(64 * 1024);
    for (;;) {
      std::error_code ec;
      const std::size_t n = co_await from->async_read_some(asio::buffer(buf),
                                                           asio::redirect_error(use_awaitable, ec));
      if (ec) break;
      co_await asio::async_write(*to, asio::buffer(buf.data(), n),
                                 asio::redirect_error(use_awaitable, ec));
      if (ec) break;
    }
    std::error_code ec;
    from->close(ec);
    to->close(ec);
  }

  int n_;
  asio::io_context io_;
  std::vector<std::unique_ptr<Link>> links_;
  std::map<std::pair<int, int>, bool> cut_;
  std::thread thread_;
};

std::uint64_t rss_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

#if defined(__SANITIZE_ADDRESS__)
constexpr std::uint64_t rss_bytes_max = 1536ull << 20;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr std::uint64_t rss_bytes_max = 1536ull << 20;
#else
constexpr std::uint64_t rss_bytes_max = 512ull << 20;
#endif
#else
constexpr std::uint64_t rss_bytes_max = 512ull << 20;
#endif

class Cluster {
 public:
  Cluster(int n, std::string dir) : n_(n), dir_(std::move(dir)) {
    for (int i = 0; i < n; ++i) {
      peer_ports_.push_back(free_port());
      client_ports_.push_back(free_port());
    }
    proxy_ = std::make_unique<Proxy>(n, peer_ports_);
    pids_.assign(n, -1);
    paused_.assign(n, false);
    starts_of_.assign(n, 0);
  }
  ~Cluster() {
    for (int i = 1; i <= n_; ++i) kill(i, SIGKILL);
  }

  [[nodiscard]] int size() const { return n_; }
  [[nodiscard]] Proxy& proxy() { return *proxy_; }
  [[nodiscard]] std::string client_address(int i) const {
    return "127.0.0.1:" + std::to_string(client_ports_[i - 1]);
  }
  [[nodiscard]] std::vector<std::string> client_addresses() const {
    std::vector<std::string> out;
    for (int i = 1; i <= n_; ++i) out.push_back(client_address(i));
    return out;
  }
  [[nodiscard]] std::string data_dir(int i) const { return dir_ + "/n" + std::to_string(i); }
  // Where the other servers reach server `i`: its proxy.
  [[nodiscard]] std::string peer_address(int i) const {
    return "127.0.0.1:" + std::to_string(proxy_->port(i));
  }
  [[nodiscard]] bool running(int i) const { return pids_[i - 1] > 0; }
  [[nodiscard]] bool paused(int i) const { return paused_[i - 1]; }

  void start(int i) {
    std::vector<std::string> args = {CORAFT_COUNTER_BIN,
                                     "serve",
                                     "--id",
                                     std::to_string(i),
                                     "--data",
                                     data_dir(i),
                                     "--peer-listen",
                                     "127.0.0.1:" + std::to_string(peer_ports_[i - 1]),
                                     "--peer-advertise",
                                     peer_address(i),
                                     "--client-listen",
                                     client_address(i),
                                     "--tick-ms",
                                     "20",
                                     "--election-ticks",
                                     "15",
                                     "--snapshot-entries",
                                     "400",
                                     "--log-level",
                                     "warn"};
    // Only the first start initialises the data directory: a restart never bootstraps.
    if (starts_of_[i - 1]++ == 0) args.push_back("--bootstrap");
    for (int j = 1; j <= n_; ++j) {
      if (j == i) continue;
      args.push_back("--peer");
      args.push_back(std::to_string(j) + "=" + peer_address(j));
      args.push_back("--peer-client");
      args.push_back(std::to_string(j) + "=" + client_address(j));
    }
    // The proxy's and the clients' sockets stay with this process (see spawn()).
    const pid_t pid = coraft::test::spawn(args, dir_ + "/n" + std::to_string(i) + ".log");
    REQUIRE(pid > 0);
    pids_[i - 1] = pid;
    paused_[i - 1] = false;
    ++starts_;
  }

  // Sends `sig`; SIGKILL and SIGTERM also reap the process. Returns its exit status, or -1.
  int kill(int i, int sig) {
    const pid_t pid = pids_[i - 1];
    if (pid <= 0) return -1;
    if (sig == SIGSTOP) paused_[i - 1] = true;
    if (sig == SIGCONT) paused_[i - 1] = false;
    ::kill(pid, sig);
    if (sig != SIGKILL && sig != SIGTERM) return -1;
    if (paused_[i - 1]) ::kill(pid, SIGCONT);
    const int status = coraft::test::wait_for_exit(pid, 15s);
    pids_[i - 1] = -1;
    paused_[i - 1] = false;
    return status;
  }

  // If server `i`'s process ended by itself: how ("exit 1", "signal 6"), reaping it; else "".
  std::string ended(int i) {
    const pid_t pid = pids_[i - 1];
    if (pid <= 0) return {};
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) != pid) return {};
    pids_[i - 1] = -1;
    paused_[i - 1] = false;
    return WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                             : "signal " + std::to_string(WTERMSIG(status));
  }

  // The last `lines` lines of server `i`'s log (its stderr), each indented.
  [[nodiscard]] std::string log_tail(int i, std::size_t lines) const {
    std::ifstream in(dir_ + "/n" + std::to_string(i) + ".log");
    std::deque<std::string> last;
    std::string line;
    while (std::getline(in, line)) {
      if (line.size() > 300) line = line.substr(0, 300) + "...";
      last.push_back(std::move(line));
      if (last.size() > lines) last.pop_front();
    }
    std::string out;
    for (const auto& l : last) out += "\n      " + l;
    return out;
  }

  void sample_rss() {
    for (pid_t pid : pids_) {
      if (pid > 0) rss_max_ = std::max(rss_max_, rss_bytes(pid));
    }
  }
  [[nodiscard]] std::uint64_t rss_max() const { return rss_max_; }

  // Server `i`'s own view (status JSON), or null when it does not answer in time.
  nlohmann::json status(int i) const {
    if (!running(i) || paused(i)) return nullptr;
    counter::ClientOptions o;
    o.cluster = {client_address(i)};
    o.timeout = 500ms;
    o.attempt_timeout = 500ms;
    counter::Client c(o);
    counter::Request r;
    r.op = counter::Op::status;
    auto a = c.call(r, true);
    if (a.outcome != counter::Outcome::ok) return nullptr;
    return nlohmann::json::parse(a.reply.text, nullptr, false);
  }
  // The server every answering server names as leader and that says it leads; 0 if none.
  int leader() const {
    for (int i = 1; i <= n_; ++i) {
      auto s = status(i);
      if (s.is_object() && s.value("role", "") == "leader") return i;
    }
    return 0;
  }

 private:
  int n_;
  std::string dir_;
  std::vector<std::uint16_t> peer_ports_, client_ports_;
  std::unique_ptr<Proxy> proxy_;
  std::vector<pid_t> pids_;
  std::vector<bool> paused_;
  std::vector<int> starts_of_;
  std::uint64_t rss_max_ = 0;
  int starts_ = 0;
};

struct History {
  std::mutex mu;
  std::vector<coraft::test::CounterOp> ops;
  void add(const coraft::test::CounterOp& op) {
    std::lock_guard lock(mu);
    ops.push_back(op);
  }
};

std::uint64_t micros_since(Clock::time_point start) {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count());
}

// One client: increments and reads until `stop`, recording each operation.
void client_loop(int id, const std::vector<std::string>& cluster, std::uint64_t seed,
                 Clock::time_point start, const std::atomic<bool>& stop, History& history) {
  std::mt19937_64 rng(seed);
  counter::ClientOptions o;
  o.cluster = cluster;
  // Client 0 gives up soonest, so that some operations outlast a fault and end with an unknown
  // outcome; the others keep retrying through an election, so that a command that took effect
  // on a leader that then lost its followers is retried, and answered, on the next one.
  o.timeout = id == 0 ? 250ms : id == 1 ? 1200ms : 4s;
  o.attempt_timeout = 400ms;
  o.retry_pause = 20ms;
  counter::Client client(o);
  while (!stop.load()) {
    coraft::test::CounterOp op;
    op.client = id;
    const bool incr = rng() % 10 < 6;
    op.kind = incr ? coraft::test::CounterOpKind::incr : coraft::test::CounterOpKind::get;
    op.amount = incr ? static_cast<std::int64_t>(1 + rng() % 3) : 0;
    op.invoke = micros_since(start);
    const counter::Answer a = incr ? client.incr(op.amount) : client.get(false);
    op.complete = micros_since(start);
    switch (a.outcome) {
      case counter::Outcome::ok:
        op.outcome = coraft::test::OpOutcome::ok;
        op.value = a.reply.value;
        break;
      case counter::Outcome::failed: op.outcome = coraft::test::OpOutcome::failed; break;
      case counter::Outcome::unknown: op.outcome = coraft::test::OpOutcome::unknown; break;
    }
    // A failed read constrains nothing either way.
    if (!incr && op.outcome == coraft::test::OpOutcome::failed)
      op.outcome = coraft::test::OpOutcome::unknown;
    history.add(op);
    // A short think time keeps the history within what the checker searches quickly.
    std::this_thread::sleep_for(std::chrono::milliseconds(1 + rng() % 8));
  }
}

double env_seconds() {
  const char* s = std::getenv("CORAFT_FAULT_SECONDS");
  return s ? std::max(5.0, std::atof(s)) : 30.0;
}

std::uint64_t env_seed() {
  const char* s = std::getenv("CORAFT_FAULT_SEED");
  if (s) return std::strtoull(s, nullptr, 10);
  return static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
}

// Asks the leader to change the configuration; true once the answer is ok.
bool change_members(Cluster& c, counter::Op op, int target, const std::string& address) {
  counter::ClientOptions o;
  o.cluster = c.client_addresses();
  o.timeout = 4s;
  o.attempt_timeout = 1s;
  counter::Client client(o);
  counter::Request r;
  r.op = op;
  r.target = static_cast<std::uint64_t>(target);
  r.address = address;
  return client.call(r, false).outcome == counter::Outcome::ok;
}

std::set<int> voters_seen(Cluster& c) {
  for (int i = 1; i <= c.size(); ++i) {
    auto s = c.status(i);
    if (!s.is_object() || s.value("role", "") != "leader") continue;
    std::set<int> out;
    for (const auto& v : s["configuration"]["voters"]) out.insert(v.get<int>());
    return out;
  }
  return {};
}

// Every server's own view, for failure messages: each whole, then one short line per server
// and the end of its log last, so that a log cut in the middle still shows who lags and why.
std::string views(Cluster& c) {
  std::string out, brief = "\n  in brief:";
  for (int i = 1; i <= c.size(); ++i) {
    auto s = c.status(i);
    out += "\n  server " + std::to_string(i) + ": " + (s.is_null() ? "no answer" : s.dump());
    brief += "\n    " + std::to_string(i) + ": ";
    if (!s.is_object()) {
      const std::string how = c.ended(i);
      brief += !how.empty()   ? "ended by itself (" + how + ")"
               : c.running(i) ? "running, no answer"
                              : "not running";
      brief += "; the end of its log:" + c.log_tail(i, 12);
      continue;
    }
    const auto field = [&](const char* k) { return s.contains(k) ? s[k].dump() : "-"; };
    brief += field("role") + " term " + field("term") + " leader " + field("leader") + " commit " +
             field("commit") + " applied " + field("applied") + " snapshot " +
             field("snapshot_index") + " last " + field("last_log_index") + " value " +
             field("value") + (c.paused(i) ? " (paused)" : "");
    if (s.value("role", "") == "leader" && s.contains("peers")) {
      for (const auto& p : s["peers"]) {
        brief += " | " + p.value("id", nlohmann::json()).dump() + " match " +
                 p.value("match", nlohmann::json()).dump() + " " +
                 p.value("replication", std::string());
      }
    }
    brief += "; the end of its log:" + c.log_tail(i, 8);
  }
  return out + brief;
}

struct NemesisLog {
  std::string name;
  std::size_t ops_before = 0;
};

void run_case(int nodes) {
  const double seconds = env_seconds();
  const std::uint64_t seed = env_seed() + static_cast<std::uint64_t>(nodes);
  MESSAGE("nodes=" << nodes << " seconds=" << seconds << " seed=" << seed
                   << " (repeat with CORAFT_FAULT_SEED=" << seed - nodes << ")");
  const std::string dir = std::filesystem::temp_directory_path().string() +
                          "/coraft-counter-fault-" + std::to_string(::getpid()) + "-" +
                          std::to_string(nodes);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::mt19937_64 rng(seed);

  Cluster cluster(nodes, dir);
  for (int i = 1; i <= nodes; ++i) {
    cluster.start(i);
    MESSAGE("server " << i << ": peers reach it at " << cluster.peer_address(i) << ", clients at "
                      << cluster.client_address(i) << ", data " << cluster.data_dir(i));
  }
  const auto ready_by = Clock::now() + 30s;
  while (cluster.leader() == 0 && Clock::now() < ready_by) std::this_thread::sleep_for(50ms);
  REQUIRE_MESSAGE(cluster.leader() != 0, "no leader within 30 s");

  const auto start = Clock::now();
  History history;
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  // A failed REQUIRE leaves through here too: the clients stop before the cluster goes.
  struct JoinClients {
    std::atomic<bool>& stop;
    std::vector<std::thread>& threads;
    ~JoinClients() {
      stop = true;
      for (auto& t : threads) {
        if (t.joinable()) t.join();
      }
    }
  } join_clients{stop, clients};
  const int client_count = nodes + 1;
  for (int k = 0; k < client_count; ++k) {
    clients.emplace_back(client_loop, k, cluster.client_addresses(), seed * 31 + k, start,
                         std::cref(stop), std::ref(history));
  }

  // Nemeses, one at a time, chosen by the seed.
  const std::vector<std::string> kinds = {
      "kill-leader", "kill-follower", "pause-leader",  "pause-follower", "cut-leader", "minority",
      "one-way",     "one-way-in",    "remove-re-add", "transfer",       "mixed"};
  std::vector<NemesisLog> done;
  const auto end = start + std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
  std::size_t k = 0;
  while (Clock::now() + 4s < end) {
    // Every kind once in a seeded order, then random ones.
    const std::string kind =
        k < kinds.size() ? kinds[(k + seed) % kinds.size()] : kinds[rng() % kinds.size()];
    ++k;
    {
      std::lock_guard lock(history.mu);
      done.push_back({kind, history.ops.size()});
    }
    cluster.sample_rss();
    const int leader = cluster.leader();
    const auto hold = std::chrono::milliseconds(800 + rng() % 1500);
    auto pick_other = [&](int not_this) {
      int f = 1 + static_cast<int>(rng() % nodes);
      if (f == not_this) f = f % nodes + 1;
      return f;
    };
    if (kind == "kill-leader" || kind == "kill-follower") {
      const int victim = kind == "kill-leader" && leader != 0 ? leader : pick_other(leader);
      cluster.kill(victim, SIGKILL);
      std::this_thread::sleep_for(hold);
      cluster.start(victim);
    } else if (kind == "pause-leader" || kind == "pause-follower") {
      const int victim = kind == "pause-leader" && leader != 0 ? leader : pick_other(leader);
      cluster.kill(victim, SIGSTOP);
      std::this_thread::sleep_for(hold);
      cluster.kill(victim, SIGCONT);
    } else if (kind == "mixed") {
      // At once: a follower killed, the leader's messages to another follower cut one way, and
      // a transfer asked for; then the follower restarts while the cut holds.
      const int killed = pick_other(leader);
      int cut_to = pick_other(leader);
      if (cut_to == killed) cut_to = pick_other(killed);
      cluster.kill(killed, SIGKILL);
      if (leader != 0 && cut_to != leader) cluster.proxy().set_cut(leader, cut_to, true);
      counter::ClientOptions o;
      o.cluster = cluster.client_addresses();
      o.timeout = 1s;
      counter::Client client(o);
      counter::Request r;
      r.op = counter::Op::transfer;
      (void)client.call(r, false);
      std::this_thread::sleep_for(hold / 2);
      cluster.start(killed);
      std::this_thread::sleep_for(hold / 2);
      cluster.proxy().heal();
    } else if (kind == "cut-leader") {
      const int victim = leader != 0 ? leader : pick_other(0);
      cluster.proxy().partition({victim});
      std::this_thread::sleep_for(hold);
      cluster.proxy().heal();
    } else if (kind == "minority") {
      std::set<int> side;
      const int size = nodes == 3 ? 1 : 2;
      while (static_cast<int>(side.size()) < size) side.insert(1 + static_cast<int>(rng() % nodes));
      cluster.proxy().partition(side);
      std::this_thread::sleep_for(hold);
      cluster.proxy().heal();
    } else if (kind == "one-way" || kind == "one-way-in") {
      // one-way: the leader's messages are lost, it hears the others. one-way-in: the followers
      // hear the leader but it hears none of them: they take its entries, it never learns they
      // committed, and the entries in flight end with an unknown outcome at the client while
      // the next leader commits them.
      const bool in = kind == "one-way-in";
      const int victim = leader != 0 ? leader : pick_other(0);
      for (int j = 1; j <= nodes; ++j) {
        if (j != victim) cluster.proxy().set_cut(in ? j : victim, in ? victim : j, true);
      }
      std::this_thread::sleep_for(hold);
      cluster.proxy().heal();
    } else if (kind == "remove-re-add") {
      const int victim = pick_other(leader);
      (void)change_members(cluster, counter::Op::remove_server, victim, "");
      std::this_thread::sleep_for(hold);
      if (!voters_seen(cluster).count(victim)) {
        (void)change_members(cluster, counter::Op::add_voter, victim, cluster.peer_address(victim));
      }
    } else if (kind == "transfer") {
      counter::ClientOptions o;
      o.cluster = cluster.client_addresses();
      o.timeout = 3s;
      counter::Client client(o);
      counter::Request r;
      r.op = counter::Op::transfer;
      r.target = rng() % 2 ? static_cast<std::uint64_t>(pick_other(leader)) : 0;
      (void)client.call(r, false);
    }
    std::this_thread::sleep_for(700ms);
  }
  while (Clock::now() < end) std::this_thread::sleep_for(50ms);
  stop = true;
  for (auto& t : clients) t.join();
  clients.clear();

  // Heal: every link up, every server running and a voter again.
  cluster.proxy().heal();
  for (int i = 1; i <= nodes; ++i) {
    if (!cluster.running(i)) cluster.start(i);
    if (cluster.paused(i)) cluster.kill(i, SIGCONT);
  }
  const auto heal_by = Clock::now() + 60s;
  for (;;) {
    const auto voters = voters_seen(cluster);
    if (static_cast<int>(voters.size()) == nodes) break;
    REQUIRE_MESSAGE(Clock::now() < heal_by,
                    "the cluster did not take every server back:" << views(cluster));
    for (int i = 1; i <= nodes; ++i) {
      if (!voters.empty() && !voters.count(i)) {
        (void)change_members(cluster, counter::Op::add_voter, i, cluster.peer_address(i));
      }
    }
    std::this_thread::sleep_for(200ms);
  }

  // The final value, read linearizably, joins the history.
  counter::ClientOptions o;
  o.cluster = cluster.client_addresses();
  o.timeout = 20s;
  counter::Client reader(o);
  coraft::test::CounterOp last;
  last.kind = coraft::test::CounterOpKind::get;
  last.client = client_count;
  last.invoke = micros_since(start);
  const counter::Answer final_read = reader.get(false);
  last.complete = micros_since(start);
  REQUIRE_MESSAGE(final_read.outcome == counter::Outcome::ok, final_read.message);
  last.value = final_read.reply.value;
  history.add(last);

  // Every server catches up to the same applied index and value.
  std::map<int, std::uint64_t> commit;
  const auto caught_up_by = Clock::now() + 30s;
  for (;;) {
    std::set<std::pair<std::uint64_t, std::int64_t>> seen;
    bool all = true;
    for (int i = 1; i <= nodes; ++i) {
      auto s = cluster.status(i);
      if (!s.is_object()) {
        all = false;
        continue;
      }
      commit[i] = s["commit"].get<std::uint64_t>();
      seen.insert({s["applied"].get<std::uint64_t>(), s["value"].get<std::int64_t>()});
    }
    if (all && seen.size() == 1 && seen.begin()->second == final_read.reply.value) break;
    if (Clock::now() >= caught_up_by && std::getenv("CORAFT_FAULT_HOLD")) {
      std::fprintf(stderr, "holding for inspection: test pid %d\n", ::getpid());
      std::this_thread::sleep_for(120s);
    }
    REQUIRE_MESSAGE(Clock::now() < caught_up_by, "the servers did not converge on "
                                                     << final_read.reply.value << ":"
                                                     << views(cluster));
    std::this_thread::sleep_for(100ms);
  }
  cluster.sample_rss();

  // The history.
  std::size_t ok = 0, failed = 0, unknown = 0;
  std::int64_t acked = 0, maybe = 0;
  for (const auto& op : history.ops) {
    ok += op.outcome == coraft::test::OpOutcome::ok;
    failed += op.outcome == coraft::test::OpOutcome::failed;
    unknown += op.outcome == coraft::test::OpOutcome::unknown;
    if (op.kind == coraft::test::CounterOpKind::incr) {
      if (op.outcome == coraft::test::OpOutcome::ok) acked += op.amount;
      if (op.outcome == coraft::test::OpOutcome::unknown) maybe += op.amount;
    }
  }
  std::ostringstream per;
  for (std::size_t i = 0; i < done.size(); ++i) {
    const std::size_t next = i + 1 < done.size() ? done[i + 1].ops_before : history.ops.size();
    per << " " << done[i].name << "=" << next - done[i].ops_before;
  }
  const auto result = coraft::test::check_counter(history.ops);
  MESSAGE("history: " << history.ops.size() << " operations (" << ok << " ok, " << failed
                      << " failed, " << unknown << " unknown), final value " << last.value
                      << "; operations per nemesis:" << per.str() << "; verdict "
                      << std::string(coraft::test::to_string(result.verdict)) << " after "
                      << result.states_explored << " states; max RSS "
                      << cluster.rss_max() / (1 << 20) << " MiB");
  CHECK_MESSAGE(result.verdict == coraft::test::Verdict::linearizable, result.explanation);
  CHECK(last.value >= acked);
  CHECK(last.value <= acked + maybe);
  CHECK(ok > 50);
  CHECK(cluster.rss_max() < rss_bytes_max);

  // A graceful stop of every server, then their logs agree at every committed index.
  for (int i = 1; i <= nodes; ++i) CHECK_MESSAGE(cluster.kill(i, SIGTERM) == 0, "server " << i);
  std::map<std::uint64_t, std::pair<std::string, int>> agreed;
  std::size_t compared = 0;
  for (int i = 1; i <= nodes; ++i) {
    const auto verified = coraft::test::run_command(std::string(CORAFT_INSPECT_BIN) + " verify " +
                                                    cluster.data_dir(i));
    CHECK_MESSAGE(verified.status == 0,
                  "coraft-inspect verify " << cluster.data_dir(i) << ": " << verified.out);
    const auto listed =
        coraft::test::run_command(std::string(CORAFT_INSPECT_BIN) + " log " + cluster.data_dir(i));
    REQUIRE_MESSAGE(listed.status == 0,
                    "coraft-inspect log " << cluster.data_dir(i) << ": " << listed.out);
    const std::string& out = listed.out;
    // The last record at an index is the one the log holds (an earlier one was truncated).
    std::map<std::uint64_t, std::string> entries;
    std::istringstream lines(out);
    std::string line;
    while (std::getline(lines, line)) {
      unsigned long long index = 0, term = 0, at = 0;
      char type[16] = {};
      char crc[16] = {};
      unsigned bytes = 0;
      if (std::sscanf(line.c_str(), "  index %llu term %llu %15s %u bytes at %llu payload crc %15s",
                      &index, &term, type, &bytes, &at, crc) == 6) {
        entries[index] =
            std::to_string(term) + " " + type + " " + std::to_string(bytes) + " crc " + crc;
      }
    }
    for (const auto& entry : entries) {
      const std::uint64_t index = entry.first;
      const std::string& what = entry.second;
      if (index > commit[i]) continue;
      const auto placed = agreed.emplace(index, std::make_pair(what, i));
      if (!placed.second) {
        ++compared;
        const auto& first = placed.first->second;
        CHECK_MESSAGE(first.first == what, "index " << index << ": server " << first.second
                                                    << " holds " << first.first << ", server " << i
                                                    << " holds " << what);
      }
    }
  }
  MESSAGE("committed entries compared across servers: " << compared);
  CHECK(compared > 0);
  std::filesystem::remove_all(dir);
}

}  // namespace

TEST_CASE(
    "a 3-server counter under faults stays linearizable and loses no acknowledged increment") {
  run_case(3);
}

TEST_CASE(
    "a 5-server counter under faults stays linearizable and loses no acknowledged increment") {
  run_case(5);
}
