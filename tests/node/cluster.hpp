// An in-process cluster of real nodes for the node tests: real storage in a temporary
// directory, real TCP on 127.0.0.1, one io_context thread shared by every node.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/use_future.hpp>

#include <coraft/node.hpp>

#include "node/node_impl.hpp"

namespace coraft::test {

using namespace std::chrono_literals;

// Records every command it applies; the reply is "ok <index>".
class RecordingMachine final : public StateMachine {
 public:
  void apply(std::span<const Command> commands, std::vector<Bytes>& replies) override {
    std::lock_guard lock(mu_);
    apply_thread_ = std::this_thread::get_id();
    for (const Command& c : commands) {
      applied_.emplace_back(c.index, std::string(c.payload.chars()));
      replies.push_back(Bytes::copy_of("ok " + std::to_string(c.index.value())));
    }
    if (delay_.count() > 0) std::this_thread::sleep_for(delay_);
  }
  Result<void> save(SnapshotSink& sink) override {
    std::lock_guard lock(mu_);
    std::string all;
    for (const auto& [index, text] : applied_) {
      all += std::to_string(index.value()) + " " + text + "\n";
    }
    return sink.write(std::as_bytes(std::span(all.data(), all.size())));
  }
  Result<void> restore(SnapshotSource& source) override {
    std::string all(source.size(), '\0');
    auto n = source.read(std::as_writable_bytes(std::span(all.data(), all.size())));
    if (!n) return n.error();
    std::lock_guard lock(mu_);
    applied_.clear();
    std::size_t pos = 0;
    while (pos < all.size()) {
      const std::size_t nl = all.find('\n', pos);
      const std::string line = all.substr(pos, nl - pos);
      const std::size_t sp = line.find(' ');
      applied_.emplace_back(Index(std::stoull(line.substr(0, sp))), line.substr(sp + 1));
      pos = nl + 1;
    }
    return {};
  }
  std::vector<std::pair<Index, std::string>> applied() const {
    std::lock_guard lock(mu_);
    return applied_;
  }
  std::size_t count() const {
    std::lock_guard lock(mu_);
    return applied_.size();
  }
  void set_delay(std::chrono::milliseconds d) {
    std::lock_guard lock(mu_);
    delay_ = d;
  }
  // The thread of the latest apply().
  std::thread::id apply_thread() const {
    std::lock_guard lock(mu_);
    return apply_thread_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::pair<Index, std::string>> applied_;
  std::chrono::milliseconds delay_{0};
  std::thread::id apply_thread_;
};

// A port below the kernel's ephemeral range (so no outgoing connection takes it between the
// pick and the bind), that nothing listens on now. Spread by process id across parallel tests.
inline std::uint16_t free_port() {
  static std::uint32_t next = 20000 + static_cast<std::uint32_t>(::getpid()) % 400 * 30;
  for (int attempt = 0; attempt < 2000; ++attempt) {
    const auto port = static_cast<std::uint16_t>(next);
    next = next + 1 >= 32000 ? 20000 : next + 1;
    asio::io_context io;
    asio::ip::tcp::acceptor a(io);
    asio::error_code ec;
    a.open(asio::ip::tcp::v4(), ec);
    a.set_option(asio::ip::tcp::acceptor::reuse_address(true), ec);
    a.bind(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
    if (!ec) return port;
  }
  FAIL("no free port below the ephemeral range");
  return 0;
}

// Waits for `pred` up to `limit`, polling.
inline bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds limit = 10s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return pred();
}

class Cluster {
 public:
  static constexpr std::uint64_t cluster_id = 0xc0ffee;

  // `size` servers, of which the first `voters` start as the cluster's voters (the others are
  // addressed but not members until a membership change adds them).
  explicit Cluster(std::size_t size, std::size_t voters = 0, bool bootstrap_all = true)
      : work_(io_.get_executor()) {
    if (voters == 0) voters = size;
    dir_ = std::filesystem::temp_directory_path() /
           ("coraft-node-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
    std::filesystem::remove_all(dir_);
    std::vector<NodeId> initial;
    for (std::size_t i = 1; i <= voters; ++i) initial.push_back(NodeId(i));
    for (std::size_t i = 1; i <= size; ++i) {
      ports_.push_back(free_port());
      machines_.push_back(std::make_unique<RecordingMachine>());
    }
    nodes_.resize(size);
    hooks_.resize(size);
    auto conf = Configuration::make(initial);
    REQUIRE(conf.ok());
    if (bootstrap_all) {
      for (std::size_t i = 1; i <= voters; ++i) {
        auto r = bootstrap(data_dir(NodeId(i)), cluster_id, NodeId(i), *conf);
        REQUIRE_MESSAGE(r.ok(), r.error().message());
      }
    }
    thread_ = std::thread([this] { io_.run(); });
  }

  ~Cluster() {
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      if (nodes_[i]) stop(NodeId(i + 1));
    }
    work_.reset();
    thread_.join();
    std::filesystem::remove_all(dir_);
  }

  [[nodiscard]] std::string data_dir(NodeId id) const {
    std::string name = "n";
    name += std::to_string(id.value());
    return (dir_ / name).string();
  }

  NodeConfig config(NodeId id) const {
    NodeConfig c;
    c.id = id;
    c.cluster_id = cluster_id;
    c.data_dir = data_dir(id);
    c.listen_port = ports_[id.value() - 1];
    c.tick_interval = 20ms;  // elections within 0.2-0.4 s, with room for slow sanitizer builds
    c.election_ticks = 10;
    c.heartbeat_ticks = 2;
    c.disk_stall_timeout = 500ms;
    c.read_timeout = 3s;
    c.transfer_timeout = 3s;
    c.segment_bytes = 4u << 20;
    for (std::size_t i = 1; i <= ports_.size(); ++i) {
      if (i != id.value()) c.peers.push_back(ServerAddress{NodeId(i), "127.0.0.1", ports_[i - 1]});
    }
    if (tweak) tweak(c);
    return c;
  }

  Result<void> start(NodeId id) { return start(id, config(id)); }
  // A restarted node rebuilds its state machine from its snapshot and log, so it gets a new one.
  Result<void> start(NodeId id, NodeConfig c) {
    machines_[id.value() - 1] = std::make_unique<RecordingMachine>();
    std::promise<Result<std::shared_ptr<Node>>> p;
    auto f = p.get_future();
    detail::start_node(io_.get_executor(), std::move(c), *machines_[id.value() - 1],
                       hooks_[id.value() - 1],
                       detail::Completion<std::shared_ptr<Node>>(
                           [&p](Result<std::shared_ptr<Node>> r) { p.set_value(std::move(r)); }));
    auto r = f.get();
    if (!r) return r.error();
    nodes_[id.value() - 1] = std::move(*r);
    return {};
  }
  void start_all() {
    for (std::size_t i = 1; i <= nodes_.size(); ++i) {
      auto r = start(NodeId(i));
      REQUIRE_MESSAGE(r.ok(), r.error().message());
    }
  }
  void stop(NodeId id) {
    auto& n = nodes_[id.value() - 1];
    if (!n) return;
    auto f = n->stop(asio::use_future);
    // A stop that never completes is a bug: fail loudly instead of hanging the suite.
    if (f.wait_for(30s) != std::future_status::ready) {
      std::fprintf(stderr, "node %llu did not stop within 30 s\n",
                   static_cast<unsigned long long>(id.value()));
      std::this_thread::sleep_for(std::chrono::seconds(std::getenv("CORAFT_HANG_WAIT") ? 120 : 0));
      std::abort();
    }
    CHECK(f.get().ok());
    n.reset();
  }

  Node& node(NodeId id) { return *nodes_[id.value() - 1]; }
  bool running(NodeId id) const { return nodes_[id.value() - 1] != nullptr; }
  RecordingMachine& machine(NodeId id) { return *machines_[id.value() - 1]; }
  node::Hooks& hooks(NodeId id) { return hooks_[id.value() - 1]; }
  std::size_t size() const { return nodes_.size(); }
  asio::io_context& io() { return io_; }

  NodeStatus status(NodeId id) { return node(id).status(asio::use_future).get().value(); }

  // The leader every running node agrees on, once there is one.
  std::optional<NodeId> leader(std::chrono::milliseconds limit = 10s) {
    std::optional<NodeId> found;
    eventually(
        [&] {
          NodeId agreed;
          for (std::size_t i = 1; i <= nodes_.size(); ++i) {
            if (!nodes_[i - 1]) continue;
            const NodeStatus s = status(NodeId(i));
            if (s.role == NodeRole::leader) agreed = NodeId(i);
          }
          if (agreed == no_node) return false;
          for (std::size_t i = 1; i <= nodes_.size(); ++i) {
            if (!nodes_[i - 1]) continue;
            const NodeStatus s = status(NodeId(i));
            if (!s.configuration.contains(NodeId(i))) continue;
            if (s.leader != agreed) return false;
          }
          found = agreed;
          return true;
        },
        limit);
    return found;
  }

  Result<Proposed> propose(NodeId id, const std::string& text) {
    return node(id).propose(Bytes::copy_of(text), asio::use_future).get();
  }

  std::function<void(NodeConfig&)> tweak;
  // The thread that runs every node's executor.
  std::thread::id io_thread() const { return thread_.get_id(); }

 private:
  static int& counter() {
    static int c = 0;
    return c;
  }
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;
  std::filesystem::path dir_;
  std::vector<std::uint16_t> ports_;
  std::vector<std::unique_ptr<RecordingMachine>> machines_;
  std::vector<std::shared_ptr<Node>> nodes_;
  std::vector<node::Hooks> hooks_;
};

}  // namespace coraft::test
