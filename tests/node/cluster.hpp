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

// Records every command it applies; the reply is "ok <index>". In summary mode it keeps only
// the count and a digest of the commands in order, so its snapshots stay small however long a
// run is. Snapshots may carry `padding` bytes of a fixed pattern, checked on restore in blocks,
// to make them as large as a test needs without holding them in memory.
class RecordingMachine final : public StateMachine {
 public:
  void apply(std::span<const Command> commands, std::vector<Bytes>& replies) override {
    std::lock_guard lock(mu_);
    apply_thread_ = std::this_thread::get_id();
    for (const Command& c : commands) {
      ++count_;
      for (std::byte b : c.payload.span())
        digest_ = (digest_ ^ static_cast<std::uint8_t>(b)) * 1099511628211ull;
      if (!summary_) applied_.emplace_back(c.index, std::string(c.payload.chars()));
      replies.push_back(Bytes::copy_of("ok " + std::to_string(c.index.value())));
    }
    if (delay_.count() > 0) std::this_thread::sleep_for(delay_);
  }
  Result<void> save(SnapshotSink& sink) override {
    std::string body;
    std::uint64_t padding = 0;
    {
      std::lock_guard lock(mu_);
      save_thread_ = std::this_thread::get_id();
      padding = padding_;
      body = std::to_string(count_) + " " + std::to_string(digest_) + "\n";
      for (const auto& [index, text] : applied_) {
        body += std::to_string(index.value()) + " " + text + "\n";
      }
    }
    std::uint64_t len = body.size();
    if (auto r = sink.write(std::as_bytes(std::span(&len, 1))); !r) return r;
    if (auto r = sink.write(std::as_bytes(std::span(body.data(), body.size()))); !r) return r;
    std::vector<std::byte> block(64 << 10);
    for (std::uint64_t at = 0; at < padding;) {
      const std::size_t n =
          static_cast<std::size_t>(std::min<std::uint64_t>(block.size(), padding - at));
      for (std::size_t i = 0; i < n; ++i) block[i] = pattern(at + i);
      if (auto r = sink.write(std::span(block.data(), n)); !r) return r;
      at += n;
    }
    return {};
  }
  // With a copy delay set, snapshots are point-in-time copies written out that much later, off
  // the apply thread.
  std::unique_ptr<SnapshotCopy> copy_for_snapshot() override {
    std::lock_guard lock(mu_);
    if (copy_delay_.count() == 0) return nullptr;
    struct Copy final : SnapshotCopy {
      std::string body;
      std::chrono::milliseconds delay{0};
      Result<void> save(SnapshotSink& sink) override {
        std::this_thread::sleep_for(delay);
        std::uint64_t len = body.size();
        if (auto r = sink.write(std::as_bytes(std::span(&len, 1))); !r) return r;
        return sink.write(std::as_bytes(std::span(body.data(), body.size())));
      }
    };
    auto c = std::make_unique<Copy>();
    c->delay = copy_delay_;
    c->body = std::to_string(count_) + " " + std::to_string(digest_) + "\n";
    for (const auto& [index, text] : applied_) {
      c->body += std::to_string(index.value()) + " " + text + "\n";
    }
    ++copies_;
    return c;
  }
  void set_copy_delay(std::chrono::milliseconds d) {
    std::lock_guard lock(mu_);
    copy_delay_ = d;
  }
  std::uint64_t copies() const {
    std::lock_guard lock(mu_);
    return copies_;
  }
  Result<void> restore(SnapshotSource& source) override {
    auto read_exact = [&](std::span<std::byte> out) -> Result<void> {
      while (!out.empty()) {
        auto n = source.read(out);
        if (!n) return n.error();
        if (*n == 0) return Error(Errc::storage_corrupt, "snapshot ends early");
        out = out.subspan(*n);
      }
      return {};
    };
    std::uint64_t len = 0;
    if (auto r = read_exact(std::as_writable_bytes(std::span(&len, 1))); !r) return r;
    if (len > source.size()) return Error(Errc::storage_corrupt, "bad snapshot body length");
    std::string body(len, '\0');
    if (auto r = read_exact(std::as_writable_bytes(std::span(body.data(), body.size()))); !r) {
      return r;
    }
    // The padding, checked block by block.
    std::vector<std::byte> block(64 << 10);
    std::uint64_t at = 0;
    for (;;) {
      auto n = source.read(block);
      if (!n) return n.error();
      if (*n == 0) break;
      for (std::size_t i = 0; i < *n; ++i) {
        if (block[i] != pattern(at + i)) return Error(Errc::storage_corrupt, "padding differs");
      }
      at += *n;
    }
    if (restore_delay_.count() > 0) std::this_thread::sleep_for(restore_delay_);
    std::lock_guard lock(mu_);
    applied_.clear();
    std::size_t pos = body.find('\n');
    const std::string head = body.substr(0, pos);
    count_ = std::stoull(head.substr(0, head.find(' ')));
    digest_ = std::stoull(head.substr(head.find(' ') + 1));
    ++pos;
    while (pos < body.size()) {
      const std::size_t nl = body.find('\n', pos);
      const std::string line = body.substr(pos, nl - pos);
      const std::size_t sp = line.find(' ');
      applied_.emplace_back(Index(std::stoull(line.substr(0, sp))), line.substr(sp + 1));
      pos = nl + 1;
    }
    restored_padding_ = at;
    ++restores_;
    return {};
  }
  std::vector<std::pair<Index, std::string>> applied() const {
    std::lock_guard lock(mu_);
    return applied_;
  }
  std::size_t count() const {
    std::lock_guard lock(mu_);
    return count_;
  }
  std::uint64_t digest() const {
    std::lock_guard lock(mu_);
    return digest_;
  }
  std::uint64_t restores() const {
    std::lock_guard lock(mu_);
    return restores_;
  }
  std::uint64_t restored_padding() const {
    std::lock_guard lock(mu_);
    return restored_padding_;
  }
  void set_delay(std::chrono::milliseconds d) {
    std::lock_guard lock(mu_);
    delay_ = d;
  }
  void set_restore_delay(std::chrono::milliseconds d) {
    std::lock_guard lock(mu_);
    restore_delay_ = d;
  }
  void set_summary(bool on) {
    std::lock_guard lock(mu_);
    summary_ = on;
  }
  void set_padding(std::uint64_t bytes) {
    std::lock_guard lock(mu_);
    padding_ = bytes;
  }
  // The thread of the latest apply().
  std::thread::id apply_thread() const {
    std::lock_guard lock(mu_);
    return apply_thread_;
  }
  // The thread of the latest save().
  std::thread::id save_thread() const {
    std::lock_guard lock(mu_);
    return save_thread_;
  }

 private:
  static std::byte pattern(std::uint64_t i) {
    return static_cast<std::byte>((i * 2654435761u) >> 13);
  }
  mutable std::mutex mu_;
  std::vector<std::pair<Index, std::string>> applied_;
  std::thread::id save_thread_;
  std::uint64_t count_ = 0;
  std::uint64_t digest_ = 14695981039346656037ull;
  bool summary_ = false;
  std::uint64_t padding_ = 0;
  std::uint64_t restored_padding_ = 0;
  std::uint64_t restores_ = 0;
  std::chrono::milliseconds delay_{0};
  std::chrono::milliseconds restore_delay_{0};
  std::chrono::milliseconds copy_delay_{0};
  std::uint64_t copies_ = 0;
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
    if (setup_machine) setup_machine(*machines_[id.value() - 1]);
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
  // Called on each node's new state machine before the node starts.
  std::function<void(RecordingMachine&)> setup_machine;
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
