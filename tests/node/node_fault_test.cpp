// Whole nodes under faults: a stalled disk, a failing disk, a full disk, a follower far behind,
// and the zero-copy path from a received frame to the log writer.
#include <atomic>
#include <cstdlib>
#include <fstream>

#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include "node/cluster.hpp"

namespace coraft::test {
namespace {

// What a test makes one node's disk do.
struct DiskFaults {
  std::atomic<bool> stall{false};
  std::atomic<int> fail{0};  // an Errc to fail appends with, 0 for none
  std::atomic<int> appends{0};
  std::atomic<int> failed{0};                // appends failed by `fail`
  std::atomic<bool> fail_compaction{false};  // compactions fail with storage_io
  // Set when an append carried two or more normal entries whose payloads share one buffer.
  std::atomic<bool> shared_buffers_seen{false};
  std::atomic<bool> private_buffers_seen{false};
};

class FaultyDurable final : public node::DurablePort {
 public:
  FaultyDurable(std::unique_ptr<node::DurablePort> inner, asio::any_io_executor ex,
                DiskFaults& faults)
      : inner_(std::move(inner)), ex_(std::move(ex)), faults_(faults) {}

  asio::awaitable<Result<void>> save_hard_state(core::HardState hs) override {
    auto r = co_await inner_->save_hard_state(hs);
    co_return r;
  }
  // Appends pass one at a time, in the order they were made, as a real disk keeps them.
  asio::awaitable<Result<void>> append(std::vector<Entry> entries) override {
    const std::uint64_t ticket = next_ticket_++;
    while (faults_.stall || ticket != serving_) {
      asio::steady_timer t(ex_, 2ms);
      co_await t.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    }
    auto r = co_await pass(std::move(entries));
    ++serving_;
    co_return r;
  }

 private:
  asio::awaitable<Result<void>> pass(std::vector<Entry> entries) {
    if (const int f = faults_.fail.load(); f != 0) {
      ++faults_.failed;
      co_return Error(static_cast<Errc>(f), "injected");
    }
    ++faults_.appends;
    std::vector<const Entry*> normal;
    for (const Entry& e : entries) {
      if (e.type == EntryType::normal && !e.payload.empty()) normal.push_back(&e);
    }
    if (normal.size() >= 2) {
      if (normal.front()->payload.shares_owner_with(normal.back()->payload)) {
        faults_.shared_buffers_seen = true;
      } else {
        faults_.private_buffers_seen = true;
      }
    }
    auto r = co_await inner_->append(std::move(entries));
    co_return r;
  }

 public:
  asio::awaitable<Result<void>> truncate_suffix(Index from) override {
    auto r = co_await inner_->truncate_suffix(from);
    co_return r;
  }
  asio::awaitable<Result<void>> compact_prefix(Index upto) override {
    if (faults_.fail_compaction) co_return Error(Errc::storage_io, "injected compaction failure");
    auto r = co_await inner_->compact_prefix(upto);
    co_return r;
  }
  asio::awaitable<Result<void>> clear_log() override {
    auto r = co_await inner_->clear_log();
    co_return r;
  }
  void close() override { inner_->close(); }

 private:
  std::unique_ptr<node::DurablePort> inner_;
  asio::any_io_executor ex_;
  DiskFaults& faults_;
  std::uint64_t next_ticket_ = 0;
  std::uint64_t serving_ = 0;
};

// Gives every node of `c` a faulty disk driven by faults[id - 1].
void wrap_disks(Cluster& c, std::vector<DiskFaults>& faults) {
  for (std::size_t i = 1; i <= c.size(); ++i) {
    DiskFaults& f = faults[i - 1];
    asio::any_io_executor ex = c.io().get_executor();
    c.hooks(NodeId(i)).wrap_durable = [ex, &f](std::unique_ptr<node::DurablePort> inner) {
      return std::make_unique<FaultyDurable>(std::move(inner), ex, f);
    };
  }
}

// Three nodes over faulty disks, a leader elected and one proposal committed.
struct FaultyCluster {
  // Declared before the cluster, so that they outlive its io thread: an append still waiting
  // on a fault when the test ends reads them until the cluster has stopped.
  std::vector<DiskFaults> faults = std::vector<DiskFaults>(3);
  Cluster c{3};
  NodeId leader;

  FaultyCluster() {
    wrap_disks(c, faults);
    // A snapshot compacts the log up to two entries behind it.
    c.tweak = [](NodeConfig& n) { n.snapshot_trailing_entries = 2; };
    c.start_all();
    auto l = c.leader();
    REQUIRE(l);
    leader = *l;
    REQUIRE(c.propose(leader, "before").ok());
  }
};

TEST_CASE("a leader whose disk stalls hands leadership to a healthy voter") {
  FaultyCluster fc;
  Cluster& c = fc.c;
  auto& faults = fc.faults;
  const std::optional<NodeId> leader = fc.leader;
  faults[leader->value() - 1].stall = true;
  std::promise<Result<Proposed>> stuck;
  c.node(*leader).propose(Bytes::copy_of("stuck"),
                          [&](Result<Proposed> r) { stuck.set_value(std::move(r)); });
  // disk_stall_timeout is 500 ms in these tests.
  const bool moved = eventually(
      [&] {
        for (std::size_t i = 1; i <= 3; ++i) {
          if (NodeId(i) == *leader) continue;
          if (c.status(NodeId(i)).role == NodeRole::leader) return true;
        }
        return false;
      },
      5s);
  CHECK(moved);
  auto m = c.node(*leader).metrics(asio::use_future).get();
  CHECK(m->disk_stall_stepdowns >= 1);
  faults[leader->value() - 1].stall = false;
  auto r = stuck.get_future().get();
  // Appended by the old leader, then leadership moved: the outcome is the new leader's call.
  if (!r) CHECK(r.error().is(Errc::outcome_unknown));
  auto next = c.leader();
  REQUIRE(next);
  CHECK(c.propose(*next, "after").ok());
}

TEST_CASE("a failed log write stops the node, and the others carry on") {
  FaultyCluster fc;
  Cluster& c = fc.c;
  auto& faults = fc.faults;
  const std::optional<NodeId> leader = fc.leader;
  faults[leader->value() - 1].fail = static_cast<int>(Errc::storage_io);
  auto r = c.propose(*leader, "fails");
  REQUIRE_FALSE(r.ok());
  CHECK((r.error().is(Errc::outcome_unknown) || r.error().is(Errc::shutting_down)));
  REQUIRE(eventually([&] { return c.status(*leader).role == NodeRole::stopped; }));
  CHECK(c.status(*leader).failure.find("injected") != std::string::npos);
  auto refused = c.propose(*leader, "after-stop");
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().is(Errc::shutting_down));
  // The two healthy servers elect a leader among themselves.
  std::optional<NodeId> next;
  REQUIRE(eventually([&] {
    for (std::size_t i = 1; i <= 3; ++i) {
      if (NodeId(i) != *leader && c.status(NodeId(i)).role == NodeRole::leader) {
        next = NodeId(i);
        return true;
      }
    }
    return false;
  }));
  CHECK(c.propose(*next, "survivors").ok());
}

TEST_CASE("a compaction that fails stops the node like any failed write") {
  FaultyCluster fc;
  Cluster& c = fc.c;
  const std::optional<NodeId> leader = fc.leader;
  fc.faults[leader->value() - 1].fail_compaction = true;
  for (const char* text : {"c0", "c1", "c2", "c3", "c4"}) REQUIRE(c.propose(*leader, text).ok());
  // The snapshot is stored; compacting the log behind it fails, and the disk is not trusted.
  (void)c.node(*leader).snapshot_now(asio::use_future).get();
  REQUIRE(eventually([&] { return c.status(*leader).role == NodeRole::stopped; }));
  CHECK(c.status(*leader).failure.find("injected compaction failure") != std::string::npos);
}

TEST_CASE("a full disk refuses proposals with disk_full and loses nothing once space returns") {
  FaultyCluster fc;
  Cluster& c = fc.c;
  auto& faults = fc.faults;
  const std::optional<NodeId> leader = fc.leader;
  DiskFaults& f = faults[leader->value() - 1];
  f.fail = static_cast<int>(Errc::disk_full);
  // Several writes fail behind the full disk; each is retried, oldest first.
  std::vector<std::promise<Result<Proposed>>> pending(5);
  // Proposed together from the node's thread, so that all are admitted before the disk answers.
  asio::post(c.io(), [&] {
    for (std::size_t i = 0; i < pending.size(); ++i) {
      std::string text = "during";
      text += std::to_string(i);
      c.node(*leader).propose(Bytes::copy_of(text), [&pending, i](Result<Proposed> r) {
        pending[i].set_value(std::move(r));
      });
    }
  });
  // Once the write failed, new proposals are refused with the definite disk_full.
  REQUIRE(eventually([&] { return f.failed > 0; }, 3s));
  auto refused = c.propose(*leader, "refused");
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().is(Errc::disk_full));
  CHECK(refused.error().definite());
  std::this_thread::sleep_for(300ms);
  f.fail = 0;
  for (auto& p : pending) {
    auto r = p.get_future().get();
    REQUIRE_MESSAGE(r.ok(), r.error().message());
  }
  // A leader that cannot write hands leadership on after disk_stall_timeout: ask whoever leads.
  auto now = c.leader();
  REQUIRE(now);
  auto after = c.propose(*now, "after");
  REQUIRE_MESSAGE(after.ok(), after.error().message());
  for (std::size_t i = 1; i <= 3; ++i) {
    REQUIRE(eventually([&] { return c.machine(NodeId(i)).count() == 7; }));
    std::vector<std::string> texts;
    for (auto& [index, t] : c.machine(NodeId(i)).applied()) texts.push_back(t);
    CHECK(texts == std::vector<std::string>{"before", "during0", "during1", "during2", "during3",
                                            "during4", "after"});
  }
}

TEST_CASE("a follower far behind a leader with 16-byte entries catches up") {
  Cluster c(3);
  c.start_all();
  auto leader = c.leader();
  REQUIRE(leader);
  const NodeId lagging(leader->value() % 3 + 1);
  c.stop(lagging);
  // 20,000 entries of 16 bytes: one AppendEntries of append_bytes_max would carry 65,536 of
  // them, past what the peer codec accepts in one frame.
  constexpr std::size_t total = 20000;
  for (std::size_t b = 0; b < total / 1000; ++b) {
    std::vector<Bytes> batch;
    for (std::size_t i = 0; i < 1000; ++i) {
      char text[17];
      std::snprintf(text, sizeof text, "%016zu", b * 1000 + i);
      batch.push_back(Bytes::copy_of(std::string_view(text, 16)));
    }
    auto r = c.node(*leader).propose(std::move(batch), asio::use_future).get();
    REQUIRE_MESSAGE(r.ok(), r.error().message());
  }
  REQUIRE(c.start(lagging).ok());
  CHECK(eventually([&] { return c.machine(lagging).count() == total; }, 20s));
  CHECK(c.machine(lagging).applied() == c.machine(*leader).applied());
}

TEST_CASE("a follower writes payloads from the received frame's buffer, without copying them") {
  std::vector<DiskFaults> faults(3);  // outlives the cluster (see FaultyCluster)
  Cluster c(3);
  wrap_disks(c, faults);
  c.start_all();
  auto leader = c.leader();
  REQUIRE(leader);
  // Payloads made one by one have buffers of their own on the leader; on a follower, entries
  // that arrived in one frame share that frame's buffer.
  std::vector<Bytes> batch;
  for (int i = 0; i < 64; ++i) batch.push_back(Bytes::copy_of(std::string(2048, 'a' + i % 26)));
  REQUIRE(c.node(*leader).propose(std::move(batch), asio::use_future).get().ok());
  for (std::size_t i = 1; i <= 3; ++i) {
    if (NodeId(i) == *leader) {
      CHECK(faults[i - 1].private_buffers_seen);
      CHECK_FALSE(faults[i - 1].shared_buffers_seen);
    } else {
      CHECK(eventually([&] { return faults[i - 1].shared_buffers_seen.load(); }));
    }
  }
}

TEST_CASE(
    "a slow state machine does not stop commits or heartbeats, and proposals get overloaded") {
  Cluster c(3);
  c.tweak = [](NodeConfig& cfg) { cfg.apply_lag_entries_max = 8; };
  c.start_all();
  auto leader = c.leader();
  REQUIRE(leader);
  REQUIRE(c.propose(*leader, "warm-up").ok());
  c.machine(*leader).set_delay(1500ms);
  std::vector<Bytes> many;
  for (int i = 0; i < 20; ++i) many.push_back(Bytes::copy_of("x"));
  auto first = c.node(*leader).propose(std::move(many), asio::use_future);
  // The batch commits while the state machine is still busy with it.
  REQUIRE(eventually(
      [&] {
        const NodeStatus s = c.status(*leader);
        return s.commit.value() >= 21 && s.applied.value() < 21;
      },
      3s));
  auto r = c.propose(*leader, "refused");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().is(Errc::overloaded));
  CHECK(r.error().definite());
  // Heartbeats went on: the leader is still the leader after more than an election timeout.
  std::this_thread::sleep_for(300ms);
  CHECK(c.status(*leader).role == NodeRole::leader);
  c.machine(*leader).set_delay(0ms);
  CHECK(first.get().ok());
}

}  // namespace
}  // namespace coraft::test

namespace coraft::test {
namespace {

// Runs `openssl args` in `dir`; true on success.
bool openssl(const std::string& dir, const std::string& args) {
  const std::string cmd = "cd " + dir + " && openssl " + args + " >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

TEST_CASE("a cluster over mutual TLS elects a leader and replicates") {
  Cluster c(3);
  const std::string dir = c.data_dir(NodeId(0)) + "-tls";
  std::filesystem::create_directories(dir);
  const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes ";
  REQUIRE(openssl(dir, "req -x509 " + ec + "-days 2 -subj /CN=ca -keyout ca.key -out ca.crt"));
  for (int i = 1; i <= 3; ++i) {
    const std::string n = "node-" + std::to_string(i);
    std::ofstream(dir + "/" + n + ".ext") << "subjectAltName=DNS:" << n << "\n";
    REQUIRE(
        openssl(dir, "req " + ec + "-subj /CN=" + n + " -keyout " + n + ".key -out " + n + ".csr"));
    REQUIRE(openssl(dir, "x509 -req -days 2 -in " + n +
                             ".csr -CA ca.crt -CAkey ca.key "
                             "-CAcreateserial -out " +
                             n + ".crt -extfile " + n + ".ext"));
  }
  c.tweak = [dir](NodeConfig& cfg) {
    const std::string n = dir + "/node-" + std::to_string(cfg.id.value());
    cfg.tls = NodeTls{dir + "/ca.crt", n + ".crt", n + ".key", ""};
  };
  c.start_all();
  auto leader = c.leader();
  REQUIRE(leader);
  for (int i = 0; i < 10; ++i) REQUIRE(c.propose(*leader, "tls").ok());
  for (std::size_t i = 1; i <= 3; ++i) {
    CHECK(eventually([&] { return c.machine(NodeId(i)).count() == 10; }));
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("a follower cut off under full load leaves the leader's memory within its limits") {
  Cluster c(3);
  c.tweak = [](NodeConfig& cfg) {
    cfg.pending_proposal_bytes_max = 4u << 20;
    cfg.send_queue_bytes_max = 80u << 20;
  };
  c.start_all();
  auto leader = c.leader();
  REQUIRE(leader);
  const NodeId paused(leader->value() % 3 + 1);
  // The paused follower hears nothing and says nothing.
  c.stop(paused);
  const char* env = std::getenv("CORAFT_NODE_PAUSE_SECONDS");
  const auto run_for = std::chrono::seconds(env ? std::atoi(env) : 3);
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> ok{0}, overloaded{0}, max_pending_bytes{0};
  std::atomic<int> live{0};
  const Bytes body = Bytes::copy_of(std::string(4096, 'm'));
  std::function<void()> issue = [&] {
    ++live;
    c.node(*leader).propose(body, [&](Result<Proposed> r) {
      if (r) ++ok;
      if (!r && r.error().is(Errc::overloaded)) ++overloaded;
      if (!stop) {
        issue();
      }
      --live;
    });
  };
  asio::post(c.io(), [&] {
    for (int i = 0; i < 2048; ++i) issue();
  });
  const auto end = std::chrono::steady_clock::now() + run_for;
  while (std::chrono::steady_clock::now() < end) {
    auto m = c.node(*leader).metrics(asio::use_future).get();
    max_pending_bytes = std::max<std::uint64_t>(max_pending_bytes, m->pending_proposal_bytes);
    std::this_thread::sleep_for(20ms);
  }
  stop = true;
  REQUIRE(eventually([&] { return live == 0; }));
  CHECK(ok > 0);
  CHECK(overloaded > 0);  // the limit was reached and refused, not grown past
  CHECK(max_pending_bytes <= (4u << 20));
  REQUIRE(c.start(paused).ok());
  // The follower catches up with everything the leader applied, which includes every success.
  CHECK(c.machine(*leader).count() >= ok.load());
  CHECK(eventually([&] { return c.machine(paused).count() == c.machine(*leader).count(); }, 60s));
}

}  // namespace
}  // namespace coraft::test
